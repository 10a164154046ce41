//! Floods (SPEC.md §5: "a flood degrades answers, never memory"). Each test
//! is bounded in packets and time, stays on loopback, and stops by itself.
//! Resident memory is read from /proc/PID/status while it runs.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::upstream::{Behavior, FakeUpstream};
use crate::support::*;
use hickory_proto::rr::RecordType;

const ZONES: &str = RULES_ZONES;
const A_VPC: &str = "127.1.0.5";

/// `threads` senders, `per_thread` datagrams each, as fast as they go,
/// never reading a reply; `make(i)` builds datagram i.
fn blast(
    server: SocketAddr,
    from: &str,
    threads: usize,
    per_thread: usize,
    make: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static,
) -> (u64, Duration) {
    let make = Arc::new(make);
    let sent = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|k| {
            let (make, sent, from) = (make.clone(), sent.clone(), from.to_string());
            std::thread::spawn(move || {
                let s = UdpSocket::bind((from.as_str(), 0)).unwrap();
                let deadline = Instant::now() + Duration::from_secs(10);
                for i in 0..per_thread {
                    if Instant::now() > deadline {
                        break;
                    }
                    if s.send_to(&make(k * per_thread + i), server).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    (sent.load(Ordering::Relaxed), t.elapsed())
}

fn answered_within(server: SocketAddr, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        let q = query("www.example.test.", RecordType::A, None).to_vec().unwrap();
        if udp_raw_short(server, &q).is_some_and(|r| r.len() > 12) {
            return Some(t.elapsed());
        }
    }
    None
}

fn udp_raw_short(server: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind((A_VPC, 0)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
    s.send_to(q, server).ok()?;
    let mut b = [0u8; 1500];
    s.recv_from(&mut b).ok().map(|(n, _)| b[..n].to_vec())
}

#[test]
fn udp_flood_leaves_memory_bounded_and_recovers() {
    let srv = TestServer::start_default(Path::new(ZONES), "vpc-b", "");
    let (s, pid) = (srv.addrs[0], srv.pid());
    let before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(pid, stop.clone());
    let q = query("www.example.test.", RecordType::A, None).to_vec().unwrap();
    let (sent, took) = blast(s, A_VPC, 4, 60_000, move |_| q.clone());
    std::thread::sleep(Duration::from_millis(300));
    let recovered = answered_within(s, Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    eprintln!(
        "UDP flood: {sent} queries in {took:?} ({:.0}/s); RSS before {before} KiB, peak {peak} KiB, after {after} KiB; answered again after {recovered:?}",
        sent as f64 / took.as_secs_f64()
    );
    assert!(recovered.is_some(), "answers again within 5 s");
    assert!(peak < before + 64 * 1024, "peak RSS {peak} KiB vs {before} KiB before");
}

#[test]
fn unique_names_flood_keeps_in_flight_and_cache_bounded() {
    // A dead upstream: every question stays in flight for its whole timeout.
    let up = FakeUpstream::start("127.0.0.1");
    up.set(Behavior::Silent);
    let cfg = format!(
        "listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\ncache:\n  max_entries: 200\n",
        up.addr
    );
    let srv = TestServer::start(Path::new(ZONES), &cfg);
    let (s, pid) = (srv.addrs[0], srv.pid());
    let before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(pid, stop.clone());
    // The in-flight gauge, scraped while the flood runs.
    let admin = srv.admin.unwrap();
    let max_in_flight = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut max = 0.0f64;
            while !stop.load(Ordering::Relaxed) {
                max = max.max(metric(&http(admin, "GET", "/metrics").1, "pzdns_upstream_in_flight"));
                std::thread::sleep(Duration::from_millis(50));
            }
            max
        })
    };
    let (sent, took) = blast(s, A_VPC, 2, 10_000, |i| query(&format!("u{i}.flood.example."), RecordType::A, None).to_vec().unwrap());
    // Local data is still answered while the flood is in flight.
    let local = answered_within(s, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(2600));
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let max_in_flight = max_in_flight.join().unwrap();
    let m = http(admin, "GET", "/metrics").1;
    let asked = up.queries();
    let overloaded = metric(&m, "pzdns_upstream_overloaded_total");
    eprintln!(
        "unique-name flood: {sent} questions in {took:?}; most in flight {max_in_flight}; {overloaded} SERVFAIL at once (over the bound); upstream saw {asked}; RSS before {before} KiB, peak {peak} KiB; local answer after {local:?}"
    );
    assert!(local.is_some(), "local answers continue during the flood");
    // One client, one domain: held to the domain's share of the bound
    // (docs/REFERENCE.md#fairness), not to the whole of it.
    assert!(max_in_flight > 100.0 && max_in_flight <= (4096 / 16) as f64, "in flight {max_in_flight}");
    assert!(overloaded > 0.0, "beyond the share, questions fail fast");
    // Queries queued in the socket buffer keep arriving after the sender
    // stops; everything settles once they have timed out.
    let t = Instant::now();
    while metric(&http(admin, "GET", "/metrics").1, "pzdns_upstream_in_flight") > 0.0 {
        assert!(t.elapsed() < Duration::from_secs(20), "in-flight questions never settled");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Bounded by the in-flight limit (4096 × a 4 KiB buffer and a task),
    // not by the size of the flood.
    assert!(peak < before + 128 * 1024, "peak RSS {peak} KiB vs {before} KiB before");

    // Now the upstream answers: 2,000 unique names, a cache of 200.
    up.set(Behavior::Answer);
    let (_, _) = blast(s, A_VPC, 1, 2_000, |i| query(&format!("u{}.flood.example.", 100_000 + i), RecordType::A, None).to_vec().unwrap());
    std::thread::sleep(Duration::from_millis(1500));
    let m2 = http(srv.admin.unwrap(), "GET", "/metrics").1;
    let entries = metric(&m2, "pzdns_cache_entries");
    eprintln!("cache entries after 2000 unique answers: {entries}");
    assert!(entries > 0.0 && entries <= 200.0, "cache bounded by max_entries: {entries}");
    let _ = m;
}
