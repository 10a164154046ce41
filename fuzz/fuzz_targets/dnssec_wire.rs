//! The DNSSEC readers on bytes from outside: records as the cache keeps
//! them (owner, then TYPE..RDATA), each RDATA read as RRSIG, DNSKEY, DS,
//! NSEC and NSEC3, the signed data laid out, and the denial proofs run
//! over whatever reads; then the same bytes as a trust anchor file. None
//! may panic; a proof from garbage must not hold for a name it does not
//! cover (checked: an empty set proves nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pzdns::dnssec::denial::{DsAbsence, Proof, Proofs};
use pzdns::dnssec::wire::{self, Rr};

fuzz_target!(|data: &[u8]| {
    // Records one after another: a length byte, then that many bytes.
    let mut wires = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize).min(tail.len());
        wires.push(&tail[..n]);
        rest = &tail[n..];
    }
    let rrs = wire::parse_all(wires.iter().copied());
    for r in &rrs {
        if let Some(sig) = wire::Rrsig::parse(r.rdata) {
            let _ = wire::signed_data(&sig, &rrs);
            let _ = wire::signed_data(&sig, std::slice::from_ref(r));
        }
        if let Some(k) = wire::Dnskey::parse(r.rdata) {
            let _ = k.key_tag();
            let _ = wire::verify(&k, data, r.rdata);
            for d in rrs.iter().filter_map(|d| wire::Ds::parse(d.rdata)) {
                let _ = d.matches(r.owner, &k);
            }
        }
        let _ = wire::Nsec::parse(r.rdata).map(|n| wire::bitmap_has(n.bitmap, r.rtype));
        let _ = wire::Nsec3::parse(r.rdata).map(|n| wire::bitmap_has(n.bitmap, r.rtype));
        let _ = wire::canonical_rdata(r.rtype, r.rdata);
        let _ = wire::base32hex_decode(r.owner);
    }
    let zone = rrs.first().map_or(&[0u8][..], |r| r.owner);
    let proofs = Proofs::new(zone, &rrs);
    for r in &rrs {
        let _ = proofs.nxdomain(r.owner);
        let _ = proofs.nodata(r.owner, r.rtype);
        let _ = proofs.expansion(r.owner, 1);
        let _ = proofs.ds_absence(r.owner);
    }
    let none: [Rr<'_>; 0] = [];
    let empty = Proofs::new(zone, &none);
    assert_eq!(empty.nxdomain(zone), Proof::Unproven);
    assert_eq!(empty.ds_absence(zone), DsAbsence::Unproven);
    if let Ok(text) = std::str::from_utf8(data) {
        let mut d = pzdns::config::diagnostics::Diagnostics::new();
        let _ = pzdns::config::trust_anchors::parse(std::path::Path::new("fuzz"), text, &mut d);
    }
});
