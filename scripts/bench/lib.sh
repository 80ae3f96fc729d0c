# Shared helpers for the benchmark scripts (sourced, not run).
# Every process started through `spawn` is stopped by `bench_cleanup` (the scripts trap EXIT).

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/../.." && pwd)"
GEN_CPU="${BENCH_GEN_CPU:-0}"   # the load generator / client
SYS_CPU="${BENCH_SYS_CPU:-1}"   # the system under test
SPAWNED=()

log() { echo "$(date +%H:%M:%S) $*" >&2; }

# spawn LOGFILE cmd... : start cmd in the background, output to LOGFILE; sets LAST_PID.
spawn() {
    local logf=$1; shift
    "$@" >"$logf" 2>&1 &
    LAST_PID=$!
    SPAWNED+=("$LAST_PID")
}

# stop_pid PID : SIGTERM, up to 3 s, then SIGKILL. Only processes we started.
stop_pid() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

bench_cleanup() {
    local p
    for p in "${SPAWNED[@]}"; do stop_pid "$p"; done
    SPAWNED=()
}

# wait_for_log FILE PATTERN SECONDS PID : 0 once PATTERN shows up in FILE.
wait_for_log() {
    local f=$1 pat=$2 secs=$3 pid=$4 i
    for i in $(seq 1 $((secs * 10))); do
        grep -q -- "$pat" "$f" 2>/dev/null && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            log "process $pid exited during start-up:"; tail -n 20 "$f" >&2; return 1
        fi
        sleep 0.1
    done
    log "no '$pat' in $f after ${secs}s:"; tail -n 20 "$f" >&2
    return 1
}

# free_range COUNT [MIN MAX] : prints LOW (even) such that 127.0.0.1 UDP ports LOW..LOW+COUNT-1
# are free now, picked at random within MIN..MAX (default 40000..60000). The load generator's
# ports come from 20000..39999 so that no system's port range can overlap them.
free_range() {
    python3 - "$1" "${2:-40000}" "${3:-60000}" <<'PY'
import random, socket, sys
count, lo, hi = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for _ in range(300):
    low = random.randrange(lo, hi - count) & ~1
    socks = []
    try:
        for p in range(low, low + count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(low)
    sys.exit(0)
sys.exit("free_range: no free block of %d ports" % count)
PY
}

# ensure_packages CMD:PKG... : apt-get install the packages whose command is missing.
ensure_packages() {
    local need=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
    done
    [ "${#need[@]}" -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { log "need root to install ${need[*]}"; return 1; }
        sudo=sudo
    fi
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null 2>&1
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
        log "apt-get install ${need[*]} failed"; return 1; }
}

# build_mgw BUILD(0|1) : sets MGW_BIN (honours a preset MGW_BIN).
build_mgw() {
    if [ -n "${MGW_BIN:-}" ]; then return 0; fi
    MGW_BIN="$REPO_ROOT/target/release/mgw"
    if [ "$1" -eq 1 ] || [ ! -x "$MGW_BIN" ]; then
        log "cargo build --release -p mgw"
        if ! (cd "$REPO_ROOT" && cargo build --release -p mgw >"$WORK/cargo.log" 2>&1); then
            tail -n 20 "$WORK/cargo.log" >&2
            log "mgw build failed (use --no-build to run the existing binary)"
            return 1
        fi
    fi
}

# build_tools : compiles the C helpers into $WORK/bin.
build_tools() {
    mkdir -p "$WORK/bin"
    local t
    for t in rtpblast crelay mgcpbench; do
        gcc -O2 -Wall -Wextra -o "$WORK/bin/$t" "$BENCH_DIR/$t.c" 2>"$WORK/gcc-$t.log" || {
            cat "$WORK/gcc-$t.log" >&2; log "gcc $t.c failed"; return 1; }
    done
}

# start_ca PORT : a call agent that answers the gateway's RSIP/NTFY.
start_ca() {
    spawn "$WORK/ca-$1.log" python3 "$BENCH_DIR/ca_answer.py" "$1"
    CA_PID=$LAST_PID
}

# start_mgw BACKEND MGCP_PORT CA_PORT RTP_LOW RTP_HIGH LOG : mgw, one worker, on SYS_CPU.
start_mgw() {
    local backend=$1 mport=$2 caport=$3 low=$4 high=$5 logf=$6 extra=()
    if "$MGW_BIN" run --help 2>/dev/null | grep -q -- '--http-bind'; then extra+=(--http-bind off); fi
    spawn "$logf" taskset -c "$SYS_CPU" "$MGW_BIN" run --mgcp-bind "127.0.0.1:$mport" \
        --call-agent "127.0.0.1:$caport" --domain mgw --rtp-bind 127.0.0.1 --rtp-ports "$low-$high" \
        --workers 1 --backend "$backend" --log warn "${extra[@]}"
    SYS_PID=$LAST_PID
    wait_for_log "$logf" "mgw: MGCP listening on" 10 "$SYS_PID"
}

# start_osmo MGCP_PORT RTP_LOW RTP_HIGH LOG : osmo-mgw on SYS_CPU with 64 rtpbridge endpoints.
# osmo-mgw also opens its VTY (TCP 4243) and CTRL (TCP 4267) interfaces; their ports are fixed,
# so they are bound to a random 127.x.y.z address, out of the way of any other osmo-mgw.
start_osmo() {
    local mport=$1 low=$2 high=$3 logf=$4
    local vaddr="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))"
    cat >"$WORK/osmo-mgw.cfg" <<EOF
log stderr
 logging level set-all error
line vty
 bind $vaddr
ctrl
 bind $vaddr
mgcp
 domain mgw
 bind ip 127.0.0.1
 bind port $mport
 rtp port-range $low $high
 rtp bind-ip 127.0.0.1
 no rtp keep-alive
 number endpoints 64
EOF
    spawn "$logf" taskset -c "$SYS_CPU" osmo-mgw -c "$WORK/osmo-mgw.cfg"
    SYS_PID=$LAST_PID
    local i
    for i in $(seq 1 100); do
        ss -lun 2>/dev/null | grep -q "127.0.0.1:$mport " && return 0
        kill -0 "$SYS_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "osmo-mgw did not start:"; tail -n 20 "$logf" >&2
    return 1
}

# start_rtpengine NG_PORT RTP_LOW RTP_HIGH LOG : userspace rtpengine, one thread, on SYS_CPU.
start_rtpengine() {
    local ng=$1 low=$2 high=$3 logf=$4 i
    spawn "$logf" taskset -c "$SYS_CPU" rtpengine --interface=127.0.0.1 --listen-ng="127.0.0.1:$ng" \
        --table=-1 --foreground --log-stderr --log-level=3 --num-threads=1 \
        --port-min="$low" --port-max="$high" --pidfile="$WORK/rtpengine.pid"
    SYS_PID=$LAST_PID
    for i in $(seq 1 50); do
        python3 "$BENCH_DIR/ng_bridges.py" --ng "127.0.0.1:$ng" --ping >/dev/null 2>&1 && return 0
        kill -0 "$SYS_PID" 2>/dev/null || break
        sleep 0.2
    done
    log "rtpengine did not answer ng ping:"; tail -n 20 "$logf" >&2
    return 1
}

machine_line() {
    local cpu
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    echo "machine: nproc $(nproc), kernel $(uname -r), CPU ${cpu:-unknown}, date $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
}
