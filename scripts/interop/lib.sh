# Shared helpers for the interop checks (sourced, not run).
# Provides: free_udp_ports N, start_mgw, stop_mgw, start_ca, cleanup_children.

INTEROP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INTEROP_DIR/../.." && pwd)"
MGW_BIN="${MGW_BIN:-$REPO_ROOT/target/release/mgw}"
OSMO_CLIENT="${OSMO_CLIENT:-$REPO_ROOT/target/interop/osmo_client}"
DOMAIN="${DOMAIN:-mgw}"
CHILD_PIDS=()

# Print N distinct UDP ports on 127.0.0.1 that are free right now (even ones, so
# an RTP port and its RTCP neighbour fit).
free_udp_ports() {
    python3 - "$1" <<'PY'
import socket, sys
n = int(sys.argv[1]); out = []; socks = []
while len(out) < n:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    socks.append(s)
    if p % 2 == 0 and p < 65500 and p not in out:
        t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(("127.0.0.1", p + 1)); socks.append(t); out.append(p)
        except OSError:
            t.close()
print(" ".join(map(str, out)))
PY
}

# A free block of COUNT ports: prints LOW (even) such that LOW..LOW+COUNT-1 are free now.
free_udp_range() {
    python3 - "$1" <<'PY'
import random, socket, sys
count = int(sys.argv[1])
for _ in range(200):
    low = random.randrange(20000, 60000 - count) & ~1
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

# start_mgw MGCP_PORT CA_PORT RTP_LOW RTP_HIGH LOGFILE -> sets MGW_PID; waits for readiness.
start_mgw() {
    local mport=$1 caport=$2 low=$3 high=$4 log=$5
    local extra=()
    # Builds with an admin HTTP server bind 127.0.0.1:9427 by default: switch it off so
    # parallel runs (and other mgw instances on this machine) do not collide.
    if "$MGW_BIN" run --help 2>/dev/null | grep -q -- '--http-bind'; then
        extra+=(--http-bind off)
    fi
    "$MGW_BIN" run --mgcp-bind "127.0.0.1:$mport" --call-agent "127.0.0.1:$caport" --domain "$DOMAIN" \
        --rtp-bind 127.0.0.1 --rtp-ports "$low-$high" --workers 1 --no-pin "${extra[@]}" >"$log" 2>&1 &
    MGW_PID=$!
    CHILD_PIDS+=("$MGW_PID")
    local i
    for i in $(seq 1 100); do
        if grep -q "mgw: MGCP listening on" "$log" 2>/dev/null; then return 0; fi
        if ! kill -0 "$MGW_PID" 2>/dev/null; then
            echo "mgw exited during start-up:" >&2; cat "$log" >&2; return 1
        fi
        sleep 0.1
    done
    echo "mgw did not report readiness within 10 s:" >&2; cat "$log" >&2
    return 1
}

# stop_mgw: SIGTERM, wait up to 5 s, then SIGKILL.
stop_mgw() {
    [ -n "${MGW_PID:-}" ] || return 0
    kill -TERM "$MGW_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
        kill -0 "$MGW_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$MGW_PID" 2>/dev/null || true
    wait "$MGW_PID" 2>/dev/null || true
    MGW_PID=
}

# start_ca PORT LOGFILE -> sets CA_PID (answers mgw's RSIP/NTFY with 200).
start_ca() {
    python3 "$INTEROP_DIR/ca_responder.py" "$1" "$2" &
    CA_PID=$!
    CHILD_PIDS+=("$CA_PID")
    local i
    for i in $(seq 1 50); do
        grep -q "^ca ready" "$2" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "call-agent responder did not start" >&2
    return 1
}

# run_fg cmd...: run a command as a tracked background child and wait for it, so a
# TERM/INT trap in the caller fires at once instead of after the command ends.
run_fg() {
    "$@" &
    local p=$!
    CHILD_PIDS+=("$p")
    wait "$p"
}

# Kill every child this script started, by pid.
cleanup_children() {
    local p
    for p in "${CHILD_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    sleep 0.2
    for p in "${CHILD_PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    CHILD_PIDS=()
}
