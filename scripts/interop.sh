#!/usr/bin/env bash
# Interop checks of mgw against software we did not write (see scripts/interop/README.md):
#   1. libosmo-mgcp-client (Osmocom) as call agent  -> scripts/interop/osmo_check.sh
#   2. tshark's MGCP dissector as a parser check     -> scripts/interop/tshark_check.sh
# Installs missing Debian packages, builds mgw (release) and the C client, runs both
# with ports chosen at run time on 127.0.0.1, prints "interop: N passed, M failed".
#
# usage: scripts/interop.sh [--no-install] [--no-build] [--keep]
#   env: MGW_BIN=path (skip the cargo build), INTEROP_WORK=dir (logs, capture),
#        STRICT=1 (count KNOWN interop issues as failures)
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
idir="$here/interop"
install=1 build=1 keep=0
for a in "$@"; do
    case "$a" in
        --no-install) install=0 ;;
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "interop.sh: unknown option $a" >&2; exit 2 ;;
    esac
done

WORK="${INTEROP_WORK:-$(mktemp -d /tmp/mgw-interop.XXXXXX)}"
mkdir -p "$WORK"
CHILD=
on_exit() {
    if [ -n "$CHILD" ]; then kill -TERM "$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; fi
    if [ "$keep" -eq 0 ] && [ -z "${INTEROP_WORK:-}" ] && [ "${overall_failed:-1}" -eq 0 ]; then rm -rf "$WORK"; fi
}
trap on_exit EXIT
trap 'echo "interop: interrupted" >&2; exit 130' INT TERM

# run_bounded SECONDS cmd... : run in the background (so our trap can stop it), wait.
run_bounded() {
    local secs=$1; shift
    timeout --kill-after=10 "$secs" "$@" &
    CHILD=$!
    wait "$CHILD"
    local rc=$?
    CHILD=
    return $rc
}

# ---- 1. packages -------------------------------------------------------------
if [ "$install" -eq 1 ]; then
    need=()
    command -v tshark >/dev/null || need+=(tshark)
    command -v gcc >/dev/null || need+=(gcc libc6-dev)
    command -v pkg-config >/dev/null || need+=(pkg-config)
    command -v python3 >/dev/null || need+=(python3)
    command -v timeout >/dev/null || need+=(coreutils)
    pkg-config --exists libosmo-mgcp-client 2>/dev/null || need+=(libosmo-mgcp-client-dev)
    pkg-config --exists libosmocore 2>/dev/null || need+=(libosmocore-dev)
    if [ "${#need[@]}" -gt 0 ]; then
        echo "interop: installing ${need[*]}"
        # tshark asks whether non-root users may capture: answer "no" beforehand.
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
        if ! run_bounded 900 apt-get install -y --no-install-recommends "${need[@]}" >"$WORK/apt.log" 2>&1; then
            tail -n 20 "$WORK/apt.log" >&2
            echo "interop: package installation failed"; echo "interop: 0 passed, 1 failed"; exit 1
        fi
    fi
fi

# ---- 2. builds ---------------------------------------------------------------
if [ -z "${MGW_BIN:-}" ]; then
    export MGW_BIN="$root/target/release/mgw"
    if [ "$build" -eq 1 ] || [ ! -x "$MGW_BIN" ]; then
        echo "interop: cargo build --release -p mgw"
        if ! (cd "$root" && run_bounded 1800 cargo build --release -p mgw >"$WORK/cargo.log" 2>&1); then
            tail -n 30 "$WORK/cargo.log" >&2
            echo "interop: mgw build failed"; echo "interop: 0 passed, 1 failed"; exit 1
        fi
    fi
fi
export OSMO_CLIENT="$WORK/osmo_client"
if ! "$idir/build.sh" "$WORK" >"$WORK/cc.log" 2>&1; then
    cat "$WORK/cc.log" >&2
    echo "interop: osmo_client build failed"; echo "interop: 0 passed, 1 failed"; exit 1
fi

# ---- 3. checks ---------------------------------------------------------------
# (process substitution, not a pipe: run_bounded must run in this shell so the
# trap knows the child's pid)
run_bounded 240 "$idir/osmo_check.sh" "$WORK/osmo" > >(tee "$WORK/osmo_check.log") 2>&1
run_bounded 240 "$idir/tshark_check.sh" "$WORK/tshark" > >(tee "$WORK/tshark_check.log") 2>&1
sleep 0.2 # let tee flush

passed=$(cat "$WORK/osmo_check.log" "$WORK/tshark_check.log" | grep -c '^RESULT .* PASS')
failed=$(cat "$WORK/osmo_check.log" "$WORK/tshark_check.log" | grep -c '^RESULT .* FAIL')
# A script that died before printing any RESULT line is a failure too.
for f in osmo_check tshark_check; do
    grep -q '^RESULT ' "$WORK/$f.log" || failed=$((failed + 1))
done
known=$(cat "$WORK/osmo_check.log" "$WORK/tshark_check.log" | grep -c '^RESULT .* KNOWN')
overall_failed=$failed
echo "interop: logs in $WORK"
if [ "$known" -gt 0 ]; then
    echo "interop: known interop issues (not counted; STRICT=1 counts them as failures):"
    cat "$WORK/osmo_check.log" "$WORK/tshark_check.log" | grep '^RESULT .* KNOWN' | sed 's/^RESULT /   /'
fi
echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
