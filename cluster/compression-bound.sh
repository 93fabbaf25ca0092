#!/usr/bin/env bash
# How far any codec of Barge's kind could go on your files: the entropy of each 1 MiB chunk after
# the byte shuffle and byte delta that `auto` uses on typed arrays (plain bytes for text), as an
# ideal order-0 coder (one table per byte plane, tables free) and an ideal order-1 coder (each byte
# coded knowing the one before it in its plane, tables free) would pay. Beside it, what `barge
# bench compress` measures for `auto` at 1 Gbit/s and for zstd-19. The issue-17 space target asks
# the cold store for 1.1× the ratio `auto` reaches in transit; this shows how much room is left.
#
#   cluster/compression-bound.sh FILE:STRIDE ...       # STRIDE 1 for text, 2/4/8 for typed arrays
#   cluster/compression-bound.sh                       # the bench-tiers dataset, 64 MiB per file
#
# numpy comes from PyPI into .build-venv/ (ignored by git). Output goes to bench-out/bound.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
source cluster/bench-lib.sh
bench_init bound
venv=.build-venv
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
"$venv/bin/python" -c "import numpy" 2>/dev/null || "$venv/bin/pip" install -q numpy

specs=("$@")
if ((${#specs[@]} == 0)); then
  "$barge" bench generate --size "${SIZE:-64MiB}" "$work/ds" > /dev/null
  specs=("$work/ds/float32.bin:4" "$work/ds/float64.bin:8" "$work/ds/int16.bin:2" "$work/ds/text.txt:1")
fi
{
  echo "compression bound, $(date +%F), 1 MiB chunks, at most ${MAX_MIB:-16} MiB of each file"
  printf '%-14s %6s %10s %10s %10s %10s %10s %10s\n' file stride MiB "auto 1Gb/s" zstd-19 order-0 order-1 "best/auto"
  for spec in "${specs[@]}"; do
    file=${spec%:*}; stride=${spec##*:}
    measured=$("$barge" bench compress --json --seconds 0.1 --max-bytes "${MAX_MIB:-16}MiB" --codecs auto,zstd-19 "$file" |
      python3 -c 'import json,sys; c={x["codec"]: x["ratio"] for x in json.load(sys.stdin)["total"]["results"]}; print(c["auto"], c["zstd-19"])')
    "$venv/bin/python" - "$file" "$stride" "${MAX_MIB:-16}" $measured <<'PY'
import os, sys
import numpy as np
path, stride, max_mib, auto, z19 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
data = np.fromfile(path, dtype=np.uint8, count=max_mib << 20)
bits0 = bits1 = 0.0
def h0(p):
    c = np.bincount(p, minlength=256).astype(float)
    c = c[c > 0]
    return float(-(c * np.log2(c / p.size)).sum())
def h1(p):
    # sum over contexts (the byte before) of count x the entropy of the byte given that context
    prev = np.concatenate(([0], p[:-1])).astype(np.int64)
    pairs = np.bincount(prev * 256 + p, minlength=65536).astype(float).reshape(256, 256)
    rows = pairs.sum(axis=1, keepdims=True)
    nz = pairs > 0
    return float(-(pairs[nz] * np.log2((pairs / np.where(rows > 0, rows, 1))[nz])).sum())
for start in range(0, data.size, 1 << 20):
    chunk = data[start:start + (1 << 20)]
    n = chunk.size - chunk.size % stride
    planes = [chunk[:n]] if stride == 1 else list(chunk[:n].reshape(-1, stride).T)
    if stride > 1:
        planes = [np.diff(p, prepend=np.uint8(0)).astype(np.uint8) for p in planes]  # byte delta per plane
    if n < chunk.size:
        planes.append(chunk[n:])
    bits0 += sum(h0(p) for p in planes)
    bits1 += sum(h1(p) for p in planes)
total = data.size * 8
o0, o1 = total / bits0, total / bits1
best = max(o1, z19)
print(f"{os.path.basename(path):<14} {stride:>6} {data.size / 2**20:>10.1f} {auto:>10.3f} {z19:>10.3f} {o0:>10.3f} {o1:>10.3f} {best / auto:>10.3f}")
PY
  done > "$work/rows"
  cat "$work/rows"
  # All files together: logical bytes over the bytes each column would store.
  awk '{ n += $3; a += $3 / $4; b += $3 / ($5 > $7 ? $5 : $7) }
       END { printf "all files: auto %.3f, best bound %.3f, best / auto %.3f\n", n / a, n / b, a / b }' "$work/rows"
  echo "order-0 and order-1 count no table: real coders pay for theirs. best = the larger of zstd-19 and order-1."
} | tee "$out/bound.txt"
