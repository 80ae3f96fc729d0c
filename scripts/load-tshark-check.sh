#!/usr/bin/env bash
# Cross-check `mgw load` against tshark: for each gateway (mgw, then osmo-mgw when it is
# installed or installable) run a short bridge-mode load while tshark captures the
# gateway's RTP port range on lo, then compare per direction the load's JSON figures
# (sent, received, RFC 3550 lost, max and final jitter) with tshark's RTP statistics
# (scripts/loadcheck/compare.py says what is compared and why the jitter tolerance).
# Prints a table per gateway and `load-tshark: N passed, M failed`; exits 1 on a mismatch.
#
# usage: scripts/load-tshark-check.sh [--no-install] [--no-build] [--keep]
#   env: MGW_BIN=path (skip the build), LOADCHECK_WORK=dir (kept), PKT_TOL, JIT_ABS_MS, JIT_REL
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
install=1 build=1 keep=0
for a in "$@"; do
    case "$a" in
        --no-install) install=0 ;;
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "load-tshark: unknown option $a" >&2; exit 2 ;;
    esac
done

WORK="${LOADCHECK_WORK:-$(mktemp -d /tmp/mgw-loadcheck.XXXXXX)}"
mkdir -p "$WORK"
PIDS=()
failed_total=1
cleanup() {
    local p
    for p in "${PIDS[@]}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do [ -n "$p" ] && wait "$p" 2>/dev/null; done
    PIDS=()
    if [ "$keep" -eq 0 ] && [ -z "${LOADCHECK_WORK:-}" ] && [ "$failed_total" -eq 0 ]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'echo "load-tshark: interrupted" >&2; exit 130' INT TERM

# Stop one child (SIGINT for tshark so it closes the file, else SIGTERM), wait ≤ 5 s.
stop_pid() {
    local pid=$1 sig=${2:-TERM} i
    kill -"$sig" "$pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    local keep_pids=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep_pids+=("$p"); done
    PIDS=("${keep_pids[@]}")
}

# Wait up to SECS for PATTERN in FILE while PID lives.
wait_for() {
    local file=$1 pattern=$2 pid=$3 secs=$4 i
    for i in $(seq $((secs * 10))); do
        grep -q "$pattern" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# A free UDP block: prints LOW (even) with LOW..LOW+COUNT-1 free now, below the
# kernel's ephemeral range so the load's own sockets cannot land inside it.
free_range() {
    python3 - "$1" <<'PY'
import random, socket, sys
count = int(sys.argv[1])
for _ in range(200):
    low = random.randrange(20000, 32000 - count) & ~1
    socks = []
    try:
        for p in range(low, low + count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); socks.append(s)
            s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(low); sys.exit(0)
sys.exit("no free port range")
PY
}

# ---- packages and build --------------------------------------------------------
apt_install() {
    [ "$install" -eq 1 ] || return 1
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    timeout 600 apt-get install -y --no-install-recommends "$@" >>"$WORK/apt.log" 2>&1 && return 0
    timeout 300 apt-get update >>"$WORK/apt.log" 2>&1
    timeout 600 apt-get install -y --no-install-recommends "$@" >>"$WORK/apt.log" 2>&1
}
command -v python3 >/dev/null || apt_install python3
if ! command -v tshark >/dev/null && ! apt_install tshark; then
    tail -n 20 "$WORK/apt.log" >&2
    echo "load-tshark: tshark is not installed"; echo "load-tshark: 0 passed, 1 failed"; exit 1
fi
have_osmo=1
command -v osmo-mgw >/dev/null || apt_install osmo-mgw || have_osmo=0

MGW_BIN="${MGW_BIN:-$root/target/release/mgw}"
if [ "$build" -eq 1 ] && [ "$MGW_BIN" = "$root/target/release/mgw" ]; then
    echo "load-tshark: cargo build --release -p mgw"
    if ! (cd "$root" && timeout 1800 cargo build --release -p mgw >"$WORK/cargo.log" 2>&1); then
        tail -n 20 "$WORK/cargo.log" >&2
        echo "load-tshark: build failed, using the existing binary" >&2
    fi
fi
if [ ! -x "$MGW_BIN" ]; then
    echo "load-tshark: no mgw binary at $MGW_BIN"; echo "load-tshark: 0 passed, 1 failed"; exit 1
fi

# ---- one gateway -----------------------------------------------------------------
# run_one LABEL: start that gateway, capture, load, compare. Appends to $WORK/results.
run_one() {
    local label=$1 dir="$WORK/$1"
    mkdir -p "$dir"
    local base mport caport low high gw_pid ts_pid
    base=$(free_range 110) || return 1
    mport=$base caport=$((base + 2)) low=$((base + 10)) high=$((base + 109))
    echo "load-tshark[$label]: MGCP 127.0.0.1:$mport, call agent 127.0.0.1:$caport, RTP $low-$high"
    local load_extra=()
    if [ "$label" = mgw ]; then
        "$MGW_BIN" run --mgcp-bind "127.0.0.1:$mport" --call-agent "127.0.0.1:$caport" --domain mgw \
            --rtp-bind 127.0.0.1 --rtp-ports "$low-$high" --http-bind off --workers 1 --no-pin \
            >"$dir/gw.log" 2>&1 &
        gw_pid=$!; PIDS+=("$gw_pid")
        if ! wait_for "$dir/gw.log" "mgw: MGCP listening on" "$gw_pid" 10; then
            cat "$dir/gw.log" >&2; echo "RESULT $label FAIL gateway did not start" >>"$WORK/results"; return 1
        fi
    else
        local vty=$((base + 4))
        cat >"$dir/osmo-mgw.cfg" <<CFG
mgcp
 domain mgw
 bind ip 127.0.0.1
 bind port $mport
 rtp port-range $low $high
 rtp bind-ip 127.0.0.1
 no rtp keep-alive
 number endpoints 31
line vty
 bind 127.0.0.1 $vty
CFG
        (cd "$dir" && exec osmo-mgw -c "$dir/osmo-mgw.cfg") >"$dir/gw.log" 2>&1 &
        gw_pid=$!; PIDS+=("$gw_pid")
        # osmo-mgw prints nothing reliable on readiness: wait for its MGCP socket.
        local i up=0
        for i in $(seq 50); do
            if ss -Huln "sport = :$mport" 2>/dev/null | grep -q .; then up=1; break; fi
            kill -0 "$gw_pid" 2>/dev/null || break
            sleep 0.1
        done
        if [ "$up" -eq 0 ]; then
            cat "$dir/gw.log" >&2; echo "RESULT $label FAIL gateway did not start" >>"$WORK/results"; return 1
        fi
        load_extra=(--wildcard '*')
    fi

    tshark -i lo -f "udp portrange $low-$high" -w "$dir/cap.pcapng" >"$dir/tshark.log" 2>&1 &
    ts_pid=$!; PIDS+=("$ts_pid")
    if ! wait_for "$dir/tshark.log" "Capturing on" "$ts_pid" 15; then
        cat "$dir/tshark.log" >&2; echo "RESULT $label FAIL tshark did not start" >>"$WORK/results"
        stop_pid "$ts_pid" INT; stop_pid "$gw_pid"; return 1
    fi
    sleep 0.5 # "Capturing on" is printed just before dumpcap's filter is live

    timeout --kill-after=5 60 "$MGW_BIN" load -q --gateway "127.0.0.1:$mport" --ca-bind "127.0.0.1:$caport" \
        --mode bridge --calls 4 --rate 10 --hold 3 --codec-a PCMU --codec-b PCMU \
        "${load_extra[@]}" --json "$dir/run.json" >"$dir/load.log" 2>&1 &
    # In the background and waited for, so an INT/TERM trap runs at once and stops it.
    local load_pid=$!; PIDS+=("$load_pid")
    wait "$load_pid"
    local lrc=$?
    PIDS=("${PIDS[@]/$load_pid}")
    sleep 0.5 # let dumpcap write out what it has
    stop_pid "$ts_pid" INT
    stop_pid "$gw_pid"
    if [ ! -s "$dir/run.json" ]; then
        cat "$dir/load.log" >&2
        echo "RESULT $label FAIL mgw load wrote no JSON (exit $lrc)" >>"$WORK/results"; return 1
    fi
    [ "$lrc" -eq 0 ] || echo "load-tshark[$label]: note: mgw load exited $lrc (see $dir/load.log)"

    # Decode the gateway's RTP range as RTP outright: the heuristic alone sometimes lets
    # another dissector claim a stream (seen once in CI: 2 of 16 streams missing).
    timeout 120 tshark -r "$dir/cap.pcapng" -o rtp.heuristic_rtp:TRUE -d "udp.port==$low-$high,rtp" -q -z rtp,streams \
        >"$dir/streams.txt" 2>"$dir/tshark-read.log"
    timeout 120 tshark -r "$dir/cap.pcapng" -o rtp.heuristic_rtp:TRUE -d "udp.port==$low-$high,rtp" -Y rtp -T fields \
        -e udp.srcport -e udp.dstport -e frame.time_epoch -e rtp.timestamp -e rtp.ssrc \
        >"$dir/fields.tsv" 2>>"$dir/tshark-read.log"
    python3 "$here/loadcheck/compare.py" "$label" "$dir/run.json" "$dir/streams.txt" "$dir/fields.tsv" \
        | tee "$dir/compare.txt"
    grep "^load-tshark\[$label\]:" "$dir/compare.txt" >>"$WORK/results" \
        || echo "RESULT $label FAIL compare.py printed no result" >>"$WORK/results"
}

: >"$WORK/results"
run_one mgw
if [ "$have_osmo" -eq 1 ]; then
    run_one osmo-mgw
else
    echo "load-tshark: osmo-mgw not installable, skipped"
fi

passed=0 failed=0
while read -r line; do
    case "$line" in
        RESULT*) failed=$((failed + 1)); echo "${line#RESULT }" ;;
        load-tshark*)
            p=$(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/' <<<"$line")
            f=$(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/' <<<"$line")
            passed=$((passed + p)) failed=$((failed + f)) ;;
    esac
done <"$WORK/results"
failed_total=$failed
if [ "$keep" -eq 1 ] || [ -n "${LOADCHECK_WORK:-}" ] || [ "$failed" -ne 0 ]; then
    echo "load-tshark: logs and captures in $WORK"
fi
echo "load-tshark: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
