//! Operating pzdns (SPEC.md §4): live reload under load, the admin API,
//! metrics, readiness and the query log, against the real binary.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const VPCS: &str = "vpcs:\n  - { id: vpc-one, cidrs: [127.10.1.0/24] }\n  - { id: vpc-two, cidrs: [127.10.2.0/24] }\n";

/// A zone whose single answer tells which version is in force. An invalid
/// version carries a stray key *and* its own address, so that serving it by
/// mistake would show.
fn zone_yaml(version: u32, valid: bool) -> String {
    let stray = if valid { "" } else { "colour: red\n" };
    format!("zone: reload.test\nvpcs: [vpc-one, vpc-two]\n{stray}records:\n  - {{ name: v, type: A, value: 10.0.{version}.1 }}\n")
}

fn write_atomically(path: &Path, text: &str) {
    // As editors and git do: write aside, then rename over.
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A git-sync-like layout: base/rev-N/ holds the files, base/zones is a
/// symlink to the current revision, swapped atomically.
struct Repo {
    base: PathBuf,
    rev: u32,
}

impl Repo {
    fn new() -> Repo {
        let base = std::env::temp_dir().join(format!("pzdns-repo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let mut r = Repo { base, rev: 0 };
        r.swap_in(&zone_yaml(1, true));
        r
    }
    fn link(&self) -> PathBuf {
        self.base.join("zones")
    }
    fn current(&self) -> PathBuf {
        self.base.join(format!("rev-{}", self.rev))
    }
    /// A new revision directory, then the symlink swapped over (rename is atomic).
    fn swap_in(&mut self, zone: &str) {
        self.rev += 1;
        let d = self.current();
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("vpcs.yaml"), VPCS).unwrap();
        std::fs::write(d.join("reload.test.yaml"), zone).unwrap();
        let tmp = self.base.join("zones.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&d, &tmp).unwrap();
        std::fs::rename(&tmp, self.link()).unwrap();
    }
    /// An in-place edit of the current revision.
    fn edit(&self, zone: &str) {
        write_atomically(&self.current().join("reload.test.yaml"), zone);
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// The version a reply carries (the third octet of its one A record).
fn version_of(m: &Message) -> Option<u32> {
    match (m.metadata.response_code, m.answers.as_slice()) {
        (ResponseCode::NoError, [a]) => match &a.data {
            hickory_proto::rr::RData::A(ip) => Some(ip.0.octets()[2] as u32),
            _ => None,
        },
        _ => None,
    }
}

/// Longer than any reload of these small trees takes: only a hang gets here.
const RELOAD_HANG: Duration = Duration::from_secs(60);

#[test]
fn reload_under_load_never_fails_a_query() {
    let mut repo = Repo::new();
    let cfg =
        format!("listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {}\nadmin:\n  listen: 127.0.0.1:0\n", repo.link().display());
    let srv = TestServer::start(Path::new("."), &cfg);
    let dns = srv.addrs[0];
    let admin = srv.admin.unwrap();

    // Versions that may legitimately be seen, and the newest one seen.
    let allowed = Arc::new(Mutex::new(HashSet::from([1u32])));
    let newest = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(Vec::<String>::new())));
    let clients: Vec<_> = ["127.10.1.7", "127.10.2.7"]
        .into_iter()
        .map(|src| {
            let (allowed, newest, stop, sent, failed) = (allowed.clone(), newest.clone(), stop.clone(), sent.clone(), failed.clone());
            std::thread::spawn(move || {
                let sock = UdpSocket::bind((src, 0)).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let q = query("v.reload.test.", RecordType::A, None);
                    sock.send_to(&q.to_vec().unwrap(), dns).unwrap();
                    sent.fetch_add(1, Ordering::Relaxed);
                    let r = loop {
                        match sock.recv_from(&mut buf) {
                            Ok((n, _)) => match Message::from_vec(&buf[..n]) {
                                Ok(m) if m.metadata.id == q.metadata.id => break Some(m),
                                _ => continue,
                            },
                            Err(_) => break None,
                        }
                    };
                    match r.as_ref().and_then(version_of) {
                        Some(v) if allowed.lock().unwrap().contains(&v) => {
                            newest.fetch_max(v as u64, Ordering::Relaxed);
                        }
                        Some(v) => failed.lock().unwrap().push(format!("{src}: version {v} was never valid")),
                        None => failed.lock().unwrap().push(format!("{src}: no answer or a wrong one: {r:?}")),
                    }
                }
            })
        })
        .collect();

    let scrape = || http(admin, "GET", "/metrics").1;
    let mut visible_after = Vec::new();
    let mut last_valid = 1u32;
    for v in 2..=13u32 {
        let valid = v % 3 != 0; // every third version is invalid
        if valid {
            allowed.lock().unwrap().insert(v);
        }
        let m = scrape();
        let (successes_before, failures_before) =
            (metric(&m, "pzdns_reloads_total{result=\"success\"}"), metric(&m, "pzdns_reloads_total{result=\"failure\"}"));
        let t = Instant::now();
        // Alternate in-place edits and whole-directory swaps.
        if v % 2 == 0 {
            repo.edit(&zone_yaml(v, valid))
        } else {
            repo.swap_in(&zone_yaml(v, valid))
        }
        // Waits on the server's own count of reloads, not a fixed time: a
        // SCHED_IDLE reload runs on the CPU time the answering leaves, and
        // the clients here keep it busy. The bound only catches a hang.
        let reloaded = |label: &str, before: f64| {
            while metric(&scrape(), &format!("pzdns_reloads_total{{result=\"{label}\"}}")) <= before {
                assert!(t.elapsed() < RELOAD_HANG, "version {v}: no reload ({label}) after {RELOAD_HANG:?}: {}", srv.stderr());
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        if valid {
            reloaded("success", successes_before);
            // Swapped in: the next answer after the swap carries it.
            while newest.load(Ordering::Relaxed) < v as u64 {
                assert!(t.elapsed() < RELOAD_HANG, "version {v} loaded but not served: {}", srv.stderr());
                std::thread::sleep(Duration::from_millis(10));
            }
            visible_after.push(t.elapsed());
            last_valid = v;
        } else {
            reloaded("failure", failures_before);
            let (code, body) = http(admin, "GET", "/readyz");
            assert_eq!(code, 200, "still ready: the old data serves");
            assert!(body.contains("last reload failed") && body.contains("unknown field `colour`"), "{body}");
            assert_eq!(newest.load(Ordering::Relaxed), last_valid as u64, "the old data keeps serving");
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    eprintln!("sent {sent} queries; valid versions visible after {visible_after:?}");
    assert!(failed.is_empty(), "{} failed of {sent}: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    assert!(sent > 2000, "a real load: {sent} queries");
    let m = scrape();
    assert!(metric(&m, "pzdns_reloads_total{result=\"success\"}") >= 9.0, "{m}");
    assert_eq!(metric(&m, "pzdns_reloads_total{result=\"failure\"}"), 4.0);
}

#[test]
fn metrics_move_with_traffic_and_reloads() {
    let cfg = "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: 127.0.0.1:0\n";
    let srv = TestServer::start(Path::new(RULES_ZONES), cfg);
    let admin: SocketAddr = srv.admin.unwrap();
    let (code, body) = http(admin, "GET", "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let m0 = http(admin, "GET", "/metrics").1;
    assert_eq!(metric(&m0, "pzdns_data_generation"), 1.0);
    assert!(metric(&m0, "pzdns_records") > 100.0);
    assert!(m0.contains(concat!("pzdns_build_info{version=\"", env!("CARGO_PKG_VERSION"), "\",commit=\"")), "{m0}");
    // The fixture lives in this git checkout: its commit is exported.
    if std::path::Path::new(".git").exists() {
        assert!(m0.contains("pzdns_data_commit_info{commit=\""), "{m0}");
    }
    for _ in 0..5 {
        udp(srv.addrs[0], "127.1.0.5", &query("www.example.test.", RecordType::A, None));
    }
    udp(srv.addrs[0], "127.1.0.5", &query("nope.example.test.", RecordType::A, None));
    udp(srv.addrs[0], "127.0.0.1", &query("www.example.test.", RecordType::A, None));
    let m = http(admin, "GET", "/metrics").1;
    assert_eq!(metric(&m, "pzdns_queries_total{vpc=\"vpc-a\",rcode=\"NOERROR\",source=\"zone\"}"), 5.0, "{m}");
    assert_eq!(metric(&m, "pzdns_queries_total{vpc=\"vpc-a\",rcode=\"NXDOMAIN\",source=\"zone\"}"), 1.0);
    assert_eq!(metric(&m, "pzdns_queries_total{vpc=\"unknown\",rcode=\"REFUSED\",source=\"refused\"}"), 1.0);
    assert_eq!(metric(&m, "pzdns_query_duration_seconds_count"), 7.0);
    // A reload through the API moves the generation and the success counter.
    let (code, body) = http(admin, "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "reloaded: generation 2\n");
    let m = http(admin, "GET", "/metrics").1;
    assert_eq!(metric(&m, "pzdns_data_generation"), 2.0);
    assert_eq!(metric(&m, "pzdns_reloads_total{result=\"success\"}"), 2.0, "start + API");
    // /zones and /explain.
    let (code, z) = http(admin, "GET", "/zones");
    assert_eq!(code, 200);
    let z: serde_json::Value = serde_json::from_str(&z).unwrap();
    assert_eq!(z["generation"], 2);
    assert!(
        z["zones"].as_array().unwrap().iter().any(|x| x["name"] == "example.test." && x["vpcs"] == serde_json::json!(["vpc-a", "vpc-c"])),
        "{z}"
    );
    let (code, e) = http(admin, "GET", "/explain?from=127.1.0.5&name=alias.example.test&type=A");
    assert_eq!(code, 200);
    assert!(e.contains("alias.example.test. is a CNAME → follow www.example.test."), "{e}");
    assert_eq!(http(admin, "GET", "/explain?name=x").0, 400);
}

/// A zones checkout with local changes (a file edited, or new and not
/// ignored) is served as it is on disk, so /readyz, /zones and the commit
/// metric say "dirty" beside the commit; committed, it is clean again.
#[test]
fn a_checkout_with_local_changes_is_shown_dirty() {
    let Some(git) = tool("git") else { return };
    let dir = std::env::temp_dir().join(format!("pzdns-dirty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vpcs.yaml"), VPCS).unwrap();
    std::fs::write(dir.join("reload.test.yaml"), zone_yaml(1, true)).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new(&git)
            .args(["-c", "user.name=pzdns test", "-c", "user.email=test@pzdns.invalid", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(&dir)
            // The tester's own git configuration plays no part.
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "zones"]);
    let cfg = "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: 127.0.0.1:0\n";
    let srv = TestServer::start(&dir, cfg);
    let admin = srv.admin.unwrap();
    // What the three places say, after a reload that saw the tree as it is now.
    let shown = |reload: bool| {
        if reload {
            let (code, body) = http(admin, "POST", "/reload");
            assert_eq!(code, 200, "{body}");
        }
        let z: serde_json::Value = serde_json::from_str(&http(admin, "GET", "/zones").1).unwrap();
        let ready = http(admin, "GET", "/readyz").1;
        let metrics = http(admin, "GET", "/metrics").1;
        let series: Vec<String> = metrics.lines().filter(|l| l.starts_with("pzdns_data_commit_info{")).map(str::to_string).collect();
        (z["git_commit"].clone(), z["git_dirty"].clone(), ready.lines().next().unwrap_or("").to_string(), series)
    };
    let clean = |commit: &str, (c, dirty, ready, series): (serde_json::Value, serde_json::Value, String, Vec<String>)| {
        assert_eq!((c.as_str(), dirty.as_bool()), (Some(commit), Some(false)), "/zones");
        assert!(ready.ends_with(&format!(", commit {commit}")), "/readyz: {ready}");
        assert_eq!(series, [format!("pzdns_data_commit_info{{commit=\"{commit}\",dirty=\"false\"}} 1")]);
    };
    let dirty = |commit: &str, (c, dirty, ready, series): (serde_json::Value, serde_json::Value, String, Vec<String>)| {
        assert_eq!((c.as_str(), dirty.as_bool()), (Some(commit), Some(true)), "/zones");
        assert!(ready.ends_with(&format!(", commit {commit} with local changes (dirty)")), "/readyz: {ready}");
        assert_eq!(series, [format!("pzdns_data_commit_info{{commit=\"{commit}\",dirty=\"true\"}} 1")]);
    };
    let first = git(&["rev-parse", "HEAD"]);
    clean(&first, shown(false));
    // A tracked file edited: served, not committed.
    std::fs::write(dir.join("reload.test.yaml"), zone_yaml(2, true)).unwrap();
    dirty(&first, shown(true));
    git(&["commit", "-q", "-a", "-m", "v2"]);
    let second = git(&["rev-parse", "HEAD"]);
    clean(&second, shown(true));
    // A new zone file that git does not track is served too.
    std::fs::write(dir.join("new.test.yaml"), "zone: new.test\nvpcs: [vpc-one]\nrecords:\n  - { name: n, type: A, value: 10.1.1.1 }\n")
        .unwrap();
    dirty(&second, shown(true));
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn readyz_is_false_until_the_first_load() {
    // A data set big enough that loading it takes a moment.
    let dir = std::env::temp_dir().join(format!("pzdns-big-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vpcs.yaml"), VPCS).unwrap();
    let mut z = String::from("zone: big.test\nvpcs: [vpc-one]\nrecords:\n");
    for i in 0..150_000u32 {
        z.push_str(&format!("  - {{ name: h{i}, type: A, value: 10.{}.{}.{} }}\n", i >> 16, (i >> 8) & 255, i & 255));
    }
    std::fs::write(dir.join("big.test.yaml"), z).unwrap();
    let cfg = "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: 127.0.0.1:0\n";
    let mut srv = TestServer::spawn(&dir, cfg);
    let t = Instant::now();
    // The admin port the server bound, from its log line (before the data
    // loads there is no ready file; a port picked free beforehand could be
    // taken by then).
    let admin: SocketAddr = loop {
        let log = srv.stderr();
        if let Some(a) = log.lines().find(|l| l.contains("admin HTTP listening")).and_then(|l| l.split("address=").nth(1)) {
            break a.trim().parse().unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{log}");
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut seen_not_ready = false;
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&admin, Duration::from_millis(200)) {
            drop(s.set_read_timeout(None));
            let _ = &mut s;
            let (code, body) = http(admin, "GET", "/readyz");
            if code == 503 {
                assert!(body.contains("not ready"), "{body}");
                seen_not_ready = true;
            } else {
                assert_eq!(code, 200, "{body}");
                break;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(120), "{}", srv.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(seen_not_ready, "/readyz answered 503 while the data was loading");
    srv.wait_ready(Duration::from_secs(30));
    let r = udp(srv.addrs[0], "127.10.1.9", &query("h149999.big.test.", RecordType::A, None));
    assert_eq!(lines(&r.answers), ["h149999.big.test. A 10.2.73.239"]);
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn query_log_writes_one_json_line_per_query() {
    let cfg = "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: \"off\"\nquery_log: true\nlog_format: json\n";
    let srv = TestServer::start(Path::new(RULES_ZONES), cfg);
    udp(srv.addrs[0], "127.1.0.5", &query("www.example.test.", RecordType::A, None));
    let t = Instant::now();
    let line = loop {
        if let Some(l) = srv.stderr().lines().find(|l| l.contains("\"target\":\"pzdns::query\"")) {
            break l.to_string();
        }
        assert!(t.elapsed() < Duration::from_secs(3), "no query log line: {}", srv.stderr());
        std::thread::sleep(Duration::from_millis(20));
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let f = &v["fields"];
    assert_eq!(f["vpc"], "vpc-a", "{line}");
    assert_eq!(f["name"], "www.example.test.");
    assert_eq!(f["qtype"], "A");
    assert_eq!(f["rcode"], "NOERROR");
    assert_eq!(f["source"], "zone");
    assert!(f["client"].as_str().unwrap().starts_with("127.1.0.5:"));
    assert!(f["us"].as_u64().is_some());
    assert!(v["timestamp"].is_string());
}

#[test]
fn sighup_reloads() {
    let cfg = "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: 127.0.0.1:0\n";
    let srv = TestServer::start(Path::new(RULES_ZONES), cfg);
    let admin = srv.admin.unwrap();
    let generation = || metric(&http(admin, "GET", "/metrics").1, "pzdns_data_generation");
    assert_eq!(generation(), 1.0);
    // No file changed: only the signal can bump the generation.
    unsafe {
        libc::kill(srv.pid(), libc::SIGHUP);
    }
    let t = Instant::now();
    // The log line is written by the log's own thread, after the metric moved.
    while generation() < 2.0 || !srv.stderr().contains("trigger=\"sighup\"") {
        assert!(t.elapsed() < Duration::from_secs(5), "SIGHUP did not reload: {}", srv.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still answering.
    let r = udp(srv.addrs[0], "127.1.0.5", &query("www.example.test.", RecordType::A, None));
    assert_eq!(r.answers.len(), 2);
}

/// An editor that truncates a zone file and writes it again in two steps,
/// with a pause shorter than the settle time between them: the watch waits
/// for the tree to be quiet, so no query ever sees the half-written file.
#[test]
fn a_file_caught_mid_write_is_never_served() {
    let dir = std::env::temp_dir().join(format!("pzdns-midwrite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vpcs.yaml"), VPCS).unwrap();
    let names: Vec<String> = (0..6).map(|i| format!("h{i}")).collect();
    let zone = |n: usize, version: u32| {
        let mut t = String::from("zone: mid.test\nvpcs: [vpc-one]\nrecords:\n");
        for name in &names[..n] {
            t.push_str(&format!("  - {{ name: {name}, type: A, value: 10.0.{version}.1 }}\n"));
        }
        t
    };
    let file = dir.join("mid.test.yaml");
    std::fs::write(&file, zone(6, 1)).unwrap();
    let cfg = "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: \"off\"\n";
    let srv = TestServer::start(&dir, cfg);
    let addr = srv.addrs[0];
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(Vec::new())));
    let asker = {
        let (stop, seen, bad, names) = (stop.clone(), seen.clone(), bad.clone(), names.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            while !stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(20) {
                for n in &names {
                    let r = udp(addr, "127.10.1.5", &query(&format!("{n}.mid.test."), RecordType::A, None));
                    seen.fetch_add(1, Ordering::Relaxed);
                    if r.metadata.response_code != ResponseCode::NoError || r.answers.is_empty() {
                        bad.lock().unwrap().push(format!("{n}: {:?}", r.metadata.response_code));
                    }
                }
            }
        })
    };
    for version in 2..5u32 {
        // In place, as some editors do: truncate and write half, pause, write the rest.
        let full = zone(6, version);
        let half = zone(1, version);
        std::fs::write(&file, &half).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        std::fs::write(&file, &full).unwrap();
        // Until this version answers.
        let t = Instant::now();
        loop {
            let r = udp(addr, "127.10.1.5", &query("h5.mid.test.", RecordType::A, None));
            if lines(&r.answers).iter().any(|l| l.ends_with(&format!("10.0.{version}.1"))) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "version {version} never loaded: {}", srv.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    stop.store(true, Ordering::Relaxed);
    asker.join().unwrap();
    let bad = bad.lock().unwrap();
    assert!(seen.load(Ordering::Relaxed) > 100, "queries were asked throughout");
    assert!(bad.is_empty(), "{} answers saw the partial file: {:?}", bad.len(), &bad[..bad.len().min(5)]);
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The scheduling policy and nice value of each thread of `pid` named
/// `name` (from /proc/PID/task/TID/stat: fields 19 and 41).
#[cfg(target_os = "linux")]
fn thread_sched(pid: i32, name: &str) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap();
        // Fields after the command name, which ends at the last ')': field 3 is the first.
        let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        out.push((f[41 - 3].parse().unwrap(), f[19 - 3].parse().unwrap()));
    }
    out
}

/// The nice value of process `pid` (its main thread).
fn process_nice(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(19 - 3).unwrap().parse().unwrap()
}

/// Reload threads yield to the threads that answer (docs/REFERENCE.md,
/// `reload.priority`): SCHED_IDLE by default, the process's nice +10 with
/// `low`, whatever nice the process itself runs at (`nice -n 15 cargo
/// test`); the threads that answer keep the normal policy.
#[cfg(target_os = "linux")]
#[test]
fn reload_threads_yield_to_answering() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;
    for (extra, low) in [("", false), ("reload:\n  priority: low\n", true)] {
        let cfg = format!("listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n{extra}");
        let mut srv = TestServer::start(Path::new(RULES_ZONES), &cfg);
        let base = process_nice(srv.pid());
        let want = if low { (SCHED_OTHER, (base + 10).min(19)) } else { (SCHED_IDLE, base) };
        let (code, body) = http(srv.admin.unwrap(), "POST", "/reload");
        assert_eq!(code, 200, "{body}");
        let reload = thread_sched(srv.pid(), "pzdns-reload-0");
        assert_eq!(reload, vec![want], "{extra:?} in a process at nice {base}");
        let answering = thread_sched(srv.pid(), "tokio-rt-worker");
        assert!(answering.contains(&(SCHED_OTHER, base)), "{answering:?}");
        let r = udp(srv.addrs[0], "127.1.0.5", &query("www.example.test.", RecordType::A, None));
        assert_eq!((r.response_code, r.answers.len()), (ResponseCode::NoError, 2));
        // A change of priority waits for a restart.
        if !low {
            let path = srv.dir.join("pzdns.yaml");
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("{text}reload:\n  priority: low\n")).unwrap();
            let (code, body) = http(srv.admin.unwrap(), "POST", "/reload");
            assert_eq!(code, 200, "{body}");
            let (_, ready) = http(srv.admin.unwrap(), "GET", "/readyz");
            assert!(ready.contains("reload.priority changed from idle to low"), "{ready}");
            assert_eq!(thread_sched(srv.pid(), "pzdns-reload-0"), vec![(SCHED_IDLE, base)]);
        }
        srv.stop();
    }
}

/// In the child before exec: a seccomp filter refusing `sched_setattr` and
/// `setpriority` with EPERM, as systemd's `SystemCallFilter=~@resources`
/// (with `SystemCallErrorNumber=EPERM`) does.
#[cfg(target_os = "linux")]
fn refuse_priority_calls() -> std::io::Result<()> {
    use libc::{sock_filter, sock_fprog};
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS: A = seccomp_data.nr (offset 0)
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    let filter = [
        op(LD_W_ABS, 0, 0, 0),
        op(JEQ_K, 2, 0, libc::SYS_sched_setattr as u32),
        op(JEQ_K, 1, 0, libc::SYS_setpriority as u32),
        op(RET_K, 0, 0, RET_ALLOW),
        op(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
    ];
    let prog = sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut sock_filter };
    // SAFETY: prctl reads the program, which outlives the call; the filter
    // only applies to this (child) process.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const sock_fprog) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// When the system refuses to lower the reload threads (a seccomp filter
/// as in a hardened systemd unit), the log says so once, at WARN.
#[cfg(target_os = "linux")]
#[test]
fn a_refused_priority_change_is_logged_at_warn_once() {
    use std::os::unix::process::CommandExt;
    let cfg = "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: 127.0.0.1:0\n";
    let mut srv = TestServer::spawn_with(Path::new(RULES_ZONES), cfg, |cmd| {
        // SAFETY: the closure only calls prctl (async-signal-safe).
        unsafe { cmd.pre_exec(refuse_priority_calls) };
    });
    srv.wait_ready(Duration::from_secs(20));
    for _ in 0..2 {
        let (code, body) = http(srv.admin.unwrap(), "POST", "/reload");
        assert_eq!(code, 200, "{body}");
    }
    let base = process_nice(srv.pid());
    assert_eq!(thread_sched(srv.pid(), "pzdns-reload-0"), vec![(0, base)], "the filter did refuse");
    srv.stop();
    let log = srv.stderr();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("cannot lower the priority")).collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(warned[0].contains("WARN") && warned[0].contains("SystemCallFilter"), "{}", warned[0]);
}

/// The systemd unit's system call filter, evaluated as systemd does (the
/// first line an allow list, later lines taking from or adding to it),
/// allows what pzdns calls to lower its reload threads.
#[test]
fn the_systemd_unit_allows_lowering_the_reload_threads() {
    let Some(analyze) = tool("systemd-analyze") else { return };
    let unit = std::fs::read_to_string("deploy/systemd/pzdns.service").unwrap();
    let expand = |item: &str| if item.starts_with('@') { expand_group(&analyze, item) } else { vec![item.to_string()] };
    let mut allowed: HashSet<String> = HashSet::new();
    let mut first = true;
    for line in unit.lines().filter_map(|l| l.strip_prefix("SystemCallFilter=")) {
        let (deny, list) = match line.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        assert!(!(first && deny), "the unit's filter starts with an allow list");
        first = false;
        for item in list.split_whitespace() {
            for call in expand(item) {
                if deny {
                    allowed.remove(&call);
                } else {
                    allowed.insert(call);
                }
            }
        }
    }
    for call in ["sched_setattr", "setpriority"] {
        assert!(allowed.contains(call), "deploy/systemd/pzdns.service refuses {call}");
    }
}

/// The system calls of a `systemd-analyze` group, groups in it expanded.
fn expand_group(analyze: &Path, group: &str) -> Vec<String> {
    let out = std::process::Command::new(analyze).args(["syscall-filter", group]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut calls = Vec::new();
    for l in text.lines().skip(1).map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        calls.extend(if l.starts_with('@') { expand_group(analyze, l) } else { vec![l.to_string()] });
    }
    calls
}

/// A query a policy drops gets no response, and is counted and logged as
/// DROPPED, not as a NOERROR of size 0.
#[test]
fn a_dropped_query_is_counted_and_logged_as_dropped() {
    let dir = std::env::temp_dir().join(format!("pzdns-drop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vpcs.yaml"), VPCS).unwrap();
    std::fs::write(dir.join("p.yaml"), "policy: p\nrules:\n  - { name: gone.test, action: drop }\n").unwrap();
    let cfg = "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: 127.0.0.1:0\nquery_log: true\n";
    let srv = TestServer::start(&dir, cfg);
    let sock = UdpSocket::bind("127.10.1.7:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    sock.send_to(&query("gone.test.", RecordType::A, None).to_vec().unwrap(), srv.addrs[0]).unwrap();
    assert!(sock.recv_from(&mut [0u8; 512]).is_err(), "no response");
    let counted = "pzdns_queries_total{vpc=\"vpc-one\",rcode=\"DROPPED\",source=\"policy\"}";
    let t = Instant::now();
    while metric(&http(srv.admin.unwrap(), "GET", "/metrics").1, counted) < 1.0 {
        assert!(t.elapsed() < RELOAD_HANG, "{}", http(srv.admin.unwrap(), "GET", "/metrics").1);
        std::thread::sleep(Duration::from_millis(10));
    }
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    assert_eq!(metric(&m, "pzdns_queries_total{vpc=\"vpc-one\",rcode=\"NOERROR\",source=\"policy\"}"), 0.0, "{m}");
    let log = srv.stderr();
    let line = log.lines().find(|l| l.contains("pzdns::query") && l.contains("gone.test")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("rcode=\"DROPPED\"") || line.contains("rcode=DROPPED"), "{line}");
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}
