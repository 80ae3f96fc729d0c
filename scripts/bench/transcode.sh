#!/usr/bin/env bash
# Transcoding capacity: full-duplex G.711 (PCMU) <-> Opus calls per core, mgw beside rtpengine.
# The system runs on one core (BENCH_SYS_CPU, default 1), its load on the other
# (BENCH_GEN_CPU, default 0). mgw: one worker, calls IP (PCMU) -> ds/e1-(2k+1)/n ->
# ds/e1-(2k+2)/n -> IP (Opus) through back-to-back virtual E1 pairs, driven by `mgw load
# --mode tdm` (one process per span pair). rtpengine: userspace, one thread, ng
# offer/answer with codec transcode opus, driven by tcblast.c. For each number of calls N
# (a ramp, then bisection) every call holds for --hold seconds on a fresh instance; the
# step passes with zero loss, every call set up, the load on schedule and the system's
# CPU share <= --cpu-limit (mgw: its dataplane worker thread; rtpengine: the process).
# Prints a markdown table and writes reports/transcode-<date>.md.
# See scripts/bench/README.md ("Transcoding") for the method.
#
# usage: scripts/bench/transcode.sh [--quick] [--no-build] [--no-install] [--no-report]
#          [--hold S] [--ramp "50 100 ..."] [--max-calls N] [--cpu-limit PCT]
#          [--systems "mgw rtpengine"]
#   env: MGW_BIN=path (skip the build), BENCH_WORK=dir (keep logs there),
#        BENCH_GEN_CPU / BENCH_SYS_CPU (cores, default 0 / 1), BENCH_RT=0 (nice -10
#        instead of SCHED_FIFO), BENCH_QUIET_WAIT=S (wait for idle cores, default 120)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

quick=0 build=1 install=1 write_report=1 hold=10 cpu_limit=80 max_calls=600
ramp="50 100 150 200 250 300 350" systems="mgw rtpengine" ramp_set=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --no-build) build=0 ;;
        --no-install) install=0 ;;
        --no-report) write_report=0 ;;
        --hold) hold=$2; shift ;;
        --ramp) ramp=$2; ramp_set=1; shift ;;
        --max-calls) max_calls=$2; shift ;;
        --cpu-limit) cpu_limit=$2; shift ;;
        --systems) systems=$2; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "transcode.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
bisect_steps=3
if [ "$quick" -eq 1 ]; then
    hold=3 bisect_steps=0 write_report=0
    [ "$ramp_set" -eq 1 ] || ramp="20 40"
fi
# The CPU window starts $settle s after the load (every call up, codecs created, any
# start-up backlog worked off) and ends 1 s before the calls do.
settle=3
[ "$quick" -eq 1 ] && settle=1
win=$(awk -v h="$hold" -v s="$settle" 'BEGIN { w = h - s - 1; if (w < 0.5) w = 0.5; print w }')
last_ramp=$(tr ' ' '\n' <<<"$ramp" | grep . | sort -n | tail -n 1)
[ "$max_calls" -ge "$last_ramp" ] || max_calls=$last_ramp
pairs=$(((max_calls + 29) / 30))
[ "$quick" -eq 1 ] && pairs=$(((last_ramp + 29) / 30))

WORK="${BENCH_WORK:-$(mktemp -d /tmp/mgw-bench-transcode.XXXXXX)}"
mkdir -p "$WORK/bin" "$WORK/steps"
trap 'bench_cleanup' EXIT
trap 'log "interrupted"; exit 130' INT TERM

if [ "$install" -eq 1 ]; then
    need=(gcc:gcc taskset:util-linux python3:python3 rtpengine:rtpengine-daemon)
    # tcblast links libopus; the header decides (no command to look for).
    [ -f /usr/include/opus/opus.h ] || need+=(__libopus_dev__:libopus-dev)
    ensure_packages "${need[@]}" || exit 1
fi
case " $systems " in *" mgw "*)
    build_mgw "$build" || exit 1
    # A private copy: other builds may replace target/release/mgw during the run.
    cp "$MGW_BIN" "$WORK/bin/mgw" || exit 1
    MGW="$WORK/bin/mgw" ;;
esac
gcc -O2 -Wall -Wextra -o "$WORK/bin/tcblast" "$BENCH_DIR/tcblast.c" -lopus -lm 2>"$WORK/gcc-tcblast.log" || {
    cat "$WORK/gcc-tcblast.log" >&2; log "gcc tcblast.c failed (libopus-dev installed?)"; exit 1; }
TCBLAST="$WORK/bin/tcblast"

# ---- priority and a quiet machine ------------------------------------------------
# As root, the system and its load run SCHED_FIFO (chrt -f 10; BENCH_RT=0: nice -10
# instead), so that other work on a shared machine (builds) cannot preempt them: a time-
# shared core shows up as delay and loss that are not the system's. The kernel's RT
# throttling (95 %) still leaves the rest of the machine a share. What else ran on each
# core during every window is in the table (core busy % minus the system's / load's share).
PRIO=()
if [ "$(id -u)" -eq 0 ]; then
    if [ "${BENCH_RT:-1}" = 1 ] && command -v chrt >/dev/null; then PRIO=(chrt -f 10); else PRIO=(nice -n -10); fi
fi
# boost PID : the same priority for every thread of PID (a process started by lib.sh).
boost() {
    local t
    case "${PRIO[*]:-}" in
        chrt*) chrt -f -a -p 10 "$1" >/dev/null 2>&1 ;;
        nice*) for t in /proc/"$1"/task/*; do renice -n -10 -p "${t##*/}" >/dev/null 2>&1; done ;;
    esac
}
# wait_quiet SECONDS : wait (at most SECONDS) until both cores were < 25 % busy over 2 s;
# sets QUIET to what was seen.
wait_quiet() {
    local deadline=$(($(date +%s) + $1)) a0 b0 a1 b1 ua ub k=0
    while :; do
        a0=$(core_ticks "$SYS_CPU"); b0=$(core_ticks "$GEN_CPU"); sleep 2
        a1=$(core_ticks "$SYS_CPU"); b1=$(core_ticks "$GEN_CPU")
        ua=$(core_share "$a0" "$a1"); ub=$(core_share "$b0" "$b1")
        QUIET="before the run: core $SYS_CPU ${ua} % busy, core $GEN_CPU ${ub} % busy (other processes)"
        awk -v a="$ua" -v b="$ub" 'BEGIN { exit !(a + 0 < 25 && b + 0 < 25) }' && return 0
        [ "$(date +%s)" -lt "$deadline" ] || { log "machine not quiet: $QUIET"; return 1; }
        [ $((k++ % 15)) -eq 0 ] && log "waiting for a quiet machine ($QUIET)"
    done
}

# ---- measuring ----------------------------------------------------------------
now_ns() { date +%s%N; }
# cpu_ns PID [COMM] : CPU time (ns, from schedstat) of every thread of PID, or only of
# the threads named COMM.
cpu_ns() {
    local pid=$1 comm=${2:-} t s=0 v c
    for t in /proc/"$pid"/task/*; do
        if [ -n "$comm" ]; then
            read -r c <"$t/comm" 2>/dev/null || continue
            [ "$c" = "$comm" ] || continue
        fi
        read -r v _ <"$t/schedstat" 2>/dev/null && s=$((s + v))
    done
    echo "$s"
}
# core_ticks N : "BUSY TOTAL" jiffies of core N (busy = everything but idle and iowait).
core_ticks() {
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
# sock_drops PID : datagrams the kernel dropped on PID's UDP sockets so far (the "drops"
# column of /proc/net/udp for the socket inodes PID holds). Per socket, so other work on the
# machine does not count; read while the calls are still up (closed sockets are gone).
sock_drops() {
    local f
    for f in /proc/"$1"/fd/*; do readlink "$f" 2>/dev/null; done |
        sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' >"$WORK/inodes.$1"
    awk 'NR == FNR { want[$1] = 1; next } FNR > 1 && ($10 in want) { d += $13 } END { print d + 0 }' \
        "$WORK/inodes.$1" /proc/net/udp /proc/net/udp6 2>/dev/null
}
share() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else print "?" }'; }
core_share() { # core_share "B0 T0" "B1 T1"
    awk -v s="$1 $2" 'BEGIN { split(s, v, " "); if (v[4] > v[2]) printf "%.1f", 100 * (v[3] - v[1]) / (v[4] - v[2]); else print "?" }'
}

# ---- mgw ---------------------------------------------------------------------
# mgw_config FILE MGCP_PORT CA_PORT HTTP_PORT RTP_LOW RTP_HIGH : $pairs E1 pairs back to back.
mgw_config() {
    local f=$1 k
    {
        echo "mgcp_bind = \"127.0.0.1:$2\""
        echo "call_agents = [\"127.0.0.1:$3\"]"
        echo "domain = \"mgw\""
        echo "rtp_bind = \"127.0.0.1\""
        echo "rtp_ports = \"$5-$6\""
        echo "workers = 1"
        echo "pin_workers = true"
        echo "backend = \"auto\""
        echo "http_bind = \"127.0.0.1:$4\""
        echo "log = \"warn\""
        echo "bridges = 1"
        echo
        echo "[tdm]"
        echo "ptime_ms = 20"
        for ((k = 1; k <= 2 * pairs; k += 2)); do
            printf '\n[[tdm.span]]\nkind = "virtual"\nname = "e1-%d"\nlaw = "alaw"\nchannels = "1-30"\nloop = "e1-%d"\n' "$k" "$((k + 1))"
            printf '\n[[tdm.span]]\nkind = "virtual"\nname = "e1-%d"\nlaw = "alaw"\nchannels = "1-30"\nloop = "e1-%d"\n' "$((k + 1))" "$k"
        done
    } >"$f"
}

# metric_drops PORT : the worker's drop counters by reason, "reason=N ..." (non-zero only).
metric_drops() {
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null |
        awk '/^mgw_worker_drops_total\{/ && $2 > 0 { r = $1; sub(/.*reason="/, "", r); sub(/".*/, "", r); printf "%s=%s ", r, $2 }'
}
# metric_worker_cpu PORT : mgw_worker_cpu_seconds_total{worker="0"} from /metrics.
metric_worker_cpu() {
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null |
        awk '/^mgw_worker_cpu_seconds_total\{worker="0"\}/ { print $2; exit }'
}

# Results of a step, by "system:N".
declare -A R_PASS R_WHY R_LOST R_DETAIL R_CPU R_PROC R_GEN R_CORE R_GCORE R_DELAY R_LATE R_CALLS

# step_mgw N : one step on a fresh mgw; fills the R_* entries for mgw:N.
step_mgw() {
    local n=$1 key="mgw:$1" d="$WORK/steps/mgw-$1" mport caport hport low np j c pids=() pid
    mkdir -p "$d"
    mport=$(free_range 3 61000 65000) && caport=$((mport + 1)) && hport=$((mport + 2))
    low=$(free_range $((4 * pairs * 30 + 8))) || return 1
    mgw_config "$d/mgw.toml" "$mport" "$caport" "$hport" "$low" "$((low + 4 * pairs * 30 + 7))"
    start_ca "$caport"
    spawn "$d/mgw.log" "${PRIO[@]}" taskset -c "$SYS_CPU" "$MGW" run --config "$d/mgw.toml"
    SYS_PID=$LAST_PID
    if ! wait_for_log "$d/mgw.log" "mgw: MGCP listening on" 10 "$SYS_PID"; then
        R_PASS[$key]=0 R_WHY[$key]="mgw did not start"; stop_pid "$SYS_PID"; stop_pid "$CA_PID"; return 1
    fi
    np=$(((n + 29) / 30))
    for ((j = 0; j < np; j++)); do
        c=$((n - 30 * j)); [ "$c" -gt 30 ] && c=30
        spawn "$d/load-$j.log" "${PRIO[@]}" taskset -c "$GEN_CPU" "$MGW" load --gateway "127.0.0.1:$mport" \
            --ca-bind "127.0.0.1:0" --domain mgw --mode tdm \
            --span-a "ds/e1-$((2 * j + 1))/" --span-b "ds/e1-$((2 * j + 2))/" --channels 30 \
            --codec-a PCMU --codec-b opus --calls "$c" --total "$c" --rate 200 --hold "$hold" \
            --deadline "$(awk -v h="$hold" 'BEGIN { print h + 20 }')" --json "$d/load-$j.json" -q
        pids+=("$LAST_PID")
    done
    sleep "$settle"
    local w0 p0 g0=0 c0 gc0 t0 m0 w1 p1 g1=0 c1 gc1 t1 m1
    t0=$(now_ns); w0=$(cpu_ns "$SYS_PID" mgw-dp-0); p0=$(cpu_ns "$SYS_PID")
    for pid in "${pids[@]}"; do g0=$((g0 + $(cpu_ns "$pid"))); done
    c0=$(core_ticks "$SYS_CPU"); gc0=$(core_ticks "$GEN_CPU"); m0=$(metric_worker_cpu "$hport")
    sleep "$win"
    t1=$(now_ns); w1=$(cpu_ns "$SYS_PID" mgw-dp-0); p1=$(cpu_ns "$SYS_PID")
    for pid in "${pids[@]}"; do g1=$((g1 + $(cpu_ns "$pid"))); done
    c1=$(core_ticks "$SYS_CPU"); gc1=$(core_ticks "$GEN_CPU"); m1=$(metric_worker_cpu "$hport")
    local drops wdrops
    drops=$(sock_drops "$SYS_PID")
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    wdrops=$(metric_drops "$hport")
    # Packets the worker itself gave up on (no receive buffer, send queue full, send error).
    local gwdrops
    gwdrops=$(awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] ~ /^(no_buffer|send_queue_full|send_error)$/) d += kv[2] } } END { print d + 0 }' <<<"$wdrops")
    local alive=1
    kill -0 "$SYS_PID" 2>/dev/null || alive=0
    stop_pid "$SYS_PID"; stop_pid "$CA_PID"
    eval "$(python3 "$BENCH_DIR/load_summary.py" "$d"/load-*.json)"
    local wall=$((t1 - t0))
    R_CPU[$key]=$(share $((w1 - w0)) "$wall")
    [ "$w1" -gt 0 ] || R_CPU[$key]="?"
    R_PROC[$key]=$(share $((p1 - p0)) "$wall")
    R_GEN[$key]=$(share $((g1 - g0)) "$wall")
    R_CORE[$key]=$(core_share "$c0" "$c1")
    R_GCORE[$key]=$(core_share "$gc0" "$gc1")
    R_DELAY[$key]=$L_delay_p99_ms R_LATE[$key]=$L_late_p99_ms
    R_CALLS[$key]="$L_calls_ok/$n"
    # Each count sees some of the same packets: the largest is a lower bound of the loss.
    R_LOST[$key]=$L_lost
    [ "$drops" -gt "${R_LOST[$key]}" ] && R_LOST[$key]=$drops
    [ "$gwdrops" -gt "${R_LOST[$key]}" ] && R_LOST[$key]=$gwdrops
    R_DETAIL[$key]="in $L_in_missing, out $L_out_missing, seq $L_seq_lost; socket drops $drops; worker drops $gwdrops; crosstalk legs $L_crosstalk"
    local metric=""
    [ -n "$m0" ] && [ -n "$m1" ] && metric=$(awk -v a="$m0" -v b="$m1" -v w="$wall" 'BEGIN { printf "%.1f", 100 * (b - a) * 1e9 / w }')
    echo "mgw N=$n worker=${R_CPU[$key]}% metric_worker=${metric:-?}% process=${R_PROC[$key]}% load=${R_GEN[$key]}% core$SYS_CPU=${R_CORE[$key]}% core$GEN_CPU=${R_GCORE[$key]}% calls=${R_CALLS[$key]} lost=${R_LOST[$key]} (${R_DETAIL[$key]}) delay_p99=${L_delay_p99_ms}ms late_p99=${L_late_p99_ms}ms worker_drops: ${wdrops:-none}" >>"$WORK/mgw.steps"
    verdict "$key" "$n" "$alive" "$L_calls_ok" "$L_files" "$np"
}

# ---- rtpengine ---------------------------------------------------------------
step_rtpengine() {
    local n=$1 key="rtpengine:$1" d="$WORK/steps/rtpengine-$1" ng low gen pid
    mkdir -p "$d"
    ng=$(free_range 2 61000 65000) && low=$(free_range $((8 * n + 100))) || return 1
    if ! start_rtpengine "$ng" "$low" "$((low + 8 * n + 99))" "$d/rtpengine.log"; then
        R_PASS[$key]=0 R_WHY[$key]="rtpengine did not start"; stop_pid "$SYS_PID"; return 1
    fi
    boost "$SYS_PID"
    gen=$(free_range $((4 * n)) 20000 39999) || return 1
    if ! python3 "$BENCH_DIR/ng_transcode.py" --ng "127.0.0.1:$ng" --calls "$n" --ports "$gen" \
        --map "$d/map" >"$d/setup.log" 2>&1; then
        cat "$d/setup.log" >&2
        R_PASS[$key]=0 R_WHY[$key]="ng set-up failed"; stop_pid "$SYS_PID"; return 1
    fi
    spawn "$d/tcblast.out" "${PRIO[@]}" "$TCBLAST" --map "$d/map" --cpu "$GEN_CPU" \
        --warmup "$(awk -v s="$settle" 'BEGIN { print s - 0.5 }')" \
        --duration "$(awk -v h="$hold" -v s="$settle" 'BEGIN { print h - s + 0.5 }')" --drain-ms 300
    pid=$LAST_PID
    sleep "$settle"
    local p0 g0 c0 gc0 t0 p1 g1 c1 gc1 t1
    t0=$(now_ns); p0=$(cpu_ns "$SYS_PID"); g0=$(cpu_ns "$pid")
    c0=$(core_ticks "$SYS_CPU"); gc0=$(core_ticks "$GEN_CPU")
    sleep "$win"
    t1=$(now_ns); p1=$(cpu_ns "$SYS_PID"); g1=$(cpu_ns "$pid")
    c1=$(core_ticks "$SYS_CPU"); gc1=$(core_ticks "$GEN_CPU")
    local drops
    drops=$(sock_drops "$SYS_PID")
    wait "$pid" 2>/dev/null
    local alive=1
    kill -0 "$SYS_PID" 2>/dev/null || alive=0
    stop_pid "$SYS_PID"
    local line wall=$((t1 - t0)) v
    line=$(grep '^tcblast:' "$d/tcblast.out" | tail -n 1)
    tb() { v=$(sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"); echo "${v:-0}"; }
    R_CPU[$key]=$(share $((p1 - p0)) "$wall")
    R_PROC[$key]=${R_CPU[$key]}
    R_GEN[$key]=$(share $((g1 - g0)) "$wall")
    R_CORE[$key]=$(core_share "$c0" "$c1")
    R_GCORE[$key]=$(core_share "$gc0" "$gc1")
    R_DELAY[$key]="–"
    R_LATE[$key]=$(awk -v u="$(tb late_p99_us)" 'BEGIN { printf "%.2f", u / 1000 }')
    local lost wrong
    lost=$(tb lost) wrong=$(tb wrong_pt)
    R_LOST[$key]=$(((lost > drops ? lost : drops) + wrong))
    R_DETAIL[$key]="a→b $(tb a2b_lost), b→a $(tb b2a_lost), wrong PT $wrong; socket drops $drops; window rx $(tb window_rx_pct) %"
    local ok_calls=$n
    [ -n "$line" ] || ok_calls=0
    R_CALLS[$key]="$ok_calls/$n"
    echo "rtpengine N=$n process=${R_CPU[$key]}% load=${R_GEN[$key]}% core$SYS_CPU=${R_CORE[$key]}% core$GEN_CPU=${R_GCORE[$key]}% lost=${R_LOST[$key]} (${R_DETAIL[$key]}) late_p99=${R_LATE[$key]}ms | $line" >>"$WORK/rtpengine.steps"
    verdict "$key" "$n" "$alive" "$ok_calls" 1 1
}

# verdict KEY N ALIVE CALLS_OK FILES EXPECTED_FILES : sets R_PASS / R_WHY.
verdict() {
    local key=$1 n=$2 why=""
    [ "$3" -eq 1 ] || why="system exited"
    [ -z "$why" ] && [ "$5" -lt "$6" ] && why="load produced no report"
    [ -z "$why" ] && [ "$4" -lt "$n" ] && why="$(($n - $4)) calls failed"
    [ -z "$why" ] && [ "${R_LOST[$key]}" -gt 0 ] && why="loss"
    if [ -z "$why" ] && awk -v l="${R_LATE[$key]}" 'BEGIN { exit !(l + 0 > 5) }'; then why="load behind schedule"; fi
    if [ -z "$why" ] && { [ "${R_CPU[$key]}" = "?" ] || awk -v c="${R_CPU[$key]}" -v m="$cpu_limit" 'BEGIN { exit !(c + 0 > m) }'; }; then
        why="CPU > $cpu_limit %"
    fi
    if [ -z "$why" ]; then R_PASS[$key]=1 R_WHY[$key]=pass; else R_PASS[$key]=0 R_WHY[$key]=$why; fi
    log "$key: ${R_WHY[$key]} (system CPU ${R_CPU[$key]} %, load CPU ${R_GEN[$key]} %, lost ${R_LOST[$key]})"
}

# run_system SYS : the ramp (continued by 50 while it passes, up to max_calls), then
# bisection between the best pass and the first failure. Sets BEST[SYS], FIRST_FAIL[SYS].
declare -A BEST FIRST_FAIL STEPS
run_system() {
    local s=$1 n best=0 fail=0 list
    : >"$WORK/$s.steps"
    list=$(tr ' ' '\n' <<<"$ramp" | grep . | sort -n)
    n=$(head -n 1 <<<"$list")
    while [ -n "$n" ]; do
        "step_$s" "$n"
        STEPS[$s]="${STEPS[$s]:-} $n"
        if [ "${R_PASS[$s:$n]:-0}" -eq 1 ]; then
            best=$n
        else
            fail=$n; break
        fi
        local nxt
        nxt=$(awk -v n="$n" '$1 > n { print; exit }' <<<"$list")
        if [ -z "$nxt" ] && [ "$quick" -eq 0 ] && [ $((n + 50)) -le "$max_calls" ] && [ "$s" = mgw ]; then
            nxt=$((n + 50))
        fi
        n=$nxt
    done
    local k mid
    for ((k = 0; k < bisect_steps && fail > 0; k++)); do
        local prec=$((best * 8 / 100)); [ "$prec" -lt 5 ] && prec=5
        [ $((fail - best)) -gt "$prec" ] || break
        mid=$(((best + fail) / 2))
        [ "$mid" -gt 5 ] && mid=$((mid / 5 * 5))
        { [ "$mid" -le "$best" ] || [ "$mid" -ge "$fail" ]; } && mid=$(((best + fail) / 2))
        { [ "$mid" -le "$best" ] || [ "$mid" -ge "$fail" ]; } && break
        "step_$s" "$mid"
        STEPS[$s]="${STEPS[$s]} $mid"
        if [ "${R_PASS[$s:$mid]:-0}" -eq 1 ]; then best=$mid; else fail=$mid; fi
    done
    BEST[$s]=$best FIRST_FAIL[$s]=$fail
}

MACHINE=$(machine_line)
log "$MACHINE"
QUIET="not checked (--quick)"
[ "$quick" -eq 1 ] || wait_quiet "${BENCH_QUIET_WAIT:-120}"
t_start=$(date +%s)
for s in $systems; do
    case "$s" in mgw|rtpengine) ;; *) log "unknown system $s"; exit 2 ;; esac
    log "== $s (ramp: $ramp; hold $hold s; CPU window $win s)"
    SYS_PID="" CA_PID=""
    run_system "$s"
done
t_total=$(($(date +%s) - t_start))

# ---- report ------------------------------------------------------------------
# per-call cost: CPU µs per 20 ms frame period per call, at the best passing step.
cost_us() { awk -v c="$1" -v n="$2" 'BEGIN { if (n > 0 && c + 0 > 0) printf "%.0f", c / 100 * 20000 / n; else print "n/a" }'; }
projected() { awk -v c="$1" -v n="$2" 'BEGIN { if (n > 0 && c + 0 > 0) printf "%.0f", n * 100 / c; else print "n/a" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
{
    echo "# Transcoding: full-duplex G.711 (PCMU) ↔ Opus calls per core"
    echo
    echo "$MACHINE"
    echo
    echo "Other load: $QUIET. Priority of system and load: ${PRIO[*]:-none}."
    echo
    echo "Method: the system on core $SYS_CPU, its load on core $GEN_CPU. Each step N: a fresh instance,"
    echo "N full-duplex calls (50 packets/s each way, 20 ms) held $hold s; CPU measured over a ${win} s"
    echo "window after the calls are up. A step passes with zero loss, every call set up, the load on"
    echo "schedule (pacing p99 ≤ 5 ms) and system CPU ≤ $cpu_limit % of the core. mgw: \`mgw run --workers 1\`,"
    echo "IP (PCMU) → \`ds/e1-(2k+1)/n\` → \`ds/e1-(2k+2)/n\` → IP (Opus), Opus at 8 kHz, complexity 5,"
    echo "load \`mgw load --mode tdm\` (one process per E1 pair); CPU = the \`mgw-dp-0\` worker thread."
    echo "rtpengine: Debian \`rtpengine\` $(rtpengine --version 2>&1 | sed -n 's/^Version: //p' | head -n 1), userspace, \`--num-threads=1\`,"
    echo "ng offer \`codec: {transcode: [opus], mask: [PCMU]}\` (its Opus encoder: 48 kHz, 2 channels, 32 kbit/s — its log"
    echo "says so — at libavcodec's default complexity 10; the Debian build offers no option for either),"
    echo "load \`tcblast\`; CPU = the whole process. Wall time of the run: ${t_total} s."
    echo
    echo "| system | N calls | result | lost (where) | system CPU % (mgw: worker) | process CPU % | load CPU % | core $SYS_CPU busy % | core $GEN_CPU busy % | delay p99 ms | load late p99 ms |"
    echo "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for s in $systems; do
        for n in $(tr ' ' '\n' <<<"${STEPS[$s]:-}" | grep . | sort -n | uniq); do
            k="$s:$n"
            echo "| $s | $n | ${R_WHY[$k]:-?} | ${R_LOST[$k]:-?} (${R_DETAIL[$k]:-}) | ${R_CPU[$k]:-?} | ${R_PROC[$k]:-?} | ${R_GEN[$k]:-?} | ${R_CORE[$k]:-?} | ${R_GCORE[$k]:-?} | ${R_DELAY[$k]:-?} | ${R_LATE[$k]:-?} |"
        done
    done
    echo
    echo "| system | most calls passing (≤ $cpu_limit % CPU, zero loss) | CPU % there | CPU per call per 20 ms (µs) | projected calls per core at 100 % | first failing N and why |"
    echo "|---|---:|---:|---:|---:|---|"
    for s in $systems; do
        b=${BEST[$s]:-0} f=${FIRST_FAIL[$s]:-0}
        cpu=${R_CPU[$s:$b]:-0}
        why="none (ramp ended)"
        [ "$f" -gt 0 ] && why="$f: ${R_WHY[$s:$f]:-?} (system ${R_CPU[$s:$f]:-?} %, load ${R_GEN[$s:$f]:-?} %)"
        echo "| $s | $b | $cpu | $(cost_us "$cpu" "$b") | $(projected "$cpu" "$b") | $why |"
    done
    if [[ " $systems " == *" mgw "* ]] && [[ " $systems " == *" rtpengine "* ]]; then
        echo
        echo "Ratio mgw / rtpengine: calls passing $(ratio "${BEST[mgw]:-0}" "${BEST[rtpengine]:-0}"),"
        echo "projected calls per core $(ratio "$(projected "${R_CPU[mgw:${BEST[mgw]:-0}]:-0}" "${BEST[mgw]:-0}")" "$(projected "${R_CPU[rtpengine:${BEST[rtpengine]:-0}]:-0}" "${BEST[rtpengine]:-0}")")."
        if [ "$quick" -eq 1 ]; then
            echo "(--quick: short steps on a small ramp; these numbers only show that the machinery works.)"
        else
            echo "Target (issue): ≥ 200 full-duplex calls per worker core at ≤ 80 % CPU: mgw $([ "${BEST[mgw]:-0}" -ge 200 ] && echo met || echo "not met") (${BEST[mgw]:-0})."
        fi
    fi
} >"$WORK/table.md"
cat "$WORK/table.md"

if [ "$write_report" -eq 1 ]; then
    mkdir -p "$REPO_ROOT/reports"
    rep="$REPO_ROOT/reports/transcode-$(date -u +%F).md"
    {
        cat "$WORK/table.md"
        echo
        echo "<details><summary>every step</summary>"
        echo
        echo '```'
        for s in $systems; do echo "## $s"; cat "$WORK/$s.steps" 2>/dev/null; done
        echo '```'
        echo "</details>"
    } >"$rep"
    log "wrote $rep"
fi

# Success: every system ran and produced numbers (in --quick, a measured CPU share for
# every step; in a full run, at least one passing step).
fail=0
for s in $systems; do
    if [ "$quick" -eq 1 ]; then
        for n in ${STEPS[$s]:-}; do
            [ "${R_CPU[$s:$n]:-?}" != "?" ] && [ "${R_CALLS[$s:$n]%%/*}" -gt 0 ] 2>/dev/null || fail=1
        done
        [ -n "${STEPS[$s]:-}" ] || fail=1
    else
        [ "${BEST[$s]:-0}" -gt 0 ] || fail=1
    fi
done
[ -z "${BENCH_WORK:-}" ] && [ "$fail" -eq 0 ] && rm -rf "$WORK"
[ "$fail" -eq 0 ] || log "some system produced no number; logs in $WORK"
exit "$fail"
