//! The upstream fault matrix: whatever an upstream does, the client gets a
//! correct answer or SERVFAIL within 3 s, nothing is cached from a bad
//! reply, and stale data covers for a failing upstream.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::upstream::{Behavior, FakeUpstream};
use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const ZONES: &str = RULES_ZONES;
const A_VPC: &str = "127.1.0.5";
const BOUND: Duration = Duration::from_secs(3);

fn ask(s: &TestServer, name: &str) -> (Message, Duration) {
    let t = Instant::now();
    let r = udp(s.addrs[0], A_VPC, &query(name, RecordType::A, Some(1232)));
    (r, t.elapsed())
}

#[test]
fn fault_matrix() {
    let up = FakeUpstream::start("127.0.0.1");
    let srv = TestServer::start_default(Path::new(ZONES), "vpc-b", &format!("upstreams: [{}]\ncache:\n  serve_stale: 0\n", up.addr));
    let faults = [
        ("silent (times out)", Behavior::Silent),
        ("late (1.5 s, after the attempt's deadline)", Behavior::DelayMs(1500)),
        ("garbage", Behavior::Garbage),
        ("SERVFAIL", Behavior::ServFail),
        ("truncated, then TCP cut mid-message", Behavior::TruncateThenCut),
    ];
    for (i, (what, b)) in faults.iter().enumerate() {
        let name = format!("f{i}.stale.public.example.");
        up.set(*b);
        let (r, took) = ask(&srv, &name);
        eprintln!("{what}: {} after {took:?}", r.metadata.response_code);
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "{what}");
        assert!(r.answers.is_empty(), "{what}: nothing from a bad reply");
        assert!(took < BOUND, "{what}: SERVFAIL after {took:?}");
        up.set(Behavior::Answer);
        if *b == Behavior::ServFail {
            // An upstream's SERVFAIL is about the name: cached for it (RFC 9520), briefly.
            let before = up.queries();
            assert_eq!(ask(&srv, &name).0.metadata.response_code, ResponseCode::ServFail, "{what}: cached");
            assert_eq!(up.queries(), before, "{what}: answered from the cache");
            std::thread::sleep(Duration::from_secs(5));
        }
        // Nothing else was cached: once the upstream behaves, the next question goes out.
        std::thread::sleep(Duration::from_millis(1700)); // let late replies land in closed sockets
        let before = up.queries();
        let (r, _) = ask(&srv, &name);
        assert_eq!(lines(&r.answers), [format!("{name} A 192.0.2.53")], "{what}");
        assert!(up.queries() > before, "{what}: asked again, nothing cached from the bad reply");
    }
    // Spoofed replies first, then the right one: the right one wins.
    up.set(Behavior::SpoofFirst);
    let (r, took) = ask(&srv, "spoof.public.example.");
    assert_eq!(lines(&r.answers), ["spoof.public.example. A 192.0.2.53"]);
    assert!(took < BOUND);
}

#[test]
fn stale_data_covers_every_fault() {
    let up = FakeUpstream::start("127.0.0.1");
    up.ttl.store(1, std::sync::atomic::Ordering::Relaxed);
    let srv = TestServer::start_default(Path::new(ZONES), "vpc-b", &format!("upstreams: [{}]\ncache:\n  serve_stale: 1h\n", up.addr));
    for (i, b) in [Behavior::Silent, Behavior::Garbage, Behavior::ServFail, Behavior::TruncateThenCut].into_iter().enumerate() {
        let name = format!("s{i}.stale.public.example.");
        up.set(Behavior::Answer);
        ask(&srv, &name);
        up.set(b);
        std::thread::sleep(Duration::from_millis(1200));
        let (r, took) = ask(&srv, &name);
        assert_eq!(lines(&r.answers), [format!("{name} A 192.0.2.53")], "{b:?}: stale answer");
        assert_eq!(r.answers[0].ttl, 30, "{b:?}: RFC 8767 TTL");
        assert!(took < BOUND, "{b:?}: {took:?}");
    }
}
