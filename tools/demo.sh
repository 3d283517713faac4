#!/usr/bin/env bash
# Sets up what Tandem needs on a fresh Debian machine, builds it, and runs its demonstration.
# Usage: tools/demo.sh [tandem demo options], for example: tools/demo.sh --users 500000
set -euo pipefail
cd "$(dirname "$0")/.."

if ! pkg-config --exists lmdb 2>/dev/null; then
    echo "installing liblmdb-dev (LMDB's library and headers)..." >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && apt-get install -y -qq liblmdb-dev
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq liblmdb-dev
    fi
fi

swift build -c release --product tandem
exec .build/release/tandem demo "$@"
