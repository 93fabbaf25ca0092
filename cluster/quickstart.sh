#!/usr/bin/env bash
# Quickstart: installs what is missing, builds Barge, and benchmarks compression on a generated
# sample of typed arrays, text and random bytes. Pass your own files to benchmark those instead:
#   cluster/quickstart.sh ~/data/run42/*.h5
set -euo pipefail
cd "$(dirname "$0")/.."

./cluster/install-deps.sh
echo "== building barge (release)" >&2
swift build -c release --product barge >&2
barge=.build/release/barge

if (($# == 0)); then
  sample="${TMPDIR:-/tmp}/barge-sample"
  echo "== generating a sample dataset in $sample" >&2
  "$barge" bench generate --size 32MiB "$sample" >/dev/null
  set -- "$sample"/float32.bin "$sample"/float64.bin "$sample"/int16.bin "$sample"/text.txt "$sample"/random.bin
fi
echo "== barge bench compress $*" >&2
exec "$barge" bench compress "$@"
