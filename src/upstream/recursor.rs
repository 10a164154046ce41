//! Resolution from the root (`resolver.mode: recursive`, docs/REFERENCE.md#resolver):
//! the default route's questions answered by walking the delegations
//! instead of asking an upstream resolver.
//!
//! ```text
//! Core::fetch_recursive ─► follow the CNAME chain (≤ MAX_CNAME_LINKS) ─► iterate(name)
//!   iterate: closest delegation in the cache (else the root hints)
//!     ─► ask its servers (infra order) the minimised name (RFC 9156) ─► referral? cache it, go down
//!                                  │                                  └► answer, NODATA, NXDOMAIN
//!                                  └► no address answered? resolve glueless NS names (depth-bounded)
//! then, validating: the whole chain ─► dnssec::Validator, its DS and DNSKEY sets ─► iterate
//! ```
//! Every authority query goes through [`Core::exchange`], as a forwarded
//! question does: a new socket (random port), a random id, 0x20, the reply
//! matched to the question byte for byte, TC or a case mismatch → TCP.
//! Replies are scrubbed to the zone of the server asked (bailiwick):
//! answer records outside it and glue outside it are dropped.
//! What one client question may cost is bounded ([`MAX_AUTHORITY_QUERIES`],
//! [`MAX_LOOKUPS`], [`MAX_REFERRALS`], [`MAX_GLUELESS_DEPTH`], [`MAX_CNAME_LINKS`],
//! [`RESOLUTION_TIME`]), the DS and DNSKEY questions of its validation
//! included; past a bound, SERVFAIL with an EDE that says which.
//! Delegations are cached in the answer cache under their own route id
//! ([`DELEGATION_ROUTE`]), so they count against `cache.max_bytes`.

// foldhash, seeded per process: the per-question maps hashed with SipHash cost
// more than the rest of their bookkeeping (docs/ARCHITECTURE.md).
use foldhash::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use rand::seq::SliceRandom;
use tracing::debug;

use super::cache::{self, Entry, Failure, Key};
use super::{ChainFetch, Core, Fetched, UpstreamError, Via, authority_query_bytes, classify};
use crate::dns::names::same_name;
use crate::dnssec::Status;
use crate::metrics::AuthorityLabels;

/// Queries to authorities one client question may send in all (CNAME
/// links and glueless NS names included). Unbound's comparable bound
/// (`max-sent-count`) is larger; a loopback-to-internet walk needs a
/// dozen or so, a broken delegation is cut short.
pub const MAX_AUTHORITY_QUERIES: u32 = 48;
/// Names walked down to (the client's, each CNAME target, each glueless
/// NS name) for one client question: cached delegations cost no query,
/// so the query count alone would not end a loop among them.
pub const MAX_LOOKUPS: u32 = 32;
/// Zone cuts followed for one name.
pub const MAX_REFERRALS: u32 = 16;
/// NS names without glue resolved within one another's resolution (a
/// delegation loop, a.test NS ns.b.test and b.test NS ns.a.test, ends here).
pub const MAX_GLUELESS_DEPTH: u32 = 3;
/// CNAME links followed across zones.
pub const MAX_CNAME_LINKS: usize = 8;
/// Wall time one resolution may take: under the 3 s within which a
/// client must hear SERVFAIL (docs/REFERENCE.md#upstream-failures).
pub const RESOLUTION_TIME: Duration = Duration::from_millis(2500);
/// Questions one name is asked in minimised form before the full name
/// goes (RFC 9156 §2.3's MAX_MINIMISE_COUNT): a name of many labels
/// does not cost a query per label.
pub const MAX_MINIMISE_COUNT: u32 = 10;
/// How long a name seen not to be a zone cut is remembered at most
/// (as a delegation would be by its NS TTL; zones rarely grow cuts).
pub const MAX_NO_CUT_TTL: u32 = 3600;
/// Port authoritative servers are asked on.
pub const AUTHORITY_PORT: u16 = 53;
/// Servers the infra cache remembers; past it, the oldest are forgotten.
pub const MAX_INFRA_ENTRIES: usize = 10_000;
/// An infra entry not touched for this long is forgotten first.
pub const INFRA_TTL: Duration = Duration::from_secs(900);
/// Time allowed to one server: its smoothed RTT times this, within
/// [`MIN_TIMEOUT`]..[`MAX_TIMEOUT`]; [`UNKNOWN_TIMEOUT`] for a server never heard.
const RTT_FACTOR: u32 = 4;
const MIN_TIMEOUT: Duration = Duration::from_millis(400);
const MAX_TIMEOUT: Duration = Duration::from_millis(1200);
const UNKNOWN_TIMEOUT: Duration = Duration::from_millis(800);
/// A server that failed is tried after the others for this long.
const FAILED_FOR: Duration = Duration::from_secs(30);
/// A server that rejected EDNS (FORMERR, NOTIMP) is asked without it for this long.
const NO_EDNS_FOR: Duration = Duration::from_secs(900);
/// The route id of cached delegations (NS and in-bailiwick glue of a zone
/// cut): apart from every answer a client can be served.
pub const DELEGATION_ROUTE: u64 = u64::from_be_bytes(*b"zonecuts");

/// What is known of one authoritative server address (Unbound's infra cache, small).
#[derive(Debug, Clone, Copy)]
struct Server {
    /// Smoothed round-trip time, in microseconds; 0 until it replied.
    srtt_us: u32,
    failed_at: Option<Instant>,
    no_edns_until: Option<Instant>,
    touched: Instant,
}

/// The infra cache: per server address, RTT, failures and EDNS support,
/// bounded by [`MAX_INFRA_ENTRIES`].
#[derive(Debug, Default)]
pub struct Infra {
    servers: Mutex<HashMap<IpAddr, Server>>,
    /// Delegations as decoded from their cache entries (keyed by the
    /// entry's address, which the weak reference keeps from being reused),
    /// at most [`MAX_DECODED_DELEGATIONS`]: every name under a zone would
    /// otherwise decode the zone's NS and glue again.
    decoded: Mutex<HashMap<usize, (std::sync::Weak<Entry>, Delegation)>>,
}

/// Decoded delegations kept at most; when full, all go.
const MAX_DECODED_DELEGATIONS: usize = 1024;

impl Infra {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Server>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, a: IpAddr) -> Option<Server> {
        self.map().get(&a).copied()
    }

    /// Updates `a`'s entry (made if there is room: the stale ones go first).
    fn update(&self, a: IpAddr, f: impl FnOnce(&mut Server)) {
        let now = Instant::now();
        let mut map = self.map();
        if !map.contains_key(&a) && map.len() >= MAX_INFRA_ENTRIES {
            map.retain(|_, s| now.saturating_duration_since(s.touched) < INFRA_TTL);
            if map.len() >= MAX_INFRA_ENTRIES {
                return;
            }
        }
        let s = map.entry(a).or_insert(Server { srtt_us: 0, failed_at: None, no_edns_until: None, touched: now });
        s.touched = now;
        f(s);
    }

    fn replied(&self, a: IpAddr, rtt: Duration) {
        let us = rtt.as_micros().min(u32::MAX as u128) as u32;
        self.update(a, |s| {
            // RFC 6298's smoothing, 1/8 of the new sample.
            s.srtt_us = if s.srtt_us == 0 { us.max(1) } else { (s.srtt_us / 8 * 7 + us / 8).max(1) };
            s.failed_at = None;
        });
    }

    fn failed(&self, a: IpAddr) {
        self.update(a, |s| s.failed_at = Some(Instant::now()));
    }

    fn no_edns(&self, a: IpAddr) {
        self.update(a, |s| s.no_edns_until = Some(Instant::now() + NO_EDNS_FOR));
    }

    fn edns(&self, a: IpAddr, now: Instant) -> bool {
        self.get(a).is_none_or(|s| s.no_edns_until.is_none_or(|t| now >= t))
    }

    fn timeout(&self, a: IpAddr) -> Duration {
        match self.get(a) {
            Some(s) if s.srtt_us > 0 => (Duration::from_micros(s.srtt_us as u64) * RTT_FACTOR).clamp(MIN_TIMEOUT, MAX_TIMEOUT),
            _ => UNKNOWN_TIMEOUT,
        }
    }

    /// `addrs` in the order to ask them: those that did not fail lately
    /// first, the fastest first (unknown ones as if a typical distance
    /// away), ties in random order so that load spreads.
    fn order(&self, addrs: &mut [IpAddr]) {
        let now = Instant::now();
        addrs.shuffle(&mut rand::rng());
        let map = self.map();
        addrs.sort_by_key(|a| match map.get(a) {
            Some(s) => (
                s.failed_at.is_some_and(|t| now.saturating_duration_since(t) < FAILED_FOR),
                if s.srtt_us == 0 { 50_000 } else { s.srtt_us },
            ),
            None => (false, 50_000),
        });
    }
}

/// A zone's servers: each one's name (none for the root hints) and the
/// addresses known for it (none for an NS name without glue).
pub type Servers = Vec<(Option<Name>, Vec<IpAddr>)>;

/// A zone cut: the zone and its servers.
#[derive(Debug, Clone)]
struct Delegation {
    zone: Name,
    servers: Servers,
}

impl Delegation {
    fn root(hints: &[IpAddr]) -> Self {
        Delegation { zone: Name::root(), servers: vec![(None, hints.to_vec())] }
    }
}

/// What one resolution has spent (its DNSSEC chain of trust included).
#[derive(Debug, Clone, Copy)]
pub(super) struct Work {
    queries: u32,
    lookups: u32,
    deadline: Instant,
}

/// What a reply from a server of `zone` is, to the question asked.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// An answer, NODATA or NXDOMAIN: the question is done here.
    Final,
    /// A delegation to this zone, below the one asked and at or above the name.
    Referral(Name),
    /// A referral up or sideways, or no answer without authority: the server is lame.
    Lame,
    /// SERVFAIL, REFUSED, FORMERR, ...
    Rcode(ResponseCode),
}

fn kind(reply: &Message, zone: &Name, qname: &Name) -> Kind {
    match reply.metadata.response_code {
        ResponseCode::NXDomain => return Kind::Final,
        ResponseCode::NoError => {}
        rc => return Kind::Rcode(rc),
    }
    if reply.answers.iter().any(|r| same_name(&r.name, qname)) {
        return Kind::Final;
    }
    let has_soa = reply.authorities.iter().any(|r| r.record_type() == RecordType::SOA);
    let cut = reply.authorities.iter().find(|r| r.record_type() == RecordType::NS).map(|r| &r.name);
    match cut {
        // Some servers set AA on referrals: the NS owner decides, not the flag.
        Some(child) if !has_soa && zone.zone_of(child) && child.num_labels() > zone.num_labels() && child.zone_of(qname) => {
            Kind::Referral(child.clone())
        }
        // The zone's own NS beside an authoritative NODATA is not a referral.
        _ if reply.metadata.authoritative || has_soa => Kind::Final,
        _ => Kind::Lame,
    }
}

/// Drops from a reply what a server of `zone` has no say over: answer
/// and authority records outside the zone, additional records outside it
/// (glue out of bailiwick).
fn scrub(reply: &mut Message, zone: &Name) {
    reply.answers.retain(|r| zone.zone_of(&r.name));
    reply.authorities.retain(|r| zone.zone_of(&r.name));
    reply.additionals.retain(|r| zone.zone_of(&r.name));
}

/// Where the chain of `target` in `answers` ends without data of `qtype`:
/// the name to ask next, if the chain leaves the answers.
fn cname_end(answers: &[Record], target: &Name, qtype: RecordType) -> Option<Name> {
    if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
        return None;
    }
    let mut at = target.clone();
    let mut seen: Vec<Name> = Vec::new();
    loop {
        if answers.iter().any(|r| r.record_type() == qtype && same_name(&r.name, &at)) {
            return None;
        }
        match answers.iter().find(|r| r.record_type() == RecordType::CNAME && same_name(&r.name, &at)).map(|r| &r.data) {
            Some(RData::CNAME(c)) => {
                // A loop: nothing to ask next (the answer path ends it in SERVFAIL).
                if seen.contains(&at) {
                    return None;
                }
                seen.push(std::mem::replace(&mut at, c.0.clone()));
            }
            _ => break,
        }
    }
    (at != *target).then_some(at)
}

impl super::Forwarder {
    /// Recursive mode, for `explain`: the zone cuts above `name` held in
    /// the cache, from the root down, each with its servers (names and
    /// the addresses known for them): the path the next resolution of
    /// `name` starts from. The root's servers are the hints.
    pub fn delegation_path(&self, name: &Name) -> Vec<(Name, Servers)> {
        let mut path = Vec::new();
        let mut at = name.clone();
        while let Some(d) = self.core.closest_delegation(&at) {
            at = d.zone.base_name();
            path.push((d.zone, d.servers));
        }
        path.reverse();
        path
    }
}

/// Whether an authority's address may be asked: never an unspecified,
/// multicast or broadcast one, and a loopback one only when the root
/// hints are on loopback themselves (a hierarchy built for tests or a
/// lab): a public delegation must not make pzdns query the host's own
/// services (Unbound's `do-not-query-localhost`, decided by the hints).
fn askable(a: IpAddr, root: &[IpAddr]) -> bool {
    let bad = match a {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    !bad && (!a.is_loopback() || root.iter().any(|r| r.is_loopback()))
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Core {
    /// [`Core::fetch`] for a question resolved from `root`: the answer
    /// (contained and cached as a forwarded one is), or the failure,
    /// cached for the name as a SERVFAIL from upstreams would be.
    pub(super) async fn fetch_recursive(
        &self,
        key: &Key,
        name: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        root: &[IpAddr],
        route: u64,
    ) -> Fetched {
        self.metrics.upstream_in_flight.inc();
        let _in_flight = super::InFlight(&self.metrics);
        let mut work = Work { queries: 0, lookups: 0, deadline: Instant::now() + RESOLUTION_TIME };
        let validator = self.validator.load_full();
        // Validating: every authority is asked with DO=1, whatever the client set.
        let res = self.follow(name, qtype, dnssec_ok || validator.is_some(), root, route, &mut work).await;
        let res = match res {
            Ok(msg) => match classify(&msg) {
                Ok(()) => {
                    let kept = self.contained(name, qtype, dnssec_ok || validator.is_some(), msg);
                    let status = match &validator {
                        Some(v) => {
                            let fetch = ChainFetch { core: self, via: Via::Authorities { root, work: Mutex::new(work) }, route };
                            let status = Box::pin(self.validate(v, name, qtype, &kept, &fetch)).await;
                            if let Via::Authorities { work: w, .. } = fetch.via {
                                work = w.into_inner().unwrap_or_else(|p| p.into_inner());
                            }
                            status
                        }
                        None => Status::Unchecked,
                    };
                    Ok(self.store_checked(key, qtype, dnssec_ok, kept, status))
                }
                Err(why) => {
                    self.name_failed(key, why);
                    Err(UpstreamError::NoAuthority(name.to_string()))
                }
            },
            Err(e) => {
                debug!(%name, %qtype, error = %e, queries = work.queries, "resolution failed");
                self.metrics.events.count_only(crate::metrics::Event::UpstreamFailure);
                self.name_failed(key, Failure::Rcode(ResponseCode::ServFail));
                Err(e)
            }
        };
        self.metrics.authority_queries_per_resolution.observe(work.queries as f64);
        res
    }

    /// A DS or DNSKEY set for the validator (`name`/`qtype`, asked with
    /// DO=1; a DS of its parent's servers, [`Core::iterate`]), spent from
    /// the client question's `work`: `None` when no authority gave it or
    /// the work is spent.
    pub(super) async fn resolve_for_chain(
        &self,
        name: &Name,
        qtype: RecordType,
        root: &[IpAddr],
        route: u64,
        work: &Mutex<Work>,
    ) -> Option<Message> {
        // The validator asks one set at a time: the work is taken out and put back.
        let mut w = *work.lock().unwrap_or_else(|p| p.into_inner());
        let res = self.iterate(name, qtype, true, root, route, &mut w, 0).await;
        *work.lock().unwrap_or_else(|p| p.into_inner()) = w;
        match res {
            Ok(reply) if matches!(reply.metadata.response_code, ResponseCode::NoError | ResponseCode::NXDomain) => Some(reply),
            Ok(_) => None,
            Err(e) => {
                debug!(%name, %qtype, error = %e, "DS/DNSKEY set not resolved");
                None
            }
        }
    }

    /// Resolves `name`, then each CNAME target the answer leads out of
    /// its zone to, and returns the last reply with every link's answers.
    async fn follow(
        &self,
        name: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        root: &[IpAddr],
        route: u64,
        work: &mut Work,
    ) -> Result<Message, UpstreamError> {
        let mut answers: Vec<Record> = Vec::new();
        // The NSEC/NSEC3 records (and RRSIGs) of links before the last: a
        // wildcard expansion on the way is proven by them.
        let mut proofs: Vec<Record> = Vec::new();
        let mut target = name.clone();
        for _ in 0..=MAX_CNAME_LINKS {
            let mut reply = self.iterate(&target, qtype, dnssec_ok, root, route, work, 0).await?;
            let next = cname_end(&reply.answers, &target, qtype);
            answers.append(&mut reply.answers);
            match next {
                Some(t) if reply.metadata.response_code == ResponseCode::NoError && !answers.iter().any(|r| same_name(&r.name, &t)) => {
                    if dnssec_ok {
                        let denial = [RecordType::NSEC, RecordType::NSEC3, RecordType::RRSIG];
                        proofs.extend(reply.authorities.into_iter().filter(|r| denial.contains(&r.record_type())));
                    }
                    target = t;
                }
                _ => {
                    reply.answers = answers;
                    for p in proofs {
                        if !reply.authorities.contains(&p) {
                            reply.authorities.push(p);
                        }
                    }
                    // The answer of authorities, taken as final (not a referral for `classify`).
                    reply.metadata.authoritative = true;
                    return Ok(reply);
                }
            }
        }
        Err(UpstreamError::WorkLimit("the CNAME chain has too many links"))
    }

    /// Walks down from the closest known delegation to the zone that
    /// answers `name`/`qtype`, and returns its reply (scrubbed).
    #[allow(clippy::too_many_arguments)]
    fn iterate<'a>(
        &'a self,
        name: &'a Name,
        qtype: RecordType,
        dnssec_ok: bool,
        root: &'a [IpAddr],
        route: u64,
        work: &'a mut Work,
        depth: u32,
    ) -> Boxed<'a, Result<Message, UpstreamError>> {
        Box::pin(async move {
            work.lookups += 1;
            if work.lookups > MAX_LOOKUPS {
                return Err(UpstreamError::WorkLimit("too many names to resolve for one question"));
            }
            if Instant::now() >= work.deadline {
                return Err(UpstreamError::WorkLimit("the resolution took too long"));
            }
            // A DS record lives on the parent's side of the cut (RFC 4035 §3.1.4.1).
            let above = if qtype == RecordType::DS && !name.is_root() { name.base_name() } else { name.clone() };
            let mut cut = self.closest_delegation(&above).unwrap_or_else(|| Delegation::root(root));
            let mut minimise = true;
            let mut labels = cut.zone.num_labels() + 1;
            let mut referrals = 0;
            let mut minimised = 0;
            loop {
                let full = !minimise || labels >= name.num_labels() || minimised >= MAX_MINIMISE_COUNT;
                minimised += u32::from(!full);
                // RFC 9156: one label more than the zone asked, type A (what
                // every server answers), until the cut above the name is found.
                let (qname, qt) = if full { (name.clone(), qtype) } else { (name.trim_to(labels as usize), RecordType::A) };
                // A name already seen not to be a cut is not asked again (as
                // Unbound's cache spares it): each new name under an empty
                // non-terminal or a wildcard's parent costs one question, not two.
                if !full && self.known_no_cut(&qname) {
                    labels += 1;
                    continue;
                }
                let reply = match self.ask_zone(&cut, &qname, qt, dnssec_ok, root, route, work, depth).await {
                    Ok(r) => r,
                    Err(UpstreamError::WorkLimit(w)) => return Err(UpstreamError::WorkLimit(w)),
                    // Relaxed: servers that fail a minimised question get the full name.
                    Err(_) if !full => {
                        minimise = false;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                match kind(&reply, &cut.zone, &qname) {
                    // A parent that refers a DS question to the child itself is lame for it.
                    Kind::Referral(child) if full && qtype == RecordType::DS && child == *name => {
                        return Err(UpstreamError::NoAuthority(cut.zone.to_string()));
                    }
                    Kind::Referral(child) => {
                        referrals += 1;
                        if referrals > MAX_REFERRALS {
                            return Err(UpstreamError::WorkLimit("too many referrals"));
                        }
                        cut = self.delegation(&reply, child);
                        labels = cut.zone.num_labels() + 1;
                    }
                    _ if full => return Ok(reply),
                    // Relaxed, as Unbound's default: an NXDOMAIN to a minimised
                    // name may be a server's quirk; the full name decides.
                    _ if reply.metadata.response_code == ResponseCode::NXDomain => minimise = false,
                    // No cut at `qname` (data or an empty non-terminal): one label more.
                    _ => {
                        if reply.metadata.response_code == ResponseCode::NoError {
                            self.note_no_cut(&qname, &reply);
                        }
                        labels += 1;
                    }
                }
            }
        })
    }

    /// Asks the servers of `cut`, best first, until one gives a reply
    /// that is an answer or a referral down; glueless NS names are
    /// resolved (one level deeper) once the known addresses are spent.
    #[allow(clippy::too_many_arguments)]
    async fn ask_zone(
        &self,
        cut: &Delegation,
        qname: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        root: &[IpAddr],
        route: u64,
        work: &mut Work,
        depth: u32,
    ) -> Result<Message, UpstreamError> {
        let mut asked: Vec<IpAddr> = Vec::new();
        let mut addrs: Vec<IpAddr> = Vec::new();
        for a in cut.servers.iter().flat_map(|(_, a)| a) {
            if !addrs.contains(a) && askable(*a, root) {
                addrs.push(*a);
            }
        }
        self.infra.order(&mut addrs);
        let mut timed_out: Vec<IpAddr> = Vec::new();
        if let Some(r) = self.ask_each(&addrs, &mut asked, &mut timed_out, 1, cut, qname, qtype, dnssec_ok, work).await? {
            return Ok(r);
        }
        for (ns, known) in &cut.servers {
            let Some(ns) = ns else { continue };
            // A name below the one being resolved cannot be resolved first.
            if !known.is_empty() || depth >= MAX_GLUELESS_DEPTH || qname.zone_of(ns) {
                continue;
            }
            let mut more = self.ns_addresses(ns, root, route, work, depth + 1).await?;
            more.retain(|a| !asked.contains(a) && askable(*a, root));
            self.infra.order(&mut more);
            if let Some(r) = self.ask_each(&more, &mut asked, &mut timed_out, 1, cut, qname, qtype, dnssec_ok, work).await? {
                return Ok(r);
            }
        }
        // A lost datagram is not a dead server: those that timed out get one
        // more, twice as long, chance (as Unbound retransmits), within the bounds.
        let again = std::mem::take(&mut timed_out);
        if let Some(r) = self.ask_each(&again, &mut asked, &mut timed_out, 2, cut, qname, qtype, dnssec_ok, work).await? {
            return Ok(r);
        }
        if depth >= MAX_GLUELESS_DEPTH && cut.servers.iter().any(|(n, a)| n.is_some() && a.is_empty()) && asked.is_empty() {
            return Err(UpstreamError::WorkLimit("too many NS names without glue, one within another (a delegation loop?)"));
        }
        Err(UpstreamError::NoAuthority(cut.zone.to_string()))
    }

    /// Asks `addrs` in turn: `Ok(Some)` for the first usable reply, `Ok(None)`
    /// when none gave one, `Err` only when a bound on the work is reached.
    /// Those that timed out are added to `timed_out`; `patience` multiplies
    /// each server's time.
    #[allow(clippy::too_many_arguments)]
    async fn ask_each(
        &self,
        addrs: &[IpAddr],
        asked: &mut Vec<IpAddr>,
        timed_out: &mut Vec<IpAddr>,
        patience: u32,
        cut: &Delegation,
        qname: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        work: &mut Work,
    ) -> Result<Option<Message>, UpstreamError> {
        for &a in addrs {
            asked.push(a);
            let mut reply = match self.ask_server(a, qname, qtype, dnssec_ok, patience, work).await {
                Ok(r) => r,
                Err(e @ UpstreamError::WorkLimit(_)) => return Err(e),
                Err(UpstreamError::Timeout(_)) => {
                    timed_out.push(a);
                    continue;
                }
                Err(_) => continue,
            };
            let k = kind(&reply, &cut.zone, qname);
            let outcome = match &k {
                Kind::Final => "answer",
                Kind::Referral(_) => "referral",
                Kind::Lame => "lame",
                Kind::Rcode(_) => "rcode",
            };
            self.metrics.authority_queries.get_or_create(&AuthorityLabels { outcome }).inc();
            if matches!(k, Kind::Lame | Kind::Rcode(_)) {
                debug!(server = %a, zone = %cut.zone, %qname, ?k, "authority gave no usable reply");
                self.infra.failed(a);
                continue;
            }
            scrub(&mut reply, &cut.zone);
            return Ok(Some(reply));
        }
        Ok(None)
    }

    /// One question to one authoritative server, within the work's bounds
    /// (`patience` times its usual time); asked again without EDNS if the
    /// server rejects it.
    async fn ask_server(
        &self,
        a: IpAddr,
        qname: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        patience: u32,
        work: &mut Work,
    ) -> Result<Message, UpstreamError> {
        let up = SocketAddr::new(a, AUTHORITY_PORT);
        let mut edns = self.infra.edns(a, Instant::now());
        loop {
            let now = Instant::now();
            if work.queries >= MAX_AUTHORITY_QUERIES {
                return Err(UpstreamError::WorkLimit("too many queries to authoritative servers for one question"));
            }
            if now >= work.deadline {
                return Err(UpstreamError::WorkLimit("the resolution took too long"));
            }
            work.queries += 1;
            let caps = self.caps(up);
            let bytes = authority_query_bytes(rand::random(), qname, qtype, dnssec_ok, caps, edns)
                .map_err(|e| UpstreamError::Io(up, e.to_string()))?;
            let deadline = (now + self.infra.timeout(a) * patience).min(work.deadline);
            match self.exchange(up, qname, &bytes, caps, true, deadline).await {
                Ok(reply) => {
                    self.infra.replied(a, now.elapsed());
                    let rc = reply.metadata.response_code;
                    if edns && matches!(rc, ResponseCode::FormErr | ResponseCode::NotImp) {
                        // RFC 6891 §7: a server that does not know EDNS; once more without.
                        self.infra.no_edns(a);
                        edns = false;
                        continue;
                    }
                    return Ok(reply);
                }
                Err(e) => {
                    let outcome = if matches!(e, UpstreamError::Timeout(_)) { "timeout" } else { "error" };
                    self.metrics.authority_queries.get_or_create(&AuthorityLabels { outcome }).inc();
                    debug!(server = %up, %qname, %qtype, error = %e, "authority query failed");
                    self.infra.failed(a);
                    return Err(e);
                }
            }
        }
    }

    /// Whether to ask `up` with 0x20 (not while it is known not to keep the case).
    fn caps(&self, up: SocketAddr) -> bool {
        let now = Instant::now();
        self.health().get(&up).is_none_or(|h| h.no_caps_until.is_none_or(|t| now >= t))
    }

    /// The addresses of a glueless NS name: from the cache (what a client
    /// asking it would get), else resolved and cached. Validating, they
    /// are cached apart from clients' answers ([`DELEGATION_ROUTE`]): they
    /// are not validated (a server's address needs no proof, as in
    /// Unbound), so a client must not be served them as if they were.
    fn ns_addresses<'a>(
        &'a self,
        ns: &'a Name,
        root: &'a [IpAddr],
        route: u64,
        work: &'a mut Work,
        depth: u32,
    ) -> Boxed<'a, Result<Vec<IpAddr>, UpstreamError>> {
        Box::pin(async move {
            let validating = self.validator.load().is_some();
            let mut found = Vec::new();
            for qtype in [RecordType::A, RecordType::AAAA] {
                let name_key = crate::dns::names::KeyBuf::new(ns);
                let key_of = |route: u64| {
                    let mut buf = [0u8; cache::MAX_KEY_LEN];
                    Key::from(cache::key_bytes(&mut buf, name_key.key(), qtype, false, route))
                };
                let now = Instant::now();
                let usable = |e: &Arc<Entry>| e.failure.is_none() && e.age(now) < e.ttl;
                let cached = self.cache.get(key_of(route).as_bytes(), now).filter(usable);
                let cached = match cached {
                    None if validating => self.cache.get(key_of(DELEGATION_ROUTE).as_bytes(), now).filter(usable),
                    c => c,
                };
                let entry = match cached {
                    Some(e) => e,
                    None => match self.iterate(ns, qtype, validating, root, route, work, depth).await {
                        Ok(reply) if reply.metadata.response_code == ResponseCode::NoError => {
                            let key = key_of(if validating { DELEGATION_ROUTE } else { route });
                            self.store(&key, ns, qtype, false, reply)
                        }
                        Ok(_) => continue,
                        Err(e @ UpstreamError::WorkLimit(_)) => return Err(e),
                        Err(_) => continue,
                    },
                };
                found.extend(entry.wire.0.iter().filter_map(|w| match Record::from_bytes(&w.bytes).ok()?.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                }));
                if !found.is_empty() {
                    break;
                }
            }
            Ok(found)
        })
    }

    /// The delegation a referral gives (its NS, and the glue for them that
    /// lies in the asked zone, the reply being scrubbed to it), cached.
    fn delegation(&self, reply: &Message, child: Name) -> Delegation {
        let ns: Vec<&Record> =
            reply.authorities.iter().filter(|r| r.record_type() == RecordType::NS && same_name(&r.name, &child)).collect();
        let mut servers: Servers = Vec::new();
        let mut glue: Vec<Record> = Vec::new();
        for r in &ns {
            let RData::NS(target) = &r.data else { continue };
            let mut addrs = Vec::new();
            for g in reply.additionals.iter().filter(|g| same_name(&g.name, &target.0)) {
                match &g.data {
                    RData::A(a) => addrs.push(IpAddr::V4(a.0)),
                    RData::AAAA(a) => addrs.push(IpAddr::V6(a.0)),
                    _ => continue,
                }
                glue.push(g.clone());
            }
            servers.push((Some(target.0.clone()), addrs));
        }
        let entry = Entry::new(ResponseCode::NoError, ns.into_iter().cloned().collect(), Vec::new(), glue, true, Duration::ZERO);
        let mut buf = [0u8; cache::MAX_KEY_LEN];
        let name_key = crate::dns::names::KeyBuf::new(&child);
        self.cache.insert(Key::from(cache::key_bytes(&mut buf, name_key.key(), RecordType::NS, false, DELEGATION_ROUTE)), Arc::new(entry));
        Delegation { zone: child, servers }
    }

    /// Notes that `name` is no zone cut (a NOERROR reply to its minimised
    /// question, not a referral), for as long as the reply's data or its
    /// SOA lives: an NS entry without servers under [`DELEGATION_ROUTE`],
    /// which [`Core::closest_delegation`] passes over.
    fn note_no_cut(&self, name: &Name, reply: &Message) {
        let soa = reply.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        });
        let Some(ttl) = reply.answers.iter().map(|r| r.ttl).min().or(soa) else { return };
        let mut entry = Entry::new(ResponseCode::NoError, Vec::new(), Vec::new(), Vec::new(), true, Duration::ZERO);
        entry.ttl = ttl.min(MAX_NO_CUT_TTL);
        let mut buf = [0u8; cache::MAX_KEY_LEN];
        let name_key = crate::dns::names::KeyBuf::new(name);
        self.cache.insert(Key::from(cache::key_bytes(&mut buf, name_key.key(), RecordType::NS, false, DELEGATION_ROUTE)), Arc::new(entry));
    }

    /// Whether `name` is known (fresh in the cache) to be no zone cut.
    fn known_no_cut(&self, name: &Name) -> bool {
        let now = Instant::now();
        let mut buf = [0u8; cache::MAX_KEY_LEN];
        let name_key = crate::dns::names::KeyBuf::new(name);
        let key = cache::key_bytes(&mut buf, name_key.key(), RecordType::NS, false, DELEGATION_ROUTE);
        self.cache.get(key, now).is_some_and(|e| e.age(now) < e.ttl && e.wire.0.is_empty())
    }

    /// The deepest cached delegation at or above `name` (not the root's:
    /// the hints are that). Ancestors are suffixes of the name's key, and
    /// the cached NS and glue are read in wire form: only the servers'
    /// names are decoded.
    fn closest_delegation(&self, name: &Name) -> Option<Delegation> {
        let now = Instant::now();
        let names = crate::dns::names::KeyBuf::new(name);
        let mut buf = [0u8; cache::MAX_KEY_LEN];
        for skip in 0..names.labels() {
            let zone = names.suffix(skip);
            let key = cache::key_bytes(&mut buf, zone, RecordType::NS, false, DELEGATION_ROUTE);
            let Some(e) = self.cache.get(key, now).filter(|e| e.age(now) < e.ttl && !e.wire.0.is_empty()) else { continue };
            let known = {
                let decoded = self.infra.decoded.lock().unwrap_or_else(|p| p.into_inner());
                decoded
                    .get(&(Arc::as_ptr(&e) as usize))
                    .filter(|(weak, _)| weak.upgrade().is_some_and(|w| Arc::ptr_eq(&w, &e)))
                    .map(|(_, d)| d.clone())
            };
            if known.is_some() {
                return known;
            }
            // Decoded without the lock: other workers look theirs up meanwhile.
            let servers = delegation_servers(&e);
            if !servers.is_empty() {
                let d = Delegation { zone: crate::dns::names::key_to_name(zone), servers };
                let mut decoded = self.infra.decoded.lock().unwrap_or_else(|p| p.into_inner());
                if decoded.len() >= MAX_DECODED_DELEGATIONS {
                    decoded.clear();
                }
                decoded.insert(Arc::as_ptr(&e) as usize, (Arc::downgrade(&e), d.clone()));
                return Some(d);
            }
        }
        None
    }
}

/// The servers of a cached delegation (NS records in the answer section,
/// glue in the additional one), each with the glue addresses of its name.
fn delegation_servers(e: &Entry) -> Servers {
    use crate::dnssec::wire::{Rr, name_eq};
    let glue: Vec<Rr<'_>> = e.wire.2.iter().filter_map(|w| Rr::parse(&w.bytes)).collect();
    e.wire
        .0
        .iter()
        .filter_map(|w| Rr::parse(&w.bytes))
        .filter(|r| r.rtype == u16::from(RecordType::NS))
        .filter_map(|ns| {
            let target = Name::from_bytes(ns.rdata).ok()?;
            let addrs = glue
                .iter()
                .filter(|g| name_eq(g.owner, ns.rdata))
                .filter_map(|g| match (RecordType::from(g.rtype), g.rdata.len()) {
                    (RecordType::A, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(g.rdata).ok()?)),
                    (RecordType::AAAA, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(g.rdata).ok()?)),
                    _ => None,
                })
                .collect();
            Some((Some(target), addrs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, CNAME, NS, SOA};

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn reply(aa: bool, rc: ResponseCode, answers: Vec<Record>, auth: Vec<Record>, add: Vec<Record>) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.authoritative = aa;
        m.metadata.response_code = rc;
        m.answers = answers;
        m.authorities = auth;
        m.additionals = add;
        m
    }

    fn ns(owner: &str, target: &str) -> Record {
        Record::from_rdata(n(owner), 3600, RData::NS(NS(n(target))))
    }

    fn a(owner: &str, last: u8) -> Record {
        Record::from_rdata(n(owner), 3600, RData::A(A::new(127, 53, 0, last)))
    }

    /// The decoded delegations kept beside the cache: up to the bound every
    /// one is kept (and a second lookup adds nothing); past it the memo is
    /// emptied first; the answers are right either way.
    #[test]
    fn decoded_delegations_are_bounded_from_both_sides() {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let core = Core::new(cache::Cache::with_budget(10_000, 64 << 20), metrics, Duration::ZERO, 1);
        let zone = |i: usize| format!("z{i}.test.");
        let glue = |i: usize| (i % 250) as u8 + 1;
        for i in 0..=MAX_DECODED_DELEGATIONS {
            let (z, target) = (zone(i), format!("ns.{}", zone(i)));
            let referral = reply(false, ResponseCode::NoError, vec![], vec![ns(&z, &target)], vec![a(&target, glue(i))]);
            core.delegation(&referral, n(&z));
        }
        let kept = || core.infra.decoded.lock().unwrap().len();
        let closest = |i: usize| {
            let d = core.closest_delegation(&n(&format!("www.{}", zone(i)))).expect("a cached delegation");
            assert_eq!(d.zone, n(&zone(i)));
            assert_eq!(d.servers, vec![(Some(n(&format!("ns.{}", zone(i)))), vec![IpAddr::from([127, 53, 0, glue(i)])])]);
        };
        for i in 0..MAX_DECODED_DELEGATIONS {
            closest(i);
        }
        assert_eq!(kept(), MAX_DECODED_DELEGATIONS, "every one kept up to the bound");
        closest(0);
        assert_eq!(kept(), MAX_DECODED_DELEGATIONS, "a second lookup is served from the memo");
        closest(MAX_DECODED_DELEGATIONS);
        assert_eq!(kept(), 1, "past the bound the memo is emptied first");
    }

    #[test]
    fn referrals_only_downwards_and_towards_the_name() {
        let q = n("www.a.test.");
        let down = reply(false, ResponseCode::NoError, vec![], vec![ns("a.test.", "ns.a.test.")], vec![]);
        assert_eq!(kind(&down, &n("test."), &q), Kind::Referral(n("a.test.")));
        assert_eq!(kind(&down, &n("a.test."), &q), Kind::Lame, "to the zone itself: lame");
        let mut aa = down.clone();
        aa.metadata.authoritative = true;
        assert_eq!(kind(&aa, &n("test."), &q), Kind::Referral(n("a.test.")), "AA set on a referral");
        let mut apex_ns = reply(true, ResponseCode::NoError, vec![], vec![ns("a.test.", "ns.a.test.")], vec![]);
        assert_eq!(kind(&apex_ns, &n("a.test."), &q), Kind::Final, "authoritative NODATA with the zone's NS");
        apex_ns.metadata.authoritative = false;
        assert_eq!(kind(&apex_ns, &n("a.test."), &q), Kind::Lame);
        let up = reply(false, ResponseCode::NoError, vec![], vec![ns(".", "a.root.")], vec![]);
        assert_eq!(kind(&up, &n("test."), &q), Kind::Lame, "upwards: lame");
        let sideways = reply(false, ResponseCode::NoError, vec![], vec![ns("b.test.", "ns.b.test.")], vec![]);
        assert_eq!(kind(&sideways, &n("test."), &q), Kind::Lame, "to another branch: lame");
        let soa = Record::from_rdata(n("a.test."), 60, RData::SOA(SOA::new(n("ns.a.test."), n("h.a.test."), 1, 2, 3, 4, 5)));
        let nodata = reply(true, ResponseCode::NoError, vec![], vec![soa], vec![]);
        assert_eq!(kind(&nodata, &n("a.test."), &q), Kind::Final);
        let refused = reply(false, ResponseCode::Refused, vec![], vec![], vec![]);
        assert_eq!(kind(&refused, &n("a.test."), &q), Kind::Rcode(ResponseCode::Refused));
    }

    #[test]
    fn glue_and_answers_outside_the_zone_asked_are_dropped() {
        let mut r = reply(
            false,
            ResponseCode::NoError,
            vec![a("www.bank.example.", 66)],
            vec![ns("evil.test.", "ns.bank.example.")],
            vec![a("ns.bank.example.", 66), a("ns.evil.test.", 7)],
        );
        scrub(&mut r, &n("test."));
        assert!(r.answers.is_empty());
        assert_eq!(r.additionals, vec![a("ns.evil.test.", 7)]);
        assert_eq!(r.authorities.len(), 1);
    }

    #[test]
    fn a_cname_chain_is_followed_to_where_it_leaves_the_answers() {
        let c = |o: &str, t: &str| Record::from_rdata(n(o), 60, RData::CNAME(CNAME(n(t))));
        let answers = vec![c("a.x.", "b.x."), c("b.x.", "c.y.")];
        assert_eq!(cname_end(&answers, &n("a.x."), RecordType::A), Some(n("c.y.")));
        assert_eq!(cname_end(&answers, &n("a.x."), RecordType::CNAME), None);
        let mut complete = answers.clone();
        complete.push(a("c.y.", 1));
        assert_eq!(cname_end(&complete, &n("a.x."), RecordType::A), None);
        let looped = vec![c("a.x.", "b.x."), c("b.x.", "a.x.")];
        assert_eq!(cname_end(&looped, &n("a.x."), RecordType::A), None, "a loop ends where it began");
    }

    #[test]
    fn loopback_authorities_only_for_a_loopback_root() {
        let public: [IpAddr; 1] = ["198.41.0.4".parse().unwrap()];
        let lab: [IpAddr; 1] = ["127.53.0.101".parse().unwrap()];
        for a in ["127.0.0.1", "::1", "127.53.0.105"] {
            let a: IpAddr = a.parse().unwrap();
            assert!(!askable(a, &public) && askable(a, &lab), "{a}");
        }
        for a in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255"] {
            assert!(!askable(a.parse().unwrap(), &lab), "{a}");
        }
        assert!(askable("192.0.2.1".parse().unwrap(), &public));
    }

    #[test]
    fn the_infra_cache_prefers_servers_that_answer_and_stays_bounded() {
        let infra = Infra::default();
        let (good, bad, slow): (IpAddr, IpAddr, IpAddr) =
            ("127.53.0.1".parse().unwrap(), "127.53.0.2".parse().unwrap(), "127.53.0.3".parse().unwrap());
        infra.replied(good, Duration::from_millis(1));
        infra.replied(slow, Duration::from_millis(200));
        infra.failed(bad);
        for _ in 0..10 {
            let mut v = vec![bad, slow, good];
            infra.order(&mut v);
            assert_eq!(v, vec![good, slow, bad]);
        }
        assert_eq!(infra.timeout(good), MIN_TIMEOUT);
        assert_eq!(infra.timeout("192.0.2.1".parse().unwrap()), UNKNOWN_TIMEOUT);
        for i in 0..(MAX_INFRA_ENTRIES as u32 + 100) {
            infra.failed(IpAddr::V4(i.into()));
        }
        assert!(infra.map().len() <= MAX_INFRA_ENTRIES);
    }
}
