#!/usr/bin/env python3
"""Scripted MGCP exchange with mgw for the tshark cross-check.

Sends a fixed set of commands (AUEP, wildcard AUEP, CRCX with `$`, AUCX, MDCX,
RQNT, EPCF, DLCX and a few deliberate errors) from one UDP socket, one at a
time, waits for each final response and prints both. Exit 0 when every command
got a well-formed response with the expected class of code, 1 otherwise.

usage: mgcp_exchange.py MGW_PORT RTP_PORT [DOMAIN]
"""
import re
import socket
import sys

MGW_PORT = int(sys.argv[1])
RTP_PORT = int(sys.argv[2])
DOMAIN = sys.argv[3] if len(sys.argv) > 3 else "mgw"

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
sock.settimeout(2.0)
tid = 7000
failures = 0


def show(direction: str, text: str) -> None:
    for line in text.split("\n"):
        if line:
            print("exchange: %s |%s" % (direction, line.replace("\r", "\\r")))


def transact(verb_line_rest: str, verb: str, want: str, body: str = "") -> str:
    """Send `verb tid rest` + body; want is a regex for the return code."""
    global tid, failures
    tid += 1
    msg = "%s %d %s\r\n%s" % (verb, tid, verb_line_rest, body)
    show("tx", msg)
    sock.sendto(msg.encode(), ("127.0.0.1", MGW_PORT))
    while True:
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            print("exchange: FAIL: no response to %s %d" % (verb, tid))
            failures += 1
            return ""
        text = data.decode("latin-1")
        show("rx", text)
        m = re.match(r"^(\d{3}) (\d+)", text)
        if not m:
            print("exchange: FAIL: unparsable response line")
            failures += 1
            return text
        code, rtid = m.group(1), int(m.group(2))
        if rtid != tid:
            continue  # stale (e.g. a retransmitted answer); keep waiting
        if code in ("100", "101"):
            continue  # provisional; the final one follows
        if not re.fullmatch(want, code):
            print("exchange: FAIL: %s answered %s, expected %s" % (verb, code, want))
            failures += 1
        else:
            print("exchange: ok: %s -> %s" % (verb, code))
        return text


def ep(name: str) -> str:
    return "%s@%s MGCP 1.0" % (name, DOMAIN)


def sdp(port: int, pt: str = "8", name: str = "PCMA") -> str:
    return ("\r\nv=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
            "t=0 0\r\nm=audio %d RTP/AVP %s\r\na=rtpmap:%s %s/8000\r\na=ptime:20\r\n"
            % (port, pt, pt, name))


transact(ep("rtpbridge/1"), "AUEP", "200", "F: A, R, D, S, X, N, I, T, O, ES\r\n")
transact(ep("rtpbridge/*"), "AUEP", "200")
r = transact(ep("rtpbridge/$"), "CRCX", "200",
             "C: A1B2C3\r\nL: p:20, a:PCMA\r\nM: sendrecv\r\n" + sdp(RTP_PORT))
ci = re.search(r"^I: *(\S+)", r, re.M)
z = re.search(r"^Z: *(\S+)", r, re.M)
name = z.group(1).split("@")[0] if z else "rtpbridge/1"
if ci:
    conn = ci.group(1)
    transact(ep(name), "AUCX", "200", "I: %s\r\nF: C, N, L, M, LC, RC, P\r\n" % conn)
    transact(ep(name), "MDCX", "200", "C: A1B2C3\r\nI: %s\r\nM: inactive\r\n" % conn)
    transact(ep(name), "MDCX", "200",
             "C: A1B2C3\r\nI: %s\r\nM: recvonly\r\n" % conn + sdp(RTP_PORT + 2))
    transact(ep(name), "DLCX", "250", "C: A1B2C3\r\nI: %s\r\n" % conn)
else:
    print("exchange: FAIL: CRCX response has no I:")
    failures += 1
# 512 is an honest answer while the endpoint has no DTMF detector.
transact(ep("ds/e1-1/1"), "RQNT", "200|512", "X: 1A\r\nR: D/[0-9#*](N)\r\nS:\r\n")
transact(ep("ds/e1-1/1"), "EPCF", "200", "B: e:A\r\n")
transact(ep("ds/e1-1/1"), "RQNT", "200", "X: 1B\r\nR:\r\n")
# Deliberate errors: their responses must dissect as cleanly as the successes.
transact(ep("rtpbridge/1"), "CRCX", "4\\d\\d|5\\d\\d", "M: sendrecv\r\n")  # no C:
transact(ep("rtpbridge/1"), "MDCX", "5\\d\\d", "C: 1\r\nI: FFFF\r\nM: sendrecv\r\n")
transact(ep("nosuch/9"), "AUEP", "5\\d\\d")
transact(ep("rtpbridge/1"), "XXXX", "5\\d\\d")
sys.exit(1 if failures else 0)
