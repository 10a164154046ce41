//! Building a snapshot from the files read: the VPC and CIDR tables,
//! response policies compiled, each zone's nodes (built in parallel, or
//! taken whole from the previous snapshot on an incremental reload), and
//! the checks that need records grouped by name or zones grouped by VPC.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rustc_hash::FxHashMap;

use super::health::{HealthTable, NO_HEALTH};
use super::views::{CidrTable, ScopeIndex};
use super::zone::{MAX_ROUTED, NO_AZ, NodesBuilder, ROLE_PRIMARY, ROLE_SECONDARY, Route, Zone};
use super::{CnameSite, SYNTH_EXPIRE, SYNTH_NS, SYNTH_REFRESH, SYNTH_RETRY, SYNTH_RNAME, Snapshot, Stats, VpcIdx, ZoneIdx, policy};
use crate::config::routing::{Failover, RouteDef, Target};
use crate::config::zones_dir::{RecordDef, ZoneDef, ZoneOrigin, ZonesData};
use crate::config::{Diagnostics, Pos, ServerConfig};
use crate::dns::names::{KeyBuf, NameKey, key_labels, name_key, parent_key};

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
            cookies: cfg.cookies,
            cookie_secrets: cfg
                .cookie_secrets
                .unwrap_or(crate::abuse::cookie::Secrets { current: crate::abuse::cookie::process_secret(), previous: None }),
            rate_limit: cfg.rate_limit,
            scopes: ScopeIndex::default(),
            vpc_scopes: ScopeIndex::default(),
            listen: cfg.listen.iter().map(|l| l.address).collect(),
            upstreams: cfg.upstreams.clone(),
            root_hints: (cfg.resolver_mode == crate::config::ResolverMode::Recursive).then(|| cfg.root_hints.as_slice().into()),
            // Answers resolved from the root are kept apart from those of any upstream set.
            default_route: match cfg.resolver_mode {
                crate::config::ResolverMode::Forward => route_id(&cfg.upstreams),
                crate::config::ResolverMode::Recursive => {
                    route_id(&cfg.root_hints.iter().map(|ip| SocketAddr::new(*ip, 0)).collect::<Vec<_>>())
                }
            },
            forward_routes: cfg.forward_zones.iter().map(|f| route_id(&f.upstreams)).collect(),
            unknown_clients: cfg.unknown_clients,
            stats: Stats { vpcs: data.vpcs.len(), endpoints: data.endpoints, files: data.files_read, ..Stats::default() },
            counters: crate::metrics::QueryCounters::new(data.vpcs.len()),
            policy: policy::Policies::default(),
            // Shared with the snapshot before: a target's state outlives a reload.
            health: prev.map(|p| p.health.clone()).unwrap_or_else(|| Arc::new(HealthTable::new(cfg.health.max_targets))),
            routed_ttl_cap: cfg.health.ttl_cap(),
            transfer_keys: Vec::new(),
            catalog: cfg.transfers.catalog.clone(),
            catalogs: Vec::new(),
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
        snap.vpc_scopes = ScopeIndex::new(data.vpcs.iter().flat_map(|v| v.cidrs.iter().copied()));
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
            for l in bound.iter() {
                let Some(vi) = snap.vpc_by_id.get(&l.value) else { continue };
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
        // A file zone built again gets a serial past its last one, however
        // its files' times went (two edits within a second, a clock set back).
        // The zone each one built replaces, by file and name: its serial and its IXFR history carry on.
        let prev_zones: HashMap<(&Path, &NameKey), &Zone> =
            prev.map(|p| p.zones.iter().map(|z| ((z.path.as_path(), &z.key), &**z)).collect()).unwrap_or_default();
        // Differences are kept for IXFR only where a secondary may ask for them.
        let keep_history = !cfg.transfers.keys.is_empty();
        let built = build_zones_parallel(jobs, serial, &prev_zones, keep_history, &azs, &snap.health);
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
        snap.transfer_keys = cfg.transfers.keys.iter().filter_map(|k| snap.vpc_by_id.get(&k.vpc.value).map(|v| (k.clone(), *v))).collect();
        snap.catalogs = catalog_versions(&snap, prev);
        check_endpoint_shadowing(&snap, &mut diags);
        (snap, cnames, diags)
    }
}

/// An endpoint's name (a private DNS name above all) is a zone of its own:
/// in the VPCs that see it, it hides whatever a zone file holds at and
/// under that name, which is then never answered. A problem, naming both.
fn check_endpoint_shadowing(snap: &Snapshot, diags: &mut Diagnostics) {
    for ez in &snap.zones {
        let ZoneOrigin::Endpoint(id) = &ez.kind else { continue };
        // Per zone file hidden: the VPCs where it is.
        let mut hidden: Vec<(ZoneIdx, Vec<&str>)> = Vec::new();
        for &v in &ez.vpcs {
            // The zone the name would be answered from without the
            // endpoint: the longest apex above it bound to this VPC.
            let mut k = parent_key(&ez.key);
            while let Some(pk) = k {
                if let Some(list) = snap.zone_index.get(pk)
                    && let Ok(i) = list.binary_search_by(|(x, _)| x.cmp(&v))
                {
                    let zi = list[i].1;
                    let z = &snap.zones[zi as usize];
                    // Every name under a node has its empty non-terminals
                    // as nodes: one probe finds records at or under the name.
                    if matches!(z.kind, ZoneOrigin::File) && z.nodes.contains_key(&ez.key) {
                        let vpc = snap.vpcs[v as usize].id.as_str();
                        match hidden.iter_mut().find(|h| h.0 == zi) {
                            Some(h) => h.1.push(vpc),
                            None => hidden.push((zi, vec![vpc])),
                        }
                    }
                    break;
                }
                k = parent_key(pk);
            }
        }
        for (zi, vpcs) in hidden {
            let z = &snap.zones[zi as usize];
            diags.push(
                &ez.path,
                ez.pos,
                format!(
                    "endpoint `{id}` publishes {}, which hides the records at and under that name in zone {} ({}:{}) from VPC {}: they would never be answered; remove them from the zone file, or the name from the endpoint",
                    ez.origin,
                    z.origin,
                    z.path.display(),
                    z.pos.line,
                    vpcs.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
}

/// Each view's catalog version: the previous snapshot's while the list of
/// zones is the same; else a serial past it, and past every member's
/// serial and the zones directory's modification time (what a first load
/// starts from, so that a restart with the same zones keeps the serial).
fn catalog_versions(snap: &Snapshot, prev: Option<&Snapshot>) -> Vec<super::CatalogVersion> {
    use std::hash::{Hash, Hasher};
    // Only views with a key have a catalog: no work for a deployment without transfers.
    if snap.catalog.is_none() || snap.transfer_keys.is_empty() {
        return Vec::new();
    }
    let mut keyed = vec![false; snap.vpcs.len()];
    for (_, v) in &snap.transfer_keys {
        keyed[*v as usize] = true;
    }
    // Per view: its members' names and serials, in one pass over the zones.
    let mut members: Vec<Vec<(&NameKey, u32)>> = vec![Vec::new(); snap.vpcs.len()];
    for z in snap.zones.iter().filter(|z| z.transferable()) {
        for &v in &z.vpcs {
            if keyed[v as usize] {
                members[v as usize].push((&z.key, z.serial));
            }
        }
    }
    let dir_time = std::fs::metadata(&snap.zones_dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as u32);
    members
        .into_iter()
        .enumerate()
        .map(|(v, mut list)| {
            list.sort_unstable();
            let mut h = rustc_hash::FxHasher::default();
            for (name, _) in &list {
                name.hash(&mut h);
            }
            let members = h.finish();
            let floor = list.iter().map(|m| m.1).max().unwrap_or(0).max(dir_time).max(1);
            let before = prev.and_then(|p| Some(*p.catalogs.get(p.vpc_index(&snap.vpcs[v].id)? as usize)?));
            let serial = match before {
                Some(b) if b.members == members => b.serial,
                Some(b) => floor.max(b.serial.wrapping_add(1)),
                None => floor,
            };
            super::CatalogVersion { serial, members }
        })
        .collect()
}

/// Identifies an upstream set in cache keys (computed once per snapshot,
/// see `Snapshot::upstreams_for`), so two routes never share an entry.
fn route_id(upstreams: &[SocketAddr]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    upstreams.hash(&mut h);
    h.finish()
}

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
fn build_zones_parallel(
    jobs: Vec<(Job, Vec<VpcIdx>)>,
    serial: u32,
    prev_zones: &HashMap<(&Path, &NameKey), &Zone>,
    keep_history: bool,
    azs: &Interner,
    health: &HealthTable,
) -> Vec<Built> {
    use rayon::prelude::*;
    jobs.into_par_iter()
        .map(|(job, vpcs)| match job {
            Job::Build(def) => {
                let mut diags = Diagnostics::new();
                let mut cnames = Vec::new();
                let before = prev_zones.get(&(def.path.as_path(), &name_key(&def.origin))).copied();
                // An endpoint name is built again on every load: its serial follows endpoints.yaml alone.
                let prev_serial = before.filter(|_| matches!(def.kind, ZoneOrigin::File)).map(|z| z.serial);
                let serial = zone_serial(&def, serial, prev_serial);
                let mut z = build_zone(*def, vpcs, serial, (azs, health), &mut cnames, 0, &mut diags);
                if let (Some(z), Some(before), true) = (z.as_mut(), before, keep_history) {
                    z.history = z.history_after(before);
                }
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

/// The serial of a zone's synthesised SOA: the last modification time of
/// its files (seconds), so that it is the same across restarts while they
/// do not change and grows when they do; past `prev`, the serial of the
/// zone this one replaces, when there is one. `fallback` (the load time)
/// where the files' times cannot be read.
fn zone_serial(def: &ZoneDef, fallback: u32, prev: Option<u32>) -> u32 {
    let mtime = |p: &Path| {
        let t = std::fs::metadata(p).ok()?.modified().ok()?;
        t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs() as u32)
    };
    let from_files = mtime(&def.path).max(mtime(&def.records_path)).unwrap_or(fallback).max(1);
    match prev {
        Some(p) if p >= from_files => p.wrapping_add(1).max(1),
        _ => from_files,
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
    (azs, health): (&Interner, &HealthTable),
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
    let mut health_ids: Vec<u32> = Vec::new();
    let mut routed = false;
    let mut has_wildcards = false;
    let mut negative_soa = None;
    // The SOA's serial: the data's own SOA, else the one synthesised.
    let mut zone_serial = serial;
    let mut too_large = false;
    let synthesised = |recs: &mut Vec<RecordDef>, record: Record| {
        recs.push(RecordDef { record, pos: Pos::UNKNOWN, az: None, route: None });
        vec![recs.len() as u32 - 1]
    };
    // Nodes go into the arena in the order their names first appear in
    // the zone's files: a transfer streams the arena as it lies, and a
    // secondary builds its tree from names that come in the order files
    // are written with far fewer cache misses than from hash order. Each
    // name is placed at its first record's index (a record has one owner,
    // so no two names share it; only the apex may have none: slot 0),
    // which costs one pass where a sort would cost n log n.
    let mut in_order: Vec<Option<(NameKey, Sets)>> = std::iter::repeat_with(|| None).take(recs.len() + 1).collect();
    for (k, sets) in by_name {
        let at = sets.first().map_or(0, |s| s.1[0] as usize + 1);
        debug_assert!(in_order[at].is_none(), "two names share a first record");
        in_order[at] = Some((k, sets));
    }
    for (k, mut sets) in in_order.into_iter().flatten() {
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
            // The CNAME alone stays (the load fails on the problems above
            // anyway): its chain is followed in this pass too.
            sets.retain(|s| s.0 == RecordType::CNAME || (is_apex && matches!(s.0, RecordType::SOA | RecordType::NS)));
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
                    zone_serial = s.serial;
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
        let routes: Vec<Option<Vec<Route>>> =
            sets.iter().map(|(_, idx, _, _)| routes_of_set(&recs, idx, health, &def.records_path, &mut health_ids, diags)).collect();
        routed |= routes.iter().any(Option::is_some);
        let recs = &recs;
        let encoded = sets.iter().zip(&routes).map(|((rtype, idx, azs, _), routes)| {
            (*rtype, idx.iter().map(move |&i| &recs[i as usize].record), is_endpoint.then_some(&azs[..]), routes.as_deref())
        });
        too_large |= nodes.push(&k, encoded).is_err();
    }
    for k in &ents {
        too_large |= nodes.push_empty(k).is_err();
    }
    if too_large {
        diags.push(&def.records_path, def.pos, "the zone holds more than 4 GiB of records; split it into several zones");
    }
    // A zone with other problems is built all the same, so that the
    // checks that follow (CNAME chains, names shadowed) run in this pass
    // too; the load fails on its problems.
    if too_large {
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
        serial: zone_serial,
        vpcs,
        bound: def.vpcs,
        pos: def.pos,
        cname_sites,
        health_ids: {
            health_ids.sort_unstable();
            health_ids.dedup();
            health_ids.into_boxed_slice()
        },
        routed,
        history: Vec::new(),
    })
}

/// The routes of one RRset (SPEC §10), `None` when no record of it is
/// routed. Every record of a weighted set has a weight, of a failover
/// set a role (and one at least is primary); `answers` is one number
/// for the set. Health targets are interned in `health`, their ids
/// noted in `ids`.
fn routes_of_set(
    recs: &[RecordDef],
    idx: &[u32],
    health: &HealthTable,
    path: &Path,
    ids: &mut Vec<u32>,
    diags: &mut Diagnostics,
) -> Option<Vec<Route>> {
    let defs: Vec<(&RecordDef, Option<&RouteDef>)> = idx.iter().map(|&i| (&recs[i as usize], recs[i as usize].route.as_deref())).collect();
    if defs.iter().all(|(_, r)| r.is_none()) {
        return None;
    }
    let (first, _) = defs[0];
    let what = format!("{} {}", first.record.name, first.record.record_type());
    if defs.len() > MAX_ROUTED {
        diags.push(
            path,
            first.pos,
            format!("{what}: a weighted, failover or health-checked set holds at most {MAX_ROUTED} records; split it"),
        );
        return None;
    }
    // Either every record of the set has the key or none does.
    let mut all_or_none = |has: &dyn Fn(&RouteDef) -> bool, key: &str, fix: &str| {
        let n = defs.iter().filter(|(_, r)| r.is_some_and(has)).count();
        if n > 0
            && let Some((d, _)) = defs.iter().find(|(_, r)| r.is_none_or(|r| !has(r)))
        {
            diags.push(path, d.pos, format!("{what}: other records of the set have {key} and this one has none; {fix}"));
        }
        n
    };
    all_or_none(&|r| r.weight.is_some(), "a weight", "give every record a weight, or none");
    let roles = all_or_none(&|r| r.failover.is_some(), "`failover`", "give each `failover: primary` or `secondary`");
    let answers: Vec<u8> = defs.iter().filter_map(|(_, r)| r.and_then(|r| r.answers)).collect();
    if answers.windows(2).any(|w| w[0] != w[1]) {
        diags.push(path, first.pos, format!("{what}: records give different `answers`; give one number for the set"));
    }
    if roles > 0 && !defs.iter().any(|(_, r)| r.is_some_and(|r| r.failover == Some(Failover::Primary))) {
        diags.push(path, first.pos, format!("{what}: a failover set needs at least one `failover: primary` record"));
    }
    let answers = answers.first().copied().unwrap_or(1);
    let mut out = Vec::with_capacity(defs.len());
    for (d, r) in defs {
        let Some(r) = r else {
            out.push(Route::NONE);
            continue;
        };
        let mut route = Route {
            weighted: r.weight.is_some(),
            weight: r.weight.unwrap_or(0),
            answers,
            role: match r.failover {
                Some(Failover::Primary) => ROLE_PRIMARY,
                Some(Failover::Secondary) => ROLE_SECONDARY,
                None => 0,
            },
            health: NO_HEALTH,
        };
        if let Some(check) = &r.health {
            let ip = match &d.record.data {
                RData::A(a) => std::net::IpAddr::V4(a.0),
                RData::AAAA(a) => std::net::IpAddr::V6(a.0),
                _ => {
                    out.push(route);
                    continue;
                }
            };
            match health.intern(&Target { ip, check: check.clone() }) {
                Some(id) => {
                    route.health = id;
                    ids.push(id);
                }
                None => diags.push(
                    path,
                    d.pos,
                    format!(
                        "more than {} health-checked addresses; raise health_checks.max_targets (a restart applies it)",
                        health.capacity()
                    ),
                ),
            }
        }
        out.push(route);
    }
    Some(out)
}

fn unreachable_soa() -> Record {
    synth_soa(&Name::root(), 60, 1)
}
