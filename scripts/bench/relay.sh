#!/usr/bin/env bash
# Relay throughput: mgw against real peers, each pinned to one core (BENCH_SYS_CPU, default 1)
# with the load generator on another (BENCH_GEN_CPU, default 0). For every system: set up
# N bidirectional bridges (mgw / osmo-mgw by MGCP CRCX, rtpengine by ng offer/answer, crelay
# by arguments), binary-search the highest packet rate with zero loss, then one trial at 70 %
# of mgw's zero-loss rate for the p99 one-way delay. Prints a markdown table and writes
# reports/relay-<date>.md. See scripts/bench/README.md for the method.
#
# usage: scripts/bench/relay.sh [--quick] [--no-build] [--no-install] [--no-report]
#          [--duration S] [--bridges N] [--systems "mgw-io_uring mgw-epoll osmo-mgw rtpengine crelay"]
#   env: MGW_BIN=path (skip the build), BENCH_WORK=dir (keep logs there),
#        BENCH_GEN_CPU / BENCH_SYS_CPU (cores, default 0 / 1)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

quick=0 build=1 install=1 write_report=1 duration=2 bridges=64
systems="mgw-io_uring mgw-epoll osmo-mgw rtpengine crelay"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --no-build) build=0 ;;
        --no-install) install=0 ;;
        --no-report) write_report=0 ;;
        --duration) duration=$2; shift ;;
        --bridges) bridges=$2; shift ;;
        --systems) systems=$2; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "relay.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
# Search parameters: full run 2 s trials, 2 % precision, one retry of a failed trial.
precision=2 retries=1
if [ "$quick" -eq 1 ]; then duration=0.3 precision=40 retries=0; write_report=0; fi

WORK="${BENCH_WORK:-$(mktemp -d /tmp/mgw-bench-relay.XXXXXX)}"
mkdir -p "$WORK"
trap 'bench_cleanup' EXIT
trap 'log "interrupted"; exit 130' INT TERM

if [ "$install" -eq 1 ]; then
    ensure_packages gcc:gcc taskset:util-linux python3:python3 osmo-mgw:osmo-mgw rtpengine:rtpengine-daemon || exit 1
fi
case " $systems " in *" mgw-"*) build_mgw "$build" || exit 1 ;; esac
build_tools || exit 1
BLAST="$WORK/bin/rtpblast"

# Generator ports: PA = gen + 4i, PB = gen + 4i + 2.
gen=$(free_range $((4 * bridges)) 20000 39999) || exit 1
direct_map="$WORK/direct.map"
for ((i = 0; i < bridges; i++)); do
    echo "$((gen + 4 * i)) $((gen + 4 * i + 2)) $((2 * i + 1))"
    echo "$((gen + 4 * i + 2)) $((gen + 4 * i)) $((2 * i))"
done >"$direct_map"

# trial NAME MAP RATE : one trial, appended to $WORK/NAME.trials; 0 if it passed
trial() {
    timeout 60 "$BLAST" --map "$2" --cpu "$GEN_CPU" --rate "$3" --duration "$duration" --retries 0 \
        >>"$WORK/$1.trials" 2>&1
}

# search NAME MAP LO HI RESTART : zero-loss bisection; sets RATE (0 on failure).
# After a failed trial the system is restarted (RESTART is a command; it rewrites MAP): some
# systems do not recover from overload (userspace rtpengine stops forwarding altogether), and
# every trial should time the system, not the aftermath of the previous one. A failed rate is
# tried $retries more time(s) on a fresh instance before it counts as failed.
search() {
    local name=$1 map=$2 lo=$3 hi=$4 restart=$5 mid
    : >"$WORK/$name.trials"
    passes() { # passes RATE
        local k
        for ((k = 0; k <= retries; k++)); do
            trial "$name" "$map" "$1" && return 0
            $restart || return 1
        done
        return 1
    }
    while ! passes "$lo"; do
        hi=$lo lo=$((lo / 2))
        if [ "$lo" -lt 1000 ]; then RATE=0; log "$name: no rate passes"; return; fi
    done
    while [ $((hi - lo)) -gt $((lo * precision / 100)) ] && [ $((hi - lo)) -gt 500 ]; do
        mid=$(((lo + hi) / 2))
        if passes "$mid"; then lo=$mid; else hi=$mid; fi
    done
    RATE=$lo
    echo "zero_loss_pps=$RATE" >>"$WORK/$name.trials"
    log "$name: zero-loss $RATE pps ($(grep -c '^trial' "$WORK/$name.trials") trials)"
}

# one_trial NAME MAP RATE : one trial; sets P99 and LOST
one_trial() {
    local name=$1 map=$2 rate=$3 line
    timeout 60 "$BLAST" --map "$map" --cpu "$GEN_CPU" --rate "$rate" --duration "$duration" \
        --retries 0 >"$WORK/$name.delay" 2>&1
    line=$(grep '^trial' "$WORK/$name.delay" | tail -n 1)
    P99=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"$line"); P99=${P99:-?}
    LOST=$(sed -n 's/.* lost=\([0-9]*\).*/\1/p' <<<"$line"); LOST=${LOST:-?}
}

# ---- generator ceiling: the generator looped onto itself, no relay ----------
log "calibrating the generator alone (direct loop, core $GEN_CPU)"
search generator "$direct_map" 20000 1500000 true
GEN_MAX=$RATE
[ "$GEN_MAX" -gt 0 ] || { log "the generator could not run at all"; cat "$WORK/generator.trials" >&2; exit 1; }
hi=$((GEN_MAX * 105 / 100))
lo=$((GEN_MAX / 8))

declare -A RES P99S LOSTS STATUS
MGW_RATE=0
delay_rate=0

# set_up SYSTEM : start SYSTEM and write $WORK/SYSTEM.map; 0 on success.
set_up() {
    local s=$1 mport caport low ng
    low=$(free_range 1000) || return 1
    case "$s" in
        mgw-io_uring|mgw-epoll)
            mport=$(free_range 2 61000 65000) && caport=$((mport + 1))
            start_ca "$caport"
            start_mgw "${s#mgw-}" "$mport" "$caport" "$low" "$((low + 999))" "$WORK/$s.log" || return 1
            python3 "$BENCH_DIR/mgcp_bridges.py" setup --gw "127.0.0.1:$mport" --domain mgw \
                --bridges "$bridges" --ports "$gen" --map "$WORK/$s.map" ;;
        osmo-mgw)
            mport=$(free_range 2 61000 65000)
            start_osmo "$mport" "$low" "$((low + 999))" "$WORK/$s.log" || return 1
            python3 "$BENCH_DIR/mgcp_bridges.py" setup --gw "127.0.0.1:$mport" --domain mgw --hex \
                --bridges "$bridges" --ports "$gen" --map "$WORK/$s.map" ;;
        rtpengine)
            ng=$(free_range 2 61000 65000)
            start_rtpengine "$ng" "$low" "$((low + 999))" "$WORK/$s.log" || return 1
            python3 "$BENCH_DIR/ng_bridges.py" --ng "127.0.0.1:$ng" --bridges "$bridges" --ports "$gen" \
                --map "$WORK/$s.map" ;;
        crelay)
            for ((i = 0; i < bridges; i++)); do
                echo "$((low + 4 * i)) $((low + 4 * i + 2)) $((gen + 4 * i)) $((gen + 4 * i + 2))"
            done >"$WORK/crelay.pairs"
            spawn "$WORK/$s.log" taskset -c "$SYS_CPU" "$WORK/bin/crelay" "$WORK/crelay.pairs"
            SYS_PID=$LAST_PID
            wait_for_log "$WORK/$s.log" "crelay: ready" 5 "$SYS_PID" || return 1
            for ((i = 0; i < bridges; i++)); do
                echo "$((gen + 4 * i)) $((low + 4 * i)) $((2 * i + 1))"
                echo "$((gen + 4 * i + 2)) $((low + 4 * i + 2)) $((2 * i))"
            done >"$WORK/$s.map" ;;
        *) log "unknown system $s"; return 1 ;;
    esac
}

# restart SYSTEM : stop the running instance, start a fresh one with the same bridges.
restart() {
    stop_pid "$SYS_PID"; stop_pid "$CA_PID"
    SYS_PID="" CA_PID=""
    set_up "$1" >>"$WORK/$1.setup.log" 2>&1
}

# mgw-io_uring goes first: its rate sets the delay-trial rate for everyone.
ordered="$(for s in $systems; do [ "$s" = mgw-io_uring ] && echo "$s"; done; for s in $systems; do [ "$s" = mgw-io_uring ] || echo "$s"; done)"
for s in $ordered; do
    log "== $s"
    SYS_PID="" CA_PID=""
    if ! set_up "$s"; then
        STATUS[$s]="set-up failed"; RES[$s]=0
        stop_pid "$SYS_PID"; stop_pid "$CA_PID"; continue
    fi
    search "$s" "$WORK/$s.map" "$lo" "$hi" "restart $s"
    RES[$s]=$RATE
    if [ "$s" = mgw-io_uring ] || { [ "$delay_rate" -eq 0 ] && [ "$RATE" -gt 0 ]; }; then
        MGW_RATE=$RATE
        delay_rate=$((RATE * 70 / 100))
    fi
    if ! kill -0 "$SYS_PID" 2>/dev/null; then STATUS[$s]="exited during the run"; else STATUS[$s]=ok; fi
    stop_pid "$SYS_PID"; stop_pid "$CA_PID"
    # The delay trial runs on a fresh instance: overload during the search can leave a
    # system in a state (queues, learned addresses) that is not what we want to time.
    if [ "$delay_rate" -gt 0 ] && set_up "$s"; then
        one_trial "$s" "$WORK/$s.map" "$delay_rate"
        P99S[$s]=$P99 LOSTS[$s]=$LOST
    fi
    stop_pid "$SYS_PID"; stop_pid "$CA_PID"
done
base_p99="?"
if [ "$delay_rate" -gt 0 ]; then
    one_trial generator "$direct_map" "$delay_rate"
    base_p99=$P99
fi

# ---- report ------------------------------------------------------------------
ratio() { # ratio A B -> A/B with 2 decimals, or n/a
    if [ "${2:-0}" -gt 0 ] 2>/dev/null && [ "${1:-0}" -gt 0 ] 2>/dev/null; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
    else echo "n/a"; fi
}
ref=${RES[mgw-io_uring]:-$MGW_RATE}
{
    echo "# Relay throughput, $bridges bidirectional bridges"
    echo
    machine_line
    echo
    echo "Method: system on core $SYS_CPU, generator (rtpblast) on core $GEN_CPU; ${duration} s trials,"
    echo "zero loss (50 ms drain) with $retries retry of a failed trial, search precision ${precision} %;"
    echo "172-byte RTP packets (PCMU 20 ms) on $((2 * bridges)) streams. Generator ceiling (looped onto"
    echo "itself, no relay): **$GEN_MAX pps**; a system within 3 % of it is generator-bound (marked ≥)."
    echo
    echo "| system | zero-loss packets/s | mgw-io_uring / system | p99 one-way delay at $delay_rate pps (µs) | loss at $delay_rate pps | status |"
    echo "|---|---:|---:|---:|---:|---|"
    for s in $ordered; do
        r=${RES[$s]:-0} mark=""
        [ "$r" -gt 0 ] && [ $((r * 100)) -ge $((GEN_MAX * 97)) ] && mark="≥ "
        echo "| $s | $mark$r | $(ratio "$ref" "$r") | ${P99S[$s]:-?} | ${LOSTS[$s]:-?} | ${STATUS[$s]:-?} |"
    done
    echo "| (generator alone) | $GEN_MAX | | $base_p99 | | baseline |"
    echo
    echo "Ratios: mgw/rtpengine $(ratio "$ref" "${RES[rtpengine]:-0}"), mgw/crelay $(ratio "$ref" "${RES[crelay]:-0}"), mgw/osmo-mgw $(ratio "$ref" "${RES[osmo-mgw]:-0}"), mgw io_uring/epoll $(ratio "$ref" "${RES[mgw-epoll]:-0}")."
    echo "Added delay = system p99 minus the generator-alone p99 ($base_p99 µs) at the same rate."
} >"$WORK/table.md"
cat "$WORK/table.md"

if [ "$write_report" -eq 1 ]; then
    mkdir -p "$REPO_ROOT/reports"
    rep="$REPO_ROOT/reports/relay-$(date -u +%F).md"
    {
        cat "$WORK/table.md"
        echo
        echo "<details><summary>every trial</summary>"
        echo
        echo '```'
        for s in generator $ordered; do
            echo "## $s"; cat "$WORK/$s.trials" 2>/dev/null; cat "$WORK/$s.delay" 2>/dev/null
        done
        echo '```'
        echo "</details>"
    } >"$rep"
    log "wrote $rep"
fi

# Success means every system ran and produced a number.
fail=0
for s in $ordered; do [ "${RES[$s]:-0}" -gt 0 ] || fail=1; done
[ -z "${BENCH_WORK:-}" ] && [ "$fail" -eq 0 ] && rm -rf "$WORK"
[ "$fail" -eq 0 ] || log "some system produced no number; logs in $WORK"
exit "$fail"
