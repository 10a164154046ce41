//! Forwarding (SPEC.md §3 rules 3–5, §5): the real binary with test
//! authorities on loopback as its upstreams.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::upstream::{Behavior, FakeUpstream};
use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const ZONES: &str = RULES_ZONES;
const A_VPC: &str = "127.1.0.5";
const B_VPC: &str = "127.2.0.5";
const C_VPC: &str = "127.130.0.5";

fn start(upstreams: &[&FakeUpstream], extra: &str) -> TestServer {
    let list: Vec<String> = upstreams.iter().map(|u| u.addr.to_string()).collect();
    TestServer::start_default(Path::new(ZONES), "vpc-b", &format!("upstreams: [{}]\n{extra}", list.join(", ")))
}

fn ask(s: &TestServer, from: &str, name: &str, qtype: RecordType) -> Message {
    udp(s.addrs[0], from, &query(name, qtype, Some(1232)))
}

#[test]
fn apex_cname_chain_is_completed_from_upstream() {
    let up = FakeUpstream::start("127.0.0.1");
    let s = start(&[&up], "");
    let r = ask(&s, A_VPC, "ecs.cn-hangzhou.aliyuncs.com.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    // Part of the answer came from upstream: AA=0 (only all-local answers are authoritative).
    assert!(!r.metadata.authoritative && r.metadata.recursion_available);
    assert_eq!(
        lines(&r.answers),
        [
            "ecs.cn-hangzhou.aliyuncs.com. CNAME popunify-vpc.cn-hangzhou.aliyuncs.com.",
            "popunify-vpc.cn-hangzhou.aliyuncs.com. A 100.100.2.148",
            "popunify-vpc.cn-hangzhou.aliyuncs.com. A 100.100.2.149"
        ]
    );
    // Only the target went upstream: the private CNAME never leaves pzdns.
    assert_eq!(up.queries(), 1);
    // A VPC the zone is not bound to gets the public answer for the name itself.
    let r = ask(&s, C_VPC, "ecs.cn-hangzhou.aliyuncs.com.", RecordType::A);
    assert!(!r.metadata.authoritative);
    assert_eq!(lines(&r.answers), ["ecs.cn-hangzhou.aliyuncs.com. A 47.1.1.1"]);
}

#[test]
fn outside_zones_cache_ttl_decrement_and_negative_caching() {
    let up = FakeUpstream::start("127.0.0.1");
    let s = start(&[&up], "");
    let r = ask(&s, A_VPC, "www.public.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(!r.metadata.authoritative && r.metadata.recursion_available);
    assert_eq!(lines(&r.answers), ["www.public.example. CNAME www2.public.example.", "www2.public.example. A 203.0.113.7"]);
    assert_eq!(r.answers[0].ttl, 60);
    assert_eq!(up.queries(), 1);
    std::thread::sleep(Duration::from_millis(2100));
    let r = ask(&s, B_VPC, "WWW.public.example.", RecordType::A);
    assert_eq!(up.queries(), 1, "second answer from the cache (any VPC, any case)");
    let ttl = r.answers[0].ttl;
    assert!((57..=58).contains(&ttl), "TTL decremented by the time spent in cache: {ttl}");

    // NXDOMAIN: relayed with the upstream SOA, cached for min(SOA TTL, MINIMUM).
    let r = ask(&s, A_VPC, "nx.public.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(!r.metadata.authoritative);
    assert_eq!(r.authorities.len(), 1);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    let before = up.queries();
    let r = ask(&s, A_VPC, "nx.public.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(up.queries(), before, "negative answer cached");
    // NODATA is cached as well.
    ask(&s, A_VPC, "nodata.public.example.", RecordType::AAAA);
    let before = up.queries();
    let r = ask(&s, A_VPC, "nodata.public.example.", RecordType::AAAA);
    assert_eq!((r.metadata.response_code, r.answers.len(), r.authorities.len()), (ResponseCode::NoError, 0, 1));
    assert_eq!(up.queries(), before);
}

#[test]
fn recursive_proxy_and_forward_zones() {
    let up = FakeUpstream::start("127.0.0.1");
    let corp = FakeUpstream::start("127.0.0.1");
    let s = start(&[&up], &format!("forward_zones:\n  - domain: corp.example\n    upstreams: [{}]\n    vpcs: [vpc-a]\n", corp.addr));
    // A missing name in a recursive_proxy zone: the public answer, no AA, no private SOA.
    let r = ask(&s, A_VPC, "missing.proxy.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(!r.metadata.authoritative);
    assert_eq!(lines(&r.answers), ["missing.proxy.test. A 198.51.100.1"]);
    // ...while the names it holds stay private and local.
    let r = ask(&s, A_VPC, "known.proxy.test.", RecordType::A);
    assert_eq!(lines(&r.answers), ["known.proxy.test. A 10.9.9.9"]);
    let up_before = up.queries();
    // Forward zone for vpc-a goes to its own upstream...
    let r = ask(&s, A_VPC, "db.corp.example.", RecordType::A);
    assert_eq!(lines(&r.answers), ["db.corp.example. A 10.99.0.1"]);
    assert_eq!(corp.queries(), 1);
    assert_eq!(up.queries(), up_before);
    // ...a local CNAME into it too...
    let r = ask(&s, A_VPC, "corp-link.example.test.", RecordType::A);
    assert_eq!(lines(&r.answers), ["corp-link.example.test. CNAME db.corp.example.", "db.corp.example. A 10.99.0.1"]);
    // ...but vpc-b, not in its `vpcs`, goes to the default upstreams.
    ask(&s, B_VPC, "db.corp.example.", RecordType::A);
    assert_eq!(corp.queries(), 1);
    assert_eq!(up.queries(), up_before + 1);
}

#[test]
fn unknown_clients_forward_gets_public_answers_only() {
    let up = FakeUpstream::start("127.0.0.1");
    let s = start(&[&up], "unknown_clients: forward\n");
    // 127.0.0.1 maps to no VPC: www.example.test is private, so it goes upstream (NXDOMAIN there).
    let r = ask(&s, "127.0.0.1", "www.example.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.answers.is_empty() && !r.metadata.authoritative && r.metadata.recursion_available);
    let r = ask(&s, "127.0.0.1", "ecs.cn-hangzhou.aliyuncs.com.", RecordType::A);
    assert_eq!(lines(&r.answers), ["ecs.cn-hangzhou.aliyuncs.com. A 47.1.1.1"]);
    // RD=0 would read what VPC clients put in the cache: refused.
    ask(&s, A_VPC, "www.public.example.", RecordType::A);
    let mut q = query("www.public.example.", RecordType::A, Some(1232));
    q.metadata.recursion_desired = false;
    let r = udp(s.addrs[0], "127.0.0.1", &q);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused, "no cache snooping from outside every VPC");
    assert!(r.answers.is_empty());
}

#[test]
fn rd_0_answers_from_local_data_and_cache_only() {
    let up = FakeUpstream::start("127.0.0.1");
    let s = start(&[&up], "");
    let norec = |name: &str| {
        let mut q = query(name, RecordType::A, Some(1232));
        q.metadata.recursion_desired = false;
        udp(s.addrs[0], A_VPC, &q)
    };
    let r = norec("www.public.example.");
    assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NoError, 0));
    assert_eq!(up.queries(), 0, "RD=0 never goes upstream");
    // The local part of a chain is still answered.
    let r = norec("ecs.cn-hangzhou.aliyuncs.com.");
    assert_eq!(lines(&r.answers), ["ecs.cn-hangzhou.aliyuncs.com. CNAME popunify-vpc.cn-hangzhou.aliyuncs.com."]);
    // Once cached, RD=0 gets it.
    ask(&s, A_VPC, "www.public.example.", RecordType::A);
    let r = norec("www.public.example.");
    assert_eq!(r.answers.len(), 2);
    assert_eq!(up.queries(), 1);
}

#[test]
fn failover_timeout_bound_and_serve_stale() {
    let dead = FakeUpstream::start("127.0.0.1");
    dead.set(Behavior::Silent);
    let good = FakeUpstream::start("127.0.0.1");
    // Failover: the first upstream never answers, the second does.
    let s = start(&[&dead, &good], "");
    let t = Instant::now();
    let r = ask(&s, A_VPC, "www.public.example.", RecordType::A);
    assert_eq!(r.answers.len(), 2, "answered by the second upstream");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!((dead.queries(), good.queries()), (1, 1));
    drop(s);

    // Only a dead upstream: SERVFAIL within 3 s.
    let s = start(&[&dead], "");
    let t = Instant::now();
    let r = ask(&s, A_VPC, "nothing.public.example.", RecordType::A);
    let took = t.elapsed();
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(took < Duration::from_millis(3000), "SERVFAIL after {took:?}");
    drop(s);

    // Serve-stale: cached with TTL 1, then the upstream dies.
    good.ttl.store(1, std::sync::atomic::Ordering::Relaxed);
    let s = start(&[&good], "cache:\n  serve_stale: 1h\n");
    let r = ask(&s, A_VPC, "stale.public.example.", RecordType::A);
    assert_eq!(r.answers[0].ttl, 1);
    good.set(Behavior::Silent);
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    let r = ask(&s, A_VPC, "stale.public.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "stale answer instead of SERVFAIL");
    assert_eq!(lines(&r.answers), ["stale.public.example. A 192.0.2.53"]);
    assert_eq!(r.answers[0].ttl, 30, "RFC 8767 stale TTL");
    assert!(t.elapsed() < Duration::from_secs(3));
    drop(s);

    // serve_stale: 0 turns it off.
    good.set(Behavior::Answer);
    let s = start(&[&good], "cache:\n  serve_stale: 0\n");
    ask(&s, A_VPC, "stale.public.example.", RecordType::A);
    good.set(Behavior::Silent);
    std::thread::sleep(Duration::from_millis(1500));
    let r = ask(&s, A_VPC, "stale.public.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn upstream_servfail_fails_over_and_is_cached_briefly() {
    let bad = FakeUpstream::start("127.0.0.1");
    bad.set(Behavior::ServFail);
    let good = FakeUpstream::start("127.0.0.1");
    let s = start(&[&bad, &good], "");
    let r = ask(&s, A_VPC, "www.public.example.", RecordType::A);
    assert_eq!(r.answers.len(), 2);
    assert_eq!((bad.queries(), good.queries()), (1, 1));
    drop(s);
    let s = start(&[&bad], "");
    for _ in 0..2 {
        let r = ask(&s, A_VPC, "www.public.example.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    }
    // Two attempts for the first question; the second is answered from the
    // failure cached for the name (RFC 9520, 5 s).
    assert_eq!(bad.queries(), 3, "a SERVFAIL is cached for the name");
}

#[test]
fn spoofed_replies_are_ignored() {
    let up = FakeUpstream::start("127.0.0.1");
    up.set(Behavior::SpoofFirst);
    let s = start(&[&up], "");
    let r = ask(&s, A_VPC, "spoof.public.example.", RecordType::A);
    // A wrong id, a wrong question, garbage and a reply from another source came first: all ignored.
    assert_eq!(lines(&r.answers), ["spoof.public.example. A 192.0.2.53"]);
    assert_eq!(up.queries(), 1);
}

#[test]
fn truncated_upstream_reply_is_retried_over_tcp() {
    let up = FakeUpstream::start("127.0.0.1");
    let s = start(&[&up], "");
    // 20 TXT records (~1.5 KB) exceed 1232: the upstream truncates over UDP.
    let r = tcp(s.addrs[0], A_VPC, &query("big.public.example.", RecordType::TXT, None));
    assert_eq!(r.answers.len(), 20);
    assert_eq!(up.tcp_queries.load(std::sync::atomic::Ordering::Relaxed), 1);
    // The client on UDP gets TC and retries over TCP itself, from the cache.
    let raw =
        udp_raw(s.addrs[0], A_VPC.parse().unwrap(), &query("big.public.example.", RecordType::TXT, Some(1232)).to_vec().unwrap()).unwrap();
    assert!(Message::from_vec(&raw).unwrap().metadata.truncation);
    assert_eq!(up.queries(), 2, "the cached answer served the second question");
}

#[test]
fn identical_questions_in_flight_are_coalesced() {
    let up = FakeUpstream::start("127.0.0.1");
    up.set(Behavior::DelayMs(400));
    let s = start(&[&up], "");
    let addr = s.addrs[0];
    let threads: Vec<_> =
        (0..16).map(|_| std::thread::spawn(move || udp(addr, A_VPC, &query("slow.public.example.", RecordType::A, None)))).collect();
    for t in threads {
        assert_eq!(t.join().unwrap().answers.len(), 1);
    }
    assert_eq!(up.queries(), 1, "16 clients, one upstream query");
}

/// A real authority no one here wrote: NSD serving the public side of the
/// apex-CNAME case. .ci/run installs nsd and sets PZDNS_REQUIRE_TOOLS=1.
#[test]
fn nsd_as_the_public_authority() {
    let Some(nsd) = which("nsd") else {
        assert!(std::env::var_os("PZDNS_REQUIRE_TOOLS").is_none(), "nsd is required (apt-get install nsd)");
        eprintln!("skipped: nsd not installed");
        return;
    };
    let dir = std::env::temp_dir().join(format!("pzdns-nsd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    std::fs::write(
        dir.join("aliyuncs.zone"),
        "$ORIGIN cn-hangzhou.aliyuncs.com.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 127.0.0.1\npopunify-vpc IN A 100.100.80.1\npopunify-vpc IN A 100.100.80.2\n",
    )
    .unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("nsd.conf"),
        format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 1\n  verbosity: 1\nremote-control:\n  control-enable: no\nzone:\n  name: cn-hangzhou.aliyuncs.com\n  zonefile: aliyuncs.zone\n"
        ),
    )
    .unwrap();
    let mut child =
        std::process::Command::new(nsd).args(["-d", "-c"]).arg(dir.join("nsd.conf")).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Wait until NSD answers.
    let probe = query("popunify-vpc.cn-hangzhou.aliyuncs.com.", RecordType::A, None).to_vec().unwrap();
    let up: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while udp_raw_timeout(up, &probe).is_none() {
        assert!(Instant::now() < deadline, "nsd did not start: {}", std::fs::read_to_string(dir.join("nsd.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = TestServer::start_default(Path::new(ZONES), "vpc-b", &format!("upstreams: [{up}]\n"));
    let r = ask(&s, A_VPC, "ecs.cn-hangzhou.aliyuncs.com.", RecordType::A);
    // Minimal responses: NSD sends its NS and their address with a
    // positive answer; pzdns relays them only to a DO=1 query (a
    // validator may need what the authority sent), never otherwise, and
    // the same from its cache.
    let from_nsd = Message::from_vec(&udp_raw_timeout(up, &probe).unwrap()).unwrap();
    let with_do = {
        let mut q = query("popunify-vpc.cn-hangzhou.aliyuncs.com.", RecordType::A, Some(1232));
        q.edns.as_mut().unwrap().set_dnssec_ok(true);
        udp(s.addrs[0], A_VPC, &q)
    };
    let plain = ask(&s, A_VPC, "popunify-vpc.cn-hangzhou.aliyuncs.com.", RecordType::A);
    let cached = ask(&s, A_VPC, "popunify-vpc.cn-hangzhou.aliyuncs.com.", RecordType::A);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        lines(&r.answers),
        [
            "ecs.cn-hangzhou.aliyuncs.com. CNAME popunify-vpc.cn-hangzhou.aliyuncs.com.",
            "popunify-vpc.cn-hangzhou.aliyuncs.com. A 100.100.80.1",
            "popunify-vpc.cn-hangzhou.aliyuncs.com. A 100.100.80.2"
        ]
    );
    assert!(!from_nsd.authorities.is_empty() && !from_nsd.additionals.is_empty(), "NSD sends NS and glue: {from_nsd:?}");
    // Only the chain of the name asked is kept, DO=1 or not: NSD's NS and
    // glue answer nothing that was asked (its zone is unsigned: no RRSIGs).
    assert!(with_do.authorities.is_empty() && with_do.additionals.is_empty(), "contained: {with_do:?}");
    for r in [&plain, &cached] {
        assert_eq!(r.answers.len(), 2);
        assert!(r.authorities.is_empty() && r.additionals.is_empty(), "minimal response: {r:?}");
    }
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.local_addr().unwrap().port()
}

fn udp_raw_timeout(server: std::net::SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    sock.send_to(bytes, server).ok()?;
    let mut buf = [0u8; 1500];
    sock.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
}
