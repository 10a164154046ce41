//! Fair shares of upstream work (docs/REFERENCE.md#fairness): upstream
//! questions are a resource every VPC shares, so no one client, VPC or
//! domain may hold more than its share of them at once, as BIND's
//! `fetches-per-zone` and `fetches-per-server` and PowerDNS Recursor's
//! throttling bound theirs.
//!
//! - a client address (an IPv6 client by its /64) waits on at most
//!   [`Shares::per_client`] questions, joined or started;
//! - a VPC (the sources in no VPC count as one) has at most
//!   [`Shares::per_vpc`] questions in flight that it started;
//! - a domain (the parent of the name asked: the random label of a
//!   water-torture name is cut off) has at most [`Shares::per_zone`].
//!
//! Over a share the client is answered at once (stale, else SERVFAIL with
//! an Extended DNS Error) and only that client, VPC or domain is.
//! Counting costs one lock per share on a cache miss; nothing on a hit.

// foldhash, seeded per process: the per-question maps hashed with SipHash cost
// more than the rest of their bookkeeping (docs/ARCHITECTURE.md).
use foldhash::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The shares, as fractions of the upstream questions in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_client: u32,
    pub per_vpc: u32,
    pub per_zone: u32,
}

impl Limits {
    /// The defaults for `max_in_flight` questions in all: a client an
    /// eighth, a VPC half, a domain a sixteenth. One client then cannot
    /// take a VPC's share alone, nor one VPC the others', nor one broken
    /// or hostile domain a VPC's.
    pub const fn of(max_in_flight: usize) -> Limits {
        let m = max_in_flight as u32;
        Limits { per_client: max(m / 8), per_vpc: max(m / 2), per_zone: max(m / 16) }
    }
}

const fn max(n: u32) -> u32 {
    if n == 0 { 1 } else { n }
}

/// Whose share a question is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    Client,
    Vpc,
    Zone,
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Share::Client => "client's",
            Share::Vpc => "VPC's",
            Share::Zone => "domain's",
        })
    }
}

/// Why a question was answered at once instead of asked (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The upstream questions in flight, in all.
    InFlight,
    /// The clients waiting on upstream questions, in all.
    Waiters,
    /// The clients waiting on this one question.
    QuestionWaiters,
    Share(Share),
}

impl Shed {
    pub fn label(self) -> &'static str {
        match self {
            Shed::InFlight => "in_flight",
            Shed::Waiters => "waiters",
            Shed::QuestionWaiters => "question_waiters",
            Shed::Share(Share::Client) => "client",
            Shed::Share(Share::Vpc) => "vpc",
            Shed::Share(Share::Zone) => "zone",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Shed::InFlight => "too many upstream questions in flight",
            Shed::Waiters => "too many clients waiting on upstreams",
            Shed::QuestionWaiters => "too many clients waiting on one upstream question",
            Shed::Share(Share::Client) => "this client has its share of upstream questions in flight",
            Shed::Share(Share::Vpc) => "this VPC has its share of upstream questions in flight",
            Shed::Share(Share::Zone) => "this domain has its share of upstream questions in flight",
        }
    }
}

/// Who asks: the client (as the view saw it: a trusted forwarder's claim
/// included) and its VPC ([`NO_VPC`] for a source in none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asker {
    pub client: IpAddr,
    pub vpc: u32,
}

/// The VPC of the sources in no VPC: they share one share.
pub const NO_VPC: u32 = u32::MAX;

/// What each client, VPC and domain holds now.
pub struct Shares {
    limits: Limits,
    held: Mutex<Held>,
    /// Keyed per process, so that no one can pick names whose hashes meet
    /// another domain's and spend its share.
    seed: RandomState,
}

#[derive(Default)]
struct Held {
    clients: HashMap<IpAddr, u32>,
    vpcs: HashMap<u32, u32>,
    zones: HashMap<u64, u32>,
}

/// A domain, as counted: a keyed hash of its lowercased wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(u64);

impl Shares {
    pub fn new(limits: Limits) -> Arc<Shares> {
        Arc::new(Shares { limits, held: Mutex::new(Held::default()), seed: RandomState::new() })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The domain a name's questions count against: its parent (the
    /// root's for a top-level name). `key` is a lowercased wire name.
    pub fn zone_of(&self, key: &[u8]) -> Zone {
        let parent = match key.first() {
            Some(&len) if len > 0 => key.get(1 + len as usize..).unwrap_or(&[0]),
            _ => key,
        };
        Zone(self.seed.hash_one(parent))
    }

    /// One more question `client` waits on, if within its share.
    pub fn take_client(self: &Arc<Self>, client: IpAddr) -> Option<Token> {
        let client = by_network(client);
        let limit = self.limits().per_client;
        let mut held = self.held();
        let n = held.clients.entry(client).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Token { shares: self.clone(), what: Held1::Client(client) })
    }

    /// One more question in flight for `zone` and, when a client starts
    /// it, for `vpc`; `Err` names the share it is over.
    pub fn take_flight(self: &Arc<Self>, zone: Zone, vpc: Option<u32>) -> Result<FlightTokens, Share> {
        let limits = self.limits();
        let mut held = self.held();
        if held.zones.get(&zone.0).is_some_and(|n| *n >= limits.per_zone) {
            return Err(Share::Zone);
        }
        if let Some(v) = vpc
            && held.vpcs.get(&v).is_some_and(|n| *n >= limits.per_vpc)
        {
            return Err(Share::Vpc);
        }
        *held.zones.entry(zone.0).or_default() += 1;
        let vpc_token = vpc.map(|v| {
            *held.vpcs.entry(v).or_default() += 1;
            Token { shares: self.clone(), what: Held1::Vpc(v) }
        });
        Ok(FlightTokens { _zone: Token { shares: self.clone(), what: Held1::Zone(zone.0) }, _vpc: vpc_token })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn give_back(&self, what: Held1) {
        let mut held = self.held();
        fn dec<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u32>, k: K) {
            if let Some(n) = m.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&k);
                }
            }
        }
        match what {
            Held1::Client(c) => dec(&mut held.clients, c),
            Held1::Vpc(v) => dec(&mut held.vpcs, v),
            Held1::Zone(z) => dec(&mut held.zones, z),
        }
    }
}

/// An IPv6 client is its /64 (one host has the whole of it); an IPv4
/// client its address.
/// (As `server::tcp::source_key` counts connections of sources in no VPC.)
fn by_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy)]
enum Held1 {
    Client(IpAddr),
    Vpc(u32),
    Zone(u64),
}

/// One unit of a share, given back when dropped (on every path).
pub struct Token {
    shares: Arc<Shares>,
    what: Held1,
}

impl Drop for Token {
    fn drop(&mut self) {
        self.shares.give_back(self.what);
    }
}

/// What a question in flight holds: its domain's unit and, when a
/// client started it, its VPC's.
pub struct FlightTokens {
    _zone: Token,
    _vpc: Option<Token>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Vec<u8> {
        let mut k = Vec::new();
        for l in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
            k.push(l.len() as u8);
            k.extend_from_slice(l.as_bytes());
        }
        k.push(0);
        k
    }

    #[test]
    fn random_labels_under_one_domain_share_its_unit() {
        let s = Shares::new(Limits::of(4096));
        assert_eq!(s.zone_of(&key("x1.victim.example")), s.zone_of(&key("y2.victim.example")));
        assert_ne!(s.zone_of(&key("x1.victim.example")), s.zone_of(&key("x1.other.example")));
        assert_eq!(s.zone_of(&key("com")), s.zone_of(&key("net")), "top-level names count against the root");
        assert_eq!(s.zone_of(&key("")), s.zone_of(&key("com")));
    }

    #[test]
    fn each_share_is_bounded_and_given_back() {
        let s = Shares::new(Limits { per_client: 2, per_vpc: 3, per_zone: 2 });
        let c: IpAddr = "127.1.0.5".parse().unwrap();
        let a = s.take_client(c).unwrap();
        let _b = s.take_client(c).unwrap();
        assert!(s.take_client(c).is_none(), "over the client's share");
        assert!(s.take_client("127.1.0.6".parse().unwrap()).is_some(), "another client has its own");
        drop(a);
        assert!(s.take_client(c).is_some(), "given back when dropped");

        let z1 = s.zone_of(&key("a.victim.example"));
        let z2 = s.zone_of(&key("a.other.example"));
        let _f1 = s.take_flight(z1, Some(1)).unwrap();
        let _f2 = s.take_flight(z1, Some(1)).unwrap();
        assert_eq!(s.take_flight(z1, Some(2)).err(), Some(Share::Zone), "the domain's share, whoever asks");
        let _f3 = s.take_flight(z2, Some(1)).unwrap();
        assert_eq!(s.take_flight(z2, Some(1)).err(), Some(Share::Vpc), "vpc 1 has 3 in flight");
        let f4 = s.take_flight(z2, Some(2)).unwrap();
        drop(f4);
        assert!(s.held().zones.get(&z2.0) == Some(&1), "given back");
        assert!(s.take_flight(z2, None).is_ok(), "a refresh no client started counts against no VPC");
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let s = Shares::new(Limits { per_client: 1, per_vpc: 9, per_zone: 9 });
        let _a = s.take_client("2001:db8::1".parse().unwrap()).unwrap();
        assert!(s.take_client("2001:db8::ffff:2".parse().unwrap()).is_none());
        assert!(s.take_client("2001:db8:0:1::1".parse().unwrap()).is_some());
        let _m = s.take_client("::ffff:127.1.0.5".parse().unwrap()).unwrap();
        assert!(s.take_client("127.1.0.5".parse().unwrap()).is_none(), "a mapped address is the IPv4 client");
    }
}
