//! State shared by every listener, the admin server and reload: the data
//! in force, the forwarder and its cache, metrics, the configuration and
//! the reload status. Also the one place an answered query is recorded
//! (metrics, the query log, dnstap), whatever transport it came by.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tracing::info;

use crate::answer::{Answered, Client, Ctx, Outcome, Pending, Transport, answer};
use crate::config::{Diagnostics, ServerConfig};
use crate::dns::query::Query;
use crate::dnstap::{Dnstap, Protocol};
use crate::metrics::{Event, Metrics, Source, rcode_label};
use crate::snapshot::{Snapshot, View};
use crate::upstream::Forwarder;

/// What `/readyz` and `/zones` report about loading.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// Generation in force (0: nothing loaded yet).
    pub generation: u64,
    pub loaded_at: Option<SystemTime>,
    pub load_ms: u64,
    /// The git commit of the zones directory, when it is in a checkout.
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>, // local changes under zones_dir (reload::git_dirty); None: not known
    /// The last failed attempt, if it is more recent than the last success.
    pub last_failure: Option<Failure>,
    /// Settings changed in the configuration file that the running
    /// server cannot apply (listeners, admin address, ...): each says
    /// what changed; a restart applies them.
    pub restart_needed: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub at: SystemTime,
    pub trigger: &'static str,
    pub problems: Vec<String>,
}

pub struct Shared {
    /// The data in force; swapped whole on reload.
    pub snapshot: ArcSwap<Snapshot>,
    /// Upstream client and cache; they survive reloads.
    pub forwarder: Forwarder,
    pub metrics: Arc<Metrics>,
    /// The configuration in force: re-read with the data on every reload
    /// (what needs a restart stays as the server started, see
    /// `reload::settings_needing_restart`).
    pub config: ArcSwap<ServerConfig>,
    /// How to read the configuration again: the file and the command-line
    /// flags over it. `None`: the configuration is fixed (tests, embedded
    /// defaults with nothing to re-read).
    pub config_source: Option<ConfigSource>,
    /// `query_log` of the configuration in force, read once per query.
    query_log: AtomicBool,
    pub status: Mutex<ReloadStatus>,
    /// Serialises reloads from the watch, SIGHUP and the admin API.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// What the last successful load read, for the next to read only what changed.
    pub incremental: Mutex<crate::loader::Incremental>,
    /// The threads reloads build on (`reload.threads`), made on first use.
    pub reload_pool: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>>,
    /// Upstream questions still being answered (the drain waits on them).
    pub waiting: tokio::sync::watch::Sender<usize>,
    /// dnstap output, when configured (set once at start).
    pub dnstap: OnceLock<Arc<Dnstap>>,
    /// The address each listener got (port 0 resolved), set once bound.
    pub listeners: OnceLock<Vec<SocketAddr>>,
}

/// Reads the configuration anew, as at start (file, then flags).
pub type ConfigSource = Box<dyn Fn() -> Result<ServerConfig, Diagnostics> + Send + Sync>;

impl Shared {
    pub fn new(config: ServerConfig, snapshot: Snapshot, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::with_source(config, snapshot, metrics, None)
    }

    /// As [`Shared::new`], with the means to re-read the configuration on reload.
    pub fn with_source(config: ServerConfig, snapshot: Snapshot, metrics: Arc<Metrics>, source: Option<ConfigSource>) -> Arc<Self> {
        let forwarder = Forwarder::new(config.cache_max_entries, config.cache_max_bytes, config.serve_stale, metrics.clone());
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            forwarder,
            metrics,
            query_log: AtomicBool::new(config.query_log),
            config: ArcSwap::from_pointee(config),
            config_source: source,
            status: Mutex::new(ReloadStatus::default()),
            reload_lock: tokio::sync::Mutex::new(()),
            incremental: Mutex::new(crate::loader::Incremental::default()),
            reload_pool: Mutex::new(None),
            waiting: tokio::sync::watch::Sender::new(0),
            dnstap: OnceLock::new(),
            listeners: OnceLock::new(),
        })
    }

    /// Whether each answered query is logged (`query_log`).
    pub fn query_log(&self) -> bool {
        self.query_log.load(Ordering::Relaxed)
    }

    /// Puts a configuration re-read on reload in force: what applies
    /// without a restart (the snapshot, built from it, is swapped by the
    /// caller).
    pub fn apply_config(&self, cfg: Arc<ServerConfig>) {
        self.query_log.store(cfg.query_log, Ordering::Relaxed);
        self.forwarder.reconfigure(cfg.cache_max_entries, cfg.cache_max_bytes, cfg.serve_stale);
        self.config.store(cfg);
    }

    /// Sends client and forwarder messages to `tap` from now on.
    pub fn set_dnstap(&self, tap: Arc<Dnstap>) {
        self.forwarder.set_dnstap(tap.clone());
        let _ = self.dnstap.set(tap);
    }

    /// Whether a query waiting on an upstream must be kept for recording
    /// (the query log, dnstap).
    pub fn keeps_query(&self) -> bool {
        self.query_log() || self.dnstap.get().is_some()
    }

    /// The address of listener `i`: as bound, else as configured.
    fn listener_addr(&self, i: usize) -> SocketAddr {
        match self.listeners.get().and_then(|l| l.get(i)) {
            Some(a) => *a,
            None => self.config.load().listen.get(i).map_or(crate::config::DEFAULT_LISTEN, |l| l.address),
        }
    }

    /// Counts one answered query and, with `query_log`, logs it; with
    /// dnstap, hands its messages over.
    pub fn record(&self, snap: &Snapshot, client: &Client, query: &[u8], response: &[u8], a: &Answered, took: Duration) {
        self.metrics.query_duration.observe(took.as_secs_f64());
        // An empty response is a policy's drop: nothing was sent, so no rcode.
        let a = &Answered { rcode: if response.is_empty() { crate::metrics::RCODE_DROPPED } else { a.rcode }, ..*a };
        snap.count_query(&self.metrics, a.view, a.rcode, a.source);
        if self.query_log() {
            log_query(snap, client, self.listener_addr(client.listener), query, response.len(), a, took);
        }
        if let Some(tap) = self.dnstap.get() {
            let protocol = match client.transport {
                Transport::Udp => Protocol::Udp,
                Transport::Tcp => Protocol::Tcp,
            };
            let rule_set = a.policy.map(|p| snap.policy.set_of(p.rule).label);
            let policy = a.policy.zip(rule_set).map(|(p, set)| dnstap_policy(snap, p, set));
            tap.client(protocol, client.src, self.listener_addr(client.listener), query, response, took, policy);
        }
        match a.source {
            Source::Error => self.metrics.events.note(Event::BadQuery, || {
                format!("{} query from {} answered {}", client.transport.as_str(), client.src, rcode_label(a.rcode))
            }),
            Source::Refused => self.metrics.events.note(Event::Refused, || {
                let why = if a.view == Some(View::Unknown) { "a source in no VPC" } else { "a transfer or a class other than IN" };
                format!("{} query from {} REFUSED: {why}", client.transport.as_str(), client.src)
            }),
            Source::Stale => self
                .metrics
                .events
                .note(Event::StaleServed, || format!("served a stale answer to {} (RFC 8767): the upstreams failed", client.src)),
            Source::Failure => self.metrics.events.note(Event::ServFail, || {
                format!("answered SERVFAIL to {}: an upstream failure or a CNAME chain that cannot end", client.src)
            }),
            _ => {}
        }
    }

    /// Counts a packet dropped unanswered (see [`Event`]); malformed EDNS
    /// options are noted by the answer path, which reads them anyway.
    pub fn note_received(&self, client: &Client, msg: &[u8], dropped: bool) {
        if dropped {
            self.metrics.events.note(Event::Dropped, || {
                let why = if msg.len() < crate::dns::HEADER_LEN { "shorter than a DNS header" } else { "a response (QR=1)" };
                format!("{} message of {} bytes from {} dropped: {why}", client.transport.as_str(), msg.len(), client.src)
            });
        }
    }

    /// A whole query, in process: bytes in, response bytes out (`None`
    /// where nothing is sent back). For tests, benchmarks and fuzzing;
    /// UDP drives [`answer`] itself, TCP [`Shared::answer_start`].
    pub async fn answer_bytes(&self, client: Client, query: &[u8]) -> Option<Vec<u8>> {
        match self.answer_start(client, query) {
            // Empty: a policy dropped it.
            Started::Done(bytes) => Some(bytes).filter(|b| !b.is_empty()),
            Started::Drop => None,
            Started::Wait(w) => Some(w.finish(self).await).filter(|b| !b.is_empty()),
        }
    }

    /// Answers `query` as far as can be done now: the response (recorded),
    /// nothing, or the question that must wait on an upstream.
    pub fn answer_start(&self, client: Client, query: &[u8]) -> Started {
        let started = std::time::Instant::now();
        let snap = self.snapshot.load_full();
        let ctx = Ctx { snap: &snap, cache: &self.forwarder.cache, metrics: &self.metrics, now: started };
        let mut out = Vec::new();
        let outcome = answer(&ctx, &client, query, &mut out);
        self.note_received(&client, query, matches!(outcome, Outcome::Drop));
        match outcome {
            Outcome::Drop => Started::Drop,
            Outcome::Done(a) => {
                self.record(&snap, &client, query, &out, &a, started.elapsed());
                Started::Done(out)
            }
            Outcome::Wait(pending) => {
                // The query is kept only for the query log and dnstap.
                let query = if self.keeps_query() { query.to_vec() } else { Vec::new() };
                Started::Wait(Waiting { pending, snap, client, query, started })
            }
        }
    }

    /// Runs `f` counted as a question waiting on an upstream: shutdown
    /// waits for these (within its grace time).
    pub async fn waiting_on<T>(&self, f: impl Future<Output = T>) -> T {
        self.waiting.send_modify(|n| *n += 1);
        let out = f.await;
        self.waiting.send_modify(|n| *n -= 1);
        out
    }
}

/// How far [`Shared::answer_start`] got.
pub enum Started {
    /// The response, recorded.
    Done(Vec<u8>),
    /// Nothing is sent back.
    Drop,
    Wait(Waiting),
}

/// A query waiting on an upstream, with what recording it needs.
pub struct Waiting {
    pending: Box<Pending>,
    snap: Arc<Snapshot>,
    client: Client,
    query: Vec<u8>,
    started: std::time::Instant,
}

impl Waiting {
    /// Asks the upstream, records the answer, returns the response.
    pub async fn finish(self, shared: &Shared) -> Vec<u8> {
        let (bytes, a) = self.pending.finish(&shared.forwarder).await;
        shared.record(&self.snap, &self.client, &self.query, &bytes, &a, self.started.elapsed());
        bytes
    }
}

/// Polls `fut` once, with a waker that does nothing: its output if it is
/// ready at once, else `None` (then it is polled again where it is
/// spawned or awaited, which registers a real waker).
pub fn ready_now<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(fut).poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// A policy hit as dnstap's `Policy` (type, the rule set as the rule,
/// action, what matched).
fn dnstap_policy<'a>(snap: &Snapshot, p: crate::answer::PolicyMark, set: &'a str) -> crate::dnstap::proto::Policy<'a> {
    use crate::config::policy::ActionKind as A;
    let action = match p.action {
        A::NxDomain => Some(1),
        A::NoData => Some(2),
        A::Allow | A::Alert => Some(3),
        A::Drop => Some(4),
        A::TcpOnly if p.applied => Some(5),
        A::TcpOnly => Some(3),
        A::Override => Some(6),
        A::Refused => None,
    };
    let matched = match snap.policy.rule(p.rule).trigger {
        crate::snapshot::policy::TriggerKind::ResponseIp => 3,
        _ => 1,
    };
    crate::dnstap::proto::Policy { kind: "RPZ", rule: set.as_bytes(), action, matched }
}

fn log_query(snap: &Snapshot, client: &Client, listener: SocketAddr, query: &[u8], size: usize, a: &Answered, took: Duration) {
    let vpc = match a.view {
        Some(View::Vpc { vpc, .. }) => snap.vpc_labels.get(vpc as usize).unwrap_or(&snap.unknown_label),
        _ => &snap.unknown_label,
    };
    let parsed = Query::parse(query).ok();
    let (name, qtype) = match parsed.as_ref().and_then(|q| q.one()) {
        Some((_, qname, qtype, _)) => {
            (Name::read(&mut BinDecoder::new(qname)).map(|n| n.to_string()).unwrap_or_default(), RecordType::from(qtype))
        }
        None => (String::new(), RecordType::NULL),
    };
    // The header as sent, even where the rest did not parse.
    let word = |i: usize| query.get(i..i + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    info!(
        target: "pzdns::query",
        vpc = &**vpc,
        client = %client.src,
        // The client a trusted forwarder spoke for, when it picked the view.
        for_client = a.claimed.map(|c| c.to_string()).unwrap_or_default(),
        protocol = client.transport.as_str(),
        listener = %listener,
        id = word(0),
        // Text (quoted in text logs): both may hold a space.
        flags = HeaderFlags(word(2)).to_string().as_str(),
        edns = EdnsText(parsed.and_then(|q| q.edns).map(|e| (e.payload, e.dnssec_ok))).to_string().as_str(),
        name = %name,
        qtype = %qtype,
        rcode = rcode_label(a.rcode),
        source = a.source.as_str(),
        // The response-policy rule that decided (or alerted): `rule set=action`.
        policy = a.policy.map(|p| format!("{}={}", snap.policy.set_of(p.rule).label, p.action.as_str())).unwrap_or_default(),
        size = size,
        us = took.as_micros() as u64,
    );
}

/// A query's header flags as dig prints them (`rd cd`), or `-`.
struct HeaderFlags(u16);

impl std::fmt::Display for HeaderFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const FLAGS: [(u16, &str); 7] =
            [(0x8000, "qr"), (0x0400, "aa"), (0x0200, "tc"), (0x0100, "rd"), (0x0080, "ra"), (0x0020, "ad"), (0x0010, "cd")];
        let mut first = true;
        for (bit, name) in FLAGS {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first { f.write_str("-") } else { Ok(()) }
    }
}

/// A query's EDNS: the UDP payload it offers and `do` when it sets DO, or
/// `-` without EDNS.
struct EdnsText(Option<(u16, bool)>);

impl std::fmt::Display for EdnsText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("-"),
            Some((payload, false)) => write!(f, "{payload}"),
            Some((payload, true)) => write!(f, "{payload} do"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_edns_as_text() {
        assert_eq!(HeaderFlags(0x0130).to_string(), "rd ad cd");
        assert_eq!(HeaderFlags(0x0100).to_string(), "rd");
        assert_eq!(HeaderFlags(0).to_string(), "-");
        assert_eq!(EdnsText(None).to_string(), "-");
        assert_eq!(EdnsText(Some((1232, true))).to_string(), "1232 do");
        assert_eq!(EdnsText(Some((4096, false))).to_string(), "4096");
    }
}
