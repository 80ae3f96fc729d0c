#!/usr/bin/env bash
# Benchmarks of mgw against real peers on this machine (see scripts/bench/README.md):
#   1. relay throughput and delay: mgw (io_uring, epoll), osmo-mgw, rtpengine, a plain C relay
#   2. MGCP transactions per second: mgw and osmo-mgw
#   3. transcoding: full-duplex G.711<->Opus calls per core, mgw and rtpengine
# Full run: < 10 minutes each, writes reports/relay-<date>.md, reports/mgcp-<date>.md and
# reports/transcode-<date>.md.
# --quick: a few seconds each, no report; asserts only that everything ran and gave numbers,
#          and prints "bench: N passed, M failed".
#
# usage: scripts/bench.sh [--quick] [--no-build] [--no-install]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
args=() quick=0 build=1
for a in "$@"; do
    case "$a" in
        --quick) quick=1; args+=("$a") ;;
        --no-build) build=0 ;;
        --no-install) args+=("$a") ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown option $a" >&2; exit 2 ;;
    esac
done
if [ "$build" -eq 1 ] && [ -z "${MGW_BIN:-}" ]; then
    echo "bench: cargo build --release -p mgw" >&2
    (cd "$here/.." && cargo build --release -p mgw) || { echo "bench: build failed"; echo "bench: 0 passed, 1 failed"; exit 1; }
fi
passed=0 failed=0
for b in relay mgcp transcode; do
    echo "== bench: $b"
    if "$here/bench/$b.sh" --no-build "${args[@]}"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); echo "bench: $b FAILED"
    fi
done
echo "bench: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
