//! The snapshot: the immutable data one query reads. Built off the hot path
//! from the loaded files, then swapped in whole (the server holds it behind
//! an `ArcSwap`). Holds the views (CIDR → VPC, listener → VPC), the zones
//! (file zones and the names generated from endpoints) indexed by apex for
//! longest-suffix choice per VPC, and the forward zones.

pub mod policy;
pub mod views;
pub mod zone;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rustc_hash::FxHashMap;

use crate::config::zones_dir::{RecordDef, VpcDef, ZoneDef, ZoneOrigin, ZonesData};
use crate::config::{ClientSubnet, Diagnostics, ForwardZone, Pos, ProxyProtocol, ServerConfig, UnknownClients};
use crate::dns::names::{KeyBuf, NameKey, key_labels, name_key, parent_key};
use views::{CidrTable, ScopeIndex};
use zone::{NO_AZ, NodesBuilder, Zone};

/// The MNAME and NS target of synthesised SOA/NS records. `.invalid` (RFC
/// 6761) so that nothing ever tries to reach it.
pub const SYNTH_NS: &str = "ns.pzdns.invalid.";
pub const SYNTH_RNAME: &str = "hostmaster.pzdns.invalid.";
pub const SYNTH_REFRESH: i32 = 3600;
pub const SYNTH_RETRY: i32 = 600;
pub const SYNTH_EXPIRE: i32 = 86400;

/// Index of a VPC in [`Snapshot::vpcs`].
pub type VpcIdx = u32;
/// Index of a zone in [`Snapshot::zones`].
pub type ZoneIdx = u32;

/// Counts for the `check` summary, `/zones` and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub zones: usize,
    pub endpoint_names: usize,
    pub records: usize,
    pub vpcs: usize,
    pub endpoints: usize,
    pub files: usize,
}

/// Where an upstream question goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A `forward_zones` entry (index into `Snapshot::forward_zones`).
    ForwardZone(u32),
    /// The default `upstreams`.
    Default,
}

/// Who is asking, once the view is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// A client of this VPC; `az` is its vSwitch's zone (index into
    /// `Snapshot::azs`) when the source address falls in a vSwitch CIDR.
    Vpc { vpc: VpcIdx, az: u32 },
    /// A source that maps to no VPC.
    Unknown,
}

/// How the view was chosen, for `explain` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewReason {
    Listener,
    SourceCidr,
    /// The client address of a trusted forwarder's PROXY v2 header.
    ProxyClaim,
    /// The client subnet (ECS) of a trusted forwarder's query.
    SubnetClaim,
    Named,
    NoMatch,
}

/// What a packet says about the client beyond its source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Claims {
    /// The source address of a PROXY v2 header (PROXY command).
    pub proxy: Option<IpAddr>,
    /// What an ECS option says.
    pub subnet: Option<SubnetClaim>,
}

/// An ECS option's claim (RFC 7871).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubnetClaim {
    /// The client's address (host bits zero) and source prefix length, at
    /// least 1. An IPv4-mapped IPv6 address stays IPv6 here: the view is
    /// chosen by the IPv4 address, the scope is counted in IPv6 bits.
    Subnet(IpAddr, u8),
    /// Source prefix 0: the forwarder says nothing about its client.
    Anonymous,
    /// Malformed (answered FORMERR where ECS is believed).
    Malformed,
}

impl SubnetClaim {
    /// The claim of a query's ECS option, if it has one.
    pub fn of(edns: &crate::dns::query::QueryEdns) -> Option<SubnetClaim> {
        match (edns.subnet, edns.bad_subnet) {
            (Some(s), _) => Some(s.claim().map_or(SubnetClaim::Anonymous, |(a, l)| SubnetClaim::Subnet(a, l))),
            (None, true) => Some(SubnetClaim::Malformed),
            (None, false) => None,
        }
    }
}

/// Rule 1's outcome: the view, why, and for an ECS-chosen view the scope
/// prefix length that decided it (echoed to the forwarder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub view: View,
    pub reason: ViewReason,
    /// The address the view was chosen by.
    pub client: IpAddr,
    pub scope: Option<u8>,
    /// A claim was made but not believed (untrusted source, or ECS off).
    pub ignored_claim: bool,
    /// A malformed ECS option where ECS is believed: the query gets FORMERR.
    pub malformed_claim: bool,
}

#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every successful load.
    pub generation: u64,
    /// The serial of synthesised SOAs: the load time, so it grows on reload.
    pub serial: u32,
    pub zones_dir: PathBuf,
    pub vpcs: Vec<VpcDef>,
    /// VPC ids as shared metric labels, and the label of clients in no VPC.
    pub vpc_labels: Vec<std::sync::Arc<str>>,
    pub unknown_label: std::sync::Arc<str>,
    vpc_by_id: HashMap<String, VpcIdx>,
    vpc_table: CidrTable<VpcIdx>,
    vswitch_table: CidrTable<(VpcIdx, u32)>,
    /// Zone ids of vSwitches and endpoints (e.g. cn-hangzhou-b), interned.
    pub azs: Vec<String>,
    /// Each zone shared with the snapshots before and after it that did
    /// not change it (an incremental reload reuses it whole).
    pub zones: Vec<Arc<Zone>>,
    /// Apex key → (VPC, zone) pairs sorted by VPC.
    zone_index: FxHashMap<NameKey, Vec<(VpcIdx, ZoneIdx)>>,
    /// The most labels any zone apex has: longer suffixes cannot match.
    max_zone_labels: usize,
    pub forward_zones: Vec<ForwardZone>,
    /// Per forward zone: the VPCs it applies to (`None`: all).
    forward_vpcs: Vec<Option<Vec<VpcIdx>>>,
    /// Per forward zone: whether clients in no VPC may use it.
    forward_unknown: Vec<bool>,
    forward_index: FxHashMap<NameKey, Vec<u32>>,
    max_forward_labels: usize,
    /// VPC bound to each configured listener, in `listen` order.
    pub listener_vpcs: Vec<Option<VpcIdx>>,
    /// Each listener's PROXY protocol mode, in `listen` order.
    pub listener_proxy: Vec<ProxyProtocol>,
    /// Sources whose claims about the client are believed.
    trusted: CidrTable<()>,
    client_subnet: ClientSubnet,
    /// This replica's NSID (RFC 5001), if one is configured.
    pub nsid: Option<crate::dns::writer::Nsid>,
    /// ECS scope prefix lengths (RFC 7871) from the VPC and vSwitch CIDRs.
    scopes: ScopeIndex,
    pub listen: Vec<SocketAddr>,
    pub upstreams: Vec<SocketAddr>,
    /// Cache-key ids of the default upstreams and of each forward zone's,
    /// computed here rather than per query.
    default_route: u64,
    forward_routes: Vec<u64>,
    pub unknown_clients: UnknownClients,
    pub stats: Stats,
    /// `pzdns_queries_total` series by VPC, for counting without a lookup.
    pub counters: crate::metrics::QueryCounters,
    /// Response policies, compiled.
    pub policy: policy::Policies,
}

impl Snapshot {
    /// Builds the indexes from checked data, and runs the checks that need
    /// records grouped by name or zones grouped by VPC. CNAME chains are
    /// checked above, by the loader (they need the answering rules): their
    /// owners are returned for that, with the snapshot as far as it could
    /// be built and every problem found (usable only when there is none).
    pub fn build(cfg: &ServerConfig, data: ZonesData, generation: u64) -> (Snapshot, Vec<CnameSite>, Diagnostics) {
        Self::build_reusing(cfg, data, generation, None)
    }

    /// As [`Snapshot::build`]; the zone files named in `data.reused` are
    /// not built again: their zones are taken from `prev` as they are
    /// (`zones_dir::load_reusing` judged their files unchanged, read with
    /// the same VPC ids in the same order, so the zones' VPC indices hold).
    pub fn build_reusing(
        cfg: &ServerConfig,
        data: ZonesData,
        generation: u64,
        prev: Option<&Snapshot>,
    ) -> (Snapshot, Vec<CnameSite>, Diagnostics) {
        let mut diags = Diagnostics::new();
        let serial = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
        let mut snap = Snapshot {
            generation,
            serial,
            zones_dir: data.dir.clone(),
            vpcs: Vec::new(),
            vpc_labels: data.vpcs.iter().map(|v| std::sync::Arc::from(v.id.as_str())).collect(),
            unknown_label: std::sync::Arc::from("unknown"),
            vpc_by_id: HashMap::new(),
            vpc_table: CidrTable::default(),
            vswitch_table: CidrTable::default(),
            azs: Vec::new(),
            zones: Vec::with_capacity(data.zones.len()),
            zone_index: FxHashMap::default(),
            max_zone_labels: 0,
            forward_zones: cfg.forward_zones.clone(),
            forward_vpcs: Vec::new(),
            forward_unknown: cfg.forward_zones.iter().map(|f| f.unknown_clients).collect(),
            forward_index: FxHashMap::default(),
            max_forward_labels: 0,
            listener_vpcs: Vec::new(),
            listener_proxy: cfg.listen.iter().map(|l| l.proxy_protocol).collect(),
            trusted: {
                let mut t = CidrTable::default();
                for n in &cfg.trusted_forwarders {
                    t.insert(*n, ());
                }
                t
            },
            client_subnet: cfg.client_subnet,
            nsid: cfg.nsid.as_deref().and_then(|n| crate::dns::writer::Nsid::new(n.as_bytes())),
            scopes: ScopeIndex::default(),
            listen: cfg.listen.iter().map(|l| l.address).collect(),
            upstreams: cfg.upstreams.clone(),
            default_route: route_id(&cfg.upstreams),
            forward_routes: cfg.forward_zones.iter().map(|f| route_id(&f.upstreams)).collect(),
            unknown_clients: cfg.unknown_clients,
            stats: Stats { vpcs: data.vpcs.len(), endpoints: data.endpoints, files: data.files_read, ..Stats::default() },
            counters: crate::metrics::QueryCounters::new(data.vpcs.len()),
            policy: policy::Policies::default(),
        };
        // Reused zones carry indices into the previous interner: start from it.
        let mut azs = Interner::default();
        if let Some(p) = prev {
            for a in &p.azs {
                azs.intern(a);
            }
        }
        for (i, v) in data.vpcs.iter().enumerate() {
            let idx = i as VpcIdx;
            snap.vpc_by_id.insert(v.id.clone(), idx);
            for c in &v.cidrs {
                snap.vpc_table.insert(*c, idx);
            }
            for s in &v.vswitches {
                let az = azs.intern(&s.zone);
                snap.vswitch_table.insert(s.cidr, (idx, az));
            }
        }
        {
            let by_id = |id: &str| snap.vpc_by_id.get(id).copied();
            snap.policy = policy::Policies::build(data.policies, data.vpcs.len(), &by_id, &mut diags);
        }
        snap.scopes = ScopeIndex::new(data.vpcs.iter().flat_map(|v| v.cidrs.iter().copied().chain(v.vswitches.iter().map(|s| s.cidr))));
        snap.vpcs = data.vpcs;
        snap.listener_vpcs = cfg.listen.iter().map(|l| l.vpc.as_ref().and_then(|v| snap.vpc_by_id.get(&v.value).copied())).collect();
        for fz in &cfg.forward_zones {
            let i = snap.forward_vpcs.len() as u32;
            snap.forward_vpcs.push(fz.vpcs.as_ref().map(|vs| vs.iter().filter_map(|v| snap.vpc_by_id.get(&v.value).copied()).collect()));
            let key = name_key(&fz.domain);
            snap.max_forward_labels = snap.max_forward_labels.max(key_labels(&key));
            snap.forward_index.entry(key).or_default().push(i);
        }

        // Where each zone name was first bound to each VPC, for the duplicate check.
        let mut bound_at: FxHashMap<(NameKey, VpcIdx), (PathBuf, Pos)> = FxHashMap::default();
        let mut cnames: Vec<CnameSite> = Vec::new();
        // The zones in the order of a full load: zone files by path (reused
        // or read anew), then the endpoint names.
        let reused: Vec<Arc<Zone>> = match prev {
            Some(p) if !data.reused.is_empty() => {
                let by_path: HashMap<&Path, &Arc<Zone>> =
                    p.zones.iter().filter(|z| matches!(z.kind, ZoneOrigin::File)).map(|z| (z.path.as_path(), z)).collect();
                data.reused.iter().filter_map(|f| by_path.get(f.as_path()).map(|z| (*z).clone())).collect()
            }
            _ => Vec::new(),
        };
        let mut items: Vec<Job> =
            data.zones.into_iter().map(|d| Job::Build(Box::new(d))).chain(reused.into_iter().map(Job::Reuse)).collect();
        items.sort_by(|a, b| (a.is_endpoint(), a.path()).cmp(&(b.is_endpoint(), b.path())));
        let mut jobs: Vec<(Job, Vec<VpcIdx>)> = Vec::with_capacity(items.len());
        for item in items {
            let (origin, kind, bound, path, pos) = match &item {
                Job::Build(def) => (&def.origin, &def.kind, &def.vpcs, &def.path, def.pos),
                Job::Reuse(z) => (&z.origin, &z.kind, &z.bound, &z.path, z.pos),
            };
            let vpcs: Vec<VpcIdx> = {
                let mut v: Vec<VpcIdx> = bound.iter().filter_map(|l| snap.vpc_by_id.get(&l.value).copied()).collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let key = name_key(origin);
            let mut clash = false;
            for (l, vi) in bound.iter().zip(vpcs.iter()) {
                if let Some((p, at)) = bound_at.get(&(key.clone(), *vi)) {
                    let what = match kind {
                        ZoneOrigin::File => format!("zone {origin}"),
                        ZoneOrigin::Endpoint(id) => format!("name {origin} of endpoint {id}"),
                    };
                    diags.push(
                        &l.path,
                        l.pos,
                        format!(
                            "{what} is bound to VPC `{}` twice: also at {}:{}; two zones of one name cannot share a VPC",
                            l.value,
                            p.display(),
                            at.line
                        ),
                    );
                    clash = true;
                } else {
                    bound_at.insert((key.clone(), *vi), (path.clone(), pos));
                }
            }
            if clash {
                continue;
            }
            if let Job::Build(def) = &item {
                for r in &def.records {
                    if let Some(a) = &r.az {
                        azs.intern(a);
                    }
                }
            }
            jobs.push((item, vpcs));
        }
        // Zones build independently: on every core of the pool this runs on.
        let azs = azs;
        let built = build_zones_parallel(jobs, serial, &azs);
        for (z, mut zone_cnames, d) in built {
            diags.extend(d);
            let Some(z) = z else { continue };
            let zi = snap.zones.len() as ZoneIdx;
            for c in &mut zone_cnames {
                c.0 = zi;
            }
            cnames.append(&mut zone_cnames);
            snap.max_zone_labels = snap.max_zone_labels.max(z.labels);
            match z.kind {
                ZoneOrigin::File => snap.stats.zones += 1,
                ZoneOrigin::Endpoint(_) => snap.stats.endpoint_names += 1,
            }
            snap.stats.records += z.record_count;
            let entry = snap.zone_index.entry(z.key.clone()).or_default();
            for v in &z.vpcs {
                entry.push((*v, zi));
            }
            entry.sort_unstable();
            snap.zones.push(z);
        }
        snap.azs = azs.names;
        (snap, cnames, diags)
    }
}

impl Snapshot {
    /// How this snapshot chooses zones (rule 2), for [`Snapshot::has_zone_layout`].
    pub fn zone_layout(&self) -> ZoneLayout {
        ZoneLayout {
            vpcs: self.vpcs.iter().map(|v| v.id.clone()).collect(),
            apexes: self.zone_index.iter().map(|(apex, bound)| (apex.clone(), bound.iter().map(|b| b.0).collect())).collect(),
        }
    }

    /// Whether this snapshot chooses zones as the one `layout` was taken
    /// from: the same VPCs in the same order, and the same apexes bound to
    /// the same VPCs. The zones themselves may differ.
    pub fn has_zone_layout(&self, layout: &ZoneLayout) -> bool {
        self.vpcs.iter().map(|v| &v.id).eq(layout.vpcs.iter())
            && self.zone_index.len() == layout.apexes.len()
            && self
                .zone_index
                .iter()
                .all(|(apex, bound)| layout.apexes.get(apex).is_some_and(|l| l.iter().copied().eq(bound.iter().map(|b| b.0))))
    }
}

/// The VPC ids in order, and per apex the VPCs a zone there is bound to
/// (sorted): what rule 2 chooses zones by.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ZoneLayout {
    vpcs: Vec<String>,
    apexes: FxHashMap<NameKey, Box<[VpcIdx]>>,
}

/// Identifies an upstream set in cache keys (computed once per snapshot,
/// see `Snapshot::upstreams_for`), so two routes never share an entry.
fn route_id(upstreams: &[SocketAddr]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    upstreams.hash(&mut h);
    h.finish()
}

/// A CNAME's owner, its zone and where it was written: what the loader
/// follows to find loops and over-long chains.
pub type CnameSite = (ZoneIdx, Name, PathBuf, Pos);

type Built = (Option<Arc<Zone>>, Vec<CnameSite>, Diagnostics);
/// A zone to build: its definition and the VPCs it is bound to.
/// A zone to build from its definition, or one to take as it is.
enum Job {
    Build(Box<ZoneDef>),
    Reuse(Arc<Zone>),
}

impl Job {
    fn is_endpoint(&self) -> bool {
        let kind = match self {
            Job::Build(d) => &d.kind,
            Job::Reuse(z) => &z.kind,
        };
        matches!(kind, ZoneOrigin::Endpoint(_))
    }

    fn path(&self) -> &Path {
        match self {
            Job::Build(d) => &d.path,
            Job::Reuse(z) => &z.path,
        }
    }
}

/// Builds every zone on rayon's pool (one thread per core); results in
/// the order of `jobs`.
fn build_zones_parallel(jobs: Vec<(Job, Vec<VpcIdx>)>, serial: u32, azs: &Interner) -> Vec<Built> {
    use rayon::prelude::*;
    jobs.into_par_iter()
        .map(|(job, vpcs)| match job {
            Job::Build(def) => {
                let mut diags = Diagnostics::new();
                let mut cnames = Vec::new();
                let z = build_zone(*def, vpcs, serial, azs, &mut cnames, 0, &mut diags);
                (z.map(Arc::new), cnames, diags)
            }
            Job::Reuse(z) => {
                let cnames = z.cname_sites.iter().map(|(n, p, pos)| (0, n.clone(), p.clone(), *pos)).collect();
                (Some(z), cnames, Diagnostics::new())
            }
        })
        .collect()
}

/// Interns zone ids (cn-hangzhou-b) so records carry a u32.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(i) = self.ids.get(s) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), i);
        i
    }

    /// The id of an interned name (every record's zone id is interned
    /// before zones are built).
    fn get(&self, s: &str) -> u32 {
        self.ids.get(s).copied().unwrap_or(NO_AZ)
    }
}

fn synth_soa(origin: &Name, ttl: u32, serial: u32) -> Record {
    let ns = Name::from_str(SYNTH_NS).unwrap_or_else(|_| Name::root());
    let rname = Name::from_str(SYNTH_RNAME).unwrap_or_else(|_| Name::root());
    Record::from_rdata(origin.clone(), ttl, RData::SOA(SOA::new(ns, rname, serial, SYNTH_REFRESH, SYNTH_RETRY, SYNTH_EXPIRE, ttl)))
}

fn synth_ns(origin: &Name, ttl: u32) -> Record {
    Record::from_rdata(origin.clone(), ttl, RData::NS(NS(Name::from_str(SYNTH_NS).unwrap_or_else(|_| Name::root()))))
}

/// Groups a zone's records into nodes, checks the rules that need them
/// grouped (CNAME exclusivity, apex CNAME), adds SOA/NS when missing and
/// the empty non-terminals.
fn build_zone(
    def: ZoneDef,
    vpcs: Vec<VpcIdx>,
    serial: u32,
    azs: &Interner,
    cnames: &mut Vec<(ZoneIdx, Name, PathBuf, Pos)>,
    zi: ZoneIdx,
    diags: &mut Diagnostics,
) -> Option<Zone> {
    let key = name_key(&def.origin);
    let labels = key_labels(&key);
    let is_endpoint = matches!(def.kind, ZoneOrigin::Endpoint(_));
    let sites_before = cnames.len();
    // The records stay where they were read (synthesised ones are added
    // at the end); the grouping holds their indices: owner key → type →
    // (records, their vSwitch zones, first position).
    let mut recs = def.records;
    type Sets = Vec<(RecordType, Vec<u32>, Vec<u32>, Pos)>;
    let mut by_name: FxHashMap<NameKey, Sets> = FxHashMap::default();
    by_name.reserve(recs.len());
    // About what the arena will hold: key, headers and record per record.
    let def_bytes = recs.len() * 48;
    let count_before = diags.len();
    for (i, r) in recs.iter().enumerate() {
        let kb = KeyBuf::new(&r.record.name);
        let sets = match by_name.get_mut(kb.key()) {
            Some(sets) => sets,
            None => by_name.entry(kb.key().into()).or_default(),
        };
        let rtype = r.record.record_type();
        let az = r.az.as_deref().map(|a| azs.get(a)).unwrap_or(NO_AZ);
        match sets.iter_mut().find(|s| s.0 == rtype) {
            Some(set) => {
                if rtype == RecordType::CNAME {
                    diags.push(
                        &def.records_path,
                        r.pos,
                        format!("{} has more than one CNAME; a name has at most one (RFC 2181 §10.1)", r.record.name),
                    );
                    continue;
                }
                if rtype == RecordType::SOA {
                    diags.push(&def.records_path, r.pos, "the zone has more than one SOA record");
                    continue;
                }
                if set.1.iter().any(|&x| recs[x as usize].record.data == r.record.data) {
                    continue; // an RRset is a set: a repeated record is the same record
                }
                set.1.push(i as u32);
                set.2.push(az);
            }
            None => sets.push((rtype, vec![i as u32], vec![az], r.pos)),
        }
    }
    // A zone with no records at its apex (none at all, or only deeper
    // names) still answers SOA and NS there: the apex is a node, and
    // gets them below.
    by_name.entry(key.clone()).or_default();
    // Empty non-terminals: every name between a node and the apex.
    let mut ents: rustc_hash::FxHashSet<&[u8]> = rustc_hash::FxHashSet::default();
    for k in by_name.keys() {
        let mut p = parent_key(k);
        while let Some(pk) = p {
            if pk.len() <= key.len() || by_name.contains_key(pk) || !ents.insert(pk) {
                break;
            }
            p = parent_key(pk);
        }
    }
    let ents: Vec<NameKey> = ents.into_iter().map(NameKey::from).collect();
    let mut nodes = NodesBuilder::with_capacity(by_name.len() + ents.len(), def_bytes);
    let mut record_count = 0usize;
    let mut has_wildcards = false;
    let mut negative_soa = None;
    let mut too_large = false;
    let synthesised = |recs: &mut Vec<RecordDef>, record: Record| {
        recs.push(RecordDef { record, pos: Pos::UNKNOWN, az: None });
        vec![recs.len() as u32 - 1]
    };
    for (k, mut sets) in by_name {
        let is_apex = k == key;
        if let Some(c) = sets.iter().find(|s| s.0 == RecordType::CNAME) {
            let owner = recs[c.1[0] as usize].record.name.clone();
            let others = sets.iter().filter(|s| s.0 != RecordType::CNAME && !(is_apex && matches!(s.0, RecordType::SOA | RecordType::NS)));
            for o in others {
                let msg = if is_apex {
                    format!(
                        "{} record at the apex beside its CNAME: with a CNAME at `@`, no other record may sit at `@` (SOA and NS are synthesised)",
                        o.0
                    )
                } else {
                    format!(
                        "{} record beside a CNAME at {owner}: a name with a CNAME can have no other data (RFC 1034 §3.6.2); remove one of them",
                        o.0
                    )
                };
                diags.push(&def.records_path, o.3, msg);
            }
            cnames.push((zi, owner, def.records_path.clone(), c.3));
        }
        // RFC 2181 §5.2: one TTL per RRset; use the smallest given.
        for s in &sets {
            let ttl = s.1.iter().map(|&i| recs[i as usize].record.ttl).min().unwrap_or(def.ttl);
            for &i in &s.1 {
                recs[i as usize].record.ttl = ttl;
            }
        }
        if is_apex {
            if let Some(soa) = sets.iter().find(|s| s.0 == RecordType::SOA) {
                let mut neg = recs[soa.1[0] as usize].record.clone();
                if let RData::SOA(s) = &neg.data {
                    neg.ttl = neg.ttl.min(s.minimum);
                }
                negative_soa = Some(neg);
            } else {
                let soa = synth_soa(&def.origin, def.ttl, serial);
                negative_soa = Some(soa.clone());
                sets.push((RecordType::SOA, synthesised(&mut recs, soa), vec![NO_AZ], Pos::UNKNOWN));
            }
            if !sets.iter().any(|s| s.0 == RecordType::NS) {
                sets.push((RecordType::NS, synthesised(&mut recs, synth_ns(&def.origin, def.ttl)), vec![NO_AZ], Pos::UNKNOWN));
            }
        }
        if k.len() > 2 && k[0] == 1 && k[1] == b'*' {
            has_wildcards = true;
        }
        record_count += sets.iter().map(|s| s.1.len()).sum::<usize>();
        let recs = &recs;
        let encoded = sets
            .iter()
            .map(|(rtype, idx, azs, _)| (*rtype, idx.iter().map(move |&i| &recs[i as usize].record), is_endpoint.then_some(&azs[..])));
        too_large |= nodes.push(&k, encoded).is_err();
    }
    for k in &ents {
        too_large |= nodes.push_empty(k).is_err();
    }
    if too_large {
        diags.push(&def.records_path, def.pos, "the zone holds more than 4 GiB of records; split it into several zones");
    }
    if diags.len() > count_before {
        return None;
    }
    let nodes = nodes.finish();
    let negative_soa = negative_soa.unwrap_or_else(unreachable_soa);
    let cname_sites = cnames[sites_before..].iter().map(|(_, n, p, pos)| (n.clone(), p.clone(), *pos)).collect();
    Some(Zone {
        origin: def.origin,
        key,
        labels,
        kind: def.kind,
        path: def.path,
        recursive_proxy: def.recursive_proxy,
        negative_soa_wire: crate::dns::record::record_tail(&negative_soa).into_boxed_slice(),
        negative_soa,
        nodes,
        has_wildcards,
        record_count,
        vpcs,
        bound: def.vpcs,
        pos: def.pos,
        cname_sites,
    })
}

fn unreachable_soa() -> Record {
    synth_soa(&Name::root(), 60, 1)
}

impl Snapshot {
    /// Every upstream some route goes to, each once, in config order.
    pub fn all_upstreams(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = Vec::new();
        for a in self.upstreams.iter().chain(self.forward_zones.iter().flat_map(|f| f.upstreams.iter())) {
            if !all.contains(a) {
                all.push(*a);
            }
        }
        all
    }

    /// The upstreams a route goes to, with their cache-key id.
    pub fn upstreams_for(&self, route: Route) -> (&[SocketAddr], u64) {
        match route {
            Route::ForwardZone(i) => match self.forward_zones.get(i as usize) {
                Some(f) => (&f.upstreams, self.forward_routes[i as usize]),
                None => (&[], 0),
            },
            Route::Default => (&self.upstreams, self.default_route),
        }
    }

    /// Counts one answered query in `pzdns_queries_total`.
    pub fn count_query(&self, metrics: &crate::metrics::Metrics, view: Option<View>, rcode: u16, source: crate::metrics::Source) {
        match view {
            Some(View::Vpc { vpc, .. }) if (vpc as usize) < self.vpc_labels.len() => {
                self.counters.inc(metrics, vpc as usize, &self.vpc_labels[vpc as usize], rcode, source)
            }
            _ => self.counters.inc(metrics, self.vpc_labels.len(), &self.unknown_label, rcode, source),
        }
    }

    /// The row of a view in per-view tables (the policy's): the VPC's
    /// index, or one past the last VPC for sources in no VPC.
    #[inline]
    pub fn view_row(&self, view: View) -> usize {
        match view {
            View::Vpc { vpc, .. } => vpc as usize,
            View::Unknown => self.vpcs.len(),
        }
    }

    pub fn vpc_index(&self, id: &str) -> Option<VpcIdx> {
        self.vpc_by_id.get(id).copied()
    }

    /// Answering rule 1 with the claims a packet makes: the listener's
    /// VPC; else, from a trusted forwarder, the PROXY v2 client address,
    /// then the ECS client subnet (when `client_subnet: trusted`); else the
    /// source address. From any other source a claim is ignored (and said
    /// so, to be counted).
    pub fn select_identity(&self, listener: Option<usize>, src: IpAddr, claims: Claims) -> Identity {
        let claimed = claims.proxy.is_some() || claims.subnet.is_some();
        let trusted = claimed && self.trusted.lookup(src).is_some();
        let by = |addr: IpAddr, reason| {
            let (view, r) = self.select_view(listener, addr);
            let reason = if r == ViewReason::SourceCidr || r == ViewReason::NoMatch { reason } else { r };
            (view, reason)
        };
        let plain = |ignored_claim, scope, malformed_claim| {
            let (view, reason) = self.select_view(listener, src);
            Identity { view, reason, client: src, scope, ignored_claim, malformed_claim }
        };
        if let (true, Some(p)) = (trusted, claims.proxy) {
            let (view, reason) = by(p, ViewReason::ProxyClaim);
            return Identity { view, reason, client: p, scope: None, ignored_claim: false, malformed_claim: false };
        }
        match (trusted && self.client_subnet == ClientSubnet::Trusted, claims.subnet) {
            (true, Some(SubnetClaim::Subnet(addr, _))) => {
                let (view, reason) = by(addr, ViewReason::SubnetClaim);
                // Counted in the claim's own family: an IPv4-mapped address
                // is matched as IPv4 and its scope is 96 + the IPv4 scope.
                let scope = if reason == ViewReason::Listener {
                    0
                } else {
                    let decided = self.vpc_table.matched_len(addr).unwrap_or(0).max(self.vswitch_table.matched_len(addr).unwrap_or(0));
                    self.scopes.scope(addr, decided)
                };
                Identity { view, reason, client: addr, scope: Some(scope), ignored_claim: false, malformed_claim: false }
            }
            // Nothing claimed: answered by the source, valid for any client
            // of the forwarder (scope 0).
            (true, Some(SubnetClaim::Anonymous)) => plain(false, Some(0), false),
            (true, Some(SubnetClaim::Malformed)) => plain(false, None, true),
            (false, _) => {
                plain(claims.proxy.is_some() || (claims.subnet.is_some() && self.client_subnet == ClientSubnet::Trusted), None, false)
            }
            (true, None) => plain(false, None, false),
        }
    }

    /// Answering rule 1, view selection: the listener's VPC, else the VPC
    /// whose CIDR holds the source most specifically, else none.
    pub fn select_view(&self, listener: Option<usize>, src: IpAddr) -> (View, ViewReason) {
        let az_for = |vpc: VpcIdx| match self.vswitch_table.lookup(src) {
            Some((v, az)) if v == vpc => az,
            _ => NO_AZ,
        };
        if let Some(Some(vpc)) = listener.and_then(|i| self.listener_vpcs.get(i)) {
            return (View::Vpc { vpc: *vpc, az: az_for(*vpc) }, ViewReason::Listener);
        }
        match self.vpc_table.lookup(src) {
            Some(vpc) => (View::Vpc { vpc, az: az_for(vpc) }, ViewReason::SourceCidr),
            None => (View::Unknown, ViewReason::NoMatch),
        }
    }

    /// Answering rule 2, zone selection: of the zones visible to `vpc`, the
    /// one whose apex is the longest suffix of the name.
    pub fn select_zone(&self, vpc: VpcIdx, q: &KeyBuf) -> Option<(ZoneIdx, &Zone)> {
        let n = q.labels();
        let start = n.saturating_sub(self.max_zone_labels);
        for skip in start..n {
            if let Some(list) = self.zone_index.get(q.suffix(skip))
                && let Ok(i) = list.binary_search_by(|(v, _)| v.cmp(&vpc))
            {
                let zi = list[i].1;
                return Some((zi, &self.zones[zi as usize]));
            }
        }
        None
    }

    /// Answering rule 4, forward-zone routing: the most specific forward
    /// zone visible to the view (for clients in no VPC, only those with
    /// `unknown_clients: true`), else the default upstreams.
    pub fn route_upstream(&self, view: View, q: &KeyBuf) -> Route {
        self.forward_zone_for(view, q).map_or(Route::Default, Route::ForwardZone)
    }

    fn forward_zone_for(&self, view: View, q: &KeyBuf) -> Option<u32> {
        let n = q.labels();
        let start = n.saturating_sub(self.max_forward_labels);
        for skip in start..=n {
            if let Some(list) = self.forward_index.get(q.suffix(skip)) {
                for &i in list {
                    let ok = match (&self.forward_vpcs[i as usize], view) {
                        (None, View::Vpc { .. }) => true,
                        (Some(vs), View::Vpc { vpc, .. }) => vs.contains(&vpc),
                        // Strangers only where the entry says so.
                        (_, View::Unknown) => self.forward_unknown.get(i as usize).copied().unwrap_or(false),
                    };
                    if ok {
                        return Some(i);
                    }
                }
            }
        }
        None
    }
}
