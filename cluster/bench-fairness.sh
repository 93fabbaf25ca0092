#!/usr/bin/env bash
# Jobs side by side on the same agents: how long a job of 200 MiB takes while a job capped at
# 1 MiB/s (160 MiB, 4 MiB units, so it has many) runs beside it, against the same job alone.
# A capped job holds only the units its cap needs (SchedulingPolicy.limitUnits); before, it came
# to hold every unit slot of its agents and the job beside it waited for it (145 s against 1 s).
#
#   cluster/bench-fairness.sh
#   BARGE_BIN=/tmp/barge-old cluster/bench-fairness.sh
#
# The summary goes to bench-out/fairness.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
source cluster/bench-lib.sh
bench_init fairness

COORDINATOR_ARGS="--unit-size 4MiB" bench_cluster
mkdir -p "$work/a/capped" "$work/a/alone" "$work/a/beside"
for i in $(seq 1 40); do head -c $((4 << 20)) /dev/urandom > "$work/a/capped/c$i.bin"; done
for i in $(seq 1 50); do head -c $((4 << 20)) /dev/urandom > "$work/a/alone/f$i.bin"; done
cp -r "$work/a/alone/." "$work/a/beside/"

t0=$(now); "$barge" submit a:/alone b:/alone --wait > /dev/null; t1=$(now)
alone=$(calc "$t1 - $t0")
capped=$("$barge" submit a:/capped b:/capped --bwlimit 1MiB/s)
sleep 3  # it takes its units first
t0=$(now); "$barge" submit a:/beside b:/beside --wait > /dev/null; t1=$(now)
beside=$(calc "$t1 - $t0")
"$barge" cancel "$capped" > /dev/null || true
{
  echo "== fairness ($("$barge" --version)), $(date -u +%FT%TZ)"
  printf '200 MiB job alone: %.1f s; beside a job capped at 1 MiB/s: %.1f s (%.1fx)\n' "$alone" "$beside" "$(calc "$beside / $alone")"
} | tee -a "$out/fairness.txt"
