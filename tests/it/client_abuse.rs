//! What one hostile client can do, and what it can no longer do: fill the
//! log, take every TCP slot, hold admin HTTP connections open.

use std::net::UdpSocket;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::*;
use hickory_proto::rr::RecordType;

const ZONES: &str = RULES_ZONES;
/// In no VPC of the rules fixture.
const NO_VPC: &str = "127.0.0.1";

fn config_with_admin(extra: &str) -> String {
    format!("listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n{extra}")
}

/// A query whose OPT carries a cookie option claiming 40 bytes with 8 there.
fn malformed_option_query(id: u16) -> Vec<u8> {
    let mut m = query("www.example.test.", RecordType::A, None).to_vec().unwrap();
    m[0..2].copy_from_slice(&id.to_be_bytes());
    m[11] = 1; // ARCOUNT
    m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 40, 1, 2, 3, 4, 5, 6, 7, 8]);
    m
}

/// A flood of packets that each make pzdns note something (a malformed
/// EDNS option, REFUSED to a source in no VPC, a response dropped) logs a
/// handful of lines, and counts every one of them.
#[test]
fn a_flood_of_client_events_logs_a_few_lines_and_counts_every_one() {
    let srv = TestServer::start(Path::new(ZONES), &config_with_admin(""));
    let (s, admin) = (srv.addrs[0], srv.admin.unwrap());
    let lines_before = srv.stderr().lines().count();
    let (sent, answered, responses) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let mut hs: Vec<_> = (0..3)
        .map(|_| {
            let (sent, answered, stop) = (sent.clone(), answered.clone(), stop.clone());
            std::thread::spawn(move || {
                let sock = UdpSocket::bind((NO_VPC, 0)).unwrap();
                sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                let mut buf = [0u8; 1500];
                let mut id = 0u16;
                while !stop.load(Ordering::Relaxed) {
                    id = id.wrapping_add(1);
                    if sock.send_to(&malformed_option_query(id), s).is_err() {
                        continue;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    if sock.recv_from(&mut buf).is_ok() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Responses (QR=1) at a steady rate: dropped, never answered.
    hs.push({
        let (responses, stop) = (responses.clone(), stop.clone());
        std::thread::spawn(move || {
            let sock = UdpSocket::bind((NO_VPC, 0)).unwrap();
            let mut r = query("www.example.test.", RecordType::A, None).to_vec().unwrap();
            r[2] |= 0x80;
            while !stop.load(Ordering::Relaxed) {
                if sock.send_to(&r, s).is_ok() {
                    responses.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    });
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let m = http(admin, "GET", "/metrics").1;
    let event = |e: &str| metric(&m, &format!("pzdns_events_total{{event=\"{e}\"}}")) as u64;
    let (malformed, refused, dropped) = (event("malformed_option"), event("refused"), event("dropped"));
    let (sent, answered, responses) = (sent.load(Ordering::Relaxed), answered.load(Ordering::Relaxed), responses.load(Ordering::Relaxed));
    let log = srv.stderr();
    let lines: Vec<&str> = log.lines().skip(lines_before).collect();
    eprintln!(
        "5 s flood: {sent} malformed-option queries from a source in no VPC ({answered} answered REFUSED), {responses} responses sent; counted: malformed_option {malformed}, refused {refused}, dropped {dropped}; {} log lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(sent > 5_000, "a flood: {sent}");
    assert!((answered..=sent).contains(&malformed), "every malformed query counted: {malformed} of {sent} ({answered} answered)");
    assert!((answered..=sent).contains(&refused), "every refusal counted: {refused}");
    assert!(dropped > 0 && dropped <= responses, "responses dropped and counted: {dropped} of {responses}");
    assert!(lines.len() < 100, "{} log lines", lines.len());
    assert!(lines.iter().any(|l| l.contains("malformed EDNS options")), "the first one is logged in full");
}

/// 64 connections from one source in no VPC, with 64 slots in all, used
/// to take every one of them: every other client was closed at once.
/// Now that source may hold a quarter of an eighth of the slots.
#[test]
fn one_source_cannot_take_every_tcp_slot() {
    use std::io::Read;
    let cfg = config_with_admin("tcp:\n  max_connections: 64\n  idle_timeout: 30s\n");
    let srv = TestServer::start(Path::new(ZONES), &cfg);
    let (s, admin) = (srv.addrs[0], srv.admin.unwrap());
    let flood: Vec<std::net::TcpStream> = (0..64).map(|_| tcp_connect(s, NO_VPC.parse().unwrap())).collect();
    std::thread::sleep(Duration::from_millis(300));
    // The flooding source's connections past its share are closed at once.
    let closed = flood
        .iter()
        .filter(|c| {
            let mut c: &std::net::TcpStream = c;
            c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let mut b = [0u8; 8];
            match c.read(&mut b) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        })
        .count();
    let m = http(admin, "GET", "/metrics").1;
    let (open, refused) = (metric(&m, "pzdns_tcp_connections"), metric(&m, "pzdns_events_total{event=\"tcp_source_limit\"}"));
    // Another client, in a VPC, and another source in no VPC are served.
    let t = std::time::Instant::now();
    let r = tcp(s, "127.1.0.5", &query("www.example.test.", RecordType::A, None));
    let other_vpc_client = t.elapsed();
    let r2 = tcp(s, "127.0.0.2", &query("www.example.test.", RecordType::A, None));
    eprintln!(
        "64 connections from {NO_VPC} (no VPC), 64 slots: {open} kept open, {refused} closed at once ({closed} seen closed); a VPC client answered in {other_vpc_client:?} ({} records), another source in no VPC answered {}",
        r.answers.len(),
        r2.metadata.response_code
    );
    assert_eq!(open, 2.0, "a source in no VPC holds 64 / 8 / 4 = 2");
    assert_eq!((refused, closed), (62.0, 62));
    assert_eq!(r.answers.len(), 2, "the VPC client is served");
    assert_eq!(r2.metadata.response_code, hickory_proto::op::ResponseCode::Refused, "another source in no VPC gets its answer");
    drop(flood);
}

/// 1,000 requests whose headers never finish used to hold 1,000 admin
/// connections open for as long as their clients liked. Now at most 64
/// are served at once (the rest are closed at once) and each is closed
/// once it has not sent its headers within 5 s; then the admin port
/// answers again.
#[test]
fn half_sent_admin_requests_are_closed_after_the_header_timeout() {
    use std::io::{Read, Write};
    const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
    let srv = TestServer::start(Path::new(ZONES), &config_with_admin(""));
    let admin = srv.admin.unwrap();
    let t = std::time::Instant::now();
    let mut conns: Vec<Option<std::net::TcpStream>> = (0..1_000)
        .map(|_| {
            let mut c = std::net::TcpStream::connect_timeout(&admin, IO_TIMEOUT).unwrap();
            let _ = c.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nX-Slow: ").as_bytes());
            c.set_nonblocking(true).unwrap();
            Some(c)
        })
        .collect();
    let opened = t.elapsed();
    let (mut closed_at_once, mut closed_later, mut last_close) = (0, 0, Duration::ZERO);
    let mut b = [0u8; 256];
    while t.elapsed() < opened + HEADER_TIMEOUT + Duration::from_secs(5) && conns.iter().any(Option::is_some) {
        for slot in conns.iter_mut() {
            let Some(c) = slot else { continue };
            let gone = match c.read(&mut b) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            };
            if gone {
                *slot = None;
                last_close = t.elapsed();
                if last_close < Duration::from_secs(1) + opened {
                    closed_at_once += 1;
                } else {
                    closed_later += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let still_open = conns.iter().filter(|c| c.is_some()).count();
    let (status, body) = http(admin, "GET", "/healthz");
    eprintln!(
        "1000 half-sent admin requests (opened in {opened:?}): {closed_at_once} closed at once, {closed_later} closed later, the last after {last_close:?}; {still_open} still open; then /healthz: {status} {}",
        body.trim()
    );
    assert_eq!(still_open, 0, "none stays open past the header timeout");
    assert!(closed_later <= 64, "at most 64 held at once: {closed_later}");
    assert!(last_close < opened + HEADER_TIMEOUT + Duration::from_secs(2), "the last one closed after {last_close:?}");
    assert_eq!(status, 200, "the admin port answers again");
    // A body over the limit is refused unread.
    let mut c = std::net::TcpStream::connect_timeout(&admin, IO_TIMEOUT).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.write_all(format!("POST /reload HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
}
