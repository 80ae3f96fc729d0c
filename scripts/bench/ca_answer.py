#!/usr/bin/env python3
"""Answers every MGCP command arriving on 127.0.0.1:PORT with "200 <tid> OK" (the RSIP a
gateway sends on start-up, NTFYs). usage: ca_answer.py PORT   (runs until killed)"""
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(65535)
    first = data.decode("latin-1").split("\n", 1)[0].split()
    if len(first) >= 2 and not first[0].isdigit():
        s.sendto(("200 %s OK\r\n" % first[1]).encode(), peer)
