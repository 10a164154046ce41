//! The operator's controls on a running server: the configuration read
//! again on reload (and what needs a restart said so), the cache looked
//! into and flushed, metrics a scraper of either format reads, build
//! information, warnings for failing upstreams that do not flood the log.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::support::upstream::{Behavior, FakeUpstream};
use crate::support::*;

const VPC_A: &str = "127.1.0.5";

fn config(upstream: SocketAddr, extra: &str) -> String {
    // The upstreams are fakes that sign nothing: validation off, in every rewrite too.
    format!(
        "listen:\n  - address: 127.0.0.1:0\nupstreams: [{upstream}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n{extra}resolver:\n  dnssec: off\n"
    )
}

/// Rewrites the server's configuration file in one step (as an editor
/// or a config-management tool that renames into place does).
fn rewrite_config(srv: &TestServer, text: &str) {
    let zones = std::fs::canonicalize(RULES_ZONES).unwrap();
    let tmp = srv.dir.join("pzdns.yaml.new");
    std::fs::write(&tmp, text.replace("{ZONES}", zones.to_str().unwrap())).unwrap();
    std::fs::rename(&tmp, srv.dir.join("pzdns.yaml")).unwrap();
}

fn generation(srv: &TestServer) -> u64 {
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    metric(&m, "pzdns_data_generation") as u64
}

fn wait_generation(srv: &TestServer, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while generation(srv) < at_least {
        assert!(Instant::now() < deadline, "no reload to generation {at_least}: {}", srv.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ask(server: SocketAddr, name: &str) -> Option<Message> {
    let q = query(name, RecordType::A, Some(1232));
    udp_raw(server, VPC_A.parse().unwrap(), &q.to_vec().unwrap()).map(|r| Message::from_vec(&r).unwrap())
}

#[test]
fn sighup_with_new_upstreams_moves_traffic_and_loses_no_query() {
    let (old, new) = (FakeUpstream::start("127.0.0.1"), FakeUpstream::start("127.0.0.1"));
    let srv = TestServer::start(Path::new(RULES_ZONES), &config(old.addr, ""));
    let server = srv.addrs[0];
    // Queries go on from another thread across the reload, each a new
    // name (no cache hit), each must be answered.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut sent, mut answered) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                if ask(server, &format!("u{sent}.flood.example.")).is_some_and(|m| m.metadata.response_code == ResponseCode::NoError) {
                    answered += 1;
                }
            }
            (sent, answered)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(old.queries() > 0, "the first upstream serves before the reload");
    rewrite_config(&srv, &config(new.addr, ""));
    unsafe {
        libc::kill(srv.pid(), libc::SIGHUP);
    }
    wait_generation(&srv, 2);
    std::thread::sleep(Duration::from_millis(200));
    let old_after = old.queries();
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, answered) = asker.join().unwrap();
    assert_eq!(answered, sent, "every query answered across the reload");
    assert!(new.queries() > 0, "the new upstream gets the traffic");
    assert_eq!(old.queries(), old_after, "the old upstream gets nothing once the reload is in force");
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    assert!(m.contains(&format!("pzdns_upstream_requests_total{{upstream=\"{}\",outcome=\"ok\"}}", new.addr)), "{m}");
}

#[test]
fn settings_apply_on_reload_and_listener_changes_are_reported() {
    let up = FakeUpstream::start("127.0.0.1");
    let srv = TestServer::start(Path::new(RULES_ZONES), &config(up.addr, ""));
    let admin = srv.admin.unwrap();
    // query_log turned on, and a listener added: the first applies, the second waits for a restart.
    let changed = format!(
        "listen:\n  - address: 127.0.0.1:0\n  - address: 127.0.0.77:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nquery_log: true\nadmin:\n  listen: 127.0.0.1:0\n",
        up.addr
    );
    rewrite_config(&srv, &changed);
    let (status, body) = http(admin, "POST", "/reload");
    assert_eq!(status, 200, "{body}");
    let (status, ready) = http(admin, "GET", "/readyz");
    assert_eq!(status, 200);
    assert!(ready.contains("restart needed: listen changed"), "{ready}");
    assert!(ready.contains("loaded 20"), "a readable time: {ready}");
    ask(srv.addrs[0], "www.public.example.").expect("the old listener still serves");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !srv.stderr().contains("pzdns::query") {
        assert!(Instant::now() < deadline, "query_log applies without a restart: {}", srv.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(srv.stderr().contains("restarted"), "the log says a restart is needed: {}", srv.stderr());
}

#[test]
fn a_broken_config_on_reload_is_rejected_whole() {
    let up = FakeUpstream::start("127.0.0.1");
    let srv = TestServer::start(Path::new(RULES_ZONES), &config(up.addr, ""));
    let admin = srv.admin.unwrap();
    rewrite_config(&srv, &config(up.addr, "cache:\n  max_entries: lots\n"));
    let (status, body) = http(admin, "POST", "/reload");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("pzdns.yaml:") && body.contains("max_entries"), "path, line and field: {body}");
    let m = http(admin, "GET", "/metrics").1;
    assert_eq!(metric(&m, "pzdns_reloads_total{result=\"failure\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "pzdns_last_reload_succeeded"), 0.0);
    let r = ask(srv.addrs[0], "www.public.example.").expect("still serving");
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
}

/// A configuration file for the CLI naming the admin address `srv` bound
/// (its own file says port 0), with `admin_extra` lines under `admin:`.
fn client_config(srv: &TestServer, admin_extra: &str) -> std::path::PathBuf {
    let p = srv.dir.join("client.yaml");
    std::fs::write(&p, format!("admin:\n  listen: {}\n{admin_extra}", srv.admin.unwrap())).unwrap();
    p
}

fn pzdns(args: &[&str]) -> (Option<i32>, String, String) {
    let out = crate::support::pzdns_command().args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn cache_flush_by_name_sends_the_next_query_upstream() {
    let up = FakeUpstream::start("127.0.0.1");
    let srv = TestServer::start(Path::new(RULES_ZONES), &config(up.addr, ""));
    let admin = srv.admin.unwrap().to_string();
    let server = srv.addrs[0];
    for name in ["www.public.example.", "www.public.example.", "stale.public.example."] {
        ask(server, name).expect("answered");
    }
    let before = up.queries();
    assert_eq!(before, 2, "the repeated name came from the cache");

    let (code, dump, err) = pzdns(&["cache", "dump", "--admin", &admin, "--name", "www.public.example"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(dump.contains("www2.public.example."), "the cached chain is listed: {dump}");
    assert!(dump.contains(" A DO=0 rcode=NOERROR expires in "), "as docs/REFERENCE.md#command-cache shows it: {dump}");
    assert!(!dump.contains("stale.public.example."), "only the name asked: {dump}");
    // A config file names the admin address too.
    let (code, all, err) = pzdns(&["cache", "dump", "--config", client_config(&srv, "").to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(all.contains("stale.public.example."), "{all}");

    let (code, out, err) = pzdns(&["cache", "flush", "--admin", &admin, "--name", "WWW.public.example."]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("flushed 1"), "{out}");
    ask(server, "www.public.example.").expect("answered");
    assert_eq!(up.queries(), before + 1, "after the flush, the name is asked upstream again");
    ask(server, "stale.public.example.").expect("answered");
    assert_eq!(up.queries(), before + 1, "other names stay cached");

    let (status, out) = http(srv.admin.unwrap(), "POST", "/cache/flush?suffix=public.example");
    assert_eq!(status, 200, "{out}");
    assert!(out.contains("flushed 2"), "both names under public.example: {out}");
    let (code, _, err) = pzdns(&["cache", "flush", "--admin", &admin, "--all"]);
    assert_eq!(code, Some(0), "{err}");
    let (_, dump) = http(srv.admin.unwrap(), "GET", "/cache");
    assert!(dump.starts_with("; 0 cached answer(s)"), "{dump}");
    let (status, _) = http(srv.admin.unwrap(), "POST", "/cache/flush?name=a&all");
    assert_eq!(status, 400, "one selector at a time");
    let (code, _, _) = pzdns(&["cache", "flush", "--admin", &admin]);
    assert_eq!(code, Some(2), "flush says what to flush");
}

/// A GET with an Accept header: (content type, body).
fn scrape(addr: SocketAddr, accept: &str) -> (String, String) {
    let mut t = std::net::TcpStream::connect(addr).unwrap();
    write!(t, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    t.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let ctype =
        head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string())).unwrap_or_default();
    (ctype, body.to_string())
}

#[test]
fn metrics_in_either_format_with_build_process_and_upstream_series() {
    let up = FakeUpstream::start("127.0.0.1");
    let srv = TestServer::start(Path::new(RULES_ZONES), &config(up.addr, ""));
    let admin = srv.admin.unwrap();
    // What Prometheus sends: OpenMetrics first.
    let (ctype, om) = scrape(
        admin,
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    );
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    assert!(om.contains("# TYPE pzdns_queries counter"), "{om}");
    // An older scraper, or curl.
    let (ctype, text) = scrape(admin, "text/plain");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
    assert!(text.contains("# TYPE pzdns_reloads_total counter"), "{text}");
    assert!(text.contains("pzdns_reloads_total{result=\"failure\"} 0"), "{text}");
    // Build information names the commit and the compiler.
    let build = text.lines().find(|l| l.starts_with("pzdns_build_info{")).expect("build_info");
    assert!(build.contains("version=\"") && build.contains("commit=\"") && build.contains("rustc=\"rustc "), "{build}");
    assert!(metric(&text, "process_resident_memory_bytes") > 1e6, "{text}");
    assert!(metric(&text, "process_open_fds") > 3.0, "{text}");
    assert!(text.contains("process_cpu_seconds_total "), "{text}");
    // The configured upstream's series exist before its first question.
    let u = up.addr;
    assert!(text.contains(&format!("pzdns_upstream_requests_total{{upstream=\"{u}\",outcome=\"timeout\"}} 0")), "{text}");
    assert!(text.contains(&format!("pzdns_upstream_duration_seconds_count{{upstream=\"{u}\"}} 0")), "{text}");
    ask(srv.addrs[0], "www.public.example.").expect("answered");
    let text = scrape(admin, "text/plain").1;
    assert_eq!(metric(&text, &format!("pzdns_upstream_duration_seconds_count{{upstream=\"{u}\"}}")), 1.0, "{text}");
}

#[test]
fn version_names_the_commit_and_compiler() {
    let (code, out, _) = pzdns(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with(&format!("pzdns {}", env!("CARGO_PKG_VERSION"))), "{out}");
    assert!(out.contains("(commit ") && out.contains("rustc "), "{out}");
}

#[test]
fn with_json_logs_the_cannot_start_line_is_json() {
    let dir = std::env::temp_dir().join(format!("pzdns-json-start-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("pzdns.yaml");
    // A port taken by someone else: the config is fine, the start is not.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let zones = std::fs::canonicalize(RULES_ZONES).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "listen:\n  - address: {}\nupstreams: []\nzones_dir: {}\nadmin:\n  listen: \"off\"\n",
            taken.local_addr().unwrap(),
            zones.display()
        ),
    )
    .unwrap();
    let (code, _, err) = pzdns(&["serve", "--config", cfg.to_str().unwrap(), "--log-format", "json"]);
    assert_eq!(code, Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is JSON ({e}): {last}"));
    assert_eq!(v["level"], "ERROR", "{last}");
    assert!(v["fields"]["message"].as_str().unwrap_or_default().contains("cannot start"), "{last}");
    // A configuration that cannot be read: the same.
    std::fs::write(&cfg, "listen: [\n").unwrap();
    let (code, _, err) = pzdns(&["serve", "--config", cfg.to_str().unwrap(), "--log-format", "json"]);
    assert_eq!(code, Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(serde_json::from_str::<serde_json::Value>(last).is_ok(), "{last}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_upstream_is_logged_at_warn_once_per_interval() {
    let up = FakeUpstream::start("127.0.0.1");
    up.set(Behavior::ServFail);
    let srv = TestServer::start(Path::new(RULES_ZONES), &config(up.addr, ""));
    let server = srv.addrs[0];
    let src: IpAddr = VPC_A.parse().unwrap();
    for i in 0..30 {
        let q = query(&format!("u{i}.flood.example."), RecordType::A, Some(1232));
        let r = Message::from_vec(&udp_raw(server, src, &q.to_vec().unwrap()).expect("answered")).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    }
    assert!(up.queries() > 0);
    let log = srv.stderr();
    let warns: Vec<&str> = log.lines().filter(|l| l.contains("WARN") && l.contains("upstream attempt failed")).collect();
    assert_eq!(warns.len(), 1, "one line for the first failure, the rest counted: {log}");
    assert!(warns[0].contains(&up.addr.to_string()), "{}", warns[0]);
    let servfails = log.lines().filter(|l| l.contains("WARN") && l.contains("answered SERVFAIL")).count();
    assert_eq!(servfails, 1, "{log}");
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    assert!(metric(&m, "pzdns_events_total{event=\"servfail\"}") >= 30.0, "{m}");
}

/// A scratch directory of this test process.
fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-op-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

#[test]
fn with_a_token_file_the_admin_api_needs_the_bearer_token_and_the_cli_sends_it() {
    let up = FakeUpstream::start("127.0.0.1");
    let dir = scratch("token");
    let token_file = dir.join("admin.token");
    // Trimmed: the newline an editor or `echo` leaves is not part of it.
    std::fs::write(&token_file, "  s3cret-token\n").unwrap();
    let extra = format!("  token_file: {}\n", token_file.display());
    let srv = TestServer::start(Path::new(RULES_ZONES), &config(up.addr, &extra));
    let admin = srv.admin.unwrap();
    for (method, path) in [("GET", "/metrics"), ("GET", "/zones"), ("GET", "/cache"), ("POST", "/reload"), ("POST", "/cache/flush?all")] {
        let (status, head, body) = http_with(admin, method, path, "");
        assert_eq!(status, 401, "{method} {path} without a token: {body}");
        assert!(head.to_ascii_lowercase().contains("\r\nwww-authenticate: bearer"), "{head}");
        assert_eq!(http_with(admin, method, path, &bearer("s3cret-tokem")).0, 401, "{method} {path} with a wrong token");
        assert_eq!(http_with(admin, method, path, &bearer("s3cret-token ")).0, 200, "{method} {path} with the token");
    }
    assert_eq!(http_with(admin, "GET", "/metrics", "Authorization: Basic czNjcmV0LXRva2Vu\r\n").0, 401);
    assert_eq!(http_with(admin, "GET", "/metrics", "authorization: bearer s3cret-token\r\n").0, 200, "the scheme is case-insensitive");
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(http(admin, "GET", probe).0, 200, "{probe} stays open to probes");
    }
    // The CLI reads the token from the config (or --token-file) and sends it.
    let cfg = client_config(&srv, &extra);
    let (code, out, err) = pzdns(&["cache", "dump", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    let addr = admin.to_string();
    let (code, _, err) = pzdns(&["cache", "flush", "--all", "--admin", &addr]);
    assert_eq!((code, err.contains("401")), (Some(1), true), "without the token: {err}");
    let (code, out, err) = pzdns(&["cache", "flush", "--all", "--admin", &addr, "--token-file", token_file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    // The file is read again with the config on reload: a new token replaces the old.
    std::fs::write(&token_file, "rotated-token\n").unwrap();
    let (status, _, body) = http_with(admin, "POST", "/reload", &bearer("s3cret-token"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(http_with(admin, "GET", "/metrics", &bearer("s3cret-token")).0, 401, "the old token no longer works");
    assert_eq!(http_with(admin, "GET", "/metrics", &bearer("rotated-token")).0, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_admin_listener_off_loopback_without_a_token_is_refused_at_start_check_and_reload() {
    let dir = scratch("exposed");
    let zones = std::fs::canonicalize(RULES_ZONES).unwrap();
    let cfg = dir.join("pzdns.yaml");
    // 192.0.2.1 (TEST-NET-1) is not an address of this host: were it not
    // refused first, the bind would fail, and nothing is ever exposed.
    let exposed = |admin: &str, extra: &str| {
        format!("listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {}\nadmin:\n  listen: {admin}\n{extra}", zones.display())
    };
    std::fs::write(&cfg, exposed("192.0.2.1:9153", "")).unwrap();
    let said = |err: &str| err.contains("admin.listen 192.0.2.1:9153") && err.contains("admin.token_file") && err.contains("loopback");
    let (code, _, err) = pzdns(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(said(&err), "names both keys and the fix: {err}");
    let (code, out, _) = pzdns(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(said(&out), "{out}");
    // The same address from the flag.
    std::fs::write(&cfg, exposed("127.0.0.1:0", "")).unwrap();
    let (code, _, err) = pzdns(&["serve", "--config", cfg.to_str().unwrap(), "--admin", "192.0.2.1:9153"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(said(&err), "{err}");
    // A reload whose config would expose it is rejected, the old settings keep serving.
    let up = FakeUpstream::start("127.0.0.1");
    let srv = TestServer::start(Path::new(RULES_ZONES), &config(up.addr, ""));
    let admin = srv.admin.unwrap();
    rewrite_config(&srv, &exposed("192.0.2.1:9153", ""));
    let (status, body) = http(admin, "POST", "/reload");
    assert_eq!(status, 422, "{body}");
    assert!(said(&body), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_empty_upstream_list_is_not_blamed_on_resolv_conf() {
    let srv = TestServer::start(
        Path::new(RULES_ZONES),
        &config("127.0.0.1:53".parse().unwrap(), "").replace("upstreams: [127.0.0.1:53]", "upstreams: []"),
    );
    let err = srv.stderr();
    assert!(err.contains("no upstreams"), "{err}");
    assert!(!err.contains("resolv.conf"), "the config gave the empty list; resolv.conf was not asked: {err}");
}

#[test]
fn the_cli_reads_a_chunked_body_split_inside_a_character() {
    // An admin server (played here) whose chunks split "é" (C3 A9) in two.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the request ends with an empty line");
            req.extend_from_slice(&buf[..n]);
        }
        let mut resp = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
        resp.extend_from_slice(b"6\r\n; caf\xc3\r\n");
        resp.extend_from_slice(b"4\r\n\xa9 \xe2\x9c\r\n2\r\n\x93\n\r\n0\r\n\r\n");
        s.write_all(&resp).unwrap();
    });
    let (code, out, err) = pzdns(&["cache", "dump", "--admin", &addr]);
    server.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "; café ✓\n");
}

/// Binding port 53 without the privilege fails with a hint of the three
/// ways to get it. Run as root, the server runs as `nobody`.
#[test]
fn a_privileged_port_without_the_privilege_fails_with_a_hint() {
    use std::os::unix::process::CommandExt;
    let unprivileged_from: u16 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1024);
    if unprivileged_from <= 53 {
        eprintln!("skipped: net.ipv4.ip_unprivileged_port_start is {unprivileged_from}, so anyone may bind port 53");
        return;
    }
    let dir = scratch("port53");
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    std::fs::write(dir.join("zones/vpcs.yaml"), "vpcs: []\n").unwrap();
    let cfg = dir.join("pzdns.yaml");
    std::fs::write(&cfg, "listen:\n  - address: 127.0.0.1:53\nupstreams: []\nzones_dir: zones\nadmin:\n  listen: \"off\"\n").unwrap();
    let mut cmd = crate::support::pzdns_command();
    cmd.args(["serve", "--config", cfg.to_str().unwrap()]);
    // SAFETY: only setgid/setuid, async-signal-safe, in the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::geteuid() == 0 && (libc::setgid(65534) != 0 || libc::setuid(65534) != 0) {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("127.0.0.1:53: Permission denied"), "{err}");
    for hint in ["CAP_NET_BIND_SERVICE", "setcap", "net.ipv4.ip_unprivileged_port_start=53"] {
        assert!(err.contains(hint), "names {hint}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
