//! Interoperability with software no one here wrote (issue: BIND and
//! Unbound forwarding to pzdns, glibc's stub resolver, dig and kdig).
//! Each peer runs on loopback with a generated config and is stopped by
//! PID. .ci/run installs them and sets PZDNS_REQUIRE_TOOLS=1, so that a
//! missing peer fails there instead of skipping.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::upstream::FakeUpstream;
use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const ZONES: &str = RULES_ZONES;

/// A peer process, killed (by PID) when dropped.
pub(crate) struct Peer {
    child: Child,
    dir: PathBuf,
}

impl Peer {
    pub(crate) fn start(cmd: &mut Command, dir: PathBuf, probe: SocketAddr) -> Peer {
        let log = std::fs::File::create(dir.join("peer.log")).unwrap();
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().expect("start peer");
        let mut p = Peer { child, dir };
        // Ready when it answers anything over UDP.
        let q = query("probe.invalid.", RecordType::A, None).to_vec().unwrap();
        let t = Instant::now();
        loop {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            let _ = s.send_to(&q, probe);
            let mut b = [0u8; 512];
            if s.recv_from(&mut b).is_ok() {
                return p;
            }
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("peer exited ({st}): {}", p.log());
            }
            assert!(t.elapsed() < Duration::from_secs(20), "peer did not start: {}", p.log());
        }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("peer.log")).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-interop-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An Unbound config listening on `iface:port`, asking from `outgoing`,
/// forwarding everything to pzdns at `to`, with `extra` server lines.
fn unbound_conf(dir: &Path, iface: &str, port: u16, outgoing: &str, to: SocketAddr, extra: &str) -> String {
    let d = dir.display();
    format!(
        r#"server:
    interface: {iface}
    port: {port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    access-control: 127.0.0.0/8 allow
    outgoing-interface: {outgoing}
    do-not-query-localhost: no
{extra}remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: {ip}@{pzport}
"#,
        ip = to.ip(),
        pzport = to.port()
    )
}

pub(crate) fn free_udp_port(ip: &str) -> u16 {
    // The same port free on TCP too, for peers that bind both.
    loop {
        let u = std::net::UdpSocket::bind((ip, 0)).unwrap();
        let p = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind((ip, p)).is_ok() {
            return p;
        }
    }
}

/// pzdns with the rules fixture, a test authority as its upstream, and
/// its admin port (to count the queries it answered).
fn pzdns(up: &FakeUpstream) -> TestServer {
    let cfg = format!("listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n", up.addr);
    TestServer::start(Path::new(ZONES), &cfg)
}

fn pzdns_queries(s: &TestServer) -> f64 {
    metric(&http(s.admin.unwrap(), "GET", "/metrics").1, "pzdns_query_duration_seconds_count")
}

fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp(server, "127.0.0.1", &query(name, qtype, Some(1232)))
}

fn named_conf(dir: &Path, listen: &str, port: u16, pz: SocketAddr, source: &str, dnssec: &str) -> PathBuf {
    let d = dir.display();
    let conf = format!(
        r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ {listen}; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-query {{ any; }};
    allow-recursion {{ any; }};
    forward only;
    forwarders {{ {ip} port {pzport}; }};
    query-source address {source};
    {dnssec}
}};
controls {{ }};
"#,
        ip = pz.ip(),
        pzport = pz.port()
    );
    let p = dir.join("named.conf");
    std::fs::write(&p, conf).unwrap();
    p
}

#[test]
fn bind_forward_only_from_a_vpc_address() {
    let Some(named) = tool("named") else { return };
    let up = FakeUpstream::start("127.0.0.1");
    let pz = pzdns(&up);
    let dir = scratch("bind");
    let port = free_udp_port("127.0.0.1");
    // BIND's queries come from 127.1.0.77: inside vpc-a.
    let conf = named_conf(&dir, "127.0.0.1", port, pz.addrs[0], "127.1.0.77", "dnssec-validation no;");
    let bind: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _peer = Peer::start(Command::new(named).args(["-g", "-n", "1", "-c"]).arg(&conf), dir, bind);

    // vpc-a's view through BIND: the apex CNAME chain, the endpoint names, private data.
    let r = ask(bind, "ecs.cn-hangzhou.aliyuncs.com.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let mut got = lines(&r.answers);
    got.sort();
    assert_eq!(
        got,
        [
            "ecs.cn-hangzhou.aliyuncs.com. CNAME popunify-vpc.cn-hangzhou.aliyuncs.com.",
            "popunify-vpc.cn-hangzhou.aliyuncs.com. A 100.100.2.148",
            "popunify-vpc.cn-hangzhou.aliyuncs.com. A 100.100.2.149"
        ]
    );
    let r = ask(bind, "ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com.", RecordType::A);
    assert_eq!(r.answers.len(), 2);
    let r = ask(bind, "www.example.test.", RecordType::A);
    // BIND rotates RRsets (rrset-order cyclic): compare as sets.
    let mut got = lines(&r.answers);
    got.sort();
    assert_eq!(got, ["www.example.test. A 10.0.0.1", "www.example.test. A 10.0.0.2"]);
    let first_ttl = r.answers[0].ttl;
    let r = ask(bind, "nope.example.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    // BIND's cache: asked again, pzdns sees nothing new, and TTLs count down.
    let before = pzdns_queries(&pz);
    std::thread::sleep(Duration::from_millis(1100));
    let r = ask(bind, "www.example.test.", RecordType::A);
    assert_eq!(r.answers.len(), 2);
    assert!(r.answers[0].ttl < first_ttl && r.answers[0].ttl > 0, "TTL {} then {}", first_ttl, r.answers[0].ttl);
    ask(bind, "nope.example.test.", RecordType::A);
    assert_eq!(pzdns_queries(&pz), before, "answered from BIND's cache");
}

#[test]
fn bind_validating_with_validate_except_for_private_names() {
    let Some(named) = tool("named") else { return };
    let up = FakeUpstream::start("127.0.0.1");
    let pz = pzdns(&up);
    let dir = scratch("bind-dnssec");
    let port = free_udp_port("127.0.0.1");
    let conf = named_conf(
        &dir,
        "127.0.0.1",
        port,
        pz.addrs[0],
        "127.1.0.78",
        r#"dnssec-validation auto;
    validate-except { "example.test"; "privatelink.aliyuncs.com"; "vendor.example"; };"#,
    );
    let bind: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _peer = Peer::start(Command::new(named).args(["-g", "-n", "1", "-c"]).arg(&conf), dir, bind);
    for (name, n) in [("www.example.test.", 2), ("ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com.", 2), ("api.vendor.example.", 2)] {
        let r = ask(bind, name, RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(r.answers.len(), n, "{name}: {:?}", lines(&r.answers));
        assert!(!r.metadata.authentic_data, "{name}: private data is not validated");
    }
}

#[test]
fn unbound_forwarding_with_0x20_from_another_vpc() {
    let Some(unbound) = tool("unbound") else { return };
    let up = FakeUpstream::start("127.0.0.1");
    let pz = pzdns(&up);
    let dir = scratch("unbound");
    let port = free_udp_port("127.0.0.51");
    let conf =
        unbound_conf(&dir, "127.0.0.51", port, "127.2.0.77", pz.addrs[0], "    use-caps-for-id: yes\n    module-config: \"iterator\"\n");
    std::fs::write(dir.join("unbound.conf"), conf).unwrap();
    let unb: SocketAddr = format!("127.0.0.51:{port}").parse().unwrap();
    let _peer = Peer::start(Command::new(unbound).arg("-d").arg("-c").arg(dir.join("unbound.conf")), dir, unb);
    // Unbound's queries come from 127.2.0.77: vpc-b, whose aliyuncs.com zone answers.
    let r = ask(unb, "ecs.cn-hangzhou.aliyuncs.com.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
    assert_eq!(lines(&r.answers), ["ecs.cn-hangzhou.aliyuncs.com. A 100.100.0.1"]);
    // vpc-a's private zone is not visible from vpc-b: the public answer (NXDOMAIN upstream).
    let r = ask(unb, "www.example.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.answers.is_empty());
}

/// glibc's stub resolver (getent) in a private network namespace where
/// pzdns listens on 127.0.0.1:53, with a resolv.conf bind-mounted over the
/// system one: nothing outside the namespace is touched.
#[test]
fn glibc_getent_resolves_an_endpoint_name() {
    let (Some(unshare), Some(_ip)) = (tool("unshare"), tool("ip")) else { return };
    if Command::new(&unshare).args(["--net", "--mount", "true"]).status().map(|s| !s.success()).unwrap_or(true) {
        assert!(std::env::var_os("PZDNS_REQUIRE_TOOLS").is_none(), "cannot create a network namespace (needs root)");
        eprintln!("skipped: cannot unshare");
        return;
    }
    let dir = scratch("glibc");
    let zones = std::fs::canonicalize(ZONES).unwrap();
    // The listener is an inbound endpoint of vpc-a, so the namespace's 127.0.0.1 is a vpc-a client.
    std::fs::write(
        dir.join("pzdns.yaml"),
        format!(
            "listen:\n  - address: 127.0.0.1:53\n    vpc: vpc-a\nupstreams: []\nzones_dir: {}\nadmin:\n  listen: \"off\"\n",
            zones.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n").unwrap();
    let script = format!(
        "set -e; ip link set lo up; mount --bind {d}/resolv.conf /etc/resolv.conf; \
         {bin} serve --config {d}/pzdns.yaml --ready-file {d}/ready 2>{d}/pzdns.log & pid=$!; \
         for i in $(seq 100); do [ -s {d}/ready ] && break; sleep 0.1; done; \
         getent ahosts ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com || true; \
         getent hosts www.example.test || true; kill $pid; wait $pid || true",
        d = dir.display(),
        bin = env!("CARGO_BIN_EXE_pzdns")
    );
    let out = Command::new(&unshare).args(["--net", "--mount", "bash", "-c", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(stdout.contains("192.168.1.1") && stdout.contains("192.168.2.2"), "getent: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("10.0.0.1") || stdout.contains("10.0.0.2"), "{stdout}");
}

#[test]
fn dig_and_kdig_option_sweep() {
    let (Some(dig), Some(kdig)) = (tool("dig"), tool("kdig")) else { return };
    let up = FakeUpstream::start("127.0.0.1");
    let pz = pzdns(&up);
    let s = pz.addrs[0];
    let name = "www.example.test";
    let run = |bin: &Path, opts: &[&str]| -> String {
        let mut c = Command::new(bin);
        c.args(["-p", &s.port().to_string(), &format!("@{}", s.ip()), "-b", "127.1.0.5", "+time=3"]);
        c.arg(if bin.ends_with("kdig") { "+retry=0" } else { "+tries=1" });
        let out = c.args(opts).arg(name).arg("A").output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cases: &[(&[&str], &[&str])] = &[
        (&["+tcp"], &["status: NOERROR", "10.0.0.1"]),
        (&["+norec"], &["status: NOERROR", "10.0.0.1"]),
        (&["+edns=0"], &["status: NOERROR", "udp: 1232"]),
        (&["+edns=1", "+noednsneg"], &["status: BADVERS"]),
        (&["+noedns"], &["status: NOERROR", "10.0.0.1"]),
        (&["+ednsopt=65001:abcd"], &["status: NOERROR", "10.0.0.1"]),
        (&["+dnssec"], &["status: NOERROR", "flags: do;"]),
        (&["+nsid"], &["status: NOERROR", "10.0.0.1"]),
        (&["+cookie"], &["status: NOERROR", "10.0.0.1"]),
        (&["+bufsize=512"], &["status: NOERROR", "udp: 512"]),
        (&["+bufsize=4096"], &["status: NOERROR", "udp: 1232"]),
    ];
    for (opts, want) in cases {
        let out = run(&dig, opts);
        for w in *want {
            assert!(out.contains(w), "dig {opts:?}: expected `{w}` in\n{out}");
        }
        assert!(!out.contains("WARNING: Message has"), "dig {opts:?}: {out}");
    }
    // kdig spells the same things its own way.
    let kcases: &[(&[&str], &[&str])] = &[
        (&["+tcp"], &["status: NOERROR", "10.0.0.1"]),
        (&["+norec"], &["status: NOERROR", "10.0.0.1"]),
        (&["+edns=0"], &["status: NOERROR", "Version: 0; flags: ; UDP size: 1232 B"]),
        (&["+noedns"], &["status: NOERROR", "10.0.0.1"]),
        (&["+dnssec"], &["status: NOERROR", "Version: 0; flags: do; UDP size: 1232 B"]),
        (&["+nsid"], &["status: NOERROR", "10.0.0.1"]),
        (&["+cookie"], &["status: NOERROR", "10.0.0.1"]),
        (&["+bufsize=512"], &["status: NOERROR", "UDP size: 512 B"]),
        (&["+ednsopt=65001:abcd"], &["status: NOERROR", "10.0.0.1"]),
    ];
    for (opts, want) in kcases {
        let out = run(&kdig, opts);
        for w in *want {
            assert!(out.contains(w), "kdig {opts:?}: expected `{w}` in\n{out}");
        }
    }
}

/// Zones for the forwarding-hop tests: vpc-a (127.1/16) sees a.test,
/// vpc-b (127.2/16) sees b.test.
fn hop_zones(tag: &str) -> PathBuf {
    let d = scratch(&format!("hop-zones-{tag}"));
    std::fs::write(d.join("vpcs.yaml"), "vpcs:\n  - { id: vpc-a, cidrs: [127.1.0.0/16] }\n  - { id: vpc-b, cidrs: [127.2.0.0/16] }\n")
        .unwrap();
    std::fs::write(d.join("a.yaml"), "zone: a.test\nvpcs: [vpc-a]\nrecords:\n  - { name: www, type: A, value: 10.1.1.1 }\n").unwrap();
    std::fs::write(d.join("b.yaml"), "zone: b.test\nvpcs: [vpc-b]\nrecords:\n  - { name: www, type: A, value: 10.2.2.2 }\n").unwrap();
    d
}

/// A DNS query from `from` through `server` by kdig (it can bind any
/// loopback source): the answer lines and the status line.
fn kdig_from(kdig: &Path, server: SocketAddr, from: &str, name: &str, tcp: bool) -> String {
    let mut c = Command::new(kdig);
    c.args(["-b", from, "-p", &server.port().to_string(), &format!("@{}", server.ip()), name, "A", "+retry=1", "+time=3"]);
    if tcp {
        c.arg("+tcp");
    }
    String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
}

fn queries_by_vpc(admin: SocketAddr, vpc: &str) -> f64 {
    let text = http(admin, "GET", "/metrics").1;
    text.lines()
        .filter(|l| l.starts_with("pzdns_queries_total{") && l.contains(&format!("vpc=\"{vpc}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Unbound as the on-premises forwarder, with its subnetcache module and
/// `send-client-subnet` for pzdns: clients of two VPCs asking Unbound get
/// their own VPC's views, and Unbound's cache keeps them apart (pzdns is
/// asked once per VPC, not once per client).
#[test]
fn unbound_with_client_subnet_keeps_each_vpcs_view() {
    let (Some(unbound), Some(kdig)) = (tool("unbound"), tool("kdig")) else { return };
    let z = hop_zones("unbound");
    let cfg = "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: 127.0.0.1:0\ntrusted_forwarders: [127.0.0.61/32]\nclient_subnet: trusted\n";
    let pz = TestServer::start(&z, cfg);
    let admin = pz.admin.unwrap();
    let dir = scratch("unbound-ecs");
    let port = free_udp_port("127.0.0.60");
    let extra = format!(
        "    module-config: \"subnetcache iterator\"\n    # Unbound serves test. itself by default (RFC 6761); these are pzdns's.\n    local-zone: \"test.\" nodefault\n    send-client-subnet: {}\n    max-client-subnet-ipv4: 24\n",
        pz.addrs[0].ip()
    );
    let conf = unbound_conf(&dir, "127.0.0.60", port, "127.0.0.61", pz.addrs[0], &extra);
    std::fs::write(dir.join("unbound.conf"), conf).unwrap();
    let unb: SocketAddr = format!("127.0.0.60:{port}").parse().unwrap();
    let peer = Peer::start(Command::new(unbound).arg("-d").arg("-c").arg(dir.join("unbound.conf")), dir, unb);
    for round in 0..2 {
        for (client, name, want) in
            [("127.1.0.5", "www.a.test.", "10.1.1.1"), ("127.2.0.5", "www.b.test.", "10.2.2.2"), ("127.1.7.9", "www.a.test.", "10.1.1.1")]
        {
            let out = kdig_from(&kdig, unb, client, name, false);
            assert!(out.contains(want), "round {round}, {client} asks {name} through Unbound: {out}\n{}", peer.log());
        }
        // vpc-b's client does not see vpc-a's zone through the hop either.
        let out = kdig_from(&kdig, unb, "127.2.0.5", "www.a.test.", false);
        assert!(!out.contains("10.1.1.1"), "vpc-b must not get a.test: {out}");
    }
    // Unbound cached one answer per VPC block (scope /16), not per client.
    let (a, b) = (queries_by_vpc(admin, "vpc-a"), queries_by_vpc(admin, "vpc-b"));
    assert!(a >= 1.0 && b >= 1.0, "pzdns saw both VPCs through Unbound: a={a} b={b}");
    assert!(a <= 2.0, "vpc-a's three client queries in two rounds reached pzdns {a} times");
    drop(peer);
    let _ = std::fs::remove_dir_all(&z);
}

/// dnsdist as a load balancer with `useProxyProtocol` in front of two pzdns
/// processes: clients of two VPCs get their own views over UDP and TCP;
/// dnsdist's health checks (PROXY v2 LOCAL) are answered.
#[test]
fn dnsdist_with_proxy_protocol_in_front_of_two_replicas() {
    let (Some(dnsdist), Some(kdig)) = (tool("dnsdist"), tool("kdig")) else { return };
    let z = hop_zones("dnsdist");
    let cfg = "listen:\n  - address: 127.0.0.1:0\n    proxy_protocol: required\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: 127.0.0.1:0\ntrusted_forwarders: [127.0.0.1/32]\n";
    let (r1, r2) = (TestServer::start(&z, cfg), TestServer::start(&z, cfg));
    let dir = scratch("dnsdist");
    let port = free_udp_port("127.0.0.70");
    let conf = format!(
        r#"setSecurityPollSuffix("")
setLocal("127.0.0.70:{port}")
setACL({{"127.0.0.0/8"}})
newServer({{address="{a1}", useProxyProtocol=true, checkInterval=1}})
newServer({{address="{a2}", useProxyProtocol=true, checkInterval=1}})
setServerPolicy(roundrobin)
"#,
        a1 = r1.addrs[0],
        a2 = r2.addrs[0]
    );
    std::fs::write(dir.join("dnsdist.conf"), conf).unwrap();
    let dd: SocketAddr = format!("127.0.0.70:{port}").parse().unwrap();
    let peer = Peer::start(Command::new(dnsdist).args(["--supervised", "--disable-syslog", "-C"]).arg(dir.join("dnsdist.conf")), dir, dd);
    for tcp in [false, true] {
        for _ in 0..2 {
            let out = kdig_from(&kdig, dd, "127.1.0.5", "www.a.test.", tcp);
            assert!(out.contains("10.1.1.1"), "vpc-a client through dnsdist (tcp={tcp}): {out}\n{}", peer.log());
            let out = kdig_from(&kdig, dd, "127.2.0.5", "www.b.test.", tcp);
            assert!(out.contains("10.2.2.2"), "vpc-b client through dnsdist (tcp={tcp}): {out}");
            let out = kdig_from(&kdig, dd, "127.2.0.5", "www.a.test.", tcp);
            assert!(!out.contains("10.1.1.1"), "vpc-b client must not get a.test (tcp={tcp}): {out}");
        }
    }
    // Both replicas served clients (round robin), and neither dropped a header.
    for r in [&r1, &r2] {
        let m = http(r.admin.unwrap(), "GET", "/metrics").1;
        assert!(metric(&m, "pzdns_proxy_dropped_total") == 0.0, "no drops: {m}");
        let vpc_a: f64 = m
            .lines()
            .filter(|l| l.starts_with("pzdns_queries_total{") && l.contains("vpc=\"vpc-a\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(vpc_a >= 1.0, "each replica answered vpc-a clients: {vpc_a}");
    }
    drop(peer);
    let _ = std::fs::remove_dir_all(&z);
}
