#!/usr/bin/env bash
# Fuzzes the failover link's frame decoder and the negotiation that reads its frames, with libFuzzer and
# AddressSanitizer. Usage: tools/fuzz-frames.sh [seconds]  (default 60)
# A crash leaves its input as crash-* in the current directory; replay it with the plain build:
#   swift build --product tandem-frame-fuzzer && .build/debug/tandem-frame-fuzzer crash-*
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

# The same build as tools/fuzz-stream.sh (which says what it instruments), so that the two share it.
TANDEM_FUZZ_SANITIZE=fuzzer,address swift build --scratch-path .build-fuzz --sanitize=address \
    --product tandem-frame-fuzzer
corpus=.build-fuzz/corpus/frames
mkdir -p "$corpus"
cp tools/fuzz/seeds/frames/* "$corpus"/
SWIFT_BACKTRACE=enable=no .build-fuzz/debug/tandem-frame-fuzzer \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 "$corpus"
