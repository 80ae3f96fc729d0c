#!/usr/bin/env bash
# Check 2: tshark's MGCP dissector as an independent parser of everything mgw
# sends and receives. Captures udp port <mgw-port> on lo while mgw starts (RSIP),
# osmo_client runs (msg + fsm modes), mgcp_exchange.py sends AUEP/CRCX/AUCX/MDCX/
# RQNT/EPCF/DLCX and some erroneous commands, and mgw stops (RSIP again).
# Then every captured datagram must dissect as MGCP, with no [Malformed Packet]
# and no error-level expert info, and tshark must pair every command with a
# response. Prints "RESULT <name> PASS|FAIL" lines; exit status = failed count.
#
# usage: tshark_check.sh [WORKDIR]      (env: MGW_BIN, OSMO_CLIENT, DOMAIN)
set -uo pipefail
source "$(dirname "$0")/lib.sh"

WORK="${1:-$(mktemp -d /tmp/mgw-interop.XXXXXX)}"
mkdir -p "$WORK"
TSHARK_PID=
stop_tshark() {
    [ -n "$TSHARK_PID" ] || return 0
    kill -INT "$TSHARK_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do kill -0 "$TSHARK_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$TSHARK_PID" 2>/dev/null || true
    wait "$TSHARK_PID" 2>/dev/null || true
    TSHARK_PID=
}
trap 'stop_mgw; stop_tshark; cleanup_children' EXIT
trap 'exit 130' INT TERM

failed=0
result() { # result NAME OK(0/1) [detail]
    if [ "$2" -eq 0 ]; then echo "RESULT $1 PASS${3:+ ($3)}"; else echo "RESULT $1 FAIL${3:+ ($3)}"; failed=$((failed + 1)); fi
}

read -r MP CP LP1 LP2 RTP <<<"$(free_udp_ports 5)"
LOW=$(free_udp_range 64) || { result tshark-capture 1 "no free port range"; exit 1; }
CAP="$WORK/mgcp.pcapng"
rm -f "$CAP"

# 1. Capture (autostop after 90 s bounds it even if we are killed hard).
tshark -i lo -f "udp port $MP" -w "$CAP" -q -a duration:90 >"$WORK/tshark.out" 2>"$WORK/tshark.err" &
TSHARK_PID=$!
CHILD_PIDS+=("$TSHARK_PID")
for _ in $(seq 1 100); do
    grep -q "Capturing on" "$WORK/tshark.err" 2>/dev/null && break
    kill -0 "$TSHARK_PID" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q "Capturing on" "$WORK/tshark.err" 2>/dev/null; then
    cat "$WORK/tshark.err" >&2
    result tshark-capture 1 "tshark did not start capturing on lo"
    exit "$failed"
fi
sleep 0.3 # dumpcap reports before the filter is fully armed on some kernels

# 2. mgw + call agent; wait for the start-up RSIP to be answered.
start_ca "$CP" "$WORK/ca.log"
start_mgw "$MP" "$CP" "$LOW" "$((LOW + 63))" "$WORK/mgw.log" || { result tshark-mgw-start 1; exit "$failed"; }
for _ in $(seq 1 30); do grep -q RSIP "$WORK/ca.log" 2>/dev/null && break; sleep 0.1; done

# 3. Traffic: the Osmocom library (two modes, distinct source ports so their
#    transaction ids 1, 2, 3... do not collide) and the scripted exchange.
traffic_ok=0
run_fg timeout 25 "$OSMO_CLIENT" --mgw-port "$MP" --local-port "$LP1" --domain "$DOMAIN" --rtp-port "$RTP" \
    --mode msg >"$WORK/osmo_msg.out" 2>&1 || traffic_ok=1
run_fg timeout 25 "$OSMO_CLIENT" --mgw-port "$MP" --local-port "$LP2" --domain "$DOMAIN" --rtp-port "$RTP" \
    --mode fsm >"$WORK/osmo_fsm.out" 2>&1 || traffic_ok=1
run_fg timeout 60 python3 "$INTEROP_DIR/mgcp_exchange.py" "$MP" "$RTP" "$DOMAIN" >"$WORK/exchange.out" 2>&1 || traffic_ok=1
grep -h -E "FAIL" "$WORK/osmo_msg.out" "$WORK/osmo_fsm.out" "$WORK/exchange.out"
result tshark-traffic "$traffic_ok" "osmo_client msg+fsm and mgcp_exchange.py exit status"

# 4. Stop mgw (it sends RSIP on SIGTERM), let the answer arrive, stop capture.
stop_mgw
sleep 0.5
stop_tshark

# 5. Dissect.
ts() { "${TS[@]}" "$@" 2>>"$WORK/tshark-read.err"; }
TS=(tshark -2 -n -r "$CAP" -o "mgcp.udp.gateway_port:$MP" -o "mgcp.udp.callagent_port:$CP")
total=$(ts -T fields -e frame.number | wc -l)
not_mgcp=$(ts -Y '!mgcp' -T fields -e frame.number | wc -l)
malformed=$(ts -Y '_ws.malformed' -T fields -e frame.number | wc -l)
expert_err=$(ts -Y '_ws.expert.severity == error' -T fields -e frame.number | wc -l)
expert_warn=$(ts -Y '_ws.expert.severity == warning' -T fields -e frame.number | wc -l)
commands=$(ts -Y 'mgcp.req' -T fields -e frame.number | wc -l)
responses=$(ts -Y 'mgcp.rsp' -T fields -e frame.number | wc -l)
unanswered=$(ts -Y 'mgcp.req && !mgcp.rspframe && !mgcp.req.dup' -T fields -e frame.number -e mgcp.req.verb -e mgcp.transid)
dups=$(ts -Y 'mgcp.req.dup || mgcp.rsp.dup' -T fields -e frame.number | wc -l)
with_sdp=$(ts -Y 'sdp' -T fields -e frame.number | wc -l)

ts -O mgcp,sdp >"$WORK/dissection.txt"
echo "== tshark saw $total datagrams: $commands commands, $responses responses, $with_sdp with SDP, $dups retransmissions"
echo "== per datagram (frame, src->dst port, command or response code, tid, endpoint / text):"
ts -T fields -E separator=$'\t' -e frame.number -e udp.srcport -e udp.dstport \
    -e mgcp.req.verb -e mgcp.rsp.rspcode -e mgcp.transid -e mgcp.req.endpoint -e mgcp.rsp.rspstring |
    awk -F'\t' '{ printf "   #%-3s %5s->%-5s %-4s tid=%-10s %s\n", $1, $2, $3, ($4 != "" ? $4 : $5), $6, ($7 != "" ? $7 : $8) }'
echo "== counts by command / response code:"
ts -T fields -e mgcp.req.verb -e mgcp.rsp.rspcode | awk -F'\t' '{ print ($1 != "" ? $1 : "rsp " $2) }' |
    sort | uniq -c | sed 's/^/   /'
if [ "$malformed" -gt 0 ] || [ "$expert_err" -gt 0 ]; then
    echo "== malformed / expert-error frames:"
    ts -Y '_ws.malformed || _ws.expert.severity == error' -T fields -e frame.number -e _ws.expert.message |
        sed 's/^/   /'
fi
if [ "$expert_warn" -gt 0 ]; then
    echo "== expert warnings (informational):"
    ts -Y '_ws.expert.severity == warning' -T fields -e frame.number -e _ws.expert.message | sed 's/^/   /'
fi
[ -n "$unanswered" ] && { echo "== commands tshark could not pair with a response:"; echo "$unanswered" | sed 's/^/   /'; }

# Cross-check of fields tshark itself parsed: every successful CRCX answer carries
# I:, an SDP c= address and m= port; one to a wildcarded CRCX also carries Z:.
ts -Y 'mgcp.req' -T fields -e frame.number -e mgcp.req.verb -e mgcp.req.endpoint >"$WORK/reqs.tsv"
ts -Y 'mgcp.rsp && mgcp.rsp.rspcode == 200' -T fields -e mgcp.reqframe -e frame.number \
    -e mgcp.param.connectionid -e sdp.media.port -e sdp.connection_info.address \
    -e mgcp.param.specificendpointid >"$WORK/rsps.tsv"
crcx_bad=$(awk -F'\t' 'NR == FNR { verb[$1] = $2; ep[$1] = $3; next }
    verb[$1] == "CRCX" {
        n++
        if ($3 == "" || $4 == "" || $5 == "") { print "   frame " $2 ": CRCX answer lacks I:, m= port or c= address"; bad++ }
        else if (ep[$1] ~ /(^|\/)[*$](\/|@)/ && $6 == "") { print "   frame " $2 ": wildcard CRCX answer lacks Z:"; bad++ }
    }
    END { if (n == 0) print "   no successful CRCX seen"; }' "$WORK/reqs.tsv" "$WORK/rsps.tsv")
crcx_n=$(awk -F'\t' 'NR == FNR { verb[$1] = $2; next } verb[$1] == "CRCX" { n++ } END { print n + 0 }' \
    "$WORK/reqs.tsv" "$WORK/rsps.tsv")
[ -n "$crcx_bad" ] && { echo "== CRCX answers tshark found incomplete:"; echo "$crcx_bad"; }

result tshark-captured "$([ "$total" -ge 20 ] && echo 0 || echo 1)" "$total datagrams"
result tshark-all-mgcp "$([ "$not_mgcp" -eq 0 ] && echo 0 || echo 1)" "$not_mgcp not dissected as MGCP"
result tshark-no-malformed "$([ "$malformed" -eq 0 ] && [ "$expert_err" -eq 0 ] && echo 0 || echo 1)" \
    "$malformed malformed, $expert_err expert errors, $expert_warn warnings"
result tshark-crcx-fields "$([ -z "$crcx_bad" ] && echo 0 || echo 1)" "$crcx_n successful CRCX answers checked"
result tshark-all-answered "$([ -z "$unanswered" ] && echo 0 || echo 1)" "$commands commands, $responses responses"
echo "   (capture: $CAP; full dissection: $WORK/dissection.txt)"
exit "$failed"
