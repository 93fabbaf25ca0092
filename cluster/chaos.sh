#!/usr/bin/env bash
# Crash runs by hand: a coordinator and two agents per site sharing each site's root (as on a
# parallel file system), one job of a mixed dataset, and one process killed at a random moment of
# the job. The process comes back; the job must succeed on its own, and the destination must equal
# the source (cluster/tree-equal.py: bytes, modes, mtimes, no .barge-partial left).
#
#   cluster/chaos.sh                                   # 6 runs, each victim in turn
#   RUNS=20 VICTIMS="coordinator b1" cluster/chaos.sh
#   SIG=TERM RESTART_DELAY=2 cluster/chaos.sh
#   SIG=STOP RESTART_DELAY=20 cluster/chaos.sh        # hung, not dead: stopped, then continued
#   TIER='cold:typed/**;cold:small/d1*/**;hot' cluster/chaos.sh   # kills during cold placement too
#
# RUNS (6), VICTIMS (coordinator a1 a2 b1 b2, taken in turn), SIG (KILL; STOP stops the process and
# continues it after RESTART_DELAY rather than starting it again), RESTART_DELAY (0.5 s),
# RATE (the job's --bwlimit, 150MiB/s, so that it lasts a few seconds), LARGE_MIB (2 files, 96),
# SMALL (3000 files of 1-32 KiB), TIMEOUT (seconds a job may take, 180), BARGE_BIN (a release
# barge, else built), KEEP_LOGS=1 (logs of every run in bench-out/logs-chaos-N), TIER (a --tier
# policy for the job: b1 and b2 then share a cold store, and after the job `barge verify` must pass
# and `barge tier promote` must bring the cold files back, before the trees are compared).
# The summary goes to bench-out/chaos.txt. Exit status 1 if any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
source cluster/bench-lib.sh
bench_init chaos

runs=${RUNS:-6}
read -r -a victims <<< "${VICTIMS:-coordinator a1 a2 b1 b2}"
sig=${SIG:-KILL}
delay=${RESTART_DELAY:-0.5}
rate=${RATE:-150MiB/s}
timeout=${TIMEOUT:-180}

# --- the dataset: large files (ranges), typed arrays and text, small files, odd names ---
src=$work/src/ds
mkdir -p "$src/big" "$src/typed" "$src/odd/empty dir"
for i in 1 2; do head -c "$(( ${LARGE_MIB:-96} << 20 ))" /dev/urandom > "$src/big/r$i.bin"; done
"$barge" bench generate --size 8MiB "$src/typed" > /dev/null
python3 - "$src" "${SMALL:-3000}" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
for i in range(n):
    d = os.path.join(root, "small", f"d{i % 30:02}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05}.txt"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1, 32) << 10))
odd = os.path.join(root, "odd")
for name, data in [("with space.txt", b"a"), ("ünïcødé-名前.dat", b"b" * 5000), ("x" * 250, b"long name"),
                   ("empty", b""), ("-starts-with-dash", b"d"), ("new\nline", b"n"),
                   # Two names that differ only in Unicode normalisation: two files to Linux.
                   ("\u00e9.txt", b"composed" * 100), ("e\u0301.txt", b"decomposed" * 90)]:
    with open(os.path.join(odd, name), "wb") as f:
        f.write(data)
os.chmod(os.path.join(odd, "empty"), 0o600)
os.chmod(os.path.join(odd, "with space.txt"), 0o755)
os.utime(os.path.join(odd, "-starts-with-dash"), ns=(1_000_000_123, 1_000_000_123))
PY
echo "dataset: $(du -sh "$src" | cut -f1) in $(find "$src" -type f | wc -l) files" >&2

(umask 077; head -c 32 /dev/urandom | base64 > "$work/token")
export BARGE_TOKEN_FILE=$work/token
agent_port=$(free_port); http_port=$(free_port)
export BARGE_COORDINATOR=http://127.0.0.1:$http_port BARGE_API_TOKEN_FILE=$work/state/admin.token
declare -A pid_of

start() {  # start NAME: the coordinator, or agent a1, a2 (root src) or b1, b2 (root dst)
  local name=$1
  if [[ $name == coordinator ]]; then
    "$barge" coordinator --state "$work/state" --listen "127.0.0.1:$agent_port" --http "127.0.0.1:$http_port" \
      >> "$work/coordinator.log" 2>&1 &
  else
    local root=$work/src
    local cold=()
    [[ $name == b* ]] && root=$work/dst && cold=(--cold "$work/cold")
    "$barge" agent --coordinator "127.0.0.1:$agent_port" --name "$name" --site "${name:0:1}" --root "$root" --listen 127.0.0.1:0 \
      "${cold[@]}" >> "$work/$name.log" 2>&1 &
  fi
  pid_of[$name]=$!
  pids+=($!)
}

job_state() { "$barge" status "$1" --json --timeout 2 2>/dev/null | grep -o '"state":"[a-z]*"' | head -1 | cut -d'"' -f4 || true; }

failed=0
: > "$out/chaos.txt"
for run in $(seq 1 "$runs"); do
  victim=${victims[$(( (run - 1) % ${#victims[@]} ))]}
  rm -rf "$work/dst" "$work/cold" "$work/state" "$work/src/.barge" "$work"/*.log
  mkdir -p "$work/dst" "$work/cold"
  for name in coordinator a1 a2 b1 b2; do start "$name"; [[ $name == coordinator ]] && sleep 0.5; done
  for _ in $(seq 1 100); do
    [[ $("$barge" agents --json 2>/dev/null | grep -o '"up"' | wc -l) -ge 4 ]] && break
    sleep 0.2
  done
  tier=()
  [[ -n ${TIER:-} ]] && tier=(--tier "$TIER")
  job=$("$barge" submit a:/ds b:/ds --bwlimit "$rate" "${tier[@]}" --json | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
  started=$(now)
  # Killed once the job is moving, at a random moment of its first few seconds.
  kill_at=$(calc "0.2 + ($RANDOM % 3000) / 1000")
  sleep "$kill_at"
  state=$(job_state "$job")
  if [[ $sig == STOP ]]; then
    # A hung process (a stalled disk, a paused VM): stopped for RESTART_DELAY, then let go on.
    kill -STOP "${pid_of[$victim]}"
    # The job may end while the victim is still stopped (its units given to other agents): that
    # moment is the job's time, not the end of the stop.
    stopped_at=$(now)
    while [[ $(calc "$(now) - $stopped_at < $delay") == 1 ]]; do
      if [[ -z ${ended:-} ]]; then
        s=$(job_state "$job")
        if [[ $s == succeeded || $s == failed || $s == cancelled ]]; then ended=$(now); fi
      fi
      sleep 0.25
    done
    kill -CONT "${pid_of[$victim]}"
  else
    kill "-$sig" "${pid_of[$victim]}" 2>/dev/null || true
    wait "${pid_of[$victim]}" 2>/dev/null || true
    sleep "$delay"
    start "$victim"
  fi
  while :; do
    s=$(job_state "$job")
    [[ $s == succeeded || $s == failed || $s == cancelled ]] && break
    if [[ $(calc "$(now) - $started > $timeout") == 1 ]]; then s="still ${s:-unknown} after ${timeout}s"; break; fi
    sleep 0.25
  done
  took=$(calc "${ended:-$(now)} - $started")
  [[ -n ${ended:-} ]] && s="$s (while stopped)"
  # Ended before the victim was hit: the run proves nothing about the crash, and says so.
  if [[ ${state:-} == succeeded ]]; then s="succeeded (before the kill)"; took=$kill_at; fi
  unset ended
  # With a tier policy, the cold files must verify where they lie, then come back whole.
  if [[ $s == succeeded* && -n ${TIER:-} ]]; then
    if ! check=$("$barge" verify "$job" 2>&1 && "$barge" tier promote b:/ds --wait 2>&1); then s="$s, then cold tier FAILED"; fi
  fi
  if [[ $s == succeeded* && $s != *FAILED* ]] && check=$(cluster/tree-equal.py "$src" "$work/dst/ds" 2>&1); then
    verdict=ok
  else
    verdict=FAILED; failed=1
  fi
  line=$(printf 'run %2d: %-11s killed (SIG%s) at %4.1f s while %-9s job %s in %5.1f s, tree %s' \
    "$run" "$victim" "$sig" "$kill_at" "${state:-queued}" "$s" "$took" "$(tail -1 <<< "${check:-not checked}")")
  echo "$line" | tee -a "$out/chaos.txt"
  [[ $verdict == ok ]] || head -20 <<< "${check:-}" | tee -a "$out/chaos.txt"
  if [[ ${KEEP_LOGS:-0} == 1 || $verdict != ok ]]; then mkdir -p "$out/logs-chaos-$run" && cp "$work"/*.log "$out/logs-chaos-$run/"; fi
  for name in coordinator a1 a2 b1 b2; do kill "${pid_of[$name]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  unset check
done
exit "$failed"
