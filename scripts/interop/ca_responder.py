#!/usr/bin/env python3
"""Minimal call agent for mgw's own commands (RSIP, NTFY): answers every MGCP
command arriving on 127.0.0.1:PORT with "200 <tid> OK" and logs it.

usage: ca_responder.py PORT LOGFILE   (runs until killed)
"""
import socket
import sys


def main() -> int:
    port = int(sys.argv[1])
    log = open(sys.argv[2], "a", buffering=1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    log.write("ca ready on 127.0.0.1:%d\n" % port)
    while True:
        data, peer = s.recvfrom(65535)
        text = data.decode("latin-1")
        log.write("ca rx from %s:%d: %r\n" % (peer[0], peer[1], text))
        first = text.split("\n", 1)[0].split()
        # A command line is "VERB tid endpoint MGCP 1.0"; responses start with 3 digits.
        if len(first) >= 2 and not first[0].isdigit():
            s.sendto(("200 %s OK\r\n" % first[1]).encode(), peer)


if __name__ == "__main__":
    sys.exit(main())
