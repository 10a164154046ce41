//! Test support: the real `pzdns` binary on loopback, and DNS clients that
//! can send from any 127.x.y.z source address (to play clients of
//! different VPCs) over UDP and TCP.
#![allow(dead_code)]

pub mod hierarchy;
pub mod upstream;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use socket2::{Domain, Protocol, Socket, Type};

pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The rules fixture: zones every rule of the reference has a case in.
pub const RULES_ZONES: &str = "tests/fixtures/rules/zones";
/// Its server config (two listeners, one bound to a VPC; forward zones).
pub const RULES_CONFIG: &str = "tests/fixtures/rules/pzdns.yaml";

/// The rules fixture's config, for in-process tests.
pub fn rules_config() -> pzdns::config::ServerConfig {
    pzdns::config::ServerConfig::load_file(Path::new(RULES_CONFIG)).expect("fixture config loads")
}

/// The rules fixture loaded with `cfg`, for in-process tests.
pub fn rules_snapshot(cfg: &pzdns::config::ServerConfig) -> pzdns::snapshot::Snapshot {
    pzdns::loader::load(cfg, 1).unwrap_or_else(|d| panic!("fixture loads:\n{d}"))
}

/// The rules fixture as a server's shared state, answering in process.
pub fn rules_shared(cfg: pzdns::config::ServerConfig) -> std::sync::Arc<pzdns::state::Shared> {
    let snap = rules_snapshot(&cfg);
    pzdns::state::Shared::new(cfg, snap, std::sync::Arc::new(pzdns::metrics::Metrics::new()))
}

/// An external tool (a peer, a reader) from the system directories. Missing:
/// skipped with a message, unless PZDNS_REQUIRE_TOOLS is set (.ci/run sets it),
/// then the test fails.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.is_file());
    if found.is_none() {
        assert!(std::env::var_os("PZDNS_REQUIRE_TOOLS").is_none(), "{name} is required here (see .ci/run)");
        eprintln!("skipped: {name} not installed");
    }
    found
}

/// A running pzdns, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct TestServer {
    child: Option<Child>,
    /// Bound listener addresses, in the order of the config's `listen`.
    pub addrs: Vec<SocketAddr>,
    /// The admin HTTP address, when enabled.
    pub admin: Option<SocketAddr>,
    pub dir: PathBuf,
    pub stderr_path: PathBuf,
}

fn scratch_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("pzdns-test-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl TestServer {
    /// Starts pzdns with `config_yaml` (written to a scratch dir; use
    /// `{ZONES}` for the absolute path of `zones`) and waits until ready.
    pub fn start(zones: &Path, config_yaml: &str) -> TestServer {
        let mut s = Self::spawn(zones, config_yaml);
        s.wait_ready(Duration::from_secs(20));
        s
    }

    /// Starts pzdns and returns at once.
    pub fn spawn(zones: &Path, config_yaml: &str) -> TestServer {
        Self::spawn_with(zones, config_yaml, |_| {})
    }

    /// As [`TestServer::spawn`], with `prepare` given the command before it runs.
    pub fn spawn_with(zones: &Path, config_yaml: &str, prepare: impl FnOnce(&mut Command)) -> TestServer {
        let dir = scratch_dir("srv");
        let zones = std::fs::canonicalize(zones).unwrap_or_else(|_| zones.to_path_buf());
        let cfg = dir.join("pzdns.yaml");
        // The tests' upstreams are fakes that sign nothing, under names the
        // real root's chain of trust cannot reach: validation (on by default)
        // would make every upstream answer bogus. A test that is about
        // DNSSEC sets `resolver:` itself.
        let config_yaml = if config_yaml.lines().any(|l| l.starts_with("resolver:")) {
            config_yaml.to_string()
        } else {
            format!("{config_yaml}\nresolver:\n  dnssec: off\n")
        };
        std::fs::write(&cfg, config_yaml.replace("{ZONES}", zones.to_str().unwrap())).unwrap();
        let ready = dir.join("ready");
        let stderr_path = dir.join("stderr.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pzdns"));
        cmd.args(["serve", "--config", cfg.to_str().unwrap(), "--ready-file", ready.to_str().unwrap(), "--workers", "2"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        prepare(&mut cmd);
        let child = cmd.spawn().expect("spawn pzdns");
        TestServer { child: Some(child), addrs: Vec::new(), admin: None, dir, stderr_path }
    }

    /// Waits for the ready file (every socket bound) and reads the addresses.
    pub fn wait_ready(&mut self, limit: Duration) {
        let ready = self.dir.join("ready");
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && text.ends_with('\n')
            {
                for l in text.lines() {
                    match l.strip_prefix("admin=") {
                        Some(a) => self.admin = Some(a.parse().unwrap()),
                        None => self.addrs.push(l.parse().unwrap()),
                    }
                }
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("pzdns exited with {status}: {}", self.stderr());
            }
            assert!(Instant::now() < deadline, "pzdns did not become ready: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A config with the usual test listeners: [0] 127.0.0.1:0 (views by
    /// source address), [1] 127.0.0.9:0 bound to `listener_vpc`, [2] [::1]:0.
    /// `extra` may set `upstreams:`; when it does not, there are none, so
    /// that no test ever sends a packet beyond loopback.
    pub fn start_default(zones: &Path, listener_vpc: &str, extra: &str) -> TestServer {
        let extra = if extra.lines().any(|l| l.starts_with("upstreams:")) { extra.to_string() } else { format!("upstreams: []\n{extra}") };
        let cfg = format!(
            "listen:\n  - address: 127.0.0.1:0\n  - address: 127.0.0.9:0\n    vpc: {listener_vpc}\n  - address: \"[::1]:0\"\nzones_dir: {{ZONES}}\nadmin:\n  listen: \"off\"\n{extra}"
        );
        Self::start(zones, &cfg)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A query message; `edns` = Some(payload) adds an OPT record.
pub fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
    if let Some(p) = edns {
        let mut e = Edns::new();
        e.set_max_payload(p);
        m.set_edns(e);
    }
    m
}

pub fn rand_id() -> u16 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    (t.subsec_nanos() ^ (t.as_secs() as u32)) as u16
}

/// One UDP exchange from `from` (port chosen by the kernel); `None` on timeout.
pub fn udp_raw(server: SocketAddr, from: IpAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(SocketAddr::new(from, 0)).expect("bind client source address");
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.send_to(bytes, server).unwrap();
    let mut buf = vec![0u8; 65535];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(_) => None,
    }
}

pub fn tcp_connect(server: SocketAddr, from: IpAddr) -> TcpStream {
    let s = Socket::new(Domain::for_address(server), Type::STREAM, Some(Protocol::TCP)).unwrap();
    s.bind(&SocketAddr::new(from, 0).into()).unwrap();
    s.connect_timeout(&server.into(), IO_TIMEOUT).unwrap();
    let t: TcpStream = s.into();
    t.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    t
}

/// One message with its two-byte length in front (RFC 1035 §4.2.2).
pub fn tcp_frame(bytes: &[u8]) -> Vec<u8> {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    framed
}

/// Writes one length-prefixed message, over TCP or TLS.
pub fn tcp_send(t: &mut impl Write, bytes: &[u8]) {
    t.write_all(&tcp_frame(bytes)).unwrap();
}

/// Reads one length-prefixed message, over TCP or TLS.
pub fn tcp_recv(t: &mut impl Read) -> Vec<u8> {
    let mut len = [0u8; 2];
    t.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    t.read_exact(&mut buf).unwrap();
    buf
}

pub fn tcp_raw(server: SocketAddr, from: IpAddr, bytes: &[u8]) -> Vec<u8> {
    let mut t = tcp_connect(server, from);
    tcp_send(&mut t, bytes);
    tcp_recv(&mut t)
}

/// Sends `q` over UDP from `from` and decodes the reply, checking that
/// the id matches and the question section is echoed byte for byte.
pub fn udp(server: SocketAddr, from: &str, q: &Message) -> Message {
    let bytes = q.to_vec().unwrap();
    let raw = udp_raw(server, from.parse().unwrap(), &bytes).expect("a UDP reply");
    check_echo(&bytes, &raw);
    Message::from_vec(&raw).unwrap()
}

pub fn tcp(server: SocketAddr, from: &str, q: &Message) -> Message {
    let bytes = q.to_vec().unwrap();
    let raw = tcp_raw(server, from.parse().unwrap(), &bytes);
    check_echo(&bytes, &raw);
    Message::from_vec(&raw).unwrap()
}

/// The reply's id is the query's and its question section (uncompressed,
/// right after the header) is the query's, byte for byte.
pub fn check_echo(query: &[u8], reply: &[u8]) {
    assert_eq!(&reply[..2], &query[..2], "id echoed");
    let qlen = question_len(query);
    assert_eq!(&reply[12..12 + qlen], &query[12..12 + qlen], "question echoed byte for byte");
}

fn question_len(msg: &[u8]) -> usize {
    let mut p = 12;
    while msg[p] != 0 {
        p += msg[p] as usize + 1;
    }
    p + 1 + 4 - 12
}

/// "owner TYPE rdata" lines of a section, for readable assertions.
pub fn lines(records: &[hickory_proto::rr::Record]) -> Vec<String> {
    records.iter().map(|r| format!("{} {} {}", r.name, r.record_type(), r.data)).collect()
}

/// A minimal HTTP/1.1 exchange: (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let (status, _, body) = http_with(addr, method, path, "");
    (status, body)
}

/// As [`http`], with `headers` (each line ending in `\r\n`) added to the
/// request; (status, response head, body).
pub fn http_with(addr: SocketAddr, method: &str, path: &str, headers: &str) -> (u16, String, String) {
    let mut t = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to admin");
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(t, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    t.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").map(|(h, b)| (h.to_string(), b.to_string())).unwrap_or_default();
    (status, head, body)
}

/// The value of one sample in a Prometheus text exposition (0 if absent).
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// A free loopback TCP port (for an admin address that must be known
/// before the server is ready).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Resident memory of process `pid` in KiB (VmRSS of /proc/PID/status).
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Samples the RSS of `pid` every 20 ms until `stop`; returns the peak.
pub fn sample_peak(pid: i32, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak.max(rss_kib(pid))
    })
}

/// Answers `query` from `src` over TCP, in process, the way the server
/// would: every question that must go upstream is handed to `upstream`,
/// whose entry goes into `cache` under the question's key, and the query
/// is answered again, until the answer is complete. `Ok(None)`: `upstream`
/// gave no entry (the case is not for this harness); `Err`: dropped, or
/// asked upstream again and again.
pub fn answer_through_cache(
    snap: &std::sync::Arc<pzdns::snapshot::Snapshot>,
    cache: &pzdns::upstream::cache::Cache,
    metrics: &pzdns::metrics::Metrics,
    src: SocketAddr,
    query: &[u8],
    mut upstream: impl FnMut(&Name) -> Option<pzdns::upstream::cache::Entry>,
) -> Result<Option<Vec<u8>>, String> {
    use pzdns::answer::{Client, Ctx, Outcome, Transport, answer};
    use pzdns::upstream::cache::{Key, MAX_KEY_LEN, key_bytes};
    let client = Client { listener: 0, src, proxy: None, transport: Transport::Tcp };
    let mut out = Vec::new();
    for _ in 0..10 {
        let ctx = Ctx { snap, cache, metrics, now: Instant::now() };
        match answer(&ctx, &client, query, &mut out) {
            Outcome::Done(_) => return Ok(Some(out)),
            Outcome::Drop | Outcome::Silent(_) => return Err("dropped".into()),
            Outcome::Wait(p) => {
                let Some(e) = upstream(&p.name) else { return Ok(None) };
                let mut kb = [0u8; MAX_KEY_LEN];
                let key = key_bytes(&mut kb, pzdns::dns::names::KeyBuf::new(&p.name).key(), p.qtype, false, p.route_id());
                cache.insert(Key::from(key), std::sync::Arc::new(e));
            }
        }
    }
    Err("asked upstream again and again".into())
}

/// The pzdns binary as a test runs it without `--config`: with
/// `PZDNS_CONFIG=none`, so that it never reads the checkout's own
/// `./pzdns.yaml` (README tells users to edit it) and only the flags and
/// files a test names count.
pub fn pzdns_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pzdns"));
    c.env(pzdns::config::CONFIG_ENV, "none");
    c
}
