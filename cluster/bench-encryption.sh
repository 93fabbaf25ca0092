#!/usr/bin/env bash
# What encrypting every connection costs: the same 1 GiB of incompressible files sent on loopback
# by an encrypted cluster (protocol 8, the default) and by one in clear (--insecure-plaintext),
# taking turns in one run, with the CPU seconds of both agents per run. It ends with
# `openssl speed -evp aes-256-gcm` (16 KiB blocks, one core), the reference for the cipher.
#
#   cluster/bench-encryption.sh                  # RUNS=3 each, 1 GiB in 16 files
#   BARGE_BIN=.build-rel/release/barge RUNS=2 cluster/bench-encryption.sh
#
# Output goes to bench-out/encryption.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=${SIZE_MIB:-1024}
files=${FILES:-16}
runs=${RUNS:-3}
source cluster/bench-lib.sh
bench_init encryption

echo "generating $files files of $((size_mib / files)) MiB (random) …" >&2
mkdir -p "$work/a/ds"
for i in $(seq 1 "$files"); do openssl rand -out "$work/a/ds/part-$i.bin" $(((size_mib / files) << 20)); done
bytes=$(du -sb "$work/a/ds" | cut -f1)
cat "$work"/a/ds/* > /dev/null
(umask 077; head -c 32 /dev/urandom | base64 > "$work/token")
export BARGE_TOKEN_FILE=$work/token

# start_cluster NAME ARGS…: a coordinator and agents a1 (site a, the shared source) and b1 (its
# own destination) with ARGS; sets url_NAME, a1_NAME, b1_NAME.
start_cluster() {
  local name=$1; shift
  local agent_port http_port
  agent_port=$(free_port); http_port=$(free_port)
  mkdir -p "$work/$name/b"
  "$barge" coordinator --state "$work/$name/state" --listen "127.0.0.1:$agent_port" --http "127.0.0.1:$http_port" "$@" > "$work/$name/coordinator.log" 2>&1 &
  pids+=($!)
  sleep 0.5
  "$barge" agent --coordinator "127.0.0.1:$agent_port" --name a1 --site a --root "$work/a" "$@" > "$work/$name/a1.log" 2>&1 &
  pids+=($!); printf -v "a1_$name" %s $!
  "$barge" agent --coordinator "127.0.0.1:$agent_port" --name b1 --site b --root "$work/$name/b" "$@" > "$work/$name/b1.log" 2>&1 &
  pids+=($!); printf -v "b1_$name" %s $!
  printf -v "url_$name" %s "http://127.0.0.1:$http_port"
  for _ in $(seq 1 100); do
    [[ $(BARGE_COORDINATOR="http://127.0.0.1:$http_port" BARGE_API_TOKEN_FILE="$work/$name/state/admin.token" "$barge" agents --json 2>/dev/null | grep -o '"up"' | wc -l) -ge 2 ]] && return
    sleep 0.2
  done
  echo "the $name cluster did not come up; see $work/$name/*.log" >&2
  exit 1
}
start_cluster sealed
start_cluster clear --insecure-plaintext

# run NAME N: one transfer; appends "seconds cpu_source cpu_destination" to $work/NAME.runs.
run() {
  local name=$1 n=$2 url a1 b1
  url=url_$1; a1=a1_$1; b1=b1_$1
  rm -rf "$work/$name/b/copy-$n"; sync
  local c0a c0b t0 t1
  c0a=$(cpu_secs "${!a1}"); c0b=$(cpu_secs "${!b1}")
  t0=$(now)
  BARGE_COORDINATOR=${!url} BARGE_API_TOKEN_FILE="$work/$name/state/admin.token" "$barge" submit a:/ds "b:/copy-$n" --wait --json > "$work/$name/job-$n.json"
  t1=$(grep -o '"finished_at":[0-9.]*' "$work/$name/job-$n.json" | cut -d: -f2)
  cmp -s "$work/a/ds/part-1.bin" "$work/$name/b/copy-$n/part-1.bin" || { echo "$name copy differs" >&2; exit 1; }
  echo "$(calc "$t1 - $t0") $(calc "$(cpu_secs "${!a1}") - $c0a") $(calc "$(cpu_secs "${!b1}") - $c0b")" >> "$work/$name.runs"
  echo "$name run $n: $(tail -1 "$work/$name.runs")" >&2
  rm -rf "$work/$name/b/copy-$n"
}
for n in $(seq 1 "$runs"); do run clear "$n"; run sealed "$n"; done

summary() { sort -g "$work/$1.runs" | awk -v b="$bytes" '{ s[NR]=$1; a+=$2; d+=$3 } END { m = (NR % 2) ? s[(NR+1)/2] : (s[NR/2] + s[NR/2+1]) / 2;
  printf "%.2f s best, %.2f s median (%.0f MB/s best); CPU per run: source %.2f s, destination %.2f s", s[1], m, b / s[1] / 1e6, a / NR, d / NR }'; }
{
  echo "encryption benchmark, $(date -u +%F), $(nproc) cores, $files files, $bytes bytes of random data, $runs runs each, taking turns"
  echo "encrypted (sealed, AES-256-GCM):   $(summary sealed)"
  echo "in clear (--insecure-plaintext):       $(summary clear)"
  best_s=$(sort -g "$work/sealed.runs" | head -1 | cut -d' ' -f1); best_c=$(sort -g "$work/clear.runs" | head -1 | cut -d' ' -f1)
  printf "encrypted / clear throughput: %.2f best against best (target >= 0.9)\n" "$(calc "$best_c / $best_s")"
  echo "reference, openssl speed -evp aes-256-gcm (one core):"
  openssl speed -evp aes-256-gcm -seconds 1 -bytes 16384 2>/dev/null | tail -1
} | tee "$out/encryption.txt"
