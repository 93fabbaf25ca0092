#!/usr/bin/env bash
# The fixed cost of a job over a long round trip: how long from `submit` to the first data byte on
# the wire, and from the last data byte to `submit --wait` returning. Needs root (network
# namespaces, tcpdump); exits 77 with the reason otherwise.
#
#   sudo cluster/bench-fixed-cost.sh              # 1 Gbit/s, RTT 50 ms, 5 rounds
#   RTT_MS=100 ROUNDS=3 cluster/bench-fixed-cost.sh
#
# Each round starts a new coordinator and two new agents (a1 beside the coordinator in A, b1 in B,
# across the delay line), so every data-plane connection is new, as for a first job. The job is
# one 8 MiB file cut into two ranges and a finish (`coordinator --unit-size 4MiB`) and one small
# file: it has every kind of unit (ranges, a finish, a small-file batch, directories), and moves
# little data. tcpdump in B sees A's packets: the first data byte is the first packet of at least
# 1,000 bytes of payload from A's data plane, the last data byte the last such packet.
#
# Knobs: BARGE_BIN (a built binary; default: a release build), RTT_MS (default 50), RATE (default
# 1gbit), ROUNDS (default 5), WORK_DIR (default /tmp/barge-bench-fixed-cost), DL_BIN (where the
# delay line is built; ../shared is read-only in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [[ $(id -u) -ne 0 ]]; then echo "bench-fixed-cost: needs root (network namespaces, tcpdump); skipped" >&2; exit 77; fi
./cluster/install-deps.sh --peers > /dev/null
if [[ -n ${BARGE_BIN:-} ]]; then barge=$BARGE_BIN; else swift build -c release --product barge >&2; barge=$repo/.build/release/barge; fi
export DL_BIN=${DL_BIN:-$repo/.build/delayline/delayline} DL_PREFIX=bfc DL_NET=10.238
mkdir -p "$(dirname "$DL_BIN")"
testbed=$repo/../shared/tools/delayline/testbed.sh
dl_rundir=${DL_RUNDIR:-${TMPDIR:-/tmp}/delayline-$DL_PREFIX-r}
rtt=${RTT_MS:-50}
work=${WORK_DIR:-/tmp/barge-bench-fixed-cost}
A=10.238.1.1 B=10.238.2.1

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  cluster/delayline-steady.sh restore "$dl_rundir" || true
  "$testbed" down > /dev/null 2>&1 || true
}
trap cleanup EXIT
trap "exit 130" INT TERM

rm -rf "$work"; mkdir -p "$work/src/ds" "$work/logs"
(umask 077; head -c 32 /dev/urandom | base64 > "$work/token")
export BARGE_TOKEN_FILE=$work/token
head -c $((8 << 20)) /dev/urandom > "$work/src/ds/big.bin"
head -c 1000 /dev/urandom > "$work/src/ds/small.txt"
sync
"$testbed" up "${RATE:-1gbit}" $((rtt / 2)) > "$work/logs/testbed.log"
# The delay line at real-time priority and a deeper router backlog (cluster/delayline-steady.sh).
cluster/delayline-steady.sh up "$dl_rundir" 2>> "$work/logs/testbed.log"

cli() { ip netns exec bfc-a env BARGE_COORDINATOR=http://$A:7480 BARGE_API_TOKEN_FILE="$work/state/admin.token" "$barge" "$@"; }
results=()
for r in $(seq 1 "${ROUNDS:-5}"); do
  rm -rf "$work/state" "$work/dst"; mkdir -p "$work/dst"
  ip netns exec bfc-a "$barge" coordinator --state "$work/state" --listen $A:7470 --http $A:7480 --unit-size 4MiB > "$work/logs/coordinator.log" 2>&1 &
  pids=($!)
  ip netns exec bfc-a "$barge" agent --coordinator $A:7470 --name a1 --site a --root "$work/src" --listen $A:0 > "$work/logs/a1.log" 2>&1 &
  pids+=($!)
  ip netns exec bfc-b "$barge" agent --coordinator $A:7470 --name b1 --site b --root "$work/dst" --listen $B:0 > "$work/logs/b1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    [[ $(cli agents --json 2>/dev/null | grep -o '"state":"up"' | wc -l) -ge 2 ]] && break
    sleep 0.2
  done
  sleep 1
  ip netns exec bfc-b tcpdump -i bfc-b0 -n -tt -q "tcp and src host $A and not port 7470" -w "$work/cap.pcap" 2> /dev/null &
  dump=$!
  sleep 1
  t0=$(date +%s.%N)
  cli submit a:/ds b:/ds --wait --json > "$work/job.json" 2> "$work/logs/submit.log"
  t1=$(date +%s.%N)
  sleep 0.5
  kill "$dump"; wait "$dump" 2> /dev/null || true
  tcpdump -r "$work/cap.pcap" -n -tt 2> /dev/null > "$work/cap.txt"
  line=$(python3 - "$t0" "$t1" "$work/cap.txt" "$work/job.json" "$rtt" <<'PY'
import json, re, sys
t0, t1 = map(float, sys.argv[1:3])
rtt = float(sys.argv[5]) / 1000
job = json.load(open(sys.argv[4]))
assert job["state"] == "succeeded", job
data = []
for l in open(sys.argv[3]):
    m = re.search(r"length (\d+)", l)
    if m and int(m.group(1)) >= 1000:
        data.append(float(l.split()[0]))
first, last = data[0] - t0, t1 - data[-1]
print(f"{t1 - t0:.3f} {first:.3f} {last:.3f} {first / rtt:.1f} {last / rtt:.1f}")
PY
)
  read -r total first last first_rtts last_rtts <<< "$line"
  echo "round $r: submit to wait $total s; submit to first data byte $first s ($first_rtts RTTs); last data byte to wait returning $last s ($last_rtts RTTs)"
  results+=("$line")
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
done
printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
print(f"median of {len(rows)} at RTT '"$rtt"' ms: submit to wait {med[0]:.3f} s; submit to first data byte {med[1]:.3f} s ({med[3]:.1f} RTTs); last data byte to wait {med[2]:.3f} s ({med[4]:.1f} RTTs)")
print("target: each <= 0.1 s plus a few RTTs")
'
