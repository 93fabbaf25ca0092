#!/usr/bin/env bash
# Fuzzes the wire protocol (frame decoder, message parsers, both sides of the handshake) with
# libFuzzer and AddressSanitizer, for SECONDS_TO_RUN seconds (default 300). The corpus is kept in
# Fuzz/corpus (ignored by git). It prints libFuzzer's final statistics, executions included.
#   cluster/fuzz.sh            # 5 minutes
#   SECONDS_TO_RUN=3600 cluster/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/../Fuzz"
../cluster/install-deps.sh
# SwiftPM's --sanitize fuzzer links libFuzzer; the coverage instrumentation must be asked for.
swift build -c release --sanitize fuzzer --sanitize address -Xswiftc -parse-as-library \
  -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp >&2
mkdir -p corpus
exec .build/release/WireFuzz corpus -max_total_time="${SECONDS_TO_RUN:-300}" -print_final_stats=1
