#!/usr/bin/env python3
"""Compare `mgw load --json` per-direction RTP figures with tshark's view of a capture.

usage: compare.py LABEL RUN.json STREAMS.txt FIELDS.tsv

STREAMS.txt is the output of `tshark -q -z rtp,streams`; FIELDS.tsv is
`tshark -Y rtp -T fields -e udp.srcport -e udp.dstport -e frame.time_epoch
 -e rtp.timestamp -e rtp.ssrc` of the same capture.

For each call and direction X->Y the load sent on (X.local -> X.gateway_media) and
received on (Y.gateway_media -> Y.local). Checks, one table row each:
  tx pkts   tshark packets X.local->X.gw            == JSON sent        (+-PKT_TOL)
  rx pkts   tshark packets Y.gw->Y.local            == JSON received    (+-PKT_TOL)
  seq lost  tshark "Lost" on Y.gw->Y.local          == JSON rfc3550_lost
  e2e lost  tshark tx pkts - rx pkts                == JSON lost (sent - received)
  max jit   tshark "Max Jitter"                     ~= JSON jitter_max_ms
  last jit  RFC 3550 A.8 J over tshark's per-packet
            capture times, at the last packet       ~= JSON jitter_ms (final J)
Jitter tolerance: JIT_ABS_MS + JIT_REL * value (defaults 0.5 ms and 10 %), because
  * the load truncates each arrival to whole RTP clock ticks (8 kHz: 0.125 ms), so
    every transit difference D it sees may be off by up to one tick against tshark's
    microsecond timestamps, and J is an average of |D| (bounded by the same 0.125 ms);
  * tshark stamps a packet when the kernel hands it to lo, the load when its thread
    returns from recv. A packet picked up d late makes two |D| values d too big, and
    J takes 1/16 of each, so J (and its maximum) can run up to about d/8 high. Idle,
    d is tens of microseconds (observed |dJ| <= 0.08 ms); on this shared 2-core box
    wake-ups of ~3 ms happen (observed |dJ| 0.34 ms once). 0.5 ms = one tick plus
    d/8 for d up to 3 ms; the 10 % covers the same effect scaling with busier runs.
Both sides run RFC 3550 A.8 (J += (|D| - J) / 16); the "last jit" row recomputes it
from tshark's per-packet fields, which reproduces tshark's own Max Jitter to 1 us.
Prints the table, then `load-tshark[LABEL]: N passed, M failed`; exits 1 on a failure.
"""
import json
import os
import re
import sys
from collections import defaultdict

PKT_TOL = int(os.environ.get("PKT_TOL", "0"))
JIT_ABS = float(os.environ.get("JIT_ABS_MS", "0.5"))
JIT_REL = float(os.environ.get("JIT_REL", "0.10"))

ROW = re.compile(
    r"^\s*[\d.]+\s+[\d.]+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(0x[0-9A-Fa-f]+)\s+(.+?)\s+"
    r"(\d+)\s+(-?\d+)\s+\(\s*-?[\d.]+%\)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+"
    r"([\d.]+)\s+([\d.]+)\s+([\d.]+)"
)


def port(addr):
    return int(addr.rsplit(":", 1)[1])


def load_streams(path):
    """(src port, dst port) -> dict(pkts, lost, max_jit, mean_jit, ssrcs)."""
    out = defaultdict(lambda: {"pkts": 0, "lost": 0, "max_jit": 0.0, "mean_jit": 0.0, "ssrcs": 0})
    with open(path) as f:
        for line in f:
            m = ROW.match(line)
            if not m:
                continue
            s = out[(int(m.group(2)), int(m.group(4)))]
            s["pkts"] += int(m.group(7))
            s["lost"] += int(m.group(8))
            s["max_jit"] = max(s["max_jit"], float(m.group(14)))
            s["mean_jit"] = float(m.group(13))
            s["ssrcs"] += 1
    return out


def final_jitter(path, clock=8000):
    """(src port, dst port) -> RFC 3550 A.8 J (ms) after the last packet, per 5-tuple.

    A new SSRC on the same ports restarts the estimate, as the load does."""
    per = defaultdict(list)
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 5 or not p[0] or not p[3]:
                continue
            # With heuristic RTP an RTP-in-ICMP or odd packet can carry several values.
            per[(int(p[0].split(",")[0]), int(p[1].split(",")[0]))].append(
                (float(p[2]), int(p[3].split(",")[0]), p[4])
            )
    out = {}
    for key, pkts in per.items():
        j, prev, ssrc = 0.0, None, None
        for t, ts, s in pkts:
            transit = t * clock - ts
            if s != ssrc:
                j, prev, ssrc = 0.0, None, s
            if prev is not None:
                d = transit - prev
                # RTP timestamps wrap at 2^32.
                if d > 2**31:
                    d -= 2**32
                elif d < -(2**31):
                    d += 2**32
                j += (abs(d) - j) / 16.0
            prev = transit
        out[key] = j * 1000.0 / clock
    return out


def main():
    label, run_json, streams_txt, fields_tsv = sys.argv[1:5]
    with open(run_json) as f:
        run = json.load(f)
    streams = load_streams(streams_txt)
    jfinal = final_jitter(fields_tsv)
    none = {"pkts": 0, "lost": 0, "max_jit": 0.0, "mean_jit": 0.0, "ssrcs": 0}
    rows, passed, failed = [], 0, 0

    def check(call, dirn, what, tshark_v, json_v, ok, fmt="{}"):
        nonlocal passed, failed
        passed += ok
        failed += not ok
        rows.append((call, dirn, what, fmt.format(tshark_v), fmt.format(json_v), "ok" if ok else "FAIL"))

    jtol = lambda a, b: abs(a - b) <= JIT_ABS + JIT_REL * max(a, b)
    calls = run.get("calls", [])
    if not calls:
        check("-", "-", "calls in JSON", 0, 0, False)
    for c in calls:
        cid = c["index"]
        legs = {"a": c["legs"][0], "b": c["legs"][1]} if len(c.get("legs", [])) == 2 else None
        if c.get("state") != "completed" or legs is None:
            check(cid, "-", "call completed", c.get("state"), "completed", False)
            continue
        for d in c["directions"]:
            x, y = d["direction"].split("->")
            tx = streams.get((port(legs[x]["local"]), port(legs[x]["gateway_media"])), none)
            rxkey = (port(legs[y]["gateway_media"]), port(legs[y]["local"]))
            rx = streams.get(rxkey, none)
            dn = d["direction"]
            check(cid, dn, "tx pkts", tx["pkts"], d["sent"], abs(tx["pkts"] - d["sent"]) <= PKT_TOL)
            check(cid, dn, "rx pkts", rx["pkts"], d["received"], abs(rx["pkts"] - d["received"]) <= PKT_TOL)
            check(cid, dn, "seq lost", rx["lost"], d["rfc3550_lost"], rx["lost"] == d["rfc3550_lost"])
            e2e = tx["pkts"] - rx["pkts"]
            check(cid, dn, "e2e lost", e2e, d["lost"], abs(e2e - d["lost"]) <= 2 * PKT_TOL)
            check(cid, dn, "max jit ms", rx["max_jit"], d["jitter_max_ms"],
                  rx["pkts"] > 0 and jtol(rx["max_jit"], d["jitter_max_ms"]), "{:.3f}")
            jf = jfinal.get(rxkey)
            check(cid, dn, "last jit ms", jf if jf is not None else float("nan"), d["jitter_ms"],
                  jf is not None and jtol(jf, d["jitter_ms"]), "{:.3f}")
            if rx["ssrcs"] > 1:
                rows.append((cid, dn, "note", f"{rx['ssrcs']} SSRCs", "", ""))

    print(f"== {label}: tshark vs mgw load JSON (PKT_TOL={PKT_TOL}, jitter tol "
          f"{JIT_ABS} ms + {JIT_REL:.0%}) ==")
    hdr = ("call", "dir", "check", "tshark", "json", "")
    w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(6)]
    for r in [hdr] + rows:
        print("  ".join(str(v).ljust(w[i]) if i < 3 else str(v).rjust(w[i]) for i, v in enumerate(r)))
    print(f"load-tshark[{label}]: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
