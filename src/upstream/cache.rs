//! The cache of upstream answers (docs/REFERENCE.md#cache): keyed by name, type,
//! DO bit and the upstream set asked, bounded by `max_bytes` (what the
//! entries really take in memory) and `max_entries`, kept past expiry for
//! the RFC 8767 stale window.
//!
//! quick_cache is used (it replaced moka): a lookup is a hash and a probe
//! in one shard, where moka also records every read for its eviction
//! policy; at 50k cache hits/s that bookkeeping cost ~1 µs per hit
//! (docs/PERFORMANCE.md). hickory-resolver's own cache cannot serve stale
//! data and clones a whole Message per hit.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::dns::names::MAX_NAME_WIRE_LEN;
use crate::dnssec::Status;

/// Longest time anything is cached (RFC 2181 §8 allows more; resolvers cap it).
pub const MAX_CACHE_TTL: u32 = 86_400;
/// TTL of records served stale (RFC 8767 §4 recommends 30 s).
pub const STALE_TTL: u32 = 30;
/// How long a name's resolution failure is cached (RFC 9520 §3.2: at
/// least 1 s; this is the duration it suggests to begin with; pzdns
/// keeps it under 30 s, so that a repaired domain is asked again soon).
/// Also how long a stale answer whose refresh failed is served without
/// asking again (RFC 8767's failure recheck).
pub const FAILURE_TTL: u32 = 5;

/// Longest cache key: a name's key, QTYPE, DO, route id.
pub const MAX_KEY_LEN: usize = MAX_NAME_WIRE_LEN + 2 + 1 + 8;

/// What identifies a cached answer: the name's lowercased wire key, the
/// type, the DO bit, and which upstream set answered (a forward zone's or
/// the default, so two routes for one name never share an entry), as one
/// byte string, so that a lookup can be made from a stack buffer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(Box<[u8]>);

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl Key {
    /// The whole key, as [`Cache::get`] takes it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The name's part of the key: its lowercased wire form.
    pub fn name_key(&self) -> &[u8] {
        &self.0[..self.0.len().saturating_sub(KEY_SUFFIX_LEN)]
    }

    /// The type asked.
    pub fn qtype(&self) -> RecordType {
        let n = self.0.len().saturating_sub(KEY_SUFFIX_LEN);
        self.0.get(n..n + 2).map_or(RecordType::NULL, |b| RecordType::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// The DO bit asked with.
    pub fn dnssec_ok(&self) -> bool {
        self.0.get(self.0.len().saturating_sub(KEY_SUFFIX_LEN) + 2).is_some_and(|b| *b != 0)
    }
}

/// What follows the name in a key: QTYPE, DO, route id.
const KEY_SUFFIX_LEN: usize = 2 + 1 + 8;

impl From<&[u8]> for Key {
    fn from(b: &[u8]) -> Self {
        Key(b.into())
    }
}

/// Lays a cache key out in `buf`: `name_key` is a lowercased wire name
/// (`KeyBuf::key`).
pub fn key_bytes<'b>(buf: &'b mut [u8; MAX_KEY_LEN], name_key: &[u8], qtype: RecordType, dnssec_ok: bool, route: u64) -> &'b [u8] {
    let n = name_key.len().min(MAX_NAME_WIRE_LEN);
    buf[..n].copy_from_slice(&name_key[..n]);
    buf[n..n + 2].copy_from_slice(&u16::from(qtype).to_be_bytes());
    buf[n + 2] = dnssec_ok as u8;
    buf[n + 3..n + 11].copy_from_slice(&route.to_be_bytes());
    &buf[..n + 11]
}

/// A cached record in wire form, for the UDP fast path.
#[derive(Debug, Clone)]
pub struct WireRecord {
    /// Owner name (uncompressed), then TYPE..RDATA.
    pub bytes: Box<[u8]>,
    pub owner_len: usize,
    /// TTL as received (top-bit TTLs already 0).
    pub ttl: u32,
}

impl WireRecord {
    fn new(r: &Record) -> Option<Self> {
        let bytes = crate::dns::record::record_wire(r);
        let owner_len = crate::dns::record::name_len(&bytes);
        (bytes.len() >= owner_len + 10).then(|| WireRecord { bytes: bytes.into_boxed_slice(), owner_len, ttl: r.ttl })
    }

    pub fn owner(&self) -> &[u8] {
        &self.bytes[..self.owner_len]
    }

    pub fn tail(&self) -> &[u8] {
        &self.bytes[self.owner_len..]
    }
}

/// Why an upstream that replied did not answer a name: a per-name
/// failure, cached as such ([`Entry::failure`]), which says nothing about
/// the upstream's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An rcode other than NOERROR and NXDOMAIN (SERVFAIL, REFUSED, ...).
    Rcode(ResponseCode),
    /// NOERROR with no answer, NS records in authority and no SOA: a
    /// referral from a server that does not recurse, not an answer.
    Referral,
}

/// An upstream answer as cached: the records in wire form only, since
/// that is all the answer writer copies (decoded records would cost
/// about three times the wire bytes again, for nothing).
#[derive(Debug)]
pub struct Entry {
    /// SERVFAIL for a cached failure ([`Entry::failure`]).
    pub rcode: ResponseCode,
    /// Set for a cached failure: what the upstreams said.
    pub failure: Option<Failure>,
    /// A refresh of this (stale) answer failed for the name: until the
    /// entry is this many seconds old it is served stale without asking
    /// again ([`Entry::refresh_failed`]). 0: no failure noted.
    retry_at_age: AtomicU32,
    pub stored: Instant,
    /// Seconds it is fresh: the smallest answer TTL, or for a negative
    /// answer min(SOA TTL, SOA MINIMUM) (RFC 2308 §5). 0: not cacheable.
    pub ttl: u32,
    /// How long the cache keeps it after it goes stale.
    pub stale_for: Duration,
    /// What DNSSEC validation found of it ([`Status::to_u8`]); stored with
    /// the answer so that a cache hit never validates.
    dnssec: AtomicU8,
    /// The three sections in wire form: what the answer writer copies.
    /// A record that cannot be encoded is left out.
    pub wire: (Vec<WireRecord>, Vec<WireRecord>, Vec<WireRecord>),
    /// What it takes in memory, allocator overhead included ([`Entry::bytes`]).
    bytes: usize,
    /// Set once it is stored: the cache's byte count it is counted in,
    /// and by how much (its weight). Given back when it is dropped, so
    /// the count is exact whatever evicts, replaces or removes it.
    /// The third number is its weight against the budget.
    counted: OnceLock<(Arc<AtomicU64>, u64, u64)>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some((total, w, _)) = self.counted.get() {
            total.fetch_sub(*w, Ordering::Relaxed);
        }
    }
}

/// What glibc's malloc takes for a request of `n` bytes: an 8-byte header,
/// rounded up to 16, at least 32 (the allocator is mimalloc, which adds no header: this errs high).
pub const fn heap_bytes(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        let c = (n + 8).div_ceil(16) * 16;
        if c < 32 { 32 } else { c }
    }
}

/// What one stored entry costs quick_cache besides the entry itself: its
/// slot (key and `Arc` pointer, state, list links), its hash-table slot at
/// the load factor, and a share of the ghost list (hashes of evicted keys).
/// quick_cache's own accounting comes to less when the cache is full
/// (`tests::slot_overhead_covers_quick_cache`); the rest is room for its
/// vectors growing by doubling.
pub const SLOT_BYTES: usize = 96;

impl Entry {
    /// An upstream reply as served again. Without DNSSEC (DO=0) the
    /// response is minimal, as Unbound's and BIND's defaults are: the
    /// authority section only for negative answers (the SOA that gives
    /// their TTL), no additional section. With DO=1 everything is kept,
    /// since a validator downstream needs the NSEC/RRSIG proofs.
    pub fn new(
        rcode: ResponseCode,
        mut answers: Vec<Record>,
        mut authorities: Vec<Record>,
        mut additionals: Vec<Record>,
        dnssec_ok: bool,
        stale_for: Duration,
    ) -> Self {
        if !dnssec_ok {
            additionals.clear();
            if rcode != ResponseCode::NXDomain && !answers.is_empty() {
                authorities.clear();
            }
        }
        // RFC 2181 §8: a TTL with the top bit set is read as zero.
        for r in answers.iter_mut().chain(authorities.iter_mut()).chain(additionals.iter_mut()) {
            if r.ttl > i32::MAX as u32 {
                r.ttl = 0;
            }
        }
        // RFC 2308 §5: the SOA of a negative answer says how long the
        // answer lives, min(its TTL, MINIMUM), and counts down from there.
        if rcode == ResponseCode::NXDomain || (rcode == ResponseCode::NoError && answers.is_empty()) {
            for r in authorities.iter_mut() {
                if let RData::SOA(soa) = &r.data {
                    r.ttl = r.ttl.min(soa.minimum);
                }
            }
        }
        let ttl = cache_ttl(rcode, &answers, &authorities);
        let enc = |rs: &[Record]| rs.iter().filter_map(WireRecord::new).collect::<Vec<_>>();
        Self::from_wire(rcode, ttl, (enc(&answers), enc(&authorities), enc(&additionals)), stale_for)
    }

    fn from_wire(rcode: ResponseCode, ttl: u32, wire: (Vec<WireRecord>, Vec<WireRecord>, Vec<WireRecord>), stale_for: Duration) -> Self {
        let sections = [&wire.0, &wire.1, &wire.2];
        let bytes = heap_bytes(2 * std::mem::size_of::<usize>() + std::mem::size_of::<Entry>())
            + sections.iter().map(|v| heap_bytes(v.capacity() * std::mem::size_of::<WireRecord>())).sum::<usize>()
            + sections.iter().flat_map(|v| v.iter()).map(|r| heap_bytes(r.bytes.len())).sum::<usize>();
        Entry {
            rcode,
            failure: None,
            retry_at_age: AtomicU32::new(0),
            stored: Instant::now(),
            ttl,
            stale_for,
            dnssec: AtomicU8::new(Status::Unchecked.to_u8()),
            wire,
            bytes,
            counted: OnceLock::new(),
        }
    }

    /// What DNSSEC validation found of this answer.
    pub fn dnssec(&self) -> Status {
        Status::from_u8(self.dnssec.load(Ordering::Relaxed))
    }

    pub fn set_dnssec(&self, s: Status) {
        self.dnssec.store(s.to_u8(), Ordering::Relaxed);
    }

    /// A name's resolution failure, cached under the key of the question
    /// for [`FAILURE_TTL`] (RFC 9520) so that a client asking a broken name
    /// again and again does not reach the upstreams each time. SERVFAIL,
    /// no records, never served stale.
    pub fn failure(why: Failure) -> Self {
        let mut e = Self::new(ResponseCode::ServFail, Vec::new(), Vec::new(), Vec::new(), false, Duration::ZERO);
        e.ttl = FAILURE_TTL;
        e.failure = Some(why);
        e
    }

    /// Notes that a refresh of this answer failed for the name at `now`:
    /// it stays in the cache (RFC 8767 serves it stale) and is not asked
    /// again for [`FAILURE_TTL`].
    pub fn refresh_failed(&self, now: Instant) {
        self.retry_at_age.store(self.age(now).saturating_add(FAILURE_TTL), Ordering::Relaxed);
    }

    /// A refresh failed less than [`FAILURE_TTL`] ago.
    pub fn refresh_failed_recently(&self, now: Instant) -> bool {
        self.age(now) < self.retry_at_age.load(Ordering::Relaxed)
    }

    /// What the entry takes in memory: the `Arc` allocation holding it,
    /// its three record vectors and each record's bytes, each with what
    /// malloc adds. The cache adds its key and [`SLOT_BYTES`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The records of each section, decoded from the wire form (for
    /// tests and tools; answers are written from the wire form).
    pub fn answers(&self) -> Vec<Record> {
        decode(&self.wire.0)
    }

    pub fn authorities(&self) -> Vec<Record> {
        decode(&self.wire.1)
    }

    pub fn additionals(&self) -> Vec<Record> {
        decode(&self.wire.2)
    }

    /// What pzdns keeps of an upstream reply to `name`/`qtype` (see
    /// [`contain`]): never an additional section, never a record for a
    /// name that was not asked.
    pub fn from_reply(
        name: &Name,
        qtype: RecordType,
        rcode: ResponseCode,
        answers: Vec<Record>,
        authorities: Vec<Record>,
        dnssec_ok: bool,
        stale_for: Duration,
    ) -> Self {
        let (answers, authorities) = contain(name, qtype, dnssec_ok, answers, authorities);
        let mut e = Self::new(rcode, answers, authorities, Vec::new(), dnssec_ok, stale_for);
        for r in e.wire.0.iter_mut().chain(e.wire.1.iter_mut()) {
            let owner_len = r.owner_len;
            take_case(&mut r.bytes[..owner_len], name);
        }
        e
    }

    /// This answer, kept as a DO=1 question is (as [`Entry::from_reply`]
    /// made it), as a DO=0 question would have kept it: the same records
    /// but the RRSIGs (unless `qtype` asked for them), the authority
    /// section only for a negative answer and then only its SOA. A
    /// validating resolver asks with DO=1 whatever the client set, and
    /// contains and encodes the reply once for both.
    pub fn without_dnssec(&self, qtype: RecordType) -> Entry {
        let rtype = |r: &WireRecord| r.tail().get(..2).map_or(0, |t| u16::from_be_bytes([t[0], t[1]]));
        let (rrsig, soa) = (u16::from(RecordType::RRSIG), u16::from(RecordType::SOA));
        let answers: Vec<WireRecord> = self.wire.0.iter().filter(|r| qtype == RecordType::RRSIG || rtype(r) != rrsig).cloned().collect();
        let negative = self.rcode == ResponseCode::NXDomain || answers.is_empty();
        let authorities: Vec<WireRecord> =
            if negative { self.wire.1.iter().filter(|r| rtype(r) == soa).take(1).cloned().collect() } else { Vec::new() };
        // As [`cache_ttl`]: the SOA's TTL was already lowered to its MINIMUM.
        let ttl = match self.rcode {
            ResponseCode::NXDomain => authorities.first().map_or(0, |r| r.ttl),
            ResponseCode::NoError if answers.is_empty() => authorities.first().map_or(0, |r| r.ttl),
            ResponseCode::NoError => answers.iter().map(|r| r.ttl).min().unwrap_or(0),
            _ => 0,
        }
        .min(MAX_CACHE_TTL);
        Self::from_wire(self.rcode, ttl, (answers, authorities, Vec::new()), self.stale_for)
    }

    /// A record's TTL as served `now`: decremented by the entry's age
    /// (never to 0 while fresh), [`STALE_TTL`] once stale, 0 stays 0.
    pub fn aged_ttl(&self, now: Instant, ttl: u32) -> u32 {
        let age = self.age(now);
        // A TTL-0 answer is served once, just fetched; it is never stale.
        let stale = self.ttl > 0 && age >= self.ttl;
        let t = ttl.min(MAX_CACHE_TTL);
        if stale {
            STALE_TTL
        } else if t == 0 {
            0
        } else {
            t.saturating_sub(age).max(1)
        }
    }

    pub fn age(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.stored).as_secs().min(u32::MAX as u64) as u32
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        self.age(now) < self.ttl
    }

    /// The records with their TTLs decremented by the entry's age, or set
    /// to [`STALE_TTL`] when served stale.
    pub fn aged(&self, now: Instant, section: &[Record]) -> Vec<Record> {
        section
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.ttl = self.aged_ttl(now, r.ttl);
                r
            })
            .collect()
    }
}

/// Gives the trailing labels of the wire name `owner` that equal, but for
/// ASCII case, those of `name` the case `name` has. An upstream asked
/// with 0x20 (randomised case) echoes that case in the owners it copies
/// from the question; stored as they came, clients would see it.
pub fn take_case(owner: &mut [u8], name: &Name) {
    // Where each label of `owner` starts (at most 127 in 255 bytes).
    let mut starts = [0u8; 128];
    let (mut n, mut at) = (0, 0);
    while let Some(&len) = owner.get(at) {
        if len == 0 || len & 0xc0 != 0 || n == starts.len() {
            break;
        }
        starts[n] = at as u8;
        n += 1;
        at += 1 + len as usize;
    }
    for (&start, label) in starts[..n].iter().rev().zip(name.iter().rev()) {
        let (len, from) = (owner[start as usize] as usize, start as usize + 1);
        match owner.get_mut(from..from + len) {
            Some(o) if len == label.len() && o.eq_ignore_ascii_case(label) => o.copy_from_slice(label),
            _ => break,
        }
    }
}

fn decode(section: &[WireRecord]) -> Vec<Record> {
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
    section.iter().filter_map(|r| Record::read(&mut BinDecoder::new(&r.bytes)).ok()).collect()
}

/// Longest chain of CNAMEs taken from one upstream reply.
const MAX_REPLY_CHAIN: usize = 16;

/// From an upstream reply, only what answers the question asked: the
/// CNAME chain that starts at `name` and the RRset of `qtype` at its end
/// (with DO=1, the RRSIGs of those RRsets), in chain order. When the chain
/// ends without that RRset (NXDOMAIN, NODATA), the SOA of a zone that
/// holds its last name (with DO=1, the NSEC/NSEC3 proofs under it and
/// their RRSIGs). Anything else an upstream sends (records of other names,
/// NS, glue, out-of-bailiwick data) is dropped: it answers nothing asked.
pub fn contain(
    name: &Name,
    qtype: RecordType,
    dnssec_ok: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
) -> (Vec<Record>, Vec<Record>) {
    let mut kept: Vec<Record> = Vec::new();
    let mut seen: Vec<Name> = Vec::new();
    let mut current = name.clone();
    let mut complete = false;
    // Which answers are at `current`: names compared once per link.
    let mut here: Vec<bool> = Vec::with_capacity(answers.len());
    for _ in 0..MAX_REPLY_CHAIN {
        here.clear();
        here.extend(answers.iter().map(|r| crate::dns::names::same_name(&r.name, &current)));
        let at = || answers.iter().zip(&here).filter(|(_, h)| **h).map(|(r, _)| r);
        let sigs_of = |covered: RecordType| -> Vec<Record> {
            let sig = |r: &&Record| r.record_type() == RecordType::RRSIG && rrsig_covers(r) == Some(covered);
            if dnssec_ok { at().filter(sig).cloned().collect() } else { Vec::new() }
        };
        let wanted = |r: &&Record| match qtype {
            RecordType::ANY => r.record_type() != RecordType::RRSIG,
            t => r.record_type() == t,
        };
        if at().any(|r| wanted(&r)) {
            let mut types: Vec<RecordType> = at().filter(wanted).map(|r| r.record_type()).collect();
            // One type per RRset, or its RRSIGs would be kept once per record.
            types.sort_unstable_by_key(|t| u16::from(*t));
            types.dedup();
            kept.extend(at().filter(wanted).cloned());
            for t in types {
                kept.extend(sigs_of(t));
            }
            complete = true;
            break;
        }
        let Some(cname) = at().find(|r| r.record_type() == RecordType::CNAME) else { break };
        let RData::CNAME(target) = &cname.data else { break };
        let target = target.0.clone();
        kept.push(cname.clone());
        kept.extend(sigs_of(RecordType::CNAME));
        seen.push(current.clone());
        if seen.contains(&target) {
            break;
        }
        current = target;
    }
    // RRSIGs of one RRset appear once even if several types matched.
    kept.dedup();
    let mut proof = Vec::new();
    if complete && dnssec_ok {
        // A wildcard expansion's proof that no closer name exists: the
        // NSEC/NSEC3 records (and their RRSIGs) of the zones that signed the answer.
        let signers: Vec<Name> = kept.iter().filter(|r| r.record_type() == RecordType::RRSIG).filter_map(rrsig_signer).collect();
        let denial = |r: &&Record| match r.record_type() {
            RecordType::NSEC | RecordType::NSEC3 => true,
            RecordType::RRSIG => matches!(rrsig_covers(r), Some(RecordType::NSEC | RecordType::NSEC3)),
            _ => false,
        };
        proof.extend(authorities.iter().filter(denial).filter(|r| signers.iter().any(|s| s.zone_of(&r.name))).cloned());
    }
    if !complete {
        let soa = authorities.iter().find(|r| r.record_type() == RecordType::SOA && r.name.zone_of(&current));
        if let Some(soa) = soa {
            let zone = soa.name.clone();
            proof.push(soa.clone());
            if dnssec_ok {
                let dnssec = [RecordType::NSEC, RecordType::NSEC3, RecordType::RRSIG];
                proof.extend(
                    authorities
                        .iter()
                        .filter(|r| dnssec.contains(&r.record_type()) && zone.zone_of(&r.name) && !std::ptr::eq(*r, soa))
                        .cloned(),
                );
            }
        }
    }
    (kept, proof)
}

/// The signer an RRSIG names.
fn rrsig_signer(r: &Record) -> Option<Name> {
    let tail = crate::dns::record::record_tail(r);
    let signer = crate::dnssec::wire::rrsig_signer(tail.get(crate::dns::RR_FIXED_LEN..)?)?;
    Some(crate::dns::names::key_to_name(&crate::dnssec::wire::lower(signer)))
}

/// The type an RRSIG covers (the first two bytes of its RDATA).
fn rrsig_covers(r: &Record) -> Option<RecordType> {
    let tail = crate::dns::record::record_tail(r);
    tail.get(10..12).map(|b| RecordType::from(u16::from_be_bytes([b[0], b[1]])))
}

/// RFC 2308: positive answers live for their smallest TTL; NXDOMAIN and
/// NODATA for min(SOA TTL, SOA MINIMUM) of the SOA in authority, and are
/// not cached at all without one. A failure is 0 here: it is cached as
/// such, apart ([`Entry::failure`]).
pub fn cache_ttl(rcode: ResponseCode, answers: &[Record], authorities: &[Record]) -> u32 {
    let negative_ttl = || {
        authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
            .unwrap_or(0)
    };
    let ttl = match rcode {
        ResponseCode::NXDomain => negative_ttl(),
        ResponseCode::NoError if answers.is_empty() => negative_ttl(),
        ResponseCode::NoError => answers.iter().map(|r| r.ttl).min().unwrap_or(0),
        _ => 0,
    };
    ttl.min(MAX_CACHE_TTL)
}

/// How much an entry counts against the byte budget: its real size
/// ([`real_size`]), or `floor` (max_bytes / max_entries) if that is more,
/// which is how `max_entries` is kept with the one budget quick_cache has.
///
/// The weight is fixed when the entry is stored (quick_cache weighs an
/// entry again when it removes it), so that the floor may change on a
/// configuration reload without the cache's accounting drifting.
#[derive(Debug, Clone)]
struct Weigher {
    floor: Arc<AtomicU64>,
}

impl quick_cache::Weighter<Key, Arc<Entry>> for Weigher {
    fn weight(&self, k: &Key, e: &Arc<Entry>) -> u64 {
        match e.counted.get() {
            Some(c) => c.2,
            None => real_size(k, e).max(self.floor.load(Ordering::Relaxed)),
        }
    }
}

/// What a stored entry takes: the entry, its key, its slot in quick_cache.
fn real_size(k: &Key, e: &Entry) -> u64 {
    (e.bytes() + heap_bytes(k.0.len()) + SLOT_BYTES) as u64
}

/// A bounded concurrent cache. quick_cache (sharded, CLOCK-PRO-style
/// eviction) keeps the weight of what it holds under `max_bytes`, each
/// entry weighed by what it really takes in memory; expiry is checked on
/// lookup, since an entry lives for its TTL plus the stale window.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<quick_cache::sync::Cache<Key, Arc<Entry>, Weigher>>,
    /// The least weight of an entry: max_bytes / max_entries.
    floor: Arc<AtomicU64>,
    /// The real size of the entries stored and still alive (evicted ones
    /// still being written into a response included).
    bytes: Arc<AtomicU64>,
    /// Moves on at every flush: what was derived from entries (the
    /// validator's chains of trust) is not used across one.
    generation: Arc<AtomicU64>,
}

impl Cache {
    /// A cache of at most `max_entries` entries and the default byte budget.
    pub fn new(max_entries: u64) -> Self {
        Self::with_budget(max_entries, crate::config::DEFAULT_CACHE_BYTES)
    }

    /// At most `max_entries` entries and `max_bytes` of them in memory.
    pub fn with_budget(max_entries: u64, max_bytes: u64) -> Self {
        let (entries, max_bytes) = (max_entries.max(1), max_bytes.max(1));
        let floor = Arc::new(AtomicU64::new((max_bytes / entries).max(1)));
        // quick_cache sizes its shards and its ghost list from this
        // estimate; answers are rarely under 512 bytes all told.
        let estimated = entries.min(max_bytes / 512).max(1);
        let weigher = Weigher { floor: floor.clone() };
        let inner = quick_cache::sync::Cache::with_weighter(usize::try_from(estimated).unwrap_or(usize::MAX), max_bytes, weigher);
        Cache { inner: Arc::new(inner), floor, bytes: Arc::default(), generation: Arc::default() }
    }

    /// New limits (a configuration reload): entries stored from now on
    /// are weighed by them; if the budget shrank, entries are evicted
    /// until the cache fits it.
    pub fn resize(&self, max_entries: u64, max_bytes: u64) {
        let (entries, max_bytes) = (max_entries.max(1), max_bytes.max(1));
        self.floor.store((max_bytes / entries).max(1), Ordering::Relaxed);
        if self.inner.capacity() != max_bytes {
            self.inner.set_capacity(max_bytes);
        }
    }

    /// Every entry held, with its key (for `GET /cache`): a copy of the
    /// handles, taken shard by shard.
    pub fn entries(&self) -> Vec<(Key, Arc<Entry>)> {
        self.inner.iter().collect()
    }

    /// How many flushes there have been.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Removes the entries whose name `matches` (given the name's key,
    /// see [`Key::name_key`]); returns how many.
    pub fn flush(&self, matches: impl Fn(&[u8]) -> bool) -> usize {
        self.generation.fetch_add(1, Ordering::Relaxed);
        let before = self.inner.len();
        self.inner.retain(|k, _| !matches(k.name_key()));
        before.saturating_sub(self.inner.len())
    }

    /// The entry for a key laid out by [`key_bytes`], unless at `now` it
    /// is past its TTL and stale window (then it is dropped).
    pub fn get(&self, k: &[u8], now: Instant) -> Option<Arc<Entry>> {
        let e = self.inner.get(k)?;
        if now.saturating_duration_since(e.stored) >= Duration::from_secs(e.ttl as u64) + e.stale_for {
            self.inner.remove(k);
            return None;
        }
        Some(e)
    }

    /// Stores `e` if it may be cached at all.
    pub fn insert(&self, k: Key, e: Arc<Entry>) {
        if e.ttl > 0 {
            let w = real_size(&k, &e);
            let weight = w.max(self.floor.load(Ordering::Relaxed));
            if e.counted.set((self.bytes.clone(), w, weight)).is_ok() {
                self.bytes.fetch_add(w, Ordering::Relaxed);
            }
            self.inner.insert(k, e);
        }
    }

    /// The real size in bytes of the entries held (`pzdns_cache_bytes`).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The weight held, as counted against `max_bytes` (at least `bytes`).
    pub fn weight(&self) -> u64 {
        self.inner.weight()
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, SOA};
    use std::str::FromStr;

    fn a(ttl: u32) -> Record {
        Record::from_rdata(Name::from_str("x.example.").unwrap(), ttl, RData::A(A::new(192, 0, 2, 1)))
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let n = Name::from_str("example.").unwrap();
        Record::from_rdata(n.clone(), ttl, RData::SOA(SOA::new(n.clone(), n, 1, 2, 3, 4, minimum)))
    }

    #[test]
    fn an_rrsets_signatures_are_kept_once_whatever_its_size() {
        use hickory_proto::rr::rdata::NULL;
        let owner = Name::from_str("x.example.").unwrap();
        let a2 = Record::from_rdata(owner.clone(), 300, RData::A(A::new(192, 0, 2, 2)));
        // Two RRSIGs covering A (type covered first in their RDATA; key tags 1 and 2), given raw.
        let sig = |tag: u8| {
            let mut rd = vec![0, 1, 13, 2, 0, 0, 1, 44, 0, 0, 0, 2, 0, 0, 0, 1, 0, tag, 7];
            rd.extend_from_slice(b"example\0sig");
            Record::from_rdata(owner.clone(), 300, RData::Unknown { code: RecordType::RRSIG, rdata: NULL::with(rd) })
        };
        let (answers, _) = contain(&owner, RecordType::A, true, vec![a(300), a2, sig(1), sig(2)], vec![]);
        let types: Vec<RecordType> = answers.iter().map(Record::record_type).collect();
        assert_eq!(types, vec![RecordType::A, RecordType::A, RecordType::RRSIG, RecordType::RRSIG]);
    }

    /// A validating resolver asks with DO=1 and keeps the reply once
    /// ([`Entry::without_dnssec`] for a DO=0 client): for every reply, that
    /// must be what keeping it for a DO=0 question gives.
    #[test]
    fn a_reply_kept_for_do_then_stripped_is_what_do_0_keeps() {
        use hickory_proto::rr::rdata::{CNAME, NS, NULL};
        let n = |s: &str| Name::from_str(s).unwrap();
        let sig = |owner: &str, covered: RecordType, ttl: u32| {
            let mut rd = u16::from(covered).to_be_bytes().to_vec();
            rd.extend_from_slice(&[13, 2, 0, 0, 1, 44, 0, 0, 0, 2, 0, 0, 0, 1, 0, 9, 7]);
            rd.extend_from_slice(b"example\0sig");
            Record::from_rdata(n(owner), ttl, RData::Unknown { code: RecordType::RRSIG, rdata: NULL::with(rd) })
        };
        let nsec = |owner: &str| {
            Record::from_rdata(n(owner), 60, RData::Unknown { code: RecordType::NSEC, rdata: NULL::with(vec![1, b'z', 0, 0, 1, 0x40]) })
        };
        let answers_pool = [
            Record::from_rdata(n("x.example."), 300, RData::A(A::new(192, 0, 2, 1))),
            Record::from_rdata(n("X.Example."), 200, RData::A(A::new(192, 0, 2, 2))),
            sig("x.example.", RecordType::A, 300),
            Record::from_rdata(n("x.example."), 100, RData::CNAME(CNAME(n("y.example.")))),
            sig("x.example.", RecordType::CNAME, 100),
            Record::from_rdata(n("y.example."), 0x8000_0000, RData::A(A::new(192, 0, 2, 3))),
            sig("y.example.", RecordType::A, 50),
            Record::from_rdata(n("y.example."), 40, RData::CNAME(CNAME(n("x.example.")))),
            nsec("x.example."),
            sig("x.example.", RecordType::NSEC, 60),
        ];
        let authorities_pool = [
            soa(3600, 30),
            sig("example.", RecordType::SOA, 3600),
            nsec("w.example."),
            sig("w.example.", RecordType::NSEC, 60),
            Record::from_rdata(n("example."), 500, RData::NS(NS(n("ns.example.")))),
            soa(10, 300),
        ];
        let qtypes = [RecordType::A, RecordType::CNAME, RecordType::RRSIG, RecordType::ANY, RecordType::NSEC, RecordType::AAAA];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut bits = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let wire = |e: &Entry| {
            let s = |v: &Vec<WireRecord>| v.iter().map(|r| (r.bytes.to_vec(), r.ttl)).collect::<Vec<_>>();
            (e.rcode, e.ttl, s(&e.wire.0), s(&e.wire.1), s(&e.wire.2))
        };
        for case in 0..4000 {
            let (pick_a, pick_u) = (bits(), bits());
            let answers: Vec<Record> =
                answers_pool.iter().enumerate().filter(|(i, _)| pick_a >> i & 1 == 1).map(|(_, r)| r.clone()).collect();
            let authorities: Vec<Record> =
                authorities_pool.iter().enumerate().filter(|(i, _)| pick_u >> i & 1 == 1).map(|(_, r)| r.clone()).collect();
            let qtype = qtypes[bits() as usize % qtypes.len()];
            let rcode = if bits() % 3 == 0 { ResponseCode::NXDomain } else { ResponseCode::NoError };
            let q = if bits() % 2 == 0 { n("x.example.") } else { n("x.EXAMPLE.") };
            let kept = Entry::from_reply(&q, qtype, rcode, answers.clone(), authorities.clone(), true, Duration::ZERO);
            let plain = Entry::from_reply(&q, qtype, rcode, answers.clone(), authorities.clone(), false, Duration::ZERO);
            assert_eq!(wire(&kept.without_dnssec(qtype)), wire(&plain), "case {case}: {qtype} {rcode} {answers:?} {authorities:?}");
        }
    }

    #[test]
    fn ttls_per_rfc_2308() {
        assert_eq!(cache_ttl(ResponseCode::NoError, &[a(300), a(60)], &[]), 60);
        assert_eq!(cache_ttl(ResponseCode::NXDomain, &[], &[soa(3600, 30)]), 30);
        assert_eq!(cache_ttl(ResponseCode::NoError, &[], &[soa(20, 300)]), 20);
        assert_eq!(cache_ttl(ResponseCode::NXDomain, &[], &[]), 0, "no SOA, no negative caching");
        assert_eq!(cache_ttl(ResponseCode::ServFail, &[a(60)], &[]), 0);
        assert_eq!(cache_ttl(ResponseCode::NoError, &[a(10_000_000)], &[]), MAX_CACHE_TTL);
    }

    #[test]
    fn a_failure_is_cached_for_its_ttl_then_gone_never_stale() {
        let c = Cache::with_budget(100, 1 << 20);
        let (k, _) = txt_answer(1, 1);
        let mut e = Entry::failure(Failure::Referral);
        assert_eq!((e.rcode, e.ttl, e.failure), (ResponseCode::ServFail, FAILURE_TTL, Some(Failure::Referral)));
        assert!(e.wire.0.is_empty() && e.wire.1.is_empty() && e.wire.2.is_empty());
        let now = Instant::now();
        e.stored = now;
        c.insert(k.clone(), Arc::new(e));
        let got = c.get(&k.0, now + Duration::from_secs(u64::from(FAILURE_TTL) - 1)).expect("cached");
        assert!(got.is_fresh(now + Duration::from_secs(u64::from(FAILURE_TTL) - 1)));
        assert!(!got.is_fresh(now + Duration::from_secs(u64::from(FAILURE_TTL))));
        drop(got);
        // Past its TTL it is dropped, whatever the stale window: a failure is never served stale.
        assert!(c.get(&k.0, now + Duration::from_secs(u64::from(FAILURE_TTL))).is_none());
        assert_eq!(c.entry_count(), 0);
    }

    #[test]
    fn a_failed_refresh_is_noted_on_the_stale_answer() {
        let mut e = Entry::new(ResponseCode::NoError, vec![a(60)], vec![], vec![], false, Duration::from_secs(3600));
        let now = Instant::now();
        e.stored = now - Duration::from_secs(100);
        assert!(!e.is_fresh(now) && !e.refresh_failed_recently(now));
        e.refresh_failed(now);
        assert!(e.refresh_failed_recently(now + Duration::from_secs(u64::from(FAILURE_TTL) - 1)));
        assert!(!e.refresh_failed_recently(now + Duration::from_secs(u64::from(FAILURE_TTL))));
        assert_eq!(e.answers()[0].ttl, 60, "the answer itself is kept");
    }

    #[test]
    fn owners_take_the_case_of_the_name_asked() {
        let asked = Name::from_ascii("WwW.Example.COM.").unwrap();
        let wire = |s: &str| {
            let mut v: Vec<u8> = s.split_terminator('.').flat_map(|l| std::iter::once(l.len() as u8).chain(l.bytes())).collect();
            v.push(0);
            take_case(&mut v, &asked);
            let labels: Vec<String> = v.split(|b| *b < 64).filter(|l| !l.is_empty()).map(|l| String::from_utf8_lossy(l).into()).collect();
            labels.iter().map(|l| format!("{l}.")).collect::<String>()
        };
        assert_eq!(wire("wWw.eXAMple.cOm."), "WwW.Example.COM.");
        assert_eq!(wire("EXAMPLE.com."), "Example.COM.", "a suffix (the SOA's owner)");
        assert_eq!(wire("CDN.exAMPLE.com."), "CDN.Example.COM.", "labels not in the name keep theirs");
        assert_eq!(wire("www.Other.COM."), "www.Other.COM.", "from the first label that differs, nothing");
        assert_eq!(wire(""), "");
    }

    #[test]
    fn a_reply_in_random_case_is_stored_in_the_case_asked() {
        let asked = Name::from_ascii("www.Example.com.").unwrap();
        let echoed = Name::from_ascii("wWW.eXaMPLE.CoM.").unwrap();
        let soa = |owner: &Name| Record::from_rdata(owner.clone(), 60, RData::SOA(SOA::new(owner.clone(), owner.clone(), 1, 2, 3, 4, 60)));
        let zone = echoed.base_name();
        let e = Entry::from_reply(&asked, RecordType::AAAA, ResponseCode::NoError, vec![], vec![soa(&zone)], false, Duration::ZERO);
        assert!(e.authorities()[0].name.eq_case(&Name::from_ascii("Example.com.").unwrap()), "{}", e.authorities()[0].name);
        let a = Record::from_rdata(echoed.clone(), 60, RData::A(A::new(192, 0, 2, 1)));
        let e = Entry::from_reply(&asked, RecordType::A, ResponseCode::NoError, vec![a], vec![], false, Duration::ZERO);
        assert!(e.answers()[0].name.eq_case(&asked), "{}", e.answers()[0].name);
    }

    #[test]
    fn ttl_with_top_bit_set_is_zero() {
        let e = Entry::new(ResponseCode::NoError, vec![a(0x8000_0001)], vec![], vec![], false, Duration::ZERO);
        assert_eq!(e.answers()[0].ttl, 0);
        assert_eq!(e.ttl, 0, "not cached");
        assert_eq!(e.aged(e.stored, &e.answers())[0].ttl, 0);
    }

    #[test]
    fn aged_ttls_decrement_then_go_stale() {
        let mut e = Entry::new(ResponseCode::NoError, vec![a(60)], vec![], vec![], false, Duration::from_secs(3600));
        let now = e.stored;
        assert_eq!(e.aged(now + Duration::from_secs(15), &e.answers())[0].ttl, 45);
        assert!(e.is_fresh(now + Duration::from_secs(59)));
        e.stored = now - Duration::from_secs(61);
        assert!(!e.is_fresh(now));
        assert_eq!(e.aged(now, &e.answers())[0].ttl, STALE_TTL);
    }

    fn txt_answer(i: usize, records: usize) -> (Key, Arc<Entry>) {
        use hickory_proto::rr::rdata::TXT;
        let owner = Name::from_str(&format!("u{i}.big.example.")).unwrap();
        let recs = (0..records)
            .map(|j| Record::from_rdata(owner.clone(), 300, RData::TXT(TXT::new(vec![format!("{j:03}{}", "x".repeat(240))]))))
            .collect();
        let mut kb = [0u8; MAX_KEY_LEN];
        let key = Key::from(key_bytes(&mut kb, crate::dns::names::KeyBuf::new(&owner).key(), RecordType::TXT, false, 0));
        (key, Arc::new(Entry::new(ResponseCode::NoError, recs, vec![], vec![], false, Duration::from_secs(60))))
    }

    #[test]
    fn an_entry_weighs_at_least_its_wire_bytes() {
        let (k, e) = txt_answer(1, 40);
        let wire: usize = e.wire.0.iter().map(|r| r.bytes.len()).sum();
        let size = real_size(&k, &e) as usize;
        assert!(size > wire && size < wire + 40 * 64 + 1024, "{size} bytes for {wire} wire bytes");
    }

    #[test]
    fn the_byte_budget_holds_and_the_count_is_exact() {
        let budget = 4 << 20;
        let c = Cache::with_budget(100_000, budget);
        for i in 0..2_000 {
            let (k, e) = txt_answer(i, 40);
            c.insert(k, e);
        }
        assert!(c.weight() <= budget, "weight {} over {budget}", c.weight());
        assert!(c.bytes() <= budget && c.bytes() > budget / 2, "bytes {}", c.bytes());
        assert!(c.entry_count() < 2_000 && c.entry_count() > 100, "{} entries", c.entry_count());
        drop(c);
        // The count is given back as entries go (nothing else holds them).
    }

    #[test]
    fn max_entries_still_bounds_small_entries() {
        let c = Cache::with_budget(100, 256 << 20);
        for i in 0..1_000 {
            let (k, e) = txt_answer(i, 1);
            c.insert(k, e);
        }
        assert!(c.entry_count() <= 100, "{} entries", c.entry_count());
        let held = c.entry_count();
        // Real bytes: far under the floor-weighted total.
        assert!(c.bytes() < c.weight(), "{} real, {} weighed", c.bytes(), c.weight());
        assert!(c.bytes() >= held * 300, "{} bytes for {held} entries", c.bytes());
    }

    #[test]
    fn bytes_are_given_back_when_entries_go() {
        let c = Cache::with_budget(100_000, 64 << 20);
        let (k, e) = txt_answer(7, 10);
        let weak = Arc::downgrade(&e);
        c.insert(k.clone(), e.clone());
        c.insert(k.clone(), e);
        let one = c.bytes();
        assert!(one > 0);
        let (_, e2) = txt_answer(7, 3);
        c.insert(k, e2);
        assert!(weak.upgrade().is_none(), "the replaced entry is gone");
        assert!(c.bytes() < one, "replaced: {} then {}", one, c.bytes());
    }

    /// quick_cache's own accounting of its slots and table, per entry,
    /// is within what [`SLOT_BYTES`] says (the key and entry are counted
    /// apart).
    #[test]
    fn slot_overhead_covers_quick_cache() {
        let c = Cache::with_budget(20_000, 1 << 30);
        for i in 0..20_000 {
            let (k, e) = txt_answer(i, 1);
            c.insert(k, e);
        }
        let used = c.inner.memory_used();
        let per = (used.entries + used.map) / c.entry_count() as usize;
        assert!(per <= SLOT_BYTES, "quick_cache takes {per} bytes per entry");
    }
}
