//! The UDP fast path: a plain query (`wire::query`) answered from local
//! data or a fresh cache entry, written by `wire::response` from record
//! bytes precomputed at load (or when cached), into the socket loop's own
//! buffer: no decode into a `Message`, no allocation, no task.
//!
//! It answers exactly what the general path (handler.rs) would — same
//! rules (`resolve::walk`), header, EDNS and sections; only owner names
//! are compressed against the question, so responses are smaller.
//! `tests/fast_path.rs` compares the two on every rule fixture. Whatever
//! it does not cover returns `None` and takes the general path: queries
//! with unusual headers or types, upstream questions not freshly cached,
//! and everything when the query log is on.

use std::net::IpAddr;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::handler::Shared;
use crate::resolve::{End, LinkName, Source, walk};
use crate::snapshot::names::KeyBuf;
use crate::snapshot::zone::NO_AZ;
use crate::snapshot::{Snapshot, View};
use crate::upstream::cache::{MAX_KEY_LEN, key_bytes};
use crate::wire::query::PlainQuery;
use crate::wire::response::{ResponseWriter, Section};
use crate::wire::tails;

/// What metrics need of a response the fast path wrote (the response
/// itself is the caller's buffer).
#[derive(Debug, Clone, Copy)]
pub struct Answered {
    pub rcode: ResponseCode,
    pub view: View,
    pub source: &'static str,
}

/// Answers `msg` from `src` on `listener` into `out`, or `None` for the
/// general path (then `out` holds nothing of use). `now` ages cached
/// answers (the socket loop reads the clock once per batch).
pub fn answer(
    shared: &Shared,
    snap: &Snapshot,
    listener: usize,
    src: IpAddr,
    msg: &[u8],
    out: &mut Vec<u8>,
    now: Instant,
) -> Option<Answered> {
    let q = PlainQuery::parse(msg)?;
    let (view, _) = snap.view_for(Some(listener), src);
    let key = KeyBuf::from_wire(q.qname);
    let qtype = RecordType::from(q.qtype);
    let w = walk(snap, view, &key, qtype);

    // An upstream part is served here only from a fresh cache entry.
    let cached = match w.end {
        End::Upstream { route, .. } => {
            let (_, route_id) = snap.upstreams_for(route);
            let dnssec_ok = q.edns.is_some_and(|e| e.dnssec_ok);
            let mut kb = [0u8; MAX_KEY_LEN];
            let name_key = match w.last().name {
                LinkName::Question => key_bytes(&mut kb, key.key(), qtype, dnssec_ok, route_id),
                LinkName::Target(n) => key_bytes(&mut kb, KeyBuf::new(n).key(), qtype, dnssec_ok, route_id),
            };
            let e = shared.forwarder.cache.get(name_key, now)?;
            if !e.is_fresh(now) || e.wire.is_none() {
                return None;
            }
            shared.metrics.cache_hits.inc();
            Some((e, now))
        }
        _ => None,
    };

    let limit = q.edns.map_or(512, |e| e.payload.clamp(512, super::MAX_UDP_PAYLOAD)) as usize;
    let mut rw = ResponseWriter::new(out, &q, limit);
    // Where the current link's name is in the message: the question,
    // then each CNAME's target.
    let mut name_pos = 12;
    for l in w.links() {
        let Some(c) = l.cname else { continue };
        let Some(at) = rw.record_at(Section::Answer, name_pos, &c.wire) else { break };
        name_pos = at + 10;
    }
    let mut rcode = w.rcode();
    match w.end {
        End::Answer(rrset) => {
            // Endpoint addresses in the client's own zone first.
            let own = |i: usize| rrset.azs.get(i).is_some_and(|a| *a == w.az);
            let reorder = w.az != NO_AZ && rrset.azs.contains(&w.az);
            let passes: &[bool] = if reorder { &[true, false] } else { &[true] };
            for &first in passes {
                for (i, t) in tails(&rrset.wire).enumerate() {
                    if !reorder || own(i) == first {
                        rw.record_at(Section::Answer, name_pos, t);
                    }
                }
            }
        }
        End::NoData(_) | End::NxDomain(_) => {
            let zone = &snap.zones[w.last().zone.unwrap_or(0) as usize];
            let apex = rw.ancestor_at(name_pos, rw.labels_at(name_pos).saturating_sub(zone.labels));
            rw.record_at(Section::Authority, apex, &zone.negative_soa_wire);
        }
        End::Upstream { .. } => {
            if let Some((e, now)) = &cached
                && let Some((answers, authorities)) = &e.wire
            {
                for r in answers {
                    rw.record_named(Section::Answer, r.owner(), r.tail(), e.aged_ttl(*now, r.ttl));
                }
                for r in authorities {
                    rw.record_named(Section::Authority, r.owner(), r.tail(), e.aged_ttl(*now, r.ttl));
                }
                // RFC 6604: the rcode is that of the last link.
                rcode = e.rcode;
            }
        }
        End::Loop | End::TooLong | End::Refused => {}
    }
    let source = match (w.end, w.source) {
        (End::Upstream { .. }, Source::Upstream) => "cache",
        (_, s) => s.as_str(),
    };
    let ra = w.source != Source::Refused;
    rw.finish(&q, w.authoritative, ra, u16::from(rcode) as u8);
    Some(Answered { rcode, view, source })
}
