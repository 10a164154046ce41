//! The cache of upstream answers (SPEC.md §2 `cache`): keyed by name, type,
//! DO bit and the upstream set asked, bounded by `max_entries` (moka's
//! TinyLFU eviction), kept past expiry for the RFC 8767 stale window.
//!
//! moka is used because it is a maintained concurrent cache with size
//! bounds and per-entry expiry; hickory-resolver's own cache (also moka)
//! cannot serve stale data and clones a whole Message per hit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use moka::Expiry;

/// Longest time anything is cached (RFC 2181 §8 allows more; resolvers cap it).
pub const MAX_CACHE_TTL: u32 = 86_400;
/// TTL of records served stale (RFC 8767 §4 recommends 30 s).
pub const STALE_TTL: u32 = 30;

/// What identifies a cached answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Lowercased, fully qualified.
    pub name: Name,
    pub qtype: RecordType,
    pub dnssec_ok: bool,
    /// Which upstream set answered (a forward zone's or the default), so
    /// two routes for one name never share an entry.
    pub route: u64,
}

/// An upstream answer as cached.
#[derive(Debug)]
pub struct Entry {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    pub stored: Instant,
    /// Seconds it is fresh: the smallest answer TTL, or for a negative
    /// answer min(SOA TTL, SOA MINIMUM) (RFC 2308 §5). 0: not cacheable.
    pub ttl: u32,
    /// How long the cache keeps it after it goes stale.
    pub stale_for: Duration,
}

impl Entry {
    pub fn new(
        rcode: ResponseCode,
        mut answers: Vec<Record>,
        mut authorities: Vec<Record>,
        mut additionals: Vec<Record>,
        stale_for: Duration,
    ) -> Self {
        // RFC 2181 §8: a TTL with the top bit set is read as zero.
        for r in answers.iter_mut().chain(authorities.iter_mut()).chain(additionals.iter_mut()) {
            if r.ttl > i32::MAX as u32 {
                r.ttl = 0;
            }
        }
        let ttl = cache_ttl(rcode, &answers, &authorities);
        Entry { rcode, answers, authorities, additionals, stored: Instant::now(), ttl, stale_for }
    }

    pub fn age(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.stored).as_secs().min(u32::MAX as u64) as u32
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        self.age(now) < self.ttl
    }

    /// The records with their TTLs decremented by the entry's age, or set
    /// to [`STALE_TTL`] when served stale.
    pub fn aged(&self, now: Instant, section: &[Record]) -> Vec<Record> {
        let age = self.age(now);
        // A TTL-0 answer is served once, just fetched; it is never stale.
        let stale = self.ttl > 0 && age >= self.ttl;
        section
            .iter()
            .map(|r| {
                let mut r = r.clone();
                let t = r.ttl.min(MAX_CACHE_TTL);
                // A TTL-0 record stays 0 (use once, never cache); others count
                // down but never reach 0 while the entry is fresh.
                r.ttl = if stale {
                    STALE_TTL
                } else if t == 0 {
                    0
                } else {
                    t.saturating_sub(age).max(1)
                };
                r
            })
            .collect()
    }
}

/// RFC 2308: positive answers live for their smallest TTL; NXDOMAIN and
/// NODATA for min(SOA TTL, SOA MINIMUM) of the SOA in authority, and are
/// not cached at all without one. Failures are never cached.
pub fn cache_ttl(rcode: ResponseCode, answers: &[Record], authorities: &[Record]) -> u32 {
    let negative_ttl = || {
        authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
            .unwrap_or(0)
    };
    let ttl = match rcode {
        ResponseCode::NXDomain => negative_ttl(),
        ResponseCode::NoError if answers.is_empty() => negative_ttl(),
        ResponseCode::NoError => answers.iter().map(|r| r.ttl).min().unwrap_or(0),
        _ => 0,
    };
    ttl.min(MAX_CACHE_TTL)
}

struct KeepForTtlPlusStale;

impl Expiry<Key, Arc<Entry>> for KeepForTtlPlusStale {
    fn expire_after_create(&self, _k: &Key, v: &Arc<Entry>, _at: Instant) -> Option<Duration> {
        Some(Duration::from_secs(v.ttl as u64) + v.stale_for)
    }
    fn expire_after_update(&self, _k: &Key, v: &Arc<Entry>, _at: Instant, _d: Option<Duration>) -> Option<Duration> {
        Some(Duration::from_secs(v.ttl as u64) + v.stale_for)
    }
}

/// A bounded concurrent cache.
#[derive(Clone)]
pub struct Cache {
    inner: moka::sync::Cache<Key, Arc<Entry>>,
}

impl Cache {
    pub fn new(max_entries: u64) -> Self {
        Cache { inner: moka::sync::Cache::builder().max_capacity(max_entries).expire_after(KeepForTtlPlusStale).build() }
    }

    pub fn get(&self, k: &Key) -> Option<Arc<Entry>> {
        self.inner.get(k)
    }

    /// Stores `e` if it may be cached at all.
    pub fn insert(&self, k: Key, e: Arc<Entry>) {
        if e.ttl > 0 {
            self.inner.insert(k, e);
        }
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.run_pending_tasks();
        self.inner.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA};
    use std::str::FromStr;

    fn a(ttl: u32) -> Record {
        Record::from_rdata(Name::from_str("x.example.").unwrap(), ttl, RData::A(A::new(192, 0, 2, 1)))
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let n = Name::from_str("example.").unwrap();
        Record::from_rdata(n.clone(), ttl, RData::SOA(SOA::new(n.clone(), n, 1, 2, 3, 4, minimum)))
    }

    #[test]
    fn ttls_per_rfc_2308() {
        assert_eq!(cache_ttl(ResponseCode::NoError, &[a(300), a(60)], &[]), 60);
        assert_eq!(cache_ttl(ResponseCode::NXDomain, &[], &[soa(3600, 30)]), 30);
        assert_eq!(cache_ttl(ResponseCode::NoError, &[], &[soa(20, 300)]), 20);
        assert_eq!(cache_ttl(ResponseCode::NXDomain, &[], &[]), 0, "no SOA, no negative caching");
        assert_eq!(cache_ttl(ResponseCode::ServFail, &[a(60)], &[]), 0);
        assert_eq!(cache_ttl(ResponseCode::NoError, &[a(10_000_000)], &[]), MAX_CACHE_TTL);
    }

    #[test]
    fn ttl_with_top_bit_set_is_zero() {
        let e = Entry::new(ResponseCode::NoError, vec![a(0x8000_0001)], vec![], vec![], Duration::ZERO);
        assert_eq!(e.answers[0].ttl, 0);
        assert_eq!(e.ttl, 0, "not cached");
        assert_eq!(e.aged(e.stored, &e.answers)[0].ttl, 0);
    }

    #[test]
    fn aged_ttls_decrement_then_go_stale() {
        let mut e = Entry::new(ResponseCode::NoError, vec![a(60)], vec![], vec![], Duration::from_secs(3600));
        let now = e.stored;
        assert_eq!(e.aged(now + Duration::from_secs(15), &e.answers)[0].ttl, 45);
        assert!(e.is_fresh(now + Duration::from_secs(59)));
        e.stored = now - Duration::from_secs(61);
        assert!(!e.is_fresh(now));
        assert_eq!(e.aged(now, &e.answers)[0].ttl, STALE_TTL);
    }
}
