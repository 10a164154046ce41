//! Forwarding to the public authority (docs/REFERENCE.md#rule-4-no-zone, #upstream-failures): an
//! upstream client and the cache in front of it.
//!
//! ```text
//! lookup ─► cache (fresh?) ─► stale, and the upstreams known down? ─► stale now,
//!        │                                                            refresh (rate-bounded)
//!        └► join the question in flight, or start it on a task (bounded: in flight, waiters)
//!           ─► upstream 1 ─(timeout, SERVFAIL, REFUSED)─► upstream 2 ─► SERVFAIL
//!           └► with a stale entry: at most 1.8 s, or until known down ─► stale (RFC 8767)
//! ```
//! Each query goes out from a new UDP socket (random source port) with a
//! random id; the socket is connected, so the kernel drops datagrams from
//! any other source, and a reply whose id or question differ is ignored
//! (spoofing resistance). A truncated reply is retried over TCP.

pub mod cache;
pub mod shares;

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tracing::debug;

pub use cache::{Cache, Entry, Key};
use shares::Zone;
pub use shares::{Asker, Limits, NO_VPC, Share, Shares, Shed};

use crate::dnstap::{Dnstap, Protocol};
use crate::metrics::{Event, Metrics, ShedLabels, UpstreamLabels, UpstreamOnly};
use prometheus_client::metrics::counter::Counter;

/// Time allowed to one upstream before the next is tried. Two attempts
/// (docs/REFERENCE.md#upstreams: "tried once more on the next upstream") stay under the
/// 3 s in which a client must hear SERVFAIL at the latest.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1200);
/// Attempts per question: the first upstream, then the next one.
pub const ATTEMPTS: usize = 2;
/// An upstream that timed out or failed is tried last for this long.
pub const DOWN_FOR: Duration = Duration::from_secs(5);
/// Most upstream questions in flight at once; beyond it, SERVFAIL at once
/// (a flood degrades answers, never memory).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;
/// Receive buffer per upstream UDP exchange.
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
struct Flight {
    progress: watch::Sender<Progress>,
    waiters: AtomicUsize,
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
    /// Upstreams whose last attempt failed, and until when they are tried
    /// last. An entry stays until an attempt succeeds: while every
    /// upstream of a route has one, the route is known down.
    down_until: Mutex<HashMap<SocketAddr, Instant>>,
    /// Per route: no refresh of a stale answer before this, while the
    /// route is known down.
    next_refresh: Mutex<HashMap<u64, Instant>>,
    /// FORWARDER_QUERY and FORWARDER_RESPONSE go here, when set.
    dnstap: OnceLock<Arc<Dnstap>>,
}

impl Forwarder {
    pub fn new(max_entries: u64, max_bytes: u64, serve_stale: Duration, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::with_budget(max_entries, max_bytes);
        let core = Core {
            cache: cache.clone(),
            metrics: metrics.clone(),
            serve_stale_ms: AtomicU64::new(serve_stale.as_millis() as u64),
            inflight: Mutex::new(HashMap::new()),
            limit: Arc::new(Semaphore::new(DEFAULT_MAX_IN_FLIGHT)),
            down_until: Mutex::new(HashMap::new()),
            next_refresh: Mutex::new(HashMap::new()),
            dnstap: OnceLock::new(),
        };
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
        let Question { name, qtype, dnssec_ok, upstreams, route } = *q;
        let now = Instant::now();
        self.metrics.cache_misses.inc();
        let core = &self.core;
        let stale = cached.filter(|e| core.within_stale_window(e, now));
        let serve_stale = |e: Arc<Entry>, why: UpstreamError| {
            self.metrics.cache_stale.inc();
            debug!(%name, %qtype, error = %why, "stale answer");
            Lookup::Stale(e, why)
        };
        if upstreams.is_empty() {
            return match stale {
                Some(e) => serve_stale(e, UpstreamError::NoUpstreams),
                None => Lookup::Failed(UpstreamError::NoUpstreams),
            };
        }
        let mut buf = [0u8; cache::MAX_KEY_LEN];
        let name_key = crate::dns::names::KeyBuf::new(name);
        let key = Key::from(cache::key_bytes(&mut buf, name_key.key(), qtype, dnssec_ok, route));
        let zone = self.shares.zone_of(name_key.key());
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
        let mut rx = flight.progress.subscribe();
        let got = match &stale {
            None => rx.wait_for(|p| matches!(p, Progress::Done(_))).await.map(|p| p.clone()),
            Some(_) => match tokio::time::timeout(STALE_ANSWER_AFTER, rx.wait_for(|p| !matches!(p, Progress::Asking))).await {
                Ok(r) => r.map(|p| p.clone()),
                Err(_) => Ok(Progress::Failing),
            },
        };
        match (got, stale) {
            (Ok(Progress::Done(Ok(e))), _) => Lookup::Fresh(e),
            (Ok(Progress::Done(Err(err))), Some(e)) => serve_stale(e, err),
            (Ok(Progress::Done(Err(err))), None) => Lookup::Failed(err),
            (_, Some(e)) => serve_stale(e, UpstreamError::KnownDown),
            // The question's task is gone without an answer (shutdown).
            (_, None) => Lookup::Failed(UpstreamError::KnownDown),
        }
    }
}

/// One question for the upstreams: the name (as it will be sent), the
/// type, the DO bit, the upstreams of its route and the route's id (the
/// cache keeps each route's answers apart).
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub name: &'a Name,
    pub qtype: RecordType,
    pub dnssec_ok: bool,
    pub upstreams: &'a [SocketAddr],
    pub route: u64,
}

impl Forwarder {
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
    /// An expired entry may still be served (RFC 8767's stale window).
    fn within_stale_window(&self, e: &Entry, now: Instant) -> bool {
        let stale = self.serve_stale();
        stale > Duration::ZERO && e.age(now) < e.ttl.saturating_add(stale.as_secs().min(u32::MAX as u64) as u32)
    }

    fn serve_stale(&self) -> Duration {
        Duration::from_millis(self.serve_stale_ms.load(Ordering::Relaxed))
    }

    /// Every upstream of the set failed its last attempt.
    fn known_down(&self, upstreams: &[SocketAddr]) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        !upstreams.is_empty() && upstreams.iter().all(|a| down.contains_key(a))
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
        let flight = Arc::new(Flight { progress: watch::Sender::new(Progress::Asking), waiters: AtomicUsize::new(0) });
        map.insert(key.clone(), flight.clone());
        drop(map);
        let (core, f, key, name, upstreams) = (self.clone(), flight.clone(), key.clone(), q.name.clone(), q.upstreams.to_vec());
        let (qtype, dnssec_ok) = (q.qtype, q.dnssec_ok);
        tokio::spawn(async move {
            let fetched = core.fetch(&key, &name, qtype, dnssec_ok, &upstreams, &f).await;
            drop((permit, tokens));
            f.progress.send_replace(Progress::Done(fetched));
            let mut map = core.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&key).is_some_and(|c| Arc::ptr_eq(c, &f)) {
                map.remove(&key);
            }
        });
        Ok(flight)
    }

    /// Asks the upstreams, at most [`ATTEMPTS`] of them, healthy ones first.
    async fn fetch(
        &self,
        key: &Key,
        name: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        upstreams: &[SocketAddr],
        flight: &Flight,
    ) -> Fetched {
        self.metrics.upstream_in_flight.inc();
        let _in_flight = InFlight(&self.metrics);
        let order = self.order(upstreams);
        let mut last = UpstreamError::NoUpstreams;
        for (i, up) in order.iter().cycle().take(ATTEMPTS.max(1)).enumerate() {
            let sent = Instant::now();
            let deadline = sent + ATTEMPT_TIMEOUT;
            let tap = self.dnstap.get().map(|t| &**t);
            let res = exchange(*up, name, qtype, dnssec_ok, deadline, &self.metrics.rejected_replies, tap).await;
            self.metrics.upstream_duration.get_or_create(&UpstreamOnly { upstream: up.to_string() }).observe(sent.elapsed().as_secs_f64());
            match res {
                Ok(msg) if matches!(msg.metadata.response_code, ResponseCode::NoError | ResponseCode::NXDomain) => {
                    self.count(*up, "ok");
                    self.mark_up(*up);
                    let mut msg = msg;
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
                    return Ok(entry);
                }
                Ok(msg) => last = UpstreamError::Rcode(*up, msg.metadata.response_code),
                Err(e) => last = e,
            }
            self.count(*up, outcome_label(&last));
            self.mark_down(*up);
            debug!(attempt = i + 1, error = %last, %name, %qtype, "upstream attempt failed");
            self.metrics.events.count_only(Event::UpstreamFailure);
            self.metrics.upstream_log.note(*up, outcome_label(&last), || format!("{last} (asked {name} {qtype})"));
            if self.known_down(upstreams) {
                flight.progress.send_if_modified(|p| {
                    let asking = matches!(p, Progress::Asking);
                    if asking {
                        *p = Progress::Failing;
                    }
                    asking
                });
            }
        }
        Err(last)
    }

    fn count(&self, up: SocketAddr, outcome: &'static str) {
        self.metrics.upstream_requests.get_or_create(&UpstreamLabels { upstream: up.to_string(), outcome }).inc();
    }

    /// Upstreams in order of preference, those marked down last.
    fn order(&self, upstreams: &[SocketAddr]) -> Vec<SocketAddr> {
        let now = Instant::now();
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        let is_down = |a: &SocketAddr| down.get(a).is_some_and(|t| *t > now);
        let mut v: Vec<SocketAddr> = upstreams.iter().filter(|a| !is_down(a)).copied().collect();
        v.extend(upstreams.iter().filter(|a| is_down(a)));
        v
    }

    fn mark_down(&self, a: SocketAddr) {
        self.down_until.lock().unwrap_or_else(|p| p.into_inner()).insert(a, Instant::now() + DOWN_FOR);
    }

    fn mark_up(&self, a: SocketAddr) {
        let mut m = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if !m.is_empty() {
            m.remove(&a);
        }
    }
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
        UpstreamError::Io(..) => "error",
        UpstreamError::NoUpstreams | UpstreamError::Overloaded | UpstreamError::OverShare(_) | UpstreamError::KnownDown => "error",
    }
}

fn build_query(id: u16, name: &Name, qtype: RecordType, dnssec_ok: bool) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name.clone(), qtype));
    let mut e = Edns::new();
    e.set_max_payload(UPSTREAM_PAYLOAD);
    e.set_dnssec_ok(dnssec_ok);
    m.set_edns(e);
    m
}

/// Decodes an upstream reply and accepts it only if it answers our query
/// (a response, same id, same question); `None` for anything else.
pub fn accept_reply(bytes: &[u8], id: u16, name: &Name, qtype: RecordType) -> Option<Message> {
    Message::from_vec(bytes).ok().filter(|m| matches(m, id, name, qtype))
}

/// A reply answers our query: a response, same id, same question.
fn matches(reply: &Message, id: u16, name: &Name, qtype: RecordType) -> bool {
    reply.metadata.message_type == MessageType::Response
        && reply.metadata.id == id
        && reply.queries.len() == 1
        && reply.queries[0].query_type() == qtype
        && reply.queries[0].name() == name
}

/// One question to one upstream, over UDP then TCP if truncated, all
/// before `deadline`.
async fn exchange(
    up: SocketAddr,
    name: &Name,
    qtype: RecordType,
    dnssec_ok: bool,
    deadline: Instant,
    rejected: &Counter,
    tap: Option<&Dnstap>,
) -> Result<Message, UpstreamError> {
    let id: u16 = rand::random();
    let bytes = build_query(id, name, qtype, dnssec_ok).to_vec().map_err(|e| UpstreamError::Io(up, e.to_string()))?;
    let io = |e: std::io::Error| UpstreamError::Io(up, e.to_string());
    let local: SocketAddr = if up.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    sock.connect(up).await.map_err(io)?;
    sock.send(&bytes).await.map_err(io)?;
    let tapped = tap.map(|t| {
        let local = sock.local_addr().unwrap_or(local);
        (t, local, t.forwarder_query(Protocol::Udp, local, up, &bytes))
    });
    // We ask for at most UPSTREAM_PAYLOAD bytes; bigger answers come back
    // truncated and go to TCP. 4 KiB covers servers that overshoot, and
    // keeps 4096 questions in flight at 16 MiB of buffers, not 256.
    let mut buf = vec![0u8; UDP_REPLY_BUFFER];
    loop {
        let n = match tokio::time::timeout_at(deadline.into(), sock.recv(&mut buf)).await {
            Err(_) => return Err(UpstreamError::Timeout(up)),
            Ok(Err(e)) => return Err(io(e)),
            Ok(Ok(n)) => n,
        };
        let reply = match accept_reply(&buf[..n], id, name, qtype) {
            Some(m) => m,
            None => {
                // Not ours (spoofed, stale or garbage): keep waiting.
                rejected.inc();
                continue;
            }
        };
        if let Some((t, local, sent)) = tapped {
            t.forwarder_response(Protocol::Udp, local, up, sent, &buf[..n]);
        }
        if reply.metadata.truncation {
            return exchange_tcp(up, &bytes, id, name, qtype, deadline, rejected, tap).await;
        }
        return Ok(reply);
    }
}

#[allow(clippy::too_many_arguments)]
async fn exchange_tcp(
    up: SocketAddr,
    query: &[u8],
    id: u16,
    name: &Name,
    qtype: RecordType,
    deadline: Instant,
    rejected: &Counter,
    tap: Option<&Dnstap>,
) -> Result<Message, UpstreamError> {
    let io = |e: std::io::Error| UpstreamError::Io(up, format!("TCP: {e}"));
    let work = async {
        let mut s = TcpStream::connect(up).await.map_err(io)?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
        framed.extend_from_slice(query);
        s.write_all(&framed).await.map_err(io)?;
        let tapped = tap.and_then(|t| {
            let local = s.local_addr().ok()?;
            Some((t, local, t.forwarder_query(Protocol::Tcp, local, up, query)))
        });
        loop {
            let len = s.read_u16().await.map_err(io)? as usize;
            let mut buf = vec![0u8; len];
            s.read_exact(&mut buf).await.map_err(io)?;
            match Message::from_vec(&buf) {
                Ok(m) if matches(&m, id, name, qtype) => {
                    if let Some((t, local, sent)) = tapped {
                        t.forwarder_response(Protocol::Tcp, local, up, sent, &buf);
                    }
                    return Ok(m);
                }
                _ => {
                    rejected.inc();
                }
            }
        }
    };
    match tokio::time::timeout_at(deadline.into(), work).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout(up)),
    }
}
