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
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        match ip {
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

    pub fn len(&self) -> usize {
        self.v4.iter().map(|(_, m)| m.len()).sum::<usize>() + self.v6.iter().map(|(_, m)| m.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
}
