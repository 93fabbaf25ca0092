#!/usr/bin/env bash
# Barge's filters against Blosc2's on typed arrays, in one run, one core, 1 MiB chunks: byte
# shuffle, bit shuffle and byte delta, with LZ4 and zstd-1, on float32, float64 and int16 fields
# (`barge bench generate`). python-blosc2 comes from PyPI into .build-venv/ (ignored by git).
#
#   cluster/bench-filters.sh                       # SIZE=64MiB per file
#   BARGE_BIN=.build-rel/release/barge cluster/bench-filters.sh
#
# Output goes to bench-out/filters.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${SIZE:-64MiB}
source cluster/bench-lib.sh
bench_init filters
venv=.build-venv
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
"$venv/bin/python" -c "import blosc2" 2>/dev/null || "$venv/bin/pip" install -q blosc2
"$barge" bench generate --size "$size" "$work/data" > /dev/null

{
echo "filters benchmark, $(date +%F), 1 core, 1 MiB chunks, $size per file; Barge $("$barge" --version 2>/dev/null || echo build), python-blosc2 $("$venv/bin/python" -c 'import blosc2; print(blosc2.__version__)')"
printf '%-8s %-28s %8s %10s %10s\n' file codec ratio "comp MB/s" "dec MB/s"
for pair in float32:4 float64:8 int16:2; do
  kind=${pair%:*}; s=${pair#*:}
  file=$work/data/$kind.bin
  "$barge" bench compress --json --seconds 1 --codecs "shuffle$s+lz4,bitshuffle$s+lz4,shuffle$s+zstd-1,delta$s+zstd-1,bytedelta$s+zstd-1" "$file" > "$work/$kind.json"
  python3 - "$work/$kind.json" "$kind" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for r in j["total"]["results"]:
    print(f"{sys.argv[2]:<8} {'barge ' + r['codec']:<28} {r['ratio']:>8.3f} {r['compress_mbps']:>10.0f} {r['decompress_mbps']:>10.0f}")
PY
  "$venv/bin/python" - "$file" "$kind" "$s" <<'PY'
import sys, time, blosc2
path, kind, typesize = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(path, "rb").read()
chunks = [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
F, C = blosc2.Filter, blosc2.Codec
configs = [
    ("shuffle+lz4", [F.SHUFFLE], C.LZ4, 9),
    ("bitshuffle+lz4", [F.BITSHUFFLE], C.LZ4, 9),
    ("shuffle+zstd-1", [F.SHUFFLE], C.ZSTD, 1),
    ("shuffle+bytedelta+zstd-1", [F.SHUFFLE, F.BYTEDELTA], C.ZSTD, 1),
]
for name, filters, codec, clevel in configs:
    cparams = {"typesize": typesize, "clevel": clevel, "codec": codec, "filters": filters,
               "filters_meta": [0] * len(filters), "nthreads": 1}
    best_c = best_d = float("inf")
    for _ in range(3):
        t = time.perf_counter(); out = [blosc2.compress2(c, **cparams) for c in chunks]; best_c = min(best_c, time.perf_counter() - t)
        t = time.perf_counter(); [blosc2.decompress2(o, nthreads=1) for o in out]; best_d = min(best_d, time.perf_counter() - t)
    ratio = len(data) / sum(len(o) for o in out)
    print(f"{kind:<8} {'blosc2 ' + name:<28} {ratio:>8.3f} {len(data) / best_c / 1e6:>10.0f} {len(data) / best_d / 1e6:>10.0f}")
PY
done
} | tee "$out/filters.txt"
