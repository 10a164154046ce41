//! Longest-prefix match from a client address to a value (a VPC, or a
//! vSwitch's zone), for IPv4 and IPv6.
//!
//! One hash map per prefix length actually in use, tried from the longest:
//! at most as many lookups as there are distinct prefix lengths (usually a
//! handful), whatever the number of CIDRs, and no allocation per query.

use std::net::IpAddr;

use ipnet::IpNet;
use rustc_hash::FxHashMap;

#[derive(Debug, Clone)]
pub struct CidrTable<T> {
    /// (prefix length, masked address → value), longest prefix first.
    v4: Vec<(u8, FxHashMap<u32, T>)>,
    v6: Vec<(u8, FxHashMap<u128, T>)>,
}

impl<T> Default for CidrTable<T> {
    fn default() -> Self {
        CidrTable { v4: Vec::new(), v6: Vec::new() }
    }
}

fn mask4(addr: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { addr & (u32::MAX << (32 - len)) }
}

fn mask6(addr: u128, len: u8) -> u128 {
    if len == 0 { 0 } else { addr & (u128::MAX << (128 - len)) }
}

fn insert_new<K: std::hash::Hash + Eq, T>(m: &mut FxHashMap<K, T>, k: K, v: T) -> bool {
    match m.entry(k) {
        std::collections::hash_map::Entry::Occupied(_) => false,
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(v);
            true
        }
    }
}

impl<T: Copy> CidrTable<T> {
    /// Adds a network; returns false if the very same network is already in.
    pub fn insert(&mut self, net: IpNet, value: T) -> bool {
        match net {
            IpNet::V4(n) => {
                let len = n.prefix_len();
                let i = match self.v4.iter().position(|(l, _)| *l == len) {
                    Some(i) => i,
                    None => {
                        self.v4.push((len, FxHashMap::default()));
                        self.v4.sort_by_key(|e| std::cmp::Reverse(e.0));
                        self.v4.iter().position(|(l, _)| *l == len).unwrap_or(0)
                    }
                };
                insert_new(&mut self.v4[i].1, mask4(u32::from(n.network()), len), value)
            }
            IpNet::V6(n) => {
                let len = n.prefix_len();
                let i = match self.v6.iter().position(|(l, _)| *l == len) {
                    Some(i) => i,
                    None => {
                        self.v6.push((len, FxHashMap::default()));
                        self.v6.sort_by_key(|e| std::cmp::Reverse(e.0));
                        self.v6.iter().position(|(l, _)| *l == len).unwrap_or(0)
                    }
                };
                insert_new(&mut self.v6[i].1, mask6(u128::from(n.network()), len), value)
            }
        }
    }

    /// The value of the most specific network containing `ip`. An
    /// IPv4-mapped IPv6 address (a v4 client on a dual-stack socket) is
    /// matched as the IPv4 address it is.
    pub fn lookup(&self, ip: IpAddr) -> Option<T> {
        match unmap(ip) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().find_map(|(len, m)| m.get(&mask4(a, *len)).copied())
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().find_map(|(len, m)| m.get(&mask6(a, *len)).copied())
            }
        }
    }

    /// The prefix length of the most specific network containing `ip`,
    /// in `ip`'s own bits: for an IPv4-mapped IPv6 address, matched as
    /// IPv4, 96 + the IPv4 network's length.
    pub fn matched_len(&self, ip: IpAddr) -> Option<u8> {
        match unmap(ip) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                let len = self.v4.iter().find(|(len, m)| m.contains_key(&mask4(a, *len))).map(|(len, _)| *len)?;
                Some(if ip.is_ipv6() { MAPPED_PREFIX + len } else { len })
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().find(|(len, m)| m.contains_key(&mask6(a, *len))).map(|(len, _)| *len)
            }
        }
    }

    pub fn len(&self) -> usize {
        self.v4.iter().map(|(_, m)| m.len()).sum::<usize>() + self.v6.iter().map(|(_, m)| m.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The length of `::ffff:0:0/96`, the prefix of IPv4-mapped IPv6 addresses.
pub const MAPPED_PREFIX: u8 = 96;

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// For EDNS Client Subnet answers: how long a prefix of the client's
/// address decided its view, so that a forwarder's cache keeps one answer
/// per block that answers alike (RFC 7871 SCOPE PREFIX-LENGTH) rather
/// than one per client. Built from every network that can change an
/// answer (VPC and vSwitch CIDRs).
#[derive(Debug, Default, Clone)]
pub struct ScopeIndex {
    /// The prefix lengths in use, shortest first, per family.
    lens4: Vec<u8>,
    lens6: Vec<u8>,
    /// (length L, block) pairs whose /L block holds a network longer than
    /// L: a block that does not answer alike.
    split4: rustc_hash::FxHashSet<(u8, u32)>,
    split6: rustc_hash::FxHashSet<(u8, u128)>,
}

impl ScopeIndex {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let nets: Vec<IpNet> = nets.into_iter().collect();
        let mut ix = ScopeIndex::default();
        for n in &nets {
            match n {
                IpNet::V4(n) => ix.lens4.push(n.prefix_len()),
                IpNet::V6(n) => ix.lens6.push(n.prefix_len()),
            }
        }
        for v in [&mut ix.lens4, &mut ix.lens6] {
            v.push(0);
            v.sort_unstable();
            v.dedup();
        }
        for n in &nets {
            match n {
                IpNet::V4(n) => {
                    for &l in ix.lens4.iter().filter(|l| **l < n.prefix_len()) {
                        ix.split4.insert((l, mask4(u32::from(n.network()), l)));
                    }
                }
                IpNet::V6(n) => {
                    for &l in ix.lens6.iter().filter(|l| **l < n.prefix_len()) {
                        ix.split6.insert((l, mask6(u128::from(n.network()), l)));
                    }
                }
            }
        }
        ix
    }

    /// The shortest prefix of `ip`, at least `decided` long (the network
    /// that matched), whose block holds no longer network; both lengths in
    /// `ip`'s own bits. An IPv4-mapped IPv6 address answers as its IPv4
    /// address, so its block is an IPv4 block: 96 + the IPv4 scope (an
    /// IPv6 cache that stored an IPv4 length would share the answer with
    /// every client whose first bits match, IPv4-mapped or not).
    pub fn scope(&self, ip: IpAddr, decided: u8) -> u8 {
        match (ip, unmap(ip)) {
            (IpAddr::V4(a), _) => self.scope4(u32::from(a), decided),
            (IpAddr::V6(_), IpAddr::V4(a)) => MAPPED_PREFIX + self.scope4(u32::from(a), decided.saturating_sub(MAPPED_PREFIX)),
            (IpAddr::V6(a), _) => {
                let a = u128::from(a);
                let mut lens = self.lens6.iter().copied().filter(|l| *l >= decided);
                lens.find(|l| !self.split6.contains(&(*l, mask6(a, *l)))).unwrap_or(128)
            }
        }
    }

    fn scope4(&self, a: u32, decided: u8) -> u8 {
        let mut lens = self.lens4.iter().copied().filter(|l| *l >= decided);
        lens.find(|l| !self.split4.contains(&(*l, mask4(a, *l)))).unwrap_or(32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let mut t = CidrTable::default();
        assert!(t.insert("10.0.0.0/8".parse().unwrap(), 1));
        assert!(t.insert("10.1.0.0/16".parse().unwrap(), 2));
        assert!(t.insert("2001:db8::/32".parse().unwrap(), 3));
        assert!(t.insert("2001:db8:1::/48".parse().unwrap(), 4));
        assert!(!t.insert("10.1.0.0/16".parse().unwrap(), 5));
        assert_eq!(t.lookup("10.2.3.4".parse().unwrap()), Some(1));
        assert_eq!(t.lookup("10.1.3.4".parse().unwrap()), Some(2));
        assert_eq!(t.lookup("11.1.3.4".parse().unwrap()), None);
        assert_eq!(t.lookup("2001:db8:2::1".parse().unwrap()), Some(3));
        assert_eq!(t.lookup("2001:db8:1::1".parse().unwrap()), Some(4));
        assert_eq!(t.lookup("::ffff:10.1.0.9".parse().unwrap()), Some(2));
        assert_eq!(t.lookup("2001:db9::1".parse().unwrap()), None);
    }

    #[test]
    fn default_route_matches_everything() {
        let mut t = CidrTable::default();
        t.insert("0.0.0.0/0".parse().unwrap(), 7);
        assert_eq!(t.lookup("203.0.113.9".parse().unwrap()), Some(7));
        assert_eq!(t.lookup("::1".parse().unwrap()), None);
    }

    #[test]
    fn scope_is_the_block_that_answers_alike() {
        let nets = ["10.0.0.0/16", "10.0.5.0/24", "2001:db8::/32"].map(|n| n.parse::<IpNet>().unwrap());
        let ix = ScopeIndex::new(nets);
        let scope = |ip: &str, decided| ix.scope(ip.parse().unwrap(), decided);
        assert_eq!(scope("10.0.1.7", 16), 24, "the /16 holds a /24 of another VPC");
        assert_eq!(scope("10.0.5.9", 24), 24);
        assert_eq!(scope("10.1.2.3", 0), 16, "no VPC in all of 10.1/16");
        assert_eq!(scope("192.0.2.1", 0), 16);
        assert_eq!(scope("2001:db8::1", 32), 32);
        let t = {
            let mut t = CidrTable::default();
            for n in nets {
                t.insert(n, ());
            }
            t
        };
        assert_eq!(t.matched_len("10.0.5.1".parse().unwrap()), Some(24));
        assert_eq!(t.matched_len("10.9.5.1".parse().unwrap()), None);
    }
    #[test]
    fn an_ipv4_mapped_address_is_scoped_in_ipv6_bits() {
        let nets = ["127.2.0.0/16", "127.2.9.0/24", "2001:db8::/32"].map(|n| n.parse::<IpNet>().unwrap());
        let ix = ScopeIndex::new(nets);
        let mut t = CidrTable::default();
        for n in nets {
            t.insert(n, ());
        }
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // The case: vpc-b's /16 decided, as for 127.2.0.5 itself.
        assert_eq!(t.matched_len(ip("127.2.0.5")), Some(16));
        assert_eq!(t.matched_len(ip("::ffff:127.2.0.5")), Some(96 + 16));
        assert_eq!(ix.scope(ip("127.2.0.5"), 16), 24, "the /16 holds vpc-c's /24");
        assert_eq!(ix.scope(ip("::ffff:127.2.0.5"), 96 + 16), 96 + 24, "not 24: an IPv6 /24 holds every mapped address");
        assert_eq!(ix.scope(ip("::ffff:127.2.9.1"), 96 + 24), 96 + 24);
        assert_eq!(ix.scope(ip("::ffff:127.3.0.5"), 0), 96 + 16, "in no VPC, as 127.3.0.5 is");
        // IPv6 proper is counted as before.
        assert_eq!(ix.scope(ip("2001:db8::1"), 32), 32);
        assert_eq!(ix.scope(ip("2001:db9::1"), 0), 32);
        let ix = ScopeIndex::new(["127.2.0.0/16".parse().unwrap()]);
        assert_eq!(ix.scope(ip("::ffff:127.2.0.5"), 96 + 16), 96 + 16, "the issue's case: not 16");
    }

    /// Random networks (IPv4 and IPv6, nested and overlapping) and random
    /// clients (IPv4, IPv4-mapped, IPv6): the scope is never shorter than
    /// the network that decided, never longer than the family's width,
    /// at least 96 for a mapped address, and the block it names answers
    /// alike: it holds no network longer than itself, so every address in
    /// it matches the same network as the client.
    #[test]
    fn scopes_name_blocks_that_answer_alike() {
        use proptest::prelude::*;
        let v4net = (0u32..1 << 16, 8u8..=30).prop_map(|(k, l)| {
            let n = ipnet::Ipv4Net::new((0x0a00_0000 | (k << 8)).into(), l).unwrap().trunc();
            IpNet::V4(n)
        });
        let v6net = (0u32..1 << 16, 32u8..=64).prop_map(|(k, l)| {
            let a = (0x2001_0db8u128 << 96) | (u128::from(k) << 64);
            IpNet::V6(ipnet::Ipv6Net::new(a.into(), l).unwrap().trunc())
        });
        let nets = proptest::collection::vec(prop_oneof![v4net, v6net], 0..12);
        let client = prop_oneof![
            (0u32..1 << 24).prop_map(|x| IpAddr::V4((0x0a00_0000 | x).into())),
            (0u32..1 << 24).prop_map(|x| IpAddr::V6(std::net::Ipv4Addr::from(0x0a00_0000 | x).to_ipv6_mapped())),
            any::<u64>().prop_map(|x| IpAddr::V6(((0x2001_0db8u128 << 96) | (u128::from(x) << 32)).into())),
        ];
        let cfg = ProptestConfig { cases: 2000, ..ProptestConfig::default() };
        proptest!(cfg, |(nets in nets, ip in client, probe in any::<u128>())| {
            let ix = ScopeIndex::new(nets.iter().copied());
            let mut t = CidrTable::default();
            for (i, n) in nets.iter().enumerate() {
                t.insert(*n, i);
            }
            let decided = t.matched_len(ip).unwrap_or(0);
            let scope = ix.scope(ip, decided);
            let width = if ip.is_ipv4() { 32 } else { 128 };
            prop_assert!(scope >= decided && scope <= width, "{ip}: scope {scope}, decided {decided}");
            let mapped = matches!(ip, IpAddr::V6(a) if a.to_ipv4_mapped().is_some());
            if mapped {
                prop_assert!(scope >= MAPPED_PREFIX, "{ip}: scope {scope}");
            }
            // Another address of the block: the same network decides.
            let other = match ip {
                IpAddr::V4(a) => {
                    let keep = mask4(u32::MAX, scope);
                    IpAddr::V4(((u32::from(a) & keep) | (probe as u32 & !keep)).into())
                }
                IpAddr::V6(a) => {
                    let keep = mask6(u128::MAX, scope);
                    IpAddr::V6(((u128::from(a) & keep) | (probe & !keep)).into())
                }
            };
            let unmapped = |x: IpAddr| unmap(x);
            let same_net = |x: IpAddr| nets.iter().enumerate().filter(|(_, n)| n.contains(&unmapped(x))).max_by_key(|(_, n)| n.prefix_len()).map(|(i, _)| i);
            let (a, b) = (same_net(ip), same_net(other));
            let (la, lb) = (a.map(|i| nets[i].prefix_len()), b.map(|i| nets[i].prefix_len()));
            prop_assert_eq!(la, lb, "{} and {} are in one /{} block but match differently", ip, other, scope);
            prop_assert_eq!(a.map(|i| nets[i].trunc()), b.map(|i| nets[i].trunc()));
        });
    }
}
