#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks that the benchmarks still
# compile, then runs every test. Set BARGE_SKIP_BENCHMARKS=1 to skip the benchmark build.
set -euo pipefail
cd "$(dirname "$0")/.."

./cluster/install-deps.sh
if [[ ${BARGE_SKIP_BENCHMARKS:-0} != 1 ]]; then
  echo "== building Benchmarks/ (compile check only; run them with: cd Benchmarks && swift package benchmark)" >&2
  swift build --package-path Benchmarks >&2
fi
echo "== swift test" >&2
# Tests last, so that their summary is the last thing printed.
swift test --no-parallel  # one test at a time: the process tests start many processes, and two cores are shared
