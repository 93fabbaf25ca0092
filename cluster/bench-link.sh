#!/usr/bin/env bash
# Flow control on the WAN test bed (cluster/wan-testbed.sh): prints every figure of the flow-control
# targets in one run. Needs root (network namespaces); exits 77 with the reason otherwise.
#
#   sudo cluster/bench-link.sh                 # everything (about 10 minutes)
#   PARTS="delay scavenger" cluster/bench-link.sh
#
# Parts (PARTS, default all of them):
#   delay      400 Mbit/s, fair: link utilization and the RTT a Barge transfer adds (ping), against a
#              cubic iperf3 flow on the same bed
#   scavenger  a scavenger job, then a cubic iperf3 flow for 10 s: the flow's share of the link, and
#              how long after it ends the job has the link again
#   slow       typed arrays + text logs at 400 Mbit/s: Barge's effective rate against link × the
#              ratio auto reaches in `barge bench compress`, and against rsync, rsync -z and
#              rsync -z --compress-choice=lz4 through the same link
#   codecs     auto against fixed codecs at 100 Mbit/s, 1 Gbit/s and on loopback (mixed dataset)
#
# Knobs: WORK_DIR (default /tmp/barge-bench-link), SIZE_MIB (each typed/text file of the slow-link
# dataset, default 192), MIXED_MIB (each file of the mixed dataset at 100 Mbit/s, default 64; four
# times that at 1 Gbit/s and on loopback), RANDOM_MIB (the
# delay/scavenger dataset, default 1024), CODECS (fixed codecs to compare, default
# "none lz4 zstd-1 zstd-3 zstd-9"), LOOPBACK_ROUNDS (runs of each codec on loopback, whose
# median counts; default 7), SETTINGS (the links of the codecs part, default
# "100mbit 1gbit loopback"), SOURCE_ARGS (extra arguments for the source agent, for experiments),
# RSYNC=0 (the slow part without rsync, for experiments), SUBMIT_ARGS (extra arguments for the
# slow part's job, for experiments: --cc off, say), SCAVENGER_CC (the scavenger part's job mode,
# default scavenger; fair measures what a fair job leaves a cubic flow, whose target, about half
# the link, the part's printed target is not), DELAY_MS (delay each way through the
# delay line, default 0: `DELAY_MS=25 PARTS=slow` is the long-RTT issue's compressible-data point,
# 400 Mbit/s at 50 ms; DL_BIN says where the delay line is built).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [[ $(id -u) -ne 0 ]]; then echo "bench-link: needs root for network namespaces; skipped" >&2; exit 77; fi
./cluster/install-deps.sh
if [[ -n ${BARGE_BIN:-} ]]; then barge=$BARGE_BIN; else swift build -c release --product barge >&2; barge=$repo/.build/release/barge; fi
tb=$repo/cluster/wan-testbed.sh
P=${BARGE_NETNS_PREFIX:-bwan}
work=${WORK_DIR:-/tmp/barge-bench-link}
parts=${PARTS:-delay scavenger slow codecs}
codecs=${CODECS:-none lz4 zstd-1 zstd-3 zstd-9}
LINK=400mbit LINK_BPS=400000000

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$tb" down
}
trap cleanup EXIT
trap "exit 130" INT TERM

rm -rf "$work"; mkdir -p "$work/logs" "$work/jobs"
(umask 077; head -c 32 /dev/urandom | base64 > "$work/token")
export BARGE_TOKEN_FILE=$work/token
"$tb" up "$LINK" 60 "${DELAY_MS:-0}"

in_a() { ip netns exec "$P-a" "$@"; }
in_b() { ip netns exec "$P-b" "$@"; }
cli() { in_a env BARGE_COORDINATOR=http://10.77.1.1:7480 BARGE_API_TOKEN_FILE="$work/state/admin.token" "$barge" "$@"; }
tx_bytes() { ip netns exec "$P-r" cat "/sys/class/net/$P-rb/statistics/tx_bytes"; }
# Packets the router's tbf has dropped so far (its queue was full).
tbf_drops() { ip netns exec "$P-r" tc -s qdisc show dev "$P-rb" | grep -o 'dropped [0-9]*' | head -1 | cut -d' ' -f2; }
now() { date +%s.%N; }

# A coordinator and a source agent in A; the destination agent in B (or in A: loopback).
start_cluster() {
  local where=${1:-b}
  stop_cluster
  rm -rf "$work/state" "$work/dst"; mkdir -p "$work/src" "$work/dst"
  # Started with `ip netns exec` itself, not through in_a: $! is then the process, so kill reaches it.
  ip netns exec "$P-a" "$barge" coordinator --state "$work/state" --listen 10.77.1.1:7470 --http 10.77.1.1:7480 > "$work/logs/coordinator.log" 2>&1 &
  pids+=($!)
  ip netns exec "$P-a" "$barge" agent --coordinator 10.77.1.1:7470 --name a1 --site a --root "$work/src" --listen 10.77.1.1:0 ${SOURCE_ARGS:-} > "$work/logs/a1.log" 2>&1 &
  pids+=($!)
  if [[ $where == b ]]; then
    ip netns exec "$P-b" "$barge" agent --coordinator 10.77.1.1:7470 --name b1 --site b --root "$work/dst" --listen 10.77.2.1:0 > "$work/logs/b1.log" 2>&1 &
  else
    ip netns exec "$P-a" "$barge" agent --coordinator 10.77.1.1:7470 --name b1 --site b --root "$work/dst" --listen 10.77.1.1:0 > "$work/logs/b1.log" 2>&1 &
  fi
  pids+=($!)
  for _ in $(seq 1 100); do
    [[ $(cli agents --json 2>/dev/null | grep -o '"state":"up"' | wc -l) -ge 2 ]] && return
    sleep 0.2
  done
  echo "bench-link: agents did not register; see $work/logs" >&2
  exit 1
}
stop_cluster() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

# transfer SRC DST [submit args…]: prints "seconds raw_bytes wire_bytes" of the finished job.
transfer() {
  local src=$1 dst=$2; shift 2
  local json
  json=$(cli submit "a:$src" "b:$dst" --wait --json "$@")
  echo "$json" > "$work/jobs/$dst.json"  # the last job to each destination, for a closer look
  python3 -c '
import json, sys
j = json.loads(sys.argv[1])
assert j["state"] == "succeeded", j
print(j["finished_at"] - j["started_at"], j["bytes_done"], j["wire_bytes"], " ".join("%s:%d" % (c["codec"], c["raw_bytes"]) for c in j["codecs"]))
' "$json"
}

# Pings B from A every 0.1 s into FILE until stopped.
ping_to() { ip netns exec "$P-a" ping -n -i 0.1 10.77.2.1 > "$1" 2>&1 & echo $!; }
median_ms() { grep -o 'time=[0-9.]*' "$1" | cut -d= -f2 | sort -n | awk '{v[NR]=$1} END {if (NR == 0) print "nan"; else print v[int((NR+1)/2)]}'; }

# Samples the router's bytes towards B every 0.1 s into FILE ("time bytes" lines) until stopped.
sample_link() { ( while true; do echo "$(now) $(tx_bytes)"; sleep 0.1; done ) > "$1" & echo $!; }

generate() {  # generate DIR MIB [keep-random]
  "$barge" bench generate --size "$2MiB" "$1" > /dev/null
  [[ ${3:-} == keep-random ]] || rm -f "$1/random.bin"
  settle
}
# Writes the datasets just made to disk now. Left dirty, the kernel writes them back 30 s later
# (dirty_expire_centisecs), in the middle of a timed job: the destination's O_DIRECT writes then
# took up to 218 ms each, and every stream stalled behind them (the delay part's link idled for
# 0.3–2 s about 12–14 s into its job, in every run).
settle() { sync; }

declare -A report
say() { echo "$*" | tee -a "$work/report.txt"; }

part_delay() {
  say "== utilization and added delay: $LINK, 60 ms tbf queue, fair"
  start_cluster b
  mkdir -p "$work/src/rand"
  head -c $(( ${RANDOM_MIB:-1024} << 20 )) /dev/urandom > "$work/src/rand/r.bin"
  settle
  local p idle cubic
  p=$(ping_to "$work/ping-idle.txt"); sleep 3; kill "$p"
  idle=$(median_ms "$work/ping-idle.txt")
  in_b iperf3 -s -1 -D -p 5201; sleep 0.3
  p=$(ping_to "$work/ping-cubic.txt")
  in_a iperf3 -c 10.77.2.1 -p 5201 -C cubic -t 10 -J > "$work/iperf-alone.json"; kill "$p"
  cubic=$(median_ms "$work/ping-cubic.txt")
  local s t0 t1 b0 b1 out
  s=$(sample_link "$work/link-delay.txt")
  p=$(ping_to "$work/ping-barge.txt")
  t0=$(now); b0=$(tx_bytes)
  out=$(transfer rand rand --codec none)
  t1=$(now); b1=$(tx_bytes)
  kill "$p" "$s"
  python3 - "$out" "$idle" "$(median_ms "$work/ping-cubic.txt")" "$(median_ms "$work/ping-barge.txt")" "$LINK_BPS" "$work/link-delay.txt" <<'PY' | tee -a "$work/report.txt"
import sys
secs, raw, wire = map(float, sys.argv[1].split()[:3])
idle, cubic, barge, link = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
samples = [tuple(map(float, l.split())) for l in open(sys.argv[6]) if len(l.split()) == 2]
# Link utilization while the job moved data: the router's bytes towards B over the samples whose
# rate was above 5% of the link (the scan and the last ack are not the link's fault).
busy = [(b[1] - a[1]) / (b[0] - a[0]) * 8 for a, b in zip(samples, samples[1:]) if b[0] > a[0]]
moving = [r for r in busy if r > 0.05 * link]
print(f"job: {raw/2**20:.0f} MiB in {secs:.2f} s: goodput {wire*8/secs/1e6:.1f} Mbit/s = {wire*8/secs/link:.1%} of the link")
print(f"link utilization while sending (router tx, {len(moving)} samples of 0.1 s): {sum(moving)/len(moving)/link:.1%}  (target >= 90%)")
print(f"ping A→B: idle {idle:.2f} ms; during cubic iperf3 {cubic:.1f} ms (+{cubic-idle:.1f}); during Barge {barge:.2f} ms: median added RTT {barge-idle:.2f} ms  (target <= 25 ms)")
PY
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("cubic iperf3 alone: %.1f Mbit/s" % (j["end"]["sum_received"]["bits_per_second"]/1e6))' "$work/iperf-alone.json" | tee -a "$work/report.txt"
}

part_scavenger() {
  say "== scavenger: a cubic iperf3 flow for 10 s in the middle of a ${SCAVENGER_CC:-scavenger} job, $LINK"
  start_cluster b
  mkdir -p "$work/src/rand2"
  head -c $(( ${RANDOM_MIB:-1024} << 20 )) /dev/urandom > "$work/src/rand2/r.bin"
  settle
  in_b iperf3 -s -1 -D -p 5202; sleep 0.3
  local s job t_start t_end
  s=$(sample_link "$work/link-scavenger.txt")
  job=$(cli submit a:rand2 b:rand2 --codec none --cc "${SCAVENGER_CC:-scavenger}")
  for _ in $(seq 1 200); do
    [[ $(cli status "$job" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_done"])') -gt 0 ]] && break
    sleep 0.1
  done
  sleep 3
  t_start=$(now)
  in_a iperf3 -c 10.77.2.1 -p 5202 -C cubic -t 10 -J > "$work/iperf-scavenger.json"
  t_end=$(now)
  sleep 6
  local state
  state=$(cli status "$job" --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["state"], j["bytes_done"], j["bytes_total"])')
  kill "$s"
  cli cancel "$job" > /dev/null 2>&1 || true
  python3 - "$work/iperf-scavenger.json" "$work/link-scavenger.txt" "$t_start" "$t_end" "$LINK_BPS" "$state" <<'PY' | tee -a "$work/report.txt"
import json, sys
j = json.load(open(sys.argv[1]))
link = float(sys.argv[5]); t_start, t_end = float(sys.argv[3]), float(sys.argv[4])
flow = j["end"]["sum_received"]["bits_per_second"]
print(f"cubic flow during the job: {flow/1e6:.1f} Mbit/s = {flow/link:.1%} of the link  (target >= 80%)")
samples = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 2]
rates = [((a[0] + b[0]) / 2, (b[1] - a[1]) / (b[0] - a[0]) * 8) for a, b in zip(samples, samples[1:]) if b[0] > a[0]]
before = [r for t, r in rates if t_start - 2.5 < t < t_start - 0.5]
during = [r for t, r in rates if t_start + 1 < t < t_end - 0.5]
print(f"link before the flow (Barge alone): {sum(before)/max(1,len(before))/link:.1%}; during it (both): {sum(during)/max(1,len(during))/link:.1%}")
# Taken back: the first moment after the flow ended from which the link is at >= 90% over 0.5 s.
after = [(t, r) for t, r in rates if t > t_end]
back = None
for i in range(len(after)):
    window = [r for t, r in after[i:i + 5]]
    if len(window) == 5 and sum(window) / 5 >= 0.9 * link:
        back = after[i][0] - t_end
        break
print("job took the link back (>= 90%% over 0.5 s) %s after the flow ended  (target <= 3 s)" % (f"{back:.2f} s" if back is not None else "not within 6 s"))
print(f"job state when measured: {sys.argv[6]}")
PY
}

part_slow() {
  say "== compressible data (typed arrays + text logs) at $LINK: Barge auto against the link and rsync"
  start_cluster b
  generate "$work/src/sci" "${SIZE_MIB:-192}"
  local ratio
  ratio=$("$barge" bench compress --codecs auto --link-rate 400Mbit/s --seconds 0.3 --json "$work/src/sci"/* |
    python3 -c 'import json,sys; d=json.load(sys.stdin); r=[x for x in d["total"]["results"] if x["codec"]=="auto"][0]; print(r["ratio"])')
  local out s drops
  s=$(sample_link "$work/link-slow.txt")
  drops=$(tbf_drops)
  # shellcheck disable=SC2086
  out=$(transfer sci sci ${SUBMIT_ARGS:-})
  drops=$(( $(tbf_drops) - drops ))
  kill "$s"
  local times="" results=()
  [[ ${RSYNC:-1} == 0 ]] || times=$(rsync_times "$work/src/sci")  # fails the script if rsync does
  [[ -z $times ]] || mapfile -t results <<< "$times"
  python3 - "$out" "$ratio" "$LINK_BPS" "$drops" "$work/link-slow.txt" "${results[@]}" <<'PY' | tee -a "$work/report.txt"
import sys
secs, raw, wire = map(float, sys.argv[1].split()[:3])
mix = sys.argv[1].split()[3:]
ratio, link, drops = float(sys.argv[2]), float(sys.argv[3]) / 8, int(sys.argv[4])
samples = [tuple(map(float, l.split())) for l in open(sys.argv[5]) if len(l.split()) == 2]
rsync = dict(zip(["rsync", "rsync -z", "rsync -z lz4"], map(float, sys.argv[6:9])))
eff = raw / secs
print(f"dataset {raw/2**20:.0f} MiB; auto's ratio in barge bench compress (400Mbit/s): {ratio:.3f}; in the transfer: {raw/wire:.3f}; mix {' '.join(mix)}")
print(f"Barge: {secs:.2f} s, effective {eff/1e6:.1f} MB/s = {eff/link:.2f}x the link = {eff/(link*ratio):.1%} of link x auto's ratio  (target >= 90%); tbf drops {drops}")
# Where the rest goes: the link's own use while it carried the job (the router's bytes towards B,
# TCP/IP headers included, over the samples, about 0.1 s each, above 5% of the link), and the
# job's rate over those samples only, without its start and end.
spans = [(b[0] - a[0], (b[1] - a[1]) / (b[0] - a[0])) for a, b in zip(samples, samples[1:]) if b[0] > a[0]]
moving = [(dt, r) for dt, r in spans if r > 0.05 * link]
if moving:
    busy = sum(dt for dt, _ in moving)
    print(f"  while the link carried the job ({busy:.1f} s of the {secs:.2f}): it ran at {sum(dt * r for dt, r in moving)/busy/link:.1%} of its rate, headers included"
          f" (TCP's payload is at most 1448 of each 1514 bytes, 95.6%); the job's rate over that time is {raw/busy/(link*ratio):.1%} of link x auto's ratio")
for name, t in rsync.items():
    print(f"{name}: {t:.2f} s, {raw/t/1e6:.1f} MB/s = {raw/t/link:.2f}x the link")
if rsync:
    print(f"Barge against the best rsync: {min(rsync.values())/secs:.2f}x  (target >= 1.5x)")
PY
}

# rsync_times DIR: seconds of rsync, rsync -z and rsync -z --compress-choice=lz4 copying DIR to an
# rsync daemon in B, each into an empty directory, through the same link (one line each).
rsync_times() {
  mkdir -p "$work/rsync-dst"
  cat > "$work/rsyncd.conf" <<CONF
pid file = $work/rsyncd.pid
use chroot = false
[dst]
path = $work/rsync-dst
read only = false
uid = root
gid = root
CONF
  in_b rsync --daemon --config "$work/rsyncd.conf" --address 10.77.2.1 --port 8730
  sleep 0.5
  local variants=("" "-z" "-z --compress-choice=lz4")
  for v in "${variants[@]}"; do
    rm -rf "$work/rsync-dst"/*; sync
    local a b
    a=$(now)
    # shellcheck disable=SC2086
    in_a rsync -a $v "$1/" "rsync://10.77.2.1:8730/dst/" >&2
    b=$(now)
    python3 -c "print($b - $a)"
  done
  kill "$(cat "$work/rsyncd.pid")" 2>/dev/null || true
}

part_codecs() {
  say "== auto against fixed codecs on the mixed dataset (typed arrays, text, random)"
  # 100 Mbit/s: MIXED_MIB per file; 1 Gbit/s and loopback: four times as much, so that each run
  # lasts seconds.
  generate "$work/src/mixed" "${MIXED_MIB:-64}" keep-random
  generate "$work/src/mixed-big" $(( ${MIXED_MIB:-64} * 4 )) keep-random
  local where dataset
  for setting in ${SETTINGS:-100mbit 1gbit loopback}; do
    if [[ $setting == loopback ]]; then where=a; else where=b; "$tb" shape "$setting" 60; fi
    if [[ $setting == 100mbit ]]; then dataset=mixed; else dataset=mixed-big; fi
    start_cluster "$where"
    # Loopback runs last about 2 s with both agents on the same 2 cores, and vary by ±15% from
    # run to run: there each codec runs LOOPBACK_ROUNDS times (in turn) and the median counts
    # (seven: with five, the medians of auto and none, which send the same bytes after auto's
    # first job, still differed by up to 5%).
    # Each round starts one codec further along, so that no codec always runs first (the first
    # job after the cluster starts has no measurements yet, and each later round's first one
    # follows the previous round's slowest codec).
    local rounds=1 line="$setting:" order=(auto $codecs)
    [[ $setting == loopback ]] && rounds=${LOOPBACK_ROUNDS:-7}
    for round in $(seq 0 $(( rounds - 1 ))); do
      local first=$(( round % ${#order[@]} ))
      for codec in "${order[@]:first}" "${order[@]:0:first}"; do
        rm -rf "$work/dst/m-$codec"
        local out
        out=$(transfer "$dataset" "m-$codec" --codec "$codec")
        line+=" $codec=$(echo "$out" | cut -d' ' -f1)"
      done
    done
    python3 - "$line" <<'PY' | tee -a "$work/report.txt"
import statistics, sys
name, *pairs = sys.argv[1].split()
runs = {}
for p in pairs:
    codec, t = p.split("=")
    runs.setdefault(codec, []).append(float(t))
times = {c: statistics.median(ts) for c, ts in runs.items()}
best_fixed = min((t, c) for c, t in times.items() if c != "auto")
print(f"{name:10} " + "  ".join(f"{c} {t:.2f} s" for c, t in times.items()))
if len(runs["auto"]) > 1:
    print(f"{'':10} medians of {len(runs['auto'])} runs each; every run: " +
          "  ".join(f"{c} " + "/".join(f"{t:.2f}" for t in ts) for c, ts in runs.items()))
print(f"{'':10} auto / best fixed ({best_fixed[1]}): {times['auto']/best_fixed[0]:.3f}  (target <= 1.05)")
PY
  done
  "$tb" shape "$LINK" 60
}

: > "$work/report.txt"
for part in $parts; do "part_$part"; done
echo
echo "== report ($work/report.txt)"
cat "$work/report.txt"
