#!/usr/bin/env bash
# Barge side by side with the other transfer tools, taking turns, in one run:
#
#   loopback  three datasets (incompressible files, typed arrays plus text, 20,000 small files),
#             each moved by Barge, the rsync daemon, `rsync --fsync` (to the daemon), GridFTP
#             (`globus-url-copy -p 4 -fast`, `-cc 4 -pp` for small files) and XRootD
#             (`xrdcp -r --parallel 4`), all on 127.0.0.1, and by cluster/durable-floor.py (`floor`:
#             the least a copy that syncs costs on this disk, no network)
#   lfn       the delay test bed (../shared/tools/delayline) at RATE with each RTT of RTTS: 1 GiB of
#             incompressible files by Barge and by GridFTP, against `iperf3 -P 4 -C cubic` on the
#             same path (the link's practical ceiling)
#
#   sudo cluster/bench-peers.sh                          # everything (about 15 minutes)
#   PARTS=lfn RTTS="50" ROUNDS=1 cluster/bench-peers.sh  # one point
#
# Knobs: PARTS (loopback lfn), DATASETS (random typed small; only random when PARTS has no loopback), RTTS (20 50 100, in ms), RATE (1gbit),
# ROUNDS (2: the median counts), TRACE (1: the link's rate during each Barge job, and BARGE_TRACE_LANES in the agents' logs, kept in bench-out/), SUBMIT_ARGS, AGENT_ARGS and COORDINATOR_ARGS (extra `barge submit`, `barge agent` and `barge coordinator` arguments, for experiments: `--insecure-plaintext` on both agents and coordinator measures without encryption), RANDOM_MIB (1024), PERF (1: a call-graph profile of Barge's processes during each of its jobs, bench-out/perf-DESTINATION.data), TYPED_MIB (each typed/text file, 128),
# LOOPBACK_TOOLS (barge rsyncd rsync-fsync gridftp xrootd floor: the tools taking turns on loopback), LFN_TOOLS (barge gridftp: the tools moving files through the delay line), IPERF_CC (cubic: the reference's TCP congestion control; Barge's agents use the host's default unless AGENT_ARGS has --tcp-congestion, and their log says which), SMALL (20000), TMPDIR (where the work directory goes), BARGE_BIN (a release barge, else built),
# DL_BIN (where the delay line is built; ../shared is read-only in CI), STEADY (1: the delay line at real-time
# priority and a deeper router backlog, cluster/delayline-steady.sh; 0: the bed as testbed.sh makes it).
#
# Every tool writes into a fresh ext4 file system, and every copy is removed after it is timed.
# GridFTP and XRootD run as `nobody` in anonymous mode, and neither syncs nor verifies; the rsync
# daemon verifies its whole-file checksum but does not sync; `rsync --fsync` syncs; Barge syncs and
# verifies every chunk. Each copy's CPU seconds count the tool's client and every process of its
# servers or agents (Barge's coordinator included), and the report gives them per GiB; on loopback
# it also compares Barge's with GridFTP's plus the hashes Barge computes (SHA-256 once, XXH3-128
# at each end, at the rates `barge bench hash` measures). Needs root (namespaces, mounts, servers
# as nobody); exits 77 otherwise. Output: bench-out/peers.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if [[ $(id -u) -ne 0 ]]; then echo "bench-peers: needs root (namespaces, a scratch file system, servers as nobody); skipped" >&2; exit 77; fi
parts=${PARTS:-loopback lfn}
# The loopback part's datasets; the lfn part moves only the incompressible files, so a run of
# that part alone makes only those.
if [[ " $parts " == *" loopback "* ]]; then datasets=${DATASETS:-random typed small}; else datasets=${DATASETS:-random}; fi
rtts=${RTTS:-20 50 100}
rate=${RATE:-1gbit}
rounds=${ROUNDS:-2}
iperf_cc=${IPERF_CC:-cubic}
source cluster/bench-lib.sh
bench_init peers
chmod 755 "$work"  # the servers run as nobody
./cluster/install-deps.sh --peers
export DL_PREFIX=${DL_PREFIX:-bpeer} DL_NET=${DL_NET:-10.234}
export DL_BIN=${DL_BIN:-$repo/.build/delayline/delayline}
mkdir -p "$(dirname "$DL_BIN")"
testbed=$repo/../shared/tools/delayline/testbed.sh
dl_rundir=${DL_RUNDIR:-${TMPDIR:-/tmp}/delayline-$DL_PREFIX-r}
A=$DL_PREFIX-a B=$DL_PREFIX-b
report=$out/peers.txt
: > "$work/results.txt"
say() { echo "$*" | tee -a "$work/report.txt" >&2; }

peers_cleanup() {
  [[ -n ${TRACE:-} ]] && cp "$work"/*.log "$out/" 2>/dev/null || true
  bench_cleanup
  cluster/delayline-steady.sh restore "$dl_rundir" || true
  [[ -n ${bed_up:-} ]] && "$testbed" down > /dev/null 2>&1 || true
  rm -rf "/etc/netns/$A" "/etc/netns/$B"
}
trap peers_cleanup EXIT

# --- datasets -------------------------------------------------------------------------------
mkdir -p "$work/src"
echo "generating datasets …" >&2
for d in $datasets; do
  case $d in
    random)
      mkdir -p "$work/src/random"
      for i in $(seq 1 16); do openssl rand -out "$work/src/random/part-$i.bin" $(( ${RANDOM_MIB:-1024} / 16 << 20 )); done ;;
    typed)
      "$barge" bench generate --size "${TYPED_MIB:-128}MiB" "$work/src/typed" > /dev/null
      rm -f "$work/src/typed/random.bin" ;;
    small)
      python3 - "$work/src/small" "${SMALL:-20000}" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
r = random.Random(7)
for i in range(n):
    d = f"{root}/d{i // 100:03d}"
    if i % 100 == 0: os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:06d}", "wb") as f: f.write(r.randbytes(r.randint(1024, 32768)))
PY
      ;;
  esac
done
# The lfn part always moves the incompressible files.
[[ -d $work/src/random ]] || { mkdir -p "$work/src/random"; for i in $(seq 1 16); do openssl rand -out "$work/src/random/part-$i.bin" 67108864; done; }
chmod -R a+rX "$work/src"
sync
# The bytes of a tree's regular files.
tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
bytes_of() { tree_bytes "$work/src/$1"; }

# Every copy lands on one fresh file system, writable by the servers that run as nobody.
bench_fresh_fs "$work/dst" "${DST_FS_SIZE:-12G}"
chmod 1777 "$work/dst"

# --- the tools ------------------------------------------------------------------------------
# Each function: DATASET NAME (a fresh destination name); runs in $ns_client / against $ip_server;
# prints the seconds from start to the last byte on disk.
run_in_client() { if [[ -n $ns_client ]]; then ip netns exec "$ns_client" "$@"; else "$@"; fi; }
run_in_server() { if [[ -n $ns_server ]]; then ip netns exec "$ns_server" "$@"; else "$@"; fi; }

start_servers() {
  stop_servers
  # The rsync daemon (module dst), GridFTP and XRootD, all serving $work/dst.
  cat > "$work/rsyncd.conf" <<CONF
pid file = $work/rsyncd.pid
use chroot = false
[dst]
  path = $work/dst
  read only = false
  uid = 0
  gid = 0
CONF
  rm -f "$work/rsyncd.pid"
  "${ns_prefix[@]}" rsync --daemon --no-detach --config "$work/rsyncd.conf" --port 28873 --address "$ip_server" &
  server_pids+=($!)
  "${ns_prefix[@]}" globus-gridftp-server -aa -anonymous-user nobody -p 22811 -control-interface "$ip_server" -data-interface "$ip_server" -d error > "$work/gridftp.log" 2>&1 &
  server_pids+=($!)
  printf 'all.export %s\nxrd.port 21094\n' "$work/dst" > "$work/xrootd.cfg"
  mkdir -p "$work/xrd"; chown nobody "$work/xrd"
  (cd "$work/xrd" && exec "${ns_prefix[@]}" setpriv --reuid=nobody --regid=nogroup --clear-groups xrootd -c "$work/xrootd.cfg" -l "$work/xrd/xrootd.log") &
  server_pids+=($!)
  sleep 1
}
server_pids=()
stop_servers() {
  for p in "${server_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pkill -f "xrootd -c $work/xrootd.cfg" 2>/dev/null || true
  pkill -f "globus-gridftp-server .* -p 22811" 2>/dev/null || true
  server_pids=()
  sleep 0.3
}

tool_rsyncd() { local t0; t0=$(now); run_in_client rsync -a "$work/src/$1/" "rsync://$ip_server:28873/dst/$2/"; calc "$(now) - $t0"; }
tool_rsync_fsync() { local t0; t0=$(now); run_in_client rsync -a --fsync "$work/src/$1/" "rsync://$ip_server:28873/dst/$2/"; calc "$(now) - $t0"; }
tool_gridftp() {
  local extra=(-p 4 -fast) t0
  [[ $1 == small ]] && extra=(-cc 4 -pp -fast)
  t0=$(now)
  run_in_client globus-url-copy "${extra[@]}" -r -cd "file://$work/src/$1/" "ftp://$ip_server:22811$work/dst/$2/" > /dev/null
  calc "$(now) - $t0"
}
tool_xrootd() {
  local t0
  mkdir -m 1777 "$work/dst/$2"  # xrdcp -r copies into an existing directory
  t0=$(now)
  run_in_client xrdcp -r --parallel 4 --silent "$work/src/$1/" "root://$ip_server:21094/$work/dst/$2/"
  calc "$(now) - $t0"
}
# Not a transfer tool: the least a durable copy costs on this disk (cluster/durable-floor.py), to
# tell a tool's own cost from the disk's. Loopback only; never the best peer.
tool_floor() { cluster/durable-floor.py "$work/src/$1" "$work/dst/$2"; }
tool_barge() {
  local t0 json sampler=""
  if [[ -n ${TRACE:-} && -n $ns_server ]]; then
    # TRACE=1: the bytes the router sends towards B, every 0.25 s, as MB/s per interval.
    # Also each agent's resident memory (kB): source, then destination.
    ( while true; do echo "$(now) $(ip netns exec "$DL_PREFIX-r" cat "/sys/class/net/$DL_PREFIX-rb/statistics/tx_bytes") $(awk '/VmRSS/ { print $2 }' "/proc/${barge_pids[1]}/status") $(awk '/VmRSS/ { print $2 }' "/proc/${barge_pids[2]}/status")"; sleep 0.25; done ) > "$work/trace-$2.txt" &
    sampler=$!
  fi
  local profiler=""
  if [[ -n ${PERF:-} ]]; then
    # PERF=1: a call-graph profile of the coordinator and both agents during the job (perf report -i).
    perf record -F 1999 -g -p "$(IFS=,; echo "${barge_pids[*]}")" -o "$repo/bench-out/perf-$2.data" > /dev/null 2>&1 &
    profiler=$!
    sleep 0.5
  fi
  t0=$(now)
  json=$(run_in_client env BARGE_COORDINATOR="$barge_url" BARGE_API_TOKEN_FILE="$work/state/admin.token" "$barge" submit "a:/$1" "b:/$2" --wait --json ${SUBMIT_ARGS:-})
  local returned; returned=$(now)
  if [[ -n $profiler ]]; then kill -INT "$profiler"; wait "$profiler" || true; fi
  echo "$json" > "$work/barge-$2.json"
  # The job's own end: the CLI's poll adds up to half a second after it.
  if [[ -n $sampler ]]; then
    kill "$sampler"
    echo "    link MB/s every 0.25 s from submit: $(awk -v t0="$t0" 'NR > 1 && $1 > t0 { printf "%.0f ", ($2 - b) / ($1 - t) / 1e6 } { t = $1; b = $2 }' "$work/trace-$2.txt")" >> "$work/report.txt"
    echo "    agent RSS, most during the job: source $(awk '$3 > m { m = $3 } END { printf "%.0f", m / 1024 }' "$work/trace-$2.txt") MiB, destination $(awk '$4 > m { m = $4 } END { printf "%.0f", m / 1024 }' "$work/trace-$2.txt") MiB" >> "$work/report.txt"
  fi
  echo "    barge job: $(calc "$(field finished_at "$work/barge-$2.json") - $(field started_at "$work/barge-$2.json")") s from start to end, submitted $(calc "$(field started_at "$work/barge-$2.json") - $t0") s before it started; submit --wait returned $(calc "$returned - $(field finished_at "$work/barge-$2.json")") s after its end" >> "$work/report.txt"
  calc "$(field finished_at "$work/barge-$2.json") - $t0"
}

start_barge() {
  stop_barge
  rm -rf "$work/state"
  (umask 077; head -c 32 /dev/urandom | base64 > "$work/token")
  export BARGE_TOKEN_FILE=$work/token
  barge_url=http://$ip_client:27480
  [[ -n ${TRACE:-} ]] && export BARGE_TRACE_LANES=1
  "${client_prefix[@]}" "$barge" coordinator --state "$work/state" --listen "$ip_client:27470" --http "$ip_client:27480" ${COORDINATOR_ARGS:-} > "$work/coordinator.log" 2>&1 &
  barge_pids+=($!)
  sleep 0.5
  "${client_prefix[@]}" "$barge" agent --coordinator "$ip_client:27470" --name a1 --site a --root "$work/src" --listen "$ip_client:0" ${AGENT_ARGS:-} > "$work/a1.log" 2>&1 &
  barge_pids+=($!)
  "${ns_prefix[@]}" "$barge" agent --coordinator "$ip_client:27470" --name b1 --site b --root "$work/dst" --listen "$ip_server:0" ${AGENT_ARGS:-} > "$work/b1.log" 2>&1 &
  barge_pids+=($!)
  for _ in $(seq 1 100); do
    if [[ $(run_in_client env BARGE_COORDINATOR="$barge_url" BARGE_API_TOKEN_FILE="$work/state/admin.token" "$barge" agents --json 2>/dev/null | grep -o '"state":"up"' | wc -l) -ge 2 ]]; then
      say "  barge: the source agent sends with TCP congestion control $(grep -o 'sending with TCP congestion control [^"]*' "$work/a1.log" | head -1 | cut -d' ' -f6-)"
      return
    fi
    sleep 0.2
  done
  echo "bench-peers: the agents did not register; see $work/*.log" >&2
  exit 1
}
barge_pids=()
stop_barge() {
  for p in "${barge_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${barge_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  barge_pids=()
}

# The machine's CPU ticks so far, "busy total" (from /proc/stat; idle and iowait are not busy).
machine_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
# How busy the machine's cores were since machine_ticks printed "$1", in percent: near 100 on
# the delay bed means the run was short of CPU (the delay line, both agents and the kernel's
# packet work share these cores), not of link.
machine_busy() { read -r b0 t0 <<< "$1"; read -r b1 t1 <<< "$(machine_ticks)"; calc "100 * ($b1 - $b0) / ($t1 - $t0)" | xargs printf '%.0f'; }

# measure SETTING DATASET TOOL…: ROUNDS rounds (or only round FIRST_ROUND when set), the tools
# taking turns; appends "setting dataset tool seconds cpu" lines to results.txt. The CPU is the
# tool's client (reaped by this shell: the tool functions run in command substitutions) and every
# server and agent process with its reaped children (the rsync daemon and GridFTP fork one per
# connection). The tools take turns, so the others idle meanwhile; Barge's count includes its
# coordinator.
measure() {
  local setting=$1 dataset=$2; shift 2
  local round tool secs name c0 s0 cpu ok m0 busy
  for round in $(if [[ -n ${only_round:-} ]]; then echo "$only_round"; else seq 1 "$rounds"; fi); do
    for tool in "$@"; do
      name="$tool-$dataset-$round"
      sync
      c0=$(children_cpu $$)
      s0=$(cpu_with_children "${server_pids[@]}" "${barge_pids[@]}")
      ok=1
      m0=$(machine_ticks)
      secs=$("tool_${tool//-/_}" "$dataset" "$name") || ok=""
      busy=$(machine_busy "$m0")
      cpu=$(children_cpu $$)
      sleep 0.3  # the daemons reap their connections' processes
      cpu=$(calc "$cpu - $c0 + $(cpu_with_children "${server_pids[@]}" "${barge_pids[@]}") - $s0")
      # A copy counts only when every byte arrived.
      if [[ -n $ok ]] && [[ $(tree_bytes "$work/dst/$name") == $(bytes_of "$dataset") ]]; then
        echo "$setting $dataset $tool $secs $cpu" >> "$work/results.txt"
        say "  $setting $dataset round $round: $tool $(printf '%.2f' "$secs") s, $(printf '%.2f' "$cpu") CPU s; the machine's $(nproc) cores $busy% busy meanwhile"
      else
        say "  $setting $dataset round $round: $tool FAILED"
      fi
      rm -rf "${work:?}/dst/$name"
    done
  done
}

# --- parts ----------------------------------------------------------------------------------
if [[ " $parts " == *" loopback "* ]]; then
  say "== loopback"
  ns_client="" ns_server="" ip_client=127.0.0.1 ip_server=127.0.0.1 ns_prefix=() client_prefix=()
  start_servers
  start_barge
  for d in $datasets; do measure loopback "$d" ${LOOPBACK_TOOLS:-barge rsyncd rsync-fsync gridftp xrootd floor}; done
  # The hashes' own cost, on one core, for the CPU target (Barge within GridFTP's CPU plus them).
  "$barge" bench hash --json > "$work/hash.json"
  stop_barge
  stop_servers
fi

if [[ " $parts " == *" lfn "* ]]; then
  for rtt in $rtts; do
    say "== lfn: $rate, RTT $rtt ms"
    "$testbed" up "$rate" $((rtt / 2)) > "$work/testbed.log" 2>&1
    bed_up=1
    # STEADY=1 (default): the delay line at real-time priority and a deeper router backlog, so that
    # the bed's delay and losses are the path's, not this machine's CPU contention
    # (cluster/delayline-steady.sh says why); STEADY=0 leaves the bed as testbed.sh makes it.
    if [[ ${STEADY:-1} == 1 ]]; then cluster/delayline-steady.sh up "$dl_rundir" 2>> "$work/testbed.log"; else cluster/delayline-steady.sh mark "$dl_rundir"; fi
    say "  bed: $(tail -n 1 "$work/testbed.log")"
    ns_client=$A ns_server=$B ip_client=$DL_NET.1.1 ip_server=$DL_NET.2.1
    ns_prefix=(ip netns exec "$B") client_prefix=(ip netns exec "$A")
    # Servers that look up their clients' names stall for seconds inside namespaces without this.
    for ns in "$A" "$B"; do mkdir -p "/etc/netns/$ns"; printf '127.0.0.1 localhost\n%s a %s\n%s b\n' "$ip_client" "$(hostname)" "$ip_server" > "/etc/netns/$ns/hosts"; done
    start_servers
    start_barge
    for round in $(seq 1 "$rounds"); do
      ip netns exec "$B" iperf3 -s -1 -D -p 25201; sleep 0.3
      m0=$(machine_ticks)
      ip netns exec "$A" iperf3 -c "$ip_server" -p 25201 -P 4 -C "$iperf_cc" -t 10 -J > "$work/iperf.json"
      busy=$(machine_busy "$m0")
      bps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"])' "$work/iperf.json")
      echo "lfn-$rtt random iperf3 $(calc "$(bytes_of random) * 8 / $bps") -" >> "$work/results.txt"
      say "  lfn-$rtt round $round: iperf3 -P 4 $iperf_cc $(calc "$bps / 1e6") Mbit/s, $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_sent"].get("retransmits", "?"))' "$work/iperf.json") segments retransmitted; the machine's $(nproc) cores $busy% busy meanwhile"
      only_round=$round measure "lfn-$rtt" random ${LFN_TOOLS:-barge gridftp}
      say "  $(cluster/delayline-steady.sh report "$dl_rundir")"
    done
    stop_barge
    stop_servers
    cluster/delayline-steady.sh restore "$dl_rundir"
    "$testbed" down > /dev/null 2>&1; bed_up=""
  done
fi

# --- report ---------------------------------------------------------------------------------
{
  echo "peers benchmark, $(date -u +%F), $(nproc) cores, median of $rounds rounds; MB/s of raw data (MB = 10^6 bytes)"
  echo "syncs / verifies: barge yes/yes (per chunk XXH3-128 + SHA-256), rsyncd no/whole-file, rsync-fsync yes/whole-file, gridftp no/no, xrootd no/no; iperf3 moves no files;"
  echo "floor is no tool: one local process's durable copy (write all, syncfs, rename all, fsync each directory), the least syncing costs on this disk"
  python3 - "$work/results.txt" "$work/src" "$work/hash.json" <<'PY'
import collections, json, os, statistics, sys
rows = collections.defaultdict(list)
cpus = collections.defaultdict(list)
for line in open(sys.argv[1]):
    setting, dataset, tool, secs, cpu = line.split()
    rows[(setting, dataset, tool)].append(float(secs))
    if cpu != "-": cpus[(setting, dataset, tool)].append(float(cpu))
hashes = None
if os.path.exists(sys.argv[3]):
    gbps = {r["algorithm"]: r["gb_per_s"] for r in json.load(open(sys.argv[3]))["results"]}
    # What Barge hashes per GiB: SHA-256 once (the source), XXH3-128 at each end.
    hashes = 2**30 / (gbps["sha256"] * 1e9) + 2 * 2**30 / (gbps["xxh3-128"] * 1e9)
def size(d):
    total = 0
    for dirpath, _, files in os.walk(os.path.join(sys.argv[2], d)):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total
sizes = {}
for (setting, dataset) in sorted({(s, d) for s, d, _ in rows}):
    n = sizes.setdefault(dataset, size(dataset))
    rates = {t: n / statistics.median(v) / 1e6 for (s, d, t), v in rows.items() if s == setting and d == dataset}
    peers = {t: r for t, r in rates.items() if t not in ("barge", "floor")}
    best = max(peers, key=peers.get) if peers else None
    print(f"{setting} / {dataset} ({n / 1e6:.0f} MB):")
    per_gib = {t: statistics.median(v) / (n / 2**30) for (s, d, t), v in cpus.items() if s == setting and d == dataset}
    for t, r in sorted(rates.items(), key=lambda x: -x[1]):
        ratio = f", barge/{t} {rates['barge'] / r:.2f}" if "barge" in rates and t != "barge" else ""
        cpu = f"; {per_gib[t]:.2f} CPU s/GiB" if t in per_gib else ""
        print(f"  {t:12s} {r:8.1f} MB/s{ratio}{cpu}")
    if best and "barge" in rates:
        print(f"  barge / best peer ({best}): {rates['barge'] / peers[best]:.2f}")
    if hashes is not None and "barge" in per_gib and "gridftp" in per_gib:
        print(f"  CPU per GiB: barge {per_gib['barge']:.2f} s against gridftp's {per_gib['gridftp']:.2f} + the hashes {hashes:.2f} "
              f"(SHA-256 once, XXH3-128 twice, barge bench hash) = {per_gib['gridftp'] + hashes:.2f} s")
PY
  echo "runs:"
  sed 's/^/  /' "$work/report.txt"
} | tee "$report"
