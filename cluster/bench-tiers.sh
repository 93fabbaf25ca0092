#!/usr/bin/env bash
# What the cold tier costs and saves, on typed arrays and text logs, in one run:
#   - space: the cold store's stored ratio (logical / bytes in packs) against the ratio `auto`
#     reached in transit at 1 Gbit/s (--link-rate) on the same files, and against `zstd -3`;
#   - dedup: what demoting a second copy of the dataset adds to the store;
#   - speed: demotion in MB/s of logical data, against `zstd -3 -T2` over the same files;
#   - promotion: bytes read from packs to promote one 64 MiB file from the store, against that
#     file's stored size;
#   - placement at transfer time: the same files sent with `--tier cold` to a third site with a
#     store of its own (straight into packs), its time against the hot transfer's, and its ratio.
#
#   cluster/bench-tiers.sh                 # SIZE=512MiB per file: 2 GiB logical, 4 GiB with the copy
#   BARGE_BIN=.build-rel/release/barge SIZE=128MiB cluster/bench-tiers.sh
#
# Output goes to bench-out/tiers.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${SIZE:-512MiB}
source cluster/bench-lib.sh
bench_init tiers
report=$out/tiers.txt

echo "generating 4 files of $size (float32, float64, int16, text) and one 64 MiB float32 file …" >&2
"$barge" bench generate --size "$size" "$work/a/ds" > /dev/null
rm -f "$work/a/ds/random.bin"
"$barge" bench generate --size 64MiB "$work/one" > /dev/null
mv "$work/one/float32.bin" "$work/a/ds/promote-me.f32"
# The first 64 MiB of the big float32 field, shifted by three bytes. Both transit and the store cut
# files of 8 MiB and more by content, so it shares all but its first chunk with float32.bin in
# both (a store that cut fixed 1 MiB chunks stored it again): the promotion below reads its chunks
# out of the big file's packs.
python3 - "$work/a/ds/promote-me.f32" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[0:0] = b'\x01\x02\x03'
open(p, 'wb').write(bytes(b[:64 << 20]))
PY
logical=$(du -sb "$work/a/ds" | cut -f1)
cat "$work"/a/ds/* > /dev/null

(umask 077; head -c 32 /dev/urandom | base64 > "$work/token")
export BARGE_TOKEN_FILE=$work/token
agent_port=$(free_port); http_port=$(free_port)
export BARGE_COORDINATOR=http://127.0.0.1:$http_port BARGE_API_TOKEN_FILE=$work/state/admin.token
"$barge" coordinator --state "$work/state" --listen "127.0.0.1:$agent_port" --http "127.0.0.1:$http_port" > "$work/coordinator.log" 2>&1 &
pids+=($!)
sleep 0.5
mkdir -p "$work/b"
"$barge" agent --coordinator "127.0.0.1:$agent_port" --name a1 --site a --root "$work/a" --link-rate 1Gbit/s > "$work/a1.log" 2>&1 &
pids+=($!)
"$barge" agent --coordinator "127.0.0.1:$agent_port" --name b1 --site b --root "$work/b" --cold "$work/cold" > "$work/b1.log" 2>&1 &
pids+=($!); b1=$!
mkdir -p "$work/c"
"$barge" agent --coordinator "127.0.0.1:$agent_port" --name c1 --site c --root "$work/c" --cold "$work/cold-c" > "$work/c1.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [[ $("$barge" agents --json 2>/dev/null | grep -o '"up"' | wc -l) -ge 3 ]] && break; sleep 0.2; done

echo "transfer a:ds → b:ds (auto, as at 1 Gbit/s) …" >&2
"$barge" submit a:ds b:ds --wait --json > "$work/transfer.json"
wire=$(field wire_bytes "$work/transfer.json")
transit_ratio=$(calc "$logical / $wire")
jobsecs() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(j['finished_at']-j['started_at'])" "$1"; }
hot_secs=$(jobsecs "$work/transfer.json")

echo "placement at transfer time: a:ds → c:ds --tier cold …" >&2
"$barge" submit a:ds c:ds --tier cold --wait --json > "$work/placed.json"
placed_secs=$(jobsecs "$work/placed.json")
"$barge" tier stats c --json > "$work/stats-c.json"
placed_stored=$(field stored_bytes "$work/stats-c.json")
plain=$(find "$work/c/ds" -type f | wc -l)

echo "reference: zstd -3 -T2 over the same files …" >&2
t0=$(now); zstd -q -3 -T2 -c "$work"/a/ds/* > "$work/ref.zst"; t1=$(now)
zstd_bytes=$(stat -c %s "$work/ref.zst"); zstd_secs=$(calc "$t1 - $t0"); rm -f "$work/ref.zst"

echo "demote b:ds …" >&2
cpu0=$(cpu_secs "$b1")
"$barge" tier demote b:ds --wait --json > "$work/demote.json"
cpu1=$(cpu_secs "$b1")
demote_secs=$(python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(j['finished_at']-j['started_at'])" "$work/demote.json")
"$barge" tier stats b --json > "$work/stats1.json"
stored1=$(field stored_bytes "$work/stats1.json")

echo "a second copy: transfer a:ds → b:copy, demote b:copy …" >&2
"$barge" submit a:ds b:copy --wait > /dev/null
"$barge" tier demote b:copy --wait > /dev/null
"$barge" tier stats b --json > "$work/stats2.json"
stored2=$(field stored_bytes "$work/stats2.json")
held=$(field logical_bytes "$work/stats2.json")

echo "promote b:ds/promote-me.f32 from a store holding $held logical bytes …" >&2
file_stored=$(python3 - "$work/cold/catalog.sqlite" ds/promote-me.f32 <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
blob = db.execute("SELECT chunks FROM files WHERE path = ?", (sys.argv[2],)).fetchone()[0]
ids = {bytes(blob[i:i + 32]) for i in range(0, len(blob), 36)}
print(sum(db.execute("SELECT stored FROM chunks WHERE id = ?", (i,)).fetchone()[0] for i in ids))
PY
)
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
"$barge" tier promote b:ds/promote-me.f32 --wait --json > "$work/promote.json"
read_bytes=$(field wire_bytes "$work/promote.json")
cmp "$work/a/ds/promote-me.f32" "$work/b/ds/promote-me.f32"

{
  echo "tier benchmark, $(date +%F), $(nproc) cores, $(calc "$logical / 1048576") MiB logical (4 × $size typed arrays and text, 64 MiB float32)"
  echo "space: cold store stored ratio $(calc "$logical / $stored1") (logical $logical / stored $stored1 bytes)"
  echo "       auto in transit at 1 Gbit/s: ratio $transit_ratio (wire $wire bytes); cold / transit = $(calc "($logical / $stored1) / $transit_ratio")"
  echo "       zstd -3 -T2: ratio $(calc "$logical / $zstd_bytes")"
  echo "dedup: a second copy added $((stored2 - stored1)) bytes to $stored1 ($(calc "100 * ($stored2 - $stored1) / $stored1") %)"
  echo "speed: demotion $(calc "$logical / $demote_secs / 1e6") MB/s ($demote_secs s, agent CPU $(calc "$cpu1 - $cpu0") s); zstd -3 -T2 $(calc "$logical / $zstd_secs / 1e6") MB/s; demotion / zstd = $(calc "($logical / $demote_secs) / ($logical / $zstd_secs)")"
  echo "placement: --tier cold transfer $(calc "$logical / $placed_secs / 1e6") MB/s ($placed_secs s) against hot $(calc "$logical / $hot_secs / 1e6") MB/s ($hot_secs s): cold / hot time = $(calc "$placed_secs / $hot_secs"); stored ratio $(calc "$logical / $placed_stored"); plain files left at c: $plain"
  echo "promotion of one 64 MiB file from a store holding $held logical bytes: read $read_bytes bytes of packs for $file_stored stored ($(calc "$read_bytes / $file_stored") ×)"
} | tee "$report"
