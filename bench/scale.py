#!/usr/bin/env python3
"""The scale scenario: pzdns beside NSD, Knot and Unbound on the same generated data.

    bash bench/run.sh scale                      # 1,000,010 records, 100 reloads (~30 min on 2 busy cores)
    RECORDS=100000 RELOADS=10 bash bench/run.sh scale     # a quick run (~2 min)
    RECORDS=10000000 bash bench/run.sh scale     # 10M records, the same script
    PZDNS_ENV="MALLOC_ARENA_MAX=2" SERVERS="pzdns-yaml" python3 bench/scale.py

Data: ZONES zones of RECORDS/ZONES records each (mostly A; a CNAME, a wildcard and a TXT
every 1,000 names) plus one 10-record zone, `small.scale.internal`, the one that changes.
pzdns reads it as YAML zone files (pzdns-yaml) and as the same RFC 1035 master files
NSD and Knot read, through `master_file:` (pzdns-master); Unbound as local-data.

For each server, started pinned to SERVER_CPUS (default: every CPU) with one query worker:
  - load: wall and CPU time from exec until a name of every zone is answered (the median of
    LOAD_REPS + 1 loads);
  - bytes per record: memory once the loaded server is idle, minus the memory of the same
    server holding only the small zone, divided by the records added. Memory is the
    proportional set size summed over the server's processes (RSS for one process; NSD
    forks children that share its pages, which plain RSS would count twice);
  - one small zone changed: the small zone's file is rewritten (a new address for
    `probe.small.scale.internal`, a new serial) and the server told to reload it: pzdns
    `curl -XPOST .../reload` (admin HTTP), NSD `nsd-control reload small.scale.internal`, Knot
    `knotc zone-reload small.scale.internal`; wall time until the new address is answered,
    and the server's CPU until it is idle again. RELOADS times (default 100); memory after
    1, 10 and 100 of them. The file is rewritten in place through a hard link outside the
    zones directory, so that pzdns's file watch does not reload a second time; then
    WATCH_RELOADS more changes go through the watch (a new file renamed into place, as git
    does), timed from the rename.
CPU is the on-CPU time of every thread of every process of the server's process group
(/proc/PID/task/TID/schedstat), plus what its exited processes used (this script is their
subreaper and collects their rusage); threads that exit while their process lives are not
counted (none of these servers' reload or load threads does).

Knobs (environment): RECORDS [1000000] ZONES [100] RELOADS [100] WATCH_RELOADS [3]
LOAD_REPS [3] (loads per server, taken in turn with the other servers; one more precedes the reloads)
SERVERS [pzdns-yaml pzdns-master nsd knot unbound] SERVER_CPUS [all] WORK [/tmp/pzdns-scale]
PZDNS_BIN [target/release/pzdns] PZDNS_ENV [""] (e.g. "MALLOC_ARENA_MAX=2": for pzdns only)
PZDNS_LABEL [""] (appended to pzdns's rows) LOAD_TIMEOUT [1800] s.
Loopback only (127.0.0.1); every process started is stopped by its process group id, also
on an error or Ctrl-C. Results: a markdown table on stdout and in WORK/table.md, raw figures
in WORK/results.json.
"""
import atexit
import contextlib
import ctypes
import io
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RECORDS = int(os.environ.get("RECORDS", "1000000"))
ZONES = int(os.environ.get("ZONES", "100"))
PER_ZONE = RECORDS // ZONES
SMALL = 10
RELOADS = int(os.environ.get("RELOADS", "100"))
WATCH_RELOADS = int(os.environ.get("WATCH_RELOADS", "3"))
LOAD_REPS = int(os.environ.get("LOAD_REPS", "3"))
SERVERS = os.environ.get("SERVERS", "pzdns-yaml pzdns-master nsd knot unbound").split()
CPUS = os.environ.get("SERVER_CPUS", f"0-{os.cpu_count() - 1}")
WORK = os.environ.get("WORK", "/tmp/pzdns-scale")
PZDNS_BIN = os.environ.get("PZDNS_BIN", os.path.join(ROOT, "target/release/pzdns"))
PZDNS_ENV = dict(kv.split("=", 1) for kv in os.environ.get("PZDNS_ENV", "").split() if "=" in kv)
PZDNS_LABEL = os.environ.get("PZDNS_LABEL", "")
LOAD_TIMEOUT = float(os.environ.get("LOAD_TIMEOUT", "1800"))
HZ = os.sysconf("SC_CLK_TCK")
SMALL_ZONE = "small.scale.internal"
# Bumped whenever the generated data changes: data written by another version is made anew.
GENERATOR = "scale-data-1"
PORTS = {"pzdns-yaml": 5451, "pzdns-master": 5452, "nsd": 5453, "knot": 5454, "unbound": 5455}
ADMIN_PORT = 9451
MEM_AFTER = [n for n in (1, 10, 100, 1000) if n <= RELOADS]
if RELOADS and RELOADS not in MEM_AFTER:
    MEM_AFTER.append(RELOADS)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def zone_name(z):
    return f"zone-{z}.scale.internal"


# ---------------------------------------------------------------------------- data

def records_of(z, n):
    """(owner relative to the zone, type, value) of zone z's n records; values in presentation
    form, domain names absolute."""
    origin = zone_name(z)
    for i in range(n):
        if i % 1000 == 1:
            yield f"c{i}", "CNAME", f"h{i - 1}.{origin}."
        elif i % 1000 == 2:
            yield f"*.w{i}", "A", f"10.1.{(i >> 8) & 255}.{i & 255}"
        elif i % 1000 == 3:
            yield f"h{i}", "TXT", f"record {i}"
        else:
            yield f"h{i}", "A", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def probe_of(z):
    """A name of zone z that only a complete load holds (its last A record) and its address."""
    i = PER_ZONE - 1
    while i % 1000 in (1, 2, 3):
        i -= 1
    return f"h{i}.{zone_name(z)}", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def small_addr(gen):
    return f"10.255.{(gen >> 8) & 255}.{gen & 255}"


def soa_ns(origin, serial):
    return (f"$ORIGIN {origin}.\n$TTL 300\n"
            f"@ 3600 IN SOA ns.pzdns.invalid. hostmaster.{origin}. {serial} 3600 600 86400 300\n"
            f"@ 3600 IN NS ns.pzdns.invalid.\n")


def master_text(origin, recs, serial=1):
    out = [soa_ns(origin, serial)]
    for name, t, v in recs:
        out.append(f'{name} {t} "{v}"\n' if t == "TXT" else f"{name} {t} {v}\n")
    return "".join(out)


def yaml_text(origin, recs):
    out = [f"zone: {origin}\nvpcs: [vpc-scale]\nttl: 300\nrecords:\n"]
    for name, t, v in recs:
        if t == "CNAME":
            v = v.rstrip(".")
        out.append(f'  - {{ name: "{name}", type: {t}, value: "{v}" }}\n')
    return "".join(out)


def small_records(gen):
    yield "probe", "A", small_addr(gen)
    for i in range(1, SMALL):
        yield f"s{i}", "A", f"10.254.0.{i}"


def gen_data(servers):
    """Writes the big zones once per size into WORK/data-RECORDS-ZONES (reused by later runs)."""
    d = os.path.join(WORK, f"data-{RECORDS}-{ZONES}")
    stamp = os.path.join(d, "complete")
    if os.path.exists(stamp) and open(stamp).read() == GENERATOR:
        return d
    log(f"generating {ZONES} zones x {PER_ZONE} records in {d}")
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("master", "yaml"):
        os.makedirs(os.path.join(d, sub))
    with open(os.path.join(d, "unbound-local-data.conf"), "w") as ub:
        for z in range(ZONES):
            origin = zone_name(z)
            recs = list(records_of(z, PER_ZONE))
            with open(os.path.join(d, "master", f"{origin}.zone"), "w") as f:
                f.write(master_text(origin, recs))
            with open(os.path.join(d, "yaml", f"{origin}.yaml"), "w") as f:
                f.write(yaml_text(origin, recs))
            ub.write(unbound_text(origin, recs))
    with open(stamp, "w") as f:
        f.write(GENERATOR)
    return d


def unbound_text(origin, recs):
    out = [f'local-zone: "{origin}." static\n',
           f'local-data: "{origin}. 3600 IN SOA ns.pzdns.invalid. hostmaster.{origin}. 1 3600 600 86400 300"\n',
           f'local-data: "{origin}. 3600 IN NS ns.pzdns.invalid."\n']
    for name, t, v in recs:
        v = f'"{v}"' if t == "TXT" else v
        # Unbound has no wildcard in local-data: the '*' owner is one more literal name.
        out.append(f"local-data: '{name}.{origin}. 300 IN {t} {v}'\n")
    return "".join(out)


# ---------------------------------------------------------------------------- DNS probe

def query(name, port, timeout=0.02):
    """(rcode, [A addresses]) of `name A` asked over UDP to 127.0.0.1:port, or None."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.send(q)
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            r = s.recv(4096)
            if len(r) >= 12 and struct.unpack(">H", r[:2])[0] == qid:
                break
    except (socket.timeout, ConnectionRefusedError, OSError):
        return None
    finally:
        s.close()
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", r[:12])
    pos = 12

    def skip_name(p):
        while True:
            n = r[p]
            if n == 0:
                return p + 1
            if n & 0xC0 == 0xC0:
                return p + 2
            p += n + 1
    for _ in range(qd):
        pos = skip_name(pos) + 4
    addrs = []
    for _ in range(an):
        pos = skip_name(pos)
        t, _c, _ttl, rdlen = struct.unpack(">HHIH", r[pos:pos + 10])
        pos += 10
        if t == 1 and rdlen == 4:
            addrs.append(".".join(str(b) for b in r[pos:pos + 4]))
        pos += rdlen
    return flags & 0xF, addrs


def answers(name, addr, port):
    r = query(name, port)
    return r is not None and r[0] == 0 and addr in r[1]


# ---------------------------------------------------------------------------- processes

libc = ctypes.CDLL(None, use_errno=True)
# Orphans of a server (NSD's old processes after a reload) become this script's children,
# so their CPU time is collected when they exit.
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
STARTED = []  # process group ids of the servers started and not yet stopped
REAPED_NS = {}  # pgid -> CPU ns of its exited processes this script reaped


def proc_stat(pid):
    try:
        st = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    f = st[st.rindex(")") + 2:].split()
    return {"state": f[0], "ppid": int(f[1]), "pgrp": int(f[2]), "cutime": int(f[13]), "cstime": int(f[14])}


def group_pids(pgid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            st = proc_stat(p)
            if st and st["pgrp"] == pgid:
                out.append((int(p), st))
    return out


def reap(pgid, main_pid):
    me = os.getpid()
    for pid, st in group_pids(pgid):
        if st["ppid"] == me and st["state"] == "Z" and pid != main_pid:
            try:
                _, _, ru = os.wait4(pid, os.WNOHANG)
                REAPED_NS[pgid] = REAPED_NS.get(pgid, 0) + int((ru.ru_utime + ru.ru_stime) * 1e9)
            except ChildProcessError:
                pass


def cpu_ns(srv):
    reap(srv.pgid, srv.proc.pid)
    total = REAPED_NS.get(srv.pgid, 0)
    for pid, st in group_pids(srv.pgid):
        if st["state"] == "Z":
            continue
        total += (st["cutime"] + st["cstime"]) * 10**9 // HZ
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    total += int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
                except OSError:
                    pass
        except OSError:
            pass
    return total


def memory_kib(srv):
    """Proportional set size summed over the server's processes."""
    total = 0
    for pid, st in group_pids(srv.pgid):
        if st["state"] == "Z":
            continue
        try:
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def wait_idle(srv, window=0.1, limit=60.0):
    """Waits until the server uses under 1% of a CPU over `window`; returns its CPU ns then."""
    end = time.monotonic() + limit
    last = cpu_ns(srv)
    while time.monotonic() < end:
        time.sleep(window)
        now = cpu_ns(srv)
        if now - last < window * 1e9 / 100:
            return now
        last = now
    return last


class Server:
    def __init__(self, label, cmd, port, env=None, logpath=None):
        self.label, self.port = label, port
        self.log = open(logpath, "w")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(["taskset", "-c", CPUS] + cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=dict(os.environ, **(env or {})))
        self.pgid = self.proc.pid
        STARTED.append(self.pgid)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        stop_group(self.pgid, self.proc)
        if self.pgid in STARTED:
            STARTED.remove(self.pgid)
        self.log.close()


def stop_group(pgid, proc=None):
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        end = time.monotonic() + wait
        while time.monotonic() < end:
            # A multi-threaded process shows as a zombie once its first thread is gone, while
            # the others still free its memory and hold its sockets: the server started is
            # gone only once it is reaped.
            if proc is not None and proc.poll() is None:
                time.sleep(0.05)
                continue
            reap(pgid, proc.pid if proc is not None else -1)
            if not [p for p, st in group_pids(pgid) if st["state"] != "Z"]:
                return
            time.sleep(0.05)


@atexit.register
def stop_all():
    for pgid in list(STARTED):
        stop_group(pgid)


def on_signal(signum, _frame):
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)


# ---------------------------------------------------------------------------- servers

class Setup:
    """One server type: writes its configuration for a zone set, starts it, tells it to reload."""

    def __init__(self, kind, data):
        self.kind, self.data = kind, data
        self.port = PORTS[kind]
        self.label = kind
        if kind.startswith("pzdns"):
            self.label = {"pzdns-yaml": "pzdns (YAML)", "pzdns-master": "pzdns (`master_file:`)"}[kind]
            if PZDNS_ENV:
                self.label += " " + " ".join(f"{k}={v}" for k, v in PZDNS_ENV.items())
            self.label += PZDNS_LABEL
        else:
            self.label = {"nsd": "NSD", "knot": "Knot", "unbound": "Unbound local-data"}[kind]

    def prepare(self, full):
        """A fresh run directory; returns the command line. `full`: every zone, else only the small one."""
        self.dir = os.path.join(WORK, "run", self.kind + ("" if full else "-empty"))
        shutil.rmtree(self.dir, ignore_errors=True)
        self.zones = os.path.join(self.dir, "zones")
        os.makedirs(self.zones)
        os.makedirs(os.path.join(self.dir, "edit"))
        self.full = full
        self.gen = 0
        big = range(ZONES) if full else range(0)
        k = self.kind
        if k.startswith("pzdns"):
            with open(os.path.join(self.zones, "vpcs.yaml"), "w") as f:
                f.write("vpcs:\n  - { id: vpc-scale, cidrs: [127.0.0.0/8] }\n")
            for z in big:
                o = zone_name(z)
                if k == "pzdns-yaml":
                    os.link(os.path.join(self.data, "yaml", f"{o}.yaml"), os.path.join(self.zones, f"{o}.yaml"))
                else:
                    os.link(os.path.join(self.data, "master", f"{o}.zone"), os.path.join(self.zones, f"{o}.zone"))
                    with open(os.path.join(self.zones, f"{o}.yaml"), "w") as f:
                        f.write(f"zone: {o}\nvpcs: [vpc-scale]\nmaster_file: {o}.zone\n")
            if k == "pzdns-master":
                with open(os.path.join(self.zones, f"{SMALL_ZONE}.yaml"), "w") as f:
                    f.write(f"zone: {SMALL_ZONE}\nvpcs: [vpc-scale]\nmaster_file: {SMALL_ZONE}.zone\n")
            self.small_file = f"{SMALL_ZONE}.yaml" if k == "pzdns-yaml" else f"{SMALL_ZONE}.zone"
            self.write_small(self.gen)
            return [PZDNS_BIN, "serve", "--zones", self.zones, "--listen", f"127.0.0.1:{self.port}",
                    "--admin", f"127.0.0.1:{ADMIN_PORT}", "--upstream", "127.0.0.1:9", "--workers", "1"]
        self.small_file = f"{SMALL_ZONE}.zone"
        self.write_small(self.gen)
        zfiles = [(zone_name(z), os.path.join(self.data, "master", f"{zone_name(z)}.zone")) for z in big]
        zfiles.append((SMALL_ZONE, os.path.join(self.zones, self.small_file)))
        conf = os.path.join(self.dir, f"{k}.conf")
        if k == "nsd":
            with open(conf, "w") as f:
                f.write(f"""server:
  ip-address: 127.0.0.1
  port: {self.port}
  server-count: 1
  do-ip6: no
  username: ""
  chroot: ""
  database: ""
  zonesdir: "{self.dir}"
  pidfile: "{self.dir}/nsd.pid"
  xfrdfile: "{self.dir}/xfrd.state"
  zonelistfile: "{self.dir}/zone.list"
  xfrdir: "{self.dir}"
  verbosity: 1
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: yes
  control-interface: "{self.dir}/nsd.ctl"
""")
                for name, path in zfiles:
                    f.write(f'zone:\n  name: "{name}"\n  zonefile: "{path}"\n')
            subprocess.run(["nsd-checkconf", conf], check=True)
            self.conf = conf
            return ["nsd", "-d", "-c", conf]
        if k == "knot":
            os.makedirs(os.path.join(self.dir, "db"))
            with open(conf, "w") as f:
                f.write(f"""server:
  listen: 127.0.0.1@{self.port}
  rundir: "{self.dir}"
  udp-workers: 1
  tcp-workers: 1
control:
  listen: "{self.dir}/knot.sock"
database:
  storage: "{self.dir}/db"
log:
  - target: stderr
    any: info
template:
  - id: default
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
zone:
""")
                for name, path in zfiles:
                    f.write(f'  - domain: "{name}"\n    file: "{path}"\n')
            self.conf = conf
            return ["knotd", "-c", conf]
        if k == "unbound":
            with open(conf, "w") as f:
                f.write(f"""server:
  interface: 127.0.0.1
  port: {self.port}
  do-ip6: no
  num-threads: 1
  username: ""
  chroot: ""
  directory: "{self.dir}"
  pidfile: "{self.dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
""")
                if full:
                    f.write(f'  include: "{self.data}/unbound-local-data.conf"\n')
                f.write(unbound_text(SMALL_ZONE, small_records(0)))
                # Nothing is forwarded anywhere: a closed loopback port.
                f.write('forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@9\n')
            subprocess.run(["unbound-checkconf", conf], check=True, stdout=subprocess.DEVNULL)
            return ["unbound", "-d", "-c", conf]
        raise ValueError(k)

    def write_small(self, gen):
        """The small zone at generation `gen`, rewritten in place through a hard link outside
        the zones directory (pzdns's file watch sees only its own directory's entries)."""
        path = os.path.join(self.zones, self.small_file)
        edit = os.path.join(self.dir, "edit", self.small_file)
        if self.small_file.endswith(".zone"):
            text = master_text(SMALL_ZONE, small_records(gen), serial=gen + 1)
        else:
            text = yaml_text(SMALL_ZONE, small_records(gen))
        if not os.path.exists(edit):
            open(path, "w").write(text)
            os.link(path, edit)
            return
        with open(edit, "w") as f:
            f.write(text)

    def rename_small(self, gen):
        """The small zone at `gen` as git writes it: a new file renamed over the old one."""
        tmp = os.path.join(self.zones, f".tmp-{self.small_file}")
        text = (master_text(SMALL_ZONE, small_records(gen), serial=gen + 1) if self.small_file.endswith(".zone")
                else yaml_text(SMALL_ZONE, small_records(gen)))
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.zones, self.small_file))

    def how(self):
        return {"nsd": "`nsd-control reload <zone>`", "knot": "`knotc zone-reload <zone>`"}.get(self.kind, "`POST /reload` (curl)")

    def can_reload(self):
        return self.kind != "unbound"

    def trigger(self):
        # Each server is told by its own control tool, a process started per reload, as an
        # operator's hook would (curl for pzdns's admin HTTP).
        if self.kind.startswith("pzdns"):
            subprocess.run(["curl", "-fsS", "-XPOST", f"http://127.0.0.1:{ADMIN_PORT}/reload"], check=True,
                           stdout=subprocess.DEVNULL)
        elif self.kind == "nsd":
            subprocess.run(["nsd-control", "-c", self.conf, "reload", SMALL_ZONE], check=True, stdout=subprocess.DEVNULL)
        elif self.kind == "knot":
            subprocess.run(["knotc", "-s", f"{self.dir}/knot.sock", "zone-reload", SMALL_ZONE], check=True,
                           stdout=subprocess.DEVNULL)

    def version(self):
        try:
            if self.kind.startswith("pzdns"):
                # "pzdns 0.1.0 (commit abc, rustc ...)": the version and the commit it was built from.
                out = subprocess.run([PZDNS_BIN, "--version"], capture_output=True, text=True).stdout.split()
                v = out[1] if len(out) > 1 else "?"
                c = out[3].rstrip(",") if len(out) > 3 and out[2] == "(commit" else ""
                return f"{v} {c}".strip()
            if self.kind == "nsd":
                return subprocess.run(["nsd", "-v"], capture_output=True, text=True).stderr.split()[2]
            if self.kind == "knot":
                return subprocess.run(["knotd", "-V"], capture_output=True, text=True).stdout.split()[-1]
            if self.kind == "unbound":
                return subprocess.run(["unbound", "-V"], capture_output=True, text=True).stdout.split()[1]
        except (OSError, IndexError):
            return "?"


def wait_loaded(srv, probes, timeout):
    """Waits until every (name, address) of `probes` is answered; returns the time it took."""
    pending = list(probes)
    end = srv.t0 + timeout
    while pending:
        if not srv.alive():
            raise RuntimeError(f"{srv.label} exited during start-up (see {srv.log.name})")
        if time.monotonic() > end:
            raise RuntimeError(f"{srv.label}: {pending[0][0]} not answered after {timeout} s")
        if answers(pending[0][0], pending[0][1], srv.port):
            pending.pop(0)
        else:
            time.sleep(0.01)
    return time.monotonic() - srv.t0


def wait_answer(srv, name, addr, since, timeout=LOAD_TIMEOUT):
    while not answers(name, addr, srv.port):
        if time.monotonic() - since > timeout:
            raise RuntimeError(f"{srv.label}: {name} never answered {addr}")
        time.sleep(0.001)
    return time.monotonic() - since


SMALL_PROBE = (f"probe.{SMALL_ZONE}", small_addr(0))


def start(setup, full):
    cmd = setup.prepare(full)
    env = PZDNS_ENV if setup.kind.startswith("pzdns") else None
    return Server(setup.label, cmd, setup.port, env, os.path.join(setup.dir, "server.log"))


def measure_empty(setup, res):
    """The same server holding the small zone only: its memory is what the records add to."""
    srv = start(setup, full=False)
    try:
        wait_loaded(srv, [SMALL_PROBE], 60)
        wait_idle(srv)
        res["empty_kib"] = memory_kib(srv)
    finally:
        srv.stop()


def load(setup, res):
    """Starts the server on every zone; records one load; returns the running server."""
    srv = start(setup, full=True)
    try:
        wall = wait_loaded(srv, [probe_of(z) for z in range(ZONES)] + [SMALL_PROBE], LOAD_TIMEOUT)
        cpu = cpu_ns(srv) / 1e9
        busy = os.getloadavg()[0]
        wait_idle(srv)
        mem = memory_kib(srv)
    except BaseException:
        srv.stop()
        raise
    res["loads"].append({"wall_s": wall, "cpu_s": cpu, "kib": mem, "loadavg": busy})
    log(f"{setup.label}: loaded in {wall:.2f} s ({cpu:.2f} s CPU), {mem / 1024:.0f} MiB, load average {busy:.1f}")
    return srv


def reloads(setup, res):
    """Loads once more, then changes the small zone RELOADS times (and WATCH_RELOADS through
    pzdns's file watch)."""
    srv = load(setup, res)
    try:
        res["how"] = setup.how()
        res["reloads"], res["mem_after"] = [], {}
        for n in range(1, RELOADS + 1):
            setup.write_small(n)
            c0 = cpu_ns(srv)
            t0 = time.monotonic()
            setup.trigger()
            wall = wait_answer(srv, f"probe.{SMALL_ZONE}", small_addr(n), t0)
            c1 = cpu_ns(srv)
            c2 = wait_idle(srv)
            res["reloads"].append({"wall_s": wall, "cpu_to_answer_s": (c1 - c0) / 1e9, "cpu_s": (c2 - c0) / 1e9,
                                   "loadavg": os.getloadavg()[0]})
            if n in MEM_AFTER:
                res["mem_after"][n] = memory_kib(srv)
                log(f"{setup.label}: reload {n}: {wall * 1000:.1f} ms, {(c2 - c0) / 1e6:.1f} ms CPU, "
                    f"{res['mem_after'][n] / 1024:.0f} MiB")
        if setup.kind.startswith("pzdns") and WATCH_RELOADS:
            res["watch"] = []
            for n in range(RELOADS + 1, RELOADS + 1 + WATCH_RELOADS):
                c0 = cpu_ns(srv)
                t0 = time.monotonic()
                setup.rename_small(n)
                wall = wait_answer(srv, f"probe.{SMALL_ZONE}", small_addr(n), t0)
                c2 = wait_idle(srv)
                res["watch"].append({"wall_s": wall, "cpu_s": (c2 - c0) / 1e9})
            log(f"{setup.label}: through the file watch: " + ", ".join(f"{w['wall_s'] * 1000:.0f} ms" for w in res["watch"]))
    finally:
        srv.stop()


def run_all(data):
    """Memory baselines, then LOAD_REPS loads of every server taken in turn (so that a busy
    spell of this machine does not fall on one server only), then each server's reloads."""
    setups = [Setup(kind, data) for kind in SERVERS]
    results = [{"server": s.kind, "label": s.label, "version": s.version(), "records": ZONES * PER_ZONE + SMALL,
                "loads": []} for s in setups]

    def each(step, pick=lambda s: True):
        for setup, res in zip(setups, results):
            if "error" in res or not pick(setup):
                continue
            try:
                step(setup, res)
            except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
                log(f"{setup.label}: FAILED: {e}")
                res["error"] = str(e)
    each(measure_empty)
    for _ in range(LOAD_REPS):
        each(lambda setup, res: load(setup, res).stop())
    each(reloads, lambda s: s.can_reload() and RELOADS > 0)
    for res in results:
        if res["loads"] and "empty_kib" in res:
            res["load_s"] = statistics.median(x["wall_s"] for x in res["loads"])
            res["load_cpu_s"] = statistics.median(x["cpu_s"] for x in res["loads"])
            res["loaded_kib"] = statistics.median(x["kib"] for x in res["loads"])
            res["bytes_per_record"] = (res["loaded_kib"] - res["empty_kib"]) * 1024 / (ZONES * PER_ZONE)
    return results


# ---------------------------------------------------------------------------- report

def fmt_s(s):
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def fmt_ms(s):
    return f"{s * 1000:.1f} ms" if s < 0.1 else fmt_s(s)


def table(results):
    n = ZONES * PER_ZONE + SMALL
    mem_cols = " / ".join(str(k) for k in MEM_AFTER) or "no"
    loads = max((len(r.get("loads", [])) for r in results), default=0)
    print(f"| server | load {n:,} records: median wall (CPU), min–max wall of {loads} | memory after load | bytes per record | "
          f"one small zone changed → answered with the new data: median wall (CPU), min–max wall of {RELOADS} | "
          f"memory after {mem_cols} reloads |")
    print("|---|---|---:|---:|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['label']} {r.get('version', '')} | failed: {r['error']} | | | | |")
            continue
        rel = "—"
        mem = "—"
        if r.get("reloads"):
            w = [x["wall_s"] for x in r["reloads"]]
            c = [x["cpu_s"] for x in r["reloads"]]
            rel = f"{r['how']}: {fmt_ms(statistics.median(w))} ({fmt_ms(statistics.median(c))} CPU), {fmt_ms(min(w))}–{fmt_ms(max(w))}"
            if r.get("watch"):
                ww = [x["wall_s"] for x in r["watch"]]
                rel += f"; file watch: {fmt_ms(min(ww))}–{fmt_ms(max(ww))} from the rename"
            mem = " / ".join(f"{r['mem_after'][k] / 1024:.0f}" for k in MEM_AFTER) + " MiB"
        lw = [x["wall_s"] for x in r["loads"]]
        print(f"| {r['label']} {r['version']} | {fmt_s(r['load_s'])} ({fmt_s(r['load_cpu_s'])}), {fmt_s(min(lw))}–{fmt_s(max(lw))} | "
              f"{r['loaded_kib'] / 1024:.0f} MiB | {r['bytes_per_record']:.0f} | {rel} | {mem} |")

    by = {r["server"]: r for r in results if "error" not in r}
    mine = [r for r in results if r["server"].startswith("pzdns") and "error" not in r]
    if not mine:
        return
    print()
    print("| target (issue #18) | " + " | ".join(r["label"] for r in mine) + " |")
    print("|---|" + "---|" * len(mine))

    def ratio(f, base, limit):
        cells = []
        for r in mine:
            try:
                v = f(r) / f(by[base])
                verdict = "" if limit is None else " met" if v <= limit else f" missed by {v / limit:.2f}×"
                cells.append(f"{v:.2f}×{verdict}")
            except (KeyError, ZeroDivisionError, TypeError, statistics.StatisticsError):
                cells.append("-")
        return " | ".join(cells)
    med_w = lambda r: statistics.median(x["wall_s"] for x in r["reloads"])
    med_c = lambda r: statistics.median(x["cpu_s"] for x in r["reloads"])
    print(f"| one-zone reload wall ≤ 2× Knot's | {ratio(med_w, 'knot', 2)} |")
    print(f"| one-zone reload CPU ≤ 10× Knot's | {ratio(med_c, 'knot', 10)} |")
    print(f"| bytes per record ≤ 1.0× Knot's | {ratio(lambda r: r['bytes_per_record'], 'knot', 1)} |")
    print(f"| load wall ≤ 1.0× NSD's | {ratio(lambda r: r['load_s'], 'nsd', 1)} |")
    print(f"| (not a target) load CPU ÷ NSD's | {ratio(lambda r: r['load_cpu_s'], 'nsd', None)} |")
    if RELOADS >= 2:
        cells = []
        for r in mine:
            if RELOADS not in r.get("mem_after", {}):
                cells.append("-")
                continue
            v = r["mem_after"][RELOADS] / r["mem_after"][1]
            cells.append(f"{v:.2f}× {'met' if v <= 1.2 else f'missed by {v / 1.2:.2f}×'}")
        print(f"| memory after {RELOADS} reloads ≤ 1.2× after the first | " + " | ".join(cells) + " |")


def main():
    if not os.access(PZDNS_BIN, os.X_OK) and any(s.startswith("pzdns") for s in SERVERS):
        sys.exit(f"no pzdns binary at {PZDNS_BIN}: cargo build --release")
    os.makedirs(WORK, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    data = gen_data(SERVERS)
    results = run_all(data)
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump({"started": started, "records": ZONES * PER_ZONE + SMALL, "zones": ZONES, "reloads": RELOADS,
                   "cpus": CPUS, "results": results}, f, indent=1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        busy = [x["loadavg"] for r in results for x in r.get("loads", []) + r.get("reloads", [])]
        print(f"Scale scenario, {started}: {ZONES} zones × {PER_ZONE:,} records + one {SMALL}-record zone; "
              f"servers pinned to CPUs {CPUS} of {os.cpu_count()}; this machine's load average during the "
              f"measurements: {min(busy, default=0):.1f}–{max(busy, default=0):.1f}.\n")
        table(results)
    print(out.getvalue(), end="")
    with open(os.path.join(WORK, "table.md"), "w") as f:
        f.write(out.getvalue())


if __name__ == "__main__":
    main()
