//! Forwarding to the public authority (docs/REFERENCE.md#rule-4-no-zone, #upstream-failures): an
//! upstream client and the cache in front of it.
//!
//! ```text
//! answer: cache (fresh? a cached failure too) ─► miss ─► Forwarder::ask: an expired entry,
//!        │                   and the upstreams known down, or its refresh failed just now? ─► stale now
//!        └► join the question in flight, or start it on a task (bounded: in flight, waiters, shares)
//!           ─► upstream 1 ─(timeout, SERVFAIL, REFUSED, referral)─► upstream 2 ─► SERVFAIL
//!           └► with a stale entry: at most 1.8 s, or until known down ─► stale (RFC 8767)
//! ```
//! Failure is per name, health is per upstream: an upstream that replies
//! (even SERVFAIL) is up, and a name it cannot answer is cached as a
//! failure for a few seconds ([`cache::FAILURE_TTL`]); only transport
//! failures across names (timeouts, I/O errors) make an upstream down.
//!
//! Spoofing resistance: each question goes out from a new UDP socket
//! (random source port) with a random id and the name's letters in random
//! case (0x20, [`randomise_case`]); the socket is connected, so the kernel
//! drops datagrams from any other source, and a reply is taken only if
//! its id and question are those sent, byte for byte ([`match_reply`]).
//! A reply that differs only in case, one too big for the buffer, a
//! truncated one, and every question to an upstream that a flood of
//! unwanted replies made untrusted, are asked again over TCP.
//!
//! An upstream given as `ADDR#NAME` is asked over DNS over TLS instead,
//! on a connection kept open ([`dot`]); never in clear.

pub mod cache;
pub mod dot;
pub mod recursor;
pub mod shares;

// foldhash, seeded per process: the per-question maps hashed with SipHash cost
// more than the rest of their bookkeeping (docs/ARCHITECTURE.md).
use foldhash::{HashMap, HashMapExt};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[cfg(test)]
use hickory_proto::op::{Edns, MessageType, OpCode, Query};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

pub use cache::{Cache, Entry, Failure, Key};
use shares::Zone;
pub use shares::{Asker, Limits, NO_VPC, Share, Shares, Shed};

use crate::dnssec::{self, Status, Validator};
use crate::dnstap::{Dnstap, Protocol};
use crate::metrics::{Event, Metrics, ShedLabels, UpstreamLabels, UpstreamOnly, UpstreamTcp};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// Time allowed to one upstream before the next is tried. Two attempts
/// (docs/REFERENCE.md#upstreams: "tried once more on the next upstream") stay under the
/// 3 s in which a client must hear SERVFAIL at the latest.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1200);
/// Attempts per question: the first upstream, then the next one.
pub const ATTEMPTS: usize = 2;
/// An upstream whose last attempt failed in transport (timeout, I/O
/// error) is tried last for this long.
pub const DOWN_FOR: Duration = Duration::from_secs(5);
/// I/O errors in a row (ICMP port unreachable, a refused TCP connection:
/// a forged ICMP message can cause one), across names, that make an
/// upstream known down; a timeout does at once. Either only when the
/// upstream sent no reply during the attempt: one slow name (an upstream
/// timing out on a broken domain while it answers others) never does.
pub const DOWN_AFTER_FAILURES: u32 = 3;
/// An upstream that does not keep the case of the question (0x20) is
/// asked without it for this long, then tried with it again.
pub const NO_CAPS_FOR: Duration = Duration::from_secs(3600);
/// Unwanted replies (another id or question) from one upstream within
/// [`UNWANTED_WINDOW`] that mean someone is trying to spoof it: a
/// connected socket per question gets none in normal operation, where a
/// spoofer needs tens of thousands per question.
pub const UNWANTED_THRESHOLD: u32 = 200;
pub const UNWANTED_WINDOW: Duration = Duration::from_secs(10);
/// Past [`UNWANTED_THRESHOLD`], the upstream's UDP replies are not trusted
/// for this long: its questions, those in flight included, go over TCP.
pub const DISTRUST_FOR: Duration = Duration::from_secs(60);
/// Most upstream questions in flight at once; beyond it, SERVFAIL at once
/// (a flood degrades answers, never memory).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;
/// Most addresses whose 0x20 and spoofing state is kept: in recursive
/// mode every authoritative server met is one; past it, a new one is not
/// remembered (it is asked as if first met).
pub const MAX_HEALTH_ENTRIES: usize = recursor::MAX_INFRA_ENTRIES;
/// Largest UDP reply read; a bigger one is asked again over TCP (the
/// buffer has a byte more, to see that it is bigger).
pub const UDP_REPLY_BUFFER: usize = 4096;
/// EDNS payload size asked of upstreams.
pub const UPSTREAM_PAYLOAD: u16 = crate::dns::MAX_UDP_PAYLOAD;

/// Why an upstream question failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstreams configured")]
    NoUpstreams,
    #[error("too many upstream questions in flight")]
    Overloaded,
    /// Over a share of upstream work ([`Shares`]): this client's, this
    /// VPC's or this domain's.
    #[error("over the {0} share of upstream questions in flight")]
    OverShare(Share),
    #[error("upstream {0} timed out")]
    Timeout(SocketAddr),
    #[error("upstream {0} answered {1}")]
    Rcode(SocketAddr, ResponseCode),
    #[error("upstream {0}: {1}")]
    Io(SocketAddr, String),
    #[error("every upstream failed its last attempt")]
    KnownDown,
    #[error("upstream {0} answered with a referral, not an answer")]
    Referral(SocketAddr),
    #[error("the upstreams failed this name less than {}s ago", cache::FAILURE_TTL)]
    NameFailing,
    /// Recursive mode: no server of a zone on the way gave a usable reply.
    #[error("no authoritative server of {0} answered")]
    NoAuthority(String),
    /// Recursive mode: a bound on one resolution's work was reached.
    #[error("resolution stopped: {0}")]
    WorkLimit(&'static str),
}

impl UpstreamError {
    /// A per-name failure from an upstream that replied.
    fn of_name(up: SocketAddr, why: Failure) -> Self {
        match why {
            Failure::Rcode(rc) => UpstreamError::Rcode(up, rc),
            Failure::Referral => UpstreamError::Referral(up),
        }
    }
}

/// The outcome of [`Forwarder::ask`].
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A fresh answer, just fetched (or fetched for another client
    /// asking the same question at the same time).
    Fresh(Arc<Entry>),
    /// Upstreams failed; a stale answer within the `serve_stale` window.
    Stale(Arc<Entry>, UpstreamError),
    Failed(UpstreamError),
}

type Fetched = Result<Arc<Entry>, UpstreamError>;

/// A reply as kept for the cache ([`Core::contained`]), and whether it was
/// kept for a question with DO=1.
struct Kept {
    entry: Entry,
    dnssec: bool,
}

/// Most clients waiting on one upstream question; more get a stale answer
/// if there is one, else SERVFAIL at once (counted as overload). Each
/// waiter holds its half-written response and a task.
pub const MAX_WAITERS_PER_QUESTION: usize = 512;
/// Most clients waiting on upstream questions in all, however many
/// questions (the first asker of each included).
pub const MAX_WAITERS: usize = 2 * DEFAULT_MAX_IN_FLIGHT;
/// RFC 8767's client response timer: a client with a stale answer to fall
/// back on waits at most this long for a fresh one (the question goes on
/// in the background and fills the cache when it is answered).
pub const STALE_ANSWER_AFTER: Duration = Duration::from_millis(1800);
/// While every upstream of a route is known down, stale answers go out at
/// once and at most one question per this long is sent to refresh one
/// (RFC 8767's failure recheck, per route rather than per name, so that
/// a dead upstream sees a trickle, whatever the clients ask).
pub const STALE_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How an upstream question stands, as its waiters see it.
#[derive(Debug, Clone)]
enum Progress {
    Asking,
    /// An attempt failed and every upstream of the route is now known
    /// down: a waiter with a stale answer need not wait for the rest.
    Failing,
    Done(Fetched),
}

/// One upstream question in flight, shared by every client asking it.
/// (A mutex and a `Notify` rather than a `watch` channel: a channel's
/// sharded notifier cost more than the rest of a flight's bookkeeping.)
struct Flight {
    progress: Mutex<Progress>,
    /// Woken whenever `progress` moves.
    moved: tokio::sync::Notify,
    waiters: AtomicUsize,
}

impl Flight {
    fn new() -> Self {
        Flight { progress: Mutex::new(Progress::Asking), moved: tokio::sync::Notify::new(), waiters: AtomicUsize::new(0) }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves it on with `f` (which says whether it changed anything) and
    /// wakes its waiters if it did.
    fn update(&self, f: impl FnOnce(&mut Progress) -> bool) {
        let moved = f(&mut self.progress());
        if moved {
            self.moved.notify_waiters();
        }
    }

    /// Waits until `until` holds of how it stands; that state.
    async fn wait_for(&self, until: impl Fn(&Progress) -> bool) -> Progress {
        loop {
            // Registered before the state is read: a move in between still wakes it.
            let mut moved = std::pin::pin!(self.moved.notified());
            moved.as_mut().enable();
            {
                let p = self.progress();
                if until(&p) {
                    return p.clone();
                }
            }
            moved.await;
        }
    }
}

/// Ends a flight whose task ends without an answer (a panic, the runtime
/// shutting down): its waiters are told, rather than left waiting.
struct Ending(Arc<Flight>);

impl Drop for Ending {
    fn drop(&mut self) {
        self.0.update(|p| {
            let open = !matches!(p, Progress::Done(_));
            if open {
                *p = Progress::Done(Err(UpstreamError::KnownDown));
            }
            open
        });
    }
}

/// A client counted as waiting until dropped (on every return path).
struct Waiter<'a> {
    flight: &'a Flight,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.flight.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Forwarder {
    pub cache: Cache,
    core: Arc<Core>,
    /// What each client, VPC and domain holds of the upstream work.
    pub shares: Arc<Shares>,
    /// Clients waiting on upstream questions, in all ([`MAX_WAITERS`]).
    waiters: Semaphore,
    pub metrics: Arc<Metrics>,
}

/// What a question asked in the background needs: the forwarder less
/// what only waiting clients use.
struct Core {
    cache: Cache,
    metrics: Arc<Metrics>,
    /// `cache.serve_stale` in milliseconds (a configuration reload changes it).
    serve_stale_ms: AtomicU64,
    inflight: Mutex<HashMap<Key, Arc<Flight>>>,
    /// Upstream questions in flight ([`DEFAULT_MAX_IN_FLIGHT`]).
    limit: Arc<Semaphore>,
    /// What is known of each upstream asked: transport failures, replies,
    /// 0x20, unwanted replies ([`Health`]).
    health: Mutex<HashMap<SocketAddr, Health>>,
    /// Some upstream's UDP replies are distrusted until this
    /// (milliseconds since `epoch`): a reply needs the lock only then.
    distrust_until_ms: AtomicU64,
    epoch: Instant,
    /// Per route: no refresh of a stale answer before this, while the
    /// route is known down.
    next_refresh: Mutex<HashMap<u64, Instant>>,
    /// FORWARDER_QUERY and FORWARDER_RESPONSE go here, when set (RESOLVER_*
    /// for authoritative servers in recursive mode).
    dnstap: OnceLock<Arc<Dnstap>>,
    /// Recursive mode: what is known of each authoritative server asked.
    infra: recursor::Infra,
    /// DNSSEC validation of every answer fetched (`resolver.dnssec`);
    /// `None`: off.
    validator: arc_swap::ArcSwapOption<Validator>,
    /// Which upstreams are asked over TLS (a configuration reload changes it).
    tls: arc_swap::ArcSwap<dot::Settings>,
    /// Their connections.
    dot: dot::Pool,
}

impl Forwarder {
    pub fn new(max_entries: u64, max_bytes: u64, serve_stale: Duration, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::with_budget(max_entries, max_bytes);
        let core = Core::new(cache.clone(), metrics.clone(), serve_stale, DEFAULT_MAX_IN_FLIGHT);
        Forwarder {
            cache,
            core: Arc::new(core),
            shares: Shares::new(Limits::of(DEFAULT_MAX_IN_FLIGHT)),
            waiters: Semaphore::new(MAX_WAITERS),
            metrics,
        }
    }

    /// New cache settings (a configuration reload): the budget applies at
    /// once, the stale window to answers cached from now on and to every
    /// stale answer served from now on.
    pub fn reconfigure(&self, max_entries: u64, max_bytes: u64, serve_stale: Duration) {
        self.cache.resize(max_entries, max_bytes);
        self.core.serve_stale_ms.store(serve_stale.as_millis() as u64, Ordering::Relaxed);
    }

    /// Asks `upstreams` for `name`/`qtype` after the cache had nothing
    /// fresh: `cached` is what that one probe found (an expired entry, or
    /// nothing). The question is shared with every client asking it at
    /// the same time, and counted against `asker`'s shares ([`Shares`]).
    ///
    /// With a stale answer in the cache (RFC 8767): when every upstream
    /// of the route is known down, it is served at once and a refresh
    /// goes out in the background (at most one per route per
    /// [`STALE_REFRESH_INTERVAL`]); otherwise the client waits for the
    /// upstream at most [`STALE_ANSWER_AFTER`], or until the upstreams
    /// are known down, then gets the stale answer while the question
    /// goes on. Over a share, the stale answer too, else a failure.
    pub async fn ask(&self, q: &Question<'_>, cached: Option<Arc<Entry>>, asker: Asker) -> Lookup {
        let Question { name, qtype, dnssec_ok, upstreams, route, .. } = *q;
        let now = Instant::now();
        self.metrics.cache_misses.inc();
        let core = &self.core;
        let stale = cached.filter(|e| core.within_stale_window(e, now));
        let serve_stale = |e: Arc<Entry>, why: UpstreamError| {
            self.metrics.cache_stale.inc();
            debug!(%name, %qtype, error = %why, "stale answer");
            Lookup::Stale(e, why)
        };
        if upstreams.is_empty() && q.root.is_none() {
            return match stale {
                Some(e) => serve_stale(e, UpstreamError::NoUpstreams),
                None => Lookup::Failed(UpstreamError::NoUpstreams),
            };
        }
        let mut buf = [0u8; cache::MAX_KEY_LEN];
        let name_key = crate::dns::names::KeyBuf::new(name);
        let key = Key::from(cache::key_bytes(&mut buf, name_key.key(), qtype, dnssec_ok, route));
        let zone = self.shares.zone_of(name_key.key());
        // A refresh of it failed for the name just now (RFC 8767's failure recheck).
        if let Some(e) = stale.clone().filter(|e| e.refresh_failed_recently(now)) {
            return serve_stale(e, UpstreamError::NameFailing);
        }
        if let Some(e) = stale.clone()
            && core.known_down(upstreams)
        {
            if core.refresh_due(route, now) {
                let _ = core.flight(&key, q, zone, None, &self.shares);
            }
            return serve_stale(e, UpstreamError::KnownDown);
        }
        let shed = |reason: Shed| {
            self.metrics.upstream_overloaded.inc();
            self.metrics.upstream_shed.get_or_create(&ShedLabels { reason: reason.label() }).inc();
            self.metrics.events.note(Event::Overloaded, || format!("{}: {name} {qtype} answered at once", reason.text()));
            let why = match reason {
                Shed::Share(s) => UpstreamError::OverShare(s),
                _ => UpstreamError::Overloaded,
            };
            match stale.clone() {
                Some(e) => serve_stale(e, why),
                None => Lookup::Failed(why),
            }
        };
        let Ok(permit) = self.waiters.try_acquire() else {
            return shed(Shed::Waiters);
        };
        let Some(_client) = self.shares.take_client(asker.client) else {
            return shed(Shed::Share(Share::Client));
        };
        // Identical questions in flight share one upstream query.
        let flight = match core.flight(&key, q, zone, Some(asker.vpc), &self.shares) {
            Ok(f) => f,
            Err(reason) => return shed(reason),
        };
        if flight.waiters.fetch_add(1, Ordering::Relaxed) >= MAX_WAITERS_PER_QUESTION {
            flight.waiters.fetch_sub(1, Ordering::Relaxed);
            return shed(Shed::QuestionWaiters);
        }
        let _waiter = Waiter { flight: &flight, _permit: permit };
        let got = match &stale {
            None => flight.wait_for(|p| matches!(p, Progress::Done(_))).await,
            Some(_) => tokio::time::timeout(STALE_ANSWER_AFTER, flight.wait_for(|p| !matches!(p, Progress::Asking)))
                .await
                .unwrap_or(Progress::Failing),
        };
        match (got, stale) {
            (Progress::Done(Ok(e)), _) => Lookup::Fresh(e),
            (Progress::Done(Err(err)), Some(e)) => serve_stale(e, err),
            (Progress::Done(Err(err)), None) => Lookup::Failed(err),
            (_, Some(e)) => serve_stale(e, UpstreamError::KnownDown),
            // Not reached: without a stale answer the wait is for `Done`.
            (_, None) => Lookup::Failed(UpstreamError::KnownDown),
        }
    }
}

/// One question for the upstreams: the name (as it will be sent), the
/// type, the DO bit, the upstreams of its route and the route's id (the
/// cache keeps each route's answers apart). With `root`, the route is
/// resolved from those root servers instead ([`recursor`]).
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub name: &'a Name,
    pub qtype: RecordType,
    pub dnssec_ok: bool,
    pub upstreams: &'a [SocketAddr],
    pub route: u64,
    pub root: Option<&'a Arc<[IpAddr]>>,
}

impl Forwarder {
    /// DNSSEC validation from now on: with `trust` (anchors and negative
    /// anchors), or off. A change empties the cache, whose answers carry
    /// the status the old settings gave them.
    pub fn set_dnssec(&self, trust: Option<&dnssec::Trust>) {
        let old = self.core.validator.load();
        if old.as_deref().map(Validator::trust) == trust {
            return;
        }
        self.core.validator.store(trust.map(|t| Arc::new(Validator::new(t.clone()))));
        if old.is_some() || trust.is_some() {
            self.cache.flush(|_| true);
        }
    }

    /// The cached answer to `name`/`qtype` for `dnssec_ok` on `route`, fresh or stale (for `explain`).
    pub fn cached(&self, name: &Name, qtype: RecordType, dnssec_ok: bool, route: u64) -> Option<Arc<Entry>> {
        let mut buf = [0u8; cache::MAX_KEY_LEN];
        let name_key = crate::dns::names::KeyBuf::new(name);
        self.cache.get(cache::key_bytes(&mut buf, name_key.key(), qtype, dnssec_ok, route), Instant::now())
    }

    /// Whether answers are validated (`resolver.dnssec: validate`).
    pub fn validating(&self) -> bool {
        self.core.validator.load().is_some()
    }

    /// The upstreams asked over TLS (`ADDR#NAME`) and the CAs their
    /// certificates must chain to (`None`: the built-in roots). Unchanged
    /// settings keep the connections open.
    pub fn set_tls(
        &self,
        names: &std::collections::BTreeMap<SocketAddr, String>,
        ca: Option<&[rustls_pki_types::CertificateDer<'static>]>,
    ) {
        let new = dot::Settings::new(names, ca);
        if !self.core.tls.load().same_as(&new) {
            self.core.tls.store(Arc::new(new));
        }
    }

    /// Sends every upstream exchange to `tap` from now on.
    pub fn set_dnstap(&self, tap: Arc<Dnstap>) {
        let _ = self.core.dnstap.set(tap);
    }

    /// Clients waiting on upstream questions now.
    pub fn waiting(&self) -> usize {
        MAX_WAITERS - self.waiters.available_permits()
    }
}

impl Core {
    /// Nothing asked yet: `limit` questions may be in flight at once.
    fn new(cache: Cache, metrics: Arc<Metrics>, serve_stale: Duration, limit: usize) -> Self {
        Core {
            cache,
            metrics,
            serve_stale_ms: AtomicU64::new(serve_stale.as_millis() as u64),
            inflight: Mutex::new(HashMap::new()),
            limit: Arc::new(Semaphore::new(limit)),
            health: Mutex::new(HashMap::new()),
            distrust_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            next_refresh: Mutex::new(HashMap::new()),
            dnstap: OnceLock::new(),
            infra: recursor::Infra::default(),
            validator: arc_swap::ArcSwapOption::empty(),
            tls: arc_swap::ArcSwap::from_pointee(dot::Settings::new(&Default::default(), None)),
            dot: dot::Pool::default(),
        }
    }

    /// An expired entry may still be served (RFC 8767's stale window).
    fn within_stale_window(&self, e: &Entry, now: Instant) -> bool {
        let stale = self.serve_stale();
        stale > Duration::ZERO && e.age(now) < e.ttl.saturating_add(stale.as_secs().min(u32::MAX as u64) as u32)
    }

    fn serve_stale(&self) -> Duration {
        Duration::from_millis(self.serve_stale_ms.load(Ordering::Relaxed))
    }

    /// Every upstream of the set is down ([`Health::down`]).
    fn known_down(&self, upstreams: &[SocketAddr]) -> bool {
        let health = self.health();
        !upstreams.is_empty() && upstreams.iter().all(|a| health.get(a).is_some_and(|h| h.down))
    }

    fn health(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Health>> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a stale answer of `route` may be refreshed now (and if so,
    /// the next one may not before [`STALE_REFRESH_INTERVAL`]).
    fn refresh_due(&self, route: u64, now: Instant) -> bool {
        let mut next = self.next_refresh.lock().unwrap_or_else(|p| p.into_inner());
        match next.get(&route) {
            Some(t) if *t > now => false,
            _ => {
                next.insert(route, now + STALE_REFRESH_INTERVAL);
                true
            }
        }
    }

    /// The question in flight for `key` (a client joining it is counted
    /// as coalesced), or a new one asked on a task of its own (it goes on
    /// whoever waits for it), counted against its domain's share and,
    /// when a client starts it, its VPC's; `Err` when
    /// [`DEFAULT_MAX_IN_FLIGHT`] questions are in flight already or a
    /// share is spent.
    fn flight(
        self: &Arc<Self>,
        key: &Key,
        q: &Question<'_>,
        zone: Zone,
        vpc: Option<u32>,
        shares: &Arc<Shares>,
    ) -> Result<Arc<Flight>, Shed> {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(key) {
            if vpc.is_some() {
                self.metrics.coalesced.inc();
            }
            return Ok(f.clone());
        }
        let tokens = shares.take_flight(zone, vpc).map_err(Shed::Share)?;
        let permit = self.limit.clone().try_acquire_owned().map_err(|_| Shed::InFlight)?;
        let flight = Arc::new(Flight::new());
        map.insert(key.clone(), flight.clone());
        drop(map);
        let (core, f, key, name, upstreams) = (self.clone(), flight.clone(), key.clone(), q.name.clone(), q.upstreams.to_vec());
        let (qtype, dnssec_ok, root, route) = (q.qtype, q.dnssec_ok, q.root.cloned(), q.route);
        tokio::spawn(async move {
            let ending = Ending(f);
            let f = &ending.0;
            // Boxed, both: a question's state is large (a resolution's the
            // more so), and a task is moved several times as it is spawned.
            let fetched = match root {
                Some(root) => Box::pin(core.fetch_recursive(&key, &name, qtype, dnssec_ok, &root, route)).await,
                None => Box::pin(core.fetch(&key, &name, qtype, dnssec_ok, &upstreams, route, f)).await,
            };
            drop((permit, tokens));
            f.update(|p| {
                *p = Progress::Done(fetched);
                true
            });
            let mut map = core.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&key).is_some_and(|c| Arc::ptr_eq(c, f)) {
                map.remove(&key);
            }
        });
        Ok(flight)
    }

    /// Asks the upstreams, at most [`ATTEMPTS`] of them, healthy ones first.
    /// A name the upstreams that replied could not answer (SERVFAIL,
    /// REFUSED, a referral) is cached as a failure, unless a real answer
    /// is cached for it: that one is kept, to be served stale.
    #[allow(clippy::too_many_arguments)]
    async fn fetch(
        &self,
        key: &Key,
        name: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        upstreams: &[SocketAddr],
        route: u64,
        flight: &Flight,
    ) -> Fetched {
        self.metrics.upstream_in_flight.inc();
        let _in_flight = InFlight(&self.metrics);
        let validator = self.validator.load_full();
        match self.attempts(name, qtype, dnssec_ok || validator.is_some(), upstreams, Some(flight)).await {
            Ok(msg) => {
                let kept = self.contained(name, qtype, dnssec_ok || validator.is_some(), msg);
                let status = match &validator {
                    // Boxed, as the recursive branch above: off, it costs nothing.
                    Some(v) => {
                        let fetch = ChainFetch { core: self, via: Via::Upstreams(upstreams), route };
                        Box::pin(self.validate(v, name, qtype, &kept, &fetch)).await
                    }
                    None => Status::Unchecked,
                };
                Ok(self.store_checked(key, qtype, dnssec_ok, kept, status))
            }
            Err((err, Some(why))) => {
                self.name_failed(key, why);
                Err(err)
            }
            Err((err, None)) => Err(err),
        }
    }

    /// Validates a reply to `name`/`qtype` (asked with DO=1), fetching
    /// DS and DNSKEY sets through `fetch` (the same upstreams, or the
    /// authorities in recursive mode); a bogus one is logged at a bounded
    /// rate, naming the zone and the reason.
    /// `kept` is the reply as [`Core::contained`] kept it for DO=1.
    async fn validate(&self, v: &Validator, name: &Name, qtype: RecordType, kept: &Kept, fetch: &ChainFetch<'_>) -> Status {
        let entry = &kept.entry;
        let (ar, ur) = (wire_rrs(&entry.wire.0), wire_rrs(&entry.wire.1));
        let qname = crate::dns::names::KeyBuf::new(name);
        let answer = dnssec::Answer {
            qname: qname.key(),
            qtype: u16::from(qtype),
            rcode: u16::from(entry.rcode.low()),
            answers: &ar,
            authorities: &ur,
        };
        let mut budget = dnssec::Budget::default();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
        let status = v.validate(fetch, &answer, now, &mut budget).await;
        if let Status::Bogus(b) = status {
            let zone = crate::dns::names::key_to_name(&budget.zone);
            self.metrics.events.note(Event::DnssecBogus, || format!("zone {zone}: {} (asked {name} {qtype})", b.text()));
        }
        status
    }

    /// Asks the upstreams for an answer, at most [`ATTEMPTS`] of them,
    /// healthy ones first: the reply, or the last error and, when an
    /// upstream that replied could not answer the name, why.
    async fn attempts(
        &self,
        name: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        upstreams: &[SocketAddr],
        flight: Option<&Flight>,
    ) -> Result<Message, (UpstreamError, Option<Failure>)> {
        let order = self.order(upstreams);
        let mut last = UpstreamError::NoUpstreams;
        let mut name_failed = None;
        for (i, &(up, caps)) in order.iter().cycle().take(ATTEMPTS.max(1)).enumerate() {
            let sent = Instant::now();
            let deadline = sent + ATTEMPT_TIMEOUT;
            let res = match query_bytes(rand::random(), name, qtype, dnssec_ok, caps) {
                Ok(bytes) => self.exchange(up, name, &bytes, caps, false, deadline).await,
                Err(e) => Err(UpstreamError::Io(up, e.to_string())),
            };
            let elapsed = sent.elapsed().as_secs_f64();
            match res {
                Ok(msg) => {
                    // It replied: up, whatever it said about this name.
                    let handles = self.mark_up(up);
                    handles.duration.observe(elapsed);
                    match classify(&msg) {
                        Ok(()) => {
                            handles.ok.inc();
                            return Ok(msg);
                        }
                        Err(why) => {
                            last = UpstreamError::of_name(up, why);
                            name_failed = Some((why, last.clone()));
                        }
                    }
                }
                Err(e) => {
                    self.mark_failed(up, matches!(e, UpstreamError::Timeout(_)));
                    self.metrics.upstream_duration.get_or_create(&UpstreamOnly { upstream: up.to_string() }).observe(elapsed);
                    last = e;
                }
            }
            self.count(up, outcome_label(&last));
            debug!(attempt = i + 1, error = %last, %name, %qtype, "upstream attempt failed");
            self.metrics.events.count_only(Event::UpstreamFailure);
            self.metrics.upstream_log.note(up, outcome_label(&last), || format!("{last} (asked {name} {qtype})"));
            if let Some(flight) = flight
                && self.known_down(upstreams)
            {
                flight.update(|p| {
                    let asking = matches!(p, Progress::Asking);
                    if asking {
                        *p = Progress::Failing;
                    }
                    asking
                });
            }
        }
        match name_failed {
            Some((why, err)) => Err((err, Some(why))),
            None => Err((last, None)),
        }
    }

    /// Caches an answer (contained: [`Entry::from_reply`]) and returns it.
    fn store(&self, key: &Key, name: &Name, qtype: RecordType, dnssec_ok: bool, mut msg: Message) -> Arc<Entry> {
        let entry = Arc::new(Entry::from_reply(
            name,
            qtype,
            msg.metadata.response_code,
            std::mem::take(&mut msg.answers),
            std::mem::take(&mut msg.authorities),
            dnssec_ok,
            self.serve_stale(),
        ));
        self.cache.insert(key.clone(), entry.clone());
        entry
    }

    /// A reply as the cache keeps it ([`Entry::from_reply`]), for a question
    /// asked with DO=`dnssec`.
    fn contained(&self, name: &Name, qtype: RecordType, dnssec: bool, msg: Message) -> Kept {
        let rcode = msg.metadata.response_code;
        Kept { entry: Entry::from_reply(name, qtype, rcode, msg.answers, msg.authorities, dnssec, self.serve_stale()), dnssec }
    }

    /// Caches an answer with the status validation gave it: a secure one
    /// no longer than its signatures last (RFC 4035 §5.3.3), a bogus one
    /// at most [`dnssec::BOGUS_TTL`].
    /// `kept` is what [`Core::contained`] kept, for DO=1 when validating:
    /// stored as a DO=0 question keeps it if the client did not set DO.
    fn store_checked(&self, key: &Key, qtype: RecordType, dnssec_ok: bool, kept: Kept, status: Status) -> Arc<Entry> {
        let valid_for = if status == Status::Secure {
            sigs_valid_for(kept.entry.wire.0.iter().chain(&kept.entry.wire.1).map(cache::WireRecord::tail))
        } else {
            u32::MAX
        };
        let mut entry = if kept.dnssec && !dnssec_ok { kept.entry.without_dnssec(qtype) } else { kept.entry };
        entry.ttl = entry.ttl.min(valid_for);
        if let Status::Bogus(_) = status {
            entry.ttl = entry.ttl.min(dnssec::BOGUS_TTL);
        }
        entry.set_dnssec(status);
        let entry = Arc::new(entry);
        self.cache.insert(key.clone(), entry.clone());
        entry
    }

    /// Caches a name's failure ([`Entry::failure`]); over a real answer
    /// still held (stale, or fresh from another question) it only notes
    /// the failed refresh on it, so that RFC 8767 goes on serving it.
    fn name_failed(&self, key: &Key, why: Failure) {
        let now = Instant::now();
        match self.cache.get(key.as_bytes(), now) {
            Some(e) if e.failure.is_none() => e.refresh_failed(now),
            _ => self.cache.insert(key.clone(), Arc::new(Entry::failure(why))),
        }
    }

    fn count(&self, up: SocketAddr, outcome: &'static str) {
        self.metrics.upstream_requests.get_or_create(&UpstreamLabels { upstream: up.to_string(), outcome }).inc();
    }

    /// Upstreams in order of preference, those whose last attempt failed
    /// in the last [`DOWN_FOR`] last; with each, whether to ask it with
    /// 0x20.
    fn order(&self, upstreams: &[SocketAddr]) -> Vec<(SocketAddr, bool)> {
        let now = Instant::now();
        let health = self.health();
        let is_down = |a: &SocketAddr| health.get(a).is_some_and(|h| h.failures > 0 && h.failed_at.is_some_and(|t| now < t + DOWN_FOR));
        // Over TLS the reply is authenticated: 0x20 adds nothing there.
        let tls = self.tls.load();
        let caps = |a: &SocketAddr| tls.name(*a).is_none() && health.get(a).is_none_or(|h| h.no_caps_until.is_none_or(|t| now >= t));
        let mut v: Vec<(SocketAddr, bool)> = upstreams.iter().filter(|a| !is_down(a)).map(|a| (*a, caps(a))).collect();
        v.extend(upstreams.iter().filter(|a| is_down(a)).map(|a| (*a, caps(a))));
        v
    }

    /// A transport failure: a timeout, or an I/O error (counted towards
    /// [`DOWN_AFTER_FAILURES`]).
    fn mark_failed(&self, a: SocketAddr, timeout: bool) {
        let now = Instant::now();
        let mut health = self.health();
        let h = health.entry(a).or_default();
        h.failures = h.failures.saturating_add(1);
        h.failed_at = Some(now);
        // It replied to something while this attempt waited: alive, only slow for this name.
        let replied_lately = h.replied_at.is_some_and(|t| now.saturating_duration_since(t) < ATTEMPT_TIMEOUT);
        if (timeout || h.failures >= DOWN_AFTER_FAILURES) && !replied_lately {
            h.down = true;
        }
    }

    /// A reply (any rcode): the upstream is up. Returns its metric
    /// handles, made once per upstream rather than per reply (a label
    /// formatted and looked up in the family each time cost more than the
    /// rest of the bookkeeping).
    fn mark_up(&self, a: SocketAddr) -> Handles {
        let mut health = self.health();
        let h = health.entry(a).or_default();
        h.failures = 0;
        h.down = false;
        h.replied_at = Some(Instant::now());
        h.handles
            .get_or_insert_with(|| Handles {
                duration: self.metrics.upstream_duration.get_or_create_owned(&UpstreamOnly { upstream: a.to_string() }),
                ok: self.metrics.upstream_requests.get_or_create_owned(&UpstreamLabels { upstream: a.to_string(), outcome: "ok" }),
            })
            .clone()
    }

    /// The upstream echoed the question in another case over TCP too: it
    /// is asked without 0x20 for [`NO_CAPS_FOR`] (logged once then).
    fn case_not_kept(&self, a: SocketAddr) {
        let now = Instant::now();
        let mut health = self.health();
        if !health.contains_key(&a) && health.len() >= MAX_HEALTH_ENTRIES {
            return;
        }
        let h = health.entry(a).or_default();
        if h.no_caps_until.is_some_and(|t| now < t) {
            return;
        }
        h.no_caps_until = Some(now + NO_CAPS_FOR);
        drop(health);
        warn!(target: "pzdns::upstream", upstream = %a, "upstream {a} does not keep the case of the question: asked without 0x20 (case randomisation) for {NO_CAPS_FOR:?}");
    }

    /// Counts an unwanted reply from `a`; true if its UDP replies are not
    /// to be trusted now ([`UNWANTED_THRESHOLD`]).
    fn note_unwanted(&self, a: SocketAddr) -> bool {
        let now = Instant::now();
        let mut health = self.health();
        if !health.contains_key(&a) && health.len() >= MAX_HEALTH_ENTRIES {
            return false;
        }
        let h = health.entry(a).or_default();
        if h.distrusted_until.is_some_and(|t| now < t) {
            return true;
        }
        if h.unwanted_since.is_none_or(|t| now.saturating_duration_since(t) >= UNWANTED_WINDOW) {
            (h.unwanted, h.unwanted_since) = (0, Some(now));
        }
        h.unwanted += 1;
        if h.unwanted < UNWANTED_THRESHOLD {
            return false;
        }
        let until = now + DISTRUST_FOR;
        h.distrusted_until = Some(until);
        (h.unwanted, h.unwanted_since) = (0, None);
        drop(health);
        self.distrust_until_ms.fetch_max(self.ms(until), Ordering::Relaxed);
        self.metrics.events.note(Event::UnwantedReplies, || {
            format!(
                "upstream {a}: {UNWANTED_THRESHOLD} unwanted replies within {UNWANTED_WINDOW:?} (someone may be spoofing it): its questions go over TCP for {DISTRUST_FOR:?}"
            )
        });
        true
    }

    /// `a`'s UDP replies are not trusted now (a flood of unwanted ones).
    fn distrusted(&self, a: SocketAddr) -> bool {
        let now = Instant::now();
        if self.ms(now) >= self.distrust_until_ms.load(Ordering::Relaxed) {
            return false;
        }
        self.health().get(&a).is_some_and(|h| h.distrusted_until.is_some_and(|t| now < t))
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// One question to one upstream, over UDP, or TCP when the UDP reply
    /// is truncated, too big, differs only in case, or is not trusted; all
    /// before `deadline`. With `caps`, the name goes out in random case
    /// and a UDP reply must echo it exactly.
    /// `bytes` is the query as built by [`query_bytes`] or
    /// [`authority_query_bytes`]; `authority`: `up` is an authoritative
    /// server met in recursion (its metrics are not labelled by address).
    async fn exchange(
        &self,
        up: SocketAddr,
        name: &Name,
        bytes: &[u8],
        caps: bool,
        authority: bool,
        deadline: Instant,
    ) -> Result<Message, UpstreamError> {
        let label = || if authority { "authority".to_string() } else { up.to_string() };
        if !authority {
            let tls = self.tls.load();
            if let Some(server) = tls.name(up) {
                let (server, client) = (server.clone(), tls.client().clone());
                drop(tls);
                // Boxed, as the TCP fallback below: the rare paths' state would
                // otherwise make every UDP question's task as large.
                return Box::pin(self.exchange_tls(up, &server, &client, name, bytes, deadline)).await;
            }
        }
        if self.distrusted(up) {
            self.count_tcp(label(), "distrusted");
            return Box::pin(self.exchange_tcp(up, bytes, name, caps, authority, deadline)).await;
        }
        let tap = self.dnstap.get().map(|t| &**t);
        let io = |e: std::io::Error| UpstreamError::Io(up, e.to_string());
        let local: SocketAddr = if up.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
        let sock = connected_udp(up).map_err(io)?;
        sock.get_ref().send(bytes).map_err(io)?;
        let tapped = tap.map(|t| {
            let local = sock.get_ref().local_addr().unwrap_or(local);
            let sent = if authority {
                t.resolver_query(Protocol::Udp, local, up, bytes)
            } else {
                t.forwarder_query(Protocol::Udp, local, up, bytes)
            };
            (t, local, sent)
        });
        // We ask for at most UPSTREAM_PAYLOAD bytes; bigger answers come back
        // truncated and go to TCP. 4 KiB covers servers that overshoot, and
        // keeps 4096 questions in flight at 16 MiB of buffers, not 256.
        // Zeroed once per question (a few dozen stores), read into again
        // for each unwanted datagram.
        let mut buf = vec![0u8; UDP_REPLY_BUFFER + 1];
        let mut unwanted: Option<Counter> = None;
        loop {
            let n = match tokio::time::timeout_at(deadline.into(), recv_udp(&sock, &mut buf)).await {
                Err(_) => return Err(UpstreamError::Timeout(up)),
                Ok(Err(e)) => return Err(io(e)),
                Ok(Ok(n)) => n,
            };
            // dnstap gets a reply to our question as it came (before its case is restored).
            if let Some((t, local, sent)) = tapped
                && match_reply(&buf[..n], bytes) != Matched::No
            {
                if authority {
                    t.resolver_response(Protocol::Udp, local, up, sent, &buf[..n]);
                } else {
                    t.forwarder_response(Protocol::Udp, local, up, sent, &buf[..n]);
                }
            }
            let why_tcp = match accept_reply(&mut buf[..n], bytes, name, caps, UDP_REPLY_BUFFER) {
                Verdict::Accept(reply) => {
                    if reply.metadata.truncation {
                        "truncated"
                    } else if self.distrusted(up) {
                        "distrusted"
                    } else {
                        return Ok(reply);
                    }
                }
                Verdict::CaseDiffers => "case",
                Verdict::Oversized => "oversized",
                Verdict::Unwanted => {
                    // Not ours (spoofed, stale or garbage): keep waiting,
                    // unless there are too many of them.
                    self.metrics.rejected_replies.inc();
                    unwanted
                        .get_or_insert_with(|| self.metrics.upstream_unwanted.get_or_create_owned(&UpstreamOnly { upstream: label() }))
                        .inc();
                    if !self.note_unwanted(up) {
                        continue;
                    }
                    "distrusted"
                }
            };
            self.count_tcp(label(), why_tcp);
            return Box::pin(self.exchange_tcp(up, bytes, name, caps, authority, deadline)).await;
        }
    }

    /// One question over DNS over TLS (no 0x20: TLS already authenticates
    /// the reply), on the upstream's open connection.
    #[allow(clippy::too_many_arguments)]
    async fn exchange_tls(
        &self,
        up: SocketAddr,
        server: &rustls_pki_types::ServerName<'static>,
        client: &Arc<tokio_rustls::rustls::ClientConfig>,
        name: &Name,
        bytes: &[u8],
        deadline: Instant,
    ) -> Result<Message, UpstreamError> {
        // The connection gives the question its id (asked without 0x20: `order`).
        let (query, mut reply) = match self.dot.exchange(up, server, client, bytes.to_vec(), deadline, &self.metrics).await {
            Ok(x) => x,
            Err(dot::Failed::Timeout) => return Err(UpstreamError::Timeout(up)),
            Err(dot::Failed::Io(e)) => return Err(UpstreamError::Io(up, e)),
        };
        if let Some(t) = self.dnstap.get() {
            // The id is chosen on the connection, so the query is tapped
            // with its reply (its time is the reply's).
            let local: SocketAddr = if up.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
            let sent = t.forwarder_query(Protocol::Dot, local, up, &query);
            t.forwarder_response(Protocol::Dot, local, up, sent, &reply);
        }
        match accept_reply(&mut reply, &query, name, false, usize::MAX) {
            Verdict::Accept(m) => Ok(m),
            _ => {
                self.metrics.rejected_replies.inc();
                Err(UpstreamError::Io(up, "TLS: the reply with our id is not for our question".into()))
            }
        }
    }

    fn count_tcp(&self, upstream: String, reason: &'static str) {
        self.metrics.upstream_tcp.get_or_create(&UpstreamTcp { upstream, reason }).inc();
    }

    /// The question `query` (as sent over UDP, same id and case) over TCP.
    /// A reply that differs from it only in case is taken (TCP is not
    /// spoofable off path), and with `caps` tells that the upstream does
    /// not keep the case ([`Core::case_not_kept`]).
    async fn exchange_tcp(
        &self,
        up: SocketAddr,
        query: &[u8],
        name: &Name,
        caps: bool,
        authority: bool,
        deadline: Instant,
    ) -> Result<Message, UpstreamError> {
        let io = |e: std::io::Error| UpstreamError::Io(up, format!("TCP: {e}"));
        let tap = self.dnstap.get().map(|t| &**t);
        let work = async {
            let mut s = TcpStream::connect(up).await.map_err(io)?;
            let mut framed = Vec::with_capacity(query.len() + 2);
            framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
            framed.extend_from_slice(query);
            s.write_all(&framed).await.map_err(io)?;
            let tapped = tap.and_then(|t| {
                let local = s.local_addr().ok()?;
                let sent = if authority {
                    t.resolver_query(Protocol::Tcp, local, up, query)
                } else {
                    t.forwarder_query(Protocol::Tcp, local, up, query)
                };
                Some((t, local, sent))
            });
            loop {
                let len = s.read_u16().await.map_err(io)? as usize;
                let mut buf = vec![0u8; len];
                s.read_exact(&mut buf).await.map_err(io)?;
                let matched = match_reply(&buf, query);
                if let Some((t, local, sent)) = tapped
                    && matched != Matched::No
                {
                    if authority {
                        t.resolver_response(Protocol::Tcp, local, up, sent, &buf);
                    } else {
                        t.forwarder_response(Protocol::Tcp, local, up, sent, &buf);
                    }
                }
                let case_lost = matched == Matched::CaseOnly;
                match accept_reply(&mut buf, query, name, false, usize::MAX) {
                    Verdict::Accept(m) => {
                        if caps && case_lost {
                            self.case_not_kept(up);
                        }
                        return Ok(m);
                    }
                    _ => {
                        self.metrics.rejected_replies.inc();
                    }
                }
            }
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout(up)),
        }
    }
}

/// Seconds until the first RRSIG of `records` expires: how long an
/// answer they validated may be cached.
/// A new UDP socket connected to `up`. Connecting binds it as binding
/// to port 0 would (the kernel picks a random port of its ephemeral
/// range for each socket), one system call fewer per question.
///
/// It is registered with the runtime for reading only: a datagram socket
/// registered for writing too is reported writable once registered and
/// again each time a sent datagram is freed, each report one more return
/// from `epoll_wait` for nothing (a fresh socket's send buffer is empty,
/// so the one send never waits).
fn connected_udp(up: SocketAddr) -> std::io::Result<AsyncFd<std::net::UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(up), Type::DGRAM.nonblocking().cloexec(), Some(Protocol::UDP))?;
    s.connect(&up.into())?;
    let interest = tokio::io::Interest::READABLE | tokio::io::Interest::ERROR;
    // SAFETY: the AsyncFd owns the socket, so its descriptor stays open and
    // the same until the AsyncFd is dropped.
    Ok(unsafe { AsyncFd::register_with_interest(std::net::UdpSocket::from(s), interest) }?)
}

/// The next datagram on `sock` into `buf` (its length: what was read), or
/// the error the socket holds (an ICMP port unreachable for a connected
/// socket, reported by epoll as an error, not as readable).
async fn recv_udp(sock: &AsyncFd<std::net::UdpSocket>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut ready = sock.ready(tokio::io::Interest::READABLE | tokio::io::Interest::ERROR).await?;
        match ready.try_io(|s| s.get_ref().recv(buf)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Records kept in wire form, as the validator reads them.
fn wire_rrs(rs: &[cache::WireRecord]) -> Vec<dnssec::wire::Rr<'_>> {
    dnssec::wire::parse_all(rs.iter().map(|r| &r.bytes[..]))
}

fn sigs_valid_for<'r>(tails: impl Iterator<Item = &'r [u8]>) -> u32 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
    let rrsig = u16::from(RecordType::RRSIG).to_be_bytes();
    tails
        .filter(|t| t.get(..2) == Some(&rrsig[..]))
        .filter_map(|t| {
            dnssec::wire::Rrsig::parse(t.get(crate::dns::RR_FIXED_LEN..)?).map(|s| (s.expiration.wrapping_sub(now) as i32).max(0) as u32)
        })
        .min()
        .unwrap_or(u32::MAX)
}

/// DS and DNSKEY sets for the validator, through the cache (with DO=1,
/// under the route asked) and the route's upstreams, or in recursive mode
/// the authorities. A set fetched anew enters the cache once the
/// validator has given it its status.
struct ChainFetch<'a> {
    core: &'a Core,
    via: Via<'a>,
    route: u64,
}

/// Where [`ChainFetch`] asks what the cache does not hold.
enum Via<'a> {
    Upstreams(&'a [SocketAddr]),
    /// Recursive mode: resolved from `root`, the DS of a zone from its
    /// parent's servers, within the work of the client's question (one
    /// budget for the answer and its chain of trust: a hostile zone
    /// cannot make one question cost more by its DS and DNSKEY sets).
    Authorities {
        root: &'a [IpAddr],
        work: Mutex<recursor::Work>,
    },
}

/// A DS or DNSKEY answer for the validator: a cached entry, or one just
/// fetched that is not cached yet.
struct ChainReply {
    entry: Arc<Entry>,
    key: Key,
    fresh: bool,
}

impl dnssec::Reply for ChainReply {
    fn rcode(&self) -> u16 {
        u16::from(self.entry.rcode.low())
    }

    fn sections(&self) -> (Vec<dnssec::wire::Rr<'_>>, Vec<dnssec::wire::Rr<'_>>) {
        let (answers, authorities) = (&self.entry.wire.0, &self.entry.wire.1);
        (dnssec::wire::parse_all(answers.iter().map(|w| &w.bytes[..])), dnssec::wire::parse_all(authorities.iter().map(|w| &w.bytes[..])))
    }

    fn status(&self) -> Status {
        self.entry.dnssec()
    }

    fn ttl(&self) -> u32 {
        self.entry.ttl.saturating_sub(self.entry.age(Instant::now()))
    }
}

impl dnssec::Fetch for ChainFetch<'_> {
    type Reply = ChainReply;

    async fn fetch(&self, name: &[u8], rtype: u16) -> Option<ChainReply> {
        let qtype = RecordType::from(rtype);
        let mut buf = [0u8; cache::MAX_KEY_LEN];
        let key = Key::from(cache::key_bytes(&mut buf, name, qtype, true, self.route));
        let now = Instant::now();
        if let Some(e) = self.core.cache.get(key.as_bytes(), now).filter(|e| e.is_fresh(now) && e.failure.is_none()) {
            return Some(ChainReply { entry: e, key, fresh: false });
        }
        let qname = crate::dns::names::key_to_name(name);
        self.core.metrics.cache_misses.inc();
        let msg = match &self.via {
            Via::Upstreams(upstreams) => self.core.attempts(&qname, qtype, true, upstreams, None).await.ok()?,
            Via::Authorities { root, work } => self.core.resolve_for_chain(&qname, qtype, root, self.route, work).await?,
        };
        let e = Entry::from_reply(&qname, qtype, msg.metadata.response_code, msg.answers, msg.authorities, true, self.core.serve_stale());
        Some(ChainReply { entry: Arc::new(e), key, fresh: true })
    }

    fn checked(&self, reply: &ChainReply, status: Status) {
        reply.entry.set_dnssec(status);
        // A bogus set is not kept: the next validation asks again (within its budget).
        if reply.fresh && !matches!(status, Status::Bogus(_)) {
            self.core.cache.insert(reply.key.clone(), reply.entry.clone());
        }
    }

    fn memo_scope(&self) -> Option<(u64, u64)> {
        Some((self.route, self.core.cache.generation()))
    }
}

/// What is known of one upstream address, across names and routes.
#[derive(Debug, Default)]
struct Health {
    /// Transport failures (timeouts, I/O errors) since its last reply.
    failures: u32,
    /// When the last one happened: it is tried last for [`DOWN_FOR`] after.
    failed_at: Option<Instant>,
    /// When it last replied, whatever the rcode.
    replied_at: Option<Instant>,
    /// A timeout, or [`DOWN_AFTER_FAILURES`] I/O errors in a row, and no
    /// reply within an attempt's time of the last: down until it replies.
    down: bool,
    /// It does not keep the case of the question: no 0x20 until then.
    no_caps_until: Option<Instant>,
    /// Unwanted replies in the window that started at `unwanted_since`.
    unwanted: u32,
    unwanted_since: Option<Instant>,
    /// Its UDP replies are not trusted until then.
    distrusted_until: Option<Instant>,
    /// Its metrics of a reply, made at its first.
    handles: Option<Handles>,
}

/// One upstream's metrics that every reply moves.
#[derive(Debug, Clone)]
struct Handles {
    duration: Histogram,
    ok: Counter,
}

/// Counts a question as in flight until dropped (on every return path).
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.upstream_in_flight.dec();
    }
}

fn outcome_label(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::Timeout(_) => "timeout",
        UpstreamError::Rcode(_, ResponseCode::ServFail) => "servfail",
        UpstreamError::Rcode(_, ResponseCode::Refused) => "refused",
        UpstreamError::Rcode(..) => "rcode",
        UpstreamError::Referral(_) => "referral",
        UpstreamError::Io(..) => "error",
        UpstreamError::NoUpstreams
        | UpstreamError::NoAuthority(_)
        | UpstreamError::WorkLimit(_)
        | UpstreamError::Overloaded
        | UpstreamError::OverShare(_)
        | UpstreamError::KnownDown
        | UpstreamError::NameFailing => "error",
    }
}

/// Whether a reply (accepted as ours) answers the name: NOERROR and
/// NXDOMAIN do, unless NOERROR is a referral (no answer, NS records in
/// authority, no SOA, AA=0: a server that does not recurse pointing
/// elsewhere, RFC 2308 §2.2.1); any other rcode does not. Either way it
/// is about this name only, never about the upstream's health.
pub fn classify(reply: &Message) -> Result<(), Failure> {
    let has = |t: RecordType| reply.authorities.iter().any(|r| r.record_type() == t);
    match reply.metadata.response_code {
        ResponseCode::NoError
            if !reply.metadata.authoritative && reply.answers.is_empty() && has(RecordType::NS) && !has(RecordType::SOA) =>
        {
            Err(Failure::Referral)
        }
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(()),
        rc => Err(Failure::Rcode(rc)),
    }
}

/// The question as sent upstream: RD=1, EDNS, and with `caps` the name in
/// random case ([`randomise_case`]).
pub fn query_bytes(id: u16, name: &Name, qtype: RecordType, dnssec_ok: bool, caps: bool) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    write_query(id, name, qtype, dnssec_ok, caps, true, true)
}

/// The question as sent to an authoritative server in recursion: RD=0,
/// with `caps` in random case, and without EDNS for a server that
/// rejected it (DO then cannot be asked).
pub fn authority_query_bytes(
    id: u16,
    name: &Name,
    qtype: RecordType,
    dnssec_ok: bool,
    caps: bool,
    edns: bool,
) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    write_query(id, name, qtype, dnssec_ok, caps, false, edns)
}

fn write_query(
    id: u16,
    name: &Name,
    qtype: RecordType,
    dnssec_ok: bool,
    caps: bool,
    rd: bool,
    edns: bool,
) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    // Written by hand: a question and an OPT record are all there is, and
    // building a `Message` to encode it cost more than the exchange's
    // other bookkeeping together. `query_bytes_are_hickorys_encoding`
    // holds it to the same bytes.
    let mut bytes = Vec::with_capacity(12 + 255 + 4 + 11);
    bytes.extend_from_slice(&id.to_be_bytes());
    // RD (or not); one question, one additional (the OPT) or none.
    bytes.extend_from_slice(&[if rd { 0x01 } else { 0 }, 0x00, 0, 1, 0, 0, 0, 0, 0, edns as u8]);
    for label in name.iter() {
        if label.len() > 63 || bytes.len() + 1 + label.len() > 12 + 254 {
            return Err(hickory_proto::ProtoError::from(format!("name too long to ask: {name}")));
        }
        bytes.push(label.len() as u8);
        bytes.extend_from_slice(label);
    }
    bytes.push(0);
    bytes.extend_from_slice(&u16::from(qtype).to_be_bytes());
    bytes.extend_from_slice(&1u16.to_be_bytes());
    if edns {
        // OPT: root owner, type 41, class = our payload, TTL = extended rcode 0,
        // version 0, flags (DO), no options.
        bytes.push(0);
        bytes.extend_from_slice(&41u16.to_be_bytes());
        bytes.extend_from_slice(&UPSTREAM_PAYLOAD.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    if caps {
        randomise_case(&mut bytes);
    }
    Ok(bytes)
}

#[cfg(test)]
fn build_query(id: u16, name: &Name, qtype: RecordType, dnssec_ok: bool, rd: bool, edns: bool) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = rd;
    m.add_query(Query::query(name.clone(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(UPSTREAM_PAYLOAD);
        e.set_dnssec_ok(dnssec_ok);
        m.set_edns(e);
    }
    m
}

/// 0x20 (draft-vixie-dnsext-dns0x20): flips the case of each ASCII letter
/// of the question's name in `query` (a message as built, the name
/// uncompressed at byte 12) at random, in place. The bits come from the
/// thread's CSPRNG, 64 letters per draw: an off-path spoofer must guess
/// them as well as the id and the port.
pub fn randomise_case(query: &mut [u8]) {
    let (mut bits, mut left) = (0u64, 0u32);
    let end = question_end(query).map_or(0, |e| e - 4);
    for b in query.get_mut(12..end).unwrap_or_default() {
        // Label lengths (at most 63) are never letters.
        if b.is_ascii_alphabetic() {
            if left == 0 {
                (bits, left) = (rand::random(), 64);
            }
            *b ^= (bits as u8 & 1) << 5;
            (bits, left) = (bits >> 1, left - 1);
        }
    }
}

/// Where the question of `msg` ends (after its type and class), if its
/// name is uncompressed and whole.
fn question_end(msg: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let len = *msg.get(at)? as usize;
        if len & 0xc0 != 0 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    (at + 4 <= msg.len()).then_some(at + 4)
}

/// How a reply's header and question compare with the query sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// A response, same id, one question, the same bytes.
    Exactly,
    /// The same but for the case of the name's letters.
    CaseOnly,
    No,
}

/// Compares a reply with the query sent, on the raw bytes (no decoding):
/// QR set, same id, one question, and its name, type and class those sent
/// (the name without compression, as sent).
pub fn match_reply(reply: &[u8], query: &[u8]) -> Matched {
    let Some(end) = question_end(query) else { return Matched::No };
    let name_end = end - 4;
    if reply.len() < end
        || reply[..2] != query[..2]
        || reply[2] & 0x80 == 0
        || reply[4..6] != [0, 1]
        || reply[name_end..end] != query[name_end..end]
    {
        return Matched::No;
    }
    let (got, sent) = (&reply[12..name_end], &query[12..name_end]);
    if got == sent {
        Matched::Exactly
    } else if got.eq_ignore_ascii_case(sent) {
        Matched::CaseOnly
    } else {
        Matched::No
    }
}

/// What a reply is to the question sent.
#[derive(Debug)]
pub enum Verdict {
    /// Ours, decoded, with the question's name in the case of the name
    /// asked (so are the names that point at it).
    Accept(Message),
    /// Ours but for the case of the name: not taken over UDP (a forger
    /// who guessed the id, or a server that does not keep the case).
    CaseDiffers,
    /// Ours, but longer than the buffer (cut by the read).
    Oversized,
    /// Not ours: another id or question, not a response, undecodable.
    Unwanted,
}

/// Decides whether `reply` answers `query` (the bytes sent, to ask `name`):
/// see [`match_reply`]; with `exact_case` a reply that differs only in case
/// is not taken; one longer than `room` is [`Verdict::Oversized`]. The
/// reply's question is given the case of `name` before it is decoded, so
/// that neither it nor any name compressed against it keeps the random
/// case sent ([`randomise_case`]).
pub fn accept_reply(reply: &mut [u8], query: &[u8], name: &Name, exact_case: bool, room: usize) -> Verdict {
    match match_reply(reply, query) {
        Matched::No => return Verdict::Unwanted,
        Matched::CaseOnly if exact_case => return Verdict::CaseDiffers,
        _ if reply.len() > room => return Verdict::Oversized,
        _ => {}
    }
    if let Some(end) = question_end(reply) {
        cache::take_case(&mut reply[12..end - 4], name);
    }
    match Message::from_vec(reply) {
        Ok(m) => Verdict::Accept(m),
        Err(_) => Verdict::Unwanted,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn query_bytes_are_hickorys_encoding() {
        for (n, t, d) in [
            ("www.Example.COM.", RecordType::A, false),
            (".", RecordType::NS, true),
            ("a.b.c.d.e.f.g.", RecordType::from(65280), true),
            (&format!("{}.{}.{}.{}.", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)), RecordType::TXT, false),
        ] {
            let name = Name::from_ascii(n).unwrap();
            let ours = query_bytes(0xbeef, &name, t, d, false).unwrap();
            assert_eq!(ours, build_query(0xbeef, &name, t, d, true, true).to_vec().unwrap(), "{n} {t} do={d}");
            for edns in [true, false] {
                let ours = authority_query_bytes(0xbeef, &name, t, d, false, edns).unwrap();
                assert_eq!(ours, build_query(0xbeef, &name, t, d, false, edns).to_vec().unwrap(), "{n} {t} do={d} edns={edns}");
            }
        }
    }

    use super::*;
    use hickory_proto::rr::rdata::{A, NS, SOA};
    use hickory_proto::rr::{RData, Record};

    /// A flight's waiters see each move, and are told when its task ends
    /// without an answer (here a panic) rather than left waiting.
    #[test]
    fn a_flights_waiters_see_it_move_and_end() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
        rt.block_on(async {
            let wait = |f: &Arc<Flight>, until: fn(&Progress) -> bool| {
                let f = f.clone();
                tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(5), f.wait_for(until)).await })
            };
            let f = Arc::new(Flight::new());
            let failing = wait(&f, |p| !matches!(p, Progress::Asking));
            let done = wait(&f, |p| matches!(p, Progress::Done(_)));
            tokio::time::sleep(Duration::from_millis(20)).await;
            f.update(|p| {
                *p = Progress::Failing;
                true
            });
            assert!(matches!(failing.await.unwrap(), Ok(Progress::Failing)));
            let task = tokio::spawn({
                let f = f.clone();
                async move {
                    let _ending = Ending(f);
                    panic!("a planted panic in a flight's task");
                }
            });
            assert!(task.await.is_err());
            assert!(matches!(done.await.unwrap(), Ok(Progress::Done(Err(UpstreamError::KnownDown)))));
            // Once done, a new waiter returns at once, and the answer stays.
            assert!(matches!(wait(&f, |p| matches!(p, Progress::Done(_))).await.unwrap(), Ok(Progress::Done(Err(_)))));
        });
    }

    /// A name in the case given (`from_str` lowercases).
    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn query(name: &Name, caps: bool) -> Vec<u8> {
        let mut q = build_query(0x1234, name, RecordType::A, false, true, true).to_vec().unwrap();
        if caps {
            randomise_case(&mut q);
        }
        q
    }

    /// The reply an upstream that keeps the case would send: the query's
    /// question as sent, `answers` after it.
    fn reply_to(query: &[u8], answers: Vec<Record>, authorities: Vec<Record>) -> Message {
        let mut m = Message::from_vec(query).unwrap();
        m.metadata.message_type = MessageType::Response;
        m.answers = answers;
        m.authorities = authorities;
        m
    }

    #[test]
    fn questions_go_out_in_random_case_and_only_the_case_changes() {
        let name = n("www.example-twenty.com.");
        let plain = query(&name, false);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let q = query(&name, true);
            assert_eq!(q.len(), plain.len());
            assert!(q[..12] == plain[..12] && q[q.len() - 15..] == plain[plain.len() - 15..], "only the name changes");
            assert!(q.eq_ignore_ascii_case(&plain));
            seen.insert(q);
        }
        // 17 letters: 20 draws of 2^17 cases are all different but for a rare collision.
        assert!(seen.len() >= 18, "{} distinct of 20", seen.len());
        assert!(!seen.contains(&plain) || seen.len() == 20);
    }

    #[test]
    fn a_reply_must_echo_the_question_byte_for_byte() {
        let name = n("WwW.Example.COM.");
        let q = query(&name, true);
        let r = reply_to(&q, vec![], vec![]).to_vec().unwrap();
        assert_eq!(match_reply(&r, &q), Matched::Exactly);
        let mut lower = r.clone();
        lower[12..29].make_ascii_lowercase();
        let mut upper = r.clone();
        upper[12..29].make_ascii_uppercase();
        // One of the two differs from the random case sent (unless it was all one case).
        assert!([&lower, &upper].iter().any(|x| match_reply(x, &q) == Matched::CaseOnly));
        let case_differs = if match_reply(&lower, &q) == Matched::CaseOnly { lower } else { upper };
        assert!(matches!(accept_reply(&mut case_differs.clone(), &q, &name, true, UDP_REPLY_BUFFER), Verdict::CaseDiffers));
        assert!(matches!(accept_reply(&mut case_differs.clone(), &q, &name, false, UDP_REPLY_BUFFER), Verdict::Accept(_)));
        let mut wrong_id = r.clone();
        wrong_id[1] ^= 1;
        assert_eq!(match_reply(&wrong_id, &q), Matched::No);
        let mut not_a_reply = r.clone();
        not_a_reply[2] &= 0x7f;
        assert_eq!(match_reply(&not_a_reply, &q), Matched::No);
        // Type 65 'A' and 97 'a' are not the same type, whatever the case rule.
        let mut other_type = r.clone();
        let t = question_end(&q).unwrap() - 3;
        other_type[t] = b'a';
        let mut q65 = q.clone();
        q65[t] = b'A';
        assert_eq!(match_reply(&other_type, &q65), Matched::No);
        assert_eq!(match_reply(&r[..20], &q), Matched::No, "cut short");
    }

    #[test]
    fn an_accepted_reply_has_the_case_asked_in_every_name_pointing_at_the_question() {
        let name = n("WwW.Example.COM.");
        let q = query(&name, true);
        let sent = Message::from_vec(&q).unwrap().queries[0].name().clone();
        let a = Record::from_rdata(sent.clone(), 60, RData::A(A::new(192, 0, 2, 1)));
        let soa = Record::from_rdata(sent.base_name(), 60, RData::SOA(SOA::new(sent.clone(), sent.base_name(), 1, 2, 3, 4, 5)));
        let mut r = reply_to(&q, vec![a], vec![soa]).to_vec().unwrap();
        let Verdict::Accept(m) = accept_reply(&mut r, &q, &name, true, UDP_REPLY_BUFFER) else { panic!("not accepted") };
        assert!(m.queries[0].name().eq_case(&name), "{}", m.queries[0].name());
        let e = Entry::from_reply(&name, RecordType::A, ResponseCode::NoError, m.answers, m.authorities, true, Duration::ZERO);
        assert!(e.answers()[0].name.eq_case(&name), "{}", e.answers()[0].name);
    }

    #[test]
    fn a_reply_bigger_than_the_buffer_is_oversized_not_unwanted() {
        let name = n("big.example.");
        let q = query(&name, true);
        let mut r = reply_to(&q, vec![], vec![]).to_vec().unwrap();
        r.resize(UDP_REPLY_BUFFER + 1, 0);
        assert!(matches!(accept_reply(&mut r.clone(), &q, &name, true, UDP_REPLY_BUFFER), Verdict::Oversized));
        r[0] ^= 1;
        assert!(matches!(accept_reply(&mut r, &q, &name, true, UDP_REPLY_BUFFER), Verdict::Unwanted), "not ours: unwanted however big");
    }

    #[test]
    fn a_referral_is_a_failure_of_the_name() {
        let name = n("www.example.");
        let q = query(&name, false);
        let ns = Record::from_rdata(n("example."), 60, RData::NS(NS(n("ns.example."))));
        let soa = Record::from_rdata(n("example."), 60, RData::SOA(SOA::new(n("ns.example."), n("h.example."), 1, 2, 3, 4, 5)));
        let referral = reply_to(&q, vec![], vec![ns.clone()]);
        assert_eq!(classify(&referral), Err(Failure::Referral));
        let mut aa = referral.clone();
        aa.metadata.authoritative = true;
        assert_eq!(classify(&aa), Ok(()), "authoritative: NODATA, not a referral");
        assert_eq!(classify(&reply_to(&q, vec![], vec![ns.clone(), soa])), Ok(()), "NODATA with the zone's NS");
        let a = Record::from_rdata(name.clone(), 60, RData::A(A::new(192, 0, 2, 1)));
        assert_eq!(classify(&reply_to(&q, vec![a], vec![ns.clone()])), Ok(()), "an answer with NS in authority");
        let mut nx = referral.clone();
        nx.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(classify(&nx), Ok(()));
        let mut sf = referral;
        sf.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(classify(&sf), Err(Failure::Rcode(ResponseCode::ServFail)));
    }

    fn core() -> Core {
        Core::new(Cache::new(100), Arc::new(Metrics::new()), Duration::ZERO, 1)
    }

    #[test]
    fn down_only_after_transport_failures_with_no_reply() {
        let c = core();
        let up: SocketAddr = "127.0.0.1:53".parse().unwrap();
        for _ in 0..DOWN_AFTER_FAILURES - 1 {
            c.mark_failed(up, false);
        }
        assert!(!c.known_down(&[up]), "a few I/O errors are not enough");
        assert_eq!(c.order(&[up, "127.0.0.2:53".parse().unwrap()])[0].0, "127.0.0.2:53".parse().unwrap(), "tried last at once");
        c.mark_failed(up, false);
        assert!(c.known_down(&[up]));
        c.mark_up(up);
        assert!(!c.known_down(&[up]), "up again on any reply");
        // Replying to other names while some time out: never down.
        for _ in 0..10 {
            c.mark_failed(up, true);
            assert!(!c.known_down(&[up]));
        }
        let other: SocketAddr = "127.0.0.3:53".parse().unwrap();
        c.mark_failed(other, true);
        assert!(c.known_down(&[other]), "a timeout with no reply at all: down at once");
    }

    #[test]
    fn a_secure_answer_is_cached_no_longer_than_its_signatures_last() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32;
        let sig = |expires: u32| {
            let mut rd = vec![0, 1, 13, 2, 0, 0, 1, 44];
            rd.extend_from_slice(&expires.to_be_bytes());
            rd.extend_from_slice(&(now - 100).to_be_bytes());
            rd.extend_from_slice(&[0, 1, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 1, 2, 3]);
            let data = RData::Unknown { code: RecordType::RRSIG, rdata: hickory_proto::rr::rdata::NULL::with(rd) };
            Record::from_rdata(n("www.example."), 300, data)
        };
        let a = Record::from_rdata(n("www.example."), 300, RData::A(A::new(192, 0, 2, 1)));
        let tails = |rs: &[Record]| rs.iter().map(crate::dns::record::record_tail).collect::<Vec<_>>();
        let valid_for = |rs: &[Record]| sigs_valid_for(tails(rs).iter().map(Vec::as_slice));
        let left = valid_for(&[a.clone(), sig(now + 100), sig(now + 5000)]);
        assert!((98..=100).contains(&left), "{left}");
        assert_eq!(valid_for(&[sig(now - 5)]), 0, "expired: not cached");
        assert_eq!(valid_for(&[a]), u32::MAX, "no signature: no cap");
    }

    #[test]
    fn a_flood_of_unwanted_replies_distrusts_the_upstream() {
        let c = core();
        let (up, other): (SocketAddr, SocketAddr) = ("127.0.0.1:53".parse().unwrap(), "127.0.0.2:53".parse().unwrap());
        for _ in 0..UNWANTED_THRESHOLD - 1 {
            assert!(!c.note_unwanted(up));
        }
        assert!(!c.distrusted(up));
        assert!(c.note_unwanted(up));
        assert!(c.distrusted(up) && !c.distrusted(other));
        assert_eq!(c.metrics.events.count(Event::UnwantedReplies), 1);
    }
}
