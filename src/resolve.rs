//! The answering rules (docs/REFERENCE.md#answering-rules) as a pure
//! function: (snapshot, view, question) → what to answer from local data
//! and what, if anything, must go upstream. No I/O: the answer writer and
//! `pzdns explain` both call it, and it is unit-tested without sockets.
//!
//! ```text
//! view ─► zone (longest suffix among the VPC's zones) ─► node / wildcard
//!            │ none                                        │ CNAME: next link, same view
//!            ▼                                             ▼ missing + recursive_proxy
//!       forward zone / upstreams  ◄──────────────────────── upstream
//! ```

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;

use crate::config::UnknownClients;
use crate::dns::names::{KeyBuf, key_to_name};
use crate::dns::record::{address_of, tails};
pub use crate::metrics::Source;
pub use crate::snapshot::Route;
use crate::snapshot::policy::{NameHit, PolicyAction, override_rrset};
use crate::snapshot::zone::{NO_AZ, NodeMatch, RRset, Zone};
use crate::snapshot::{Snapshot, View, ZoneIdx};

/// Most CNAME links followed for one question (rule 3).
pub const MAX_CNAME_LINKS: usize = 8;

/// Why a question goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamReason {
    /// No zone visible to the view holds the name.
    OutsideZones,
    /// The name is missing from a `recursive_proxy` zone.
    MissingInProxyZone(ZoneIdx),
    /// A CNAME (local) points outside local data.
    CnameTarget,
}

/// A question pzdns must ask upstream; its answer is appended after the
/// local answers (a CNAME chain), and its rcode becomes the response's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamQuery {
    pub name: Name,
    pub qtype: RecordType,
    pub route: Route,
    pub reason: UpstreamReason,
}

/// One step of the reasoning, recorded only when tracing (for `explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The answer's set is routed (SPEC §10): each record's weight, role
    /// and health, in words.
    Routing {
        name: Name,
        rtype: RecordType,
        records: Vec<String>,
    },
    Zone {
        name: Name,
        zone: ZoneIdx,
    },
    NoZone {
        name: Name,
    },
    Answer {
        name: Name,
        rtype: RecordType,
        count: usize,
        wildcard: Option<Name>,
    },
    Cname {
        from: Name,
        to: Name,
        wildcard: Option<Name>,
    },
    NoData {
        name: Name,
        zone: ZoneIdx,
    },
    NxDomain {
        name: Name,
        zone: ZoneIdx,
    },
    ProxyMissing {
        name: Name,
        zone: ZoneIdx,
    },
    Upstream {
        name: Name,
        qtype: RecordType,
        route: Route,
    },
    Loop {
        name: Name,
    },
    TooLong,
    Refused,
    /// A response-policy rule matched `name` (at the name `skip` labels up).
    Policy {
        name: Name,
        rule: u32,
        skip: usize,
    },
    /// An address of the answer matched a response-IP rule.
    PolicyIp {
        rule: u32,
    },
}

/// The outcome for one question.
#[derive(Debug, Clone)]
pub struct Resolution<'s> {
    pub rcode: ResponseCode,
    /// AA: set when the first link was answered from local data.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    /// SOA for negative answers (RFC 2308).
    pub authority: Vec<&'s Record>,
    pub upstream: Option<UpstreamQuery>,
    pub source: Source,
    pub steps: Vec<Step>,
    /// A policy ended the walk without an answer to send (drop, or TC=1
    /// over UDP).
    pub policy_end: Option<PolicyEnd>,
}

impl<'s> Resolution<'s> {
    fn new() -> Self {
        Resolution {
            rcode: ResponseCode::NoError,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            upstream: None,
            source: Source::Zone,
            steps: Vec::new(),
            policy_end: None,
        }
    }

    /// A CNAME loop or over-long chain, described; `None` if neither.
    pub fn chain_problem(&self) -> Option<String> {
        self.steps.iter().find_map(|s| match s {
            Step::Loop { name } => Some(format!("CNAME loop: the chain comes back to {name}")),
            Step::TooLong => Some(format!("CNAME chain longer than {MAX_CNAME_LINKS} links")),
            _ => None,
        })
    }
}

/// The name one link of a CNAME chain asks about.
#[derive(Debug, Clone, Copy)]
pub enum LinkName<'s> {
    /// The question's name (link 0).
    Question,
    /// The target of the previous link's CNAME, as written (an
    /// uncompressed wire-form name in the snapshot).
    Target(&'s [u8]),
}

/// One link of the chain as [`walk`] leaves it.
#[derive(Debug, Clone, Copy)]
pub struct Link<'s> {
    pub name: LinkName<'s>,
    /// The zone that answered it (`None`: no visible zone holds the name).
    pub zone: Option<ZoneIdx>,
    /// The wildcard node that matched, if one did (its key).
    pub wildcard: Option<&'s [u8]>,
    /// The CNAME this link answered with (every link but the last, and
    /// the last one when it closes a loop).
    pub cname: Option<RRset<'s>>,
    /// The response-policy rule that matched this link's name (rule 1a).
    pub policy: Option<NameHit>,
}

const NO_LINK: Link<'static> = Link { name: LinkName::Question, zone: None, wildcard: None, cname: None, policy: None };

/// How a response-policy rule ends a walk (rule 1a).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyEnd {
    NxDomain,
    NoData,
    Refused,
    /// No reply at all.
    Drop,
    /// TC=1 and no records (a `tcp-only` rule, over UDP).
    Truncate,
}

/// What the walk is told about the query besides its question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkOpts {
    /// The query came over TCP (`tcp-only` rules then answer normally).
    pub tcp: bool,
    /// Apply response policies (off after an `allow`, and for "what would
    /// have been answered without the policy").
    pub policy: bool,
}

impl Default for WalkOpts {
    fn default() -> Self {
        WalkOpts { tcp: false, policy: true }
    }
}

/// How the last link ended.
#[derive(Debug, Clone, Copy)]
pub enum End<'s> {
    /// Records of the asked type (owner: the last link's name).
    Answer(RRset<'s>),
    /// The name exists without that type: NOERROR with this SOA.
    NoData(&'s Record),
    /// The name does not exist: NXDOMAIN with this SOA.
    NxDomain(&'s Record),
    /// The last link's name goes upstream.
    Upstream { route: Route, reason: UpstreamReason },
    /// The CNAME of the last link points back into the chain.
    Loop,
    /// More than [`MAX_CNAME_LINKS`] links.
    TooLong,
    /// A client in no VPC, with `unknown_clients: refuse`.
    Refused,
    /// A response-policy rule decided (the last link's `policy`).
    Policy(PolicyEnd),
}

/// The answering rules for one question, as references into the
/// snapshot: what the answer writer encodes. Builds
/// nothing on the heap.
#[derive(Debug, Clone)]
pub struct Walk<'s> {
    pub links: [Link<'s>; MAX_CNAME_LINKS + 1],
    pub len: usize,
    pub end: End<'s>,
    pub authoritative: bool,
    pub source: Source,
    /// The client's vSwitch zone (endpoint addresses there come first).
    pub az: u32,
    /// An `allow` rule matched a link: no policy applies to the rest.
    pub passthru: bool,
    /// A response-IP rule matched an address of the local answer.
    pub ip_hit: Option<u32>,
    /// Some policy rule matched (a link's `policy`, `passthru` or `ip_hit`).
    pub policy_hit: bool,
}

impl<'s> Walk<'s> {
    pub fn links(&self) -> &[Link<'s>] {
        &self.links[..self.len]
    }

    pub fn last(&self) -> &Link<'s> {
        &self.links[self.len.saturating_sub(1)]
    }

    /// The response code before any upstream part is added.
    pub fn rcode(&self) -> ResponseCode {
        match self.end {
            End::Answer(_) | End::NoData(_) | End::Upstream { .. } => ResponseCode::NoError,
            End::NxDomain(_) => ResponseCode::NXDomain,
            End::Loop | End::TooLong => ResponseCode::ServFail,
            End::Refused | End::Policy(PolicyEnd::Refused) => ResponseCode::Refused,
            End::Policy(PolicyEnd::NxDomain) => ResponseCode::NXDomain,
            End::Policy(_) => ResponseCode::NoError,
        }
    }
}

/// A wire-form name of the snapshot (a CNAME target) as a hickory
/// `Name`, for the cold paths.
pub fn wire_to_name(wire: &[u8]) -> Name {
    Name::from_bytes(wire).unwrap_or_else(|_| key_to_name(KeyBuf::from_wire(wire).key()))
}

/// Walks the chain for the question `q` (its name as a key) in `view`:
/// rule 1 for clients in no VPC, then per link rule 2 (zone selection),
/// rule 3 (in a zone) or rule 4 (no zone: upstream routing).
pub fn walk<'s>(snap: &'s Snapshot, view: View, q: &KeyBuf, qtype: RecordType) -> Walk<'s> {
    walk_opts(snap, view, q, qtype, WalkOpts::default())
}

/// [`walk`] with the transport and whether policies apply.
pub fn walk_opts<'s>(snap: &'s Snapshot, view: View, q: &KeyBuf, qtype: RecordType, opts: WalkOpts) -> Walk<'s> {
    let mut w = Walk {
        links: [NO_LINK; MAX_CNAME_LINKS + 1],
        len: 0,
        end: End::TooLong,
        authoritative: false,
        source: Source::Zone,
        az: NO_AZ,
        passthru: !opts.policy,
        ip_hit: None,
        policy_hit: false,
    };
    let row = snap.view_row(view);
    // No policy for this view: the one branch it costs.
    let policy = opts.policy && snap.policy.active(row);
    let vpc = match view {
        View::Vpc { vpc, az } => {
            w.az = az;
            Some(vpc)
        }
        View::Unknown => match unknown_client(snap) {
            Some(refused) => {
                w.end = refused;
                w.source = Source::Refused;
                return w;
            }
            None => None,
        },
    };
    let mut target_key;
    let mut key = q;
    for link in 0..=MAX_CNAME_LINKS {
        w.len = link + 1;
        if policy && !w.passthru {
            match apply_policy(snap, &mut w, row, key, link, qtype, opts.tcp) {
                Applied::Continue => {}
                Applied::End(end) => {
                    w.end = end;
                    return w;
                }
                Applied::Cname(rrset) => {
                    let Some(target) = follow_cname(&mut w, q, link, rrset) else { return w };
                    target_key = KeyBuf::from_wire(target);
                    key = &target_key;
                    continue;
                }
            }
        }
        let Some((zi, zone)) = vpc.and_then(|v| snap.select_zone(v, key)) else {
            let reason = if link == 0 { UpstreamReason::OutsideZones } else { UpstreamReason::CnameTarget };
            w.end = End::Upstream { route: snap.route_upstream(view, key), reason };
            if link == 0 {
                w.source = Source::Upstream;
            }
            return w;
        };
        w.links[link].zone = Some(zi);
        if link == 0 {
            w.authoritative = true;
            w.source = if zone.is_endpoint_names() { Source::Endpoint } else { Source::Zone };
        }
        let hit = zone.lookup(key, qtype);
        w.links[link].wildcard = hit.wildcard;
        match hit.matched {
            NodeMatch::Found(rrset) => {
                w.end = End::Answer(rrset);
                if policy && !w.passthru {
                    w.ip_hit = match_response_ip_policy(snap, row, rrset);
                    w.policy_hit |= w.ip_hit.is_some();
                }
                return w;
            }
            NodeMatch::Cname(rrset) => {
                let Some(target) = follow_cname(&mut w, q, link, rrset) else { return w };
                target_key = KeyBuf::from_wire(target);
                key = &target_key;
            }
            NodeMatch::NoData => {
                w.end = nodata(zone);
                return w;
            }
            NodeMatch::NxDomain if zone.recursive_proxy => {
                w.end = recursive_proxy(snap, view, key, zi);
                if link == 0 {
                    // The public answer replaces NXDOMAIN: not ours, so no AA.
                    w.authoritative = false;
                    w.source = Source::Upstream;
                }
                return w;
            }
            NodeMatch::NxDomain => {
                w.end = nxdomain(zone);
                return w;
            }
        }
    }
    w
}

/// What [`apply_policy`] leaves the walk to do.
enum Applied<'s> {
    /// No rule decided (none matched, `alert`, `allow`, `tcp-only` over
    /// TCP): the rules go on.
    Continue,
    End(End<'s>),
    /// A CNAME override: follow it, as a zone's CNAME.
    Cname(RRset<'s>),
}

/// Rule 1a, response policy: the first rule set bound to the view whose
/// trigger matches the link's name decides (exact before wildcard, the
/// more specific wildcard first); `allow` stops every later rule,
/// `alert` answers normally. Applied to the question and to every CNAME
/// target. One hash probe per label of the name; no allocation.
fn apply_policy<'s>(
    snap: &'s Snapshot,
    w: &mut Walk<'s>,
    row: usize,
    key: &KeyBuf,
    link: usize,
    qtype: RecordType,
    tcp: bool,
) -> Applied<'s> {
    let Some(hit) = snap.policy.match_name(row, key) else { return Applied::Continue };
    w.links[link].policy = Some(hit);
    w.policy_hit = true;
    let decided = |w: &mut Walk<'s>| {
        if link == 0 {
            // Not the zone's answer: no AA, and the policy is the source.
            w.authoritative = false;
            w.source = Source::Policy;
        }
    };
    let end = match snap.policy.rule(hit.rule).action {
        PolicyAction::Alert => return Applied::Continue,
        PolicyAction::Allow => {
            w.passthru = true;
            return Applied::Continue;
        }
        PolicyAction::TcpOnly if tcp => {
            w.passthru = true;
            return Applied::Continue;
        }
        PolicyAction::TcpOnly => PolicyEnd::Truncate,
        PolicyAction::NxDomain => PolicyEnd::NxDomain,
        PolicyAction::NoData => PolicyEnd::NoData,
        PolicyAction::Refused => PolicyEnd::Refused,
        PolicyAction::Drop => PolicyEnd::Drop,
        PolicyAction::Records(i) => {
            decided(w);
            return match override_rrset(&snap.policy.data[i as usize], qtype) {
                Some(rrset) => Applied::End(End::Answer(rrset)),
                None => Applied::End(End::Policy(PolicyEnd::NoData)),
            };
        }
        PolicyAction::Cname(i) => {
            decided(w);
            let rrset = snap.policy.data[i as usize][0].view();
            if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
                return Applied::End(End::Answer(rrset));
            }
            return Applied::Cname(rrset);
        }
    };
    decided(w);
    Applied::End(End::Policy(end))
}

/// Rule 1a for answers: an A or AAAA record of `rrset` inside a
/// response-IP rule's network (of a rule set bound to the view) makes
/// that rule decide the answer; the first rule set in order wins.
pub fn match_response_ip_policy(snap: &Snapshot, row: usize, rrset: RRset<'_>) -> Option<u32> {
    if !matches!(rrset.rtype(), RecordType::A | RecordType::AAAA) || !snap.policy.has_ip_rules(row) {
        return None;
    }
    snap.policy.match_ips(row, tails(rrset.wire()).filter_map(address_of))
}

/// Rule 1 for a source in no VPC: `refuse` ends the walk with REFUSED;
/// `forward` goes on without private data (no zone is visible).
fn unknown_client(snap: &Snapshot) -> Option<End<'static>> {
    match snap.unknown_clients {
        UnknownClients::Refuse => Some(End::Refused),
        UnknownClients::Forward => None,
    }
}

/// Rule 3, CNAME chase: the next link's name, unless the target is
/// already a name of the chain (a loop) or the chain is at its limit.
/// A CNAME link, from a zone or a policy override: recorded, and its
/// target named as the next link; `None` when the chain must end here
/// (a loop or too long: the walk's end and source are set).
fn follow_cname<'s>(w: &mut Walk<'s>, q: &KeyBuf, link: usize, rrset: RRset<'s>) -> Option<&'s [u8]> {
    w.links[link].cname = Some(rrset);
    match chase_cname(w, q, link, rrset) {
        Ok(target) => {
            w.links[link + 1].name = LinkName::Target(target);
            Some(target)
        }
        Err(end) => {
            w.end = end;
            w.source = Source::Failure;
            None
        }
    }
}

fn chase_cname<'s>(w: &Walk<'s>, q: &KeyBuf, link: usize, rrset: RRset<'s>) -> Result<&'s [u8], End<'s>> {
    let target = rrset.cname_target().ok_or(End::Loop)?;
    // Wire names compare case-folded: a length byte is never a letter.
    let seen = KeyBuf::from_wire(target).key() == q.key()
        || w.links[1..=link].iter().any(|l| matches!(l.name, LinkName::Target(n) if n.eq_ignore_ascii_case(target)));
    if seen {
        return Err(End::Loop);
    }
    if link == MAX_CNAME_LINKS {
        return Err(End::TooLong);
    }
    Ok(target)
}

/// Rule 3, a name missing from a `recursive_proxy` zone: the public
/// answer, through the forward zones and upstreams as in rule 4.
fn recursive_proxy<'s>(snap: &Snapshot, view: View, key: &KeyBuf, zone: ZoneIdx) -> End<'s> {
    End::Upstream { route: snap.route_upstream(view, key), reason: UpstreamReason::MissingInProxyZone(zone) }
}

/// Rule 3, a name missing from its zone: NXDOMAIN with the zone's SOA.
fn nxdomain(zone: &Zone) -> End<'_> {
    End::NxDomain(&zone.negative_soa)
}

/// Rule 3, a name that exists without the asked type: NOERROR, no
/// answer, the zone's SOA.
fn nodata(zone: &Zone) -> End<'_> {
    End::NoData(&zone.negative_soa)
}

/// Answers `qname`/`qtype` for `view` from `snap`. With `trace`, records
/// each step in `Resolution::steps` (costs allocations; off on the hot path).
pub fn resolve<'s>(snap: &'s Snapshot, view: View, qname: &Name, qtype: RecordType, trace: bool) -> Resolution<'s> {
    resolve_opts(snap, view, qname, qtype, trace, WalkOpts::default())
}

/// [`resolve`] with the transport and whether policies apply.
pub fn resolve_opts<'s>(snap: &'s Snapshot, view: View, qname: &Name, qtype: RecordType, trace: bool, opts: WalkOpts) -> Resolution<'s> {
    let w = walk_opts(snap, view, &KeyBuf::new(qname), qtype, opts);
    let mut res = Resolution::new();
    res.rcode = w.rcode();
    res.authoritative = w.authoritative;
    res.source = w.source;
    if let End::Refused = w.end {
        if trace {
            res.steps.push(Step::Refused);
        }
        return res;
    }
    for (i, l) in w.links().iter().enumerate() {
        let name = match l.name {
            LinkName::Question => qname.clone(),
            LinkName::Target(n) => wire_to_name(n),
        };
        let wildcard = if trace { l.wildcard.map(key_to_name) } else { None };
        if trace {
            if let Some(h) = l.policy {
                res.steps.push(Step::Policy { name: name.clone(), rule: h.rule, skip: h.skip });
            }
            if l.zone.is_some()
                || l.policy.is_none()
                || matches!(
                    l.policy.map(|h| snap.policy.rule(h.rule).action),
                    Some(PolicyAction::Alert | PolicyAction::Allow | PolicyAction::TcpOnly)
                )
            {
                res.steps.push(match l.zone {
                    Some(zone) => Step::Zone { name: name.clone(), zone },
                    None => Step::NoZone { name: name.clone() },
                });
            }
        }
        if let Some(c) = l.cname {
            if trace && let Some(t) = c.cname_target() {
                res.steps.push(Step::Cname { from: name.clone(), to: wire_to_name(t), wildcard });
            }
            res.answers.extend(c.records(&name));
            continue;
        }
        if i + 1 != w.len {
            continue;
        }
        let zone = l.zone.unwrap_or(0);
        match w.end {
            End::Answer(rrset) => {
                if trace {
                    res.steps.push(Step::Answer { name: name.clone(), rtype: rrset.rtype(), count: rrset.count(), wildcard });
                    if rrset.routed() {
                        res.steps.push(routing_step(snap, rrset, &name));
                    }
                }
                push_rrset(&mut res, rrset, &name, w.az);
                if let (true, Some(rule)) = (trace, w.ip_hit) {
                    res.steps.push(Step::PolicyIp { rule });
                }
            }
            End::Policy(p) => {
                if matches!(p, PolicyEnd::Drop | PolicyEnd::Truncate) {
                    res.policy_end = Some(p);
                }
            }
            End::NoData(soa) => {
                if trace {
                    res.steps.push(Step::NoData { name, zone });
                }
                res.authority.push(soa);
            }
            End::NxDomain(soa) => {
                if trace {
                    res.steps.push(Step::NxDomain { name, zone });
                }
                res.authority.push(soa);
            }
            End::Upstream { route, reason } => {
                if trace {
                    if let UpstreamReason::MissingInProxyZone(zone) = reason {
                        res.steps.push(Step::ProxyMissing { name: name.clone(), zone });
                    }
                    res.steps.push(Step::Upstream { name: name.clone(), qtype, route });
                }
                res.upstream = Some(UpstreamQuery { name, qtype, route, reason });
            }
            End::Loop | End::TooLong | End::Refused => {}
        }
    }
    if trace {
        match w.end {
            End::Loop => {
                if let Some(t) = w.last().cname.and_then(|c| c.cname_target()) {
                    res.steps.push(Step::Loop { name: wire_to_name(t) });
                }
            }
            End::TooLong => res.steps.push(Step::TooLong),
            _ => {}
        }
    }
    res
}

/// Appends an RRset owned by `owner` (the link's name: a wildcard's
/// records take the query name); endpoint addresses in the client's own
/// zone come first, the order otherwise kept.
fn push_rrset(res: &mut Resolution<'_>, rrset: RRset<'_>, owner: &Name, az: u32) {
    let mut records: Vec<(bool, Record)> = rrset.records(owner).into_iter().enumerate().map(|(i, r)| (rrset.az(i) != az, r)).collect();
    if az != NO_AZ && rrset.has_az(az) {
        records.sort_by_key(|(other, _)| *other);
    }
    res.answers.extend(records.into_iter().map(|(_, r)| r));
}

/// Each record of a routed set with its weight, failover role and health
/// target's state and last result (for `explain`).
fn routing_step(snap: &Snapshot, rrset: RRset<'_>, name: &Name) -> Step {
    use crate::snapshot::zone::{ROLE_PRIMARY, ROLE_SECONDARY};
    let records = rrset
        .records(name)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let route = rrset.route(i);
            let mut parts = Vec::new();
            if route.weighted {
                parts.push(format!("weight {} ({} per answer)", route.weight, route.answers.max(1)));
            }
            match route.role {
                ROLE_PRIMARY => parts.push("failover primary".to_string()),
                ROLE_SECONDARY => parts.push("failover secondary".to_string()),
                _ => {}
            }
            if let Some((slot, state)) = snap.health.describe(route.health).filter(|_| route.health != crate::snapshot::health::NO_HEALTH) {
                let last =
                    slot.last.as_ref().map(|l| format!(", last check {}", l.detail)).unwrap_or_else(|| ", not checked yet".to_string());
                parts.push(format!("health {}: {}{last}", slot.target.check, state.label()));
            }
            format!("{} {}", r.data, parts.join(", "))
        })
        .collect();
    Step::Routing { name: name.clone(), rtype: rrset.rtype(), records }
}
