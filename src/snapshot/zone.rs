//! One zone as the query path reads it: nodes keyed by lowercased wire-form
//! name, with an explicit node for every empty non-terminal so that "does
//! this name exist" (NXDOMAIN vs NODATA) and the closest encloser of a
//! wildcard (RFC 4592) are O(labels) hash lookups, never a scan of the zone.
//!
//! Records are held once, in wire form, in one byte arena per zone: the
//! answer writer copies them as they are, and the cold paths (`explain`,
//! checks, tests) decode the few they need into hickory `Record`s. The hash
//! index holds only offsets into the arena.

use std::hash::BuildHasher;
use std::path::PathBuf;

use hashbrown::HashTable;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use rustc_hash::FxBuildHasher;

use crate::config::zones_dir::ZoneOrigin;
use crate::dns::names::{KeyBuf, MAX_NAME_WIRE_LEN, NameKey};
use crate::dns::record::tails;

/// No vSwitch zone attached to a record.
pub const NO_AZ: u32 = u32::MAX;

/// Bytes before an RRset's records: TYPE (u16), what follows the records
/// (u8: [`HAS_AZS`], [`HAS_ROUTES`]), the record count (u32) and the
/// records' length (u32).
const SET_HEADER: usize = 11;
/// The records' vSwitch zones follow them (u32 each).
const HAS_AZS: u8 = 1;
/// The records' routing follows (and the zones, if any): [`ROUTE_LEN`] each.
const HAS_ROUTES: u8 = 2;
/// weight (u32), health target (u32), failover role (u8), answers (u8),
/// weighted (u8), one byte unused.
const ROUTE_LEN: usize = 12;

/// How one record of a routed set is answered (SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Route {
    /// Whether it has a `weight:` (else `weight` is 0 and means nothing).
    pub weighted: bool,
    pub weight: u32,
    /// Records per answer of a weighted set.
    pub answers: u8,
    /// 0: none, [`ROLE_PRIMARY`], [`ROLE_SECONDARY`].
    pub role: u8,
    /// The health target's id, or [`super::health::NO_HEALTH`].
    pub health: u32,
}

pub const ROLE_PRIMARY: u8 = 1;
/// Records of a routed set, at most (larger sets are refused at load).
pub const MAX_ROUTED: usize = 256;
pub const ROLE_SECONDARY: u8 = 2;

impl Route {
    pub const NONE: Route = Route { weighted: false, weight: 0, answers: 0, role: 0, health: super::health::NO_HEALTH };
}

/// The records of one name and type, as stored: a header, the records in
/// wire form without owner (TYPE, CLASS, TTL, RDLENGTH, RDATA, concatenated:
/// what the answer writer copies into a response) and, for endpoint
/// records, the vSwitch zone (index into `Snapshot::azs`) of each.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RRset<'z> {
    raw: &'z [u8],
}

impl std::fmt::Debug for RRset<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RRset({} × {})", self.rtype(), self.count())
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'z> RRset<'z> {
    pub fn rtype(&self) -> RecordType {
        RecordType::from(u16::from_le_bytes([self.raw[0], self.raw[1]]))
    }

    /// Records held.
    pub fn count(&self) -> usize {
        u32_at(self.raw, 3) as usize
    }

    /// The records in wire form without owner, concatenated.
    pub fn wire(&self) -> &'z [u8] {
        &self.raw[SET_HEADER..SET_HEADER + u32_at(self.raw, 7) as usize]
    }

    /// The vSwitch zone of record `i`; `NO_AZ` for records without one.
    pub fn az(&self, i: usize) -> u32 {
        if self.raw[2] & HAS_AZS == 0 || i >= self.count() {
            return NO_AZ;
        }
        u32_at(self.raw, SET_HEADER + u32_at(self.raw, 7) as usize + 4 * i)
    }

    /// Whether some record lives in vSwitch zone `az`.
    pub fn has_az(&self, az: u32) -> bool {
        self.raw[2] & HAS_AZS != 0 && (0..self.count()).any(|i| self.az(i) == az)
    }

    /// Whether the set is weighted, fails over or is health-checked.
    #[inline]
    pub fn routed(&self) -> bool {
        self.raw[2] & HAS_ROUTES != 0
    }

    /// How record `i` is answered ([`Route::NONE`] for a set not routed).
    pub fn route(&self, i: usize) -> Route {
        if !self.routed() || i >= self.count() {
            return Route::NONE;
        }
        let n = self.count();
        let azs = if self.raw[2] & HAS_AZS != 0 { 4 * n } else { 0 };
        let at = SET_HEADER + u32_at(self.raw, 7) as usize + azs + ROUTE_LEN * i;
        let b = &self.raw[at..at + ROUTE_LEN];
        Route { weight: u32_at(b, 0), health: u32_at(b, 4), role: b[8], answers: b[9], weighted: b[10] != 0 }
    }

    /// The target of a CNAME RRset, as written (uncompressed wire form).
    pub fn cname_target(&self) -> Option<&'z [u8]> {
        if self.rtype() != RecordType::CNAME {
            return None;
        }
        let t = tails(self.wire()).next()?;
        t.get(crate::dns::RR_FIXED_LEN..)
    }

    /// The records, decoded with `owner` as their name: for the cold
    /// paths (`explain`, checks, tests), never for answers.
    pub fn records(&self, owner: &Name) -> Vec<Record> {
        let Ok(mut head) = owner.to_bytes() else { return Vec::new() };
        let n = head.len();
        tails(self.wire())
            .filter_map(|t| {
                head.truncate(n);
                head.extend_from_slice(t);
                Record::from_bytes(&head).ok()
            })
            .collect()
    }
}

/// Appends one RRset in the stored layout: `records` must share one type.
fn encode_rrset<'a>(
    out: &mut Vec<u8>,
    rtype: RecordType,
    records: impl IntoIterator<Item = &'a Record>,
    azs: Option<&[u32]>,
    routes: Option<&[Route]>,
) {
    let start = out.len();
    out.extend_from_slice(&u16::from(rtype).to_le_bytes());
    out.push(if azs.is_some() { HAS_AZS } else { 0 } | if routes.is_some() { HAS_ROUTES } else { 0 });
    out.extend_from_slice(&[0; 8]);
    // A record that cannot be encoded (checked at load) is left out, and
    // so are its vSwitch zone and route.
    let mut kept = Vec::new();
    let mut count = 0u32;
    for (i, r) in records.into_iter().enumerate() {
        if crate::dns::record::append_tail(r, out) {
            count += 1;
            kept.push(i);
        }
    }
    let wlen = (out.len() - start - SET_HEADER) as u32;
    out[start + 3..start + 7].copy_from_slice(&count.to_le_bytes());
    out[start + 7..start + 11].copy_from_slice(&wlen.to_le_bytes());
    if let Some(azs) = azs {
        for &i in &kept {
            out.extend_from_slice(&azs.get(i).copied().unwrap_or(NO_AZ).to_le_bytes());
        }
    }
    if let Some(routes) = routes {
        for &i in &kept {
            let r = routes.get(i).copied().unwrap_or(Route::NONE);
            out.extend_from_slice(&r.weight.to_le_bytes());
            out.extend_from_slice(&r.health.to_le_bytes());
            out.extend_from_slice(&[r.role, r.answers, u8::from(r.weighted), 0]);
        }
    }
}

/// Length of the RRset stored at the start of `b`.
fn rrset_len(b: &[u8]) -> usize {
    let n = u32_at(b, 3) as usize;
    let azs = if b[2] & HAS_AZS != 0 { 4 * n } else { 0 };
    let routes = if b[2] & HAS_ROUTES != 0 { ROUTE_LEN * n } else { 0 };
    SET_HEADER + u32_at(b, 7) as usize + azs + routes
}

/// RRsets that policies and other non-zone data own (one allocation each).
#[derive(Clone, PartialEq, Eq)]
pub struct RRsetBuf(Box<[u8]>);

impl std::fmt::Debug for RRsetBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.view().fmt(f)
    }
}

impl RRsetBuf {
    /// `records` must share the type `rtype`.
    pub fn new(rtype: RecordType, records: &[Record]) -> Self {
        let mut out = Vec::new();
        encode_rrset(&mut out, rtype, records, None, None);
        RRsetBuf(out.into_boxed_slice())
    }

    pub fn view(&self) -> RRset<'_> {
        RRset { raw: &self.0 }
    }
}

/// A name in a zone. No RRsets: an empty non-terminal.
#[derive(Debug, Clone, Copy)]
pub struct Node<'z> {
    /// The RRsets, stored one after the other.
    sets: &'z [u8],
}

impl<'z> Node<'z> {
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The RRsets, in the order they were first written.
    pub fn rrsets(self) -> impl Iterator<Item = RRset<'z>> + use<'z> {
        let mut rest = self.sets;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let (set, tail) = rest.split_at(rrset_len(rest));
            rest = tail;
            Some(RRset { raw: set })
        })
    }

    pub fn get(self, rtype: RecordType) -> Option<RRset<'z>> {
        self.rrsets().find(|s| s.rtype() == rtype)
    }
}

fn hash_key(key: &[u8]) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// The key of the node stored at `at`.
fn key_at(data: &[u8], at: u32) -> &[u8] {
    let at = at as usize;
    &data[at + 1..at + 1 + data[at] as usize]
}

/// The key and RRsets of the node stored at `at`: key length (u8), key,
/// RRsets' length (u32), RRsets.
fn node_at(data: &[u8], at: u32) -> (&[u8], Node<'_>) {
    let at = at as usize;
    let klen = data[at] as usize;
    let key = &data[at + 1..at + 1 + klen];
    let slen = u32_at(data, at + 1 + klen) as usize;
    let s = at + 5 + klen;
    (key, Node { sets: &data[s..s + slen] })
}

/// A zone's names: one arena of nodes, and a hash index of their offsets.
#[derive(Default)]
pub struct Nodes {
    data: Box<[u8]>,
    index: HashTable<u32>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nodes({} names, {} bytes)", self.index.len(), self.data.len())
    }
}

impl Clone for Nodes {
    fn clone(&self) -> Self {
        let data = self.data.clone();
        let mut index = HashTable::with_capacity(self.index.len());
        for &at in &self.index {
            index.insert_unique(hash_key(key_at(&data, at)), at, |&o| hash_key(key_at(&data, o)));
        }
        Nodes { data, index }
    }
}

impl Nodes {
    pub fn get(&self, key: &[u8]) -> Option<Node<'_>> {
        self.get_key_value(key).map(|(_, n)| n)
    }

    /// The node and its key as stored (which lives as long as the zone).
    pub fn get_key_value(&self, key: &[u8]) -> Option<(&[u8], Node<'_>)> {
        let at = self.index.find(hash_key(key), |&o| key_at(&self.data, o) == key)?;
        Some(node_at(&self.data, *at))
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Names held, empty non-terminals included.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The node stored at arena offset `at` (0 is the first), with the
    /// offset of the one after it: a walk of every node in storage order
    /// that holds no borrow between steps (a zone transfer's).
    pub fn node_from(&self, at: usize) -> Option<(&[u8], Node<'_>, usize)> {
        if at >= self.data.len() {
            return None;
        }
        let (key, node) = node_at(&self.data, at as u32);
        Some((key, node, at + 5 + key.len() + node.sets.len()))
    }

    /// Every name and its node, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Node<'_>)> {
        self.index.iter().map(|&at| node_at(&self.data, at))
    }
}

/// Writes a zone's nodes, each once: a node's RRsets are given together.
pub struct NodesBuilder {
    data: Vec<u8>,
    index: HashTable<u32>,
}

/// A zone's data would not fit the 4 GiB a zone's arena can address.
#[derive(Debug, Clone, Copy)]
pub struct ZoneTooLarge;

impl NodesBuilder {
    pub fn with_capacity(names: usize, bytes: usize) -> Self {
        NodesBuilder { data: Vec::with_capacity(bytes), index: HashTable::with_capacity(names) }
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        let data = &self.data;
        self.index.find(hash_key(key), |&o| key_at(data, o) == key).is_some()
    }

    /// Adds the node `key` (not yet added) with its RRsets: (type,
    /// records, vSwitch zones of the records when they have them, routes
    /// of the records when the set is routed).
    pub fn push<'a, 'b, R: IntoIterator<Item = &'a Record>>(
        &mut self,
        key: &[u8],
        sets: impl IntoIterator<Item = (RecordType, R, Option<&'a [u32]>, Option<&'b [Route]>)>,
    ) -> Result<(), ZoneTooLarge> {
        let at = u32::try_from(self.data.len()).map_err(|_| ZoneTooLarge)?;
        debug_assert!(key.len() <= MAX_NAME_WIRE_LEN);
        self.data.push(key.len() as u8);
        self.data.extend_from_slice(key);
        let len_at = self.data.len();
        self.data.extend_from_slice(&[0; 4]);
        for (rtype, records, azs, routes) in sets {
            encode_rrset(&mut self.data, rtype, records, azs, routes);
        }
        let slen = self.data.len() - len_at - 4;
        if self.data.len() > u32::MAX as usize {
            return Err(ZoneTooLarge);
        }
        self.data[len_at..len_at + 4].copy_from_slice(&(slen as u32).to_le_bytes());
        let data = &self.data;
        self.index.insert_unique(hash_key(key), at, |&o| hash_key(key_at(data, o)));
        Ok(())
    }

    /// Adds the node `key` (not yet added) without RRsets: an empty
    /// non-terminal.
    pub fn push_empty(&mut self, key: &[u8]) -> Result<(), ZoneTooLarge> {
        self.push(key, std::iter::empty::<(RecordType, &[Record], Option<&[u32]>, Option<&[Route]>)>())
    }

    pub fn finish(self) -> Nodes {
        let mut index = self.index;
        let data = self.data.into_boxed_slice();
        index.shrink_to_fit(|&o| hash_key(key_at(&data, o)));
        Nodes { data, index }
    }
}

#[derive(Debug, Clone)]
pub struct Zone {
    pub origin: Name,
    pub key: NameKey,
    pub labels: usize,
    pub kind: ZoneOrigin,
    pub path: PathBuf,
    pub recursive_proxy: bool,
    /// The apex SOA (from the data, or synthesised), for negative answers:
    /// its TTL is already min(SOA TTL, MINIMUM) per RFC 2308 §5.
    pub negative_soa: Record,
    /// `negative_soa` in wire form without owner (see [`RRset::wire`]).
    pub negative_soa_wire: Box<[u8]>,
    pub nodes: Nodes,
    pub has_wildcards: bool,
    /// Records held (not counting empty non-terminals).
    pub record_count: usize,
    /// The serial of the apex SOA (the data's, or the synthesised one's).
    pub serial: u32,
    /// Index of the VPCs this zone is bound to (sorted).
    pub vpcs: Vec<u32>,
    /// The `vpcs:` entries as written, and where the zone file's `zone:`
    /// key is: what the duplicate-zone check reports when the zone is
    /// reused by a later load rather than built again.
    pub bound: Vec<crate::config::Located<String>>,
    pub pos: crate::config::Pos,
    /// Its CNAME owners (with where each is written), whose chains every
    /// load checks again, whether the zone was rebuilt or reused.
    pub cname_sites: Vec<(Name, PathBuf, crate::config::Pos)>,
    /// The health targets its records refer to ([`super::health::HealthTable`]).
    pub health_ids: Box<[u32]>,
    /// Some RRset of it is weighted, fails over or is health-checked.
    pub routed: bool,
    /// The differences from the zone's last versions to this one, oldest
    /// first, for IXFR (RFC 1995): at most [`HISTORY_VERSIONS`] of them and
    /// [`HISTORY_BYTES`] in all.
    pub history: Vec<std::sync::Arc<Diff>>,
}

/// Versions of a zone whose differences are kept for IXFR.
pub const HISTORY_VERSIONS: usize = 16;
/// Bytes of differences kept per zone; a change larger than this is
/// transferred whole (AXFR).
pub const HISTORY_BYTES: usize = 4 << 20;

/// A record in transfer form: owner key, then the record without owner.
pub type WireRecord = (Box<[u8]>, Box<[u8]>);

/// How one version of a zone became the next (apex SOA apart).
#[derive(Debug)]
pub struct Diff {
    pub from: u32,
    pub to: u32,
    /// The SOA records (without owner) of both versions.
    pub old_soa: Box<[u8]>,
    pub new_soa: Box<[u8]>,
    pub deleted: Vec<WireRecord>,
    pub added: Vec<WireRecord>,
    pub bytes: usize,
}

impl Zone {
    /// Every record but the apex SOA, in storage order.
    pub fn records_but_soa(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let apex = &self.key[..];
        let mut at = 0;
        std::iter::from_fn(move || {
            let (key, node, next) = self.nodes.node_from(at)?;
            at = next;
            Some((key, node))
        })
        .flat_map(move |(key, node)| {
            node.rrsets()
                .filter(move |s| !(key == apex && s.rtype() == RecordType::SOA))
                .flat_map(move |s| tails(s.wire()).map(move |t| (key, t)))
        })
    }

    /// This zone's history for IXFR: `prev`'s, and how `prev` became this,
    /// trimmed to the bounds; none when the serial did not move or the
    /// change is larger than the bound.
    pub fn history_after(&self, prev: &Zone) -> Vec<std::sync::Arc<Diff>> {
        if prev.serial == self.serial {
            return prev.history.clone();
        }
        let (Some(old_soa), Some(new_soa)) = (prev.soa_wire(), self.soa_wire()) else { return Vec::new() };
        let mut old: rustc_hash::FxHashSet<(&[u8], &[u8])> = prev.records_but_soa().collect();
        let mut added = Vec::new();
        let mut bytes = old_soa.len() + new_soa.len();
        for r in self.records_but_soa() {
            if !old.remove(&r) {
                bytes += r.0.len() + r.1.len();
                if bytes > HISTORY_BYTES {
                    return Vec::new();
                }
                added.push((r.0.into(), r.1.into()));
            }
        }
        let mut deleted = Vec::with_capacity(old.len());
        for r in old {
            bytes += r.0.len() + r.1.len();
            if bytes > HISTORY_BYTES {
                return Vec::new();
            }
            deleted.push((r.0.into(), r.1.into()));
        }
        // Deterministic order (the set's is not).
        deleted.sort_unstable();
        let diff = Diff { from: prev.serial, to: self.serial, old_soa: old_soa.into(), new_soa: new_soa.into(), deleted, added, bytes };
        let mut history = prev.history.clone();
        history.push(std::sync::Arc::new(diff));
        let mut total: usize = history.iter().map(|d| d.bytes).sum();
        while history.len() > HISTORY_VERSIONS || total > HISTORY_BYTES {
            total -= history.remove(0).bytes;
        }
        history
    }
}

/// What a zone holds for a name and type.
#[derive(Debug, Clone, Copy)]
pub enum NodeMatch<'z> {
    /// RRset of the asked type (or, for ANY, the one RRset RFC 8482 answers).
    Found(RRset<'z>),
    /// The name has a CNAME and the type asked is not CNAME: follow it.
    Cname(RRset<'z>),
    /// The name exists without that type.
    NoData,
    /// The name does not exist.
    NxDomain,
}

/// A zone lookup: the match, and whether a wildcard produced it (then the
/// owner of the records must be rewritten to the query name).
#[derive(Debug, Clone, Copy)]
pub struct Hit<'z> {
    pub matched: NodeMatch<'z>,
    pub wildcard: Option<&'z [u8]>,
}

impl Zone {
    /// Looks `q` (a name at or below this zone's apex) up for `qtype`:
    /// the name's own node, else a wildcard, else NXDOMAIN.
    pub fn lookup<'z>(&'z self, q: &KeyBuf, qtype: RecordType) -> Hit<'z> {
        if let Some(node) = self.nodes.get(q.key()) {
            return Hit { matched: match_node(node, qtype, q.labels() == self.labels), wildcard: None };
        }
        self.match_wildcard(q, qtype).unwrap_or(Hit { matched: NodeMatch::NxDomain, wildcard: None })
    }

    /// Rule 3, wildcard (RFC 4592): `*.` under the closest encloser (the
    /// longest existing ancestor; the apex always exists) covers a name
    /// that does not exist.
    fn match_wildcard<'z>(&'z self, q: &KeyBuf, qtype: RecordType) -> Option<Hit<'z>> {
        if !self.has_wildcards {
            return None;
        }
        let below = q.labels().saturating_sub(self.labels);
        let skip = (1..=below).find(|&skip| self.nodes.contains_key(q.suffix(skip)))?;
        let mut buf = [0u8; MAX_NAME_WIRE_LEN];
        let wkey = q.wildcard_of(skip, &mut buf)?;
        let (k, node) = self.nodes.get_key_value(wkey)?;
        Some(Hit { matched: match_node(node, qtype, false), wildcard: Some(k) })
    }

    /// Whether this zone holds generated PrivateLink endpoint names.
    pub fn is_endpoint_names(&self) -> bool {
        matches!(self.kind, ZoneOrigin::Endpoint(_))
    }

    /// Whether a secondary may hold a copy of this zone and answer from it
    /// exactly as pzdns does (docs/REFERENCE.md#transfers): not a
    /// `recursive_proxy` zone (pzdns forwards the names it lacks, a copy
    /// would deny them), nor one with a CNAME at its apex (which no
    /// secondary loads beside the apex's SOA and NS).
    pub fn transferable(&self) -> bool {
        // A copy of a routed set would answer every record of it, every time.
        !self.recursive_proxy && !self.routed && self.nodes.get(&self.key).is_none_or(|n| n.get(RecordType::CNAME).is_none())
    }

    /// The apex SOA record, in wire form without owner.
    pub fn soa_wire(&self) -> Option<&[u8]> {
        let set = self.nodes.get(&self.key)?.get(RecordType::SOA)?;
        tails(set.wire()).next()
    }
}

/// Rule 3 at one node (records, CNAME, NODATA). At an apex that holds a CNAME, SOA and NS
/// are answered from the (synthesised) apex records and everything else
/// with the CNAME.
fn match_node(node: Node<'_>, qtype: RecordType, is_apex: bool) -> NodeMatch<'_> {
    if node.is_empty() {
        return NodeMatch::NoData;
    }
    if let Some(c) = node.get(RecordType::CNAME) {
        if qtype == RecordType::CNAME || qtype == RecordType::ANY {
            return NodeMatch::Found(c);
        }
        if !apex_cname_yields(is_apex, qtype) {
            return NodeMatch::Cname(c);
        }
    }
    if qtype == RecordType::ANY {
        // RFC 8482 §4.1: answer with one RRset rather than all of them;
        // prefer data over the apex's SOA/NS.
        let pick = node.rrsets().find(|s| !matches!(s.rtype(), RecordType::SOA | RecordType::NS)).or_else(|| node.rrsets().next());
        return pick.map_or(NodeMatch::NoData, NodeMatch::Found);
    }
    node.get(qtype).map_or(NodeMatch::NoData, NodeMatch::Found)
}

/// Rule 3, the apex CNAME (the seed case: `ecs.<region>.aliyuncs.com`
/// → `popunify-vpc…`): a CNAME at a zone's apex answers every query but
/// SOA and NS, which the apex's own (synthesised) records answer.
fn apex_cname_yields(is_apex: bool, qtype: RecordType) -> bool {
    is_apex && matches!(qtype, RecordType::SOA | RecordType::NS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::{A, CNAME};
    use std::str::FromStr;

    fn a(owner: &str, ip: [u8; 4]) -> Record {
        Record::from_rdata(Name::from_str(owner).unwrap(), 60, RData::A(A::from(std::net::Ipv4Addr::from(ip))))
    }

    #[test]
    fn nodes_round_trip_records_and_zones() {
        let owner = Name::from_str("www.example.").unwrap();
        let recs = [a("www.example.", [10, 0, 0, 1]), a("www.example.", [10, 0, 0, 2])];
        let target = Name::from_ascii("Api.Example.").unwrap();
        let cname = [Record::from_rdata(Name::from_str("c.example.").unwrap(), 30, RData::CNAME(CNAME(target.clone())))];
        let mut b = NodesBuilder::with_capacity(4, 0);
        let k = crate::dns::names::name_key(&owner);
        let routes = [Route { weighted: true, weight: 80, answers: 1, role: ROLE_PRIMARY, health: 3 }, Route::NONE];
        b.push(&k, [(RecordType::A, &recs[..], Some(&[7u32, 9][..]), Some(&routes[..])), (RecordType::TXT, &[][..], None, None)]).unwrap();
        let ck = crate::dns::names::name_key(&Name::from_str("c.example.").unwrap());
        b.push(&ck, [(RecordType::CNAME, &cname[..], None, None)]).unwrap();
        b.push_empty(b"\x07example\x00").unwrap();
        assert!(b.contains_key(&k));
        let nodes = b.finish();
        assert_eq!(nodes.len(), 3);
        let set = nodes.get(&k).unwrap().get(RecordType::A).unwrap();
        assert_eq!((set.count(), set.az(0), set.az(1), set.az(2)), (2, 7, 9, NO_AZ));
        assert!(set.has_az(9) && !set.has_az(8));
        assert!(set.routed());
        assert_eq!((set.route(0), set.route(1), set.route(2)), (routes[0], routes[1], Route::NONE));
        // The set after a routed one is read where it is.
        assert_eq!(nodes.get(&k).unwrap().rrsets().map(|s| s.rtype()).collect::<Vec<_>>(), [RecordType::A, RecordType::TXT]);
        assert_eq!(set.records(&owner), recs.to_vec());
        let c = nodes.get(&ck).unwrap().get(RecordType::CNAME).unwrap();
        assert!(!c.routed() && c.route(0) == Route::NONE);
        assert_eq!(Name::from_bytes(c.cname_target().unwrap()).unwrap().to_string(), "Api.Example.");
        assert!(nodes.get(b"\x07example\x00").unwrap().is_empty());
        assert!(nodes.get(b"\x03www\x07example\x00").unwrap().get(RecordType::AAAA).is_none());
        assert!(nodes.get(b"\x01x\x00").is_none());
        let clone = nodes.clone();
        assert_eq!(clone.get(&k).unwrap().get(RecordType::A).unwrap(), set);
    }
}
