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

use std::net::SocketAddr;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::dns::names::KeyBuf;
use crate::dns::query::{Query, QuestionPart, Unreadable, copied_flags};
use crate::dns::record::tails;
use crate::dns::writer::{Flags, Opt, ResponseWriter, Section};
use crate::dns::{self, rcode};
use crate::metrics::{Metrics, Source};
use crate::resolve::{End, LinkName, Walk, walk};
use crate::snapshot::zone::{NO_AZ, RRset};
use crate::snapshot::{Snapshot, View};
use crate::upstream::cache::{Cache, Entry, MAX_KEY_LEN, key_bytes};
use crate::upstream::{Forwarder, Lookup};

/// How the query arrived: it sets the size limit of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Who asked, and where.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// Index of the listener (in `listen` order) the query reached.
    pub listener: usize,
    pub src: SocketAddr,
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
}

/// The outcome of [`answer`].
pub enum Outcome {
    /// The response is in the caller's buffer.
    Done(Answered),
    /// Nothing is sent back.
    Drop,
    /// An upstream must be asked: [`Pending::finish`] completes it.
    Wait(Box<Pending>),
}

/// What the answer path reads besides the query.
pub struct Ctx<'a> {
    pub snap: &'a Snapshot,
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
}

impl Frame {
    fn flags(&self, aa: bool, ra: bool, rc: u16) -> Flags {
        Flags { copied: self.copied, aa, ra, rcode: (rc & 0x0f) as u8 }
    }

    fn opt(&self, rc: u16) -> Option<Opt> {
        self.opt.map(|o| Opt { rcode_high: (rc >> 4) as u8, ..o })
    }
}

/// Answers `msg` from `client` into `out` (its capacity is reused).
pub fn answer(ctx: &Ctx<'_>, client: &Client, msg: &[u8], out: &mut Vec<u8>) -> Outcome {
    let q = match Query::parse(msg) {
        Ok(q) => q,
        Err(Unreadable::Drop) => return Outcome::Drop,
        Err(Unreadable::FormErr { id, flags }) => {
            let w = ResponseWriter::new(std::mem::take(out), id, None, usize::MAX, false);
            let flags = Flags { copied: copied_flags(flags), aa: false, ra: false, rcode: rcode::FORMERR as u8 };
            *out = w.finish(flags, None);
            return Outcome::Done(Answered { rcode: rcode::FORMERR, view: None, source: Source::Error });
        }
    };
    let frame = Frame {
        copied: q.copied_flags(),
        opt: q.edns.map(|e| Opt {
            payload: e.payload.clamp(dns::CLASSIC_UDP_PAYLOAD, dns::MAX_UDP_PAYLOAD),
            dnssec_ok: e.dnssec_ok,
            rcode_high: 0,
        }),
    };
    let limit = match client.transport {
        Transport::Udp => {
            q.edns.map_or(dns::CLASSIC_UDP_PAYLOAD, |e| e.payload.clamp(dns::CLASSIC_UDP_PAYLOAD, dns::MAX_UDP_PAYLOAD)) as usize
        }
        Transport::Tcp => dns::MAX_TCP_MESSAGE,
    };
    let reply = |out: &mut Vec<u8>, question: Option<&[u8]>, rc: u16, view: Option<View>, source: Source| {
        let w = ResponseWriter::new(std::mem::take(out), q.id, question, limit, frame.opt.is_some());
        *out = w.finish(frame.flags(false, false, rc), frame.opt(rc));
        Outcome::Done(Answered { rcode: rc, view, source })
    };
    if let Some((rc, echo)) = header_rules(&q) {
        let question = if echo { q.one().map(|(question, ..)| question) } else { None };
        return reply(out, question, rc, None, Source::Error);
    }
    let Some((question, qname, qtype, qclass)) = q.one() else {
        return reply(out, None, rcode::FORMERR, None, Source::Error);
    };
    let (view, _) = ctx.snap.select_view(Some(client.listener), client.src.ip());
    if refuse_transfers_and_other_classes(qtype, qclass) {
        return reply(out, Some(question), rcode::REFUSED, Some(view), Source::Refused);
    }

    let key = KeyBuf::from_wire(qname);
    let qtype = RecordType::from(qtype);
    let wk = walk(ctx.snap, view, &key, qtype);
    let mut w = ResponseWriter::new(std::mem::take(out), q.id, Some(question), limit, frame.opt.is_some());
    write_local(&mut w, ctx.snap, &wk);
    let ra = wk.source != Source::Refused;
    let mut rc = u16::from(wk.rcode());
    let mut source = wk.source;
    if let End::Upstream { route, .. } = wk.end {
        let dnssec_ok = q.edns.is_some_and(|e| e.dnssec_ok);
        let (upstreams, route_id) = ctx.snap.upstreams_for(route);
        let mut kb = [0u8; MAX_KEY_LEN];
        let cache_key = match wk.last().name {
            LinkName::Question => key_bytes(&mut kb, key.key(), qtype, dnssec_ok, route_id),
            LinkName::Target(n) => key_bytes(&mut kb, KeyBuf::new(n).key(), qtype, dnssec_ok, route_id),
        };
        match ctx.cache.get(cache_key, ctx.now).filter(|e| e.is_fresh(ctx.now)) {
            Some(e) => {
                ctx.metrics.cache_hits.inc();
                rc = write_upstream(&mut w, &e, ctx.now);
                if source == Source::Upstream {
                    source = Source::Cache;
                }
            }
            // RD=0: local and cached data only (rule 5).
            None if !q.recursion_desired() => {}
            None => {
                let name = match wk.last().name {
                    LinkName::Question => {
                        Name::read(&mut BinDecoder::new(qname)).unwrap_or_else(|_| crate::dns::names::key_to_name(key.key()))
                    }
                    LinkName::Target(n) => n.clone(),
                };
                return Outcome::Wait(Box::new(Pending {
                    w,
                    frame,
                    name,
                    qtype,
                    dnssec_ok,
                    upstreams: upstreams.to_vec(),
                    route_id,
                    aa: wk.authoritative,
                    ra,
                    view,
                    source,
                }));
            }
        }
    }
    *out = w.finish(frame.flags(wk.authoritative, ra, rc), frame.opt(rc));
    Outcome::Done(Answered { rcode: rc, view: Some(view), source })
}

/// A question waiting on an upstream: the response so far (header,
/// question, the local links of the chain) and what to ask.
pub struct Pending {
    w: ResponseWriter,
    frame: Frame,
    pub name: Name,
    pub qtype: RecordType,
    dnssec_ok: bool,
    upstreams: Vec<SocketAddr>,
    route_id: u64,
    aa: bool,
    ra: bool,
    view: View,
    /// `Upstream` when the question itself goes upstream; the local
    /// source when only a CNAME target does.
    source: Source,
}

impl Pending {
    /// Asks the upstreams (through the cache) and completes the response.
    pub async fn finish(self, forwarder: &Forwarder) -> (Vec<u8>, Answered) {
        let Pending { mut w, frame, name, qtype, dnssec_ok, upstreams, route_id, aa, ra, view, mut source } = self;
        let question_is_upstream = source == Source::Upstream;
        let got = forwarder.lookup(&name, qtype, dnssec_ok, &upstreams, route_id, true).await;
        let now = Instant::now();
        let (rc, aa) = match got {
            Lookup::Fresh(e, from_cache) => {
                if question_is_upstream && from_cache {
                    source = Source::Cache;
                }
                (write_upstream(&mut w, &e, now), aa)
            }
            Lookup::Stale(e, _) => {
                if question_is_upstream {
                    source = Source::Stale;
                }
                (write_upstream(&mut w, &e, now), aa)
            }
            Lookup::NotCached => (rcode::NOERROR, aa),
            Lookup::Failed(_) => {
                w.clear_records();
                source = Source::Failure;
                (rcode::SERVFAIL, false)
            }
        };
        let bytes = w.finish(frame.flags(aa, ra, rc), frame.opt(rc));
        (bytes, Answered { rcode: rc, view: Some(view), source })
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

/// Writes the local part of a walk: each CNAME link, then the last link's
/// records or negative SOA.
fn write_local(w: &mut ResponseWriter, snap: &Snapshot, wk: &Walk<'_>) {
    // Where the current link's name is in the message: the question,
    // then each CNAME's target.
    let mut name_pos = dns::HEADER_LEN;
    for l in wk.links() {
        let Some(c) = l.cname else { continue };
        let Some(at) = w.record_at(Section::Answer, name_pos, &c.wire) else { break };
        name_pos = at + 10;
    }
    match wk.end {
        End::Answer(rrset) => write_rrset_in_client_zone_order(w, name_pos, rrset, wk.az),
        End::NoData(_) | End::NxDomain(_) => write_negative_soa(w, snap, wk, name_pos),
        End::Upstream { .. } | End::Loop | End::TooLong | End::Refused => {}
    }
}

/// An RRset owned by the name at `name_pos`; endpoint addresses in the
/// client's own vSwitch zone first, the order otherwise kept.
fn write_rrset_in_client_zone_order(w: &mut ResponseWriter, name_pos: usize, rrset: &RRset, az: u32) {
    let reorder = az != NO_AZ && rrset.azs.contains(&az);
    let own = |i: usize| rrset.azs.get(i).is_some_and(|a| *a == az);
    let passes: &[bool] = if reorder { &[true, false] } else { &[true] };
    for &first in passes {
        for (i, t) in tails(&rrset.wire).enumerate() {
            if !reorder || own(i) == first {
                w.record_at(Section::Answer, name_pos, t);
            }
        }
    }
}

/// NODATA and NXDOMAIN carry the zone's SOA (RFC 2308), owned by the
/// apex: an ancestor of the last link's name, pointed at.
fn write_negative_soa(w: &mut ResponseWriter, snap: &Snapshot, wk: &Walk<'_>, name_pos: usize) {
    let Some(zone) = wk.last().zone.and_then(|z| snap.zones.get(z as usize)) else { return };
    let apex = w.ancestor_at(name_pos, w.labels_at(name_pos).saturating_sub(zone.labels));
    w.record_at(Section::Authority, apex, &zone.negative_soa_wire);
}

/// Appends an upstream answer as cached, TTLs aged to `now`; returns its
/// rcode, which becomes the response's (RFC 6604: that of the last link).
fn write_upstream(w: &mut ResponseWriter, e: &Entry, now: Instant) -> u16 {
    for (section, records) in [(Section::Answer, &e.wire.0), (Section::Authority, &e.wire.1), (Section::Additional, &e.wire.2)] {
        for r in records {
            w.record_named(section, r.owner(), r.tail(), e.aged_ttl(now, r.ttl));
        }
    }
    u16::from(e.rcode)
}

/// The rcode as a hickory value, for callers that print it.
pub fn response_code(rc: u16) -> ResponseCode {
    ResponseCode::from((rc >> 4) as u8, (rc & 0x0f) as u8)
}
