//! Start-up owns its ports: a UDP port another process already holds, even
//! with SO_REUSEPORT set on both sides, stops the start with exit code 2
//! and the reason, instead of sharing the port (and its queries) with it.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

#[test]
fn a_udp_port_held_with_so_reuseport_stops_the_start() {
    let holder = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    holder.set_reuse_port(true).unwrap();
    holder.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    let taken = holder.local_addr().unwrap().as_socket().unwrap();
    let mut child = crate::support::pzdns_command()
        .args(["serve", "--zones", crate::support::RULES_ZONES, "--listen", &taken.to_string(), "--admin", "off", "--workers", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let last = err.lines().last().unwrap_or("");
    eprintln!("start with UDP {taken} held (SO_REUSEPORT) by another socket: {status:?}, {last}");
    assert_eq!(status.and_then(|s| s.code()), Some(2), "exit 2: {err}");
    assert!(last.starts_with(&format!("pzdns: cannot start: cannot bind UDP {taken}: ")), "{last}");
    assert!(last.contains("in use"), "{last}");
    drop(holder);
}
