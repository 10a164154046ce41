//! Serve-stale as RFC 8767 means it: while the upstream is known to be
//! down, stale answers go out at once (the first ones after at most the
//! client response timer) and the upstream sees a bounded trickle of
//! refreshes, not one question per client question; once it answers
//! again, it is used again.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::upstream::{Behavior, FakeUpstream};
use crate::support::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const ZONES: &str = RULES_ZONES;
const A_VPC: &str = "127.1.0.5";

#[test]
fn stale_answers_at_once_while_the_upstream_is_down_and_a_bounded_refresh_rate() {
    const NAMES: usize = 10;
    const RUN: Duration = Duration::from_secs(6);
    let up = FakeUpstream::start("127.0.0.1");
    up.ttl.store(1, Ordering::Relaxed);
    let cfg = format!(
        "listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: \"off\"\ncache:\n  serve_stale: 1h\n",
        up.addr
    );
    let srv = TestServer::start(Path::new(ZONES), &cfg);
    let s = srv.addrs[0];
    let names: Vec<String> = (0..NAMES).map(|i| format!("r{i}.stale.public.example.")).collect();
    for n in &names {
        let r = udp(s, A_VPC, &query(n, RecordType::A, Some(1232)));
        assert_eq!(lines(&r.answers), [format!("{n} A 192.0.2.53")]);
    }
    // The upstream dies; the answers expire (TTL 1).
    up.set(Behavior::Silent);
    std::thread::sleep(Duration::from_millis(1100));
    let asked_before = up.queries();
    let started = Instant::now();
    let clients: Vec<_> = names
        .iter()
        .cloned()
        .map(|n| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while started.elapsed() < RUN {
                    let t = Instant::now();
                    let r = udp(s, A_VPC, &query(&n, RecordType::A, Some(1232)));
                    got.push((t.elapsed(), r.metadata.response_code, lines(&r.answers), r.answers.first().map(|a| a.ttl)));
                    std::thread::sleep(Duration::from_millis(50));
                }
                (n, got)
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let (mut answers, mut at_once) = (0, 0);
    for c in clients {
        let (n, got) = c.join().unwrap();
        for (took, rcode, records, ttl) in got {
            assert_eq!(rcode, ResponseCode::NoError, "{n}");
            assert_eq!(records, [format!("{n} A 192.0.2.53")], "{n}: the stale answer");
            assert_eq!(ttl, Some(30), "{n}: served stale (RFC 8767 TTL)");
            slowest = slowest.max(took);
            answers += 1;
            // An answer that waited on the upstream took an attempt's
            // timeout at least; a fixed short bound would count a busy
            // machine's scheduling delay as waiting.
            at_once += usize::from(took < pzdns::upstream::ATTEMPT_TIMEOUT);
        }
    }
    let asked = up.queries() - asked_before;
    // Each name's first question goes out before the upstream is known
    // down (2 attempts each); after that, at most one refresh per second.
    let bound = 2 * (NAMES + RUN.as_secs() as usize + 2);
    eprintln!(
        "upstream down: {answers} client questions for {NAMES} names in {RUN:?}, all stale, {at_once} without waiting on the upstream, the slowest after {slowest:?}; the upstream saw {asked} (bound {bound})"
    );
    assert!(slowest <= Duration::from_millis(1800), "a stale answer took {slowest:?}");
    assert!(at_once >= answers - NAMES, "after the first failure, stale answers go out at once: {at_once} of {answers}");
    assert!(answers > 5 * NAMES * RUN.as_secs() as usize, "the clients kept asking: {answers}");
    assert!(asked <= bound, "the upstream saw {asked} questions, over {bound}");

    // The upstream comes back: within a refresh interval and an exchange,
    // answers are fresh again (TTL 1, not the stale 30).
    up.set(Behavior::Answer);
    let back = Instant::now();
    let fresh = loop {
        let r = udp(s, A_VPC, &query(&names[0], RecordType::A, Some(1232)));
        if r.answers.first().is_some_and(|a| a.ttl != 30) {
            break Some(back.elapsed());
        }
        if back.elapsed() > Duration::from_secs(5) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("upstream back: fresh answers after {fresh:?}");
    assert!(fresh.is_some_and(|t| t < Duration::from_secs(3)), "the recovered upstream is used again: {fresh:?}");
}
