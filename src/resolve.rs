//! SPEC.md §3 as a pure function: (snapshot, view, question) → what to
//! answer from local data and what, if anything, must go upstream. No I/O:
//! the server and `pzdns explain` both call it, and it is unit-tested
//! without sockets.
//!
//! ```text
//! view ─► zone (longest suffix among the VPC's zones) ─► node / wildcard
//!            │ none                                        │ CNAME: next link, same view
//!            ▼                                             ▼ missing + recursive_proxy
//!       forward zone / upstreams  ◄──────────────────────── upstream
//! ```

use std::borrow::Cow;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::config::UnknownClients;
use crate::snapshot::names::{KeyBuf, key_to_name};
use crate::snapshot::zone::{NO_AZ, NodeMatch, RRset};
use crate::snapshot::{Snapshot, View, ZoneIdx};

/// Most CNAME links followed for one question (SPEC.md §3).
pub const MAX_CNAME_LINKS: usize = 8;

/// Where an upstream question goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A `forward_zones` entry (index into `Snapshot::forward_zones`).
    ForwardZone(u32),
    /// The default `upstreams`.
    Default,
}

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

/// Where the answer comes from, for metrics and the query log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Zone,
    Endpoint,
    Upstream,
    Refused,
    Failure,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Zone => "zone",
            Source::Endpoint => "endpoint",
            Source::Upstream => "upstream",
            Source::Refused => "refused",
            Source::Failure => "failure",
        }
    }
}

/// One step of the reasoning, recorded only when tracing (for `explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Zone { name: Name, zone: ZoneIdx },
    NoZone { name: Name },
    Answer { name: Name, rtype: RecordType, count: usize, wildcard: Option<Name> },
    Cname { from: Name, to: Name, wildcard: Option<Name> },
    NoData { name: Name, zone: ZoneIdx },
    NxDomain { name: Name, zone: ZoneIdx },
    ProxyMissing { name: Name, zone: ZoneIdx },
    Upstream { name: Name, qtype: RecordType, route: Route },
    Loop { name: Name },
    TooLong,
    Refused,
}

/// The outcome for one question.
#[derive(Debug, Clone)]
pub struct Resolution<'s> {
    pub rcode: ResponseCode,
    /// AA: set when the first link was answered from local data.
    pub authoritative: bool,
    pub answers: Vec<Cow<'s, Record>>,
    /// SOA for negative answers (RFC 2308).
    pub authority: Vec<&'s Record>,
    pub upstream: Option<UpstreamQuery>,
    pub source: Source,
    pub steps: Vec<Step>,
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

/// Answers `qname`/`qtype` for `view` from `snap`. With `trace`, records
/// each step in `Resolution::steps` (costs allocations; off on the hot path).
pub fn resolve<'s>(snap: &'s Snapshot, view: View, qname: &Name, qtype: RecordType, trace: bool) -> Resolution<'s> {
    let mut res = Resolution::new();
    let (vpc, az) = match view {
        View::Vpc { vpc, az } => (Some(vpc), az),
        View::Unknown => match snap.unknown_clients {
            UnknownClients::Refuse => {
                res.rcode = ResponseCode::Refused;
                res.source = Source::Refused;
                if trace {
                    res.steps.push(Step::Refused);
                }
                return res;
            }
            UnknownClients::Forward => (None, NO_AZ),
        },
    };

    // The current link's name: the question, then each CNAME target.
    let mut name: Cow<'_, Name> = Cow::Borrowed(qname);
    for link in 0..=MAX_CNAME_LINKS {
        let q = KeyBuf::new(&name);
        let zone = vpc.and_then(|v| snap.find_zone(v, &q));
        let Some((zi, zone)) = zone else {
            if trace {
                res.steps.push(Step::NoZone { name: name.clone().into_owned() });
            }
            let reason = if link == 0 { UpstreamReason::OutsideZones } else { UpstreamReason::CnameTarget };
            go_upstream(snap, view, &q, name.into_owned(), qtype, reason, &mut res, trace);
            if link == 0 {
                res.source = Source::Upstream;
            }
            return res;
        };
        if trace {
            res.steps.push(Step::Zone { name: name.clone().into_owned(), zone: zi });
        }
        if link == 0 {
            res.authoritative = true;
            let endpoint = matches!(zone.kind, crate::config::zones_dir::ZoneOrigin::Endpoint(_));
            res.source = if endpoint { Source::Endpoint } else { Source::Zone };
        }
        let hit = zone.lookup(&q, qtype);
        let wildcard_name = |trace: bool| -> Option<Name> { if trace { hit.wildcard.map(key_to_name) } else { None } };
        match hit.matched {
            NodeMatch::Found(rrset) => {
                if trace {
                    res.steps.push(Step::Answer {
                        name: name.clone().into_owned(),
                        rtype: rrset.rtype,
                        count: rrset.records.len(),
                        wildcard: wildcard_name(true),
                    });
                }
                push_rrset(&mut res, rrset, hit.wildcard.is_some().then_some(&*name), az);
                return res;
            }
            NodeMatch::Cname(rec) => {
                let RData::CNAME(target) = &rec.data else {
                    res.rcode = ResponseCode::ServFail;
                    return res;
                };
                let target = target.0.clone();
                if trace {
                    res.steps.push(Step::Cname { from: name.clone().into_owned(), to: target.clone(), wildcard: wildcard_name(true) });
                }
                if hit.wildcard.is_some() {
                    let mut r = rec.clone();
                    r.name = name.clone().into_owned();
                    res.answers.push(Cow::Owned(r));
                } else {
                    res.answers.push(Cow::Borrowed(rec));
                }
                // A loop: the target is already an owner in the chain.
                if res.answers.iter().any(|a| a.name == target) {
                    if trace {
                        res.steps.push(Step::Loop { name: target });
                    }
                    res.rcode = ResponseCode::ServFail;
                    res.source = Source::Failure;
                    return res;
                }
                name = Cow::Owned(target);
            }
            NodeMatch::NoData => {
                if trace {
                    res.steps.push(Step::NoData { name: name.clone().into_owned(), zone: zi });
                }
                res.authority.push(&zone.negative_soa);
                return res;
            }
            NodeMatch::NxDomain => {
                if zone.recursive_proxy {
                    if trace {
                        res.steps.push(Step::ProxyMissing { name: name.clone().into_owned(), zone: zi });
                    }
                    if link == 0 {
                        // The public answer replaces NXDOMAIN: not ours, so no AA.
                        res.authoritative = false;
                        res.source = Source::Upstream;
                    }
                    go_upstream(snap, view, &q, name.into_owned(), qtype, UpstreamReason::MissingInProxyZone(zi), &mut res, trace);
                    return res;
                }
                if trace {
                    res.steps.push(Step::NxDomain { name: name.clone().into_owned(), zone: zi });
                }
                res.rcode = ResponseCode::NXDomain;
                res.authority.push(&zone.negative_soa);
                return res;
            }
        }
    }
    if trace {
        res.steps.push(Step::TooLong);
    }
    res.rcode = ResponseCode::ServFail;
    res.source = Source::Failure;
    res
}

#[allow(clippy::too_many_arguments)]
fn go_upstream(
    snap: &Snapshot,
    view: View,
    q: &KeyBuf,
    name: Name,
    qtype: RecordType,
    reason: UpstreamReason,
    res: &mut Resolution<'_>,
    trace: bool,
) {
    let route = snap.find_forward(view, q).map_or(Route::Default, Route::ForwardZone);
    if trace {
        res.steps.push(Step::Upstream { name: name.clone(), qtype, route });
    }
    res.upstream = Some(UpstreamQuery { name, qtype, route, reason });
}

/// Appends an RRset; a wildcard's records take the query name as owner, and
/// endpoint addresses in the client's own zone come first.
fn push_rrset<'s>(res: &mut Resolution<'s>, rrset: &'s RRset, owner: Option<&Name>, az: u32) {
    let start = res.answers.len();
    for rec in rrset.records.iter() {
        match owner {
            Some(o) => {
                let mut r = rec.clone();
                r.name = o.clone();
                res.answers.push(Cow::Owned(r));
            }
            None => res.answers.push(Cow::Borrowed(rec)),
        }
    }
    if az != NO_AZ && !rrset.azs.is_empty() && rrset.azs.contains(&az) {
        // Stable partition: own-zone addresses first, order otherwise kept.
        let mut tagged: Vec<(bool, Cow<'s, Record>)> =
            res.answers.drain(start..).zip(rrset.azs.iter()).map(|(r, a)| (*a != az, r)).collect();
        tagged.sort_by_key(|(other, _)| *other);
        res.answers.extend(tagged.into_iter().map(|(_, r)| r));
    }
}
