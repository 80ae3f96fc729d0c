#!/usr/bin/env python3
"""Set up PCMU<->Opus transcoding calls on rtpengine through its ng control protocol.

For call i: leg A (PCMU, payload type 0) at 127.0.0.1:PA and leg B (Opus) at 127.0.0.1:PB.
The `offer` carries A's SDP (PCMU only) with `codec: {transcode: [opus], mask: [PCMU]}`, so
the SDP rtpengine offers B lists Opus alone; the `answer` carries B's SDP accepting Opus.
rtpengine then decodes A's PCMU and encodes Opus towards B, and the other way round.
The SDP returned with the offer is what B is told (the port and Opus payload type B sends
to); the one returned with the answer is what A is told.

usage: ng_transcode.py --ng HOST:PORT --calls N --ports BASE [--map FILE]
  PA = BASE + 4i, PB = BASE + 4i + 2. Prints tcblast's map format, two lines per call:
  "PA X_A pcmu 0 0 PEER_B" and "PB X_B opus OPUS_PT OPUS_PT PEER_A".
"""
import argparse
import os
import random
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ng_bridges import Ng  # noqa: E402  (the bencode/ng client shared with relay.sh)

OPUS_PT = 96


def sdp_pcmu(port, sess):
    return ("v=0\r\no=- %d 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
            % (sess, port))


def sdp_opus(port, sess, pt):
    return ("v=0\r\no=- %d 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio %d RTP/AVP %d\r\na=rtpmap:%d opus/48000/2\r\n"
            "a=fmtp:%d useinbandfec=0\r\na=ptime:20\r\na=sendrecv\r\n" % (sess, port, pt, pt, pt))


def media(sdp):
    """(port, [payload types]) of the first m=audio line."""
    m = re.search(rb"^m=audio (\d+) \S+ ([0-9 ]+)", sdp, re.M)
    if not m:
        raise SystemExit("ng_transcode: no m=audio in rtpengine's SDP: %r" % sdp)
    return int(m.group(1)), [int(x) for x in m.group(2).split()]


def opus_pt(sdp):
    m = re.search(rb"^a=rtpmap:(\d+) opus/48000", sdp, re.M | re.I)
    return int(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ng", required=True)
    ap.add_argument("--calls", type=int, default=1)
    ap.add_argument("--ports", type=int, required=True)
    ap.add_argument("--map")
    args = ap.parse_args()
    ng = Ng(args.ng)
    tag = random.getrandbits(24)
    lines = []
    for i in range(args.calls):
        pa, pb = args.ports + 4 * i, args.ports + 4 * i + 2
        cid = "tc-%d-%d" % (tag, i)
        r = ng.call({"command": "offer", "call-id": cid, "from-tag": "a%d" % i,
                     "sdp": sdp_pcmu(pa, 1000 + i), "replace": ["origin"],
                     "codec": {"transcode": ["opus"], "mask": ["PCMU"]}})
        xb, pts_b = media(r["sdp"])
        pt_b = opus_pt(r["sdp"])
        if pt_b is None or pt_b not in pts_b:
            raise SystemExit("ng_transcode: rtpengine offered no Opus to B: %r" % r["sdp"])
        r = ng.call({"command": "answer", "call-id": cid, "from-tag": "a%d" % i,
                     "to-tag": "b%d" % i, "sdp": sdp_opus(pb, 2000 + i, pt_b),
                     "replace": ["origin"]})
        xa, pts_a = media(r["sdp"])
        if 0 not in pts_a:
            raise SystemExit("ng_transcode: rtpengine's answer to A lacks PCMU: %r" % r["sdp"])
        lines.append("%d %d pcmu 0 0 %d" % (pa, xa, 2 * i + 1))
        lines.append("%d %d opus %d %d %d" % (pb, xb, pt_b, pt_b, 2 * i))
    out = "\n".join(lines) + "\n"
    if args.map:
        with open(args.map, "w") as f:
            f.write(out)
    else:
        sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
