#!/usr/bin/env bash
# Quickstart: installs what is missing, builds Barge, and runs `barge demo`: a coordinator and four
# agents (two sites) on loopback move a generated dataset with a live progress line, verify it, and
# print a summary. Arguments go to the demo, e.g.:
#   cluster/quickstart.sh --size 1GiB
#   cluster/quickstart.sh --fault-corrupt 0.05 --keep
set -euo pipefail
cd "$(dirname "$0")/.."

./cluster/install-deps.sh
echo "== building barge (release)" >&2
swift build -c release --product barge >&2
exec .build/release/barge demo "$@"
