#!/usr/bin/env python3
"""Sums the JSON reports of several `mgw load` runs (one per span pair) for transcode.sh.

A call through the TDM spans is clocked by the gateway: it sends a frame every ptime
whether or not ours arrived (concealing a missing one), so "sent minus received" at the
load cannot show loss inside the gateway. Loss is therefore counted where it can happen:
  in_missing   packets the load sent on a leg that the gateway's own counters (DLCX P:, PR)
               never saw: lost on the way in (socket buffer overflow in the gateway)
  out_missing  packets the gateway says it sent on a leg (PS) that the load never received
  seq_lost     RFC 3550 sequence gaps in what the load received (frames the gateway skipped)
Up to SLACK packets per leg and kind are not counted (the DLCX that reads PS arrives a
moment after the load stopped listening; the first frame may precede the connection).

RTCP crosstalk: `mgw load` binds each leg's RTP socket to an ephemeral port and reserves
nothing for RTCP, so the gateway's RTCP for one leg (sent to its RTP port + 1, RFC 3550)
can land on another leg's RTP socket when that port happens to be taken by it. The load
then sees a new SSRC (payload type 72..76) and restarts its per-stream counts, so its
"received" and sequence gaps for that leg are wrong. For such a leg ("crosstalk") the
packets that reached the socket are taken from the audio meter (frames decoded + decode
errors, which count every packet once) and its sequence gaps are not counted.

usage: load_summary.py [--slack N] FILE.json...   prints shell assignments (KEY=value)
"""
import json
import sys


def main():
    args = sys.argv[1:]
    slack = 2
    if args[:1] == ["--slack"]:
        slack, args = int(args[1]), args[2:]
    t = dict(files=0, calls=0, calls_ok=0, calls_failed=0, sent=0, received=0, in_missing=0,
             out_missing=0, seq_lost=0, decode_errors=0, no_stats=0, crosstalk=0)
    delay_p99 = late_p99 = 0.0
    mos_min = None
    for path in args:
        try:
            with open(path) as f:
                r = json.load(f)
        except (OSError, ValueError):
            continue
        t["files"] += 1
        s = r["summary"]
        t["calls"] += s["calls_attempted"]
        t["calls_ok"] += s["calls_completed"]
        t["calls_failed"] += s["calls_failed"]
        t["sent"] += s["packets_sent"]
        t["received"] += s["packets_received"]
        t["decode_errors"] += s["decode_errors"]
        delay_p99 = max(delay_p99, s["delay_ms"]["p99"])
        late_p99 = max(late_p99, s["pacing_late_ms"]["p99"])
        if s["calls_completed"]:
            mos_min = s["mos_min"] if mos_min is None else min(mos_min, s["mos_min"])
        for c in r["calls"]:
            dirs = {d["direction"]: d for d in c["directions"]}
            received = {}
            for name, d in dirs.items():
                if any(72 <= pt <= 76 for pt in d.get("payload_types", [])):
                    t["crosstalk"] += 1
                    a = d.get("audio") or {}
                    received[name] = a.get("frames_decoded", 0) + a.get("decode_errors", 0)
                else:
                    received[name] = d["received"]
                    t["seq_lost"] += d["rfc3550_lost"]
            legs = c["legs"]
            # leg 0 sends a->b and receives b->a; leg 1 the other way round.
            for leg, out_dir, in_dir in ((0, "a->b", "b->a"), (1, "b->a", "a->b")):
                if leg >= len(legs):
                    continue
                g = legs[leg].get("gateway_stats")
                if not g or "PR" not in g or "PS" not in g:
                    t["no_stats"] += 1
                    continue
                if out_dir in dirs:
                    miss = dirs[out_dir]["sent"] - g["PR"]
                    if miss > slack:
                        t["in_missing"] += miss
                if in_dir in dirs:
                    miss = g["PS"] - received[in_dir]
                    if miss > slack:
                        t["out_missing"] += miss
    t["lost"] = t["in_missing"] + t["out_missing"] + t["seq_lost"]
    for k, v in t.items():
        print("L_%s=%d" % (k, v))
    print("L_delay_p99_ms=%.2f" % delay_p99)
    print("L_late_p99_ms=%.2f" % late_p99)
    print("L_mos_min=%.2f" % (mos_min or 0.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
