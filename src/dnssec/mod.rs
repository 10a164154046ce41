//! DNSSEC validation (RFC 4033–4035, RFC 5155, RFC 6840, RFC 8624, RFC
//! 9276) of answers from outside: a chain of trust from the trust anchors
//! down (DS → DNSKEY → RRSIG), then each RRset of the answer and its
//! denial proofs.
//!
//! ```text
//! answer RRset ─► its signer's zone ─► zone_keys: anchor DNSKEY ─► DS of each label below
//!                  (verified with the zone above) ─► DNSKEY matching a DS ─► … ─► the signer's keys
//!              ─► RRSIG checked (window, labels, signer) ─► Secure / Insecure / Bogus
//! ```
//! The validator never sends anything itself: DS and DNSKEY sets come
//! from a [`Fetch`] (the cache, then the forwarder's upstreams, or in
//! recursive mode the authorities themselves), which also keeps the status the
//! validator found for them, so a cached set is not checked again.
//!
//! Work is bounded per response ([`Budget`]): DS/DNSKEY questions, and
//! signature checks (KeyTrap, CVE-2023-50387: many keys with one tag,
//! many signatures, each tried against each).

pub mod denial;
pub mod wire;

use std::future::Future;

use denial::{DsAbsence, Proof, Proofs};
use wire::{
    Dnskey, Ds, Rr, Rrsig, TYPE_CNAME, TYPE_DNSKEY, TYPE_DS, TYPE_NSEC, TYPE_NSEC3, TYPE_RRSIG, TYPE_SOA, algorithm_supported, ancestor,
    is_under, label_count, name_eq, signed_data, time_le, verify,
};

/// What validation found of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not validated (validation off, or a cached failure).
    Unchecked,
    Secure,
    Insecure,
    Bogus(Bogus),
}

/// Why an answer is bogus; each has its Extended DNS Error (RFC 8914).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bogus {
    /// No signature checks out.
    Signature,
    /// Every signature that would check out is past its expiration.
    Expired,
    /// Every signature that would check out is before its inception.
    NotYetValid,
    /// No DNSKEY of the zone matches its DS, or the DNSKEY set is missing.
    DnskeyMissing,
    /// A signed zone's data came without signatures.
    RrsigsMissing,
    /// A signed zone's negative answer came without the NSEC/NSEC3 proof.
    NsecMissing,
    /// A DS or DNSKEY set could not be fetched.
    ChainUnavailable,
    /// More DS/DNSKEY questions or signature checks than a response may cost.
    TooMuchWork,
}

impl Bogus {
    /// The Extended DNS Error INFO-CODE (RFC 8914 §4).
    pub fn ede(self) -> u16 {
        match self {
            Bogus::Expired => 7,
            Bogus::NotYetValid => 8,
            Bogus::DnskeyMissing => 9,
            Bogus::RrsigsMissing => 10,
            Bogus::NsecMissing => 12,
            Bogus::Signature | Bogus::ChainUnavailable | Bogus::TooMuchWork => 6,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Bogus::Signature => "DNSSEC bogus: no signature verifies",
            Bogus::Expired => "DNSSEC bogus: the signatures have expired",
            Bogus::NotYetValid => "DNSSEC bogus: the signatures are not valid yet",
            Bogus::DnskeyMissing => "DNSSEC bogus: no DNSKEY matches the zone's DS",
            Bogus::RrsigsMissing => "DNSSEC bogus: a signed zone answered without RRSIGs",
            Bogus::NsecMissing => "DNSSEC bogus: the denial of existence is not proven",
            Bogus::ChainUnavailable => "DNSSEC bogus: the DS or DNSKEY set could not be fetched",
            Bogus::TooMuchWork => "DNSSEC bogus: validating would take more work than allowed",
        }
    }
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Unchecked => "unchecked",
            Status::Secure => "secure",
            Status::Insecure => "insecure",
            Status::Bogus(_) => "bogus",
        }
    }

    /// As one byte, for an atomic beside a cached answer.
    pub fn to_u8(self) -> u8 {
        match self {
            Status::Unchecked => 0,
            Status::Secure => 1,
            Status::Insecure => 2,
            Status::Bogus(b) => 16 + b as u8,
        }
    }

    pub fn from_u8(v: u8) -> Self {
        const ALL: [Bogus; 8] = [
            Bogus::Signature,
            Bogus::Expired,
            Bogus::NotYetValid,
            Bogus::DnskeyMissing,
            Bogus::RrsigsMissing,
            Bogus::NsecMissing,
            Bogus::ChainUnavailable,
            Bogus::TooMuchWork,
        ];
        match v {
            1 => Status::Secure,
            2 => Status::Insecure,
            16.. => ALL.get((v - 16) as usize).map_or(Status::Unchecked, |b| Status::Bogus(*b)),
            _ => Status::Unchecked,
        }
    }

    /// The weaker of two: bogus, then insecure, then secure.
    fn and(self, other: Status) -> Status {
        match (self, other) {
            (Status::Bogus(b), _) | (_, Status::Bogus(b)) => Status::Bogus(b),
            (Status::Unchecked, _) | (_, Status::Unchecked) => Status::Unchecked,
            (Status::Insecure, _) | (_, Status::Insecure) => Status::Insecure,
            _ => Status::Secure,
        }
    }
}

/// A trust anchor: DS records or DNSKEYs of one name (RDATA in wire form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Lowercased wire form.
    pub owner: Vec<u8>,
    pub ds: Vec<Vec<u8>>,
    pub dnskeys: Vec<Vec<u8>>,
}

/// The root KSKs as IANA publishes them (root-anchors.xml): KSK-2017
/// (tag 20326) and KSK-2024 (tag 38696), both RSASHA256, SHA-256 digests.
pub const ROOT_DS: [(u16, &str); 2] = [
    (20326, "E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"),
    (38696, "683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16"),
];

pub fn builtin_anchors() -> Vec<Anchor> {
    let ds = ROOT_DS
        .iter()
        .map(|(tag, hex)| {
            let mut rd = tag.to_be_bytes().to_vec();
            rd.extend_from_slice(&[8, 2]);
            rd.extend(wire::hex_decode(hex.as_bytes()).unwrap_or_default());
            rd
        })
        .collect();
    vec![Anchor { owner: vec![0], ds, dnskeys: Vec::new() }]
}

/// What validation trusts: the anchors, and the names never validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    pub anchors: Vec<Anchor>,
    /// Negative trust anchors (RFC 7646), lowercased wire form.
    pub negative: Vec<Vec<u8>>,
}

/// A DS or DNSKEY answer as the validator reads it.
pub trait Reply {
    fn rcode(&self) -> u16;
    /// Answer and authority sections.
    fn sections(&self) -> (Vec<Rr<'_>>, Vec<Rr<'_>>);
    /// What an earlier validation found of it (a cached set).
    fn status(&self) -> Status;
    /// Seconds from now it stays fresh: how long a chain of trust built
    /// on it may be remembered ([`Fetch::memo_scope`]).
    fn ttl(&self) -> u32 {
        0
    }
}

/// Where DS and DNSKEY sets come from.
pub trait Fetch {
    type Reply: Reply;
    /// The answer to `name` (lowercased wire form) / `rtype`, asked with DO=1.
    fn fetch(&self, name: &[u8], rtype: u16) -> impl Future<Output = Option<Self::Reply>> + Send;
    /// The validator checked `reply`: keep it with its status.
    fn checked(&self, reply: &Self::Reply, status: Status);
    /// Where the sets come from (a route) and the generation of what is
    /// kept of them (a cache flush moves it on): the validator remembers
    /// the zones' keys and insecure cuts it found under it, each for the
    /// least TTL of the sets its chain took. `None`: it remembers nothing.
    fn memo_scope(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Chains of trust a validator remembers at most; when full, those past
/// their time go, then all.
pub const MAX_REMEMBERED_CHAINS: usize = 4096;

/// What the chain of trust found for a zone, remembered across answers
/// ([`Fetch::memo_scope`]): every new name under a zone would otherwise
/// walk from the anchor again, reading each DS and DNSKEY set on the way.
#[derive(Default)]
struct Chains {
    /// Key: the scope's two numbers, then the zone's lowercase wire name.
    /// Value: its keys (a secure zone), `Insecure` (a cut with no DS, or
    /// only DS of algorithms not supported) or `Bogus` (a DS or DNSKEY set
    /// that did not check out: everything under the name is bogus, for at
    /// most [`BOGUS_TTL`], as Unbound keeps a bad key), until when
    /// (seconds), and for `Bogus` the zone the log names.
    map: foldhash::HashMap<Vec<u8>, (Keys, u32, Vec<u8>)>,
}

impl Chains {
    fn key<'b>(buf: &'b mut [u8; 16 + 255], scope: (u64, u64), name: &[u8]) -> &'b [u8] {
        buf[..8].copy_from_slice(&scope.0.to_le_bytes());
        buf[8..16].copy_from_slice(&scope.1.to_le_bytes());
        let n = name.len().min(255);
        buf[16..16 + n].copy_from_slice(&name[..n]);
        wire::lower_in_place(&mut buf[16..16 + n]);
        &buf[..16 + n]
    }

    fn get(&self, scope: (u64, u64), name: &[u8], now: u32) -> Option<&(Keys, u32, Vec<u8>)> {
        let mut buf = [0u8; 16 + 255];
        self.map.get(Self::key(&mut buf, scope, name)).filter(|(_, until, _)| now < *until)
    }

    fn put(&mut self, scope: (u64, u64), name: &[u8], keys: &Keys, until: u32, now: u32, blame: &[u8]) {
        let until = match keys {
            // Not the data's fault: asked again next time.
            Keys::Bogus(Bogus::ChainUnavailable | Bogus::TooMuchWork) => return,
            Keys::Bogus(_) => until.min(now.saturating_add(BOGUS_TTL)),
            _ => until,
        };
        if until <= now {
            return;
        }
        let mut buf = [0u8; 16 + 255];
        let key = Self::key(&mut buf, scope, name);
        // Room is made for a new name only: one remembered again replaces itself.
        if self.map.len() >= MAX_REMEMBERED_CHAINS && !self.map.contains_key(key) {
            self.map.retain(|_, (_, u, _)| now < *u);
            if self.map.len() >= MAX_REMEMBERED_CHAINS {
                self.map.clear();
            }
        }
        let blame = if matches!(keys, Keys::Bogus(_)) { blame.to_vec() } else { Vec::new() };
        self.map.insert(key.to_vec(), (keys.clone(), until, blame));
    }
}

/// How long a bogus answer is cached at most (Unbound's `val-bogus-ttl`):
/// a zone whose signatures are repaired is answered again soon.
pub const BOGUS_TTL: u32 = 60;

/// DS and DNSKEY questions one response's validation may ask.
pub const MAX_FETCHES: u32 = 40;
/// Signature checks one response's validation may make.
pub const MAX_SIGNATURE_CHECKS: u32 = 48;
/// Keys tried for one RRSIG (its tag and algorithm match): colliding tags
/// beyond this are not tried (KeyTrap).
pub const MAX_KEYS_PER_SIGNATURE: usize = 4;

/// The work one validation has left.
#[derive(Debug)]
pub struct Budget {
    fetches: u32,
    checks: u32,
    /// The zone of the last problem, for the log.
    pub zone: Vec<u8>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { fetches: MAX_FETCHES, checks: MAX_SIGNATURE_CHECKS, zone: vec![0] }
    }
}

impl Budget {
    fn fetch(&mut self) -> bool {
        self.fetches = self.fetches.saturating_sub(1);
        self.fetches > 0
    }
}

/// A zone's keys as the chain of trust found them.
#[derive(Debug, Clone)]
enum Keys {
    Secure { zone: Vec<u8>, keys: Vec<Vec<u8>> },
    Insecure,
    Bogus(Bogus),
}

pub struct Validator {
    trust: Trust,
    chains: std::sync::Mutex<Chains>,
}

/// An answer to validate: the question, the rcode and the sections.
pub struct Answer<'a> {
    pub qname: &'a [u8],
    pub qtype: u16,
    pub rcode: u16,
    pub answers: &'a [Rr<'a>],
    pub authorities: &'a [Rr<'a>],
}

impl Validator {
    pub fn new(trust: Trust) -> Self {
        Validator { trust, chains: std::sync::Mutex::default() }
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// `name` is at or below a negative trust anchor.
    pub fn negative(&self, name: &[u8]) -> bool {
        self.trust.negative.iter().any(|n| is_under(name, n))
    }

    /// Validates an answer at `now` (seconds since the epoch, as RRSIG
    /// times are). `budget.zone` names the zone of a bogus result.
    pub async fn validate<F: Fetch>(&self, f: &F, a: &Answer<'_>, now: u32, budget: &mut Budget) -> Status {
        if self.negative(a.qname) {
            return Status::Insecure;
        }
        let mut memo: Vec<(Vec<u8>, Keys)> = Vec::new();
        let mut status = Status::Secure;
        // Each RRset of the answer section, by its signer's keys.
        let mut wildcards: Vec<(Vec<u8>, usize, Vec<u8>)> = Vec::new();
        for (owner, rtype) in rrsets(a.answers) {
            let set: Vec<Rr<'_>> = a.answers.iter().filter(|r| r.rtype == rtype && name_eq(r.owner, owner)).copied().collect();
            let s = match self.rrset_status(f, &set, a.answers, now, budget, &mut memo).await {
                (s, Some(labels), zone) if labels < label_count(owner) => {
                    wildcards.push((owner.to_vec(), labels, zone));
                    s
                }
                (s, ..) => s,
            };
            status = status.and(s);
            if matches!(status, Status::Bogus(_)) {
                return status;
            }
        }
        // The denial records of the authority section, each by its signer.
        let mut proofs_ok: Vec<Vec<u8>> = Vec::new();
        for (owner, rtype) in rrsets(a.authorities) {
            if !matches!(rtype, TYPE_NSEC | TYPE_NSEC3 | TYPE_SOA) {
                continue;
            }
            let set: Vec<Rr<'_>> = a.authorities.iter().filter(|r| r.rtype == rtype && name_eq(r.owner, owner)).copied().collect();
            match self.rrset_status(f, &set, a.authorities, now, budget, &mut memo).await {
                (Status::Secure, _, zone) => {
                    if !proofs_ok.contains(&zone) {
                        proofs_ok.push(zone);
                    }
                }
                (Status::Bogus(b), ..) => return Status::Bogus(b),
                (s, ..) => status = status.and(s),
            }
        }
        let authority_in = |zone: &[u8]| -> Vec<Rr<'_>> { a.authorities.iter().filter(|r| is_under(r.owner, zone)).copied().collect() };
        // Wildcard expansions: no closer name may exist.
        for (owner, labels, zone) in &wildcards {
            let recs = authority_in(zone);
            let proofs = Proofs::new(zone, &recs);
            match if proofs_ok.contains(zone) { proofs.expansion(owner, *labels) } else { Proof::Unproven } {
                Proof::Proven => {}
                Proof::OptOut | Proof::TooCostly => status = status.and(Status::Insecure),
                Proof::Unproven => {
                    budget.zone = zone.clone();
                    return Status::Bogus(Bogus::NsecMissing);
                }
            }
        }
        // A negative answer (or NODATA at the chain's end): its proof.
        let Some(last) = negative_at(a) else { return status };
        let soa = a.authorities.iter().find(|r| r.rtype == TYPE_SOA && is_under(last, r.owner));
        let zone_hint = soa.map_or(last, |s| s.owner);
        let keys = self.keys_memo(f, zone_hint, now, budget, &mut memo).await;
        let zone = match keys {
            Keys::Insecure => return status.and(Status::Insecure),
            Keys::Bogus(b) => return Status::Bogus(b),
            Keys::Secure { zone, .. } => zone,
        };
        if soa.is_none_or(|s| !name_eq(s.owner, &zone)) || !proofs_ok.contains(&zone) {
            budget.zone = zone;
            return Status::Bogus(Bogus::NsecMissing);
        }
        let recs = authority_in(&zone);
        let proofs = Proofs::new(&zone, &recs);
        let proof = if a.rcode == 3 { proofs.nxdomain(last) } else { proofs.nodata(last, a.qtype) };
        match proof {
            Proof::Proven => status,
            Proof::OptOut | Proof::TooCostly => status.and(Status::Insecure),
            Proof::Unproven => {
                budget.zone = zone;
                Status::Bogus(Bogus::NsecMissing)
            }
        }
    }

    async fn keys_memo<F: Fetch>(&self, f: &F, name: &[u8], now: u32, budget: &mut Budget, memo: &mut Vec<(Vec<u8>, Keys)>) -> Keys {
        if let Some((_, k)) = memo.iter().find(|(n, _)| name_eq(n, name)) {
            return k.clone();
        }
        let k = self.zone_keys(f, name, now, budget).await;
        memo.push((name.to_vec(), k.clone()));
        k
    }

    /// One RRset's status, with the labels of the signature that checked
    /// out (fewer than the owner's: a wildcard expansion) and the zone.
    async fn rrset_status<F: Fetch>(
        &self,
        f: &F,
        set: &[Rr<'_>],
        section: &[Rr<'_>],
        now: u32,
        budget: &mut Budget,
        memo: &mut Vec<(Vec<u8>, Keys)>,
    ) -> (Status, Option<usize>, Vec<u8>) {
        let owner = set[0].owner;
        if self.negative(owner) {
            return (Status::Insecure, None, Vec::new());
        }
        // The signer named by its signatures (an ancestor of the owner), else the owner's zone.
        let signer = sigs_of(section, owner, set[0].rtype).find(|s| is_under(owner, s.signer)).map(|s| s.signer);
        let keys = self.keys_memo(f, signer.unwrap_or(owner), now, budget, memo).await;
        match keys {
            Keys::Insecure => (Status::Insecure, None, Vec::new()),
            Keys::Bogus(b) => (Status::Bogus(b), None, Vec::new()),
            Keys::Secure { zone, keys } => {
                if signer.is_none_or(|s| !name_eq(s, &zone)) {
                    // Not signed, or signed by a name that is not the zone the chain found.
                    let b = if signer.is_none() { Bogus::RrsigsMissing } else { Bogus::Signature };
                    budget.zone = zone.clone();
                    return (Status::Bogus(b), None, zone);
                }
                match verify_rrset(set, section, &zone, &keys, now, budget) {
                    Ok(labels) => (Status::Secure, Some(labels), zone),
                    Err(b) => {
                        budget.zone = zone.clone();
                        (Status::Bogus(b), None, zone)
                    }
                }
            }
        }
    }

    /// The keys of the deepest zone that holds `target`, found from the
    /// anchors down: at each label, the DS set (verified by the zone
    /// above) or the proof that there is none.
    async fn zone_keys<F: Fetch>(&self, f: &F, target: &[u8], now: u32, budget: &mut Budget) -> Keys {
        if self.negative(target) {
            return Keys::Insecure;
        }
        let Some(anchor) = self.trust.anchors.iter().filter(|a| is_under(target, &a.owner)).max_by_key(|a| label_count(&a.owner)) else {
            return Keys::Insecure;
        };
        let scope = f.memo_scope();
        // The deepest zone at or above the target whose chain was found
        // before (none above the anchor).
        let remembered = scope.and_then(|sc| {
            let chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
            (0..=label_count(target) - label_count(&anchor.owner)).find_map(|skip| {
                let name = ancestor(target, skip);
                chains.get(sc, name, now).map(|(k, until, blame)| (wire::lower(name), k.clone(), *until, blame.clone()))
            })
        });
        let (mut zone, mut keys, mut until) = match remembered {
            Some((_, Keys::Insecure, ..)) => return Keys::Insecure,
            Some((_, Keys::Bogus(b), _, blame)) => {
                budget.zone = blame;
                return Keys::Bogus(b);
            }
            Some((zone, Keys::Secure { keys, .. }, until, _)) => (zone, keys, until),
            None => {
                let zone = wire::lower(&anchor.owner);
                let ds: Vec<&[u8]> = anchor.ds.iter().map(Vec::as_slice).collect();
                let mut until = u32::MAX;
                match self.child_keys(f, &zone, &ds, &anchor.dnskeys, now, budget, &mut until).await {
                    Keys::Secure { keys, .. } => {
                        self.remember(scope, &zone, &keys, until, now);
                        (zone, keys, until)
                    }
                    other => {
                        self.remember_other(scope, &zone, &other, until, now, &budget.zone);
                        return other;
                    }
                }
            }
        };
        let depth = label_count(target) - label_count(&zone);
        for skip in (0..depth).rev() {
            let name = ancestor(target, skip);
            if self.negative(name) {
                return Keys::Insecure;
            }
            if !budget.fetch() {
                return Keys::Bogus(Bogus::TooMuchWork);
            }
            let Some(reply) = f.fetch(name, TYPE_DS).await else {
                budget.zone = zone;
                return Keys::Bogus(Bogus::ChainUnavailable);
            };
            until = until.min(now.saturating_add(reply.ttl()));
            let checked = reply.status() == Status::Secure;
            let (ans, auth) = reply.sections();
            let ds_set: Vec<Rr<'_>> = ans.iter().filter(|r| r.rtype == TYPE_DS && name_eq(r.owner, name)).copied().collect();
            if !checked {
                // Every RRset of the reply (DS, or the denial and its SOA) by the zone above.
                let mut result = Ok(0);
                for (section, types) in [(&ans, &[TYPE_DS, TYPE_CNAME][..]), (&auth, &[TYPE_SOA, TYPE_NSEC, TYPE_NSEC3][..])] {
                    for (owner, rtype) in rrsets(section) {
                        if types.contains(&rtype) {
                            let set: Vec<Rr<'_>> =
                                section.iter().filter(|r| r.rtype == rtype && name_eq(r.owner, owner)).copied().collect();
                            result = result.and(verify_rrset(&set, section, &zone, &keys, now, budget));
                        }
                    }
                }
                match result {
                    Ok(_) => {
                        // The reply's own status, as a client asking DS would get it:
                        // a denial only in an opt-out span is insecure.
                        let cname = ans.iter().any(|r| r.rtype == TYPE_CNAME && name_eq(r.owner, name));
                        let status = if !ds_set.is_empty() || cname {
                            Status::Secure
                        } else {
                            let proofs = Proofs::new(&zone, &auth);
                            match if reply.rcode() == 3 { proofs.nxdomain(name) } else { proofs.nodata(name, TYPE_DS) } {
                                Proof::Proven => Status::Secure,
                                Proof::OptOut | Proof::TooCostly => Status::Insecure,
                                Proof::Unproven => Status::Bogus(Bogus::NsecMissing),
                            }
                        };
                        f.checked(&reply, status);
                    }
                    Err(b) => {
                        f.checked(&reply, Status::Bogus(b));
                        self.remember_other(scope, name, &Keys::Bogus(b), until, now, &zone);
                        budget.zone = zone;
                        return Keys::Bogus(b);
                    }
                }
            }
            if !ds_set.is_empty() {
                let rdatas: Vec<&[u8]> = ds_set.iter().map(|r| r.rdata).collect();
                match self.child_keys(f, name, &rdatas, &[], now, budget, &mut until).await {
                    Keys::Secure { keys: k, .. } => {
                        keys = k;
                        zone = wire::lower(name);
                        self.remember(scope, &zone, &keys, until, now);
                        continue;
                    }
                    other => {
                        self.remember_other(scope, name, &other, until, now, &budget.zone);
                        return other;
                    }
                }
            }
            if ans.iter().any(|r| r.rtype == TYPE_CNAME && name_eq(r.owner, name)) {
                break;
            }
            let proofs = Proofs::new(&zone, &auth);
            match proofs.ds_absence(name) {
                DsAbsence::NotACut => {}
                DsAbsence::InsecureCut => {
                    self.remember_other(scope, name, &Keys::Insecure, until, now, &[]);
                    return Keys::Insecure;
                }
                DsAbsence::NoName => break,
                DsAbsence::Unproven => {
                    self.remember_other(scope, name, &Keys::Bogus(Bogus::NsecMissing), until, now, &zone);
                    budget.zone = zone;
                    return Keys::Bogus(Bogus::NsecMissing);
                }
            }
        }
        Keys::Secure { zone, keys }
    }

    /// Remembers `zone`'s keys until `until` under `scope`.
    fn remember(&self, scope: Option<(u64, u64)>, zone: &[u8], keys: &[Vec<u8>], until: u32, now: u32) {
        if let Some(sc) = scope {
            let k = Keys::Secure { zone: zone.to_vec(), keys: keys.to_vec() };
            self.chains.lock().unwrap_or_else(|p| p.into_inner()).put(sc, zone, &k, until, now, &[]);
        }
    }

    /// Remembers that everything at and under `cut` is insecure, or bogus
    /// (`blame`: the zone a log line names), until `until` under `scope`.
    #[allow(clippy::too_many_arguments)]
    fn remember_other(&self, scope: Option<(u64, u64)>, cut: &[u8], keys: &Keys, until: u32, now: u32, blame: &[u8]) {
        if let Some(sc) = scope {
            self.chains.lock().unwrap_or_else(|p| p.into_inner()).put(sc, cut, keys, until, now, blame);
        }
    }

    /// The DNSKEY set of `zone`, trusted through `ds` (or the anchor's
    /// `trusted` keys): a key they name signs the whole set. `until`
    /// falls to the set's time to go stale.
    #[allow(clippy::too_many_arguments)]
    async fn child_keys<F: Fetch>(
        &self,
        f: &F,
        zone: &[u8],
        ds: &[&[u8]],
        trusted: &[Vec<u8>],
        now: u32,
        budget: &mut Budget,
        until: &mut u32,
    ) -> Keys {
        let ds: Vec<Ds<'_>> = ds.iter().filter_map(|d| Ds::parse(d)).filter(Ds::supported).collect();
        let trusted: Vec<&Vec<u8>> =
            trusted.iter().filter(|k| Dnskey::parse(k).is_some_and(|k| algorithm_supported(k.algorithm))).collect();
        // RFC 4035 §5.2: no DS with an algorithm and digest we support: insecure.
        if ds.is_empty() && trusted.is_empty() {
            return Keys::Insecure;
        }
        if !budget.fetch() {
            return Keys::Bogus(Bogus::TooMuchWork);
        }
        let Some(reply) = f.fetch(zone, TYPE_DNSKEY).await else {
            budget.zone = zone.to_vec();
            return Keys::Bogus(Bogus::ChainUnavailable);
        };
        *until = (*until).min(now.saturating_add(reply.ttl()));
        let (ans, _) = reply.sections();
        let set: Vec<Rr<'_>> = ans.iter().filter(|r| r.rtype == TYPE_DNSKEY && name_eq(r.owner, zone)).copied().collect();
        let all: Vec<Vec<u8>> = set.iter().map(|r| r.rdata.to_vec()).collect();
        if reply.status() == Status::Secure && !set.is_empty() {
            return Keys::Secure { zone: zone.to_vec(), keys: all };
        }
        let entry: Vec<Vec<u8>> = set
            .iter()
            .filter(|r| {
                let Some(k) = Dnskey::parse(r.rdata) else { return false };
                k.protocol == 3
                    && k.flags & wire::FLAG_ZONE != 0
                    && (ds.iter().any(|d| d.matches(zone, &k)) || trusted.iter().any(|t| t.as_slice() == r.rdata))
            })
            .map(|r| r.rdata.to_vec())
            .collect();
        let result =
            if entry.is_empty() { Err(Bogus::DnskeyMissing) } else { verify_rrset(&set, &ans, zone, &entry, now, budget).map(|_| ()) };
        match result {
            Ok(()) => {
                f.checked(&reply, Status::Secure);
                Keys::Secure { zone: zone.to_vec(), keys: all }
            }
            Err(b) => {
                f.checked(&reply, Status::Bogus(b));
                budget.zone = zone.to_vec();
                Keys::Bogus(b)
            }
        }
    }
}

/// The distinct (owner, type) RRsets of a section, RRSIGs left out.
fn rrsets<'a>(section: &[Rr<'a>]) -> Vec<(&'a [u8], u16)> {
    let mut out: Vec<(&'a [u8], u16)> = Vec::new();
    for r in section {
        if r.rtype != TYPE_RRSIG && !out.iter().any(|(o, t)| *t == r.rtype && name_eq(o, r.owner)) {
            out.push((r.owner, r.rtype));
        }
    }
    out
}

/// The RRSIGs of a section over `owner`/`rtype`.
fn sigs_of<'a>(section: &'a [Rr<'a>], owner: &'a [u8], rtype: u16) -> impl Iterator<Item = Rrsig<'a>> {
    section
        .iter()
        .filter(move |r| r.rtype == TYPE_RRSIG && name_eq(r.owner, owner))
        .filter_map(|r| Rrsig::parse(r.rdata))
        .filter(move |s| s.covered == rtype)
}

/// Checks an RRset's signatures by `zone`'s `keys`: Ok with the labels of
/// the first that verifies. Signatures outside their validity window are
/// not tried; the error says why none verified.
fn verify_rrset(set: &[Rr<'_>], section: &[Rr<'_>], zone: &[u8], keys: &[Vec<u8>], now: u32, budget: &mut Budget) -> Result<usize, Bogus> {
    let Some(first) = set.first() else { return Err(Bogus::RrsigsMissing) };
    let owner_labels = label_count(first.owner);
    let mut why = Bogus::RrsigsMissing;
    for sig in sigs_of(section, first.owner, first.rtype) {
        if !name_eq(sig.signer, zone) || sig.labels as usize > owner_labels {
            why = Bogus::Signature;
            continue;
        }
        if !time_le(now, sig.expiration) {
            why = Bogus::Expired;
            continue;
        }
        if !time_le(sig.inception, now) {
            why = Bogus::NotYetValid;
            continue;
        }
        why = Bogus::Signature;
        let Some(data) = signed_data(&sig, set) else { continue };
        let candidates = keys
            .iter()
            .filter_map(|k| Dnskey::parse(k))
            .filter(|k| k.usable() && k.algorithm == sig.algorithm && k.key_tag() == sig.key_tag)
            .take(MAX_KEYS_PER_SIGNATURE);
        for key in candidates {
            if budget.checks == 0 {
                return Err(Bogus::TooMuchWork);
            }
            budget.checks -= 1;
            if verify(&key, &data, sig.signature) {
                return Ok(sig.labels as usize);
            }
        }
    }
    Err(why)
}

/// Where a negative answer's proof is due: the last name of the CNAME
/// chain from the question, when it does not end in the type asked.
fn negative_at<'a>(a: &Answer<'a>) -> Option<&'a [u8]> {
    let mut name = a.qname;
    for _ in 0..16 {
        let at = |t: u16| a.answers.iter().find(|r| r.rtype == t && name_eq(r.owner, name));
        if at(a.qtype).is_some() || (a.qtype == 255 && a.answers.iter().any(|r| name_eq(r.owner, name))) {
            return None;
        }
        match at(TYPE_CNAME) {
            Some(c) => name = wire::rdata_name(c.rdata)?,
            None => break,
        }
    }
    // Only NOERROR and NXDOMAIN carry a proof.
    matches!(a.rcode, 0 | 3).then_some(name)
}

#[cfg(test)]
mod tests;
