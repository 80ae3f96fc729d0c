#!/usr/bin/env python3
"""Set up RTP bridges on rtpengine through its ng control protocol (bencode over UDP).

For bridge i: an `offer` carrying A's SDP (127.0.0.1:PA) and an `answer` carrying B's SDP
(127.0.0.1:PB). The SDP rtpengine returns with the offer is what B is told (the port B
sends to); the one returned with the answer is what A is told.

usage: ng_bridges.py --ng HOST:PORT --bridges N --ports PA,PB [--map FILE]
       ng_bridges.py --ng HOST:PORT --ping
Prints rtpblast's map format: "PA X_A PEER" / "PB X_B PEER" per bridge.
"""
import argparse
import random
import re
import socket
import sys


def benc(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(benc(x) for x in v) + b"e"
    if isinstance(v, dict):
        return b"d" + b"".join(benc(k) + benc(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(type(v))


def bdec(b, i=0):
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1:j]), j + 1
    if c == b"l":
        out, i = [], i + 1
        while b[i:i + 1] != b"e":
            v, i = bdec(b, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        out, i = {}, i + 1
        while b[i:i + 1] != b"e":
            k, i = bdec(b, i)
            v, i = bdec(b, i)
            out[k.decode()] = v
        return out, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1:j + 1 + n], j + 1 + n


class Ng:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.addr = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)

    def call(self, msg):
        cookie = "%08x" % random.getrandbits(32)
        data = cookie.encode() + b" " + benc(msg)
        for _ in range(6):
            self.sock.sendto(data, self.addr)
            try:
                while True:
                    reply, _ = self.sock.recvfrom(65535)
                    c, _, body = reply.partition(b" ")
                    if c.decode() == cookie:
                        d, _ = bdec(body)
                        if d.get("result") != b"ok" and d.get("result") != b"pong":
                            raise SystemExit("ng_bridges: %s failed: %r" % (msg["command"], d))
                        return d
            except socket.timeout:
                continue
        raise SystemExit("ng_bridges: no answer from rtpengine at %s:%d" % self.addr)


def sdp(port, sess):
    return ("v=0\r\no=- %d 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n" % (sess, port))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ng", required=True)
    ap.add_argument("--bridges", type=int, default=1)
    ap.add_argument("--ports", default="")
    ap.add_argument("--map")
    ap.add_argument("--ping", action="store_true")
    args = ap.parse_args()
    ng = Ng(args.ng)
    if args.ping:
        ng.call({"command": "ping"})
        return 0
    base = [int(p) for p in args.ports.split(",")][0]
    lines = []
    for i in range(args.bridges):
        pa, pb = base + 4 * i, base + 4 * i + 2
        cid = "bench-%d-%d" % (random.getrandbits(24), i)
        r = ng.call({"command": "offer", "call-id": cid, "from-tag": "a%d" % i, "sdp": sdp(pa, 1000 + i),
                     "replace": ["origin"]})
        xb = int(re.search(rb"^m=audio (\d+)", r["sdp"], re.M).group(1))
        r = ng.call({"command": "answer", "call-id": cid, "from-tag": "a%d" % i, "to-tag": "b%d" % i,
                     "sdp": sdp(pb, 2000 + i), "replace": ["origin"]})
        xa = int(re.search(rb"^m=audio (\d+)", r["sdp"], re.M).group(1))
        lines.append("%d %d %d" % (pa, xa, 2 * i + 1))
        lines.append("%d %d %d" % (pb, xb, 2 * i))
    out = "\n".join(lines) + "\n"
    if args.map:
        with open(args.map, "w") as f:
            f.write(out)
    else:
        sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
