//! Routing and health (SPEC §10): weighted answers, failover, health
//! checks of records and of endpoint zones, against TCP and HTTP
//! listeners on 127.0.66.x that the tests open and close.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::support::*;

/// A client of vpc-r.
const CLIENT: &str = "127.0.70.5";
/// In vpc-r's vSwitch of zone cn-r-b.
const CLIENT_B: &str = "127.0.70.200";

const INTERVAL_MS: u64 = 300;
const FAILURES: u64 = 2;
const SUCCESSES: u64 = 2;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-routing-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn zones(tag: &str, zone_yaml: &str, endpoints_yaml: &str) -> PathBuf {
    let d = scratch(tag);
    std::fs::write(
        d.join("vpcs.yaml"),
        "vpcs:\n  - id: vpc-r\n    cidrs: [127.0.70.0/24]\n    vswitches:\n      - { id: vsw-b, zone: cn-r-b, cidr: 127.0.70.128/25 }\n",
    )
    .unwrap();
    std::fs::write(d.join("r.internal.yaml"), zone_yaml).unwrap();
    if !endpoints_yaml.is_empty() {
        std::fs::write(d.join("endpoints.yaml"), endpoints_yaml).unwrap();
    }
    d
}

fn server(zones: &Path) -> TestServer {
    let cfg = format!(
        "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\nhealth_checks:\n  interval: {INTERVAL_MS}ms\n  timeout: 200ms\n  failure_threshold: {FAILURES}\n  success_threshold: {SUCCESSES}\n"
    );
    TestServer::start(zones, &cfg)
}

fn addresses(srv: &TestServer, from: &str, name: &str) -> Vec<String> {
    let r = udp(srv.addrs[0], from, &query(name, RecordType::A, Some(1232)));
    let mut v: Vec<String> = r.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

/// A TCP listener that accepts (and drops) connections until closed.
struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn open(addr: SocketAddr) -> Listener {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => drop(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Listener { addr, stop, thread: Some(thread) }
    }

    fn close(mut self) -> SocketAddr {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls until `want` holds for the answer, up to `limit`; how long it took.
fn until(srv: &TestServer, name: &str, limit: Duration, want: impl Fn(&[String]) -> bool) -> Result<Duration, Vec<String>> {
    let t = Instant::now();
    loop {
        let got = addresses(srv, CLIENT, name);
        if want(&got) {
            return Ok(t.elapsed());
        }
        if t.elapsed() > limit {
            return Err(got);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port free on 127.0.0.1, used on the 127.0.66.x addresses.
fn port() -> u16 {
    free_tcp_port()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn weighted_answers_follow_the_weights() {
    let z = zones(
        "weights",
        "zone: r.internal\nvpcs: [vpc-r]\nrecords:\n\
         \x20 - { name: api, type: A, value: 10.0.0.1, weight: 80 }\n\
         \x20 - { name: api, type: A, value: 10.0.0.2, weight: 20 }\n\
         \x20 - { name: zero, type: A, value: [10.0.1.1, 10.0.1.2, 10.0.1.3], weight: 0 }\n\
         \x20 - { name: two, type: A, value: 10.0.2.1, weight: 1, answers: 2 }\n\
         \x20 - { name: two, type: A, value: 10.0.2.2, weight: 1, answers: 2 }\n\
         \x20 - { name: two, type: A, value: 10.0.2.3, weight: 0, answers: 2 }\n\
         \x20 - { name: plain, type: A, value: [10.0.3.1, 10.0.3.2] }\n",
        "",
    );
    let srv = server(&z);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..1000 {
        let a = addresses(&srv, CLIENT, "api.r.internal.");
        assert_eq!(a.len(), 1, "one record per answer: {a:?}");
        *counts.entry(a[0].clone()).or_default() += 1;
    }
    let first = counts.get("10.0.0.1").copied().unwrap_or(0);
    eprintln!("weights 80/20 over 1000 answers: {counts:?}");
    assert!((750..=850).contains(&first), "80% ± 5% of 1000 answers for weight 80: {counts:?}");
    assert_eq!(addresses(&srv, CLIENT, "zero.r.internal."), ["10.0.1.1", "10.0.1.2", "10.0.1.3"], "every weight 0: all answered");
    for _ in 0..50 {
        assert_eq!(
            addresses(&srv, CLIENT, "two.r.internal."),
            ["10.0.2.1", "10.0.2.2"],
            "answers: 2 of the weighted; weight 0 never while others are not 0"
        );
    }
    assert_eq!(addresses(&srv, CLIENT, "plain.r.internal."), ["10.0.3.1", "10.0.3.2"], "a set without routing: all");
}

#[test]
fn weighted_endpoint_answers_prefer_the_clients_own_zone() {
    let z = zones(
        "ep-weights",
        "zone: r.internal\nvpcs: [vpc-r]\nrecords:\n  - { name: www, type: A, value: 10.9.9.9 }\n",
        "endpoints:\n  - id: ep-r1\n    service: com.example.svc\n    region: cn-r\n    vpc: vpc-r\n    zones:\n\
         \x20     - { zone: cn-r-a, ip: 10.1.0.1, weight: 90 }\n\
         \x20     - { zone: cn-r-b, ip: 10.1.0.2, weight: 10 }\n",
    );
    let srv = server(&z);
    let zones_body = http(srv.admin.unwrap(), "GET", "/zones").1;
    let ep_name = zones_body
        .split("\"name\":\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .find(|n| n.starts_with("ep-r1."))
        .unwrap_or_else(|| panic!("the endpoint domain in /zones: {zones_body}"));
    let (mut a, mut b) = (0, 0);
    for _ in 0..400 {
        match addresses(&srv, CLIENT, &ep_name).as_slice() {
            [x] if x == "10.1.0.1" => a += 1,
            [x] if x == "10.1.0.2" => b += 1,
            other => panic!("one weighted record: {other:?}"),
        }
    }
    eprintln!("endpoint weights 90/10 from outside both zones' vSwitches: {a}/{b}");
    assert!((330..=390).contains(&a), "about 90% for weight 90: {a}/{b}");
    for _ in 0..50 {
        assert_eq!(
            addresses(&srv, CLIENT_B, &ep_name),
            ["10.1.0.2"],
            "a client in cn-r-b gets its own zone's address, whatever the weight"
        );
    }
}

#[test]
fn a_record_that_fails_its_check_leaves_the_answers_and_returns() {
    let p = port();
    let a: SocketAddr = format!("127.0.66.1:{p}").parse().unwrap();
    let b: SocketAddr = format!("127.0.66.2:{p}").parse().unwrap();
    let la = Listener::open(a);
    let lb = Listener::open(b);
    let z = zones(
        "health",
        &format!(
            "zone: r.internal\nvpcs: [vpc-r]\nttl: 3600\nrecords:\n  - {{ name: db, type: A, value: 127.0.66.1, health: tcp/{p} }}\n  - {{ name: db, type: A, value: 127.0.66.2, health: tcp/{p} }}\n"
        ),
        "",
    );
    let srv = server(&z);
    let both = ["127.0.66.1", "127.0.66.2"];
    until(&srv, "db.r.internal.", ms(100), |g| g == both).expect("both answered at start");
    let r = udp(srv.addrs[0], CLIENT, &query("db.r.internal.", RecordType::A, None));
    assert!(r.answers.iter().all(|r| r.ttl <= 1), "TTL capped at the check interval (at least 1 s): {:?}", r.answers);
    // Checked healthy first, so that the next failures count from there.
    std::thread::sleep(ms(INTERVAL_MS * (SUCCESSES + 1)));
    la.close();
    let bound = ms(INTERVAL_MS * (FAILURES + 1) + 400);
    let left =
        until(&srv, "db.r.internal.", bound + ms(2000), |g| g == ["127.0.66.2"]).unwrap_or_else(|g| panic!("127.0.66.1 never left: {g:?}"));
    eprintln!("left the answers {left:?} after its listener closed (bound {bound:?})");
    assert!(left <= bound, "left within interval × failure_threshold + 1 interval: {left:?} > {bound:?}");
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    assert_eq!(metric(&m, &format!("pzdns_health_target_state{{target=\"127.0.66.1 tcp/{p}\"}}")), 0.0, "{m}");
    assert!(metric(&m, "pzdns_health_transitions_total{to=\"unhealthy\"}") >= 1.0);
    let zj = http(srv.admin.unwrap(), "GET", "/zones").1;
    assert!(zj.contains(&format!("\"target\":\"127.0.66.1 tcp/{p}\"")) && zj.contains("\"state\":\"unhealthy\""), "{zj}");
    // Reopened: back within success_threshold intervals.
    let la = Listener::open(a);
    let bound = ms(INTERVAL_MS * (SUCCESSES + 1) + 400);
    let back = until(&srv, "db.r.internal.", bound + ms(2000), |g| g == both).unwrap_or_else(|g| panic!("never came back: {g:?}"));
    eprintln!("back in the answers {back:?} after its listener reopened (bound {bound:?})");
    assert!(back <= bound, "returned within interval × success_threshold (+1 interval): {back:?}");
    // Both down: fail open, both answered.
    la.close();
    lb.close();
    std::thread::sleep(ms(INTERVAL_MS * (FAILURES + 2)));
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    assert_eq!(metric(&m, &format!("pzdns_health_target_state{{target=\"127.0.66.2 tcp/{p}\"}}")), 0.0, "both unhealthy now: {m}");
    assert_eq!(addresses(&srv, CLIENT, "db.r.internal."), both, "every record unhealthy: all answered");
}

#[test]
fn failover_switches_to_the_secondary_and_back() {
    let p = port();
    let a: SocketAddr = format!("127.0.66.3:{p}").parse().unwrap();
    let la = Listener::open(a);
    let z = zones(
        "failover",
        &format!(
            "zone: r.internal\nvpcs: [vpc-r]\nrecords:\n  - {{ name: db, type: A, value: 127.0.66.3, failover: primary, health: tcp/{p} }}\n  - {{ name: db, type: A, value: 127.0.66.4, failover: secondary }}\n"
        ),
        "",
    );
    let srv = server(&z);
    until(&srv, "db.r.internal.", ms(100), |g| g == ["127.0.66.3"]).expect("the primary while healthy");
    std::thread::sleep(ms(INTERVAL_MS * (SUCCESSES + 1)));
    la.close();
    let t = until(&srv, "db.r.internal.", ms(INTERVAL_MS * (FAILURES + 1) + 2400), |g| g == ["127.0.66.4"])
        .expect("the secondary once the primary is down");
    eprintln!("failed over in {t:?}");
    let _la = Listener::open(a);
    let t = until(&srv, "db.r.internal.", ms(INTERVAL_MS * (SUCCESSES + 1) + 2400), |g| g == ["127.0.66.3"]).expect("back to the primary");
    eprintln!("failed back in {t:?}");
}

/// An HTTP server answering 200 or 503 as `healthy` says.
fn http_server(addr: SocketAddr, healthy: Arc<AtomicBool>) -> Listener {
    let l = TcpListener::bind(addr).unwrap();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    let mut buf = [0u8; 1024];
                    let n = c.read(&mut buf).unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]);
                    let ok = healthy.load(Ordering::Relaxed) && req.starts_with("GET /healthz HTTP/1.1");
                    let status = if ok { "200 OK" } else { "503 Service Unavailable" };
                    let _ = c.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Listener { addr, stop, thread: Some(thread) }
}

/// A record checked by `check` at `ip` beside a plain one (10.0.5.5):
/// both answered while `up` holds; the checked one leaves once `up` is
/// cleared (`while_down` runs then) and returns once it is set again.
fn follows_its_check(tag: &str, ip: &str, check: &str, up: &AtomicBool, while_down: impl FnOnce(&TestServer)) {
    let z = zones(
        tag,
        &format!(
            "zone: r.internal\nvpcs: [vpc-r]\nrecords:\n  - {{ name: web, type: A, value: {ip}, health: {check} }}\n  - {{ name: web, type: A, value: 10.0.5.5 }}\n"
        ),
        "",
    );
    let srv = server(&z);
    std::thread::sleep(ms(INTERVAL_MS * (SUCCESSES + 1)));
    assert_eq!(addresses(&srv, CLIENT, "web.r.internal."), ["10.0.5.5", ip]);
    up.store(false, Ordering::Relaxed);
    until(&srv, "web.r.internal.", ms(INTERVAL_MS * (FAILURES + 1) + 2400), |g| g == ["10.0.5.5"]).expect("a failing check takes it out");
    while_down(&srv);
    up.store(true, Ordering::Relaxed);
    until(&srv, "web.r.internal.", ms(INTERVAL_MS * (SUCCESSES + 1) + 2400), |g| g.len() == 2).expect("a good check brings it back");
}

#[test]
fn an_http_check_follows_the_status_and_explain_shows_it() {
    let p = port();
    let healthy = Arc::new(AtomicBool::new(true));
    let _h = http_server(format!("127.0.66.5:{p}").parse().unwrap(), healthy.clone());
    follows_its_check("http", "127.0.66.5", &format!("http/{p}/healthz"), &healthy, |srv| {
        let text = http(srv.admin.unwrap(), "GET", &format!("/explain?from={CLIENT}&name=web.r.internal.&type=A")).1;
        assert!(
            text.contains(&format!("health http/{p}/healthz: unhealthy")) && text.contains("HTTP 503"),
            "explain shows the state and last result:\n{text}"
        );
    });
}

#[test]
fn a_down_endpoint_zone_leaves_the_endpoint_domain_not_its_zonal_name() {
    let p = port();
    let la = Listener::open(format!("127.0.66.6:{p}").parse().unwrap());
    let lb = Listener::open(format!("127.0.66.7:{p}").parse().unwrap());
    let z = zones(
        "ep-health",
        "zone: r.internal\nvpcs: [vpc-r]\nrecords:\n  - { name: www, type: A, value: 10.9.9.9 }\n",
        &format!(
            "endpoints:\n  - id: ep-r2\n    service: com.example.svc\n    region: cn-r\n    vpc: vpc-r\n    zones:\n\
             \x20     - {{ zone: cn-r-a, ip: 127.0.66.6, health: tcp/{p} }}\n\
             \x20     - {{ zone: cn-r-b, ip: 127.0.66.7, health: tcp/{p} }}\n"
        ),
    );
    let srv = server(&z);
    let body = http(srv.admin.unwrap(), "GET", "/zones").1;
    let names: Vec<String> =
        body.split("\"name\":\"").skip(1).map(|s| s.split('"').next().unwrap().to_string()).filter(|n| n.starts_with("ep-r2")).collect();
    let domain = names.iter().find(|n| n.starts_with("ep-r2.")).unwrap_or_else(|| panic!("{body}")).clone();
    let zonal_a = names.iter().find(|n| n.starts_with("ep-r2-cn-r-a.")).unwrap_or_else(|| panic!("{body}")).clone();
    std::thread::sleep(ms(INTERVAL_MS * (SUCCESSES + 1)));
    assert_eq!(addresses(&srv, CLIENT, &domain), ["127.0.66.6", "127.0.66.7"]);
    la.close();
    until(&srv, &domain, ms(INTERVAL_MS * (FAILURES + 1) + 2400), |g| g == ["127.0.66.7"])
        .expect("the endpoint domain drops the down zone");
    assert_eq!(addresses(&srv, CLIENT, &zonal_a), ["127.0.66.6"], "the zonal name is that zone's own: it keeps its address");
    drop(lb);
}

#[test]
fn a_reload_keeps_the_state_of_unchanged_targets_and_a_changed_one_starts_unknown() {
    let p = port();
    // 127.0.66.8 has no listener (it goes down); 127.0.66.9 has one.
    let _up = Listener::open(format!("127.0.66.9:{p}").parse().unwrap());
    let zone = |port8: u16, extra: &str| {
        format!(
            "zone: r.internal\nvpcs: [vpc-r]\nrecords:\n  - {{ name: db, type: A, value: 127.0.66.8, health: tcp/{port8} }}\n  - {{ name: db, type: A, value: 127.0.66.9, health: tcp/{p} }}\n{extra}"
        )
    };
    let z = zones("reload", &zone(p, ""), "");
    std::fs::write(
        z.join("other.internal.yaml"),
        "zone: other.internal\nvpcs: [vpc-r]\nrecords:\n  - { name: a, type: A, value: 10.0.9.1 }\n",
    )
    .unwrap();
    let srv = server(&z);
    let admin = srv.admin.unwrap();
    until(&srv, "db.r.internal.", ms(INTERVAL_MS * (FAILURES + 1) + 2400), |g| g == ["127.0.66.9"]).expect("127.0.66.8 goes down");
    // Another zone changes; so does this zone's file, but not the target.
    std::fs::write(
        z.join("other.internal.yaml"),
        "zone: other.internal\nvpcs: [vpc-r]\nrecords:\n  - { name: a, type: A, value: 10.0.9.2 }\n",
    )
    .unwrap();
    std::fs::write(z.join("r.internal.yaml"), zone(p, "  - { name: new, type: A, value: 10.0.9.3 }\n")).unwrap();
    let (code, body) = http(admin, "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    for _ in 0..20 {
        assert_eq!(
            addresses(&srv, CLIENT, "db.r.internal."),
            ["127.0.66.9"],
            "an unchanged target keeps its state across the reload (no flap)"
        );
        std::thread::sleep(ms(10));
    }
    assert_eq!(addresses(&srv, CLIENT, "new.r.internal."), ["10.0.9.3"], "the reload is in force");
    // The target changes (another port): it starts unknown, so answered.
    let p2 = port();
    std::fs::write(z.join("r.internal.yaml"), zone(p2, "")).unwrap();
    let (code, body) = http(admin, "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert_eq!(addresses(&srv, CLIENT, "db.r.internal."), ["127.0.66.8", "127.0.66.9"], "a changed target starts unknown: answered");
    until(&srv, "db.r.internal.", ms(INTERVAL_MS * (FAILURES + 1) + 2400), |g| g == ["127.0.66.9"]).expect("and is checked from then on");
    let m = http(admin, "GET", "/metrics").1;
    assert!(!m.contains(&format!("127.0.66.8 tcp/{p}\"")), "the old target's series is gone: {m}");
    // The table's size waits for a restart, and says so.
    let path = srv.dir.join("pzdns.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("health_checks:\n", "health_checks:\n  max_targets: 10\n")).unwrap();
    let (code, body) = http(admin, "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    let (_, ready) = http(admin, "GET", "/readyz");
    assert!(ready.contains("health_checks.max_targets changed from 4096 to 10"), "{ready}");
}

#[test]
fn check_reports_routing_mistakes_with_their_lines() {
    let z = zones(
        "bad",
        "zone: r.internal\nvpcs: [vpc-r]\nrecords:\n\
         \x20 - { name: a, type: A, value: 10.0.0.1, weight: 5 }\n\
         \x20 - { name: a, type: A, value: 10.0.0.2 }\n\
         \x20 - { name: c, type: CNAME, value: a, weight: 1 }\n\
         \x20 - { name: t, type: TXT, value: x, health: tcp/80 }\n\
         \x20 - { name: h, type: A, value: 10.0.0.3, health: udp/53 }\n\
         \x20 - { name: f, type: A, value: 10.0.0.4, failover: secondary }\n\
         \x20 - { name: w, type: A, value: 10.0.0.5, weight: -1 }\n",
        "",
    );
    let out = pzdns_command().args(["check", "--zones", z.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for (line, what) in [
        (5, "give every record a weight, or none"),
        (6, "cannot be weighted"),
        (7, "health checks go on A and AAAA records"),
        (8, "unknown check `udp`"),
        (9, "needs at least one `failover: primary`"),
        (10, "weight -1 must be from 0"),
    ] {
        assert!(text.contains(&format!("r.internal.yaml:{line}:")) && text.contains(what), "line {line}: {what}\n{text}");
    }
}

/// A UDP DNS responder on `addr` that answers every query (echoing it
/// with QR=1) while `up` holds.
fn dns_responder(addr: SocketAddr, up: Arc<AtomicBool>) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let sock = std::net::UdpSocket::bind(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !s.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf)
                && n >= 12
                && up.load(Ordering::Relaxed)
            {
                buf[2] |= 0x80;
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
    (stop, t)
}

#[test]
fn a_dns_check_wants_any_reply() {
    let p = port();
    let up = Arc::new(AtomicBool::new(true));
    let (stop, t) = dns_responder(format!("127.0.66.10:{p}").parse().unwrap(), up.clone());
    follows_its_check("dns", "127.0.66.10", &format!("dns/{p}"), &up, |_| {});
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}

/// A routed set holds at most 256 records (the answer path picks among
/// them with a fixed-size mask): 256 load, 257 are refused with the line.
#[test]
fn a_routed_set_holds_at_most_256_records() {
    for (n, ok) in [(256usize, true), (257, false)] {
        let values: Vec<String> = (0..n).map(|i| format!("10.1.{}.{}", i / 256, i % 256)).collect();
        let z = zones(
            &format!("max-{n}"),
            &format!(
                "zone: r.internal\nvpcs: [vpc-r]\nrecords:\n  - {{ name: big, type: A, value: [{}], weight: 1 }}\n",
                values.join(", ")
            ),
            "",
        );
        let out = pzdns_command().args(["check", "--zones", z.to_str().unwrap()]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{n} records: {text}");
        if !ok {
            assert!(text.contains("r.internal.yaml:4:") && text.contains("holds at most 256 records"), "{text}");
        }
    }
}
