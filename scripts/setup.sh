#!/usr/bin/env bash
# Installs the system packages mgw needs to build and test, when they are missing.
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail

# Build-time packages: cmake builds the bundled libopus; libasound2-dev for ALSA ports;
# pkg-config for -sys crates.
BUILD_PKGS=(pkg-config cmake libasound2-dev)
# With --test: what the test suite needs (espeak-ng speaks, sox resamples, for the DTMF
# talk-off test). The interop checks install their own peers (scripts/interop.sh).
TEST_PKGS=()
if [ "${1:-}" = "--test" ]; then
    TEST_PKGS=(espeak-ng sox)
fi

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
