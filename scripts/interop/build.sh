#!/usr/bin/env bash
# Build osmo_client (a libosmo-mgcp-client call agent) into $1 (default: target/interop/).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../target/interop}"
mkdir -p "$out"
# shellcheck disable=SC2046
gcc -std=gnu11 -O2 -g -Wall -Wextra -Wno-unused-parameter -Werror=implicit-function-declaration \
    -o "$out/osmo_client" "$here/osmo_client.c" \
    $(pkg-config --cflags --libs libosmo-mgcp-client libosmocore)
echo "$out/osmo_client"
