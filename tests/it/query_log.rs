//! The query log (`query_log: true`): one line per query with what an
//! operator greps for (protocol, listener, id, flags, EDNS, size, source,
//! time), in text and in JSON; an answer with any upstream part is logged
//! (and counted) as upstream's.

use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::RecordType;

use crate::support::upstream::FakeUpstream;
use crate::support::*;

fn start(up: &FakeUpstream, format: &str) -> TestServer {
    TestServer::start(
        Path::new(RULES_ZONES),
        &format!(
            "listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\nquery_log: true\nlog_format: {format}\n",
            up.addr
        ),
    )
}

/// The query log line of the query with `id` (waits for it, bounded).
fn line_of(srv: &TestServer, id: u16) -> String {
    let t = Instant::now();
    loop {
        let log = srv.stderr();
        let hit =
            log.lines().find(|l| l.contains("pzdns::query") && (l.contains(&format!(" id={id} ")) || l.contains(&format!("\"id\":{id},"))));
        if let Some(l) = hit {
            return l.to_string();
        }
        assert!(t.elapsed() < Duration::from_secs(5), "no query log line for id {id}: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// RD and CD set, EDNS with a 1232-byte payload and DO.
fn dnssec_query(name: &str) -> Message {
    let mut q = query(name, RecordType::A, None);
    q.metadata.checking_disabled = true;
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.set_dnssec_ok(true);
    q.set_edns(e);
    q
}

#[test]
fn a_text_line_carries_every_field() {
    let up = FakeUpstream::start("127.0.0.1");
    let srv = start(&up, "text");
    let at = srv.addrs[0];
    let q = dnssec_query("www.example.test.");
    let raw = udp_raw(at, "127.1.0.5".parse().unwrap(), &q.to_vec().unwrap()).unwrap();
    let l = line_of(&srv, q.metadata.id);
    for field in [
        "vpc=\"vpc-a\"".to_string(),
        "client=127.1.0.5:".into(),
        "protocol=\"udp\"".into(),
        format!("listener={at} "),
        "flags=\"rd cd\"".into(),
        "edns=\"1232 do\"".into(),
        "name=www.example.test. ".into(),
        "qtype=A ".into(),
        "rcode=\"NOERROR\"".into(),
        "source=\"zone\"".into(),
        format!("size={} ", raw.len()),
        " us=".into(),
    ] {
        assert!(l.contains(&field), "`{field}` in {l}");
    }
    // Over TCP, without EDNS.
    let q = query("www.example.test.", RecordType::AAAA, None);
    let raw = tcp_raw(at, "127.1.0.6".parse().unwrap(), &q.to_vec().unwrap());
    let l = line_of(&srv, q.metadata.id);
    for field in ["protocol=\"tcp\"".to_string(), "flags=\"rd\"".into(), "edns=\"-\"".into(), format!("size={} ", raw.len())] {
        assert!(l.contains(&field), "`{field}` in {l}");
    }
}

#[test]
fn a_json_line_carries_every_field_and_a_cname_answered_upstream_is_upstream() {
    let up = FakeUpstream::start("127.0.0.1");
    let srv = start(&up, "json");
    let at = srv.addrs[0];
    let fields = |id: u16| {
        let l = line_of(&srv, id);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
        v["fields"].clone()
    };
    let q = dnssec_query("www.example.test.");
    let raw = udp_raw(at, "127.1.0.5".parse().unwrap(), &q.to_vec().unwrap()).unwrap();
    let f = fields(q.metadata.id);
    assert_eq!(f["protocol"], "udp", "{f}");
    assert_eq!(f["listener"], at.to_string());
    assert_eq!(f["id"], q.metadata.id);
    assert_eq!(f["flags"], "rd cd");
    assert_eq!(f["edns"], "1232 do");
    assert_eq!(f["size"], raw.len());
    assert_eq!(f["source"], "zone");
    assert!(f["us"].is_u64());

    // A private apex CNAME whose target is resolved upstream: the answer
    // depends on the upstream, and says so in the log and the metrics.
    let q = query("ecs.cn-hangzhou.aliyuncs.com.", RecordType::A, Some(1232));
    let r = udp(at, "127.1.0.5", &q);
    assert_eq!(r.answers.len(), 3, "the CNAME and the target's two addresses");
    let f = fields(q.metadata.id);
    assert_eq!(f["source"], "upstream", "{f}");
    assert_eq!(f["edns"], "1232");
    // Again: the target now comes from the cache.
    let q = query("ecs.cn-hangzhou.aliyuncs.com.", RecordType::A, Some(1232));
    udp(at, "127.1.0.5", &q);
    assert_eq!(fields(q.metadata.id)["source"], "cache");
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    assert_eq!(metric(&m, "pzdns_queries_total{vpc=\"vpc-a\",rcode=\"NOERROR\",source=\"upstream\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "pzdns_queries_total{vpc=\"vpc-a\",rcode=\"NOERROR\",source=\"cache\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "pzdns_queries_total{vpc=\"vpc-a\",rcode=\"NOERROR\",source=\"zone\"}"), 1.0, "only the all-local answer: {m}");
}
