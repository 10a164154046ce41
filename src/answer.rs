//! The one answer path: query bytes in, response bytes out, for UDP, TCP
//! and the in-process path alike.
//!
//! ```text
//! bytes ─► dns::query (read in place) ─► header rules ─► view ─► resolve::walk
//!       ─► local part written (dns::writer) ─► upstream part: a fresh cache
//!          entry now, or `Pending` (the walk's outcome and the half-written
//!          response travel into the task that waits) ─► bytes
//! ```
//!
//! Everything that decides what a response holds lives here once: flags
//! (QR, AA, RA, the RD/CD copy rule), the rcode of the last link (RFC
//! 6604), endpoint addresses ordered by the client's zone, the negative
//! SOA, truncation, OPT, name compression and the answer's source.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

use crate::abuse::cookie;
use crate::config::Cookies;
use crate::config::policy::ActionKind;
use crate::dns::names::{KeyBuf, key_to_name};
use crate::dns::query::{Query, QuestionPart, Unreadable, copied_flags};
use crate::dns::record::{address_of, tails};
use crate::dns::writer::{COOKIE_LEN, Flags, Opt, ResponseWriter, Section};
use crate::dns::{self, rcode};
use crate::dnssec::Status;
use crate::metrics::{Metrics, Source, cookie_result};

use crate::resolve::{End, LinkName, PolicyEnd, Walk, WalkOpts, walk_opts};
use crate::snapshot::policy::{PolicyAction, override_rrset};
use crate::snapshot::zone::{MAX_ROUTED, NO_AZ, ROLE_PRIMARY, ROLE_SECONDARY, RRset};
use crate::snapshot::{Claims, Identity, Route, Snapshot, SubnetClaim, View};
use crate::upstream::cache::{Cache, Entry, Failure, MAX_KEY_LEN, key_bytes};
use crate::upstream::{Asker, Forwarder, Lookup, NO_VPC, Question, Share, UpstreamError};

/// How the query arrived: it sets the size limit of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// DNS over TLS (RFC 7858).
    Tls,
    /// DNS over HTTPS (RFC 8484).
    Https,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        crate::metrics::TRANSPORTS[self as usize]
    }

    /// A transport whose messages may be 64 KiB (never truncated).
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }
}

/// Who asked, and where.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// Index of the listener (in `listen` order) the query reached.
    pub listener: usize,
    pub src: SocketAddr,
    /// The client address of a PROXY v2 header the packet came with.
    pub proxy: Option<IpAddr>,
    pub transport: Transport,
}

/// What metrics and the query log need of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// The 12-bit rcode.
    pub rcode: u16,
    /// `None` where the header rules answered before a view was chosen.
    pub view: Option<View>,
    pub source: Source,
    /// The client a trusted forwarder spoke for, when it picked the view.
    pub claimed: Option<IpAddr>,
    /// The response-policy rule that decided the answer (or alerted on it).
    pub policy: Option<PolicyMark>,
    /// The query brought a valid server cookie (RFC 7873): the client is
    /// not spoofed, so response rate limiting lets it through.
    pub valid_cookie: bool,
}

/// A response-policy hit, for metrics and the query log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyMark {
    /// The rule (`Snapshot::policy`).
    pub rule: u32,
    pub action: ActionKind,
    /// The action was carried out (a `tcp-only` rule over TCP is not).
    pub applied: bool,
}

/// The outcome of [`answer`].
pub enum Outcome {
    /// The response is in the caller's buffer.
    Done(Answered),
    /// Answered by sending nothing (a response policy's drop): recorded
    /// as answered, the buffer left empty.
    Silent(Answered),
    /// Not a query that can be answered (a response, a runt): nothing is
    /// sent and nothing recorded but the drop.
    Drop,
    /// An upstream must be asked: [`Pending::finish`] completes it.
    Wait(Box<Pending>),
}

/// A finished answer: the bytes to send (`None`: a policy drops it) and
/// what to record.
pub struct Reply {
    pub bytes: Option<Vec<u8>>,
    pub answered: Answered,
}

/// What the answer path reads besides the query.
pub struct Ctx<'a> {
    pub snap: &'a Arc<Snapshot>,
    pub cache: &'a Cache,
    pub metrics: &'a Metrics,
    /// Ages cached answers (the UDP loop reads the clock once per batch).
    pub now: Instant,
}

/// The response flags and OPT for one query, fixed once it is read.
#[derive(Debug, Clone, Copy)]
struct Frame {
    copied: u16,
    opt: Option<Opt>,
    valid_cookie: bool,
}

impl Frame {
    fn flags(&self, aa: bool, ra: bool, rc: u16) -> Flags {
        Flags { copied: self.copied, aa, ra, ad: false, rcode: (rc & 0x0f) as u8 }
    }

    fn opt(&self, rc: u16, ede: Option<Ede>) -> Option<Opt> {
        self.opt.map(|o| Opt { rcode_high: (rc >> 4) as u8, ede, ..o })
    }
}

/// Answers `msg` from `client` into `out` (its capacity is reused).
pub fn answer(ctx: &Ctx<'_>, client: &Client, msg: &[u8], out: &mut Vec<u8>) -> Outcome {
    let q = match Query::parse(msg) {
        Ok(q) => q,
        Err(Unreadable::Drop) => return Outcome::Drop,
        Err(Unreadable::FormErr { id, flags }) => {
            let w = ResponseWriter::new(std::mem::take(out), id, None, usize::MAX, 0);
            let flags = Flags { copied: copied_flags(flags), aa: false, ra: false, ad: false, rcode: rcode::FORMERR as u8 };
            *out = w.finish(flags, None);
            return Outcome::Done(Answered {
                rcode: rcode::FORMERR,
                view: None,
                source: Source::Error,
                claimed: None,
                policy: None,
                valid_cookie: false,
            });
        }
    };
    if q.tsig.is_some() {
        return answer_signed(ctx, client, msg, &q, out);
    }
    if q.edns.is_some_and(|e| e.malformed_options) {
        ctx.metrics.events.note(crate::metrics::Event::MalformedOption, || {
            format!("{} query from {} has malformed EDNS options (answered, options ignored)", client.transport.as_str(), client.src)
        });
    }
    let cookie = server_cookie(ctx, client, &q);
    let mut frame = Frame {
        copied: q.copied_flags(),
        valid_cookie: cookie.valid,
        opt: q.edns.map(|e| Opt {
            payload: e.payload.clamp(dns::CLASSIC_UDP_PAYLOAD, dns::MAX_UDP_PAYLOAD),
            dnssec_ok: e.dnssec_ok,
            rcode_high: 0,
            subnet: None,
            ede: None,
            // RFC 5001: only when asked, only when configured.
            nsid: if e.nsid { ctx.snap.nsid } else { None },
            cookie: cookie.reply,
        }),
    };
    let limit = match client.transport {
        Transport::Udp => {
            q.edns.map_or(dns::CLASSIC_UDP_PAYLOAD, |e| e.payload.clamp(dns::CLASSIC_UDP_PAYLOAD, dns::MAX_UDP_PAYLOAD)) as usize
        }
        Transport::Tcp | Transport::Tls | Transport::Https => dns::MAX_TCP_MESSAGE,
    };
    // A response without records: header, question (if echoed), OPT.
    let reply = |out: &mut Vec<u8>, frame: &Frame, question: Option<&[u8]>, rc: u16, ede| {
        let opt = frame.opt(rc, ede);
        let w = ResponseWriter::new(std::mem::take(out), q.id, question, limit, opt.map_or(0, |o| o.wire_len()));
        *out = w.finish(frame.flags(false, false, rc), opt);
    };
    let valid_cookie = cookie.valid;
    let early = |rc| Answered { rcode: rc, view: None, source: Source::Error, claimed: None, policy: None, valid_cookie };
    if cookie.malformed {
        reply(out, &frame, q.one().map(|(question, ..)| question), rcode::FORMERR, None);
        return Outcome::Done(early(rcode::FORMERR));
    }
    if cookie.only_cookie {
        // RFC 7873 §5.4: a query for a cookie alone gets one (NOERROR
        // even where cookies are required, as BIND answers).
        reply(out, &frame, None, rcode::NOERROR, None);
        return Outcome::Done(early(rcode::NOERROR));
    }
    if let Some((rc, echo)) = header_rules(&q) {
        // BADVERS says which EDNS version this server speaks, and nothing
        // else: no COOKIE (as BIND 9.18; NOTIMP and FORMERR carry one).
        if let Some(o) = frame.opt.as_mut().filter(|_| rc == rcode::BADVERS) {
            o.cookie = None;
        }
        let question = if echo { q.one().map(|(question, ..)| question) } else { None };
        reply(out, &frame, question, rc, None);
        return Outcome::Done(early(rc));
    }
    let Some((question, qname, qtype, qclass)) = q.one() else {
        reply(out, &frame, None, rcode::FORMERR, None);
        return Outcome::Done(early(rcode::FORMERR));
    };
    if cookie.bad {
        reply(out, &frame, Some(question), rcode::BADCOOKIE, None);
        return Outcome::Done(early(rcode::BADCOOKIE));
    }
    let id = identify_client(ctx, client, &q, &mut frame);
    if id.malformed_claim {
        reply(out, &frame, Some(question), rcode::FORMERR, None);
        return Outcome::Done(early(rcode::FORMERR));
    }
    let view = id.view;
    let claimed = (id.client != client.src.ip()).then_some(id.client);
    let refused = if refuse_transfers_and_other_classes(qtype, qclass) {
        Some((ede::NOT_SUPPORTED, "zone transfers and classes other than IN are not served"))
    } else if refuse_cache_snooping(view, &q) {
        Some((ede::PROHIBITED, "the source is in no VPC; RD=0 would read other clients' cache"))
    } else {
        None
    };
    if let Some(why) = refused {
        reply(out, &frame, Some(question), rcode::REFUSED, Some(why));
        return Outcome::Done(Answered {
            rcode: rcode::REFUSED,
            view: Some(view),
            source: Source::Refused,
            claimed,
            policy: None,
            valid_cookie,
        });
    }

    let key = KeyBuf::from_wire(qname);
    let qtype = RecordType::from(qtype);
    let tcp = client.transport.is_stream();
    let wk = walk_opts(ctx.snap, view, &key, qtype, WalkOpts { tcp, policy: true });
    // Room for OPT as the query asked; an EDE added later is left out
    // by the writer if the answer leaves no room for it.
    let mut w = ResponseWriter::new(std::mem::take(out), q.id, Some(question), limit, frame.opt.map_or(0, |o| o.wire_len()));
    let dnssec_ok = q.edns.is_some_and(|e| e.dnssec_ok);
    let chain = Chain { snap: ctx.snap, view, qtype };
    let mut st = State {
        rc: u16::from(wk.rcode()),
        aa: wk.authoritative,
        ra: wk.source != Source::Refused,
        source: wk.source,
        upstream_parts: 0,
        view,
        ede: match wk.end {
            End::Refused => Some((ede::PROHIBITED, "the source is in no VPC")),
            End::Loop | End::TooLong => Some((ede::OTHER, "the CNAME chain loops or is too long")),
            _ => None,
        },
        tcp,
        verdict: Verdict::default(),
        dnssec: Dnssec {
            secure: true,
            local: wk.links().iter().any(|l| l.cname.is_some()) || !matches!(wk.end, End::Upstream { .. }),
            checking_disabled: q.flags & dns::CD != 0,
            wants_ad: dnssec_ok || q.flags & dns::AD != 0,
        },
    };
    note_policy(ctx.snap, &wk, &mut st);
    let next = write_local(&mut w, ctx.snap, &wk, dns::HEADER_LEN, &key);
    let asker = Asker { client: id.client, vpc: if let View::Vpc { vpc, .. } = view { vpc } else { NO_VPC } };
    // RD=0: local and cached data only (rule 5).
    let through = Through { cache: ctx.cache, metrics: ctx.metrics, now: ctx.now, dnssec_ok, recursion: q.recursion_desired() };
    if let Some(miss) = through.cache(&chain, &mut w, &mut st, next) {
        let name = key_to_name(miss.key.key());
        return Outcome::Wait(Box::new(Pending { w, frame, snap: ctx.snap.clone(), name, miss, qtype, dnssec_ok, st, claimed, asker }));
    }
    match conclude(w, &frame, &mut st, ctx.snap, qtype, claimed) {
        Reply { bytes: Some(bytes), answered } => {
            *out = bytes;
            Outcome::Done(answered)
        }
        Reply { bytes: None, answered } => Outcome::Silent(answered),
    }
}

/// The one ending of every answer, immediate or after an upstream: the
/// response-IP policy over the whole answer, then drop, TC=1 or the
/// flags, rcode, OPT and EDE.
fn conclude(mut w: ResponseWriter, frame: &Frame, st: &mut State, snap: &Snapshot, qtype: RecordType, claimed: Option<IpAddr>) -> Reply {
    apply_response_ip_policy(&mut w, st, snap, qtype);
    let answered = Answered {
        rcode: st.rc,
        view: Some(st.view),
        source: st.source,
        claimed,
        policy: st.verdict.mark,
        valid_cookie: frame.valid_cookie,
    };
    match st.verdict.finish {
        Finish::Drop => return Reply { bytes: None, answered },
        Finish::Truncate => w.truncate(),
        Finish::Send => {}
    }
    let flags = Flags { ad: st.authentic(), ..frame.flags(st.aa, st.ra, st.rc) };
    Reply { bytes: Some(w.finish(flags, frame.opt(st.rc, st.ede))), answered }
}

/// What following a chain through the cache reads.
struct Through<'a> {
    cache: &'a Cache,
    metrics: &'a Metrics,
    now: Instant,
    dnssec_ok: bool,
    /// RD=1: a miss waits on the upstreams; RD=0 ends the answer there.
    recursion: bool,
}

impl Through<'_> {
    /// Follows the chain from `next`: each name that goes upstream is
    /// looked up in the cache once; a fresh answer is appended and the
    /// rules go on from where it leads. Returns the first name that must
    /// be asked upstream, with what the probe found (an expired entry,
    /// for RFC 8767), or `None` when the answer is complete.
    fn cache(&self, chain: &Chain<'_>, w: &mut ResponseWriter, st: &mut State, mut next: Option<Ask>) -> Option<Miss> {
        while let Some(ask) = next {
            if st.upstream_parts >= MAX_UPSTREAM_PARTS {
                st.fail(w, (ede::OTHER, "the chain goes between local and upstream data too often"));
                return None;
            }
            let (_, route_id) = chain.snap.upstreams_for(ask.route);
            let mut kb = [0u8; MAX_KEY_LEN];
            let cache_key = key_bytes(&mut kb, ask.key.key(), chain.qtype, self.dnssec_ok, route_id);
            let cached = self.cache.get(cache_key, self.now);
            match cached {
                Some(e) if e.is_fresh(self.now) => {
                    self.metrics.cache_hits.inc();
                    st.add_upstream_part(Source::Cache);
                    next = chain.after_upstream(w, &e, self.now, st, self.metrics);
                }
                _ if !self.recursion => return None,
                cached => return Some(Miss { key: ask.key, route: ask.route, cached }),
            }
        }
        None
    }
}

/// A name the cache had nothing fresh for: what to ask, where, and what
/// the one probe found.
struct Miss {
    key: KeyBuf,
    route: Route,
    cached: Option<Arc<Entry>>,
}

/// What a query's COOKIE option (RFC 7873) makes of its answer.
#[derive(Debug, Clone, Copy, Default)]
struct CookieSeen {
    /// The COOKIE to send back: the client's cookie and a server cookie.
    reply: Option<[u8; COOKIE_LEN]>,
    /// The query's server cookie is ours, for this client, and current.
    valid: bool,
    /// BADCOOKIE (`cookies: required`, over UDP, no valid server cookie).
    bad: bool,
    /// The option's length is not one RFC 7873 allows: FORMERR.
    malformed: bool,
    /// No question, only a cookie (RFC 7873 §5.4).
    only_cookie: bool,
}

/// Checks a query's COOKIE and makes the one sent back, as BIND 9.18
/// does: a client cookie alone gets a fresh server cookie; a valid
/// server cookie is sent back as it came until half its life is over
/// (RFC 9018), then renewed; an invalid or expired one is replaced, and
/// answered BADCOOKIE over UDP only where cookies are `required`.
/// Counted by result; nothing is allocated.
fn server_cookie(ctx: &Ctx<'_>, client: &Client, q: &Query<'_>) -> CookieSeen {
    let Some(e) = q.edns else { return CookieSeen::default() };
    let counters = &ctx.metrics.abuse.cookies;
    if e.bad_cookie {
        counters[cookie_result::MALFORMED].inc();
        return CookieSeen { malformed: true, ..CookieSeen::default() };
    }
    let (Some(c), mode) = (e.cookie, ctx.snap.cookies) else { return CookieSeen::default() };
    if mode == Cookies::Off {
        return CookieSeen::default();
    }
    let (ip, now, secrets) = (client.src.ip(), cookie::unix_now(), &ctx.snap.cookie_secrets);
    let mut reply = [0u8; COOKIE_LEN];
    reply[..8].copy_from_slice(&c.client);
    let check = (!c.server().is_empty()).then(|| secrets.check(&c.client, c.server(), ip, now));
    match check {
        Some(cookie::Check::Valid { renew: false }) => reply[8..].copy_from_slice(c.server()),
        _ => reply[8..].copy_from_slice(&secrets.make(&c.client, ip, now)),
    }
    let valid = matches!(check, Some(cookie::Check::Valid { .. }));
    let bad = !valid && mode == Cookies::Required && client.transport == Transport::Udp;
    let result = match check {
        None => cookie_result::CLIENT_ONLY,
        Some(cookie::Check::Valid { .. }) => cookie_result::VALID,
        Some(cookie::Check::Invalid) => cookie_result::INVALID,
    };
    counters[result].inc();
    if bad {
        counters[cookie_result::BADCOOKIE].inc();
    }
    // BADVERS and NOTIMP come first (`header_rules`).
    let badvers = e.version > dns::EDNS_VERSION;
    let only_cookie = q.qdcount == 0 && q.opcode() == 0 && !badvers;
    CookieSeen { reply: Some(reply), valid, bad, malformed: false, only_cookie }
}

/// Rule 1: the view, by the listener, the claims of a trusted forwarder
/// (PROXY v2, then ECS) or the source address. An ECS the view was chosen
/// by is echoed with the scope that decided it; a claim that is not
/// believed is counted.
fn identify_client(ctx: &Ctx<'_>, client: &Client, q: &Query<'_>, frame: &mut Frame) -> Identity {
    let subnet = q.edns.and_then(|e| e.subnet);
    let claims = Claims { proxy: client.proxy, subnet: q.edns.as_ref().and_then(SubnetClaim::of) };
    let id = ctx.snap.select_identity(Some(client.listener), client.src.ip(), claims);
    if id.ignored_claim {
        ctx.metrics.claims_ignored.inc();
    }
    if let (Some(scope), Some(sub), Some(opt)) = (id.scope, subnet, frame.opt.as_mut()) {
        opt.subnet = Some((sub, scope));
    }
    id
}

/// Upstream parts one answer may hold: local data and upstream answers
/// may send a chain back and forth, but not forever.
const MAX_UPSTREAM_PARTS: u8 = 4;

/// A name that must be asked upstream, and where to ask.
pub struct Ask {
    key: KeyBuf,
    route: Route,
}

/// How the answer stands so far.
#[derive(Debug, Clone, Copy)]
struct State {
    rc: u16,
    aa: bool,
    ra: bool,
    source: Source,
    upstream_parts: u8,
    view: View,
    /// The Extended DNS Error the response carries, if any.
    ede: Option<Ede>,
    /// The query came over TCP (`tcp-only` rules answer normally).
    tcp: bool,
    verdict: Verdict,
    dnssec: Dnssec,
}

/// DNSSEC as an answer stands: AD=1 only for an answer made of upstream
/// data alone, every part of it validated secure, to a client that set
/// DO or AD (RFC 6840 §5.8). Local data is never authenticated.
#[derive(Debug, Clone, Copy)]
struct Dnssec {
    /// Every upstream part so far was secure.
    secure: bool,
    /// Some of the answer is local data (zones, endpoints, policy).
    local: bool,
    /// CD=1: the data as received, bogus or not (RFC 4035 §3.2.2).
    checking_disabled: bool,
    wants_ad: bool,
}

/// What response policy (rule 1a) has made of an answer so far. Every
/// rule that matches, at any link, local or upstream, by name or by a
/// response address, goes through [`Verdict::hit`]: the one place that
/// counts it and decides whether it decides.
#[derive(Debug, Clone, Copy, Default)]
struct Verdict {
    /// An `allow` rule matched: no policy applies to the rest of the answer.
    passthru: bool,
    /// The rule that decided, else the first that alerted.
    mark: Option<PolicyMark>,
    /// A response-IP rule that matched an address of the answer, applied
    /// to the whole answer at its end.
    ip_hit: Option<u32>,
    finish: Finish,
}

/// What becomes of the response at its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Finish {
    #[default]
    Send,
    /// A policy says: no reply.
    Drop,
    /// A policy says: TC=1, no records (over UDP).
    Truncate,
}

impl Verdict {
    /// `rule` matched: it is counted, and kept as the answer's mark when
    /// it is the first or it decides. It decides unless it is an `alert`
    /// or an `allow`, or a `tcp-only` rule over TCP.
    fn hit(&mut self, snap: &Snapshot, rule: u32, tcp: bool) -> bool {
        let kind = snap.policy.rule(rule).action.kind();
        snap.policy.count(rule, kind);
        let applied = !(kind == ActionKind::TcpOnly && tcp);
        let decides = !matches!(kind, ActionKind::Alert | ActionKind::Allow) && applied;
        if self.mark.is_none() || decides {
            self.mark = Some(PolicyMark { rule, action: kind, applied });
        }
        decides
    }
}

impl State {
    /// An upstream part was appended: the answer is no longer ours alone
    /// (AA=0), and its source is upstream's (`upstream`, `cache` or
    /// `stale`) even where it starts in local data: a local CNAME whose
    /// target was resolved upstream depends on the upstream.
    fn add_upstream_part(&mut self, this: Source) {
        self.upstream_parts += 1;
        self.aa = false;
        // Of several upstream parts, the least fresh names the answer.
        let rank = |s: Source| [Source::Cache, Source::Upstream, Source::Stale].iter().position(|x| *x == s);
        if self.upstream_parts == 1 || rank(this) > rank(self.source) {
            self.source = this;
        }
    }

    /// The AD bit of the response.
    fn authentic(&self) -> bool {
        let d = &self.dnssec;
        d.wants_ad
            && d.secure
            && !d.local
            && self.upstream_parts > 0
            && matches!(self.source, Source::Upstream | Source::Cache | Source::Stale)
            && matches!(self.rc, rcode::NOERROR | rcode::NXDOMAIN)
    }

    /// An upstream answer's validation status: bogus is SERVFAIL with its
    /// Extended DNS Error (unless CD=1); anything but secure clears AD.
    /// False when the answer ends here.
    fn take_dnssec(&mut self, w: &mut ResponseWriter, status: Status, metrics: &Metrics) -> bool {
        match status {
            Status::Unchecked => {}
            Status::Secure => metrics.count_dnssec(0),
            Status::Insecure => metrics.count_dnssec(1),
            Status::Bogus(_) => metrics.count_dnssec(2),
        }
        if status != Status::Secure {
            self.dnssec.secure = false;
        }
        match status {
            Status::Bogus(b) if !self.dnssec.checking_disabled => {
                self.fail(w, (b.ede(), b.text()));
                false
            }
            _ => true,
        }
    }

    /// SERVFAIL with no records, and why.
    fn fail(&mut self, w: &mut ResponseWriter, why: Ede) {
        w.clear_records();
        self.rc = rcode::SERVFAIL;
        self.aa = false;
        self.source = Source::Failure;
        self.ede = Some(why);
    }
}

/// The asker's view of a chain: every link of it is answered by the rules
/// in that view, whether it came from local data or from an upstream.
struct Chain<'s> {
    snap: &'s Snapshot,
    view: View,
    qtype: RecordType,
}

impl Chain<'_> {
    /// Appends an upstream answer (as cached: the chain of the name asked
    /// and its final RRset, `upstream::contain`) until a link's name lies
    /// in a zone visible to the asker: from there on the chain is answered
    /// from local data, by the rules, never from upstream.
    fn after_upstream(&self, w: &mut ResponseWriter, e: &Entry, now: Instant, st: &mut State, metrics: &Metrics) -> Option<Ask> {
        // The name's own failure, remembered briefly (RFC 9520).
        if let Some(why) = e.failure {
            let text = match why {
                Failure::Referral => "the upstream answered with a referral, not an answer; remembered briefly (RFC 9520)",
                Failure::Rcode(_) => "the upstreams could not answer this name; remembered briefly (RFC 9520)",
            };
            st.fail(w, (ede::NO_REACHABLE_AUTHORITY, text));
            return None;
        }
        if !st.take_dnssec(w, e.dnssec(), metrics) {
            return None;
        }
        // RFC 6604: the rcode is that of the last link.
        st.rc = u16::from(e.rcode);
        let (key, at) = write_upstream_until_private(w, self.snap, self.view, e, now, st)?;
        st.dnssec.local = true;
        self.local(w, &key, at, st)
    }

    /// The rules from the name `key`, written at `pos`.
    fn local(&self, w: &mut ResponseWriter, key: &KeyBuf, pos: usize, st: &mut State) -> Option<Ask> {
        let wk = walk_opts(self.snap, self.view, key, self.qtype, WalkOpts { tcp: st.tcp, policy: !st.verdict.passthru });
        note_policy(self.snap, &wk, st);
        st.rc = u16::from(wk.rcode());
        if matches!(wk.end, End::Loop | End::TooLong) {
            st.fail(w, (ede::OTHER, "the CNAME chain loops or is too long"));
            return None;
        }
        write_local(w, self.snap, &wk, pos, key)
    }
}

/// A question waiting on an upstream: the response so far (header,
/// question, the links already answered) and what to ask.
pub struct Pending {
    w: ResponseWriter,
    frame: Frame,
    snap: Arc<Snapshot>,
    /// The name asked upstream (for tests that answer in its place).
    pub name: Name,
    miss: Miss,
    pub qtype: RecordType,
    dnssec_ok: bool,
    st: State,
    claimed: Option<IpAddr>,
    asker: Asker,
}

impl Pending {
    /// The cache-key id of the upstreams it will ask (for tests that put
    /// an upstream's answer in the cache themselves).
    pub fn route_id(&self) -> u64 {
        self.snap.upstreams_for(self.miss.route).1
    }

    /// The snapshot the answer was begun on: it is recorded against the
    /// same one, however long the upstream takes.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }

    /// Asks the upstreams, appends their answer, and goes on by the rules
    /// (through the cache) until the response is complete.
    /// Boxed and worked on in place: its writer and chain state stay on the
    /// heap rather than being moved into the (then larger) future.
    pub async fn finish(mut self: Box<Self>, forwarder: &Forwarder) -> Reply {
        let p = &mut *self;
        let chain = Chain { snap: &p.snap, view: p.st.view, qtype: p.qtype };
        loop {
            let (upstreams, route) = p.snap.upstreams_for(p.miss.route);
            let root = p.snap.recursion_for(p.miss.route);
            let q = Question { name: &p.name, qtype: p.qtype, dnssec_ok: p.dnssec_ok, upstreams, route, root };
            let got = forwarder.ask(&q, p.miss.cached.take(), p.asker).await;
            let now = Instant::now();
            let (w, st) = (&mut p.w, &mut p.st);
            let next = match got {
                Lookup::Fresh(e) => {
                    st.add_upstream_part(Source::Upstream);
                    chain.after_upstream(w, &e, now, st, &forwarder.metrics)
                }
                Lookup::Stale(e, _) => {
                    st.add_upstream_part(Source::Stale);
                    st.ede = Some((ede::STALE_ANSWER, "the upstreams did not answer; served from the cache past its TTL"));
                    chain.after_upstream(w, &e, now, st, &forwarder.metrics)
                }
                Lookup::Failed(e) => {
                    st.fail(w, upstream_failure(&e));
                    None
                }
            };
            let through = Through { cache: &forwarder.cache, metrics: &forwarder.metrics, now, dnssec_ok: p.dnssec_ok, recursion: true };
            match through.cache(&chain, w, st, next) {
                Some(m) => {
                    p.name = key_to_name(m.key.key());
                    p.miss = m;
                }
                None => break,
            }
        }
        let Pending { w, frame, snap, mut st, qtype, claimed, .. } = *self;
        conclude(w, &frame, &mut st, &snap, qtype, claimed)
    }
}

/// An Extended DNS Error: INFO-CODE and EXTRA-TEXT (RFC 8914).
type Ede = (u16, &'static str);

/// The INFO-CODEs pzdns sends (RFC 8914 §4).
mod ede {
    pub const OTHER: u16 = 0;
    pub const STALE_ANSWER: u16 = 3;
    pub const PROHIBITED: u16 = 18;
    pub const NOT_SUPPORTED: u16 = 21;
    pub const NO_REACHABLE_AUTHORITY: u16 = 22;
    pub const NETWORK_ERROR: u16 = 23;
}

/// Why an upstream question failed, as an Extended DNS Error.
fn upstream_failure(e: &UpstreamError) -> Ede {
    match e {
        UpstreamError::NoUpstreams => (ede::NO_REACHABLE_AUTHORITY, "no upstreams are configured for this name"),
        UpstreamError::Timeout(_) => (ede::NO_REACHABLE_AUTHORITY, "the upstreams did not answer in time"),
        UpstreamError::Rcode(..) => (ede::NO_REACHABLE_AUTHORITY, "the upstreams answered SERVFAIL or REFUSED"),
        UpstreamError::Referral(_) => (ede::NO_REACHABLE_AUTHORITY, "the upstream answered with a referral, not an answer"),
        UpstreamError::NameFailing => (ede::NO_REACHABLE_AUTHORITY, "the upstreams failed this name a moment ago"),
        UpstreamError::Io(..) => (ede::NETWORK_ERROR, "the upstreams could not be reached"),
        UpstreamError::KnownDown => (ede::NO_REACHABLE_AUTHORITY, "the upstreams are known to be down"),
        UpstreamError::NoAuthority(_) => (ede::NO_REACHABLE_AUTHORITY, "no authoritative server of a zone on the way answered"),
        UpstreamError::WorkLimit(why) => (ede::OTHER, why),
        UpstreamError::Overloaded => (ede::OTHER, "too many upstream questions in flight"),
        UpstreamError::OverShare(Share::Client) => (ede::OTHER, "this client has its share of upstream questions in flight"),
        UpstreamError::OverShare(Share::Vpc) => (ede::OTHER, "this VPC has its share of upstream questions in flight"),
        UpstreamError::OverShare(Share::Zone) => (ede::OTHER, "this domain has its share of upstream questions in flight"),
    }
}

/// A query signed with TSIG: answered in the view of the key it verifies
/// with (`transfer::start`), whatever its source; transfers are streamed
/// by the TCP server, not here.
fn answer_signed(ctx: &Ctx<'_>, client: &Client, msg: &[u8], q: &Query<'_>, out: &mut Vec<u8>) -> Outcome {
    let now = crate::transfer::tsig::now();
    match crate::transfer::start(ctx.snap, ctx.metrics, client.src, msg, q, false, now) {
        crate::transfer::Start::Reply { bytes, rcode: rc, vpc } => {
            *out = bytes;
            let source = if rc == rcode::NOERROR { Source::Zone } else { Source::Refused };
            let view = vpc.map(|vpc| View::Vpc { vpc, az: crate::snapshot::zone::NO_AZ });
            Outcome::Done(Answered { rcode: rc, view, source, claimed: None, policy: None, valid_cookie: false })
        }
        // Not with `stream: false`; nothing is sent if it ever were.
        crate::transfer::Start::Stream(_) => Outcome::Drop,
    }
}

/// Rule 5 and the protocol rules that need no data, in the order BIND
/// applies them: the rcode, and whether the question is echoed.
fn header_rules(q: &Query<'_>) -> Option<(u16, bool)> {
    match q.question {
        // FORMERR before anything else: the question cannot be echoed.
        QuestionPart::Compressed => return Some((rcode::FORMERR, false)),
        _ if q.edns.is_some_and(|e| e.version > dns::EDNS_VERSION) => return Some((rcode::BADVERS, true)),
        _ if q.opcode() != 0 => return Some((rcode::NOTIMP, true)),
        QuestionPart::NotOne => return Some((rcode::FORMERR, false)),
        QuestionPart::One { .. } => {}
    }
    None
}

/// Rule 5: zone transfers are refused, and so is every class but IN
/// (CHAOS `version.bind` included), rather than answered as if IN.
fn refuse_transfers_and_other_classes(qtype: u16, qclass: u16) -> bool {
    matches!(qtype, dns::TYPE_AXFR | dns::TYPE_IXFR) || qclass != dns::CLASS_IN
}

/// Rule 5 for a source in no VPC: RD=0 reads only cached data, which
/// VPC clients put there; it is not theirs to read (cache snooping).
fn refuse_cache_snooping(view: View, q: &Query<'_>) -> bool {
    view == View::Unknown && !q.recursion_desired()
}

/// Writes the local part of a walk whose first name is `key`, written at
/// `pos`: each CNAME link, then the last link's records or negative SOA.
/// Returns the question for an upstream when the walk ends there.
fn write_local(w: &mut ResponseWriter, snap: &Snapshot, wk: &Walk<'_>, pos: usize, key: &KeyBuf) -> Option<Ask> {
    // Where the current link's name is in the message: the first name,
    // then each CNAME's target.
    let mut name_pos = pos;
    for l in wk.links() {
        let Some(c) = l.cname else { continue };
        let at = w.record_at(Section::Answer, name_pos, c.wire())?;
        name_pos = at + dns::RR_FIXED_LEN;
    }
    match wk.end {
        End::Answer(rrset) if rrset.routed() => write_routed_rrset(w, snap, name_pos, rrset, wk.az),
        End::Answer(rrset) => write_rrset_in_client_zone_order(w, name_pos, rrset, wk.az),
        End::NoData(_) | End::NxDomain(_) => write_negative_soa(w, snap, wk, name_pos),
        End::Upstream { route, .. } => {
            let key = match wk.last().name {
                LinkName::Question => key.clone(),
                LinkName::Target(n) => KeyBuf::from_wire(n),
            };
            return Some(Ask { key, route });
        }
        End::Loop | End::TooLong | End::Refused | End::Policy(_) => {}
    }
    None
}

/// An RRset owned by the name at `name_pos`; endpoint addresses in the
/// client's own vSwitch zone first, the order otherwise kept.
fn write_rrset_in_client_zone_order(w: &mut ResponseWriter, name_pos: usize, rrset: RRset<'_>, az: u32) {
    let reorder = az != NO_AZ && rrset.has_az(az);
    let own = |i: usize| rrset.az(i) == az;
    let passes: &[bool] = if reorder { &[true, false] } else { &[true] };
    for &first in passes {
        for (i, t) in tails(rrset.wire()).enumerate() {
            if !reorder || own(i) == first {
                w.record_at(Section::Answer, name_pos, t);
            }
        }
    }
}

/// Which records of a set are answered: one bit each.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Picked([u64; MAX_ROUTED / 64]);

impl Picked {
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn any(&self) -> bool {
        self.0.iter().any(|&w| w != 0)
    }
    fn and(self, o: Picked) -> Picked {
        Picked(std::array::from_fn(|k| self.0[k] & o.0[k]))
    }
    fn of(n: usize, f: impl Fn(usize) -> bool) -> Picked {
        let mut p = Picked::default();
        for i in (0..n).filter(|&i| f(i)) {
            p.set(i);
        }
        p
    }
}

/// SPEC §10: a weighted, failover or health-checked set.
/// - Health: a record whose target is unhealthy leaves the answer, unless
///   every record would (fail open: all are answered).
/// - Failover: the healthy primaries; else the healthy secondaries; else
///   the primaries.
/// - Weight: `answers` records (default one) chosen by weight among those,
///   in the client's own vSwitch zone when some are; weight 0 only when
///   every weight is 0 (then all).
/// - TTL: at most `routed_ttl_cap` when health or failover decide.
fn write_routed_rrset(w: &mut ResponseWriter, snap: &Snapshot, name_pos: usize, rrset: RRset<'_>, az: u32) {
    let n = rrset.count().min(MAX_ROUTED);
    let health = &snap.health;
    let all = Picked::of(n, |_| true);
    let healthy = Picked::of(n, |i| health.answerable(rrset.route(i).health));
    let checked = (0..n).any(|i| rrset.route(i).health != crate::snapshot::health::NO_HEALTH);
    let roles = (0..n).any(|i| rrset.route(i).role != 0);
    let mut chosen = if roles {
        let primary = Picked::of(n, |i| rrset.route(i).role == ROLE_PRIMARY);
        let secondary = Picked::of(n, |i| rrset.route(i).role == ROLE_SECONDARY);
        [healthy.and(primary), healthy.and(secondary), primary].into_iter().find(|p| p.any()).unwrap_or(all)
    } else if healthy.any() {
        healthy
    } else {
        all
    };
    let first = rrset.route(0);
    if first.weighted {
        chosen = pick_by_weight(&rrset, n, chosen, az, first.answers.max(1));
    }
    let cap = (checked || roles).then_some(snap.routed_ttl_cap);
    let own = |i: usize| az != NO_AZ && rrset.az(i) == az;
    for first in [true, false] {
        for (i, t) in tails(rrset.wire()).enumerate().take(n) {
            if chosen.has(i) && own(i) == first {
                let at = w.record_at(Section::Answer, name_pos, t);
                if let (Some(at), Some(cap)) = (at, cap) {
                    w.cap_ttl(at, cap);
                }
            }
        }
    }
}

/// `answers` of `among` by weight, without replacement; the client's own
/// vSwitch zone's records when `among` holds some. All of them when
/// every weight among them is 0.
fn pick_by_weight(rrset: &RRset<'_>, n: usize, among: Picked, az: u32, answers: u8) -> Picked {
    let own = Picked::of(n, |i| az != NO_AZ && rrset.az(i) == az).and(among);
    let among = if own.any() { own } else { among };
    let weight = |i: usize| if among.has(i) { rrset.route(i).weight as u64 } else { 0 };
    let mut total: u64 = (0..n).map(weight).sum();
    if total == 0 {
        return among;
    }
    let mut picked = Picked::default();
    for _ in 0..answers {
        if total == 0 {
            break;
        }
        let mut r = rand::random_range(0..total);
        for i in (0..n).filter(|&i| !picked.has(i)) {
            let wi = weight(i);
            if r < wi {
                picked.set(i);
                total -= wi;
                break;
            }
            r -= wi;
        }
    }
    picked
}

/// NODATA and NXDOMAIN carry the zone's SOA (RFC 2308), owned by the
/// apex: an ancestor of the last link's name, pointed at.
fn write_negative_soa(w: &mut ResponseWriter, snap: &Snapshot, wk: &Walk<'_>, name_pos: usize) {
    let Some(zone) = wk.last().zone.and_then(|z| snap.zones.get(z as usize)) else { return };
    let apex = w.ancestor_at(name_pos, w.labels_at(name_pos).saturating_sub(zone.labels));
    w.record_at(Section::Authority, apex, &zone.negative_soa_wire);
}

/// Appends an upstream answer as cached, TTLs aged to `now`, link by
/// link. A link whose name lies in a zone visible to the asker is not
/// taken from upstream: its key and position are returned, for the rules
/// to answer from local data.
fn write_upstream_until_private(
    w: &mut ResponseWriter,
    snap: &Snapshot,
    view: View,
    e: &Entry,
    now: Instant,
    st: &mut State,
) -> Option<(KeyBuf, usize)> {
    let row = snap.view_row(view);
    for r in &e.wire.0 {
        if !st.verdict.passthru && st.verdict.ip_hit.is_none() && snap.policy.has_ip_rules(row) {
            st.verdict.ip_hit = address_of(r.tail()).and_then(|ip| snap.policy.match_ip(row, ip));
        }
        let t = w.record_named(Section::Answer, r.owner(), r.tail(), e.aged_ttl(now, r.ttl))?;
        // Each CNAME's target is the next link, whatever the upstream said
        // of it (records, NODATA, NXDOMAIN, nothing): a target the asker's
        // view holds, or a policy decides, is answered by the rules.
        if let Some(target) = cname_target(r.tail()) {
            let key = KeyBuf::from_wire(target);
            let private = matches!(view, View::Vpc { vpc, .. } if snap.select_zone(vpc, &key).is_some());
            if private || policy_decides_link(snap, row, &key, st) {
                return Some((key, t + dns::RR_FIXED_LEN));
            }
        }
    }
    for (section, records) in [(Section::Authority, &e.wire.1), (Section::Additional, &e.wire.2)] {
        for r in records {
            w.record_named(section, r.owner(), r.tail(), e.aged_ttl(now, r.ttl));
        }
    }
    None
}

/// The target of a record in wire form (TYPE..RDATA, the name
/// uncompressed), if it is a CNAME.
fn cname_target(tail: &[u8]) -> Option<&[u8]> {
    (tail.get(..2) == Some(&dns::TYPE_CNAME.to_be_bytes())).then(|| tail.get(dns::RR_FIXED_LEN..)).flatten()
}

/// Rule 1a at a link of an upstream chain: whether a policy rule decides
/// the name (then the link is answered by the rules, policy first). An
/// `alert` is counted and the chain goes on; an `allow` ends policy for
/// the rest of the answer.
fn policy_decides_link(snap: &Snapshot, row: usize, key: &KeyBuf, st: &mut State) -> bool {
    if st.verdict.passthru || !snap.policy.active(row) {
        return false;
    }
    let Some(hit) = snap.policy.match_name(row, key) else { return false };
    match snap.policy.rule(hit.rule).action {
        // Counted here; the chain goes on from upstream.
        PolicyAction::Alert | PolicyAction::Allow => {
            st.verdict.passthru |= snap.policy.rule(hit.rule).action == PolicyAction::Allow;
            st.verdict.hit(snap, hit.rule, st.tcp);
            false
        }
        // Counted where the rules answer the link (`note_policy`).
        _ => true,
    }
}

/// Rule 1a as the answer records it: each link's policy hit is counted,
/// the deciding one kept for the query log; a block carries its rule
/// set's Extended DNS Error; drop and TC=1 are noted for the end.
fn note_policy(snap: &Snapshot, wk: &Walk<'_>, st: &mut State) {
    if !wk.policy_hit {
        return;
    }
    st.verdict.passthru |= wk.passthru;
    if st.verdict.ip_hit.is_none() {
        st.verdict.ip_hit = wk.ip_hit;
    }
    for l in wk.links() {
        let Some(h) = l.policy else { continue };
        if st.verdict.hit(snap, h.rule, st.tcp) {
            // Not the zones' answer.
            st.aa = false;
        }
    }
    if let End::Policy(p) = wk.end {
        let Some(h) = wk.last().policy else { return };
        let set = snap.policy.set_of(h.rule);
        match p {
            PolicyEnd::Drop => st.verdict.finish = Finish::Drop,
            PolicyEnd::Truncate => st.verdict.finish = Finish::Truncate,
            PolicyEnd::NxDomain | PolicyEnd::NoData | PolicyEnd::Refused => {
                // An override's NODATA (its data lacks the type) is an answer, not a block.
                if set.ede != 0 && snap.policy.rule(h.rule).action.kind() != ActionKind::Override {
                    st.ede = Some((set.ede, set.label));
                }
            }
        }
    }
}

/// Rule 1a for answers: a response-IP rule that matched an address of the
/// answer (local or upstream) decides the whole response, unless an
/// `allow` came first.
fn apply_response_ip_policy(w: &mut ResponseWriter, st: &mut State, snap: &Snapshot, qtype: RecordType) {
    let Some(rule) = st.verdict.ip_hit else { return };
    if st.verdict.passthru || st.verdict.finish != Finish::Send || st.source == Source::Failure {
        return;
    }
    if !st.verdict.hit(snap, rule, st.tcp) {
        return;
    }
    let action = snap.policy.rule(rule).action;
    st.aa = false;
    st.source = Source::Policy;
    let set = snap.policy.set_of(rule);
    let blocked = (set.ede != 0).then_some((set.ede, set.label));
    match action {
        PolicyAction::Alert | PolicyAction::Allow => {}
        PolicyAction::TcpOnly => st.verdict.finish = Finish::Truncate,
        PolicyAction::Drop => st.verdict.finish = Finish::Drop,
        PolicyAction::NxDomain | PolicyAction::NoData | PolicyAction::Refused => {
            w.clear_records();
            st.rc = match action {
                PolicyAction::NxDomain => rcode::NXDOMAIN,
                PolicyAction::Refused => rcode::REFUSED,
                _ => rcode::NOERROR,
            };
            st.ede = blocked.or(st.ede);
        }
        PolicyAction::Records(i) | PolicyAction::Cname(i) => {
            w.clear_records();
            st.rc = rcode::NOERROR;
            if let Some(rrset) = override_rrset(&snap.policy.data[i as usize], qtype) {
                write_rrset_in_client_zone_order(w, dns::HEADER_LEN, rrset, NO_AZ);
            }
        }
    }
}

/// The rcode as a hickory value, for callers that print it.
pub fn response_code(rc: u16) -> ResponseCode {
    ResponseCode::from((rc >> 4) as u8, (rc & 0x0f) as u8)
}
