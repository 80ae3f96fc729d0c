#!/usr/bin/env bash
# Builds mgw (release) and runs the gateway on its embedded default configuration.
# Extra arguments go to `mgw run`, e.g.  scripts/run.sh --call-agent 10.0.0.5:2727
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p mgw
exec target/release/mgw run "$@"
