//! Failure is per name, health is per upstream: an upstream that answers
//! SERVFAIL (or a referral) for some names is still up for every other
//! name, and the failed name is cached briefly (RFC 9520); a reply too big
//! for the UDP buffer goes to TCP at once, not counted as a failure.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::upstream::{Behavior, FakeUpstream};
use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const ZONES: &str = RULES_ZONES;
const A_VPC: &str = "127.1.0.5";

/// A server forwarding to `up`, with the admin port (for metrics).
fn server(up: &FakeUpstream, extra: &str) -> TestServer {
    let cfg = format!(
        "listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n{extra}",
        up.addr
    );
    TestServer::start(Path::new(ZONES), &cfg)
}

fn ask(s: &TestServer, name: &str) -> Message {
    udp(s.addrs[0], A_VPC, &query(name, RecordType::A, Some(1232)))
}

#[test]
fn servfail_names_from_a_healthy_upstream_leave_other_names_fresh() {
    let up = FakeUpstream::start("127.0.0.1");
    up.ttl.store(1, Ordering::Relaxed);
    let srv = server(&up, "cache:\n  serve_stale: 1h\n");
    let other = "other.stale.public.example.";
    assert_eq!(ask(&srv, other).answers[0].ttl, 1);
    // A client hammers a broken domain: the upstream answers SERVFAIL for it, quickly.
    for i in 0..20 {
        let r = ask(&srv, &format!("b{i}.broken.example."));
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "b{i}");
    }
    // Each broken name's failure is cached: asked again, it does not reach the upstream.
    let asked = up.queries();
    for i in 0..20 {
        let r = ask(&srv, &format!("b{i}.broken.example."));
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "b{i} again");
    }
    assert_eq!(up.queries(), asked, "a broken name's SERVFAIL is cached for that name");
    // The other name's answer expires: it is refreshed, not served stale.
    std::thread::sleep(Duration::from_millis(1100));
    let r = ask(&srv, other);
    assert_eq!(lines(&r.answers), [format!("{other} A 192.0.2.53")]);
    assert_eq!(r.answers[0].ttl, 1, "fresh from the upstream, not stale (TTL 30, EDE 3): the upstream is not down");
    assert!(up.queries() > asked, "the upstream was asked");
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    let ok = metric(&m, &format!("pzdns_upstream_requests_total{{upstream=\"{}\",outcome=\"ok\"}}", up.addr));
    let servfail = metric(&m, &format!("pzdns_upstream_requests_total{{upstream=\"{}\",outcome=\"servfail\"}}", up.addr));
    eprintln!("upstream attempts: ok {ok}, servfail {servfail}");
    assert!(ok >= 2.0 && servfail >= 20.0, "ok {ok}, servfail {servfail}");
    // Past the failure's TTL the broken name is asked again.
    std::thread::sleep(Duration::from_secs(5));
    let before = up.queries();
    assert_eq!(ask(&srv, "b0.broken.example.").metadata.response_code, ResponseCode::ServFail);
    assert!(up.queries() > before, "asked again once the failure expired");
}

#[test]
fn a_referral_is_servfail_not_nodata() {
    let up = FakeUpstream::start("127.0.0.1");
    let srv = server(&up, "");
    let r = ask(&srv, "www.referral.example.");
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "{r:?}");
    assert!(r.answers.is_empty() && r.authorities.is_empty(), "nothing of the referral is relayed");
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    assert!(metric(&m, &format!("pzdns_upstream_requests_total{{upstream=\"{}\",outcome=\"referral\"}}", up.addr)) >= 1.0);
    // dig shows why: EDE 22.
    if let Some(dig) = tool("dig") {
        let a = srv.addrs[0];
        let out = Command::new(dig)
            .args(["-b", A_VPC, "-p", &a.port().to_string(), &format!("@{}", a.ip()), "+tries=1", "+time=5", "mail.referral.example", "A"])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains("status: SERVFAIL") && out.contains("EDE: 22"), "{out}");
    }
}

#[test]
fn an_oversized_udp_reply_is_asked_again_over_tcp_at_once() {
    let up = FakeUpstream::start("127.0.0.1");
    // ~10 KB of TXT over UDP, no TC: more than the 4 KiB read buffer.
    up.set(Behavior::NoTruncate);
    let srv = server(&up, "");
    let t = Instant::now();
    let r = tcp(srv.addrs[0], A_VPC, &query("u1.big.example.", RecordType::TXT, None));
    let took = t.elapsed();
    eprintln!("oversized UDP reply: {} with {} records after {took:?}", r.metadata.response_code, r.answers.len());
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 40);
    assert!(took < Duration::from_millis(1000), "answered over TCP at once, not after timeouts: {took:?}");
    assert_eq!((up.udp_queries.load(Ordering::Relaxed), up.tcp_queries.load(Ordering::Relaxed)), (1, 1));
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    let label = |o: &str| format!("pzdns_upstream_requests_total{{upstream=\"{}\",outcome=\"{o}\"}}", up.addr);
    assert_eq!((metric(&m, &label("ok")), metric(&m, &label("error")), metric(&m, &label("timeout"))), (1.0, 0.0, 0.0));
    assert_eq!(metric(&m, &format!("pzdns_upstream_tcp_retries_total{{upstream=\"{}\",reason=\"oversized\"}}", up.addr)), 1.0);
}
