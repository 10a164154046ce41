//! Loading and validating what operators write: `pzdns.yaml` (one
//! deployment's settings) and the `zones/` directory (the data kept in git).
//!
//! Loading never stops at the first problem: every problem in every file is
//! collected into [`Diagnostics`] so that `pzdns check` can show them all.

pub mod diagnostics;
pub mod dnstap;
pub mod files;
pub mod master_file;
pub mod policy;
pub mod presentation;
pub mod rdata;
pub mod routing;
pub mod schema;
pub mod transfers;
pub mod trust_anchors;
pub mod yaml;
pub mod zones_dir;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::Name;

pub use diagnostics::{Diagnostic, Diagnostics, Pos};
use schema::ServerFile;
use yaml::{Spanned, pos};

/// Default UDP/TCP listen address when neither file nor flag sets one.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5353);
/// Default admin HTTP address (CoreDNS's metrics port, loopback only).
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9153);
/// Default cache size, in entries.
pub const DEFAULT_CACHE_ENTRIES: u64 = 100_000;
/// Default cache budget in bytes: what the entries really take, keys,
/// record vectors and allocator overhead included.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;
/// Smallest and largest `cache.max_bytes` (one shard of the cache must
/// hold a 64 KiB answer).
pub const MIN_CACHE_BYTES: u64 = 1 << 20;
/// Default `zones_max_bytes`: what one load may read in all (every file,
/// every time it is read), so that a tree that names its files many times
/// over (links, includes) fails the load instead of exhausting memory.
pub const DEFAULT_ZONES_MAX_BYTES: u64 = 4 << 30;
pub const MAX_CACHE_BYTES: u64 = 1 << 40;
/// Default RFC 8767 stale window.
pub const DEFAULT_SERVE_STALE: Duration = Duration::from_secs(3600);
/// Default bound on TCP connections at once (BIND's tcp-clients is 150;
/// a resolver for a whole VPC needs more).
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 1024;
/// Default TCP idle timeout (RFC 7766 §6.2.3: seconds, not minutes).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a TCP response may take to be written before the
/// connection is closed (a client that does not read).
pub const DEFAULT_TCP_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// TTL bounds for every record, in zones and in policies (docs/REFERENCE.md#limits).
pub const MIN_TTL: i64 = 5;
pub const MAX_TTL: i64 = 86_400;
/// Threads a reload uses: one, so answering keeps the other cores.
pub const DEFAULT_RELOAD_THREADS: usize = 1;

/// How the threads that reload yield the CPU to the threads that answer
/// (docs/REFERENCE.md, `reload.priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadPriority {
    /// Linux `SCHED_IDLE`: a query that arrives always preempts the
    /// rebuild; the rebuild runs on the time answering leaves, and waits
    /// while every core is saturated.
    Idle,
    /// Nice +10 with a long time slice: a rebuild keeps about a tenth of a
    /// saturated core, and an arriving query usually, not always, preempts it.
    Low,
}
/// Without `tcp.max_connections_per_source`, one source may hold this
/// fraction of `tcp.max_connections` (a source in no VPC a quarter of that).
pub const DEFAULT_TCP_SOURCE_SHARE: usize = 8;
/// The configuration file read when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "pzdns.yaml";
/// The environment variable naming the configuration file when `--config`
/// is not given (`none`: the embedded defaults, whatever is in the current
/// directory): for service managers, and for tests that must not read a
/// checkout's own `./pzdns.yaml`.
pub const CONFIG_ENV: &str = "PZDNS_CONFIG";

/// DNS Cookies (RFC 7873): answered or not, and whether UDP clients
/// must bring a valid server cookie (BIND's `require-server-cookie`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cookies {
    Off,
    /// Cookies are answered; a query without a valid server cookie is
    /// answered as usual, with a fresh one (BIND's default).
    On,
    /// As `on`, but a UDP query with a client cookie and no valid server
    /// cookie is answered BADCOOKIE with a fresh one (RFC 7873 §5.2.3).
    Required,
}

/// What to do with a query whose source maps to no VPC (docs/REFERENCE.md#rule-1-which-vpc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownClients {
    /// REFUSED to everything: pzdns is not an open resolver.
    Refuse,
    /// Forwarding only, never private data.
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// One listener: UDP and TCP, DNS over TLS or DNS over HTTPS.
#[derive(Debug, Clone)]
pub struct Listener {
    pub address: SocketAddr,
    /// An "inbound endpoint": every query arriving here is answered as if it
    /// came from this VPC, whatever its source address.
    pub vpc: Option<Located<String>>,
    pub proxy_protocol: ProxyProtocol,
    pub transport: ListenTransport,
    /// The certificate and key of a `tls` or `https` listener.
    pub tls: Option<TlsFiles>,
}

impl Listener {
    pub fn new(address: SocketAddr) -> Self {
        Listener { address, vpc: None, proxy_protocol: ProxyProtocol::Off, transport: ListenTransport::UdpTcp, tls: None }
    }
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenTransport {
    /// DNS over UDP and TCP on the same port.
    #[default]
    UdpTcp,
    /// DNS over TLS (RFC 7858), TCP only.
    Tls,
    /// DNS over HTTPS (RFC 8484), TCP only.
    Https,
}

impl ListenTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenTransport::UdpTcp => "udp+tcp",
            ListenTransport::Tls => "tls",
            ListenTransport::Https => "https",
        }
    }
}

/// A TLS listener's PEM files, resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Whether a listener's packets start with a PROXY protocol v2 header
/// (HAProxy's spec; dnsdist's `useProxyProtocol`, kdig's `+proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyProtocol {
    /// Never: a packet is a DNS message.
    #[default]
    Off,
    /// A packet may carry a header.
    Optional,
    /// Every packet must: one without a valid header is dropped and counted.
    Required,
}

/// Whether EDNS Client Subnet (RFC 7871) from trusted forwarders picks the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientSubnet {
    #[default]
    Off,
    Trusted,
}

/// A `forward_zones` entry.
#[derive(Debug, Clone)]
pub struct ForwardZone {
    pub domain: Name,
    pub upstreams: Vec<SocketAddr>,
    /// `None`: every VPC.
    pub vpcs: Option<Vec<Located<String>>>,
    /// Whether clients in no VPC (under `unknown_clients: forward`) may use
    /// it too; off by default, so a forward zone never serves strangers by
    /// accident.
    pub unknown_clients: bool,
}

/// A value with the file position it came from, for diagnostics raised
/// after loading (e.g. a listener naming a VPC that `vpcs.yaml` lacks).
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub path: PathBuf,
    pub pos: Pos,
}

/// Everything in `pzdns.yaml`, with defaults applied.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The file this came from; `None` for the embedded defaults.
    pub source: Option<PathBuf>,
    pub listen: Vec<Listener>,
    pub upstreams: Vec<SocketAddr>,
    /// Whether `upstreams` are the `nameserver` lines of /etc/resolv.conf
    /// (neither the file nor a flag gave any).
    pub upstreams_from_resolv_conf: bool,
    pub forward_zones: Vec<ForwardZone>,
    pub zones_dir: PathBuf,
    /// Bytes one load may read in all (`zones_max_bytes`).
    pub zones_max_bytes: u64,
    pub unknown_clients: UnknownClients,
    pub cache_max_entries: u64,
    /// The cache's memory budget in bytes (`cache.max_bytes`).
    pub cache_max_bytes: u64,
    pub serve_stale: Duration,
    /// `None` turns the admin HTTP server off.
    pub admin_listen: Option<SocketAddr>,
    /// `admin.token_file`, resolved against the config file's directory.
    pub admin_token_file: Option<PathBuf>,
    /// Its contents, trimmed, read with the file (so again on every reload).
    pub admin_token: Option<AdminToken>,
    /// TCP connections served at once; more are closed at once.
    pub tcp_max_connections: usize,
    /// A TCP connection idle this long, or that starts a message and does
    /// not finish it this long, is closed.
    pub tcp_idle_timeout: Duration,
    /// TCP connections one source in a VPC may hold (`None`: an eighth of
    /// `tcp_max_connections`); a source in no VPC, a quarter of that.
    pub tcp_max_connections_per_source: Option<usize>,
    /// A TCP response not written within this closes its connection.
    pub tcp_write_timeout: Duration,
    /// Threads a reload reads and builds on (`reload.threads`), so that a
    /// big rebuild leaves the other cores to answering. The load at start
    /// uses every core.
    pub reload_threads: usize,
    /// How reload threads yield to answering (`reload.priority`).
    pub reload_priority: ReloadPriority,
    pub log_format: LogFormat,
    pub query_log: bool,
    /// Directories outside `zones_dir` that `master_file` and `$INCLUDE`
    /// may read from (and zone files may link into). Default: none.
    pub allow_paths_outside: Vec<PathBuf>,
    /// Sources whose claims about the client (PROXY v2, ECS) are believed.
    pub trusted_forwarders: Vec<ipnet::IpNet>,
    pub client_subnet: ClientSubnet,
    /// This replica's NSID (RFC 5001), sent to queries that ask; off by default.
    pub nsid: Option<String>,
    /// dnstap output; off by default.
    pub dnstap: Option<dnstap::Settings>,
    /// `health_checks:` (SPEC §10).
    pub health: routing::HealthSettings,
    pub cookies: Cookies,
    /// `cookie_secret_file`, resolved against the config file's directory.
    pub cookie_secret_file: Option<PathBuf>,
    /// Its secrets, read with the file (so again on every reload); `None`:
    /// a random secret made once per process.
    pub cookie_secrets: Option<crate::abuse::cookie::Secrets>,
    /// Response rate limiting; `None`: off (the default).
    pub rate_limit: Option<crate::abuse::rrl::Settings>,
    /// Zone transfers to secondaries (`transfers:`); no keys: none.
    pub transfers: transfers::Transfers,
    /// How names that no zone and no forward zone hold are resolved (`resolver.mode`).
    pub resolver_mode: ResolverMode,
    /// The root servers recursion starts from (`resolver.root_hints`):
    /// the IANA list, or the addresses of the `.` NS in a master file.
    pub root_hints: Vec<IpAddr>,
    /// `resolver.root_hints` when it names a file, resolved against the config file's directory.
    pub root_hints_file: Option<PathBuf>,
    /// DNSSEC validation of upstream answers (`resolver.dnssec`,
    /// `trust_anchors`, `negative_trust_anchors`); `None`: off.
    pub dnssec: Option<crate::dnssec::Trust>,
    /// Upstreams asked over DNS over TLS (`ADDR:853#NAME`), each with the
    /// name its certificate must hold; the others are asked over UDP/TCP.
    pub upstream_tls: BTreeMap<SocketAddr, String>,
    /// `upstream_tls.ca_file`, resolved against the config file's directory.
    pub upstream_ca_file: Option<PathBuf>,
    /// Its certificates, read with the file (so again on every reload);
    /// `None`: the built-in roots (Mozilla's, webpki-roots).
    pub upstream_ca: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
}

/// `resolver.mode` (docs/REFERENCE.md, `resolver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolverMode {
    /// To `upstreams`, recursive resolvers that answer whole questions.
    Forward,
    /// From the root, walking the delegations pzdns itself.
    Recursive,
}

/// The IANA root servers (a to m, IPv4 then IPv6), as in
/// https://www.internic.net/domain/named.root: where `root_hints: builtin` starts.
pub const BUILTIN_ROOT_HINTS: [IpAddr; 26] = {
    use std::net::Ipv6Addr;
    const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }
    #[allow(clippy::too_many_arguments)]
    const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
    }
    [
        v4(198, 41, 0, 4),
        v4(170, 247, 170, 2),
        v4(192, 33, 4, 12),
        v4(199, 7, 91, 13),
        v4(192, 203, 230, 10),
        v4(192, 5, 5, 241),
        v4(192, 112, 36, 4),
        v4(198, 97, 190, 53),
        v4(192, 36, 148, 17),
        v4(192, 58, 128, 30),
        v4(193, 0, 14, 129),
        v4(199, 7, 83, 42),
        v4(202, 12, 27, 33),
        v6(0x2001, 0x503, 0xba3e, 0, 0, 0, 2, 0x30),
        v6(0x2801, 0x1b8, 0x10, 0, 0, 0, 0, 0xb),
        v6(0x2001, 0x500, 0x2, 0, 0, 0, 0, 0xc),
        v6(0x2001, 0x500, 0x2d, 0, 0, 0, 0, 0xd),
        v6(0x2001, 0x500, 0xa8, 0, 0, 0, 0, 0xe),
        v6(0x2001, 0x500, 0x2f, 0, 0, 0, 0, 0xf),
        v6(0x2001, 0x500, 0x12, 0, 0, 0, 0, 0xd0d),
        v6(0x2001, 0x500, 0x1, 0, 0, 0, 0, 0x53),
        v6(0x2001, 0x7fe, 0, 0, 0, 0, 0, 0x53),
        v6(0x2001, 0x503, 0xc27, 0, 0, 0, 2, 0x30),
        v6(0x2001, 0x7fd, 0, 0, 0, 0, 0, 1),
        v6(0x2001, 0x500, 0x9f, 0, 0, 0, 0, 0x42),
        v6(0x2001, 0xdc3, 0, 0, 0, 0, 0, 0x35),
    ]
};

impl ServerConfig {
    /// The embedded defaults (docs/REFERENCE.md#command-line): loopback port 5353, `./zones`,
    /// upstreams from `/etc/resolv.conf`.
    pub fn defaults() -> Self {
        ServerConfig {
            source: None,
            listen: vec![Listener::new(DEFAULT_LISTEN)],
            upstreams: system_resolvers(Path::new("/etc/resolv.conf")),
            upstreams_from_resolv_conf: true,
            forward_zones: Vec::new(),
            zones_dir: PathBuf::from("zones"),
            zones_max_bytes: DEFAULT_ZONES_MAX_BYTES,
            unknown_clients: UnknownClients::Refuse,
            cache_max_entries: DEFAULT_CACHE_ENTRIES,
            cache_max_bytes: DEFAULT_CACHE_BYTES,
            serve_stale: DEFAULT_SERVE_STALE,
            admin_listen: Some(DEFAULT_ADMIN),
            admin_token_file: None,
            admin_token: None,
            tcp_max_connections: DEFAULT_TCP_MAX_CONNECTIONS,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            tcp_max_connections_per_source: None,
            tcp_write_timeout: DEFAULT_TCP_WRITE_TIMEOUT,
            reload_threads: DEFAULT_RELOAD_THREADS,
            reload_priority: ReloadPriority::Idle,
            log_format: LogFormat::Text,
            query_log: false,
            allow_paths_outside: Vec::new(),
            trusted_forwarders: Vec::new(),
            client_subnet: ClientSubnet::Off,
            nsid: None,
            dnstap: None,
            health: routing::HealthSettings::default(),
            cookies: Cookies::On,
            cookie_secret_file: None,
            cookie_secrets: None,
            rate_limit: None,
            transfers: transfers::Transfers::default(),
            resolver_mode: ResolverMode::Forward,
            root_hints: BUILTIN_ROOT_HINTS.to_vec(),
            root_hints_file: None,
            dnssec: Some(crate::dnssec::Trust { anchors: crate::dnssec::builtin_anchors(), negative: Vec::new() }),
            upstream_tls: BTreeMap::new(),
            upstream_ca_file: None,
            upstream_ca: None,
        }
    }

    /// Loads `path`; without one, the file `$PZDNS_CONFIG` names (`none`:
    /// the embedded defaults), else `./pzdns.yaml` if present, else the
    /// embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, Diagnostics> {
        if let Some(p) = path {
            return Self::load_file(p);
        }
        match std::env::var_os(CONFIG_ENV) {
            Some(v) if v == "none" => Ok(Self::defaults()),
            Some(v) if !v.is_empty() => Self::load_file(Path::new(&v)),
            _ => {
                let p = Path::new(DEFAULT_CONFIG_FILE);
                if p.exists() { Self::load_file(p) } else { Ok(Self::defaults()) }
            }
        }
    }

    /// Loads a configuration file; relative paths in it are relative to it.
    pub fn load_file(path: &Path) -> Result<Self, Diagnostics> {
        let mut diags = Diagnostics::new();
        let Some(text) = files::FileAccess::anywhere().read_text(path, &mut diags) else {
            return Err(diags);
        };
        // An empty file means "all defaults".
        let Some(file) = yaml::parse_tree(path, &text, &mut diags).and_then(|n| ServerFile::read(&n, path, &mut diags)) else {
            return Err(diags);
        };
        let cfg = Self::from_file(path, file, &mut diags);
        if diags.is_empty() { Ok(cfg) } else { Err(diags) }
    }

    fn from_file(path: &Path, f: ServerFile, diags: &mut Diagnostics) -> Self {
        let mut cfg = Self::defaults();
        cfg.source = Some(path.to_path_buf());
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if let Some(listen) = f.listen {
            cfg.read_listen(path, listen, diags);
        }
        // Addresses asked in clear, to tell one that is also given with `#NAME`.
        let mut plain = BTreeSet::new();
        if let Some(ups) = f.upstreams {
            cfg.upstreams_from_resolv_conf = false;
            cfg.upstreams = cfg.read_upstreams(path, &ups, &mut plain, diags);
        }
        cfg.read_forward_zones(path, f.forward_zones, &mut plain, diags);
        if let Some(ca) = f.upstream_tls_ca_file {
            let file = base.join(&ca.value);
            match read_ca_file(&file) {
                Ok(certs) => {
                    cfg.upstream_ca = Some(certs);
                    cfg.upstream_ca_file = Some(file);
                }
                Err(why) => diags.push(path, pos(&ca), format!("upstream_tls.ca_file: {why}")),
            }
        }
        if let Some(z) = f.zones_dir {
            cfg.zones_dir = base.join(&z.value);
        } else {
            cfg.zones_dir = base.join("zones");
        }
        if let Some(b) = f.zones_max_bytes {
            match parse_size(&b.value) {
                Some(n) if (MIN_CACHE_BYTES..=MAX_CACHE_BYTES).contains(&n) => cfg.zones_max_bytes = n,
                _ => diags.push(
                    path,
                    pos(&b),
                    format!("zones_max_bytes `{}` must be a size from 1MiB to 1TiB, like 4GiB or 500000000", b.value),
                ),
            }
        }
        cfg.read_reload(path, f.reload_threads, f.reload_priority, diags);
        if let Some(u) = f.unknown_clients {
            cfg.read_unknown_clients(path, u, diags);
        }
        if let Some(c) = f.cache {
            cfg.read_cache(path, c, diags);
        }
        if let Some(a) = f.admin {
            cfg.read_admin(path, &base, a, diags);
        }
        if let Some(t) = f.tcp {
            cfg.read_tcp(path, t, diags);
        }
        if let Some(l) = f.log_format {
            match parse_log_format(&l.value) {
                Some(v) => cfg.log_format = v,
                None => diags.push(path, pos(&l), format!("log_format `{}` must be `text` or `json`", l.value)),
            }
        }
        cfg.read_client_identity(path, f.trusted_forwarders.unwrap_or_default(), f.client_subnet, diags);
        if let Some(n) = f.nsid {
            cfg.read_nsid(path, n, diags);
        }
        if let Some(t) = f.dnstap {
            cfg.dnstap = dnstap::read(path, &base, t, cfg.nsid.as_deref(), diags);
        }
        if let Some(q) = f.query_log {
            cfg.query_log = q.value;
        }
        cfg.read_cookies(path, &base, f.cookies, f.cookie_secret_file, diags);
        if let Some(r) = f.rate_limit {
            cfg.read_rate_limit(path, r, diags);
        }
        cfg.read_allow_paths_outside(path, &base, f.allow_paths_outside, diags);
        if let Some(h) = f.health_checks {
            cfg.read_health_checks(path, h, diags);
        }
        if let Some(t) = f.transfers {
            cfg.transfers = transfers::read(path, &base, t, diags);
        }
        if let Some(r) = f.resolver {
            cfg.read_resolver(path, &base, r, diags);
        }
        cfg
    }

    /// `health_checks:`: each setting within its bounds; the timeout
    /// shorter than the interval.
    fn read_health_checks(&mut self, path: &Path, h: schema::HealthChecksEntry, diags: &mut Diagnostics) {
        let dur = |v: Option<Spanned<String>>, key: &str, lo: Duration, hi: Duration, diags: &mut Diagnostics| {
            let v = v?;
            match parse_duration(&v.value) {
                Some(d) if d >= lo && d <= hi => Some(d),
                _ => {
                    diags.push(
                        path,
                        pos(&v),
                        format!("health_checks.{key} `{}` must be a duration from {lo:?} to {hi:?}, like 10s or 500ms", v.value),
                    );
                    None
                }
            }
        };
        let at = h.timeout.as_ref().or(h.interval.as_ref()).map_or(Pos::new(1, 1), pos);
        let h_ = &mut self.health;
        if let Some(d) = dur(h.interval, "interval", Duration::from_millis(100), Duration::from_secs(3600), diags) {
            h_.interval = d;
        }
        if let Some(d) = dur(h.timeout, "timeout", Duration::from_millis(50), Duration::from_secs(60), diags) {
            h_.timeout = d;
        }
        let int = |v: Option<Spanned<i64>>, key: &str, lo: i64, hi: i64, diags: &mut Diagnostics| {
            let v = v?;
            if v.value < lo || v.value > hi {
                diags.push(path, pos(&v), format!("health_checks.{key} must be from {lo} to {hi}"));
                return None;
            }
            Some(v.value)
        };
        if let Some(n) = int(h.failure_threshold, "failure_threshold", 1, 100, diags) {
            h_.failure_threshold = n as u32;
        }
        if let Some(n) = int(h.success_threshold, "success_threshold", 1, 100, diags) {
            h_.success_threshold = n as u32;
        }
        if let Some(n) = int(h.concurrency, "concurrency", 1, 10_000, diags) {
            h_.concurrency = n as usize;
        }
        if let Some(n) = int(h.max_targets, "max_targets", 1, 1_000_000, diags) {
            h_.max_targets = n as usize;
        }
        if let Some(v) = h.max_ttl {
            match parse_duration(&v.value) {
                Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(86_400) => h_.max_ttl = Some(d.as_secs() as u32),
                _ => diags.push(path, pos(&v), format!("health_checks.max_ttl `{}` must be a duration from 1s to 1d", v.value)),
            }
        }
        if h_.timeout >= h_.interval {
            diags.push(
                path,
                at,
                format!("health_checks.timeout ({:?}) must be shorter than health_checks.interval ({:?})", h_.timeout, h_.interval),
            );
        }
    }

    /// `resolver:`: how names are resolved, and how answers are validated.
    fn read_resolver(&mut self, path: &Path, base: &Path, r: schema::ResolverEntry, diags: &mut Diagnostics) {
        let schema::ResolverEntry { mode, root_hints, dnssec, trust_anchors, negative_trust_anchors } = r;
        self.read_resolver_mode(path, base, mode, root_hints, diags);
        self.read_dnssec(path, base, dnssec, trust_anchors, negative_trust_anchors, diags);
    }

    /// `resolver: { mode, root_hints }`. A root hints file is read here,
    /// so `check` and a reload report its problems like any other file's.
    fn read_resolver_mode(
        &mut self,
        path: &Path,
        base: &Path,
        mode: Option<Spanned<String>>,
        root_hints: Option<Spanned<String>>,
        diags: &mut Diagnostics,
    ) {
        if let Some(m) = mode {
            match m.value.as_str() {
                "forward" => self.resolver_mode = ResolverMode::Forward,
                "recursive" => self.resolver_mode = ResolverMode::Recursive,
                v => diags.push(
                    path,
                    pos(&m),
                    format!("resolver.mode `{v}` must be `forward` (to `upstreams`) or `recursive` (from the root servers)"),
                ),
            }
        }
        let Some(h) = root_hints else { return };
        if h.value == "builtin" {
            return;
        }
        if h.value.is_empty() {
            diags.push(path, pos(&h), "resolver.root_hints is empty: give `builtin` or a master file of the root's NS and their addresses");
            return;
        }
        let file = base.join(&h.value);
        let access = files::FileAccess::anywhere();
        let Some(text) = access.read_text_at(&file, path, pos(&h), diags) else { return };
        let mut local = Diagnostics::new();
        let records = master_file::parse_text(&file, &text, &Name::root(), &access, &mut local);
        let problems = !local.is_empty();
        diags.extend(local);
        if problems {
            return;
        }
        match root_hint_addresses(&records) {
            Ok(addrs) => {
                self.root_hints = addrs;
                self.root_hints_file = Some(file);
            }
            Err(why) => diags.push(path, pos(&h), format!("resolver.root_hints {}: {why}", file.display())),
        }
    }

    /// `listen:`: each address once, with its VPC and PROXY protocol mode.
    fn read_listen(&mut self, path: &Path, listen: Spanned<Vec<schema::ListenEntry>>, diags: &mut Diagnostics) {
        self.listen.clear();
        if listen.value.is_empty() {
            diags.push(path, listen.pos, "`listen` is empty: give at least one address, e.g. `- address: 0.0.0.0:53`");
        }
        for l in listen.value {
            let Some(address) = parse_socket_addr(&l.address.value, None) else {
                diags.push(
                    path,
                    pos(&l.address),
                    format!("listen address `{}` must be IP:PORT, e.g. 0.0.0.0:53 or [::]:53", l.address.value),
                );
                continue;
            };
            // Port 0 twice is two ports the kernel picks, not one address twice.
            if address.port() != 0 && self.listen.iter().any(|x| x.address == address) {
                diags.push(path, pos(&l.address), format!("listen address {address} is given twice"));
                continue;
            }
            let vpc = l.vpc.map(|v| located(path, v));
            let proxy_protocol = match l.proxy_protocol.as_ref().map(|p| p.value.as_str()) {
                None | Some("off") => ProxyProtocol::Off,
                Some("optional") => ProxyProtocol::Optional,
                Some("required") => ProxyProtocol::Required,
                Some(other) => {
                    let at = l.proxy_protocol.as_ref().map_or(Pos::new(1, 1), pos);
                    diags.push(path, at, format!("proxy_protocol `{other}` must be `off`, `optional` or `required`"));
                    ProxyProtocol::Off
                }
            };
            let (transport, tls) = read_listen_transport(path, &l.address, l.transport, l.tls, diags);
            self.listen.push(Listener { address, vpc, proxy_protocol, transport, tls });
        }
    }

    /// `forward_zones:`: a domain given twice for the same VPCs is a problem.
    fn read_forward_zones(
        &mut self,
        path: &Path,
        entries: Vec<schema::ForwardZoneEntry>,
        plain: &mut BTreeSet<SocketAddr>,
        diags: &mut Diagnostics,
    ) {
        // (domain, its VPCs or None for all, line) of each forward zone so far.
        let mut seen: Vec<(Name, Option<Vec<String>>, u32)> = Vec::new();
        for fz in entries {
            let domain = match rdata::parse_absolute_name(&fz.domain.value) {
                Ok(n) => n,
                Err(e) => {
                    diags.push(path, pos(&fz.domain), format!("forward_zones domain: {e}"));
                    continue;
                }
            };
            if fz.upstreams.value.is_empty() {
                diags.push(path, pos(&fz.upstreams), format!("forward zone {domain} has no upstreams; list at least one IP[:PORT]"));
            }
            let upstreams = self.read_upstreams(path, &fz.upstreams.value, plain, diags);
            let vpc_ids: Option<Vec<String>> = fz.vpcs.as_ref().map(|v| v.iter().map(|s| s.value.clone()).collect());
            let overlap = seen.iter().find(|(d, v, _)| {
                *d == domain
                    && match (v, &vpc_ids) {
                        (Some(a), Some(b)) => a.iter().any(|x| b.contains(x)),
                        _ => true,
                    }
            });
            if let Some((_, _, line)) = overlap {
                diags.push(
                    path,
                    pos(&fz.domain),
                    format!(
                        "forward zone {domain} is given twice for the same VPCs (first at line {line}); merge the entries, or give each its own `vpcs`"
                    ),
                );
                continue;
            }
            seen.push((domain.clone(), vpc_ids, pos(&fz.domain).line));
            let vpcs = fz.vpcs.map(|v| v.into_iter().map(|s| located(path, s)).collect());
            let unknown_clients = fz.unknown_clients.is_some_and(|u| u.value);
            self.forward_zones.push(ForwardZone { domain, upstreams, vpcs, unknown_clients });
        }
    }

    /// `reload: { threads, priority }`.
    fn read_reload(&mut self, path: &Path, threads: Option<Spanned<i64>>, priority: Option<Spanned<String>>, diags: &mut Diagnostics) {
        if let Some(t) = threads {
            if (1..=256).contains(&t.value) {
                self.reload_threads = t.value as usize;
            } else {
                diags.push(path, pos(&t), "reload.threads must be from 1 to 256");
            }
        }
        if let Some(p) = priority {
            match p.value.as_str() {
                "idle" => self.reload_priority = ReloadPriority::Idle,
                "low" => self.reload_priority = ReloadPriority::Low,
                other => diags.push(path, pos(&p), format!("reload.priority `{other}` must be `idle` or `low`")),
            }
        }
    }

    fn read_unknown_clients(&mut self, path: &Path, u: Spanned<String>, diags: &mut Diagnostics) {
        match u.value.as_str() {
            "refuse" => self.unknown_clients = UnknownClients::Refuse,
            "forward" => self.unknown_clients = UnknownClients::Forward,
            other => diags.push(path, pos(&u), format!("unknown_clients `{other}` must be `refuse` or `forward`")),
        }
    }

    /// `cache: { max_entries, max_bytes, serve_stale }`.
    fn read_cache(&mut self, path: &Path, c: schema::CacheEntry, diags: &mut Diagnostics) {
        if let Some(m) = c.max_entries {
            if m.value <= 0 || m.value > 100_000_000 {
                diags.push(path, pos(&m), "cache.max_entries must be from 1 to 100000000");
            } else {
                self.cache_max_entries = m.value as u64;
            }
        }
        if let Some(b) = c.max_bytes {
            match parse_size(&b.value) {
                Some(n) if (MIN_CACHE_BYTES..=MAX_CACHE_BYTES).contains(&n) => self.cache_max_bytes = n,
                _ => diags.push(
                    path,
                    pos(&b),
                    format!("cache.max_bytes `{}` must be a size from 1MiB to 1TiB, like 256MiB, 2GiB or 500000000", b.value),
                ),
            }
        }
        if let Some(s) = c.serve_stale {
            match parse_duration(&s.value) {
                Some(d) if d <= Duration::from_secs(7 * 86400) => self.serve_stale = d,
                Some(_) => diags.push(path, pos(&s), "cache.serve_stale is over 7d; RFC 8767 suggests 1 to 3 days at most"),
                None => diags.push(path, pos(&s), format!("cache.serve_stale `{}` must be a duration like 0, 30s, 10m, 1h or 1d", s.value)),
            }
        }
    }

    /// `admin: { listen, token_file }`; the token file is resolved
    /// against the config file's directory and read now (so again on
    /// every reload).
    fn read_admin(&mut self, path: &Path, base: &Path, a: schema::AdminEntry, diags: &mut Diagnostics) {
        match a.listen {
            Some(l) if l.value == "off" || l.value.is_empty() => self.admin_listen = None,
            Some(l) => match parse_socket_addr(&l.value, None) {
                Some(addr) => self.admin_listen = Some(addr),
                None => diags.push(path, pos(&l), format!("admin.listen `{}` must be IP:PORT (e.g. 127.0.0.1:9153) or `off`", l.value)),
            },
            None => {}
        }
        if let Some(t) = a.token_file {
            let file = base.join(&t.value);
            match read_admin_token(&file) {
                Ok(token) => {
                    self.admin_token = Some(token);
                    self.admin_token_file = Some(file);
                }
                Err(why) => diags.push(path, pos(&t), format!("admin.token_file: {why}")),
            }
        }
    }

    /// `tcp:`; the per-source bound is checked against the total read before it.
    fn read_tcp(&mut self, path: &Path, t: schema::TcpEntry, diags: &mut Diagnostics) {
        if let Some(m) = t.max_connections {
            if m.value <= 0 || m.value > 1_000_000 {
                diags.push(path, pos(&m), "tcp.max_connections must be from 1 to 1000000");
            } else {
                self.tcp_max_connections = m.value as usize;
            }
        }
        if let Some(i) = t.idle_timeout {
            match parse_duration(&i.value) {
                Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(300) => self.tcp_idle_timeout = d,
                _ => diags.push(path, pos(&i), format!("tcp.idle_timeout `{}` must be a duration from 1s to 5m", i.value)),
            }
        }
        if let Some(w) = t.write_timeout {
            match parse_duration(&w.value) {
                Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(300) => self.tcp_write_timeout = d,
                _ => diags.push(path, pos(&w), format!("tcp.write_timeout `{}` must be a duration from 1s to 5m", w.value)),
            }
        }
        if let Some(m) = t.max_connections_per_source {
            if m.value <= 0 || m.value as u64 > self.tcp_max_connections as u64 {
                diags.push(
                    path,
                    pos(&m),
                    format!("tcp.max_connections_per_source must be from 1 to tcp.max_connections ({})", self.tcp_max_connections),
                );
            } else {
                self.tcp_max_connections_per_source = Some(m.value as usize);
            }
        }
    }

    /// `trusted_forwarders` and `client_subnet`, which needs them.
    fn read_client_identity(
        &mut self,
        path: &Path,
        trusted: Vec<Spanned<String>>,
        client_subnet: Option<Spanned<String>>,
        diags: &mut Diagnostics,
    ) {
        for t in trusted {
            let net = t.value.parse::<ipnet::IpNet>().or_else(|_| t.value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(n) if n.trunc() == n => self.trusted_forwarders.push(n),
                Ok(n) => {
                    diags.push(path, pos(&t), format!("trusted_forwarders `{}` has host bits set; did you mean {}?", t.value, n.trunc()))
                }
                Err(_) => diags.push(
                    path,
                    pos(&t),
                    format!("trusted_forwarders `{}` must be an IP address or a CIDR, e.g. 172.20.0.53/32", t.value),
                ),
            }
        }
        if let Some(c) = client_subnet {
            match c.value.as_str() {
                "off" => self.client_subnet = ClientSubnet::Off,
                "trusted" => self.client_subnet = ClientSubnet::Trusted,
                other => diags.push(path, pos(&c), format!("client_subnet `{other}` must be `off` or `trusted`")),
            }
        }
        if self.client_subnet == ClientSubnet::Trusted && self.trusted_forwarders.is_empty() {
            diags.push(path, Pos::new(1, 1), "client_subnet: trusted needs trusted_forwarders (the sources whose ECS is believed)");
        }
    }

    /// `resolver: { dnssec, trust_anchors, negative_trust_anchors }`.
    fn read_dnssec(
        &mut self,
        path: &Path,
        base: &Path,
        dnssec: Option<Spanned<String>>,
        trust_anchors: Option<Spanned<String>>,
        negative_trust_anchors: Option<Spanned<Vec<Spanned<String>>>>,
        diags: &mut Diagnostics,
    ) {
        let mut trust = crate::dnssec::Trust { anchors: crate::dnssec::builtin_anchors(), negative: Vec::new() };
        if let Some(t) = trust_anchors {
            match t.value.as_str() {
                "builtin" => {}
                file => {
                    let file = base.join(file);
                    if let Some(text) = files::FileAccess::anywhere().read_text_at(&file, path, pos(&t), diags) {
                        trust.anchors = trust_anchors::parse(&file, &text, diags);
                    }
                }
            }
        }
        for n in negative_trust_anchors.map(|l| l.value).unwrap_or_default() {
            match hickory_proto::rr::Name::from_ascii(&n.value) {
                Ok(name) if !n.value.is_empty() => trust.negative.push(crate::dns::names::name_key(&name).to_vec()),
                _ => diags.push(
                    path,
                    pos(&n),
                    format!("resolver.negative_trust_anchors: `{}` is not a domain name (e.g. corp.example.com)", n.value),
                ),
            }
        }
        self.dnssec = match dnssec.as_ref().map(|d| d.value.as_str()) {
            None | Some("validate") => Some(trust),
            Some("off") => None,
            Some(other) => {
                let d = dnssec.as_ref().map_or(Pos::new(1, 1), pos);
                diags.push(path, d, format!("resolver.dnssec `{other}` must be `validate` or `off`"));
                None
            }
        };
    }

    fn read_nsid(&mut self, path: &Path, n: Spanned<String>, diags: &mut Diagnostics) {
        match n.value.as_str() {
            "" | "off" => self.nsid = None,
            v if v.len() > crate::dns::writer::Nsid::MAX => diags.push(
                path,
                pos(&n),
                format!("nsid is {} bytes; at most {} (a replica's name, e.g. pzdns-hz-1)", v.len(), crate::dns::writer::Nsid::MAX),
            ),
            v => self.nsid = Some(v.to_string()),
        }
    }

    /// `cookies` and `cookie_secret_file` (read now, so again on every reload).
    fn read_cookies(
        &mut self,
        path: &Path,
        base: &Path,
        mode: Option<Spanned<String>>,
        secret_file: Option<Spanned<String>>,
        diags: &mut Diagnostics,
    ) {
        if let Some(m) = mode {
            match m.value.as_str() {
                "on" => self.cookies = Cookies::On,
                "off" => self.cookies = Cookies::Off,
                "required" => self.cookies = Cookies::Required,
                other => diags.push(path, pos(&m), format!("cookies `{other}` must be `on`, `off` or `required`")),
            }
        }
        if let Some(f) = secret_file {
            let file = base.join(&f.value);
            let read = files::FileAccess::anywhere().with_max_bytes(64 << 10).read_string(&file);
            match read.and_then(|t| crate::abuse::cookie::parse_secrets(&t).map_err(|e| format!("{}: {e}", file.display()))) {
                Ok(s) => {
                    self.cookie_secrets = Some(s);
                    self.cookie_secret_file = Some(file);
                }
                Err(why) => diags.push(path, pos(&f), format!("cookie_secret_file: {why}")),
            }
        }
    }

    /// `rate_limit:`; off unless `responses_per_second` is above 0.
    fn read_rate_limit(&mut self, path: &Path, r: schema::RateLimitEntry, diags: &mut Diagnostics) {
        use crate::abuse::rrl::{MAX_RATE, MAX_SLIP, MAX_WINDOW, Scope, Settings};
        let mut num = |v: Option<Spanned<i64>>, key: &str, (min, max): (u32, u32), dflt: u32| -> u32 {
            match v {
                Some(n) if (i64::from(min)..=i64::from(max)).contains(&n.value) => n.value as u32,
                Some(n) => {
                    diags.push(path, pos(&n), format!("rate_limit.{key} must be from {min} to {max}"));
                    dflt
                }
                None => dflt,
            }
        };
        let rate = num(r.responses_per_second, "responses_per_second", (0, MAX_RATE), 0);
        let mut s = Settings::with_rate(rate);
        s.nxdomains_per_second = num(r.nxdomains_per_second, "nxdomains_per_second", (0, MAX_RATE), rate);
        s.errors_per_second = num(r.errors_per_second, "errors_per_second", (0, MAX_RATE), rate);
        s.slip = num(r.slip, "slip", (0, MAX_SLIP), s.slip);
        s.window = num(r.window, "window", (1, MAX_WINDOW), s.window);
        s.ipv4_prefix = num(r.ipv4_prefix, "ipv4_prefix", (0, 32), 24) as u8;
        s.ipv6_prefix = num(r.ipv6_prefix, "ipv6_prefix", (0, 128), 56) as u8;
        if let Some(sc) = r.scope {
            match sc.value.as_str() {
                "all" => s.scope = Scope::All,
                "no_vpc" => s.scope = Scope::NoVpc,
                other => {
                    diags.push(path, pos(&sc), format!("rate_limit.scope `{other}` must be `all` or `no_vpc` (sources in no VPC only)"))
                }
            }
        }
        self.rate_limit = (rate > 0 || s.nxdomains_per_second > 0 || s.errors_per_second > 0).then_some(s);
    }

    fn read_allow_paths_outside(&mut self, path: &Path, base: &Path, dirs: Vec<Spanned<String>>, diags: &mut Diagnostics) {
        for a in dirs {
            let dir = base.join(&a.value);
            if a.value.trim().is_empty() || !dir.is_dir() {
                diags.push(path, pos(&a), format!("allow_paths_outside `{}` is not a directory", a.value));
            } else {
                self.allow_paths_outside.push(dir);
            }
        }
    }
}

/// The admin API's bearer token. Its `Debug` does not show it, so a
/// config printed to a log does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(std::sync::Arc<str>);

impl AdminToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the token, in time that depends on their lengths
    /// only, not on where they first differ (a remote guesser learns
    /// nothing from timing but the length).
    pub fn matches(&self, given: &[u8]) -> bool {
        let want = self.0.as_bytes();
        if want.len() != given.len() {
            return false;
        }
        let diff = want.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// Reads an admin token file: its contents, trimmed; not empty, and only
/// visible ASCII (it is sent in an HTTP header).
pub fn read_admin_token(file: &Path) -> Result<AdminToken, String> {
    let text = files::FileAccess::anywhere().with_max_bytes(64 << 10).read_string(file)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "{} is empty; write a secret into it, e.g. `head -c 32 /dev/urandom | base64 > {}`",
            file.display(),
            file.display()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{} holds spaces, control or non-ASCII characters; a bearer token is one word of visible ASCII (e.g. base64)",
            file.display()
        ));
    }
    Ok(AdminToken(token.into()))
}

impl ServerConfig {
    /// Why this configuration must not serve: an admin listener off
    /// loopback with no token would let anyone who reaches it reload,
    /// flush the cache and read it.
    pub fn admin_exposure(&self) -> Option<String> {
        let addr = self.admin_listen?;
        if addr.ip().to_canonical().is_loopback() || self.admin_token.is_some() {
            return None;
        }
        Some(format!(
            "admin.listen {addr} is not a loopback address and admin.token_file is not set: anyone who can reach it could \
             reload, flush and read the cache. Set admin.token_file to a file holding a secret (e.g. \
             `head -c 32 /dev/urandom | base64 > /etc/pzdns/admin.token`), or listen on loopback (admin.listen: 127.0.0.1:9153)"
        ))
    }

    /// TCP connections one source in a VPC may hold: the configured
    /// number, or an eighth of `tcp_max_connections` (at least one).
    pub fn tcp_per_source(&self) -> usize {
        self.tcp_max_connections_per_source.unwrap_or(self.tcp_max_connections / DEFAULT_TCP_SOURCE_SHARE).max(1)
    }
}

pub fn parse_log_format(s: &str) -> Option<LogFormat> {
    match s {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        _ => None,
    }
}

/// A listener's `transport` and `tls`: `tls` and `https` need both files,
/// `udp+tcp` takes none. Paths are relative to the config file.
fn read_listen_transport(
    path: &Path,
    address: &Spanned<String>,
    transport: Option<Spanned<String>>,
    tls: Option<schema::TlsEntry>,
    diags: &mut Diagnostics,
) -> (ListenTransport, Option<TlsFiles>) {
    let t = match transport.as_ref().map(|t| t.value.as_str()) {
        None | Some("udp+tcp") => ListenTransport::UdpTcp,
        Some("tls") => ListenTransport::Tls,
        Some("https") => ListenTransport::Https,
        Some(other) => {
            let at = transport.as_ref().map_or(Pos::new(1, 1), pos);
            diags.push(path, at, format!("listen transport `{other}` must be `udp+tcp`, `tls` (DNS over TLS) or `https` (DNS over HTTPS)"));
            return (ListenTransport::UdpTcp, None);
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    match (t, tls) {
        (ListenTransport::UdpTcp, None) => (t, None),
        (ListenTransport::UdpTcp, Some(e)) => {
            diags.push(
                path,
                e.pos,
                "`tls` is for a listener with `transport: tls` or `transport: https`; add the transport or remove `tls`",
            );
            (t, None)
        }
        (_, None) => {
            diags.push(
                path,
                pos(address),
                format!(
                    "listener {} has `transport: {}` but no certificate: add `tls: {{ cert: cert.pem, key: key.pem }}` (PEM files)",
                    address.value,
                    t.as_str()
                ),
            );
            (t, None)
        }
        (_, Some(e)) => {
            let mut file = |f: Option<Spanned<String>>, what: &str| match f {
                Some(f) if !f.value.trim().is_empty() => Some(base.join(&f.value)),
                Some(f) => {
                    diags.push(path, pos(&f), format!("tls.{what} is empty: give the PEM file's path"));
                    None
                }
                None => {
                    diags.push(path, e.pos, format!("tls has no `{what}`: give the PEM file's path (`{what}: {what}.pem`)"));
                    None
                }
            };
            let (cert, key) = (file(e.cert, "cert"), file(e.key, "key"));
            (t, cert.zip(key).map(|(cert, key)| TlsFiles { cert, key }))
        }
    }
}

fn located<T>(path: &Path, s: Spanned<T>) -> Located<T> {
    Located { pos: pos(&s), value: s.value, path: path.to_path_buf() }
}

impl ServerConfig {
    /// A list of upstreams: each `IP[:PORT]`, or `IP[:PORT]#NAME` for DNS
    /// over TLS (port 853 by default), noted in `upstream_tls`. One
    /// address is asked one way: with one name, or in clear (`plain`).
    fn read_upstreams(
        &mut self,
        path: &Path,
        ups: &[Spanned<String>],
        plain: &mut BTreeSet<SocketAddr>,
        diags: &mut Diagnostics,
    ) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for u in ups {
            let (a, tls) = match parse_upstream(&u.value) {
                Ok(x) => x,
                Err(why) => {
                    diags.push(path, pos(u), why);
                    continue;
                }
            };
            let clash = match &tls {
                Some(name) => match self.upstream_tls.get(&a) {
                    Some(other) if other != name => Some(format!("is also given as {a}#{other}; one address has one certificate name")),
                    _ if plain.contains(&a) => {
                        Some(format!("is also given as {a} without #NAME; an upstream is asked over TLS or in clear, not both"))
                    }
                    _ => None,
                },
                None if self.upstream_tls.contains_key(&a) => {
                    Some("is also given with #NAME (DNS over TLS); an upstream is asked over TLS or in clear, not both".to_string())
                }
                None => None,
            };
            if let Some(why) = clash {
                diags.push(path, pos(u), format!("upstream `{}` {why}", u.value));
                continue;
            }
            match tls {
                Some(name) => {
                    self.upstream_tls.insert(a, name);
                }
                None => {
                    plain.insert(a);
                }
            }
            out.push(a);
        }
        out
    }
}

/// One upstream: `IP`, `IP:PORT` (port 53 by default), or with `#NAME`
/// DNS over TLS to it (port 853 by default), its certificate checked
/// against NAME. The problem, as a sentence, if it is none of these.
pub fn parse_upstream(s: &str) -> Result<(SocketAddr, Option<String>), String> {
    let (addr, name) = match s.split_once('#') {
        Some((a, n)) => (a, Some(n.trim())),
        None => (s, None),
    };
    let Some(a) = parse_socket_addr(addr, Some(if name.is_some() { 853 } else { 53 })) else {
        return Err(format!(
            "upstream `{s}` must be IP or IP:PORT, e.g. 223.5.5.5 or 223.5.5.5:53, or IP[:PORT]#NAME for DNS over TLS, e.g. 223.5.5.5:853#dns.alidns.com"
        ));
    };
    if let Some(why) = upstream_problem(&a) {
        return Err(format!("upstream `{s}` {why}"));
    }
    match name {
        None => Ok((a, None)),
        Some(n) if !n.is_empty() && rustls_pki_types::ServerName::try_from(n).is_ok() => Ok((a, Some(n.to_ascii_lowercase()))),
        Some(n) => Err(format!(
            "upstream `{s}`: `{n}` is not a host name to check the upstream's certificate against (e.g. dns.alidns.com after the #)"
        )),
    }
}

/// The certificates of a CA file (PEM): at least one.
fn read_ca_file(file: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let bytes = files::FileAccess::anywhere().with_max_bytes(16 << 20).read(file)?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate list: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate (PEM `BEGIN CERTIFICATE` blocks of the CAs to trust)", file.display()));
    }
    Ok(certs)
}

/// Why queries cannot be sent to `a`, if they cannot.
pub fn upstream_problem(a: &SocketAddr) -> Option<&'static str> {
    let ip = a.ip();
    if a.port() == 0 {
        return Some("has port 0, which no resolver listens on; use its real port (53 by default)");
    }
    if ip.is_unspecified() {
        return Some("is the unspecified address (0.0.0.0 or ::), not a resolver; give the resolver's address");
    }
    if ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Some("is a broadcast or multicast address, not one resolver; give the resolver's own address");
    }
    None
}

/// `IP:PORT`, `[IPv6]:PORT`, or (with a default port) a bare IP.
pub fn parse_socket_addr(s: &str, default_port: Option<u16>) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let port = default_port?;
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, port))
}

/// `0`, `90`, `30s`, `10m`, `1h`, `2d`, `500ms`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mult_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult_ms).map(Duration::from_millis)
}

/// A size in bytes: `500000`, `512KiB`, `256MiB`, `2GiB`, `1TiB` (powers of
/// 1024), or `500kB`, `300MB`, `2GB` (powers of 1000).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let i = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..i].parse().ok()?;
    let mult: u64 = match s[i..].trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The addresses of the root's name servers in a root hints file: the
/// A and AAAA records of the targets of its `.` NS records.
fn root_hint_addresses(records: &[master_file::MasterRecord]) -> Result<Vec<IpAddr>, &'static str> {
    use hickory_proto::rr::RData;
    let servers: Vec<&Name> = records
        .iter()
        .filter_map(|r| match &r.record.data {
            RData::NS(ns) if r.record.name.is_root() => Some(&ns.0),
            _ => None,
        })
        .collect();
    if servers.is_empty() {
        return Err("has no NS records for `.`; list the root servers as `. 3600000 NS a.root-servers.net.`");
    }
    let mut addrs = Vec::new();
    for r in records {
        let ip = match &r.record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        if servers.iter().any(|s| **s == r.record.name) && !addrs.contains(&ip) {
            addrs.push(ip);
        }
    }
    if addrs.is_empty() {
        return Err("gives no A or AAAA record for any of the `.` NS names; add their addresses");
    }
    Ok(addrs)
}

/// The `nameserver` lines of a resolv.conf, on port 53.
pub fn system_resolvers(path: &Path) -> Vec<SocketAddr> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            match (it.next(), it.next()) {
                (Some("nameserver"), Some(ip)) => ip.split('%').next()?.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_duration("h"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB"), Some(256 << 20));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("300MB"), Some(300_000_000));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("2mb"), None);
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(parse_size("99999999999999999999"), None);
        assert_eq!(parse_size("20000000TiB"), None);
    }

    #[test]
    fn memory_and_tcp_limits() {
        let p = std::env::temp_dir().join(format!("pzdns-limits-{}.yaml", std::process::id()));
        std::fs::write(
            &p,
            "cache:\n  max_bytes: 64MiB\ntcp:\n  max_connections: 100\n  max_connections_per_source: 10\n  write_timeout: 3s\n",
        )
        .unwrap();
        let c = ServerConfig::load_file(&p).unwrap();
        assert_eq!((c.cache_max_bytes, c.tcp_per_source(), c.tcp_write_timeout), (64 << 20, 10, Duration::from_secs(3)));
        assert_eq!(ServerConfig::defaults().tcp_per_source(), DEFAULT_TCP_MAX_CONNECTIONS / 8);
        std::fs::write(
            &p,
            "cache:\n  max_bytes: 10kB\ntcp:\n  max_connections: 100\n  max_connections_per_source: 101\n  write_timeout: 0s\n",
        )
        .unwrap();
        let d = ServerConfig::load_file(&p).unwrap_err().to_string();
        std::fs::remove_file(&p).ok();
        assert!(d.contains("cache.max_bytes `10kB` must be a size from 1MiB to 1TiB"), "{d}");
        assert!(d.contains("tcp.max_connections_per_source must be from 1 to tcp.max_connections (100)"), "{d}");
        assert!(d.contains("tcp.write_timeout `0s` must be a duration from 1s to 5m"), "{d}");
    }

    #[test]
    fn cookies_and_rate_limit() {
        let dir = std::env::temp_dir().join(format!("pzdns-abuse-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pzdns.yaml");
        std::fs::write(dir.join("secret"), "00112233445566778899aabbccddeeff\nffeeddccbbaa99887766554433221100\n").unwrap();
        std::fs::write(
            &p,
            "cookies: required\ncookie_secret_file: secret\nrate_limit:\n  responses_per_second: 5\n  errors_per_second: 0\n  scope: no_vpc\n",
        )
        .unwrap();
        let c = ServerConfig::load_file(&p).unwrap();
        assert_eq!(c.cookies, Cookies::Required);
        let secrets = c.cookie_secrets.unwrap();
        assert_eq!((secrets.current[0], secrets.previous.map(|s| s[0])), (0x00, Some(0xff)));
        let r = c.rate_limit.unwrap();
        assert_eq!((r.responses_per_second, r.nxdomains_per_second, r.errors_per_second, r.slip, r.window), (5, 5, 0, 2, 15));
        assert_eq!((r.ipv4_prefix, r.ipv6_prefix, r.scope), (24, 56, crate::abuse::rrl::Scope::NoVpc));
        let d = ServerConfig::defaults();
        assert_eq!((d.cookies, d.rate_limit), (Cookies::On, None), "cookies on, rate limiting off by default");
        std::fs::write(&p, "rate_limit: { responses_per_second: 0 }\n").unwrap();
        assert_eq!(ServerConfig::load_file(&p).unwrap().rate_limit, None, "a rate of 0 is off");
        std::fs::write(dir.join("secret"), "zz\n").unwrap();
        std::fs::write(
            &p,
            "cookies: yes\ncookie_secret_file: secret\nrate_limit:\n  responses_per_second: 5000\n  slip: 11\n  window: 0\n  ipv4_prefix: 33\n  scope: vpc\n",
        )
        .unwrap();
        let e = ServerConfig::load_file(&p).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).ok();
        for want in [
            "pzdns.yaml:1:10: cookies `yes` must be `on`, `off` or `required`",
            "pzdns.yaml:2:21: cookie_secret_file: ",
            "secret: line 1: `zz` is not a secret of 16 bytes in hex (32 digits; make one with `openssl rand -hex 16`)",
            "pzdns.yaml:4:25: rate_limit.responses_per_second must be from 0 to 1000",
            "pzdns.yaml:5:9: rate_limit.slip must be from 0 to 10",
            "pzdns.yaml:6:11: rate_limit.window must be from 1 to 600",
            "rate_limit.ipv4_prefix must be from 0 to 32",
            "rate_limit.scope `vpc` must be `all` or `no_vpc`",
        ] {
            assert!(e.contains(want), "{want}\n{e}");
        }
    }

    #[test]
    fn tls_listeners_need_their_files() {
        let p = std::env::temp_dir().join(format!("pzdns-tls-listen-{}.yaml", std::process::id()));
        std::fs::write(
            &p,
            "listen:\n  - address: 127.0.0.1:853\n    transport: tls\n    tls: { cert: c.pem, key: k.pem }\n  - address: 127.0.0.1:0\n    transport: https\n    tls: { cert: c.pem, key: k.pem }\n  - address: 127.0.0.1:0\n",
        )
        .unwrap();
        let c = ServerConfig::load_file(&p).unwrap();
        let dir = p.parent().unwrap();
        assert_eq!(c.listen[0].transport, ListenTransport::Tls);
        assert_eq!(c.listen[0].tls, Some(TlsFiles { cert: dir.join("c.pem"), key: dir.join("k.pem") }));
        assert_eq!((c.listen[1].transport, c.listen[2].transport), (ListenTransport::Https, ListenTransport::UdpTcp));
        std::fs::write(
            &p,
            "listen:\n  - address: 127.0.0.1:853\n    transport: tls\n  - address: 127.0.0.1:1\n    transport: quic\n  - address: 127.0.0.1:2\n    tls: { cert: c.pem, key: k.pem }\n  - address: 127.0.0.1:3\n    transport: https\n    tls: { cert: c.pem }\n",
        )
        .unwrap();
        let d = ServerConfig::load_file(&p).unwrap_err().to_string();
        std::fs::remove_file(&p).ok();
        assert!(d.contains(":2:14: listener 127.0.0.1:853 has `transport: tls` but no certificate"), "{d}");
        assert!(d.contains(":5:16: listen transport `quic` must be"), "{d}");
        assert!(d.contains(":7:10: `tls` is for a listener with `transport: tls`"), "{d}");
        assert!(d.contains(":10:10: tls has no `key`"), "{d}");
    }

    #[test]
    fn upstreams_over_tls_name_their_certificate() {
        let p = std::env::temp_dir().join(format!("pzdns-dot-up-{}.yaml", std::process::id()));
        let ca = std::env::temp_dir().join(format!("pzdns-dot-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let text = "upstreams: [\"223.5.5.5#dns.alidns.com\", \"192.0.2.1:8853#DNS.Example\", 192.0.2.2]\n\
                    forward_zones:\n  - domain: corp.example\n    upstreams: [\"192.0.2.1:8853#dns.example\"]\n";
        std::fs::write(&p, text).unwrap();
        let c = ServerConfig::load_file(&p).unwrap();
        let want: Vec<(SocketAddr, String)> =
            vec![("192.0.2.1:8853".parse().unwrap(), "dns.example".into()), ("223.5.5.5:853".parse().unwrap(), "dns.alidns.com".into())];
        assert_eq!(c.upstream_tls.into_iter().collect::<Vec<_>>(), want);
        assert_eq!(c.upstreams.len(), 3);
        std::fs::write(
            &p,
            format!(
                "upstreams: [\"192.0.2.1#a.example\", \"192.0.2.1:853#b.example\", \"192.0.2.2:853\", \"192.0.2.2#a.example\", \"192.0.2.3#\"]\nupstream_tls:\n  ca_file: {}\n",
                ca.display()
            ),
        )
        .unwrap();
        let d = ServerConfig::load_file(&p).unwrap_err().to_string();
        std::fs::remove_file(&p).ok();
        std::fs::remove_file(&ca).ok();
        assert!(d.contains(":1:36: upstream `192.0.2.1:853#b.example` is also given as 192.0.2.1:853#a.example"), "{d}");
        assert!(d.contains(":1:80: upstream `192.0.2.2#a.example` is also given as 192.0.2.2:853 without #NAME"), "{d}");
        assert!(d.contains(":1:103: upstream `192.0.2.3#`: `` is not a host name"), "{d}");
        assert!(d.contains("upstream_tls.ca_file: ") && d.contains("holds no certificate"), "{d}");
    }

    #[test]
    fn upstreams_default_to_resolv_conf() {
        let p = std::env::temp_dir().join(format!("pzdns-resolv-{}", std::process::id()));
        std::fs::write(
            &p,
            "# comment\nsearch example.com\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver 2001:db8::53\noptions edns0\n",
        )
        .unwrap();
        let got: Vec<String> = system_resolvers(&p).iter().map(|a| a.to_string()).collect();
        std::fs::remove_file(&p).ok();
        assert_eq!(got, ["192.0.2.53:53", "[fe80::1]:53", "[2001:db8::53]:53"]);
    }

    #[test]
    fn resolver_mode_and_root_hints() {
        let dir = std::env::temp_dir().join(format!("pzdns-resolver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pzdns.yaml");
        assert_eq!(ServerConfig::defaults().resolver_mode, ResolverMode::Forward, "forward unless asked");
        std::fs::write(dir.join("root.hints"), ". 3600000 NS a.root.\na.root. 3600000 A 127.53.0.1\nb.other. 3600000 A 127.53.0.2\n")
            .unwrap();
        std::fs::write(&p, "resolver:\n  mode: recursive\n  root_hints: root.hints\n").unwrap();
        let c = ServerConfig::load_file(&p).unwrap();
        assert_eq!(c.resolver_mode, ResolverMode::Recursive);
        assert_eq!(c.root_hints, ["127.53.0.1".parse::<IpAddr>().unwrap()], "only the addresses of the root's NS names");
        std::fs::write(&p, "resolver:\n  mode: recursive\n").unwrap();
        assert_eq!(ServerConfig::load_file(&p).unwrap().root_hints, BUILTIN_ROOT_HINTS);
        let problems = |yaml: &str| {
            std::fs::write(&p, yaml).unwrap();
            ServerConfig::load_file(&p).unwrap_err().to_string()
        };
        let d = problems("upstreams: []\nresolver:\n  mode: recursing\n");
        assert!(d.contains("pzdns.yaml:3:9: resolver.mode `recursing` must be `forward`"), "{d}");
        std::fs::write(dir.join("bad.hints"), "a.root. 3600000 A 127.53.0.1\n").unwrap();
        let d = problems("resolver:\n  root_hints: bad.hints\n");
        assert!(d.contains("pzdns.yaml:2:15: resolver.root_hints") && d.contains("has no NS records for `.`"), "{d}");
        std::fs::write(dir.join("bad.hints"), "$TTL 3600\n. NS a.root.\n. NS b.root.\nc.root. A 127.0.0.1\n").unwrap();
        let d = problems("resolver:\n  root_hints: bad.hints\n");
        assert!(d.contains("no A or AAAA record for any of the `.` NS names"), "{d}");
        std::fs::write(dir.join("bad.hints"), "$TTL 3600\n. NS a.root.\na.root. A 127.0.0.300\n").unwrap();
        assert!(problems("resolver:\n  root_hints: bad.hints\n").contains("bad.hints:3:"), "a problem in the file names its line");
        assert!(problems("resolver:\n  root_hints: missing.hints\n").contains("pzdns.yaml:2:"));
        assert!(problems("resolver:\n  mode: recursive\n  dnsec: validate\n").contains("dnsec"), "unknown keys are reported");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn socket_addrs() {
        assert_eq!(parse_socket_addr("10.0.0.1", Some(53)).unwrap().to_string(), "10.0.0.1:53");
        assert_eq!(parse_socket_addr("[::1]:5353", None).unwrap().to_string(), "[::1]:5353");
        assert_eq!(parse_socket_addr("::1", Some(53)).unwrap().to_string(), "[::1]:53");
        assert!(parse_socket_addr("10.0.0.1", None).is_none());
    }
}
