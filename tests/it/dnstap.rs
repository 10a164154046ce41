//! dnstap, read back by readers nobody here wrote: `dnstap-read` (BIND's,
//! bind9-dnsutils) on a file pzdns wrote, and on what `fstrm_capture`
//! (fstrm-bin) received on its socket. .ci/run installs both and sets
//! PZDNS_REQUIRE_TOOLS=1, so that a missing tool fails there.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::support::upstream::FakeUpstream;
use crate::support::*;

fn scratch(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Short: a Unix socket path has at most 107 bytes.
    let d = std::env::temp_dir().join(format!("pzdt-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One message as dnstap-read prints it:
/// `date time CQ 127.1.0.5:53763 -> 127.0.0.1:5402 UDP 57b www.example.test/IN/A`.
#[derive(Debug, Clone)]
struct Line {
    kind: String,
    /// The initiator (client, or pzdns for forwarder messages) and the responder.
    from: SocketAddr,
    to: SocketAddr,
    proto: String,
    question: String,
}

/// dnstap-read's one-line-per-message output for `file`.
fn read_tap(reader: &Path, file: &Path) -> Vec<Line> {
    let out = Command::new(reader).arg(file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dnstap-read failed: {}{text}", String::from_utf8_lossy(&out.stderr));
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 9 && (f[4] == "->" || f[4] == "<-"), "a line dnstap-read prints: {l}");
            Line { kind: f[2].into(), from: f[3].parse().unwrap(), to: f[5].parse().unwrap(), proto: f[6].into(), question: f[8].into() }
        })
        .collect()
}

/// The first line of `kind` for `question` (ignoring case: forwarder
/// questions go out with the name in random case, 0x20).
fn find<'a>(lines: &'a [Line], kind: &str, question: &str, proto: &str) -> Option<&'a Line> {
    lines.iter().find(|l| l.kind == kind && l.question.eq_ignore_ascii_case(question) && l.proto == proto)
}

fn server(extra: &str, upstreams: &str, admin: bool) -> TestServer {
    let admin = if admin { "127.0.0.1:0" } else { "\"off\"" };
    TestServer::start(
        Path::new(RULES_ZONES),
        &format!("listen:\n  - address: 127.0.0.1:0\nupstreams: [{upstreams}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: {admin}\n{extra}"),
    )
}

#[test]
fn a_dnstap_file_is_read_back_by_dnstap_read() {
    let Some(reader) = tool("dnstap-read") else { return };
    let up = FakeUpstream::start("127.0.0.1");
    let dir = scratch("file");
    let file = dir.join("pzdns.dnstap");
    let mut srv = server(&format!("dnstap:\n  file: {}\n  identity: replica-7\n", file.display()), &up.addr.to_string(), false);
    let at = srv.addrs[0];
    udp(at, "127.1.0.5", &query("www.example.test.", RecordType::A, Some(1232)));
    tcp(at, "127.1.0.6", &query("www.example.test.", RecordType::AAAA, None));
    // Too big for the upstream's UDP answer: asked again over TCP.
    tcp(at, "127.1.0.7", &query("big.public.example.", RecordType::TXT, Some(1232)));
    // A private apex CNAME whose target is public: only the target goes upstream.
    udp(at, "127.1.0.8", &query("ecs.cn-hangzhou.aliyuncs.com.", RecordType::A, Some(1232)));
    assert!(srv.stop().success(), "{}", srv.stderr());

    let lines = read_tap(&reader, &file);
    let cq = find(&lines, "CQ", "www.example.test/IN/A", "UDP").unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!((cq.from.ip().to_string(), cq.to), ("127.1.0.5".into(), at));
    let cr = find(&lines, "CR", "www.example.test/IN/A", "UDP").unwrap();
    assert_eq!((cr.from, cr.to), (cq.from, at), "the response goes back to the asker's port");
    let tcq = find(&lines, "CQ", "www.example.test/IN/AAAA", "TCP").unwrap();
    assert_eq!(tcq.from.ip().to_string(), "127.1.0.6");
    assert!(find(&lines, "CR", "www.example.test/IN/AAAA", "TCP").is_some());
    for (kind, proto) in [("FQ", "UDP"), ("FR", "UDP"), ("FQ", "TCP"), ("FR", "TCP")] {
        let l = find(&lines, kind, "big.public.example/IN/TXT", proto).unwrap_or_else(|| panic!("{kind} {proto}: {lines:#?}"));
        assert_eq!(l.to, up.addr, "forwarder messages name the upstream as responder");
        assert!(l.from.ip().is_loopback());
    }
    let fq = find(&lines, "FQ", "popunify-vpc.cn-hangzhou.aliyuncs.com/IN/A", "UDP").unwrap();
    assert_eq!(fq.to, up.addr);
    assert!(find(&lines, "FR", "popunify-vpc.cn-hangzhou.aliyuncs.com/IN/A", "UDP").is_some());
    assert!(!lines.iter().any(|l| l.kind == "FQ" && l.question.starts_with("ecs.")), "the private name never goes upstream");
    let cr = find(&lines, "CR", "ecs.cn-hangzhou.aliyuncs.com/IN/A", "UDP").unwrap();
    assert_eq!(cr.from.ip().to_string(), "127.1.0.8");
    // The YAML form carries the identity and version, and the messages decoded.
    let y = String::from_utf8_lossy(&Command::new(&reader).args(["-y"]).arg(&file).output().unwrap().stdout).into_owned();
    assert!(y.contains("identity: replica-7") && y.contains("version: pzdns "), "{y}");
    assert!(y.contains("type: CLIENT_RESPONSE") && y.contains("- 'popunify-vpc.cn-hangzhou.aliyuncs.com. 60 IN A 100.100.2.148'"), "{y}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An `fstrm_capture` on a Unix socket, stopped (SIGINT: it closes its
/// file cleanly) when dropped.
struct Capture {
    child: Option<Child>,
    out: PathBuf,
}

impl Capture {
    fn start(bin: &Path, socket: &Path, out: &Path) -> Capture {
        let _ = std::fs::remove_file(socket);
        let child = Command::new(bin)
            .args(["-t", "protobuf:dnstap.Dnstap", "-u"])
            .arg(socket)
            .arg("-w")
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while !socket.exists() {
            assert!(t.elapsed() < Duration::from_secs(10), "fstrm_capture did not open {}", socket.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Capture { child: Some(child), out: out.to_path_buf() }
    }

    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        unsafe {
            libc::kill(c.id() as i32, libc::SIGINT);
        }
        let t = Instant::now();
        while c.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(10) {
                let _ = c.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

fn metrics(srv: &TestServer) -> String {
    http(srv.admin.unwrap(), "GET", "/metrics").1
}

/// Waits until `f` holds of the metrics text (bounded).
fn wait_metrics(srv: &TestServer, what: &str, f: impl Fn(&str) -> bool) -> String {
    let t = Instant::now();
    loop {
        let m = metrics(srv);
        if f(&m) {
            return m;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{what}: {m}\n{}", srv.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fstrm_capture_receives_the_messages_and_a_restarted_collector_is_found_again() {
    let (Some(capture), Some(reader)) = (tool("fstrm_capture"), tool("dnstap-read")) else { return };
    let dir = scratch("sock");
    let socket = dir.join("c.sock");
    // pzdns first: no collector yet, it keeps trying.
    let mut srv = server(&format!("dnstap:\n  socket: {}\n", socket.display()), "", true);
    let m = metrics(&srv);
    assert_eq!(metric(&m, "pzdns_dnstap_connected"), 0.0, "{m}");
    let mut first = Capture::start(&capture, &socket, &dir.join("first.fstrm"));
    wait_metrics(&srv, "connects once the collector is there", |m| metric(m, "pzdns_dnstap_connected") == 1.0);
    let at = srv.addrs[0];
    udp(at, "127.1.0.5", &query("www.example.test.", RecordType::A, None));
    tcp(at, "127.2.0.5", &query("www.example.test.", RecordType::TXT, None));
    wait_metrics(&srv, "four messages written", |m| metric(m, "pzdns_dnstap_written_total") >= 4.0);

    // The collector restarts: pzdns finds the new one.
    first.stop();
    let second = Capture::start(&capture, &socket, &dir.join("second.fstrm"));
    let t = Instant::now();
    loop {
        // Until one of these reaches the new collector (the first may go
        // into the closed connection, and is counted dropped).
        udp(at, "127.1.0.9", &query("alias.example.test.", RecordType::A, None));
        let m = metrics(&srv);
        if metric(&m, "pzdns_dnstap_written_total") >= 6.0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no reconnection: {m}\n{}", srv.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(srv.stop().success(), "{}", srv.stderr());
    drop(second);

    let lines = read_tap(&reader, &first.out);
    let cq = find(&lines, "CQ", "www.example.test/IN/A", "UDP").unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!((cq.from.ip().to_string(), cq.to), ("127.1.0.5".into(), at));
    assert!(find(&lines, "CR", "www.example.test/IN/A", "UDP").is_some());
    let tcq = find(&lines, "CQ", "www.example.test/IN/TXT", "TCP").unwrap();
    assert_eq!(tcq.from.ip().to_string(), "127.2.0.5");
    assert!(find(&lines, "CR", "www.example.test/IN/TXT", "TCP").is_some());
    let lines = read_tap(&reader, &dir.join("second.fstrm"));
    let cq = find(&lines, "CQ", "alias.example.test/IN/A", "UDP").unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(cq.from.ip().to_string(), "127.1.0.9");
    assert!(!lines.iter().any(|l| l.question.starts_with("www.")), "the second collector gets only what came after");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A collector that completes the handshake, then never reads: the
/// queue fills, messages are dropped and counted, and every query is
/// still answered.
#[test]
fn a_collector_that_does_not_read_costs_messages_not_answers() {
    let dir = scratch("stuck");
    let socket = dir.join("c.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (done, ended) = std::sync::mpsc::channel::<()>();
    let collector = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // READY (escape, length, type 4, content type), answered ACCEPT.
        let mut head = [0u8; 8];
        s.read_exact(&mut head).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize];
        s.read_exact(&mut body).unwrap();
        assert_eq!(&body[..4], &4u32.to_be_bytes(), "READY first");
        let ct = b"protobuf:dnstap.Dnstap";
        let mut accept = Vec::new();
        accept.extend_from_slice(&0u32.to_be_bytes());
        accept.extend_from_slice(&((12 + ct.len()) as u32).to_be_bytes());
        accept.extend_from_slice(&1u32.to_be_bytes());
        accept.extend_from_slice(&1u32.to_be_bytes());
        accept.extend_from_slice(&(ct.len() as u32).to_be_bytes());
        accept.extend_from_slice(ct);
        s.write_all(&accept).unwrap();
        // Hold the connection open, reading nothing more.
        let _ = ended.recv_timeout(Duration::from_secs(60));
        drop(s);
    });
    let srv = server(&format!("dnstap:\n  socket: {}\n  queue: 16\n", socket.display()), "", true);
    wait_metrics(&srv, "connected", |m| metric(m, "pzdns_dnstap_connected") == 1.0);
    let at = srv.addrs[0];
    let q = query("www.example.test.", RecordType::A, Some(1232));
    let mut answered = 0;
    let t = Instant::now();
    // Enough messages to fill the socket's buffer and then the queue.
    while metric(&metrics(&srv), "pzdns_dnstap_dropped_total{reason=\"queue_full\"}") == 0.0 {
        for _ in 0..500 {
            let r = udp(at, "127.1.0.5", &q);
            assert_eq!(r.answers.len(), 2);
            answered += 1;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no drop counted after {answered} queries: {}", metrics(&srv));
    }
    let m = metrics(&srv);
    let written = metric(&m, "pzdns_dnstap_written_total");
    let dropped = metric(&m, "pzdns_dnstap_dropped_total{reason=\"queue_full\"}");
    assert!(dropped > 0.0 && written < 2.0 * answered as f64, "{m}");
    // Still answering, at once.
    let r = tcp(at, "127.1.0.5", &q);
    assert_eq!(r.answers.len(), 2);
    drop(srv);
    let _ = done.send(());
    collector.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dnstap_settings_are_checked() {
    let dir = scratch("check");
    let cfg = dir.join("pzdns.yaml");
    let zones = std::fs::canonicalize(RULES_ZONES).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "zones_dir: {}\nupstreams: []\ndnstap:\n  socket: /run/x.sock\n  file: /tmp/x\n  messages: [client_query, auth_query]\n  queue: 0\n  speed: 1\n",
            zones.display()
        ),
    )
    .unwrap();
    let out = crate::support::pzdns_command().args(["check", "--config"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("pzdns.yaml:4:11: dnstap has both `socket` and `file`"), "{err}");
    assert!(err.contains("pzdns.yaml:6:28: dnstap.messages `auth_query` must be one of client_query, client_response"), "{err}");
    assert!(err.contains("pzdns.yaml:7:10: dnstap.queue must be from 1 to 1000000"), "{err}");
    assert!(err.contains("pzdns.yaml:8:3: unknown field `speed` in `dnstap`"), "{err}");
    // A file that cannot be opened stops the start, saying which and why.
    std::fs::write(&cfg, format!("zones_dir: {}\nupstreams: []\ndnstap:\n  file: /nonexistent-dir/x.fstrm\n", zones.display())).unwrap();
    let out = crate::support::pzdns_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "off", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot open the dnstap file /nonexistent-dir/x.fstrm"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
