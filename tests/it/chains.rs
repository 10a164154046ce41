//! Every link of a chain is answered in the asker's view, however the
//! upstream's own chain ends: a public CNAME that leads into a zone the
//! asker sees is answered from that zone whether the upstream went on
//! with records, said NODATA or NXDOMAIN for the target, or (an
//! authoritative upstream) stopped at the CNAME.
//!
//! Two tests: real NSD as the public authority for the shapes seen in the
//! field, and a property test against an oracle with a random upstream
//! whose chains also end negatively.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use pzdns::upstream::cache::{Cache, Entry};

use crate::support::*;

/// vpc-a (127.1/16) sees svc.hz.internal; vpc-b (127.2/16) sees nothing.
fn zones(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-chains-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("zones")).unwrap();
    let w = |f: &str, t: &str| std::fs::write(d.join("zones").join(f), t).unwrap();
    w("vpcs.yaml", "vpcs:\n  - { id: vpc-a, cidrs: [127.1.0.0/16] }\n  - { id: vpc-b, cidrs: [127.2.0.0/16] }\n");
    w(
        "svc.yaml",
        "zone: svc.hz.internal\nvpcs: [vpc-a]\nrecords:\n  - { name: mail, type: A, value: 10.0.0.25 }\n  - { name: txt, type: TXT, value: private }\n  - { name: out, type: CNAME, value: p3.pub.example. }\n",
    );
    d
}

/// NSD serving `example.` (the CNAMEs) and its own `svc.hz.internal`
/// (no `mail`; `nodata` with a TXT only), on a free loopback port.
struct Nsd {
    child: std::process::Child,
    dir: PathBuf,
    addr: std::net::SocketAddr,
}

impl Nsd {
    fn start(tag: &str, zones: &[(&str, &str)]) -> Option<Nsd> {
        let nsd = tool("nsd")?;
        let dir = std::env::temp_dir().join(format!("pzdns-chains-nsd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_tcp_port();
        let d = dir.display();
        let mut conf = format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 1\n  verbosity: 1\nremote-control:\n  control-enable: no\n"
        );
        for (i, (name, text)) in zones.iter().enumerate() {
            std::fs::write(dir.join(format!("z{i}.zone")), text).unwrap();
            conf.push_str(&format!("zone:\n  name: {name}\n  zonefile: z{i}.zone\n"));
        }
        std::fs::write(dir.join("nsd.conf"), conf).unwrap();
        let child = std::process::Command::new(nsd)
            .args(["-d", "-c"])
            .arg(dir.join("nsd.conf"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let nsd = Nsd { child, dir, addr };
        let probe = query(&format!("{}.", zones[0].0), RecordType::SOA, None).to_vec().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while udp_raw(addr, "127.0.0.1".parse().unwrap(), &probe).is_none() {
            assert!(
                Instant::now() < deadline,
                "nsd did not start: {}",
                std::fs::read_to_string(nsd.dir.join("nsd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(nsd)
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What NSD's `example.` holds: CNAMEs into svc.hz.internal, which NSD
/// also serves (its own public copy, without `mail`) — or, for the
/// authoritative-only case, a CNAME to a zone NSD does not serve.
const EXAMPLE_ZONE: &str = "$ORIGIN example.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.1\ntomail CNAME mail.svc.hz.internal.\ntotxt CNAME txt.svc.hz.internal.\ntonodata CNAME nodata.svc.hz.internal.\n";
const NSD_SVC_ZONE: &str = "$ORIGIN svc.hz.internal.\n$TTL 300\n@ SOA ns.example. hostmaster.example. 1 3600 600 86400 60\n@ NS ns.example.\nnodata TXT \"public\"\n";
/// An authority for `example2.` only: its CNAME into svc.hz.internal
/// comes back alone, NOERROR.
const EXAMPLE2_ZONE: &str =
    "$ORIGIN example2.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.1\ntomail CNAME mail.svc.hz.internal.\n";

#[test]
fn a_public_chain_that_ends_negative_still_reaches_the_private_zone() {
    let Some(nsd) = Nsd::start("public", &[("example", EXAMPLE_ZONE), ("svc.hz.internal", NSD_SVC_ZONE)]) else { return };
    let Some(nsd2) = Nsd::start("edge", &[("example2", EXAMPLE2_ZONE)]) else { return };
    // What NSD itself answers: the shapes under test.
    let raw = |name: &str| {
        Message::from_vec(&udp_raw(nsd.addr, "127.0.0.1".parse().unwrap(), &query(name, RecordType::A, None).to_vec().unwrap()).unwrap())
            .unwrap()
    };
    assert_eq!(raw("tomail.example.").metadata.response_code, ResponseCode::NXDomain, "NSD: the chain ends in NXDOMAIN");
    let nodata = raw("tonodata.example.");
    assert!(nodata.metadata.response_code == ResponseCode::NoError && nodata.answers.len() == 1, "NSD: CNAME then NODATA: {nodata:?}");
    let raw2 = |name: &str| {
        Message::from_vec(&udp_raw(nsd2.addr, "127.0.0.1".parse().unwrap(), &query(name, RecordType::A, None).to_vec().unwrap()).unwrap())
            .unwrap()
    };
    let alone = raw2("tomail.example2.");
    assert!(alone.metadata.response_code == ResponseCode::NoError && alone.answers.len() == 1, "NSD: the CNAME alone: {alone:?}");

    let d = zones("nsd");
    let srv = TestServer::start_default(
        &d.join("zones"),
        "vpc-a",
        &format!("upstreams: [{}]\nforward_zones:\n  - {{ domain: example2, upstreams: [{}] }}\n", nsd.addr, nsd2.addr),
    );
    // From vpc-a, which sees svc.hz.internal: the private records, every shape, twice (the second from the cache).
    for name in ["tomail.example.", "tomail.example2.", "tonodata.example."] {
        for round in 0..2 {
            let r = udp(srv.addrs[0], "127.1.0.5", &query(name, RecordType::A, Some(1232)));
            let ctx = format!("{name} A from vpc-a (round {round}): {:?} {:?}", r.metadata.response_code, lines(&r.answers));
            let (target, a) = if name.starts_with("tonodata") { ("nodata", None) } else { ("mail", Some("10.0.0.25")) };
            let cname = format!("{name} CNAME {target}.svc.hz.internal.");
            assert_eq!(lines(&r.answers).first(), Some(&cname), "{ctx}");
            match a {
                Some(a) => {
                    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{ctx}");
                    assert_eq!(lines(&r.answers)[1..], [format!("mail.svc.hz.internal. A {a}")], "{ctx}");
                    assert!(r.authorities.is_empty(), "{ctx}: no upstream SOA: {:?}", r.authorities);
                }
                // nodata.svc.hz.internal does not exist in the private zone: its NXDOMAIN, its SOA.
                None => {
                    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{ctx}");
                    assert_eq!(r.answers.len(), 1, "{ctx}");
                    let soa = r.authorities.iter().find(|a| a.record_type() == RecordType::SOA).expect("the private SOA");
                    assert_eq!(soa.name.to_string(), "svc.hz.internal.", "{ctx}");
                    assert!(
                        soa.data.to_string().starts_with("ns1.svc.hz.internal.") || !soa.data.to_string().contains("example."),
                        "{ctx}: the private zone's SOA, not NSD's: {soa}"
                    );
                }
            }
            assert!(!r.metadata.authoritative, "{ctx}: AA=0, part of it is upstream data");
        }
    }
    // TXT at the private name through the same public CNAME: answered from the zone.
    let r = udp(srv.addrs[0], "127.1.0.5", &query("totxt.example.", RecordType::TXT, None));
    assert_eq!(lines(&r.answers), ["totxt.example. CNAME txt.svc.hz.internal.", "txt.svc.hz.internal. TXT private"]);
    // vpc-b does not see the private zone: NSD's answer, as NSD gave it.
    let r = udp(srv.addrs[0], "127.2.0.5", &query("tomail.example.", RecordType::A, None));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "vpc-b: {:?}", lines(&r.answers));
    drop(srv);
    let _ = std::fs::remove_dir_all(&d);
}

/// The random upstream's names: public ones (`pN.pub.example.`) and
/// names inside svc.hz.internal (the private zone of vpc-a), some of
/// which the private zone holds and some it does not.
const PUBLIC: usize = 6;
const PRIVATE: &[&str] = &["mail", "txt", "out", "gone"];

fn pool(i: usize) -> Name {
    if i < PUBLIC {
        Name::from_str(&format!("p{i}.pub.example.")).unwrap()
    } else {
        Name::from_str(&format!("{}.svc.hz.internal.", PRIVATE[(i - PUBLIC) % PRIVATE.len()])).unwrap()
    }
}

/// What the upstream holds for a name of the pool.
#[derive(Debug, Clone, Copy)]
enum Up {
    Cname(usize),
    A(u8),
    NoData,
    NxDomain,
}

fn up_strategy() -> impl Strategy<Value = Up> {
    prop_oneof![(0..PUBLIC + PRIVATE.len()).prop_map(Up::Cname), any::<u8>().prop_map(Up::A), Just(Up::NoData), Just(Up::NxDomain),]
}

/// The upstream's reply for `q`: its chain from `q` (at most `max_links`
/// CNAMEs, then it stops, as an authority does at the edge of its data),
/// the final records, the rcode of the last link and an SOA when negative.
fn upstream_reply(data: &[Up], q: &Name, max_links: usize) -> (ResponseCode, Vec<Record>, Vec<Record>) {
    let index = |n: &Name| (0..data.len()).find(|&i| pool(i) == *n);
    let soa = || {
        Record::from_rdata(
            Name::from_str("pub.example.").unwrap(),
            60,
            RData::SOA(SOA::new(Name::from_str("ns.pub.example.").unwrap(), Name::from_str("h.pub.example.").unwrap(), 1, 60, 60, 60, 30)),
        )
    };
    let mut at = q.clone();
    let mut answers = Vec::new();
    for _ in 0..=max_links {
        match index(&at).map(|i| data[i]) {
            Some(Up::Cname(t)) if answers.len() < max_links => {
                let to = pool(t);
                answers.push(Record::from_rdata(at.clone(), 7, RData::CNAME(CNAME(to.clone()))));
                at = to;
            }
            Some(Up::Cname(_)) => return (ResponseCode::NoError, answers, vec![]),
            Some(Up::A(x)) => {
                answers.push(Record::from_rdata(at, 7, RData::A(A::new(6, 6, 6, x))));
                return (ResponseCode::NoError, answers, vec![]);
            }
            Some(Up::NoData) => return (ResponseCode::NoError, answers, vec![soa()]),
            Some(Up::NxDomain) | None => return (ResponseCode::NXDomain, answers, vec![soa()]),
        }
    }
    (ResponseCode::NoError, answers, vec![])
}

/// The oracle: the answer vpc-a must get for `q` A, link by link — a name
/// in svc.hz.internal from the zone (mail → A, txt → NODATA, out →
/// CNAME to p3, gone → NXDOMAIN), any other from the upstream's reply for
/// the name where the chain left local data. `None`: too many links or
/// parts (SERVFAIL by the limits; not judged here).
fn oracle(data: &[Up], q: &Name, max_links: usize) -> Option<(ResponseCode, Vec<String>)> {
    let mut lines = Vec::new();
    let mut at = q.clone();
    let mut reply: Option<(ResponseCode, Vec<Record>)> = None;
    let mut parts = 0;
    for _ in 0..24 {
        let label = at.to_string();
        if label.ends_with(".svc.hz.internal.") {
            reply = None;
            match &label[..label.find('.').unwrap()] {
                "mail" => {
                    lines.push(format!("{at} A 10.0.0.25"));
                    return Some((ResponseCode::NoError, lines));
                }
                "txt" => return Some((ResponseCode::NoError, lines)),
                "out" => {
                    lines.push(format!("{at} CNAME p3.pub.example."));
                    at = pool(3);
                    continue;
                }
                _ => return Some((ResponseCode::NXDomain, lines)),
            }
        }
        // A public name: the upstream's reply for it, unless the reply in
        // hand (for an earlier name of this part) covers it already.
        let (rcode, recs) = match &reply {
            Some((rc, recs)) if recs.iter().any(|r| r.name == at) => (*rc, recs.clone()),
            Some(_) => return None,
            None => {
                parts += 1;
                let (rc, ans, _) = upstream_reply(data, &at, max_links);
                reply = Some((rc, ans.clone()));
                (rc, ans)
            }
        };
        let Some(r) = recs.iter().find(|r| r.name == at) else {
            // The reply ends before this name: its rcode is the last link's.
            return Some((rcode, lines));
        };
        lines.push(format!("{} {} {}", r.name, r.record_type(), r.data));
        match &r.data {
            RData::CNAME(c) => {
                let next = c.0.clone();
                if !recs.iter().any(|r| r.name == next) && !next.to_string().ends_with(".svc.hz.internal.") {
                    // The upstream stopped at this CNAME.
                    return Some((rcode, lines));
                }
                at = next;
            }
            _ => return Some((rcode, lines)),
        }
        if lines.len() > 8 || parts > 3 {
            return None;
        }
    }
    None
}

#[test]
fn every_link_is_answered_in_the_askers_view_whatever_the_upstream_said() {
    let d = zones("prop");
    std::fs::write(d.join("pzdns.yaml"), "upstreams: [127.0.0.1:1]\nzones_dir: zones\n").unwrap();
    let cfg = pzdns::config::ServerConfig::load_file(&d.join("pzdns.yaml")).unwrap();
    let snap = Arc::new(pzdns::loader::load(&cfg, 1).unwrap_or_else(|e| panic!("{e}")));
    let metrics = pzdns::metrics::Metrics::new();
    let strategy = (prop::collection::vec(up_strategy(), PUBLIC + PRIVATE.len()), 0..PUBLIC, 1..4usize);
    let mut runner = TestRunner::new(Config { cases: 2000, failure_persistence: None, ..Config::default() });
    let judged = std::sync::atomic::AtomicUsize::new(0);
    let negative_into_private = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&strategy, |(data, q, max_links)| {
        let qname = pool(q);
        let Some((want_rc, want)) = oracle(&data, &qname, max_links) else { return Ok(()) };
        let (rc0, ans0, _) = upstream_reply(&data, &qname, max_links);
        let negative_end = rc0 != ResponseCode::NoError || ans0.last().is_none_or(|r| r.record_type() == RecordType::CNAME);
        if negative_end && ans0.iter().any(|r| matches!(&r.data, RData::CNAME(c) if c.0.to_string().ends_with(".svc.hz.internal."))) {
            negative_into_private.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let cache = Cache::new(1000);
        let bytes = query(&qname.to_string(), RecordType::A, None).to_vec().unwrap();
        let reply = |name: &Name| {
            let (rc, ans, auth) = upstream_reply(&data, name, max_links);
            // Not cacheable (a self-loop contained away): this harness
            // hands answers over through the cache, so not judged here.
            Some(Entry::from_reply(name, RecordType::A, rc, ans, auth, false, Duration::ZERO)).filter(|e| e.ttl > 0)
        };
        let resp = match answer_through_cache(&snap, &cache, &metrics, "127.1.9.9:5300".parse().unwrap(), &bytes, reply) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("{qname}: {e}"))),
        };
        let m = Message::from_vec(&resp).unwrap();
        if m.metadata.response_code == ResponseCode::ServFail {
            // The limits (links, parts) may end a long chain; not judged.
            return Ok(());
        }
        judged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let got = lines(&m.answers);
        prop_assert_eq!(&got, &want, "{} A from vpc-a; upstream data {:?} (chains cut after {} links)", qname, data, max_links);
        prop_assert_eq!(m.metadata.response_code, want_rc, "{} rcode; got {:?}; upstream data {:?}", qname, got, data);
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&d);
    if let Err(e) = result {
        panic!("{e}");
    }
    let (j, n) = (judged.into_inner(), negative_into_private.into_inner());
    eprintln!("{j} answers judged, {n} of them through an upstream chain that ends negative or at a CNAME into the private zone");
    assert!(j > 1000 && n > 100, "not vacuous: {j} judged, {n} negative-end chains into private data");
}
