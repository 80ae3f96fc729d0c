#!/usr/bin/env bash
# Installs the system packages mgw needs to build and test, when they are missing.
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail

# Build-time packages (C toolchain bits for -sys crates) and test peers.
BUILD_PKGS=(pkg-config cmake)
TEST_PKGS=(${MGW_TEST_PKGS:-})

missing=()
for p in "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"; do
    [ -z "$p" ] && continue
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
