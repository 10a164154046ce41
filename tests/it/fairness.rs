//! Upstream work is shared fairly (docs/REFERENCE.md#fairness): one client
//! flooding names of a domain that never answers (water torture) takes
//! at most its share of the upstream questions in flight, and the other
//! VPCs' new names are still asked and answered.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::support::upstream::FakeUpstream;
use crate::support::*;

/// Sends `rate` queries a second from `from` for `secs` seconds, names
/// made by `make(i)`, never reading a reply; returns how many were sent.
fn paced_flood(
    server: SocketAddr,
    from: &'static str,
    rate: u64,
    secs: u64,
    stop: Arc<AtomicBool>,
    make: fn(u64) -> String,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let s = UdpSocket::bind((from, 0)).unwrap();
        let start = Instant::now();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(secs) {
            let due = start.elapsed().as_micros() as u64 * rate / 1_000_000;
            while sent < due {
                let q = query(&make(sent), RecordType::A, None).to_vec().unwrap();
                let _ = s.send_to(&q, server);
                sent += 1;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        sent
    })
}

/// vpc-b asks `n` names it has never asked, one after another, from its
/// own address; returns how many got an answer that is not SERVFAIL.
fn ask_new_names(server: SocketAddr, n: usize, tag: &str) -> usize {
    let s = UdpSocket::bind(("127.2.0.5", 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(3000))).unwrap();
    let mut ok = 0;
    for i in 0..n {
        let q = query(&format!("b{i}.{tag}.ok.example."), RecordType::A, None);
        s.send_to(&q.to_vec().unwrap(), server).unwrap();
        let mut buf = [0u8; 1500];
        // Skip replies to an earlier question that timed out here.
        while let Ok((len, _)) = s.recv_from(&mut buf) {
            let Ok(r) = Message::from_vec(&buf[..len]) else { continue };
            if r.metadata.id != q.metadata.id {
                continue;
            }
            if r.metadata.response_code != ResponseCode::ServFail {
                ok += 1;
            }
            break;
        }
    }
    ok
}

fn config(up: &FakeUpstream) -> String {
    format!("listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n", up.addr)
}

#[test]
fn one_client_flooding_a_silent_domain_leaves_other_vpcs_answered() {
    let up = FakeUpstream::start("127.0.0.1");
    let srv = TestServer::start(Path::new(RULES_ZONES), &config(&up));
    let (s, admin) = (srv.addrs[0], srv.admin.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    // Random names under one domain that never answers: each question
    // stays in flight for its whole timeout (two attempts).
    let flood = paced_flood(s, "127.1.0.5", 2_000, 8, stop.clone(), |i| format!("r{i:x}.torture.example."));
    std::thread::sleep(Duration::from_millis(2500));
    let peak = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let m = http(admin, "GET", "/metrics").1;
                peak.fetch_max(metric(&m, "pzdns_upstream_in_flight") as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let ok = ask_new_names(s, 101, "during");
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    watcher.join().unwrap();
    let m = http(admin, "GET", "/metrics").1;
    let shed_zone = metric(&m, "pzdns_upstream_shed_total{reason=\"zone\"}");
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "water torture: {sent} flood queries; vpc-b answered {ok} of 101; most in flight {peak}; shed for the domain's share {shed_zone}"
    );
    assert!(ok >= 91, "vpc-b keeps at least 90% of its answers: {ok} of 101");
    assert!(shed_zone > 0.0, "the flood was held to the domain's share");
    assert!(peak <= 4096 / 16 + 110, "the flood holds at most the domain's share in flight (and vpc-b its own): {peak}");
}

#[test]
fn one_client_flooding_random_domains_is_held_to_its_share() {
    let up = FakeUpstream::start("127.0.0.1");
    let srv = TestServer::start(Path::new(RULES_ZONES), &config(&up));
    let (s, admin) = (srv.addrs[0], srv.admin.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    // A new parent domain for every name: the domain share never binds,
    // the client's does.
    let flood = paced_flood(s, "127.1.0.5", 2_000, 8, stop.clone(), |i| format!("x.r{i:x}.torture.example."));
    std::thread::sleep(Duration::from_millis(2500));
    let ok = ask_new_names(s, 101, "random");
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    let m = http(admin, "GET", "/metrics").1;
    let shed_client = metric(&m, "pzdns_upstream_shed_total{reason=\"client\"}");
    eprintln!("random-domain flood: {sent} queries; vpc-b answered {ok} of 101; shed for the client's share {shed_client}");
    assert!(ok >= 91, "vpc-b keeps at least 90% of its answers: {ok} of 101");
    assert!(shed_client > 0.0, "the flood was held to the client's share");
}
