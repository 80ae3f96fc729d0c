#!/usr/bin/env bash
# Interop with SIPp (Debian sip-tester): real RTP from a SIPp call goes through mgw.
#
#   1. mgw starts on loopback (ports chosen at run time); a call agent answers its RSIP.
#   2. Two CRCX on rtpbridge/1: leg A's remote is the UAC's media port, leg B's the UAS's.
#   3. A SIPp UAC calls a SIPp UAS on loopback. The UAC's SDP names the gateway's leg-B port
#      and the UAS's answer names leg A, so each side's RTP (play_pcap_audio, a pcap of N
#      PCMU packets written at run time) goes through the gateway to the other side.
#   4. tshark captures the gateway's two ports; DLCX returns the gateway's own counters (P:).
#   Checks: both CRCX succeed, both SIPp scenarios complete, every packet each side sent
#   reaches the gateway and leaves it towards the other side, and the gateway's PS/PR agree.
# Prints "sipp-interop: N passed, M failed"; exit status non-zero on any failure.
#
# usage: scripts/sipp-interop.sh [--no-build] [--no-install] [--keep] [--packets N]
#   env: MGW_BIN=path (skip the build), SIPP_WORK=dir (keep logs and the capture there)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=bench/lib.sh
. "$here/bench/lib.sh"

build=1 install=1 keep=0 packets=100
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --no-install) install=0 ;;
        --keep) keep=1 ;;
        --packets) packets=$2; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "sipp-interop: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

WORK="${SIPP_WORK:-$(mktemp -d /tmp/mgw-sipp.XXXXXX)}"
mkdir -p "$WORK"
passed=0 failed=0
check() { # check NAME CONDITION-RESULT(0|1) [detail]
    if [ "$2" -eq 0 ]; then passed=$((passed + 1)); echo "ok   $1${3:+ ($3)}"
    else failed=$((failed + 1)); echo "FAIL $1${3:+ ($3)}"; fi
}
finish() {
    bench_cleanup
    echo "sipp-interop: $passed passed, $failed failed"
    if [ "$failed" -eq 0 ] && [ "$keep" -eq 0 ] && [ -z "${SIPP_WORK:-}" ]; then rm -rf "$WORK"
    else echo "sipp-interop: logs in $WORK" >&2; fi
}
trap finish EXIT
trap 'echo "sipp-interop: interrupted" >&2; exit 130' INT TERM
abort() { failed=$((failed + 1)); echo "FAIL $*"; exit 1; }

if [ "$install" -eq 1 ]; then
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null
    ensure_packages sipp:sip-tester tshark:tshark python3:python3 timeout:coreutils || abort "package installation"
fi
build_mgw "$build" || abort "mgw build"

# ---- ports and the gateway -------------------------------------------------------------
mport=$(free_range 2 61000 65000) || abort "no free ports"
rtp_low=$(free_range 100) || abort "no free ports"
media=$(free_range 16 20000 39999) || abort "no free ports"   # UAC media, UAS media (+2 each spare)
sip=$(free_range 2 61000 65000) || abort "no free ports"
mu_a=$media mu_b=$((media + 8)) sip_uas=$sip sip_uac=$((sip + 1))
start_ca "$((mport + 1))"
extra=()
"$MGW_BIN" run --help 2>/dev/null | grep -q -- '--http-bind' && extra+=(--http-bind off)
spawn "$WORK/mgw.log" "$MGW_BIN" run --mgcp-bind "127.0.0.1:$mport" --call-agent "127.0.0.1:$((mport + 1))" \
    --domain mgw --rtp-bind 127.0.0.1 --rtp-ports "$rtp_low-$((rtp_low + 99))" --workers 1 --no-pin "${extra[@]}"
wait_for_log "$WORK/mgw.log" "mgw: MGCP listening on" 10 "$LAST_PID" || abort "mgw start"

mgcp() { timeout 10 python3 "$here/bench/mgcp_bridges.py" one --gw "127.0.0.1:$mport"; }
crcx() { # crcx REMOTE_PORT -> prints the response
    printf 'CRCX 1 rtpbridge/1@mgw MGCP 1.0\nC: 5151\nL: p:20, a:PCMU\nM: sendrecv\n\nv=0\nc=IN IP4 127.0.0.1\nm=audio %d RTP/AVP 0\n' "$1" | mgcp
}
crcx "$mu_a" >"$WORK/crcx-a.txt" 2>&1
ga=$(sed -n 's/^m=audio \([0-9]*\).*/\1/p' "$WORK/crcx-a.txt" | tr -d '\r')
ia=$(sed -n 's/^I: *\([^ ]*\).*/\1/p' "$WORK/crcx-a.txt" | tr -d '\r' | head -n 1)
check "CRCX leg A (remote = UAC media 127.0.0.1:$mu_a)" "$([ -n "$ga" ] && [ -n "$ia" ]; echo $?)" "gateway port ${ga:-none}, I: ${ia:-none}"
crcx "$mu_b" >"$WORK/crcx-b.txt" 2>&1
gb=$(sed -n 's/^m=audio \([0-9]*\).*/\1/p' "$WORK/crcx-b.txt" | tr -d '\r')
ib=$(sed -n 's/^I: *\([^ ]*\).*/\1/p' "$WORK/crcx-b.txt" | tr -d '\r' | head -n 1)
check "CRCX leg B (remote = UAS media 127.0.0.1:$mu_b)" "$([ -n "$gb" ] && [ -n "$ib" ]; echo $?)" "gateway port ${gb:-none}, I: ${ib:-none}"
[ -n "$ga" ] && [ -n "$gb" ] || abort "no bridge, cannot go on"

# ---- capture, then the call ------------------------------------------------------------
spawn "$WORK/tshark.log" timeout 120 tshark -i lo -n -f "udp and (port $ga or port $gb)" -w "$WORK/cap.pcapng"
tshark_pid=$LAST_PID
wait_for_log "$WORK/tshark.log" "Capturing on" 15 "$tshark_pid" || abort "tshark capture start"
sleep 0.5

python3 "$here/sipp/make_pcap.py" "$WORK/audio.pcap" "$packets"
hold_ms=$((packets * 20 + 1500))
sed -e "s|@GW_B@|$gb|; s|@PCAP@|$WORK/audio.pcap|; s|@HOLD_MS@|$hold_ms|" "$here/sipp/uac.xml" >"$WORK/uac.xml"
sed -e "s|@GW_A@|$ga|; s|@PCAP@|$WORK/audio.pcap|" "$here/sipp/uas.xml" >"$WORK/uas.xml"
limit=$((hold_ms / 1000 + 20))
( cd "$WORK" && exec timeout $((limit + 10)) sipp -sf uas.xml -i 127.0.0.1 -p "$sip_uas" -mi 127.0.0.1 -mp "$mu_b" \
    -m 1 -nostdin -timeout "${limit}s" -trace_err -trace_stat ) >"$WORK/uas.out" 2>&1 &
uas_pid=$!
SPAWNED+=("$uas_pid")
sleep 0.5
( cd "$WORK" && exec timeout $((limit + 10)) sipp -sf uac.xml 127.0.0.1:"$sip_uas" -i 127.0.0.1 -p "$sip_uac" \
    -mi 127.0.0.1 -mp "$mu_a" -m 1 -nostdin -timeout "${limit}s" -trace_err -trace_stat ) >"$WORK/uac.out" 2>&1
uac_rc=$?
wait "$uas_pid"
uas_rc=$?
check "SIPp UAC call completed" "$([ "$uac_rc" -eq 0 ]; echo $?)" "exit $uac_rc"
check "SIPp UAS call completed" "$([ "$uas_rc" -eq 0 ]; echo $?)" "exit $uas_rc"
sleep 0.5
stop_pid "$tshark_pid"

count() { # count FILTER
    tshark -r "$WORK/cap.pcapng" -n -Y "$1" 2>/dev/null | wc -l
}
a_in=$(count "udp.srcport==$mu_a && udp.dstport==$ga")
b_out=$(count "udp.srcport==$gb && udp.dstport==$mu_b")
b_in=$(count "udp.srcport==$mu_b && udp.dstport==$gb")
a_out=$(count "udp.srcport==$ga && udp.dstport==$mu_a")
check "UAC sent its $packets packets to gateway leg A" "$([ "$a_in" -eq "$packets" ]; echo $?)" "captured $a_in"
check "gateway relayed UAC->UAS (leg B out == leg A in)" "$([ "$b_out" -eq "$a_in" ] && [ "$a_in" -gt 0 ]; echo $?)" "$b_out of $a_in"
check "UAS sent its $packets packets to gateway leg B" "$([ "$b_in" -eq "$packets" ]; echo $?)" "captured $b_in"
check "gateway relayed UAS->UAC (leg A out == leg B in)" "$([ "$a_out" -eq "$b_in" ] && [ "$b_in" -gt 0 ]; echo $?)" "$a_out of $b_in"
# the relayed packets are still RTP PCMU that tshark can decode
rtp_ok=$(tshark -r "$WORK/cap.pcapng" -n -d "udp.port==$mu_b,rtp" -Y "rtp.p_type==0 && udp.dstport==$mu_b" 2>/dev/null | wc -l)
check "relayed packets decode as RTP PCMU" "$([ "$rtp_ok" -eq "$b_out" ] && [ "$b_out" -gt 0 ]; echo $?)" "$rtp_ok"

# ---- the gateway's own counters ----------------------------------------------------------
dlcx() { printf 'DLCX 1 rtpbridge/1@mgw MGCP 1.0\nC: 5151\nI: %s\n' "$1" | mgcp; }
dlcx "$ia" >"$WORK/dlcx-a.txt" 2>&1
dlcx "$ib" >"$WORK/dlcx-b.txt" 2>&1
stat() { sed -n "s/.*[ ,:]$2=\([0-9]*\).*/\1/p" "$1" | head -n 1; }
ps_a=$(stat "$WORK/dlcx-a.txt" PS) pr_a=$(stat "$WORK/dlcx-a.txt" PR)
ps_b=$(stat "$WORK/dlcx-b.txt" PS) pr_b=$(stat "$WORK/dlcx-b.txt" PR)
check "DLCX leg A: PR = packets from UAC, PS = packets to UAC" \
    "$([ "${pr_a:-x}" = "$a_in" ] && [ "${ps_a:-x}" = "$a_out" ]; echo $?)" "PR=${pr_a:-?} PS=${ps_a:-?}"
check "DLCX leg B: PR = packets from UAS, PS = packets to UAS" \
    "$([ "${pr_b:-x}" = "$b_in" ] && [ "${ps_b:-x}" = "$b_out" ]; echo $?)" "PR=${pr_b:-?} PS=${ps_b:-?}"
[ "$failed" -eq 0 ]
