#!/usr/bin/env bash
# MGCP control-plane rate: CRCX+DLCX transactions per second with N outstanding (default 32),
# mgw against osmo-mgw in the same run, each pinned to one core (BENCH_SYS_CPU, default 1),
# the client (mgcpbench, C) on another (BENCH_GEN_CPU, default 0). The client is first run
# against a trivial C responder to show it is not the limit. Prints a markdown table and
# writes reports/mgcp-<date>.md.
#
# usage: scripts/bench/mgcp.sh [--quick] [--no-build] [--no-install] [--no-report]
#          [--duration S] [--outstanding N]
#   env: MGW_BIN=path (skip the build), BENCH_WORK=dir (keep logs there)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

quick=0 build=1 install=1 write_report=1 duration=5 outstanding=32
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --no-build) build=0 ;;
        --no-install) install=0 ;;
        --no-report) write_report=0 ;;
        --duration) duration=$2; shift ;;
        --outstanding) outstanding=$2; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "mgcp.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
warmup=1
if [ "$quick" -eq 1 ]; then duration=0.5 warmup=0.2 write_report=0; fi

WORK="${BENCH_WORK:-$(mktemp -d /tmp/mgw-bench-mgcp.XXXXXX)}"
mkdir -p "$WORK"
trap 'bench_cleanup' EXIT
trap 'log "interrupted"; exit 130' INT TERM

if [ "$install" -eq 1 ]; then
    ensure_packages gcc:gcc taskset:util-linux python3:python3 osmo-mgw:osmo-mgw || exit 1
fi
build_mgw "$build" || exit 1
build_tools || exit 1

declare -A RATE P99 LINE
# client NAME PORT [--hex] : run the client against 127.0.0.1:PORT
client() {
    local name=$1 port=$2; shift 2
    timeout 60 "$WORK/bin/mgcpbench" --gw "127.0.0.1:$port" --outstanding "$outstanding" \
        --duration "$duration" --warmup "$warmup" --cpu "$GEN_CPU" "$@" >"$WORK/$name.out" 2>&1
    local rc=$?
    LINE[$name]=$(grep '^mgcp ' "$WORK/$name.out" | tail -n 1)
    RATE[$name]=$(sed -n 's/.*txn_per_s=\([0-9]*\).*/\1/p' <<<"${LINE[$name]}")
    P99[$name]=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"${LINE[$name]}")
    RATE[$name]=${RATE[$name]:-0}
    [ "$rc" -eq 0 ] || { log "$name: client reported errors:"; tail -n 5 "$WORK/$name.out" >&2; }
    log "$name: ${LINE[$name]:-no result}"
}

# 1. the client alone, against a responder that does nothing but answer
port=$(free_range 2 61000 65000) || exit 1
spawn "$WORK/responder.log" taskset -c "$SYS_CPU" "$WORK/bin/mgcpbench" --responder "$port"
pid=$LAST_PID
wait_for_log "$WORK/responder.log" "responder ready" 5 "$pid" && client responder "$port"
stop_pid "$pid"

# 2. mgw: one dataplane worker; the whole process on SYS_CPU
mport=$(free_range 2 61000 65000) || exit 1
low=$(free_range 1000) || exit 1
start_ca "$((mport + 1))"
if start_mgw io_uring "$mport" "$((mport + 1))" "$low" "$((low + 999))" "$WORK/mgw.log"; then
    client mgw "$mport"
fi
stop_pid "$SYS_PID"; stop_pid "$CA_PID"

# 3. osmo-mgw
mport=$(free_range 2 61000 65000) || exit 1
low=$(free_range 1000) || exit 1
if start_osmo "$mport" "$low" "$((low + 999))" "$WORK/osmo-mgw.log"; then
    client osmo-mgw "$mport" --hex
fi
stop_pid "$SYS_PID"

ratio() {
    if [ "${2:-0}" -gt 0 ] && [ "${1:-0}" -gt 0 ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
    else echo "n/a"; fi
}
{
    echo "# MGCP transactions per second, $outstanding outstanding"
    echo
    machine_line
    echo
    echo "Method: gateway on core $SYS_CPU, client (mgcpbench, C, one UDP socket) on core $GEN_CPU;"
    echo "each of $outstanding slots cycles CRCX (C:, L: p:20, a:PCMU, M: recvonly) -> DLCX (C:, I:) on its own"
    echo "rtpbridge endpoint; a transaction is one command answered with a final response;"
    echo "${warmup} s warm-up, ${duration} s measured."
    echo
    echo "| system | transactions/s | CRCX+DLCX pairs/s | p99 latency (µs) | mgw / system |"
    echo "|---|---:|---:|---:|---:|"
    for s in mgw osmo-mgw responder; do
        pairs=$(sed -n 's/.*pairs_per_s=\([0-9]*\).*/\1/p' <<<"${LINE[$s]:-}")
        label=$s
        [ "$s" = responder ] && label="(client vs trivial responder: client ceiling)"
        echo "| $label | ${RATE[$s]:-0} | ${pairs:-0} | ${P99[$s]:-?} | $(ratio "${RATE[mgw]:-0}" "${RATE[$s]:-0}") |"
    done
    echo
    echo "Ratio mgw/osmo-mgw: $(ratio "${RATE[mgw]:-0}" "${RATE[osmo-mgw]:-0}")."
    if [ "${RATE[responder]:-0}" -gt 0 ]; then
        for s in mgw osmo-mgw; do
            if [ $(( ${RATE[$s]:-0} * 100 )) -ge $(( ${RATE[responder]} * 90 )) ]; then
                echo "Warning: $s reached 90 % of the client's own ceiling: the client may be the limit."
            fi
        done
    fi
} >"$WORK/table.md"
cat "$WORK/table.md"
if [ "$write_report" -eq 1 ]; then
    mkdir -p "$REPO_ROOT/reports"
    rep="$REPO_ROOT/reports/mgcp-$(date -u +%F).md"
    { cat "$WORK/table.md"; echo; echo '```'; for s in responder mgw osmo-mgw; do echo "$s: ${LINE[$s]:-}"; done; echo '```'; } >"$rep"
    log "wrote $rep"
fi
fail=0
for s in responder mgw osmo-mgw; do [ "${RATE[$s]:-0}" -gt 0 ] || fail=1; done
[ -z "${BENCH_WORK:-}" ] && [ "$fail" -eq 0 ] && rm -rf "$WORK"
[ "$fail" -eq 0 ] || log "some system produced no number; logs in $WORK"
exit "$fail"
