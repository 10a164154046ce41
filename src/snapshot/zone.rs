//! One zone as the query path reads it: nodes keyed by lowercased wire-form
//! name, with an explicit node for every empty non-terminal so that "does
//! this name exist" (NXDOMAIN vs NODATA) and the closest encloser of a
//! wildcard (RFC 4592) are O(labels) hash lookups, never a scan of the zone.

use std::path::PathBuf;

use hickory_proto::rr::{Name, Record, RecordType};
use rustc_hash::FxHashMap;

use crate::config::zones_dir::ZoneOrigin;
use crate::dns::names::{KeyBuf, MAX_NAME_WIRE_LEN, NameKey};

/// No vSwitch zone attached to a record.
pub const NO_AZ: u32 = u32::MAX;

/// The records of one name and type.
#[derive(Debug, Clone)]
pub struct RRset {
    pub rtype: RecordType,
    pub records: Box<[Record]>,
    /// For endpoint records: the index (into `Snapshot::azs`) of the zone
    /// each address lives in, parallel to `records`; empty otherwise.
    pub azs: Box<[u32]>,
    /// The records in wire form without owner (TYPE, CLASS, TTL,
    /// RDLENGTH, RDATA), concatenated in `records` order: what the answer
    /// writer copies into a response.
    pub wire: Box<[u8]>,
}

impl RRset {
    pub fn new(rtype: RecordType, records: Box<[Record]>, azs: Box<[u32]>) -> Self {
        let wire: Vec<u8> = records.iter().flat_map(crate::dns::record::record_tail).collect();
        RRset { rtype, records, azs, wire: wire.into_boxed_slice() }
    }
}

/// A name in a zone. No RRsets: an empty non-terminal.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub rrsets: Box<[RRset]>,
}

impl Node {
    pub fn get(&self, rtype: RecordType) -> Option<&RRset> {
        self.rrsets.iter().find(|s| s.rtype == rtype)
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
    pub nodes: FxHashMap<NameKey, Node>,
    pub has_wildcards: bool,
    /// Records held (not counting empty non-terminals).
    pub record_count: usize,
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
}

/// What a zone holds for a name and type.
#[derive(Debug, Clone, Copy)]
pub enum NodeMatch<'z> {
    /// RRset of the asked type (or, for ANY, the one RRset RFC 8482 answers).
    Found(&'z RRset),
    /// The name has a CNAME and the type asked is not CNAME: follow it.
    Cname(&'z RRset),
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
}

/// Rule 3 at one node (records, CNAME, NODATA). At an apex that holds a CNAME, SOA and NS
/// are answered from the (synthesised) apex records and everything else
/// with the CNAME.
fn match_node(node: &Node, qtype: RecordType, is_apex: bool) -> NodeMatch<'_> {
    if node.rrsets.is_empty() {
        return NodeMatch::NoData;
    }
    if let Some(c) = node.get(RecordType::CNAME) {
        let apex_own = is_apex && matches!(qtype, RecordType::SOA | RecordType::NS);
        if qtype == RecordType::CNAME || qtype == RecordType::ANY {
            return NodeMatch::Found(c);
        }
        if !apex_own {
            return NodeMatch::Cname(c);
        }
    }
    if qtype == RecordType::ANY {
        // RFC 8482 §4.1: answer with one RRset rather than all of them;
        // prefer data over the apex's SOA/NS.
        let pick = node.rrsets.iter().find(|s| !matches!(s.rtype, RecordType::SOA | RecordType::NS)).or_else(|| node.rrsets.first());
        return pick.map_or(NodeMatch::NoData, NodeMatch::Found);
    }
    node.get(qtype).map_or(NodeMatch::NoData, NodeMatch::Found)
}
