//! The snapshot: the immutable data one query reads. Built off the hot path
//! from the loaded files, then swapped in whole (the server holds it behind
//! an `ArcSwap`). Holds the views (CIDR → VPC, listener → VPC), the zones
//! (file zones and the names generated from endpoints) indexed by apex for
//! longest-suffix choice per VPC, and the forward zones.

mod build;
pub mod health;
pub mod policy;
pub mod views;
pub mod zone;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use hickory_proto::rr::Name;
use rustc_hash::FxHashMap;

use crate::config::zones_dir::VpcDef;
use crate::config::{ClientSubnet, ForwardZone, Pos, ProxyProtocol, UnknownClients};
use crate::dns::names::{KeyBuf, NameKey};
use views::{CidrTable, ScopeIndex};
use zone::{NO_AZ, Zone};

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
    /// DNS Cookies (RFC 7873): whether they are answered or required.
    pub cookies: crate::config::Cookies,
    /// The secrets server cookies are made with: `cookie_secret_file`'s,
    /// else the process's random one.
    pub cookie_secrets: crate::abuse::cookie::Secrets,
    /// Response rate limiting over UDP (`None`: off).
    pub rate_limit: Option<crate::abuse::rrl::Settings>,
    /// ECS scope prefix lengths (RFC 7871) from the VPC and vSwitch CIDRs.
    scopes: ScopeIndex,
    /// The same over VPC CIDRs only: whether a claimed block is all one
    /// VPC's (vSwitch CIDRs change the order of answers, not the view).
    vpc_scopes: ScopeIndex,
    pub listen: Vec<SocketAddr>,
    pub upstreams: Vec<SocketAddr>,
    /// `resolver.mode: recursive`: the root servers the default route
    /// resolves from, instead of `upstreams`.
    pub root_hints: Option<Arc<[IpAddr]>>,
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
    /// Health-checked addresses and their states, shared by the snapshots
    /// of one server.
    pub health: Arc<health::HealthTable>,
    /// The longest TTL of an answer from a failover or health-checked set.
    pub routed_ttl_cap: u32,
    /// `transfers.keys` whose VPC exists, each with its VPC, in pzdns.yaml's order.
    pub transfer_keys: Vec<(crate::config::transfers::TsigKey, VpcIdx)>,
    /// `transfers.catalog`: each view's catalog zone is `<vpc-id>.<catalog>`.
    pub catalog: Option<Name>,
    /// Per VPC: its catalog zone's version.
    pub catalogs: Vec<CatalogVersion>,
}

/// What a view's catalog zone lists, fingerprinted, and its serial: the
/// serial changes when, and only when, the list does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogVersion {
    pub serial: u32,
    pub members: u64,
}

impl Snapshot {
    /// This snapshot is in force: its health targets are checked from now
    /// on, those no zone of it refers to are forgotten.
    pub fn commit_health(&self) {
        let live: Vec<u32> = self.zones.iter().flat_map(|z| z.health_ids.iter().copied()).collect();
        self.health.retain(&live);
    }

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

/// A CNAME's owner, its zone and where it was written: what the loader
/// follows to find loops and over-long chains.
pub type CnameSite = (ZoneIdx, Name, PathBuf, Pos);

impl Snapshot {
    /// Every upstream some route goes to, each once, in config order (in
    /// recursive mode the default route goes to none).
    pub fn all_upstreams(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = Vec::new();
        let default: &[SocketAddr] = if self.root_hints.is_some() { &[] } else { &self.upstreams };
        for a in default.iter().chain(self.forward_zones.iter().flat_map(|f| f.upstreams.iter())) {
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

    /// The root servers a route resolves from: the default route's in
    /// recursive mode; forward zones always forward.
    pub fn recursion_for(&self, route: Route) -> Option<&Arc<[IpAddr]>> {
        match route {
            Route::Default => self.root_hints.as_ref(),
            Route::ForwardZone(_) => None,
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

    /// The zones a secondary of `vpc`'s view may copy ([`Zone::transferable`]),
    /// endpoint names included, each a zone of its own.
    pub fn transferable_zones(&self, vpc: VpcIdx) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.iter().filter(move |z| z.vpcs.binary_search(&vpc).is_ok() && z.transferable())
    }

    /// The name of `vpc`'s catalog zone, if catalogs are on.
    pub fn catalog_zone(&self, vpc: VpcIdx) -> Option<Name> {
        let suffix = self.catalog.as_ref()?;
        let id = self.vpcs.get(vpc as usize)?.id.to_ascii_lowercase();
        Name::from_ascii(&id).ok()?.append_domain(suffix).ok()
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
            (true, Some(SubnetClaim::Subnet(addr, prefix))) => {
                let (view, reason) = by(addr, ViewReason::SubnetClaim);
                if reason != ViewReason::Listener && !self.one_vpc_block(addr, prefix) {
                    // A block coarser than the VPCs in it (a forwarder's
                    // /24 over /26 VPCs): a downstream cache keeps the
                    // answer for the whole block (RFC 7871 §7.3.1), so no
                    // one VPC's view may answer it. As a client in no VPC,
                    // valid for the whole block.
                    let view = View::Unknown;
                    return Identity { view, reason, client: addr, scope: Some(prefix), ignored_claim: false, malformed_claim: false };
                }
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

    /// Whether every address of the claimed block `addr/prefix` has the
    /// view `addr` has: the block lies within the most specific VPC CIDR
    /// that holds `addr` and no more specific one cuts it (or, in no
    /// VPC, no VPC CIDR lies inside it). Prefixes in `addr`'s own bits.
    fn one_vpc_block(&self, addr: IpAddr, prefix: u8) -> bool {
        let decided = self.vpc_table.matched_len(addr).unwrap_or(0);
        self.vpc_scopes.scope(addr, decided) <= prefix
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
