//! The command line (docs/REFERENCE.md#command-line): `serve`, `check`, `explain`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use hickory_proto::rr::Name;

use crate::config::{AdminToken, Diagnostics, ServerConfig};
use crate::explain::{Asker, explain};

/// `pzdns --version`: the version, the commit and the compiler.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("PZDNS_COMMIT"), ", ", env!("PZDNS_RUSTC"), ")");

/// Exit code: invalid data (`check`).
pub const EXIT_INVALID: u8 = 1;
/// Exit code: cannot start (bad config, port in use).
pub const EXIT_CANNOT_START: u8 = 2;

#[derive(Parser, Debug)]
#[command(name = "pzdns", version = VERSION, about = "A DNS server for private zones bound to VPCs", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Load and validate everything `serve` would load; print every problem
    /// as path:line:column: message; exit 0 if clean, 1 if not.
    Check(CheckArgs),
    /// Offline: show how a query would be answered from a VPC.
    Explain(ExplainArgs),
    /// Look into or flush the running server's cache (through its admin HTTP).
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Print the cached answers (all, or those of one name).
    Dump {
        #[command(flatten)]
        target: AdminTarget,
        /// Only the answers for this name.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Remove cached answers: of one name, of a domain and every name under it, or all.
    Flush {
        #[command(flatten)]
        target: AdminTarget,
        #[command(flatten)]
        what: FlushWhat,
    },
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct FlushWhat {
    /// Every answer for this name (all types).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Every answer for this name and the names under it.
    #[arg(long, value_name = "DOMAIN")]
    pub suffix: Option<String>,
    /// The whole cache.
    #[arg(long)]
    pub all: bool,
}

/// Which server: its admin address, or the config file that names it.
#[derive(Args, Debug, Clone, Default)]
pub struct AdminTarget {
    /// The server's configuration file (its `admin.listen` is used).
    #[arg(long, value_name = "FILE", conflicts_with = "admin")]
    pub config: Option<PathBuf>,
    /// The server's admin address IP:PORT (default: from the config, else 127.0.0.1:9153).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// The file holding the admin token (default: the config's `admin.token_file`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DataArgs {
    /// The configuration file (default: ./pzdns.yaml if present, else built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The zones directory (overrides `zones_dir`).
    #[arg(long, value_name = "DIR")]
    pub zones: Option<PathBuf>,
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Listen on this IP:PORT, UDP and TCP (repeatable; replaces `listen`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Upstream resolver IP[:PORT] (repeatable; replaces `upstreams`).
    #[arg(long, value_name = "ADDR")]
    pub upstream: Vec<String>,
    /// Admin HTTP address IP:PORT, or `off`.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Worker threads and UDP sockets per listener (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Once every socket is bound, write the bound addresses here, one per
    /// line, then `admin=IP:PORT` (for supervisors and tests that bind port 0).
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("asker").required(true).args(["vpc", "from"])))]
pub struct ExplainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Ask as a client of this VPC.
    #[arg(long, value_name = "ID")]
    pub vpc: Option<String>,
    /// Ask from this source address (the view is chosen as for a real query).
    #[arg(long, value_name = "IP")]
    pub from: Option<IpAddr>,
    /// With --from: the query comes through this forwarder, which claims
    /// the --from address (PROXY v2 or ECS); shows whether it is believed.
    #[arg(long, value_name = "FORWARDER", requires = "from")]
    pub via: Option<IpAddr>,
    /// The name asked.
    pub name: String,
    /// The type asked (default A).
    #[arg(default_value = "A")]
    pub qtype: String,
}

/// Loads the server configuration with `--config`/`--zones` applied.
pub fn load_config(data: &DataArgs) -> Result<ServerConfig, Diagnostics> {
    let mut cfg = ServerConfig::load(data.config.as_deref())?;
    if let Some(z) = &data.zones {
        cfg.zones_dir = z.clone();
    }
    Ok(cfg)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(a) => serve(&a),
        Command::Check(a) => check(&a),
        Command::Explain(a) => run_explain(&a),
        Command::Cache(c) => run_cache(&c),
    }
}

/// `pzdns cache dump|flush`: one request to the admin HTTP of the running server.
fn run_cache(c: &CacheCommand) -> ExitCode {
    let (target, method, path) = match c {
        CacheCommand::Dump { target, name } => {
            let q = name.as_deref().map(|n| format!("?name={}", percent_encode(n))).unwrap_or_default();
            (target, "GET", format!("/cache{q}"))
        }
        CacheCommand::Flush { target, what } => {
            let q = match (&what.name, &what.suffix) {
                (Some(n), _) => format!("name={}", percent_encode(n)),
                (_, Some(d)) => format!("suffix={}", percent_encode(d)),
                _ => "all".to_string(),
            };
            (target, "POST", format!("/cache/flush?{q}"))
        }
    };
    let (addr, token) = match admin_address(target) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pzdns: {e}");
            return ExitCode::from(EXIT_CANNOT_START);
        }
    };
    match http_request(addr, method, &path, token.as_ref()) {
        Ok((200, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprint!("pzdns: {addr} answered {status}: {body}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(e) => {
            eprintln!("pzdns: cannot reach the admin HTTP at {addr}: {e} (is the server running, with admin.listen there?)");
            ExitCode::from(EXIT_CANNOT_START)
        }
    }
}

/// The admin address of the server `target` names, and the token to send
/// it: `--token-file`, else the configuration's `admin.token_file`.
fn admin_address(target: &AdminTarget) -> Result<(std::net::SocketAddr, Option<AdminToken>), String> {
    let flag_token = match &target.token_file {
        Some(f) => Some(crate::config::read_admin_token(f).map_err(|e| format!("--token-file: {e}"))?),
        None => None,
    };
    if let Some(a) = &target.admin {
        let addr = crate::config::parse_socket_addr(a, None).ok_or_else(|| format!("--admin `{a}` must be IP:PORT"))?;
        return Ok((addr, flag_token));
    }
    let cfg = ServerConfig::load(target.config.as_deref()).map_err(|d| format!("{d}the configuration has {} problem(s)", d.len()))?;
    let addr = cfg.admin_listen.ok_or("the configuration turns the admin HTTP off (admin.listen: off); nothing to ask")?;
    // A server listening on every address is reached on loopback.
    let addr = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => std::net::SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    };
    Ok((addr, flag_token.or(cfg.admin_token)))
}

/// A name as a query parameter value (RFC 3986 unreserved kept).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.1 request with no body (and the bearer token, if any); the
/// status and the body. The admin server is local and small: a blocking
/// socket with timeouts will do.
fn http_request(addr: std::net::SocketAddr, method: &str, path: &str, token: Option<&AdminToken>) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(10);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let auth = token.map(|t| format!("Authorization: Bearer {}\r\n", t.as_str())).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// The status and body of a whole HTTP/1.1 response. Framing is done on
/// the bytes; only the body, once whole, is decoded (lossily), so a chunk
/// boundary inside a multi-byte character splits nothing.
fn parse_response(raw: &[u8]) -> std::io::Result<(u16, String)> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(bad)?;
    let (head, body) = (String::from_utf8_lossy(&raw[..split]), &raw[split + 4..]);
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    let chunked =
        head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The body of a chunked HTTP/1.1 response, as bytes.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let (size, rest) = (&body[..eol], &body[eol + 2..]);
        let size = std::str::from_utf8(size).unwrap_or("");
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

fn print_problems(d: &Diagnostics) {
    print!("{d}");
    println!("{} problem{} found", d.len(), if d.len() == 1 { "" } else { "s" });
}

fn check(a: &CheckArgs) -> ExitCode {
    let exposed = |c: ServerConfig| match c.admin_exposure() {
        Some(why) => {
            let mut d = Diagnostics::new();
            d.push(
                c.source.as_deref().unwrap_or(std::path::Path::new(crate::config::DEFAULT_CONFIG_FILE)),
                crate::config::Pos::UNKNOWN,
                why,
            );
            Err(d)
        }
        None => Ok(c),
    };
    let cfg = match load_config(&a.data).and_then(exposed) {
        Ok(c) => c,
        Err(d) => {
            print_problems(&d);
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let started = std::time::Instant::now();
    match crate::loader::load(&cfg, 1) {
        Ok(s) => {
            let st = s.stats;
            println!(
                "ok: {} zones, {} records, {} VPCs, {} endpoints ({} endpoint names) from {} files in {} ({} ms)",
                st.zones,
                st.records,
                st.vpcs,
                st.endpoints,
                st.endpoint_names,
                st.files,
                cfg.zones_dir.display(),
                started.elapsed().as_millis()
            );
            if !s.policy.names.is_empty() {
                println!("policies: {} with {} rule sets, {} rules", s.policy.names.len(), s.policy.sets.len(), s.policy.rule_count());
            }
            for w in &s.policy.warnings {
                println!("warning: {w}");
            }
            // The process ends here: freeing a million records one by one
            // would add most of a second to `check` for nothing.
            std::mem::forget(s);
            ExitCode::SUCCESS
        }
        Err(d) => {
            print_problems(&d);
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn run_explain(a: &ExplainArgs) -> ExitCode {
    let loaded = load_config(&a.data).and_then(|cfg| crate::loader::load(&cfg, 1));
    let snap = match loaded {
        Ok(s) => s,
        Err(d) => {
            eprint!("{d}");
            eprintln!("pzdns: cannot explain: the data has {} problem(s); run `pzdns check`", d.len());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let name = match Name::from_str(&a.name) {
        Ok(mut n) => {
            n.set_fqdn(true);
            n
        }
        Err(e) => {
            eprintln!("pzdns: `{}` is not a domain name: {e}", a.name);
            return ExitCode::from(EXIT_CANNOT_START);
        }
    };
    let qtype = match crate::explain::parse_type(&a.qtype) {
        Some(t) => t,
        None => {
            eprintln!("pzdns: `{}` is not a record type (e.g. A, AAAA, CNAME, TXT)", a.qtype);
            return ExitCode::from(EXIT_CANNOT_START);
        }
    };
    let asker = match (&a.vpc, a.from) {
        (Some(v), _) => Asker::Vpc(v.clone()),
        (None, Some(client)) if a.via.is_some() => Asker::Via { client, forwarder: a.via.unwrap_or(client) },
        (None, Some(ip)) => Asker::From(ip),
        (None, None) => unreachable!("clap requires --vpc or --from"),
    };
    match explain(&snap, &asker, &name, qtype) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pzdns: {e}");
            ExitCode::from(EXIT_CANNOT_START)
        }
    }
}

/// A one-line reason on stderr and exit 2 (docs/REFERENCE.md#exit-codes).
fn cannot_start(reason: impl std::fmt::Display) -> ExitCode {
    eprintln!("pzdns: cannot start: {reason}");
    ExitCode::from(EXIT_CANNOT_START)
}

/// As [`cannot_start`], in the log format asked for: with JSON logs, the
/// last line is a JSON object too (a log pipeline reads it like the rest).
fn cannot_start_as(format: crate::config::LogFormat, reason: impl std::fmt::Display) -> ExitCode {
    if format == crate::config::LogFormat::Json {
        let line = serde_json::json!({
            "timestamp": crate::admin::rfc3339(std::time::SystemTime::now()),
            "level": "ERROR",
            "fields": {"message": format!("cannot start: {reason}"), "exit_code": EXIT_CANNOT_START},
            "target": "pzdns",
        });
        eprintln!("{line}");
        return ExitCode::from(EXIT_CANNOT_START);
    }
    cannot_start(reason)
}

/// The flags of `serve` that override the configuration file, kept to be
/// applied again over the file on every reload.
#[derive(Debug, Clone, Default)]
pub struct ServeFlags {
    pub listen: Vec<String>,
    pub upstream: Vec<String>,
    pub admin: Option<String>,
    pub log_format: Option<String>,
}

impl ServeArgs {
    fn flags(&self) -> ServeFlags {
        ServeFlags {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            admin: self.admin.clone(),
            log_format: self.log_format.clone(),
        }
    }
}

/// Applies the command-line flags over the configuration file.
fn apply_serve_flags(cfg: &mut ServerConfig, a: &ServeFlags) -> Result<(), String> {
    use crate::config::{Listener, parse_log_format, parse_socket_addr};
    if !a.listen.is_empty() {
        cfg.listen = a
            .listen
            .iter()
            .map(|l| parse_socket_addr(l, None).map(Listener::new).ok_or_else(|| format!("--listen `{l}` must be IP:PORT")))
            .collect::<Result<_, _>>()?;
    }
    if !a.upstream.is_empty() {
        cfg.upstreams_from_resolv_conf = false;
        let mut ups = Vec::new();
        for u in &a.upstream {
            let (addr, tls) = crate::config::parse_upstream(u).map_err(|why| format!("--upstream: {why}"))?;
            if let Some(name) = tls {
                cfg.upstream_tls.insert(addr, name);
            }
            ups.push(addr);
        }
        cfg.upstreams = ups;
    }
    if let Some(ad) = &a.admin {
        cfg.admin_listen = if ad == "off" {
            None
        } else {
            Some(parse_socket_addr(ad, None).ok_or_else(|| format!("--admin `{ad}` must be IP:PORT or off"))?)
        };
    }
    if let Some(f) = &a.log_format {
        cfg.log_format = parse_log_format(f).ok_or_else(|| format!("--log-format `{f}` must be text or json"))?;
    }
    Ok(())
}

/// Logs go to stderr through a non-blocking writer, so a slow terminal or
/// log collector never stalls a query (lines are dropped instead, and
/// counted by tracing-appender). The guard flushes on exit.
fn init_tracing(format: crate::config::LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    // hickory logs a line per packet it finds fault with (an upstream's
    // malformed OPT, for one), at WARN: anyone who can get a packet to
    // pzdns could fill the log. pzdns counts such things itself
    // (`Event`), with a line per interval.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,hickory_proto=error,notify=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    match format {
        crate::config::LogFormat::Json => builder.json().init(),
        crate::config::LogFormat::Text => builder.init(),
    }
    guard
}

fn serve(a: &ServeArgs) -> ExitCode {
    // The log format the flags ask for, before any file is read: a
    // config that cannot be read still gets its reason in that format.
    let asked_format = a.log_format.as_deref().and_then(crate::config::parse_log_format).unwrap_or(crate::config::LogFormat::Text);
    let read = {
        let (data, flags) = (a.data.clone(), a.flags());
        move || -> Result<ServerConfig, Diagnostics> {
            let mut cfg = load_config(&data)?;
            if let Err(e) = apply_serve_flags(&mut cfg, &flags) {
                let mut d = Diagnostics::new();
                d.push(std::path::Path::new("(command line)"), crate::config::Pos::UNKNOWN, e);
                return Err(d);
            }
            if let Some(why) = cfg.admin_exposure() {
                let mut d = Diagnostics::new();
                d.push(cfg.source.as_deref().unwrap_or(std::path::Path::new("(command line)")), crate::config::Pos::UNKNOWN, why);
                return Err(d);
            }
            Ok(cfg)
        }
    };
    let cfg = match load_config(&a.data) {
        Ok(c) => c,
        Err(d) => {
            eprint!("{d}");
            return cannot_start_as(asked_format, format!("{} problem(s) in the configuration", d.len()));
        }
    };
    let mut cfg = cfg;
    if let Err(e) = apply_serve_flags(&mut cfg, &a.flags()) {
        return cannot_start_as(asked_format, e);
    }
    if let Some(why) = cfg.admin_exposure() {
        return cannot_start_as(asked_format, why);
    }
    let log_guard = init_tracing(cfg.log_format);
    if cfg.upstreams.is_empty() && cfg.resolver_mode == crate::config::ResolverMode::Forward {
        if cfg.upstreams_from_resolv_conf {
            tracing::warn!("no upstreams: none in the config, none in /etc/resolv.conf; names that must be forwarded get SERVFAIL");
        } else {
            tracing::warn!("no upstreams (`upstreams: []`): names that must be forwarded get SERVFAIL");
        }
    }
    for up in &cfg.upstreams {
        if cfg.listen.iter().any(|l| l.address == *up) {
            tracing::warn!(upstream = %up, "an upstream is one of pzdns's own listen addresses: forwarding would loop");
        }
    }
    raise_fd_limit(cfg.tcp_max_connections + crate::upstream::DEFAULT_MAX_IN_FLIGHT + 256);
    let workers = a.workers.map(usize::from).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let format = cfg.log_format;
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return cannot_start_as(format, format!("cannot start the runtime: {e}")),
    };
    // Embedded defaults have no file to read again.
    let source: Option<crate::state::ConfigSource> = cfg.source.is_some().then(|| Box::new(read) as crate::state::ConfigSource);
    let result =
        rt.block_on(async { crate::app::run(cfg, workers, a.ready_file.clone(), source, crate::app::termination_signal()?).await });
    // Not `drop`: that would wait for every blocking thread, and a load
    // that hangs must not keep SIGTERM from ending the process.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    // Flush the logs first, so the one-line reason is the last line.
    drop(log_guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cannot_start_as(format, e),
    }
}

/// Raises the soft open-file limit to the hard one: every upstream question
/// in flight and every TCP connection holds a descriptor, and the usual
/// soft default (1024) is below what the defaults can use. Warns when even
/// the hard limit is below `wanted`.
fn raise_fd_limit(wanted: usize) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    if (lim.rlim_cur as usize) < wanted {
        tracing::warn!(
            limit = lim.rlim_cur,
            wanted,
            "the open-file limit is low: under load, upstream questions and TCP connections will fail (raise LimitNOFILE / ulimit -n)"
        );
    }
}
