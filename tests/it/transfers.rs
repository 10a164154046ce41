//! Secondaries per view (issue #29, SPEC §9): TSIG keys that stand for VPC
//! views, AXFR/IXFR out, the view's catalog zone, NOTIFY. Checked with
//! kdig (which verifies every signature it is sent) and BIND 9.18 as the
//! on-premises secondary following the view's catalog.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::interop::{Peer, free_udp_port, scratch};
use crate::support::*;

const SECRET_A: &str = "c2VjcmV0IG9mIHRoZSBrZXkgb2YgdnBjLWEsIDMyIGJ5dGVzIQ==";
const SECRET_B: &str = "c2VjcmV0IG9mIHRoZSBrZXkgb2YgdnBjLWIsIDMyIGJ5dGVzIQ==";

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A zones directory with two views: vpc-a sees a.internal, shared.internal,
/// proxy.internal (recursive_proxy) and an endpoint's names; vpc-b sees
/// b.internal and shared.internal. Keys in `keys/`, beside the config.
fn zones(tag: &str) -> Scratch {
    let d = scratch(&format!("xfr-{tag}"));
    let z = d.join("zones");
    std::fs::create_dir_all(&z).unwrap();
    let w = |p: &str, t: &str| std::fs::write(z.join(p), t).unwrap();
    w("vpcs.yaml", "vpcs:\n  - { id: vpc-a, cidrs: [127.1.0.0/16] }\n  - { id: vpc-b, cidrs: [127.2.0.0/16] }\n");
    w(
        "a.yaml",
        "zone: a.internal\nvpcs: [vpc-a]\nrecords:\n  - { name: www, type: A, value: [10.0.0.1, 10.0.0.2] }\n  - { name: \"*.app\", type: A, value: 10.0.0.9 }\n  - { name: mail, type: MX, value: \"10 mx.a.internal\" }\n  - { name: alias, type: CNAME, value: www.shared.internal }\n  - { name: txt, type: TXT, value: '\"hello world\"' }\n",
    );
    w("b.yaml", "zone: b.internal\nvpcs: [vpc-b]\nrecords:\n  - { name: www, type: A, value: 10.2.0.1 }\n");
    w("shared.yaml", "zone: shared.internal\nvpcs: [vpc-a, vpc-b]\nrecords:\n  - { name: www, type: A, value: 10.9.0.1 }\n");
    w("proxy.yaml", "zone: proxy.internal\nvpcs: [vpc-a]\nrecursive_proxy: true\nrecords:\n  - { name: www, type: A, value: 10.3.0.1 }\n");
    w(
        "endpoints.yaml",
        "endpoints:\n  - id: ep-1\n    service: epsrv-1\n    region: cn-hangzhou\n    vpc: vpc-a\n    zones:\n      - { zone: cn-hangzhou-j, ip: 192.168.1.1 }\n",
    );
    std::fs::create_dir_all(d.join("keys")).unwrap();
    std::fs::write(d.join("keys/a.key"), format!("key \"ka\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{SECRET_A}\";\n}};\n")).unwrap();
    std::fs::write(d.join("keys/b.key"), format!("{SECRET_B}\n")).unwrap();
    Scratch(d)
}

/// The `transfers:` part of pzdns.yaml for the keys of [`zones`], in `dir`.
fn transfers_yaml(dir: &Path, notify: &str) -> String {
    let d = dir.display();
    format!(
        "transfers:\n  keys:\n    - {{ name: ka, algorithm: hmac-sha256, secret_file: {d}/keys/a.key, vpc: vpc-a }}\n    - {{ name: kb, secret_file: {d}/keys/b.key, vpc: vpc-b }}\n  catalog: catalog.test\n{notify}"
    )
}

fn start(dir: &Path, extra: &str) -> TestServer {
    let cfg = format!(
        "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n{}{extra}",
        transfers_yaml(dir, "")
    );
    TestServer::start(&dir.join("zones"), &cfg)
}

/// kdig's answer to `args` against `server`: (status, records as `owner TYPE rdata` lines, whole output).
fn kdig(server: SocketAddr, args: &[&str]) -> (String, Vec<String>, String) {
    let kdig = tool("kdig").unwrap();
    let out = Command::new(kdig)
        .args(["-b", "127.0.0.1", "+time=3", "+retry=0", "+nocrypto", &format!("@{}", server.ip()), "-p", &server.port().to_string()])
        .args(args)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let status = text.split("status: ").nth(1).map(|s| s.split(|c: char| !c.is_ascii_alphabetic()).next().unwrap().to_string());
    // A transfer's error: ";; ERROR: server replied with error 'NOTAUTH'".
    let status = status.or_else(|| text.split("replied with error '").nth(1).and_then(|s| s.split('\'').next()).map(str::to_string));
    let status = status.unwrap_or_default();
    let records = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // The TSIG record kdig shows (after checking it) is not data.
            (f.len() >= 5 && f[3] != "TSIG").then(|| format!("{} {} {}", f[0].to_ascii_lowercase(), f[3], f[4..].join(" ")))
        })
        .collect();
    (status, records, text)
}

fn axfr(server: SocketAddr, key: Option<(&str, &str)>, zone: &str) -> (String, Vec<String>, String) {
    let y = key.map(|(n, s)| format!("hmac-sha256:{n}:{s}"));
    let mut args: Vec<&str> = Vec::new();
    if let Some(y) = &y {
        args.extend(["-y", y]);
    }
    args.extend(["AXFR", zone]);
    kdig(server, &args)
}

fn assert_status(got: (String, Vec<String>, String), want: &str) {
    assert_eq!(got.0, want, "{}", got.2);
}

fn owners(records: &[String], rtype: &str) -> Vec<String> {
    let mut v: Vec<String> =
        records.iter().filter(|r| r.split(' ').nth(1) == Some(rtype)).map(|r| r.split(' ').next().unwrap().to_string()).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn each_key_transfers_exactly_its_views_zones() {
    if tool("kdig").is_none() {
        return;
    }
    let dir = zones("views");
    let pz = start(&dir, "");
    let at = pz.addrs[0];
    let (ka, kb) = (Some(("ka", SECRET_A)), Some(("kb", SECRET_B)));

    // vpc-a's key: its zone, whole, SOA first and last.
    let (st, recs, text) = axfr(at, ka, "a.internal.");
    assert!(text.contains("Received") || !recs.is_empty(), "{text}");
    assert_eq!(recs.first().map(|r| r.split(' ').nth(1)), Some(Some("SOA")), "{text}");
    assert_eq!(recs.last().map(|r| r.split(' ').nth(1)), Some(Some("SOA")), "{text}");
    assert!(!text.contains("TSIG") || !text.to_ascii_lowercase().contains("fail"), "kdig checked every signature: {text}");
    let mut body: Vec<&String> = recs[1..recs.len() - 1].iter().collect();
    body.sort();
    let want = [
        "*.app.a.internal. A 10.0.0.9",
        "a.internal. NS ns.pzdns.invalid.",
        "alias.a.internal. CNAME www.shared.internal.",
        "mail.a.internal. MX 10 mx.a.internal.",
        "txt.a.internal. TXT \"hello world\"",
        "www.a.internal. A 10.0.0.1",
        "www.a.internal. A 10.0.0.2",
    ];
    assert_eq!(body, want, "{st}: {text}");
    // And the shared zone and the endpoint's name, a zone of its own.
    assert_eq!(owners(&axfr(at, ka, "shared.internal.").1, "A"), ["www.shared.internal."]);
    let ep = "ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com.";
    assert_eq!(owners(&axfr(at, ka, ep).1, "A"), [ep]);
    // Not the other view's zone, and not a zone whose gaps pzdns forwards.
    assert_status(axfr(at, ka, "b.internal."), "NOTAUTH");
    assert_status(axfr(at, ka, "proxy.internal."), "NOTAUTH");

    // vpc-b's key: the mirror image.
    assert_eq!(owners(&axfr(at, kb, "b.internal.").1, "A"), ["www.b.internal."]);
    assert_eq!(owners(&axfr(at, kb, "shared.internal.").1, "A"), ["www.shared.internal."]);
    assert_status(axfr(at, kb, "a.internal."), "NOTAUTH");
    assert_eq!(axfr(at, kb, ep).0, "NOTAUTH");

    // Each view's catalog lists exactly what that view may copy.
    let members = |key, zone: &str| {
        let (_, recs, text) = axfr(at, key, zone);
        assert!(recs.iter().any(|r| r == &format!("version.{zone} TXT \"2\"")), "{text}");
        let mut v: Vec<String> =
            recs.iter().filter(|r| r.split(' ').nth(1) == Some("PTR")).map(|r| r.split(' ').nth(2).unwrap().to_string()).collect();
        v.sort();
        v
    };
    let zonal = "ep-1-cn-hangzhou-j.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com.";
    assert_eq!(members(ka, "vpc-a.catalog.test."), ["a.internal.", zonal, ep, "shared.internal."]);
    assert_eq!(members(kb, "vpc-b.catalog.test."), ["b.internal.", "shared.internal."]);
    assert_status(axfr(at, kb, "vpc-a.catalog.test."), "NOTAUTH");

    // Unsigned: REFUSED. A wrong secret or an unknown key: NOTAUTH with
    // the TSIG error, which kdig reports in its place.
    assert_status(axfr(at, None, "a.internal."), "REFUSED");
    assert_status(axfr(at, Some(("ka", SECRET_B)), "a.internal."), "BADSIG");
    assert_status(axfr(at, Some(("nokey", SECRET_A)), "a.internal."), "BADKEY");
    let m = http(pz.admin.unwrap(), "GET", "/metrics").1;
    assert_eq!(metric(&m, "pzdns_events_total{event=\"tsig_rejected\"}"), 2.0, "{m}");
    assert!(metric(&m, "pzdns_transfers_total{vpc=\"vpc-a\",zone=\"a.internal.\",kind=\"axfr\",result=\"complete\"}") >= 1.0, "{m}");
    // A name that is no zone of the view is not a label value (the asker picks it).
    assert!(metric(&m, "pzdns_transfers_total{vpc=\"vpc-a\",zone=\"-\",kind=\"axfr\",result=\"not_found\"}") >= 2.0, "{m}");
    assert!(!m.contains("zone=\"b.internal.\",kind=\"axfr\",result=\"not_found\""), "{m}");

    // A signed SOA query (a secondary's refresh), over UDP: answered, signed, in the key's view.
    let (st, recs, text) = kdig(at, &["-y", &format!("hmac-sha256:kb:{SECRET_B}"), "SOA", "b.internal."]);
    assert_eq!(st, "NOERROR", "{text}");
    assert_eq!(owners(&recs, "SOA"), ["b.internal."], "{text}");
    assert_eq!(kdig(at, &["-y", &format!("hmac-sha256:kb:{SECRET_B}"), "SOA", "a.internal."]).0, "NOTAUTH");
}

/// `big.internal` for vpc-a in `dir`'s zones: `n` A records, `host-0` up.
fn write_big_zone(dir: &Path, n: usize) {
    let mut yaml = String::from("zone: big.internal\nvpcs: [vpc-a]\nrecords:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - {{ name: host-{i}, type: A, value: 10.{}.{}.{} }}\n", i / 65536, (i / 256) % 256, i % 256));
    }
    std::fs::write(dir.join("zones/big.yaml"), yaml).unwrap();
}

#[test]
fn a_large_zone_streams_in_many_signed_messages() {
    if tool("kdig").is_none() {
        return;
    }
    let dir = zones("large");
    write_big_zone(&dir, 6000);
    let pz = start(&dir, "");
    let (_, recs, text) = axfr(pz.addrs[0], Some(("ka", SECRET_A)), "big.internal.");
    // SOA, NS, 6000 A, SOA; over several messages, each signature checked by kdig.
    assert_eq!(recs.len(), 6003, "{}", &text[text.len().saturating_sub(600)..]);
    // kdig: ";; Received N B (M messages, R records)".
    let messages: usize = text.split(" messages,").next().and_then(|t| t.rsplit('(').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(messages >= 2, "{}", &text[text.len().saturating_sub(300)..]);
    // Owners point at the apex: `host-N` and a pointer (12 bytes at most),
    // not `host-N.big.internal.` whole (24), before each A record's 14 bytes.
    let bytes: usize = text.split(";; Received ").nth(1).and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(bytes > 0 && bytes < 6003 * 30, "{bytes} bytes: names are not compressed");
}

/// A transfer's messages are made on a thread of their own at
/// `reload.priority` (SCHED_IDLE by default), not on the threads that
/// answer: a query arriving during a large transfer does not wait for a
/// message to be made and signed (bench/axfr.sh measures the latency).
#[cfg(target_os = "linux")]
#[test]
fn a_transfers_messages_are_made_below_the_answering_threads() {
    if tool("kdig").is_none() {
        return;
    }
    let dir = zones("thread");
    write_big_zone(&dir, 3000);
    let pz = start(&dir, "");
    let (_, recs, text) = axfr(pz.addrs[0], Some(("ka", SECRET_A)), "big.internal.");
    assert_eq!(recs.len(), 3003, "{}", &text[text.len().saturating_sub(600)..]);
    // Each thread's name and scheduling policy (field 41 of its stat; 5 is SCHED_IDLE).
    let threads: Vec<(String, u32)> = std::fs::read_dir(format!("/proc/{}/task", pz.pid()))
        .unwrap()
        .flatten()
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?.trim().to_string();
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let policy = stat.rsplit(')').next()?.split_whitespace().nth(38)?.parse().ok()?;
            Some((comm, policy))
        })
        .collect();
    let of = |name: &str| threads.iter().filter(|(c, _)| c == name).map(|(_, p)| *p).collect::<Vec<u32>>();
    assert_eq!(of("pzdns-transfer"), vec![5], "one transfer thread at SCHED_IDLE: {threads:?}");
    // The answering workers stay at the normal policy (a blocking-pool
    // thread of the same name may have been lowered by a reload).
    assert!(of("tokio-rt-worker").contains(&0), "answering threads: {threads:?}");
}

/// Names are sent in the order the zone file first gives them (a name
/// written twice goes where it first appears), not in hash order: a
/// secondary building its tree from names in order (bench/axfr.sh) does
/// it with far fewer cache misses.
#[test]
fn a_transfer_gives_names_in_the_order_of_the_zone_file() {
    if tool("kdig").is_none() {
        return;
    }
    let dir = zones("order");
    // 300 names in an order that is neither sorted nor hashed; `n-0` again at the end.
    let order: Vec<usize> = (0..300).map(|i| i * 7 % 300).collect();
    let mut yaml = String::from("zone: order.internal\nvpcs: [vpc-a]\nrecords:\n");
    for &i in &order {
        yaml.push_str(&format!("  - {{ name: n-{i}, type: A, value: 10.0.{}.{} }}\n", i / 256, i % 256));
    }
    yaml.push_str("  - { name: n-0, type: TXT, value: again }\n");
    std::fs::write(dir.join("zones/order.yaml"), yaml).unwrap();
    let pz = start(&dir, "");
    let (_, recs, text) = axfr(pz.addrs[0], Some(("ka", SECRET_A)), "order.internal.");
    let mut owners: Vec<&str> = recs.iter().filter(|r| r.starts_with("n-")).map(|r| r.split(' ').next().unwrap()).collect();
    owners.dedup();
    let want: Vec<String> = order.iter().map(|i| format!("n-{i}.order.internal.")).collect();
    assert_eq!(owners, want, "{}", &text[..text.len().min(2000)]);
}

#[test]
fn serials_stay_across_restarts_and_grow_with_changes() {
    if tool("kdig").is_none() {
        return;
    }
    let dir = zones("serial");
    let soa_serial = |pz: &TestServer| {
        let (_, recs, text) = kdig(pz.addrs[0], &["-y", &format!("hmac-sha256:ka:{SECRET_A}"), "SOA", "a.internal."]);
        let soa = recs.iter().find(|r| r.contains(" SOA ")).unwrap_or_else(|| panic!("{text}"));
        soa.split(' ').nth(4).unwrap().parse::<u32>().unwrap()
    };
    let mut pz = start(&dir, "");
    let first = soa_serial(&pz);
    pz.stop();
    std::thread::sleep(Duration::from_millis(1100));
    let pz = start(&dir, "");
    assert_eq!(soa_serial(&pz), first, "nothing changed: the same serial after a restart");
    let a = dir.join("zones/a.yaml");
    let text = std::fs::read_to_string(&a).unwrap();
    std::fs::write(&a, format!("{text}  - {{ name: new, type: A, value: 10.0.0.7 }}\n")).unwrap();
    let (status, _) = http(pz.admin.unwrap(), "POST", "/reload");
    assert_eq!(status, 200);
    let t = Instant::now();
    while soa_serial(&pz) == first {
        assert!(t.elapsed() < Duration::from_secs(5), "the serial did not grow");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(soa_serial(&pz) > first);
}

/// named.conf for BIND 9.18 as vpc-a's on-premises secondary: the view's
/// catalog (its member zones added as they come), recursion forwarded to
/// pzdns for everything else, asked from an address in vpc-a.
fn named_conf(dir: &Path, port: u16, pz: SocketAddr) -> PathBuf {
    let d = dir.display();
    let (ip, pzport) = (pz.ip(), pz.port());
    let conf = format!(
        r#"key "ka" {{
    algorithm hmac-sha256;
    secret "{SECRET_A}";
}};
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-query {{ any; }};
    allow-recursion {{ any; }};
    forward only;
    forwarders {{ {ip} port {pzport}; }};
    query-source address 127.1.0.77;
    transfer-source 127.1.0.77;
    notify no;
    dnssec-validation no;
    allow-new-zones yes;
    catalog-zones {{
        // BIND applies a catalog's changes at most this often (5 s by default).
        zone "vpc-a.catalog.test" default-primaries {{ {ip} port {pzport} key ka; }} min-update-interval 1;
    }};
}};
zone "vpc-a.catalog.test" {{
    type secondary;
    file "catalog.db";
    primaries {{ {ip} port {pzport} key ka; }};
}};
controls {{ }};
"#
    );
    let p = dir.join("named.conf");
    std::fs::write(&p, conf).unwrap();
    p
}

/// An answer as comparable across servers: rcode, and the answer
/// section's records sorted, TTLs left out.
fn comparable(m: &hickory_proto::op::Message) -> (String, Vec<String>) {
    let mut got = lines(&m.answers);
    got.sort();
    (m.metadata.response_code.to_string(), got)
}

/// Asks `server` from `from` with RD=`rd`, over UDP.
fn ask(server: SocketAddr, from: &str, name: &str, qtype: hickory_proto::rr::RecordType, rd: bool) -> hickory_proto::op::Message {
    let mut q = query(name, qtype, Some(1232));
    q.metadata.recursion_desired = rd;
    udp(server, from, &q)
}

/// Waits until BIND holds `name` itself (AA=1 on a query with RD=0).
fn wait_authoritative(bind: SocketAddr, name: &str, want: &str, limit: Duration) -> Duration {
    use hickory_proto::rr::RecordType;
    let t = Instant::now();
    loop {
        let r = ask(bind, "127.0.0.1", name, RecordType::A, false);
        if r.metadata.authoritative && lines(&r.answers).iter().any(|l| l.ends_with(want)) {
            return t.elapsed();
        }
        assert!(t.elapsed() < limit, "BIND does not hold {name} {want} after {limit:?}: {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bind_follows_the_views_catalog_and_answers_as_pzdns_does() {
    use crate::support::upstream::FakeUpstream;
    use hickory_proto::rr::RecordType;
    let Some(named) = tool("named") else { return };
    let dir = zones("bind");
    let up = FakeUpstream::start("127.0.0.1");
    let bind_port = free_udp_port("127.0.0.1");
    let bind: SocketAddr = format!("127.0.0.1:{bind_port}").parse().unwrap();
    let cfg = format!(
        "listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n{}",
        up.addr,
        transfers_yaml(&dir, &format!("  notify: [{bind}]\n"))
    );
    let mut pz = TestServer::start(&dir.join("zones"), &cfg);
    let bind_dir = scratch("xfr-named");
    let conf = named_conf(&bind_dir, bind_port, pz.addrs[0]);
    let _peer = Peer::start(Command::new(named).args(["-g", "-n", "1", "-c"]).arg(&conf), bind_dir, bind);
    let ep = "ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com.";
    wait_authoritative(bind, "www.a.internal.", "10.0.0.1", Duration::from_secs(20));
    wait_authoritative(bind, "www.shared.internal.", "10.9.0.1", Duration::from_secs(20));
    wait_authoritative(bind, ep, "192.168.1.1", Duration::from_secs(20));

    // Private names (BIND answers from its copies), names pzdns would
    // forward (BIND forwards them to pzdns), public names: the same answers.
    let private = [
        ("www.a.internal.", RecordType::A),
        ("x.app.a.internal.", RecordType::A),
        ("mail.a.internal.", RecordType::MX),
        ("txt.a.internal.", RecordType::TXT),
        ("alias.a.internal.", RecordType::A),
        ("nope.a.internal.", RecordType::A),
        ("www.a.internal.", RecordType::AAAA),
        ("www.shared.internal.", RecordType::A),
        (ep, RecordType::A),
        ("ep-1-cn-hangzhou-j.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com.", RecordType::A),
    ];
    let forwarded = [
        ("www.proxy.internal.", RecordType::A),
        ("missing.proxy.internal.", RecordType::A),
        ("www.b.internal.", RecordType::A),
        // (Not a public CNAME: BIND asks for its target, which the test authority lacks.)
        ("db.corp.example.", RecordType::A),
        ("nodata.public.example.", RecordType::A),
    ];
    let mut private_answers = Vec::new();
    for (name, qtype) in private.iter().chain(forwarded.iter()) {
        let from_pzdns = comparable(&ask(pz.addrs[0], "127.1.0.5", name, *qtype, true));
        let from_bind = comparable(&ask(bind, "127.0.0.1", name, *qtype, true));
        assert_eq!(from_bind, from_pzdns, "{name} {qtype}");
        if private.contains(&(*name, *qtype)) {
            private_answers.push((*name, *qtype, from_pzdns));
        }
    }
    // vpc-b's zone never reached this secondary.
    assert!(!ask(bind, "127.0.0.1", "www.b.internal.", RecordType::A, false).metadata.authoritative);

    // A record added on disk: NOTIFY brings it to BIND within 5 s.
    std::thread::sleep(Duration::from_millis(1100));
    let a = dir.join("zones/a.yaml");
    let text = std::fs::read_to_string(&a).unwrap();
    std::fs::write(&a, format!("{text}  - {{ name: new, type: A, value: 10.0.0.7 }}\n")).unwrap();
    // A zone added: the catalog lists it, and BIND adds it.
    std::fs::write(dir.join("zones/c.yaml"), "zone: c.internal\nvpcs: [vpc-a]\nrecords:\n  - { name: www, type: A, value: 10.4.0.1 }\n")
        .unwrap();
    assert_eq!(http(pz.admin.unwrap(), "POST", "/reload").0, 200);
    wait_authoritative(bind, "new.a.internal.", "10.0.0.7", Duration::from_secs(5));
    wait_authoritative(bind, "www.c.internal.", "10.4.0.1", Duration::from_secs(5));
    let m = http(pz.admin.unwrap(), "GET", "/metrics").1;
    assert!(metric(&m, "pzdns_notifies_total{vpc=\"vpc-a\",result=\"acknowledged\"}") >= 2.0, "{m}");
    // BIND asked for the change by IXFR, and got the differences.
    assert!(metric(&m, "pzdns_transfers_total{vpc=\"vpc-a\",zone=\"a.internal.\",kind=\"ixfr\",result=\"incremental\"}") >= 1.0, "{m}");

    // A zone removed: gone from the catalog, and from BIND (which forwards its names again).
    std::fs::remove_file(dir.join("zones/c.yaml")).unwrap();
    assert_eq!(http(pz.admin.unwrap(), "POST", "/reload").0, 200);
    let t = Instant::now();
    while ask(bind, "127.0.0.1", "www.c.internal.", RecordType::A, false).metadata.authoritative {
        assert!(t.elapsed() < Duration::from_secs(5), "BIND still holds c.internal");
        std::thread::sleep(Duration::from_millis(100));
    }

    // pzdns stopped: the private names still answer, as pzdns answered them.
    pz.stop();
    for (name, qtype, want) in private_answers {
        assert_eq!(comparable(&ask(bind, "127.0.0.1", name, qtype, true)), want, "{name} {qtype} with pzdns stopped");
    }
    let r = ask(bind, "127.0.0.1", "new.a.internal.", RecordType::A, true);
    assert_eq!(lines(&r.answers), ["new.a.internal. A 10.0.0.7"]);
}

/// Adds `new A 10.0.0.7` to a.internal and reloads pzdns.
fn add_record_and_reload(dir: &Path, pz: &TestServer) {
    // A new modification time, whatever the file system's granularity.
    std::thread::sleep(Duration::from_millis(1100));
    let a = dir.join("zones/a.yaml");
    let text = std::fs::read_to_string(&a).unwrap();
    std::fs::write(&a, format!("{text}  - {{ name: new, type: A, value: 10.0.0.7 }}\n")).unwrap();
    assert_eq!(http(pz.admin.unwrap(), "POST", "/reload").0, 200);
}

/// pzdns with `dir`'s zones and keys, NOTIFYing `secondary`.
fn start_notifying(dir: &Path, secondary: SocketAddr) -> TestServer {
    let cfg = format!(
        "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n{}",
        transfers_yaml(dir, &format!("  notify: [{secondary}]\n"))
    );
    TestServer::start(&dir.join("zones"), &cfg)
}

#[test]
fn nsd_as_a_plain_secondary_of_one_zone_follows_notify() {
    let Some(nsd) = tool("nsd") else { return };
    let dir = zones("nsd");
    let port = free_udp_port("127.0.0.1");
    let at: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let pz = start_notifying(&dir, at);
    let nd = scratch("xfr-nsd-peer");
    let d = nd.display();
    let pzaddr = pz.addrs[0];
    std::fs::write(
        nd.join("nsd.conf"),
        format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 1\n  verbosity: 2\nremote-control:\n  control-enable: no\nkey:\n  name: ka\n  algorithm: hmac-sha256\n  secret: \"{SECRET_A}\"\nzone:\n  name: a.internal\n  request-xfr: {ip}@{pzport} ka\n  allow-notify: {ip} ka\n",
            ip = pzaddr.ip(),
            pzport = pzaddr.port()
        ),
    )
    .unwrap();
    let _peer = Peer::start(Command::new(nsd).args(["-d", "-c"]).arg(nd.join("nsd.conf")), nd, at);
    wait_authoritative(at, "www.a.internal.", "10.0.0.1", Duration::from_secs(20));
    add_record_and_reload(&dir, &pz);
    wait_authoritative(at, "new.a.internal.", "10.0.0.7", Duration::from_secs(5));
    // Its signed answer to the NOTIFY was checked and counted.
    let m = http(pz.admin.unwrap(), "GET", "/metrics").1;
    assert!(metric(&m, "pzdns_notifies_total{vpc=\"vpc-a\",result=\"acknowledged\"}") >= 1.0, "{m}");
}

#[test]
fn knot_interprets_the_views_catalog() {
    let Some(knotd) = tool("knotd") else { return };
    let dir = zones("knot");
    let port = free_udp_port("127.0.0.1");
    let at: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let pz = start_notifying(&dir, at);
    let kd = scratch("xfr-knot-peer");
    let d = kd.display();
    let pzaddr = pz.addrs[0];
    std::fs::write(
        kd.join("knot.conf"),
        format!(
            r#"server:
    listen: 127.0.0.1@{port}
    rundir: "{d}"
log:
  - target: stderr
    any: info
database:
    storage: "{d}"
key:
  - id: ka
    algorithm: hmac-sha256
    secret: {SECRET_A}
remote:
  - id: pzdns
    address: {ip}@{pzport}
    key: ka
acl:
  - id: from_pzdns
    address: 127.0.0.0/8
    key: ka
    action: notify
template:
  - id: default
    storage: "{d}"
  - id: member
    storage: "{d}"
    master: pzdns
    acl: from_pzdns
zone:
  - domain: vpc-a.catalog.test
    master: pzdns
    acl: from_pzdns
    catalog-role: interpret
    catalog-template: member
"#,
            ip = pzaddr.ip(),
            pzport = pzaddr.port()
        ),
    )
    .unwrap();
    let _peer = Peer::start(Command::new(knotd).args(["-c"]).arg(kd.join("knot.conf")), kd, at);
    let ep = "ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com.";
    wait_authoritative(at, "www.a.internal.", "10.0.0.1", Duration::from_secs(20));
    wait_authoritative(at, "www.shared.internal.", "10.9.0.1", Duration::from_secs(20));
    wait_authoritative(at, ep, "192.168.1.1", Duration::from_secs(20));
    // Not the other view's zone, nor the one whose gaps pzdns forwards.
    for name in ["www.b.internal.", "www.proxy.internal."] {
        let r = ask(at, "127.0.0.1", name, hickory_proto::rr::RecordType::A, false);
        assert!(!r.metadata.authoritative && r.answers.is_empty(), "{name}: {r:?}");
    }
    add_record_and_reload(&dir, &pz);
    wait_authoritative(at, "new.a.internal.", "10.0.0.7", Duration::from_secs(5));
    // Its signed answer to the NOTIFY was checked and counted.
    let m = http(pz.admin.unwrap(), "GET", "/metrics").1;
    assert!(metric(&m, "pzdns_notifies_total{vpc=\"vpc-a\",result=\"acknowledged\"}") >= 1.0, "{m}");
}

#[test]
fn ixfr_sends_the_differences_from_a_version_it_keeps() {
    if tool("kdig").is_none() {
        return;
    }
    let dir = zones("ixfr");
    let pz = start(&dir, "");
    let at = pz.addrs[0];
    let y = format!("hmac-sha256:ka:{SECRET_A}");
    let serial = || {
        let (_, recs, text) = kdig(at, &["-y", &y, "SOA", "a.internal."]);
        let soa = recs.iter().find(|r| r.contains(" SOA ")).unwrap_or_else(|| panic!("{text}"));
        soa.split(' ').nth(4).unwrap().parse::<u32>().unwrap()
    };
    let first = serial();
    // One record added, one of www's two addresses removed.
    std::thread::sleep(Duration::from_millis(1100));
    let a = dir.join("zones/a.yaml");
    let text = std::fs::read_to_string(&a).unwrap().replace("value: [10.0.0.1, 10.0.0.2]", "value: [10.0.0.1]");
    std::fs::write(&a, format!("{text}  - {{ name: new, type: A, value: 10.0.0.7 }}\n")).unwrap();
    assert_eq!(http(pz.admin.unwrap(), "POST", "/reload").0, 200);
    let second = serial();
    assert!(second > first);
    let soa = |s: u32| format!("a.internal. SOA ns.pzdns.invalid. hostmaster.pzdns.invalid. {s} 3600 600 86400 60");

    // From the version before: the differences (RFC 1995 §4).
    let (st, recs, text) = kdig(at, &["-y", &y, &format!("IXFR={first}"), "a.internal."]);
    assert_eq!(
        recs,
        [soa(second), soa(first), "www.a.internal. A 10.0.0.2".into(), soa(second), "new.a.internal. A 10.0.0.7".into(), soa(second)],
        "{st}: {text}"
    );
    // From the version in force: one SOA.
    let (_, recs, text) = kdig(at, &["-y", &y, &format!("IXFR={second}"), "a.internal."]);
    assert_eq!(recs, [soa(second)], "{text}");
    // From a version it never had: the whole zone.
    let (_, recs, text) = kdig(at, &["-y", &y, &format!("IXFR={}", first - 1000), "a.internal."]);
    assert_eq!(recs.len(), 9, "SOA, NS, 6 records, SOA: {text}");
    let m = http(pz.admin.unwrap(), "GET", "/metrics").1;
    for (result, n) in [("incremental", 1.0), ("current", 1.0), ("full", 1.0)] {
        let sample = format!("pzdns_transfers_total{{vpc=\"vpc-a\",zone=\"a.internal.\",kind=\"ixfr\",result=\"{result}\"}}");
        assert_eq!(metric(&m, &sample), n, "{sample}: {m}");
    }
}

#[test]
fn a_secret_changed_on_disk_holds_from_the_next_reload() {
    if tool("kdig").is_none() {
        return;
    }
    let dir = zones("rekey");
    let pz = start(&dir, "");
    let at = pz.addrs[0];
    assert_eq!(owners(&axfr(at, Some(("kb", SECRET_B)), "b.internal.").1, "A"), ["www.b.internal."]);
    // The operator rotates kb's secret (here to vpc-a's, any other would do).
    std::fs::write(dir.join("keys/b.key"), format!("{SECRET_A}\n")).unwrap();
    assert_eq!(http(pz.admin.unwrap(), "POST", "/reload").0, 200);
    assert_status(axfr(at, Some(("kb", SECRET_B)), "b.internal."), "BADSIG");
    let (_, recs, text) = axfr(at, Some(("kb", SECRET_A)), "b.internal.");
    assert_eq!(owners(&recs, "A"), ["www.b.internal."], "{text}");
}

#[test]
fn a_request_out_of_time_gets_badtime_signed_with_the_servers_time() {
    use pzdns::config::transfers::{TsigAlgorithm, TsigKey, TsigSecret, base64_decode};
    use pzdns::transfer::tsig::{Signer, TsigRecord, error, now, verify_response};
    let dir = zones("badtime");
    let pz = start(&dir, "");
    let key = TsigKey {
        name: "ka.".parse().unwrap(),
        algorithm: TsigAlgorithm::HmacSha256,
        secret: TsigSecret(base64_decode(SECRET_A).unwrap().into()),
        secret_file: PathBuf::new(),
        vpc: pzdns::config::Located { value: "vpc-a".into(), path: PathBuf::new(), pos: pzdns::config::Pos::new(1, 1) },
        notify: Vec::new(),
    };
    // An SOA query signed an hour ago.
    let then = now() - 3600;
    let mut q = vec![0x51, 0x7e, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x01a\x08internal\x00\x00\x06\x00\x01");
    let mut signer = Signer::for_request(&key, 0x517e);
    signer.sign(&mut q, then, 0, &[]);
    let r = udp_raw(pz.addrs[0], "127.0.0.1".parse().unwrap(), &q).expect("an answer");
    assert_eq!(r[3] & 0x0f, 9, "NOTAUTH");
    let at = pzdns::dns::query::response_tsig(&r).unwrap().expect("a TSIG record");
    let t = TsigRecord::read(&r, at).unwrap();
    assert_eq!((t.error, t.time), (error::BADTIME, then), "signed at the request's time");
    let ours = t.other.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
    assert!(t.other.len() == 6 && ours.abs_diff(now()) < 60, "the server's time in Other Data: {:?}", t.other);
    assert!(verify_response(&key, &r, signer.last_mac(), then), "signed with the key over the request's MAC");
}

/// A zone with weighted or health-checked records (SPEC §10) is not
/// offered: a copy would answer every record of a set every time, where
/// pzdns answers by weight and health.
#[test]
fn a_zone_with_routed_records_is_not_offered() {
    if tool("kdig").is_none() {
        assert!(std::env::var_os("PZDNS_REQUIRE_TOOLS").is_none(), "kdig is required");
        return;
    }
    let d = zones("routed");
    std::fs::write(
        d.join("zones/routed.yaml"),
        "zone: routed.internal\nvpcs: [vpc-a]\nrecords:\n  - { name: api, type: A, value: 10.0.0.1, weight: 80 }\n  - { name: api, type: A, value: 10.0.0.2, weight: 20 }\n",
    )
    .unwrap();
    let srv = start(&d, "");
    let ka = Some(("ka", SECRET_A));
    let (_, records, text) = axfr(srv.addrs[0], ka, "a.internal.");
    assert!(records.len() > 2, "a zone without routing is offered: {text}");
    assert_status(axfr(srv.addrs[0], ka, "routed.internal."), "NOTAUTH");
    let (_, records, text) = axfr(srv.addrs[0], ka, "vpc-a.catalog.test.");
    assert!(records.iter().any(|r| r.contains("a.internal.")) && !records.iter().any(|r| r.contains("routed.internal.")), "{text}");
}
