#!/usr/bin/env bash
# Transfer throughput against an rsync daemon, both on loopback, in one run, plus the peak RSS of
# every Barge process. The dataset is incompressible (random bytes), so neither side can win by
# compressing.
#
#   cluster/bench-transfer.sh                    # 1 GiB in 16 files (the cluster issue's target)
#   SIZE_MIB=10240 FILES=40 SKIP_RSYNC=1 cluster/bench-transfer.sh   # the 10 GiB memory run
#
# One source agent and one destination agent, each with the default 4 streams per unit. Both
# tools read warm files from the page cache and write into a fresh directory. Output goes to
# bench-out/transfer.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=${SIZE_MIB:-1024}
files=${FILES:-16}
runs=${RUNS:-3}
source cluster/bench-lib.sh
bench_init transfer
# Peak resident memory in KiB of a process (CPU seconds: bench-lib.sh's cpu_secs).
rss() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
mib_per_file=$((size_mib / files))

echo "generating $files files of $mib_per_file MiB (random) …" >&2
mkdir -p "$work/a/ds" "$work/b"
for i in $(seq 1 "$files"); do
  openssl rand -out "$work/a/ds/part-$i.bin" $((mib_per_file << 20))
done
bytes=$(du -sb "$work/a/ds" | cut -f1)
cat "$work"/a/ds/* > /dev/null   # warm the page cache for both tools
# Writing into memory the kernel has never handed out costs several times more (first touch on
# this VM) than writing into recycled page cache. One throwaway copy first, and the two tools take
# turns, so neither pays that for the other.
cp -r "$work/a/ds" "$work/warm" && sync && rm -rf "$work/warm"

# --- Barge: coordinator, a1 (site a), b1 (site b) ---
bench_cluster

barge_best=""
rsync_best=""
cpu_a1=0; cpu_b1=0
if [[ ${SKIP_RSYNC:-0} != 1 ]]; then
  bench_rsyncd
fi
cpu_rsync=0
rsync_fsync_best=""
# rsync --fsync: rsync made as durable as Barge, which syncs every file before its rename.
rsync_run() {
  rm -rf "$work/r/copy"
  sync
  local t0 t1
  t0=$(now)
  rsync -a "$@" "$work/a/ds/" "rsync://127.0.0.1:$rsync_port/dst/copy/"
  t1=$(now)
  rm -rf "$work/r/copy"
  sleep 0.2   # the daemon reaps its child before the next CPU reading
  calc "$t1 - $t0"
}

# Resident memory of the three processes, once a second, to show whether it grows with the data.
sampler() {
  while kill -0 "$coordinator" 2>/dev/null; do
    echo "$(awk '/VmRSS/ {print $2}' "/proc/$coordinator/status") $(awk '/VmRSS/ {print $2}' "/proc/$a1/status") $(awk '/VmRSS/ {print $2}' "/proc/$b1/status")"
    sleep 1
  done
}
sampler > "$work/rss.txt" &
pids+=($!)

for run in $(seq 1 "$runs"); do
  rm -rf "$work/b/copy-$run"
  sync
  c0_a1=$(cpu_secs "$a1"); c0_b1=$(cpu_secs "$b1")
  t0=$(now)
  "$barge" submit a:/ds "b:/copy-$run" --wait --json > "$work/barge-$run.json"
  # The job's own end time: the CLI polls twice a second, which would add up to half a second.
  t1=$(grep -o '"finished_at":[0-9.]*' "$work/barge-$run.json" | cut -d: -f2)
  cpu_a1=$(calc "$cpu_a1 + $(cpu_secs "$a1") - $c0_a1"); cpu_b1=$(calc "$cpu_b1 + $(cpu_secs "$b1") - $c0_b1")
  cmp -s "$work/a/ds/part-1.bin" "$work/b/copy-$run/part-1.bin" || { echo "barge copy differs" >&2; exit 1; }
  secs=$(calc "$t1 - $t0")
  echo "barge run $run: $secs s" >&2
  barge_secs=$secs
  if [[ -z $barge_best ]] || [[ $(calc "$secs < $barge_best") == 1 ]]; then barge_best=$secs; fi
  rm -rf "$work/b/copy-$run"

  if [[ ${SKIP_RSYNC:-0} != 1 ]]; then
    rm -rf "$work/r/copy"
    sync
    c0=$(children_cpu "$rsyncd")
    t0=$(now)
    TIMEFORMAT="%U %S"
    { time rsync -a "$work/a/ds/" "rsync://127.0.0.1:$rsync_port/dst/copy/"; } 2> "$work/rsync-time"
    t1=$(now)
    sleep 0.2   # the daemon reaps its child
    cpu_rsync=$(calc "$cpu_rsync + $(awk '{print $1 + $2}' "$work/rsync-time") + $(children_cpu "$rsyncd") - $c0")
    secs=$(calc "$t1 - $t0")
    echo "rsync run $run: $secs s" >&2
    calc "$secs / $barge_secs" >> "$work/ratios"
    if [[ -z $rsync_best ]] || [[ $(calc "$secs < $rsync_best") == 1 ]]; then rsync_best=$secs; fi
    rm -rf "$work/r/copy"
    secs=$(rsync_run --fsync)
    echo "rsync --fsync run $run: $secs s" >&2
    if [[ -z $rsync_fsync_best ]] || [[ $(calc "$secs < $rsync_fsync_best") == 1 ]]; then rsync_fsync_best=$secs; fi
  fi
done
cpu_a1=$(calc "$cpu_a1 / $runs"); cpu_b1=$(calc "$cpu_b1 / $runs")
rss_coordinator=$(rss "$coordinator"); rss_a1=$(rss "$a1"); rss_b1=$(rss "$b1")

{
  echo "transfer benchmark, $(date -u +%F), $(nproc) cores, $files files, $bytes bytes of random data, best of $runs"
  printf "barge (1 source agent, 1 destination agent, loopback): %.2f s = %.0f MB/s\n" "$barge_best" "$(calc "$bytes / $barge_best / 1000000")"
  if [[ -n $rsync_best ]]; then
    printf "rsync daemon (rsync -a to rsync://, loopback):          %.2f s = %.0f MB/s\n" "$rsync_best" "$(calc "$bytes / $rsync_best / 1000000")"
    printf "barge / rsync throughput: %.2f best against best; %.2f median of the runs side by side (target >= 0.8)\n" \
      "$(calc "$rsync_best / $barge_best")" "$(sort -g "$work/ratios" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
    echo "CPU seconds per run: rsync client and daemon together $(calc "$cpu_rsync / $runs")"
    printf "rsync daemon with --fsync (as durable as barge):          %.2f s = %.0f MB/s\n" "$rsync_fsync_best" "$(calc "$bytes / $rsync_fsync_best / 1000000")"
    printf "barge / rsync --fsync throughput: %.2f\n" "$(calc "$rsync_fsync_best / $barge_best")"
  fi
  echo "CPU seconds per run: source agent $cpu_a1, destination agent $cpu_b1"
  awk '{ n++; c[n]=$1; a[n]=$2; b[n]=$3 } END {
    h = int(n / 2); for (i = 1; i <= n; i++) { k = (i <= h) ? 1 : 2; if (c[i] > mc[k]) mc[k] = c[i]; if (a[i] > ma[k]) ma[k] = a[i]; if (b[i] > mb[k]) mb[k] = b[i] }
    printf "RSS sampled each second, max in the first and second half of the runs: coordinator %d / %d MiB, source agent %d / %d MiB, destination agent %d / %d MiB\n", mc[1]/1024, mc[2]/1024, ma[1]/1024, ma[2]/1024, mb[1]/1024, mb[2]/1024
  }' "$work/rss.txt"
  echo "peak RSS (VmHWM): coordinator $((rss_coordinator / 1024)) MiB, source agent $((rss_a1 / 1024)) MiB, destination agent $((rss_b1 / 1024)) MiB"
} | tee "$out/transfer.txt"
