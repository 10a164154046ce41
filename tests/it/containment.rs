//! Upstream data never overrides private data: a hostile upstream whose
//! answers lead into a private zone, and carry records for names nobody
//! asked, NS for private zones and glue. Every link of a chain is answered
//! in the asker's view; only the chain of the name asked is kept.

use std::path::{Path, PathBuf};

use hickory_proto::rr::RecordType;

use crate::support::upstream::FakeUpstream;
use crate::support::*;

/// vpc-a (127.1/16) sees hz.example and svc.hz.internal; vpc-b (127.2/16)
/// sees only hz.example.
fn zones(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-containment-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let w = |f: &str, t: &str| std::fs::write(d.join(f), t).unwrap();
    w("vpcs.yaml", "vpcs:\n  - { id: vpc-a, cidrs: [127.1.0.0/16] }\n  - { id: vpc-b, cidrs: [127.2.0.0/16] }\n");
    w(
        "hz.yaml",
        "zone: hz.example\nvpcs: [vpc-a, vpc-b]\nrecords:\n  - { name: x, type: CNAME, value: cnpriv.up.example }\n  - { name: y, type: CNAME, value: strayonly.up.example }\n",
    );
    w("svc.yaml", "zone: svc.hz.internal\nvpcs: [vpc-a]\nrecords:\n  - { name: www, type: A, value: [10.0.0.1, 10.0.0.2] }\n");
    d
}

fn server(zones: &Path, up: &FakeUpstream) -> TestServer {
    TestServer::start_default(zones, "vpc-a", &format!("upstreams: [{}]\n", up.addr))
}

fn addresses(m: &hickory_proto::op::Message) -> Vec<String> {
    m.answers.iter().filter(|r| r.record_type() == RecordType::A).map(|r| r.data.to_string()).collect()
}

#[test]
fn a_chain_into_a_private_zone_is_answered_from_local_data() {
    let up = FakeUpstream::start("127.0.0.1");
    let z = zones("chain");
    let srv = server(&z, &up);
    for (name, transport) in [("x.hz.example.", "udp"), ("x.hz.example.", "tcp"), ("cnpriv.up.example.", "udp")] {
        let q = query(name, RecordType::A, Some(1232));
        let r = if transport == "udp" { udp(srv.addrs[0], "127.1.0.5", &q) } else { tcp(srv.addrs[0], "127.1.0.5", &q) };
        let ctx = format!("{name} from vpc-a over {transport}: {:?}", lines(&r.answers));
        assert_eq!(addresses(&r), ["10.0.0.1", "10.0.0.2"], "{ctx}: the private zone's addresses, not the upstream's");
        assert!(lines(&r.answers).iter().any(|l| l.contains("CNAME") && l.contains("www.svc.hz.internal")), "{ctx}: the chain is kept");
        assert!(!r.metadata.authoritative, "{ctx}: part of it came from upstream: AA=0");
        assert!(r.authorities.is_empty() && r.additionals.iter().all(|a| a.record_type() == RecordType::OPT), "{ctx}: no NS, no glue");
    }
    // vpc-b does not see svc.hz.internal: for it the name is public data.
    let r = udp(srv.addrs[0], "127.2.0.5", &query("x.hz.example.", RecordType::A, None));
    assert_eq!(addresses(&r), ["6.6.6.6"], "vpc-b gets the public answer: {:?}", lines(&r.answers));
    assert!(!r.metadata.authoritative);
    drop(srv);
    let _ = std::fs::remove_dir_all(&z);
}

#[test]
fn records_nobody_asked_for_are_neither_served_nor_cached() {
    let up = FakeUpstream::start("127.0.0.1");
    let z = zones("stray");
    let srv = server(&z, &up);
    // The reply to cnpriv.up.example carried stray.up.example A 6.6.6.6.
    udp(srv.addrs[0], "127.2.0.5", &query("cnpriv.up.example.", RecordType::A, Some(1232)));
    let before = up.queries();
    let r = udp(srv.addrs[0], "127.2.0.5", &query("stray.up.example.", RecordType::A, None));
    assert_eq!(up.queries(), before + 1, "stray.up.example was asked upstream, not served from the cache");
    assert!(addresses(&r).is_empty(), "the upstream's real answer (NXDOMAIN), not the stray record: {:?}", lines(&r.answers));
    // An answer that holds only a record for another (private) name.
    let r = udp(srv.addrs[0], "127.1.0.5", &query("y.hz.example.", RecordType::A, None));
    assert!(addresses(&r).is_empty(), "nothing for a name not asked: {:?}", lines(&r.answers));
    let r = udp(srv.addrs[0], "127.1.0.5", &query("www.svc.hz.internal.", RecordType::A, None));
    assert_eq!(addresses(&r), ["10.0.0.1", "10.0.0.2"]);
    assert!(r.metadata.authoritative, "local data alone: AA=1");
    // With DO=1, no NS for the private zone and no glue either.
    let mut q = query("cnpriv.up.example.", RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().set_dnssec_ok(true);
    let r = udp(srv.addrs[0], "127.2.0.5", &q);
    assert!(r.authorities.is_empty(), "no NS relayed: {:?}", lines(&r.authorities));
    assert!(r.additionals.iter().all(|a| a.record_type() == RecordType::OPT), "no glue relayed: {:?}", lines(&r.additionals));
    drop(srv);
    let _ = std::fs::remove_dir_all(&z);
}
