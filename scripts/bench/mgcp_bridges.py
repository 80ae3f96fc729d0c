#!/usr/bin/env python3
"""Set up (or tear down) RTP bridges on an MGCP gateway (mgw or osmo-mgw) as a call agent.

For bridge i (0-based) on endpoint rtpbridge/<i+1>@DOMAIN it sends two CRCX, each with
C:, M: sendrecv and an SDP body naming the far end: leg A's remote is 127.0.0.1:PA,
leg B's remote is 127.0.0.1:PB. What arrives on the gateway's leg-A port leaves its leg-B
port towards PB, and the other way round.

  setup:  mgcp_bridges.py setup --gw HOST:PORT --domain D --bridges N --ports BASE|PA,PB[,PA,PB...]
          [--hex] [--map FILE]
          (BASE alone: PA = BASE + 4i, PB = BASE + 4i + 2)
          prints one line per leg, "PA GA PEER" / "PB GB PEER" (rtpblast's map format:
          local port, gateway port, index of the line whose socket receives the stream)
  dlcx:   mgcp_bridges.py dlcx --gw HOST:PORT --domain D --bridges N [--hex]
          deletes every connection of the bridges and prints each response (with P:)
  one:    mgcp_bridges.py one --gw HOST:PORT < command   (send one command, print the reply)

Commands are retransmitted (0.5 s, 6 tries) as RFC 3435 asks of a call agent.
"""
import argparse
import random
import re
import socket
import sys


class Agent:
    """A minimal MGCP call agent: one UDP socket, one outstanding command at a time."""

    def __init__(self, gw):
        host, port = gw.rsplit(":", 1)
        self.gw = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.tid = random.randint(1000, 100000000)

    def send(self, verb, endpoint, params, sdp=None):
        """Send one command and return (code, text) of its final response."""
        self.tid += 1
        msg = "%s %d %s MGCP 1.0\r\n" % (verb, self.tid, endpoint)
        msg += "".join("%s\r\n" % p for p in params)
        if sdp:
            msg += "\r\n" + sdp
        for _ in range(6):
            self.sock.sendto(msg.encode(), self.gw)
            try:
                while True:
                    data, _ = self.sock.recvfrom(65535)
                    text = data.decode("latin-1")
                    first = text.split("\n", 1)[0].split()
                    if len(first) >= 2 and first[1] == str(self.tid):
                        code = int(first[0])
                        if code >= 200:
                            return code, text
            except socket.timeout:
                continue
        raise SystemExit("mgcp_bridges: no response to %s %d %s" % (verb, self.tid, endpoint))


def sdp_for(port):
    return "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio %d RTP/AVP 0\r\n" % port


def endpoint(i, domain, hexnames):
    n = i + 1
    return "rtpbridge/%s@%s" % (("%x" % n) if hexnames else str(n), domain)


def setup(args):
    ports = [int(p) for p in args.ports.split(",")]
    if len(ports) == 1 or (len(ports) == 2 and args.bridges > 1):
        # Base form: PA = base + 4i, PB = base + 4i + 2.
        base = ports[0]
        ports = []
        for i in range(args.bridges):
            ports += [base + 4 * i, base + 4 * i + 2]
    if len(ports) != 2 * args.bridges:
        raise SystemExit("mgcp_bridges: need 2 ports per bridge (or PA,PB as a base)")
    agent = Agent(args.gw)
    lines = []
    for i in range(args.bridges):
        ep = endpoint(i, args.domain, args.hex)
        callid = "%x" % (0x1000 + i)
        legs = []
        for leg in range(2):
            far = ports[2 * i + leg]
            code, text = agent.send("CRCX", ep, ["C: %s" % callid, "L: p:20, a:PCMU", "M: sendrecv"],
                                    sdp_for(far))
            m = re.search(r"^m=audio (\d+)", text, re.M)
            if code != 200 or not m:
                raise SystemExit("mgcp_bridges: CRCX on %s failed:\n%s" % (ep, text))
            legs.append((far, int(m.group(1))))
        a, b = 2 * i, 2 * i + 1
        lines.append("%d %d %d" % (legs[0][0], legs[0][1], b))
        lines.append("%d %d %d" % (legs[1][0], legs[1][1], a))
    out = "\n".join(lines) + "\n"
    if args.map:
        with open(args.map, "w") as f:
            f.write(out)
    else:
        sys.stdout.write(out)


def dlcx(args):
    agent = Agent(args.gw)
    bad = 0
    for i in range(args.bridges):
        ep = endpoint(i, args.domain, args.hex)
        code, text = agent.send("DLCX", ep, ["C: %x" % (0x1000 + i)])
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        if code not in (200, 250):
            bad += 1
    return 1 if bad else 0


def one(args):
    text = sys.stdin.read().replace("\r\n", "\n")
    head, _, body = text.partition("\n\n")
    lines = [l for l in head.split("\n") if l]
    verb, _tid, ep = lines[0].split()[:3]
    agent = Agent(args.gw)
    sdp = body.replace("\n", "\r\n") if body.strip() else None
    code, reply = agent.send(verb, ep, lines[1:], sdp)
    sys.stdout.write(reply)
    return 0 if code < 300 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["setup", "dlcx", "one"])
    ap.add_argument("--gw", required=True)
    ap.add_argument("--domain", default="mgw")
    ap.add_argument("--bridges", type=int, default=1)
    ap.add_argument("--ports", default="")
    ap.add_argument("--hex", action="store_true", help="endpoint numbers in hex (osmo-mgw)")
    ap.add_argument("--map")
    args = ap.parse_args()
    if args.action == "setup":
        setup(args)
        return 0
    if args.action == "dlcx":
        return dlcx(args)
    return one(args)


if __name__ == "__main__":
    sys.exit(main())
