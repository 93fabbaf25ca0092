#!/usr/bin/env bash
# A 1 PiB tree through real agents: 1,024 sparse files of 1 TiB (FILES, SIZE), one source and one
# destination agent on loopback. Measures submit → first bytes acknowledged at the destination,
# the coordinator's RSS meanwhile, and `GET /v1/jobs/{id}` latency; then cancels the job. The
# files are sparse, so the tree costs no disk; what is sent (zeros, compressed) is written into
# partial files that are removed at the end.
#
#   cluster/bench-petabyte.sh            # BARGE_BIN: a release barge already built
set -euo pipefail
cd "$(dirname "$0")/.."

files=${FILES:-1024}
size=${SIZE:-1T}
source cluster/bench-lib.sh
bench_init pib

mkdir -p "$work/a/pib" "$work/b"
for i in $(seq -w 1 "$files"); do truncate -s "$size" "$work/a/pib/f$i"; done
bench_cluster

t0=$(now)
job=$("$barge" submit a:/pib b:/pib)
first=""; samples=(); at=()
while :; do
  # curl's own timing of the request, without its process start.
  # The body stays in memory. Written to a file on the disk the destination agent keeps busy, it
  # waited 40-100 ms now and then (most likely the kernel's dirty-page throttling), and that wait
  # was most of the p99.
  reply=$(curl -sf -H "Authorization: Bearer $(cat "$BARGE_API_TOKEN_FILE")" -w '\n%{time_total}' "$url/v1/jobs/$job")
  s1=$(now)
  took=${reply##*$'\n'}
  body=${reply%$'\n'*}
  samples+=("$(calc "$took * 1000")")
  at+=("$(calc "$s1 - $t0")")
  done_bytes=$(grep -o '"bytes_done":[0-9]*' <<< "$body" | cut -d: -f2)
  if [[ -z $first && ${done_bytes:-0} -gt 0 ]]; then first=$(calc "$s1 - $t0"); fi
  [[ -n $first && $(calc "$s1 - $t0 > $first + 10") == 1 ]] && break
  [[ $(calc "$s1 - $t0 > 120") == 1 ]] && break
  sleep 0.1
done
total=$(grep -o '"bytes_total":[0-9]*' <<< "$body" | cut -d: -f2)
units=$(sqlite3 "$work/state/journal.sqlite" "SELECT unitsTotal FROM jobs" 2>/dev/null || echo "?")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$coordinator/status")
"$barge" cancel "$job" > /dev/null
p50=$(printf "%s\n" "${samples[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int(NR * 0.5) + 1] }')
p99=$(printf "%s\n" "${samples[@]}" | sort -g | awk '{ v[NR] = $1 } END { i = int(NR * 0.99) + 1; if (i > NR) i = NR; print v[i] }')
{
  echo "petabyte benchmark, $(date -u +%F), $(nproc) cores: $files sparse files of $size ($total bytes), 1 source + 1 destination agent, loopback"
  echo "  submit to first bytes acknowledged: ${first:-never} s"
  echo "  bytes done 10 s later: $done_bytes; units journaled: $units"
  echo "  coordinator peak RSS: $((rss / 1024)) MiB; GET /v1/jobs/{id}: p50 $p50 ms, p99 $p99 ms over ${#samples[@]} polls (curl's time_total)"
  echo "  slowest polls (ms at s after submit): $(for i in "${!samples[@]}"; do echo "${samples[$i]} ${at[$i]}"; done | sort -gr | head -3 | awk '{ printf "%.1f at %.2f; ", $1, $2 }')"
} | tee "$out/petabyte.txt"
