#!/usr/bin/env python3
"""Server-side latency of DNS over UDP from a loopback capture.

    pcap_latency.py FILE PORT [QUANTILE...]

Each query sent to PORT is matched with its response (by the client's
port and the DNS id); the latency is the time between the two packets as
the kernel stamped them on `lo`, so the load generator's own scheduling
delays (when it gets to send or to read) are not counted. Prints
"answered lost q1 q2 ..." with the quantiles in ms over every query seen
(a query with no response counts as slower than every answer: "lost"
when the quantile falls on one). Reads the classic pcap format (micro or
nanosecond stamps, Ethernet framing as Linux gives `lo`), IPv4 only.
"""
import struct
import sys


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
    quantiles = [float(q) for q in sys.argv[3:]] or [0.99]
    with open(path, "rb") as f:
        head = f.read(24)
        magic = struct.unpack("<I", head[:4])[0]
        if magic not in (0xA1B2C3D4, 0xA1B23C4D):
            sys.exit(f"{path}: not a little-endian pcap file")
        div = 1e9 if magic == 0xA1B23C4D else 1e6
        record = struct.Struct("<IIII")
        sent = {}
        lat = []
        while True:
            h = f.read(16)
            if len(h) < 16:
                break
            sec, frac, incl, _ = record.unpack(h)
            d = f.read(incl)
            t = sec + frac / div
            if len(d) < 14 + 20 + 8 + 2 or d[12:14] != b"\x08\x00":
                continue
            ip = d[14:]
            ihl = (ip[0] & 15) * 4
            if ip[9] != 17 or len(ip) < ihl + 10:
                continue
            sport, dport = struct.unpack(">HH", ip[ihl : ihl + 4])
            key_id = ip[ihl + 8 : ihl + 10]
            if dport == port:
                sent[(sport, key_id)] = t
            elif sport == port:
                t0 = sent.pop((dport, key_id), None)
                if t0 is not None:
                    lat.append(t - t0)
    lat.sort()
    n, lost = len(lat), len(sent)
    if n == 0:
        sys.exit(f"{path}: no answered query to port {port}")
    out = [str(n), str(lost)]
    for q in quantiles:
        k = int((n + lost) * q + 0.999999)
        out.append("lost" if k > n else f"{lat[k - 1] * 1000:.3f}")
    print(" ".join(out))


if __name__ == "__main__":
    main()
