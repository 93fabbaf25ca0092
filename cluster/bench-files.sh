#!/usr/bin/env bash
# Many files, side by side with an rsync daemon on loopback, in one run:
#
# 1. small files: SMALL files of 1-32 KiB (random bytes), sent RUNS times into fresh
#    directories on one coordinator (does the tenth job take as long as the first?), each run
#    followed by the same copy with rsync -a to an rsync daemon (which does not sync), by
#    rsync -a --fsync (the daemon syncs each file), and by
#    the durable floor: a Python copy that writes every file, runs one syncfs, renames them all
#    and syncs each directory (what no durable copy on this disk can beat by much);
# 2. unchanged re-sync: RESYNC empty files in directories of 1,000, already at the destination
#    (cp -a), re-synced by Barge (quick check) and by rsync (its quick check), in turns, twice,
#    after one walk of every tree (so neither tool warms the cache for the other);
# 3. unchanged re-sync by content: the small files of the first run sent again with
#    `submit --checksum`, and with `rsync -a --checksum` to the daemon's copy of them, in turns,
#    twice; each says how many destination files it gave a new inode (rsync: none);
# 4. the same for MID files of 2-16 MiB (random bytes, each more than one chunk and within a
#    unit), and for BIG files of 600 MiB (each in ranges of a unit, 64 MiB): sent once, then
#    re-synced unchanged with `submit --checksum` and with `rsync -a --checksum`, in turns,
#    twice; each says how many files got a new inode, and the bytes Barge's destination agent
#    wrote (/proc/PID/io), chunk index included.
#
#   cluster/bench-files.sh                              # 20,000 small files x 10, 1,000,000 unchanged
#   SMALL=2000 RUNS=2 RESYNC=20000 MID=8 cluster/bench-files.sh   # a quick look
#   BARGE_WIRE_MAX_VERSION=16 cluster/bench-files.sh     # the cluster as protocol 16 (keeps no file in place)
#
# BARGE_BIN: a release barge already built (else this builds one); SUBMIT_ARGS: extra arguments
# for the small-file jobs (--cc off, say); TRACE=1: BARGE_TRACE_LANES in the agents, whose logs
# are kept in bench-out/. Output: bench-out/files.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

small=${SMALL:-20000}
runs=${RUNS:-10}
resync=${RESYNC:-1000000}
mid=${MID:-48}
big=${BIG:-2}
source cluster/bench-lib.sh
bench_init files
[[ -n ${TRACE:-} ]] && export BARGE_TRACE_LANES=1

echo "generating $small small files and $resync empty ones …" >&2
# The destinations of both tools share a fresh file system (as root).
# One inode per 4 KiB: the re-sync's files are there twice (one copy per tool), and ext4's
# default of one per 16 KiB gives a 16G file system only 1 M inodes.
bench_fresh_fs "$work/dst" "${DST_FS_SIZE:-16G}" 4096
mkdir -p "$work/dst/b" "$work/dst/r"
ln -s "$work/dst/b" "$work/b"
ln -s "$work/dst/r" "$work/r"
mkdir -p "$work/a/small" "$work/a/many" "$work/a/mid" "$work/a/big"
python3 - "$work/a/small" "$small" "$work/a/many" "$resync" "$work/a/mid" "$mid" "$work/a/big" "$big" <<'PY'
import os, random, sys
small, n, many, m = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
middle, k, large, b = sys.argv[5], int(sys.argv[6]), sys.argv[7], int(sys.argv[8])
r = random.Random(7)
for i in range(n):
    d = f"{small}/d{i // 1000:03d}"
    if i % 1000 == 0: os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:06d}", "wb") as f: f.write(r.randbytes(r.randint(1024, 32768)))
for i in range(m):
    d = f"{many}/d{i // 1000:04d}"
    if i % 1000 == 0: os.makedirs(d, exist_ok=True)
    open(f"{d}/f{i:07d}", "wb").close()
for i in range(k):
    with open(f"{middle}/m{i:04d}", "wb") as f: f.write(os.urandom(r.randint(2 << 20, 16 << 20)))
for i in range(b):
    with open(f"{large}/b{i:02d}", "wb") as f:
        for _ in range(75): f.write(os.urandom(8 << 20))
PY
mid_bytes=$(du -sb --apparent-size "$work/a/mid" | cut -f1)
big_bytes=$(du -sb --apparent-size "$work/a/big" | cut -f1)
bytes=$(du -sb --apparent-size "$work/a/small" | cut -f1)
cp -a "$work/a/many" "$work/b/many"
cp -a "$work/a/many" "$work/r/many"
cat "$work"/a/small/*/* > /dev/null

bench_cluster
bench_rsyncd

: > "$work/small.txt"
for run in $(seq 1 "$runs"); do
  sync
  c0=("$(cpu_secs "$coordinator")" "$(cpu_secs "$a1")" "$(cpu_secs "$b1")")
  t0=$(now)
  "$barge" submit a:/small "b:/small-$run" --wait --json ${SUBMIT_ARGS:-} > "$work/barge-$run.json"
  # The job's own end: the CLI polls twice a second, which would add up to half a second.
  t1=$(field finished_at "$work/barge-$run.json")
  barge_secs=$(calc "$t1 - $t0")
  cpu="$(calc "$(cpu_secs "$coordinator") - ${c0[0]}") $(calc "$(cpu_secs "$a1") - ${c0[1]}") $(calc "$(cpu_secs "$b1") - ${c0[2]}")"
  # Nothing is removed between runs: one tool's rm would charge the next run (see bench_fresh_fs).
  sync
  t0=$(now)
  rsync -a "$work/a/small/" "rsync://127.0.0.1:$rsync_port/dst/small-$run/"
  t1=$(now)
  rsync_secs=$(calc "$t1 - $t0")
  # rsync made durable: --fsync syncs each file the daemon writes (rsync >= 3.2.4).
  sync
  t0=$(now)
  rsync -a --fsync "$work/a/small/" "rsync://127.0.0.1:$rsync_port/dst/fsync-$run/"
  t1=$(now)
  fsync_secs=$(calc "$t1 - $t0")
  # The least a durable copy costs on this disk: one process reads every file and writes it under
  # a temporary name, one syncfs, every rename, one fsync per directory (no network, no checks).
  sync
  floor_secs=$(cluster/durable-floor.py "$work/a/small" "$work/r/floor-$run")
  [[ $(field files_done "$work/barge-$run.json") == "$small" ]] || { echo "barge run $run did not move every file" >&2; exit 1; }
  echo "$run $barge_secs $rsync_secs $cpu $floor_secs $fsync_secs" | tee -a "$work/small.txt" >&2
done

# Both tools read the same source tree, so whichever goes first would warm it for the other (the
# small-file runs above have pushed it out of the cache): both trees are walked once first, and the
# tools then take turns, twice.
du -s "$work/a/many" "$work/b/many" "$work/r/many" > /dev/null
: > "$work/resync.txt"
for turn in 1 2; do
  sync
  c0=("$(cpu_secs "$coordinator")" "$(cpu_secs "$a1")" "$(cpu_secs "$b1")")
  t0=$(now)
  "$barge" submit a:/many b:/many --wait --json > "$work/resync.json"
  t1=$(field finished_at "$work/resync.json")
  cpu="$(calc "$(cpu_secs "$coordinator") - ${c0[0]}") $(calc "$(cpu_secs "$a1") - ${c0[1]}") $(calc "$(cpu_secs "$b1") - ${c0[2]}")"
  barge_resync=$(calc "$t1 - $t0")
  sync
  t0=$(now)
  rsync -a "$work/a/many/" "rsync://127.0.0.1:$rsync_port/dst/many/"
  t1=$(now)
  echo "$turn $barge_resync $(calc "$t1 - $t0") $(field skipped_files "$work/resync.json") $(field wire_bytes "$work/resync.json") $cpu" >> "$work/resync.txt"
done

# Content compared: each tool re-syncs its own first copy, unchanged, reading every file.
inodes() { find "$1" -type f -printf '%i %P\n' | sort -k2; }
: > "$work/checksum.txt"
for turn in 1 2; do
  before_b=$(inodes "$work/b/small-1"); before_r=$(inodes "$work/r/small-1")
  sync
  c0=("$(cpu_secs "$coordinator")" "$(cpu_secs "$a1")" "$(cpu_secs "$b1")")
  t0=$(now)
  "$barge" submit a:/small b:/small-1 --checksum --wait --json > "$work/checksum.json"
  t1=$(field finished_at "$work/checksum.json")
  cpu="$(calc "$(cpu_secs "$coordinator") - ${c0[0]}") $(calc "$(cpu_secs "$a1") - ${c0[1]}") $(calc "$(cpu_secs "$b1") - ${c0[2]}")"
  barge_checksum=$(calc "$t1 - $t0")
  sync
  t0=$(now)
  rsync -a --checksum "$work/a/small/" "rsync://127.0.0.1:$rsync_port/dst/small-1/"
  t1=$(now)
  new_b=$(diff <(echo "$before_b") <(inodes "$work/b/small-1") | grep -c '^>' || true)
  new_r=$(diff <(echo "$before_r") <(inodes "$work/r/small-1") | grep -c '^>' || true)
  echo "$turn $barge_checksum $(calc "$t1 - $t0") $new_b $new_r $(field wire_bytes "$work/checksum.json") $cpu" >> "$work/checksum.txt"
done

# Files of several chunks, compared by content: the first copy of each, then each tool re-syncs it.
written() { awk '/^write_bytes/ { print $2 }' "/proc/$1/io"; }
for set in mid big; do
  "$barge" submit "a:/$set" "b:/$set" --wait --json > "$work/$set-first.json"
  rsync -a "$work/a/$set/" "rsync://127.0.0.1:$rsync_port/dst/$set/"
  sleep 2.5  # a file changed in the last 2 s is not kept in place (racily clean)
  : > "$work/$set.txt"
  for turn in 1 2; do
    before_b=$(inodes "$work/b/$set"); before_r=$(inodes "$work/r/$set")
    sync
    c0=("$(cpu_secs "$coordinator")" "$(cpu_secs "$a1")" "$(cpu_secs "$b1")")
    w0=$(written "$b1")
    t0=$(now)
    "$barge" submit "a:/$set" "b:/$set" --checksum --wait --json > "$work/$set.json"
    t1=$(field finished_at "$work/$set.json")
    sync
    w1=$(written "$b1")
    cpu="$(calc "$(cpu_secs "$coordinator") - ${c0[0]}") $(calc "$(cpu_secs "$a1") - ${c0[1]}") $(calc "$(cpu_secs "$b1") - ${c0[2]}")"
    barge_set=$(calc "$t1 - $t0")
    t0=$(now)
    rsync -a --checksum "$work/a/$set/" "rsync://127.0.0.1:$rsync_port/dst/$set/"
    t1=$(now)
    new_b=$(diff <(echo "$before_b") <(inodes "$work/b/$set") | grep -c '^>' || true)
    new_r=$(diff <(echo "$before_r") <(inodes "$work/r/$set") | grep -c '^>' || true)
    echo "$turn $barge_set $(calc "$t1 - $t0") $new_b $new_r $(field wire_bytes "$work/$set.json") $((w1 - w0)) $cpu" >> "$work/$set.txt"
  done
done

{
  echo "files benchmark, $(date -u +%F), $(nproc) cores, loopback, one source and one destination agent"
  echo "small files: $small files of 1-32 KiB, $bytes bytes, $runs runs on one coordinator (each: barge s, rsync daemon s)"
  awk -v b="$bytes" '{ printf "  run %2d: barge %.2f s (%.1f MB/s), rsync %.2f s (%.1f MB/s), barge/rsync throughput %.2f; rsync --fsync %.2f s, barge/that %.2f; durable floor %.2f s; CPU s coordinator %.2f, source %.2f, destination %.2f\n", $1, $2, b / $2 / 1e6, $3, b / $3 / 1e6, $3 / $2, $8, $8 / $2, $7, $4, $5, $6 }' "$work/small.txt"
  awk '{ n++; b[n] = $2; r += $3 / $2; f += $8 / $2 } END { printf "  mean barge/rsync throughput %.2f, barge/(rsync --fsync) %.2f; first run %.2f s, last %.2f s (last/first %.2f)\n", r / n, f / n, b[1], b[n], b[n] / b[1] }' "$work/small.txt"
  echo "unchanged re-sync of $resync empty files in directories of 1,000:"
  awk '{ printf "  turn %d: barge %.2f s (skipped %s files, %s bytes on the wire; CPU s coordinator %.2f, source %.2f, destination %.2f); rsync daemon %.2f s; barge/rsync time %.2f\n", $1, $2, $4, $5, $6, $7, $8, $3, $2 / $3 }' "$work/resync.txt"
  echo "unchanged re-sync of the $small small files with --checksum (barge submit --checksum, rsync -a --checksum to the daemon):"
  awk '{ printf "  turn %d: barge %.2f s (%s files given a new inode, %s bytes on the wire; CPU s coordinator %.2f, source %.2f, destination %.2f); rsync daemon %.2f s (%s new inodes); barge/rsync time %.2f\n", $1, $2, $4, $6, $7, $8, $9, $3, $5, $2 / $3 }' "$work/checksum.txt"
  echo "unchanged re-sync of $mid files of 2-16 MiB ($mid_bytes bytes) with --checksum, protocol ${BARGE_WIRE_MAX_VERSION:-current}:"
  awk -v b="$mid_bytes" '{ printf "  turn %d: barge %.2f s (%s files given a new inode, %s bytes on the wire, %.1f MiB written by the destination agent; CPU s coordinator %.2f, source %.2f, destination %.2f); rsync daemon %.2f s (%s new inodes); barge/rsync time %.2f\n", $1, $2, $4, $6, $7 / 1048576, $8, $9, $10, $3, $5, $2 / $3 }' "$work/mid.txt"
  echo "unchanged re-sync of $big files of 600 MiB ($big_bytes bytes, in ranges) with --checksum, protocol ${BARGE_WIRE_MAX_VERSION:-current}:"
  awk '{ printf "  turn %d: barge %.2f s (%s files given a new inode, %s bytes on the wire, %.1f MiB written by the destination agent; CPU s coordinator %.2f, source %.2f, destination %.2f); rsync daemon %.2f s (%s new inodes); barge/rsync time %.2f\n", $1, $2, $4, $6, $7 / 1048576, $8, $9, $10, $3, $5, $2 / $3 }' "$work/big.txt"
} | tee "$out/files.txt"
[[ -n ${TRACE:-} ]] && cp "$work"/*.log "$out/"
exit 0
