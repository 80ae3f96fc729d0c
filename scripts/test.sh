#!/usr/bin/env bash
# Runs the whole test suite: unit, simulated-time and integration tests (the real
# binary on loopback), lints, and the interop checks against real peers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
t0=$(date +%s)
echo "== build (release)"
cargo build --release --workspace --all-targets
echo "== tests"
cargo test --release --workspace
echo "== clippy"
cargo clippy --release --workspace --all-targets -- -D warnings
if [ -x scripts/interop.sh ] && [ "${MGW_SKIP_INTEROP:-0}" != 1 ]; then
    echo "== interop with real peers"
    scripts/interop.sh
fi
if [ "${MGW_SKIP_INTEROP:-0}" != 1 ]; then
    echo "== mgw load against tshark's RTP statistics (mgw and osmo-mgw)"
    scripts/load-tshark-check.sh --no-build
    echo "== SIPp sends RTP through the gateway"
    scripts/sipp-interop.sh --no-build
fi
if [ "${MGW_SKIP_PACKAGE:-0}" != 1 ]; then
    echo "== Debian package (build, contents, run the packaged binary)"
    if [ "${CI:-}" = true ] && [ "$(id -u)" -eq 0 ]; then
        # CI machines are disposable: also install it and check what landed.
        scripts/package.sh --install
    else
        scripts/package.sh
    fi
fi
echo "== all tests passed in $(( $(date +%s) - t0 )) s"
