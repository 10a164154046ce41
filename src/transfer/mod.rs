//! Copies elsewhere (docs/REFERENCE.md#transfers): zone transfers out
//! (AXFR, RFC 5936; IXFR, RFC 1995, answered AXFR-style or "current"),
//! signed with TSIG keys that each stand for one VPC's view, the view's
//! catalog zone (RFC 9432), and NOTIFY (RFC 1996) to its secondaries.
//!
//! A key decides the view, not the source address: a request signed with
//! it sees exactly the zones its VPC sees that a copy can serve as pzdns
//! does ([`crate::snapshot::zone::Zone::transferable`]). Unsigned transfers
//! never reach here (rule 5 refuses them); a bad signature is NOTAUTH with
//! the TSIG error.

pub mod catalog;
pub mod notify;
pub mod tsig;

use std::sync::Arc;

use hickory_proto::rr::RecordType;

use crate::dns::query::Query;
use crate::dns::record::tails;
use crate::dns::{AA, CLASS_IN, HEADER_LEN, OPCODE, QR, RD, TYPE_AXFR, TYPE_IXFR, TYPE_SOA, rcode};
use crate::metrics::{Event, Metrics, TransferLabels};
use crate::snapshot::zone::Zone;
use crate::snapshot::{Snapshot, VpcIdx};
use tsig::{Signer, error};

/// Bytes of records per transfer message: near the 64 KiB a TCP message
/// may hold, with room for the TSIG record.
pub const MESSAGE_BUDGET: usize = u16::MAX as usize - tsig::MAX_TSIG_LEN;

/// The `zone` label of transfers asked for a name that is no zone of the view.
pub const NO_ZONE: &str = "-";

/// Whether `q` asks for a transfer signed with TSIG: the TCP server streams those.
pub fn is_signed_transfer(q: &Query<'_>) -> bool {
    q.tsig.is_some() && q.opcode() == 0 && q.one().is_some_and(|(_, _, t, _)| t == TYPE_AXFR || t == TYPE_IXFR)
}

/// What a signed request starts: one response, or a transfer's stream.
pub enum Start {
    /// The whole response (maybe signed), its rcode and the view it was answered in.
    Reply {
        bytes: Vec<u8>,
        rcode: u16,
        vpc: Option<VpcIdx>,
    },
    Stream(Box<Stream>),
}

/// Answers a query that carries a TSIG record (`q.tsig`), at `now`:
/// verified against `snap`'s keys, then answered in the key's view — SOA
/// queries at the apex of a zone the view may copy (a secondary's
/// refresh), and over TCP (`stream`) AXFR and IXFR.
pub fn start(snap: &Snapshot, metrics: &Metrics, src: std::net::SocketAddr, msg: &[u8], q: &Query<'_>, stream: bool, now: u64) -> Start {
    let at = q.tsig.unwrap_or(msg.len());
    let keys: Vec<&crate::config::transfers::TsigKey> = snap.transfer_keys.iter().map(|(k, _)| k).collect();
    let question = q.one().map(|(question, ..)| question);
    let verified = match tsig::verify(&keys, msg, at, now) {
        None => return Start::Reply { bytes: unsigned(q, question, rcode::FORMERR, None), rcode: rcode::FORMERR, vpc: None },
        Some(Err(rej)) => {
            metrics.events.note(Event::TsigRejected, || {
                let key = String::from_utf8_lossy(&rej.record.key[..]).into_owned();
                format!("signed query from {src} rejected: {} (key {})", error::name(rej.error), printable(&key))
            });
            let bytes = match rej.key {
                // BADTIME: signed at the request's time, with ours in Other
                // Data (RFC 8945 §5.2.3, as BIND does), so that the asker
                // can check it and learn the skew.
                Some(ki) => {
                    let mut m = header(q, question, rcode::NOTAUTH, false);
                    Signer::new(keys[ki], &rej.record).sign(&mut m, rej.record.time, rej.error, &now.to_be_bytes()[2..]);
                    m
                }
                None => unsigned(q, question, rcode::NOTAUTH, Some(&rej)),
            };
            return Start::Reply { bytes, rcode: rcode::NOTAUTH, vpc: None };
        }
        Some(Ok(v)) => v,
    };
    let (key, vpc) = (&snap.transfer_keys[verified.key].0, snap.transfer_keys[verified.key].1);
    let mut signer = Signer::new(key, &verified.record);
    let mut reply = |rc: u16, records: &[(&[u8], &[u8])]| {
        let mut m = header(q, question, rc, rc == rcode::NOERROR);
        for (owner, tail) in records {
            m.extend_from_slice(owner);
            m.extend_from_slice(tail);
        }
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        signer.sign(&mut m, now, 0, &[]);
        Start::Reply { bytes: m, rcode: rc, vpc: Some(vpc) }
    };
    let Some((_, qname, qtype, qclass)) = q.one() else { return reply(rcode::FORMERR, &[]) };
    if q.opcode() != 0 {
        return reply(rcode::NOTIMP, &[]);
    }
    let kind = match qtype {
        TYPE_AXFR => "axfr",
        TYPE_IXFR => "ixfr",
        _ => "query",
    };
    let count = |zone: &str, result: &'static str| {
        if kind != "query" {
            let labels = TransferLabels { vpc: vpc_label(snap, vpc), zone: zone.to_string(), kind, result };
            metrics.transfers.get_or_create(&labels).inc();
        }
    };
    let zone_name = crate::dns::names::key_to_name(crate::dns::names::KeyBuf::from_wire(qname).key()).to_string();
    // A name that is no zone of the view is counted without it: the
    // asker chooses it, and label values must stay bounded.
    if qclass != CLASS_IN {
        count(NO_ZONE, "refused");
        return reply(rcode::REFUSED, &[]);
    }
    let Some(source) = Source::find(snap, vpc, qname) else {
        count(NO_ZONE, "not_found");
        return reply(rcode::NOTAUTH, &[]);
    };
    let soa = source.soa_record();
    match qtype {
        TYPE_SOA => reply(rcode::NOERROR, &[(&soa.0, &soa.1)]),
        TYPE_AXFR | TYPE_IXFR if !stream => {
            count(&zone_name, "refused");
            reply(rcode::REFUSED, &[])
        }
        TYPE_IXFR if ixfr_serial(msg, q).is_some_and(|s| serial_ge(s, source.serial())) => {
            // The secondary is current (RFC 1995 §4): one SOA.
            count(&zone_name, "current");
            reply(rcode::NOERROR, &[(&soa.0, &soa.1)])
        }
        TYPE_AXFR | TYPE_IXFR => {
            // IXFR from a version still in the zone's history: its
            // differences; from any other, the whole zone (RFC 1995 §4).
            let since = if qtype == TYPE_IXFR { ixfr_serial(msg, q) } else { None };
            let (source, started) = match (&source, since) {
                (Source::Zone(z), Some(from)) => match incremental(z, from) {
                    Some(diffs) => (Source::Built(diffs), "incremental"),
                    None => (source, "full"),
                },
                _ => (source, "started"),
            };
            count(&zone_name, started);
            let question = question.map(<[u8]>::to_vec).unwrap_or_default();
            Start::Stream(Box::new(Stream {
                source,
                soa,
                signer,
                id: q.id,
                flags: QR | AA | (q.flags & OPCODE),
                question,
                phase: Phase::FirstSoa,
                node_at: 0,
                rec: 0,
                vpc: vpc_label(snap, vpc),
                zone: zone_name,
                kind,
                messages: 0,
            }))
        }
        _ => reply(rcode::REFUSED, &[]),
    }
}

/// The differences from version `from` of `z` to the version in force,
/// as an IXFR body (RFC 1995 §4: per version, the old SOA, what was
/// deleted, the new SOA, what was added); `None` when the history does
/// not reach back to `from`.
fn incremental(z: &Zone, from: u32) -> Option<catalog::Built> {
    let start = z.history.iter().position(|d| d.from == from)?;
    let chain = &z.history[start..];
    let linked = chain.windows(2).all(|w| w[0].to == w[1].from) && chain.last().is_some_and(|d| d.to == z.serial);
    if !linked {
        return None;
    }
    let apex = z.key.to_vec();
    let mut records = Vec::new();
    for d in chain {
        records.push((apex.clone(), d.old_soa.to_vec()));
        records.extend(d.deleted.iter().map(|(o, t)| (o.to_vec(), t.to_vec())));
        records.push((apex.clone(), d.new_soa.to_vec()));
        records.extend(d.added.iter().map(|(o, t)| (o.to_vec(), t.to_vec())));
    }
    Some(catalog::Built { apex: z.origin.clone(), serial: z.serial, soa: z.soa_wire()?.to_vec(), records })
}

/// RFC 1982: whether `a` is at or past `b`.
fn serial_ge(a: u32, b: u32) -> bool {
    a == b || (a.wrapping_sub(b) as i32) > 0
}

/// The serial of an IXFR request's SOA (authority section, RFC 1995 §3).
fn ixfr_serial(msg: &[u8], q: &Query<'_>) -> Option<u32> {
    let (question, ..) = q.one()?;
    let be16 = |p: usize| msg.get(p..p + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    if be16(6)? != 0 || be16(8)? == 0 {
        return None;
    }
    let mut p = HEADER_LEN + question.len();
    let (_, after_owner) = tsig::read_name(msg, p)?;
    p = after_owner;
    if be16(p)? != TYPE_SOA {
        return None;
    }
    p += 10;
    let (_, after_mname) = tsig::read_name(msg, p)?;
    let (_, after_rname) = tsig::read_name(msg, after_mname)?;
    msg.get(after_rname..after_rname + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() { c } else { '.' }).collect()
}

fn vpc_label(snap: &Snapshot, vpc: VpcIdx) -> String {
    snap.vpcs.get(vpc as usize).map_or_else(String::new, |v| v.id.clone())
}

/// A response's header and question: the query's id and opcode, RD copied.
fn header(q: &Query<'_>, question: Option<&[u8]>, rc: u16, aa: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(512);
    let flags = QR | (q.flags & (OPCODE | RD)) | if aa { AA } else { 0 } | (rc & 0xf);
    m.extend_from_slice(&q.id.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
    m.extend_from_slice(&[0; 6]);
    if let Some(qs) = question {
        m.extend_from_slice(qs);
    }
    m
}

/// A response with no signature: FORMERR, or NOTAUTH for BADKEY and
/// BADSIG (RFC 8945 §5.2: a TSIG record with the error and no MAC).
fn unsigned(q: &Query<'_>, question: Option<&[u8]>, rc: u16, rej: Option<&tsig::Rejected>) -> Vec<u8> {
    let mut m = header(q, question, rc, false);
    if let Some(r) = rej {
        let t = &r.record;
        tsig::append_tsig(&mut m, &t.key, &t.algorithm, t.time, &[], t.original_id, r.error, &[]);
    }
    m
}

/// What a transfer streams: a zone of the snapshot, or one built for it (a catalog).
enum Source {
    Zone(Arc<Zone>),
    Built(catalog::Built),
}

impl Source {
    /// The zone named `qname` (lowercase wire form) that `vpc`'s secondaries may copy.
    fn find(snap: &Snapshot, vpc: VpcIdx, qname: &[u8]) -> Option<Source> {
        let key = crate::dns::names::KeyBuf::from_wire(qname);
        if let Some(z) = snap.transferable_zones(vpc).find(|z| &z.key[..] == key.key()) {
            return Some(Source::Zone(z.clone()));
        }
        let cat = snap.catalog_zone(vpc)?;
        (crate::dns::names::name_key(&cat)[..] == *key.key()).then(|| catalog::build(snap, vpc).map(Source::Built))?
    }

    fn serial(&self) -> u32 {
        match self {
            Source::Zone(z) => z.serial,
            Source::Built(b) => b.serial,
        }
    }

    /// The apex SOA: owner key and the record without owner.
    fn soa_record(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            Source::Zone(z) => (z.key.to_vec(), z.soa_wire().map_or_else(|| z.negative_soa_wire.to_vec(), <[u8]>::to_vec)),
            Source::Built(b) => (crate::dns::names::name_key(&b.apex).to_vec(), b.soa.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    FirstSoa,
    Body,
    LastSoa,
    Done,
}

/// A transfer under way: SOA, every other record, SOA again, in messages
/// of up to [`MESSAGE_BUDGET`] bytes, each signed (RFC 8945 §5.3.1). It
/// holds the zone (an `Arc`), not the snapshot, and where it is in it.
pub struct Stream {
    source: Source,
    soa: (Vec<u8>, Vec<u8>),
    signer: Signer,
    id: u16,
    flags: u16,
    /// The question, echoed in the first message only.
    question: Vec<u8>,
    phase: Phase,
    /// Offset of the next node in the zone's arena, and records of it already sent.
    node_at: usize,
    rec: usize,
    vpc: String,
    zone: String,
    kind: &'static str,
    messages: usize,
}

impl Stream {
    /// The next message, signed at `now`; `None` once the last was given.
    pub fn next_message(&mut self, now: u64) -> Option<Vec<u8>> {
        if self.phase == Phase::Done {
            return None;
        }
        let mut m = Vec::with_capacity(if self.messages == 0 { 4096 } else { u16::MAX as usize });
        m.extend_from_slice(&self.id.to_be_bytes());
        m.extend_from_slice(&self.flags.to_be_bytes());
        let first = self.messages == 0 && !self.question.is_empty();
        m.extend_from_slice(&u16::from(first).to_be_bytes());
        m.extend_from_slice(&[0; 6]);
        if first {
            m.extend_from_slice(&self.question);
        }
        let mut an = 0u16;
        // Where this message holds the apex, for owners to point at (RFC 1035 §4.1.4).
        let mut apex_at = None;
        loop {
            match self.phase {
                Phase::FirstSoa | Phase::LastSoa => {
                    if !fits(&m, an, self.soa.0.len() + self.soa.1.len()) {
                        break;
                    }
                    write_owner(&mut m, &self.soa.0, &self.soa.0, &mut apex_at);
                    m.extend_from_slice(&self.soa.1);
                    an += 1;
                    self.phase = if self.phase == Phase::FirstSoa { Phase::Body } else { Phase::Done };
                }
                Phase::Body => {
                    if !self.fill(&mut m, &mut an, &mut apex_at) {
                        break;
                    }
                    self.phase = Phase::LastSoa;
                }
                Phase::Done => break,
            }
        }
        m[6..8].copy_from_slice(&an.to_be_bytes());
        self.signer.sign(&mut m, now, 0, &[]);
        self.messages += 1;
        Some(m)
    }

    /// Adds records after the SOA to `m`; whether all of them are in.
    fn fill(&mut self, m: &mut Vec<u8>, an: &mut u16, apex_at: &mut Option<u16>) -> bool {
        let apex = &self.soa.0;
        match &self.source {
            Source::Built(b) => {
                while let Some((owner, tail)) = b.records.get(self.rec) {
                    if !fits(m, *an, owner.len() + tail.len()) {
                        return false;
                    }
                    write_owner(m, owner, apex, apex_at);
                    m.extend_from_slice(tail);
                    *an += 1;
                    self.rec += 1;
                }
                true
            }
            Source::Zone(z) => {
                while let Some((key, node, next)) = z.nodes.node_from(self.node_at) {
                    let at_apex = key == &z.key[..];
                    let mut i = 0;
                    for set in node.rrsets() {
                        if at_apex && set.rtype() == RecordType::SOA {
                            continue;
                        }
                        for t in tails(set.wire()) {
                            if i >= self.rec {
                                if !fits(m, *an, key.len() + t.len()) {
                                    return false;
                                }
                                write_owner(m, key, apex, apex_at);
                                m.extend_from_slice(t);
                                *an += 1;
                                self.rec = i + 1;
                            }
                            i += 1;
                        }
                    }
                    self.node_at = next;
                    self.rec = 0;
                }
                true
            }
        }
    }

    /// Counts the transfer's end: `complete` or cut short (the secondary went away).
    pub fn finish(&self, metrics: &Metrics) {
        let result = if self.phase == Phase::Done { "complete" } else { "aborted" };
        let labels = TransferLabels { vpc: self.vpc.clone(), zone: self.zone.clone(), kind: self.kind, result };
        metrics.transfers.get_or_create(&labels).inc();
    }
}

/// Writes `owner` (lowercase wire form) at the end of `m`: whole the first
/// time the message holds `apex`, which `apex_at` then notes; after that,
/// the labels above the apex and a pointer to it.
fn write_owner(m: &mut Vec<u8>, owner: &[u8], apex: &[u8], apex_at: &mut Option<u16>) {
    // Where the apex starts in `owner`, on a label boundary.
    let mut i = 0;
    let split = loop {
        if owner[i..] == *apex {
            break Some(i);
        }
        match owner.get(i) {
            Some(&len) if len != 0 => i += 1 + len as usize,
            _ => break None,
        }
        if i >= owner.len() {
            break None;
        }
    };
    match (split, *apex_at) {
        (Some(i), Some(at)) => {
            m.extend_from_slice(&owner[..i]);
            m.extend_from_slice(&(0xc000 | at).to_be_bytes());
        }
        (Some(i), None) => {
            // A pointer reaches the first 16 KiB of a message only.
            if m.len() + i < 0x3fff {
                *apex_at = Some((m.len() + i) as u16);
            }
            m.extend_from_slice(owner);
        }
        (None, _) => m.extend_from_slice(owner),
    }
}

/// Whether a record of `len` bytes fits in `m` (one always does in an empty message).
fn fits(m: &[u8], an: u16, len: usize) -> bool {
    an == 0 || (m.len() + len <= MESSAGE_BUDGET && an < u16::MAX)
}
