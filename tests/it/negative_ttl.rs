//! Negative answers (RFC 2308 §5): the SOA in the authority section carries
//! the negative TTL, min(SOA TTL, SOA MINIMUM), and counts down from that
//! value, never from the SOA's own TTL (issue 13).

use std::path::PathBuf;

use crate::support::upstream::FakeUpstream;
use crate::support::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-negttl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("vpcs.yaml"), "vpcs:\n  - id: vpc-a\n    cidrs: [127.1.0.0/16]\n").unwrap();
    d
}

fn soa_ttl(r: &hickory_proto::op::Message) -> (u32, u32) {
    let soa = r.authorities.iter().find(|a| a.record_type() == RecordType::SOA).expect("an SOA in authority");
    match &soa.data {
        RData::SOA(s) => (soa.ttl, s.minimum),
        _ => unreachable!(),
    }
}

#[test]
fn local_negative_answers_carry_min_of_soa_ttl_and_minimum() {
    let d = scratch("local");
    // YAML SOA: TTL 3600, MINIMUM 30 -> 30.
    std::fs::write(
        d.join("y.yaml"),
        "zone: y.test\nvpcs: [vpc-a]\nrecords:\n  - { name: \"@\", type: SOA, value: ns.y.test hm.y.test 1 3600 600 86400 30, ttl: 3600 }\n  - { name: www, type: A, value: 10.0.0.1 }\n",
    )
    .unwrap();
    // Master file: $TTL 60, MINIMUM 300 -> 60.
    std::fs::write(d.join("m.yaml"), "zone: m.test\nvpcs: [vpc-a]\nmaster_file: m.zone\n").unwrap();
    std::fs::write(d.join("m.zone"), "$TTL 60\n@ SOA ns hm 1 3600 600 86400 300\n@ NS ns.example.net.\nwww A 10.0.0.1\n").unwrap();
    // No SOA given: synthesised with the zone TTL.
    std::fs::write(d.join("s.yaml"), "zone: s.test\nvpcs: [vpc-a]\nttl: 45\nrecords:\n  - { name: www, type: A, value: 10.0.0.1 }\n")
        .unwrap();
    let s = TestServer::start_default(&d, "vpc-a", "");
    let ask = |name: &str, t: RecordType| udp(s.addrs[1], "127.0.0.1", &query(name, t, None));
    for (zone, neg, own) in [("y.test.", 30, 3600), ("m.test.", 60, 60), ("s.test.", 45, 45)] {
        let r = ask(&format!("nope.{zone}"), RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(soa_ttl(&r).0, neg, "NXDOMAIN in {zone}");
        let r = ask(&format!("www.{zone}"), RecordType::TXT);
        assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NoError, 0));
        assert_eq!(soa_ttl(&r).0, neg, "NODATA in {zone}");
        // Asked for itself, the SOA keeps its own TTL.
        let r = ask(zone, RecordType::SOA);
        assert_eq!(r.answers[0].ttl, own, "SOA of {zone}");
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&d);
}

/// The fake public authority answers NXDOMAIN with an SOA of TTL 3600 and
/// MINIMUM 30: relayed (and from the cache) the SOA must say at most 30.
#[test]
fn forwarded_negative_answers_count_down_from_the_negative_ttl() {
    let up = FakeUpstream::start("127.0.0.1");
    let d = scratch("upstream");
    let s = TestServer::start_default(&d, "vpc-a", &format!("upstreams: [{}]\n", up.addr));
    for _ in 0..2 {
        let r = udp(s.addrs[1], "127.0.0.1", &query("nothing.public.example.", RecordType::A, None));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        let (ttl, minimum) = soa_ttl(&r);
        assert!(ttl <= minimum, "SOA TTL {ttl} must count from min(3600, {minimum})");
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&d);
}
