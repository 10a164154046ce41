#!/usr/bin/env python3
"""Generate a large zones/ directory for load-time and memory measurements.

    bench/gen_zones.py --records 1000000 --zones 10 --vpcs 100 --out /tmp/pz-1m

Writes vpcs.yaml (VPC i on 10.i.0.0/16 style CIDRs), and ZONES zone files
`zone-N.bench.internal.yaml`, each bound to one VPC (round robin), holding
RECORDS/ZONES records: mostly A records, plus a CNAME, a wildcard and a TXT
every 1,000 names so the loader's grouping paths are exercised too.
"""
import argparse
import os


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--zones", type=int, default=10)
    ap.add_argument("--vpcs", type=int, default=10)
    ap.add_argument("--out", required=True)
    ap.add_argument("--net", type=int, default=10, help="first octet of the VPC CIDRs (127 for loopback clients)")
    ap.add_argument("--queries", type=int, default=0, help="also write queries.txt with this many dnsperf lines")
    ap.add_argument("--query-vpc", type=int, default=None, help="queries only for the zones bound to this VPC")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "vpcs.yaml"), "w") as f:
        f.write("vpcs:\n")
        for v in range(a.vpcs):
            f.write(f"  - id: vpc-{v}\n    cidrs: [{a.net}.{v // 256}.{v % 256}.0/24]\n")
    per_zone = a.records // a.zones
    for z in range(a.zones):
        with open(os.path.join(a.out, f"zone-{z}.bench.internal.yaml"), "w") as f:
            f.write(f"zone: zone-{z}.bench.internal\nvpcs: [vpc-{z % a.vpcs}]\nttl: 300\nrecords:\n")
            lines = []
            for i in range(per_zone):
                if i % 1000 == 1:
                    lines.append(f'  - {{ name: c{i}, type: CNAME, value: h{i - 1}.zone-{z}.bench.internal }}\n')
                elif i % 1000 == 2:
                    lines.append(f'  - {{ name: "*.w{i}", type: A, value: 10.1.{(i >> 8) & 255}.{i & 255} }}\n')
                elif i % 1000 == 3:
                    lines.append(f'  - {{ name: h{i}, type: TXT, value: "record {i}" }}\n')
                else:
                    lines.append(f"  - {{ name: h{i}, type: A, value: 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255} }}\n")
                if len(lines) >= 10000:
                    f.writelines(lines)
                    lines = []
            f.writelines(lines)
    if a.queries:
        import random
        rnd = random.Random(1)
        with open(os.path.join(a.out, "queries.txt"), "w") as f:
            visible = [z for z in range(a.zones) if a.query_vpc is None or z % a.vpcs == a.query_vpc]
            for _ in range(a.queries):
                z = rnd.choice(visible)
                i = rnd.randrange(per_zone)
                while i % 1000 in (1, 2, 3):
                    i = rnd.randrange(per_zone)
                f.write(f"h{i}.zone-{z}.bench.internal A\n")


if __name__ == "__main__":
    main()
