//! A view's catalog zone (RFC 9432, schema version 2): `<vpc-id>.<catalog>`,
//! listing every zone a secondary of the view may copy, so that BIND 9.18+
//! and Knot 3.2+ follow the view's zones as they come and go.

use std::str::FromStr;

use hickory_proto::rr::rdata::{NS, PTR, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record};

use crate::dns::names::name_key;
use crate::snapshot::{SYNTH_EXPIRE, SYNTH_NS, SYNTH_REFRESH, SYNTH_RETRY, SYNTH_RNAME, Snapshot, VpcIdx};

/// TTL of the catalog's records (never used for answers: RFC 9432 §4.1).
const TTL: u32 = 0;

/// Records held as (owner key, record in wire form without owner) pairs,
/// the apex SOA apart: what a transfer streams of a zone built for it
/// (a catalog) or of an IXFR's differences.
#[derive(Debug, Clone)]
pub struct Built {
    pub apex: Name,
    pub serial: u32,
    /// The apex SOA without owner.
    pub soa: Vec<u8>,
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A member's id (RFC 9432 §4.4.1): unique within the catalog and stable
/// while the zone is a member: the first 64 bits of SHA-256 over the
/// zone's name (lowercase wire form), in hex.
pub fn member_id(zone: &Name) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, &name_key(zone));
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The catalog zone of `vpc`'s view, if catalogs are on.
pub fn build(snap: &Snapshot, vpc: VpcIdx) -> Option<Built> {
    let apex = snap.catalog_zone(vpc)?;
    let serial = snap.catalogs.get(vpc as usize)?.serial;
    let name = |s: &str| Name::from_str(s).unwrap_or_else(|_| Name::root());
    let soa = Record::from_rdata(
        apex.clone(),
        TTL,
        RData::SOA(SOA::new(name(SYNTH_NS), name(SYNTH_RNAME), serial, SYNTH_REFRESH, SYNTH_RETRY, SYNTH_EXPIRE, TTL)),
    );
    let mut recs = vec![
        Record::from_rdata(apex.clone(), TTL, RData::NS(NS(name("invalid.")))),
        Record::from_rdata(Name::from_ascii("version").ok()?.append_domain(&apex).ok()?, TTL, RData::TXT(TXT::new(vec!["2".into()]))),
    ];
    let zones = Name::from_ascii("zones").ok()?.append_domain(&apex).ok()?;
    let mut members: Vec<&Name> = snap.transferable_zones(vpc).map(|z| &z.origin).collect();
    members.sort();
    for m in members {
        // A member whose name makes the owner too long cannot be listed.
        if let Ok(owner) = Name::from_ascii(member_id(m)).and_then(|l| l.append_domain(&zones)) {
            recs.push(Record::from_rdata(owner, TTL, RData::PTR(PTR(m.clone()))));
        }
    }
    let records = recs.iter().map(|r| (name_key(&r.name).to_vec(), crate::dns::record::record_tail(r))).collect();
    Some(Built { soa: crate::dns::record::record_tail(&soa), apex, serial, records })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_stable_and_tell_zones_apart() {
        let a = Name::from_str("a.example.").unwrap();
        assert_eq!(member_id(&a), member_id(&Name::from_str("A.Example.").unwrap()));
        assert_ne!(member_id(&a), member_id(&Name::from_str("b.example.").unwrap()));
        assert_eq!(member_id(&a).len(), 16);
    }
}
