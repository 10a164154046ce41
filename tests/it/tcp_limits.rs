//! TCP under pressure (SPEC.md §5, RFC 7766): the connection bound, idle
//! and slowloris timeouts, and answers that do not wait for each other.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::upstream::{Behavior, FakeUpstream};
use crate::support::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

const ZONES: &str = RULES_ZONES;
const A_VPC: &str = "127.1.0.5";

fn closed_within(t: &mut std::net::TcpStream, limit: Duration) -> bool {
    t.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 64];
    use std::io::ErrorKind::*;
    match t.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe),
    }
}

#[test]
fn connection_bound_holds_and_udp_keeps_serving() {
    let cfg = "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: 127.0.0.1:0\ntcp:\n  max_connections: 5\n  max_connections_per_source: 5\n  idle_timeout: 30s\n";
    let srv = TestServer::start(Path::new(ZONES), cfg);
    let s = srv.addrs[0];
    let from = A_VPC.parse().unwrap();
    // Five idle connections take every slot...
    let held: Vec<_> = (0..5).map(|_| tcp_connect(s, from)).collect();
    std::thread::sleep(Duration::from_millis(200));
    // ...so a sixth is closed at once, without an answer.
    let mut extra = tcp_connect(s, from);
    let _ = extra.write_all(&[0, 1]);
    assert!(closed_within(&mut extra, Duration::from_secs(3)), "the 6th connection is closed");
    // UDP is not affected.
    let r = udp(s, A_VPC, &query("www.example.test.", RecordType::A, None));
    assert_eq!(r.answers.len(), 2);
    // A freed slot is usable again.
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let r = tcp(s, A_VPC, &query("www.example.test.", RecordType::A, None));
    assert_eq!(r.answers.len(), 2);
    let m = http(srv.admin.unwrap_or_else(|| panic!("admin off")), "GET", "/metrics").1;
    assert!(metric(&m, "pzdns_tcp_connections_refused_total") >= 1.0, "{m}");
}

#[test]
fn slowloris_and_idle_connections_are_closed() {
    let srv = TestServer::start_default(Path::new(ZONES), "vpc-b", "tcp:\n  idle_timeout: 1s\n");
    let s = srv.addrs[0];
    let from = A_VPC.parse().unwrap();
    // Idle: never sends anything.
    let mut idle = tcp_connect(s, from);
    let t = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(5)));
    assert!(t.elapsed() < Duration::from_secs(3), "closed after {:?}", t.elapsed());
    // Slowloris: a length prefix, then a trickle that never completes the message.
    let mut slow = tcp_connect(s, from);
    slow.write_all(&[0, 40, 0x12]).unwrap();
    let t = Instant::now();
    let mut closed = false;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        if slow.write_all(&[0]).is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed || closed_within(&mut slow, Duration::from_secs(3)), "a message that never completes closes the connection");
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// RFC 7766 §6.2.1.1: pipelined queries are answered as each is ready; a
/// slow upstream answer does not hold up a local one behind it.
#[test]
fn pipelined_answers_do_not_wait_for_a_slow_one() {
    let up = FakeUpstream::start("127.0.0.1");
    up.set(Behavior::DelayMs(800));
    let srv = TestServer::start_default(Path::new(ZONES), "vpc-b", &format!("upstreams: [{}]\n", up.addr));
    let mut t = tcp_connect(srv.addrs[0], A_VPC.parse().unwrap());
    let slow = query("slow.public.example.", RecordType::A, None);
    let fast = query("www.example.test.", RecordType::A, None);
    for q in [&slow, &fast] {
        let b = q.to_vec().unwrap();
        let mut framed = (b.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&b);
        t.write_all(&framed).unwrap();
    }
    let started = Instant::now();
    let first = Message::from_vec(&tcp_recv(&mut t)).unwrap();
    let first_after = started.elapsed();
    let second = Message::from_vec(&tcp_recv(&mut t)).unwrap();
    assert_eq!(first.metadata.id, fast.metadata.id, "the local answer comes first");
    assert!(first_after < Duration::from_millis(500), "{first_after:?}");
    assert_eq!(second.metadata.id, slow.metadata.id);
    assert_eq!(second.answers.len(), 1);
}
