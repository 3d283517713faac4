#!/usr/bin/env bash
# Fuzzes the replication stream of a hostile but authenticated peer: the decoders of its frames and the store's
# apply path, with libFuzzer and AddressSanitizer. Usage: tools/fuzz-stream.sh [seconds | -runs=N]  (default 60
# seconds). FUZZ_CONFIGURATION=release builds with optimization (assertions kept), about three times as fast.
# The seeds are written by the replayer itself: tandem-stream-fuzzer --write-seeds tools/fuzz/seeds/stream
# A crash leaves its input as crash-* in the current directory; replay it with the plain build:
#   swift build --scratch-path .build-fuzzer-plain --product tandem-stream-fuzzer &&
#   TANDEM_FUZZ_TRACE=1 .build-fuzzer-plain/debug/tandem-stream-fuzzer crash-*
set -euo pipefail
cd "$(dirname "$0")/.."
limit="${1:-60}"
case "$limit" in
-runs=*) budget="$limit" ;;
*) budget="-max_total_time=$limit" ;;
esac
configuration="${FUZZ_CONFIGURATION:-debug}"
extra=()
if [ "$configuration" = release ]; then extra=(-Xswiftc -assert-config -Xswiftc Debug); fi

# TANDEM_FUZZ_SANITIZE (see Package.swift) gives the package's own modules libFuzzer's coverage and AddressSanitizer
# and links libFuzzer into the target; --sanitize=address gives the dependencies AddressSanitizer too.
TANDEM_FUZZ_SANITIZE=fuzzer,address swift build -c "$configuration" --scratch-path .build-fuzz "${extra[@]}" \
    --sanitize=address --product tandem-stream-fuzzer
corpus=.build-fuzz/corpus/stream
mkdir -p "$corpus"
cp tools/fuzz/seeds/stream/* "$corpus"/
# The store lives across inputs, so an input that allocates more than it frees is no leak; LeakSanitizer's
# check of each such input (a scan of the whole heap) would halve the speed.
SWIFT_BACKTRACE=enable=no ".build-fuzz/$configuration/tandem-stream-fuzzer" \
    "$budget" -max_len=4096 -dict=tools/fuzz/stream.dict -detect_leaks=0 -print_final_stats=1 "$corpus"
