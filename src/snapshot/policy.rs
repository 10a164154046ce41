//! Response policies as the query path reads them (docs/REFERENCE.md#response-policies).
//!
//! Every QNAME trigger of every rule set is in one hash map, keyed by the
//! trigger name in key form: a query name is matched by one probe per
//! label (its own name for exact triggers, each ancestor for `*.`
//! wildcards), on sub-slices of the query's key, allocating nothing.
//! A key's entry lists the rule sets that have a trigger there; each
//! view row (a VPC, or sources in no VPC) ranks the rule sets bound to it,
//! and the lowest rank wins, then the most specific trigger (exact before
//! wildcard, longer wildcard before shorter). Response-IP triggers are a
//! longest-prefix table per rule set, asked in rank order.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use hickory_proto::rr::{RData, Record, RecordType};
use prometheus_client::metrics::counter::Counter;
use rustc_hash::{FxHashMap, FxHashSet};

use super::VpcIdx;
use super::views::CidrTable;
use super::zone::{RRset, RRsetBuf};
use crate::config::policy::{Action, ActionKind, PolicyDef, Trigger};
use crate::config::{Diagnostics, Pos};
use crate::dns::names::{KeyBuf, NameKey, key_labels, name_key};

/// No rule / no rank.
pub const NONE: u32 = u32::MAX;

/// What a rule does, as the query path reads it: local data (RRsets, one
/// per type) and a CNAME override (one CNAME RRset, followed like a zone's)
/// by index into [`Policies::data`], so that a rule stays small.
pub type PolicyAction = Action<u32, u32>;

/// What kind of trigger a rule has (its name is in the index, not here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    /// The name itself.
    Exact,
    /// `*.name`: the names below it.
    Wildcard,
    /// A domain-list entry: the name and the names below it.
    Domain,
    ResponseIp,
}

/// One rule: its set, action and where it was written.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub set: u32,
    pub trigger: TriggerKind,
    pub action: PolicyAction,
    /// Index into [`Policies::files`].
    pub file: u32,
    pub pos: Pos,
}

/// One rule set (an entry of a policy's `rules:`).
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// `policy: what`: the metric label and the EDE EXTRA-TEXT.
    pub label: &'static str,
    pub policy: u32,
    /// EDE INFO-CODE of its blocks (0: none).
    pub ede: u16,
    /// The action kinds its rules have (bit per [`ActionKind::ALL`] index).
    kinds: u8,
}

/// The rule sets with a trigger at one name: a chain through `Policies::trigs`.
#[derive(Debug, Clone, Copy)]
struct Trig {
    set: u32,
    /// The rule for the name itself, and for names below it (`*.`).
    exact: u32,
    wild: u32,
    next: u32,
}

/// A QNAME match: the rule, and which name matched (the query name
/// `skip` labels up; a wildcard for `skip > 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameHit {
    pub rule: u32,
    pub skip: usize,
}

#[derive(Debug, Default)]
pub struct Policies {
    pub names: Vec<String>,
    pub sets: Vec<RuleSet>,
    pub rules: Vec<Rule>,
    pub files: Vec<Arc<Path>>,
    /// Local data of override rules.
    pub data: Vec<Box<[RRsetBuf]>>,
    index: FxHashMap<NameKey, u32>,
    trigs: Vec<Trig>,
    /// The most labels of any trigger name: longer suffixes cannot match.
    max_labels: usize,
    /// Bit `n` set: some trigger name has `n` labels. A suffix of another
    /// length cannot match, so it is not probed (in a large table each
    /// probe is a cache miss).
    label_counts: u128,
    /// Per view row (VPC index; the last row is sources in no VPC): the
    /// rank of each rule set, [`NONE`] when it is not bound there.
    ranks: Vec<Box<[u32]>>,
    /// Per view row: whether any rule set applies (the one branch taken
    /// when there is no policy).
    active: Box<[bool]>,
    /// Per view row: the rule sets with response-IP triggers, by rank.
    ip_sets: Vec<Box<[u32]>>,
    ip_tables: Vec<CidrTable<u32>>,
    /// Hit counters, one per rule set and action kind.
    hits: Box<[OnceLock<Counter>]>,
    /// Problems that did not stop the load.
    pub warnings: Vec<String>,
}

/// Rule-set labels as `&'static str` (the EDE EXTRA-TEXT is static text):
/// each distinct label is kept once for the life of the process, so
/// reloads add nothing unless the labels themselves change.
fn intern(s: &str) -> &'static str {
    static SEEN: OnceLock<Mutex<FxHashSet<&'static str>>> = OnceLock::new();
    let mut seen = SEEN.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = seen.get(s) {
        return s;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    seen.insert(leaked);
    leaked
}

impl Policies {
    /// Compiles the policy files for `vpcs` VPCs (ids → index in `by_id`).
    pub fn build(defs: Vec<PolicyDef>, vpcs: usize, by_id: &dyn Fn(&str) -> Option<VpcIdx>, diags: &mut Diagnostics) -> Policies {
        let mut p = Policies::default();
        let rows = vpcs + 1;
        let mut bound: Vec<Vec<u32>> = vec![Vec::new(); rows];
        let mut files: FxHashMap<Arc<Path>, u32> = FxHashMap::default();
        let mut seen_names: FxHashMap<String, (std::path::PathBuf, Pos)> = FxHashMap::default();
        for def in defs {
            if let Some((first, at)) = seen_names.get(&def.name) {
                diags.push(
                    &def.path,
                    def.pos,
                    format!("policy `{}` is also defined in {}:{}; give each policy its own name", def.name, first.display(), at.line),
                );
                continue;
            }
            seen_names.insert(def.name.clone(), (def.path.clone(), def.pos));
            p.warnings.extend(def.warnings);
            let pi = p.names.len() as u32;
            p.names.push(def.name.clone());
            let rows_of: Vec<usize> = match &def.vpcs {
                None => (0..rows).collect(),
                Some(list) => list.iter().filter_map(|v| by_id(&v.value)).map(|v| v as usize).collect(),
            };
            for set in def.sets {
                let si = p.sets.len() as u32;
                let mut kinds = 0u8;
                let mut ips: CidrTable<u32> = CidrTable::default();
                for r in set.rules {
                    let fi = *files.entry(r.path.clone()).or_insert_with(|| {
                        p.files.push(r.path.clone());
                        p.files.len() as u32 - 1
                    });
                    let action = match r.action {
                        Action::NxDomain => PolicyAction::NxDomain,
                        Action::NoData => PolicyAction::NoData,
                        Action::Refused => PolicyAction::Refused,
                        Action::Drop => PolicyAction::Drop,
                        Action::TcpOnly => PolicyAction::TcpOnly,
                        Action::Alert => PolicyAction::Alert,
                        Action::Allow => PolicyAction::Allow,
                        Action::Records(recs) => {
                            p.data.push(group(recs));
                            PolicyAction::Records(p.data.len() as u32 - 1)
                        }
                        Action::Cname((target, ttl)) => {
                            let owner = match &r.trigger {
                                Trigger::Name { name, .. } | Trigger::Domain(name) => name.clone(),
                                Trigger::ResponseIp(_) => hickory_proto::rr::Name::root(),
                            };
                            let rec = Record::from_rdata(owner, ttl, RData::CNAME(hickory_proto::rr::rdata::CNAME(target)));
                            p.data.push(Box::new([RRsetBuf::new(RecordType::CNAME, &[rec])]));
                            PolicyAction::Cname(p.data.len() as u32 - 1)
                        }
                    };
                    kinds |= 1 << action.kind() as u8;
                    let ri = p.rules.len() as u32;
                    let trigger = match &r.trigger {
                        Trigger::Name { wildcard: false, .. } => TriggerKind::Exact,
                        Trigger::Name { wildcard: true, .. } => TriggerKind::Wildcard,
                        Trigger::Domain(_) => TriggerKind::Domain,
                        Trigger::ResponseIp(_) => TriggerKind::ResponseIp,
                    };
                    p.rules.push(Rule { set: si, trigger, action, file: fi, pos: r.pos });
                    match r.trigger {
                        Trigger::Name { name, wildcard } => p.add(name_key(&name), si, ri, !wildcard, wildcard),
                        Trigger::Domain(name) => p.add(name_key(&name), si, ri, true, true),
                        Trigger::ResponseIp(net) => {
                            // The first of two equal networks wins, as the first trigger does.
                            ips.insert(net, ri);
                        }
                    }
                }
                p.ip_tables.push(ips);
                p.sets.push(RuleSet { label: intern(&set.label), policy: pi, ede: set.ede, kinds });
                for &row in &rows_of {
                    bound[row].push(si);
                }
            }
        }
        p.ranks = bound
            .iter()
            .map(|sets| {
                let mut r = vec![NONE; p.sets.len()];
                for (rank, s) in sets.iter().enumerate() {
                    r[*s as usize] = rank as u32;
                }
                r.into_boxed_slice()
            })
            .collect();
        p.active = bound.iter().map(|s| !s.is_empty()).collect();
        p.ip_sets = bound.iter().map(|sets| sets.iter().copied().filter(|s| !p.ip_tables[*s as usize].is_empty()).collect()).collect();
        p.hits = (0..p.sets.len() * ActionKind::ALL.len()).map(|_| OnceLock::new()).collect();
        p.index.shrink_to_fit();
        p.trigs.shrink_to_fit();
        p
    }

    /// Adds a trigger of rule `ri` (set `si`) at `key`: for the name
    /// itself (`exact`) and/or the names below it (`wild`). Within a set,
    /// the first trigger of a name wins.
    fn add(&mut self, key: NameKey, si: u32, ri: u32, exact: bool, wild: bool) {
        let labels = key_labels(&key);
        self.max_labels = self.max_labels.max(labels);
        self.label_counts |= 1u128 << labels.min(127);
        let trigs = &mut self.trigs;
        let new = |trigs: &mut Vec<Trig>, next: u32| {
            trigs.push(Trig { set: si, exact: if exact { ri } else { NONE }, wild: if wild { ri } else { NONE }, next });
            trigs.len() as u32 - 1
        };
        match self.index.get_mut(&key) {
            None => {
                let t = new(trigs, NONE);
                self.index.insert(key, t);
            }
            Some(head) => {
                let mut at = *head;
                while at != NONE {
                    let t = &mut trigs[at as usize];
                    if t.set == si {
                        if exact && t.exact == NONE {
                            t.exact = ri;
                        }
                        if wild && t.wild == NONE {
                            t.wild = ri;
                        }
                        return;
                    }
                    at = t.next;
                }
                *head = new(trigs, *head);
            }
        }
    }

    /// Whether any rule set applies to view row `row`.
    #[inline]
    pub fn active(&self, row: usize) -> bool {
        self.active.get(row).copied().unwrap_or(false)
    }

    /// The QNAME rule deciding `q` for view row `row`: of the rule sets
    /// bound there, the first in order with a trigger matching; in it, the
    /// exact trigger, else the most specific wildcard. One hash probe per
    /// label, no allocation.
    pub fn match_name(&self, row: usize, q: &KeyBuf) -> Option<NameHit> {
        let ranks = self.ranks.get(row)?;
        let n = q.labels();
        let mut best: Option<(u32, NameHit)> = None;
        for skip in n.saturating_sub(self.max_labels)..=n {
            if self.label_counts & (1u128 << (n - skip).min(127)) == 0 {
                continue;
            }
            let Some(&head) = self.index.get(q.suffix(skip)) else { continue };
            let mut at = head;
            while let Some(t) = self.trigs.get(at as usize) {
                at = t.next;
                let rank = ranks[t.set as usize];
                let rule = if skip == 0 { t.exact } else { t.wild };
                if rank == NONE || rule == NONE || best.is_some_and(|(b, _)| b <= rank) {
                    continue;
                }
                best = Some((rank, NameHit { rule, skip }));
            }
            if best.is_some_and(|(b, _)| b == 0) {
                break;
            }
        }
        best.map(|(_, h)| h)
    }

    /// The response-IP rule for an address in an answer, for view row
    /// `row`: the first rule set in order whose networks hold it (the most
    /// specific network of that set).
    pub fn match_ip(&self, row: usize, ip: std::net::IpAddr) -> Option<u32> {
        self.match_ips(row, std::iter::once(ip))
    }

    /// [`Self::match_ip`] for the addresses of one answer: the rule of the
    /// first rule set in order that holds any of them.
    pub fn match_ips(&self, row: usize, ips: impl Iterator<Item = std::net::IpAddr>) -> Option<u32> {
        let sets = self.ip_sets.get(row)?;
        let mut best: Option<(usize, u32)> = None;
        for ip in ips {
            for (rank, s) in sets.iter().enumerate() {
                if best.is_some_and(|b| b.0 <= rank) {
                    break;
                }
                if let Some(r) = self.ip_tables[*s as usize].lookup(ip) {
                    best = Some((rank, r));
                    break;
                }
            }
        }
        best.map(|b| b.1)
    }

    /// Whether view row `row` has response-IP rules at all.
    #[inline]
    pub fn has_ip_rules(&self, row: usize) -> bool {
        self.ip_sets.get(row).is_some_and(|s| !s.is_empty())
    }

    pub fn rule(&self, i: u32) -> &Rule {
        &self.rules[i as usize]
    }

    pub fn set_of(&self, rule: u32) -> &RuleSet {
        &self.sets[self.rules[rule as usize].set as usize]
    }

    /// Where rule `i` was written, as `path:line:col`.
    pub fn origin(&self, i: u32) -> String {
        let r = self.rule(i);
        let path = self.files[r.file as usize].display();
        if r.pos.line == 0 { path.to_string() } else { format!("{path}:{}:{}", r.pos.line, r.pos.column) }
    }

    /// Counts a hit of rule `i`.
    pub fn count(&self, i: u32, kind: ActionKind) {
        let set = self.rules[i as usize].set as usize;
        let slot = &self.hits[set * ActionKind::ALL.len() + kind as usize];
        slot.get_or_init(Counter::default).inc();
    }

    /// Puts each rule set's counters in `family`, at 0 for every action
    /// its rules have, before the snapshot serves.
    pub fn register(&self, family: &prometheus_client::metrics::family::Family<crate::metrics::PolicyLabels, Counter>) {
        for (si, s) in self.sets.iter().enumerate() {
            for k in ActionKind::ALL {
                if s.kinds & (1 << k as u8) == 0 {
                    continue;
                }
                let labels = crate::metrics::PolicyLabels {
                    policy: self.names[s.policy as usize].clone(),
                    rule_set: s.label.to_string(),
                    action: k.as_str(),
                };
                let _ = self.hits[si * ActionKind::ALL.len() + k as usize].set(family.get_or_create(&labels).clone());
            }
        }
    }

    /// Rules held (all rule sets).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

/// Local data grouped into RRsets by type, in the order first written.
fn group(recs: Vec<Record>) -> Box<[RRsetBuf]> {
    let mut sets: Vec<(RecordType, Vec<Record>)> = Vec::new();
    for r in recs {
        let t = r.record_type();
        match sets.iter_mut().find(|s| s.0 == t) {
            Some(s) => s.1.push(r),
            None => sets.push((t, vec![r])),
        }
    }
    sets.into_iter()
        .map(|(t, mut v)| {
            // One TTL per RRset (RFC 2181 §5.2): the smallest given.
            let ttl = v.iter().map(|r| r.ttl).min().unwrap_or(0);
            for r in &mut v {
                r.ttl = ttl;
            }
            RRsetBuf::new(t, &v)
        })
        .collect()
}

/// The local data of an override for `qtype`: its RRset, `None` when
/// the data has no RRset of that type (NODATA).
pub fn override_rrset(data: &[RRsetBuf], qtype: RecordType) -> Option<RRset<'_>> {
    if qtype == RecordType::ANY {
        return data.first().map(RRsetBuf::view);
    }
    data.iter().map(RRsetBuf::view).find(|s| s.rtype() == qtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policy::RuleSetDef;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    fn rule(t: Trigger, a: Action, line: u32) -> crate::config::policy::RuleDef {
        crate::config::policy::RuleDef { trigger: t, action: a, path: Arc::from(Path::new("p.yaml")), pos: Pos::new(line, 1) }
    }

    fn name(s: &str, wildcard: bool) -> Trigger {
        Trigger::Name { name: Name::from_str(s).unwrap(), wildcard }
    }

    #[test]
    fn first_set_then_exact_then_most_specific_wildcard() {
        let set = |label: &str, rules| RuleSetDef { label: label.into(), ede: 15, rules, path: "p.yaml".into(), pos: Pos::new(1, 1) };
        let def = PolicyDef {
            name: "p".into(),
            path: "p.yaml".into(),
            pos: Pos::new(1, 1),
            vpcs: None,
            sets: vec![
                set("a", vec![rule(name("ok.bad.example.", false), Action::Allow, 1)]),
                set(
                    "b",
                    vec![
                        rule(name("bad.example.", true), Action::NxDomain, 2),
                        rule(name("x.bad.example.", true), Action::NoData, 3),
                        rule(name("x.bad.example.", false), Action::Refused, 4),
                        rule(Trigger::Domain(Name::from_str("feed.example.").unwrap()), Action::Drop, 5),
                    ],
                ),
            ],
            warnings: vec![],
        };
        let mut d = Diagnostics::new();
        let p = Policies::build(vec![def], 1, &|_| Some(0), &mut d);
        let hit = |n: &str| p.match_name(0, &KeyBuf::new(&Name::from_str(n).unwrap())).map(|h| (p.rule(h.rule).pos.line, h.skip));
        assert_eq!(hit("ok.bad.example."), Some((1, 0)), "the first set decides");
        assert_eq!(hit("bad.example."), None, "a wildcard does not match its own parent");
        assert_eq!(hit("a.bad.example."), Some((2, 1)));
        assert_eq!(hit("x.bad.example."), Some((4, 0)), "exact beats wildcard");
        assert_eq!(hit("y.x.BAD.example."), Some((3, 1)), "the more specific wildcard");
        assert_eq!(hit("feed.example."), Some((5, 0)));
        assert_eq!(hit("a.b.feed.example."), Some((5, 2)));
        assert_eq!(hit("other.example."), None);
        assert!(p.active(0) && p.active(1));
    }
}
