//! Extended DNS Errors (RFC 8914) say why a query was refused, failed or
//! answered stale; NSID (RFC 5001) says which replica answered. Checked
//! with dig and kdig, clients nobody here wrote.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::upstream::{Behavior, FakeUpstream};
use crate::support::*;

/// dig's output for a query from `from`.
fn dig(dig: &Path, s: &TestServer, listener: usize, from: &str, args: &[&str]) -> String {
    let a = s.addrs[listener];
    let out = Command::new(dig)
        .args(["-b", from, "-p", &a.port().to_string(), &format!("@{}", a.ip()), "+tries=1", "+time=5"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dig_sees_why_a_query_was_refused_failed_or_answered_stale() {
    let Some(d) = tool("dig") else { return };
    let up = FakeUpstream::start("127.0.0.1");
    up.ttl.store(1, std::sync::atomic::Ordering::Relaxed);
    let s = TestServer::start_default(Path::new(RULES_ZONES), "vpc-b", &format!("upstreams: [{}]\ncache:\n  serve_stale: 1h\n", up.addr));
    // A source in no VPC: REFUSED, 18 Prohibited.
    let out = dig(&d, &s, 0, "127.0.0.1", &["www.example.test", "A"]);
    assert!(out.contains("status: REFUSED") && out.contains("EDE: 18 (Prohibited)"), "{out}");
    // A class other than IN (version.bind): REFUSED, 21 Not Supported.
    let out = dig(&d, &s, 0, "127.1.0.5", &["-c", "CH", "version.bind", "TXT"]);
    assert!(out.contains("status: REFUSED") && out.contains("EDE: 21 (Not Supported)"), "{out}");
    // Stale: cached with TTL 1, then the upstream goes silent.
    let out = dig(&d, &s, 0, "127.1.0.5", &["stale.public.example", "A"]);
    assert!(out.contains("192.0.2.53") && !out.contains("EDE"), "{out}");
    up.set(Behavior::Silent);
    std::thread::sleep(Duration::from_millis(1500));
    let out = dig(&d, &s, 0, "127.1.0.5", &["stale.public.example", "A"]);
    assert!(out.contains("192.0.2.53") && out.contains("EDE: 3 (Stale Answer)"), "{out}");
    // Nothing cached and no upstream answers: SERVFAIL, 22 No Reachable Authority.
    let out = dig(&d, &s, 0, "127.1.0.5", &["never.public.example", "A"]);
    assert!(out.contains("status: SERVFAIL") && out.contains("EDE: 22 (No Reachable Authority)"), "{out}");
    // Without EDNS there is nowhere to put it.
    let out = dig(&d, &s, 0, "127.0.0.1", &["+noedns", "www.example.test", "A"]);
    assert!(out.contains("status: REFUSED") && !out.contains("EDE"), "{out}");
}

#[test]
fn nsid_names_the_replica_only_when_asked_and_configured() {
    let (Some(d), Some(k)) = (tool("dig"), tool("kdig")) else { return };
    let s = TestServer::start_default(Path::new(RULES_ZONES), "vpc-b", "nsid: pzdns-hz-1\n");
    let out = dig(&d, &s, 0, "127.1.0.5", &["+nsid", "www.example.test", "A"]);
    assert!(out.contains("NSID: 70 7a 64 6e 73 2d 68 7a 2d 31 (\"pzdns-hz-1\")"), "{out}");
    let out = dig(&d, &s, 0, "127.1.0.5", &["www.example.test", "A"]);
    assert!(!out.contains("NSID"), "not asked: {out}");
    let a = s.addrs[0];
    let out = Command::new(k)
        .args(["-b", "127.1.0.5", "-p", &a.port().to_string(), &format!("@{}", a.ip()), "+nsid", "+tcp", "www.example.test", "A"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("NSID: pzdns-hz-1") || out.contains("\"pzdns-hz-1\""), "{out}");
    drop(s);
    // Not configured: no NSID even when asked.
    let s = TestServer::start_default(Path::new(RULES_ZONES), "vpc-b", "");
    let out = dig(&d, &s, 0, "127.1.0.5", &["+nsid", "www.example.test", "A"]);
    assert!(!out.contains("NSID:"), "{out}");
}
