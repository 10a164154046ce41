//! Authenticated denial (RFC 4035 §5.4, RFC 5155 §8, RFC 6840 §4, RFC
//! 9276): what NSEC and NSEC3 records already checked for their zone
//! prove about a name. Pure functions over records read in place.

use super::wire::{
    self, Nsec, Nsec3, Rr, TYPE_CNAME, TYPE_DS, TYPE_NS, TYPE_NSEC, TYPE_NSEC3, TYPE_SOA, ancestor, base32hex_decode, bitmap_has,
    canonical_cmp, is_under, label_count, name_eq, nsec3_hash,
};
use std::cmp::Ordering::Less;

/// RFC 9276 §3.2: an NSEC3 chain of more iterations is treated as
/// insecure (not bogus): proving with it costs the validator too much.
pub const MAX_NSEC3_ITERATIONS: u16 = 150;

/// What a denial proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Proven,
    /// Only an opt-out NSEC3 span covers the name (RFC 5155 §6): an
    /// unsigned delegation may hide there; the answer is insecure.
    OptOut,
    /// The NSEC3 chain has more iterations than [`MAX_NSEC3_ITERATIONS`].
    TooCostly,
    Unproven,
}

/// What a DS query's negative answer says of the name asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsAbsence {
    /// The name exists in the zone and is not a delegation.
    NotACut,
    /// A delegation without DS (or in an opt-out span): insecure below.
    InsecureCut,
    /// The name does not exist: nothing below it does either.
    NoName,
    Unproven,
}

/// The denial records of one zone, already checked.
pub struct Proofs<'a> {
    pub zone: &'a [u8],
    nsec: Vec<(&'a [u8], Nsec<'a>)>,
    nsec3: Vec<([u8; 20], Nsec3<'a>)>,
    /// The NSEC3 parameters in use (those of the first record).
    params: Option<(&'a [u8], u16)>,
    too_costly: bool,
}

impl<'a> Proofs<'a> {
    pub fn new(zone: &'a [u8], records: &[Rr<'a>]) -> Self {
        let mut p = Proofs { zone, nsec: Vec::new(), nsec3: Vec::new(), params: None, too_costly: false };
        for r in records {
            if !is_under(r.owner, zone) {
                continue;
            }
            match r.rtype {
                TYPE_NSEC => {
                    if let Some(n) = Nsec::parse(r.rdata) {
                        p.nsec.push((r.owner, n));
                    }
                }
                TYPE_NSEC3 => {
                    let Some(n) = Nsec3::parse(r.rdata) else { continue };
                    // Owned by <hash>.<zone>, SHA-1, no unknown flags (RFC 5155 §8.2).
                    if n.hash_alg != 1 || n.flags & !1 != 0 || label_count(r.owner) != label_count(zone) + 1 || n.next.len() != 20 {
                        continue;
                    }
                    let Some(h) = wire::labels(r.owner).next().and_then(base32hex_decode) else { continue };
                    let Ok(h) = <[u8; 20]>::try_from(h.as_slice()) else { continue };
                    match p.params {
                        None => p.params = Some((n.salt, n.iterations)),
                        Some((s, i)) if s != n.salt || i != n.iterations => continue,
                        Some(_) => {}
                    }
                    if n.iterations > MAX_NSEC3_ITERATIONS {
                        p.too_costly = true;
                    }
                    p.nsec3.push((h, n));
                }
                _ => {}
            }
        }
        p
    }

    fn hash(&self, name: &[u8]) -> Option<[u8; 20]> {
        let (salt, iterations) = self.params?;
        Some(nsec3_hash(name, salt, iterations))
    }

    fn nsec3_match(&self, name: &[u8]) -> Option<&Nsec3<'a>> {
        let h = self.hash(name)?;
        self.nsec3.iter().find(|(o, _)| *o == h).map(|(_, n)| n)
    }

    fn nsec3_cover(&self, name: &[u8]) -> Option<&Nsec3<'a>> {
        let h = self.hash(name)?;
        self.nsec3.iter().find(|(o, n)| covers_hash(o, n.next, &h)).map(|(_, n)| n)
    }

    /// RFC 5155 §8.3: the closest encloser of `name` and whether the
    /// next closer name is covered by an opt-out span.
    fn closest_encloser<'n>(&self, name: &'n [u8]) -> Option<(&'n [u8], bool)> {
        let (n, z) = (label_count(name), label_count(self.zone));
        for skip in 1..=n.saturating_sub(z) {
            let ce = ancestor(name, skip);
            if self.nsec3_match(ce).is_some() {
                let next_closer = ancestor(name, skip - 1);
                return self.nsec3_cover(next_closer).map(|c| (ce, c.opt_out()));
            }
        }
        None
    }

    fn nsec_match(&self, name: &[u8]) -> Option<&Nsec<'a>> {
        self.nsec.iter().find(|(o, _)| name_eq(o, name)).map(|(_, n)| n)
    }

    /// An NSEC that covers `name` and may prove things about it: not one
    /// of a delegation or DNAME above it (RFC 6840 §4.1).
    fn nsec_cover(&self, name: &[u8]) -> Option<(&'a [u8], &Nsec<'a>)> {
        self.nsec.iter().find(|(o, n)| covers_name(o, n.next, name) && !cut_above(o, n, name)).map(|(o, n)| (*o, n))
    }

    /// NXDOMAIN for `name`: it is covered, and so is the wildcard at its
    /// closest encloser.
    pub fn nxdomain(&self, name: &[u8]) -> Proof {
        if let Some((owner, n)) = self.nsec_cover(name) {
            let ce = closest_encloser_nsec(name, owner, n.next);
            let wc = wildcard(ce);
            return if self.nsec_cover(&wc).is_some() { Proof::Proven } else { Proof::Unproven };
        }
        if self.too_costly {
            return Proof::TooCostly;
        }
        match self.closest_encloser(name) {
            Some((ce, opt_out)) => match self.nsec3_cover(&wildcard(ce)) {
                Some(_) if opt_out => Proof::OptOut,
                Some(_) => Proof::Proven,
                None => Proof::Unproven,
            },
            None => Proof::Unproven,
        }
    }

    /// NODATA for `name`/`qtype` (RFC 4035 §5.4, RFC 5155 §8.5–8.7).
    pub fn nodata(&self, name: &[u8], qtype: u16) -> Proof {
        let lacks = |bm: &[u8]| !bitmap_has(bm, qtype) && !bitmap_has(bm, TYPE_CNAME);
        // The parent side of a delegation proves nothing but the absence of DS.
        let parent_side = |bm: &[u8]| qtype != TYPE_DS && bitmap_has(bm, TYPE_NS) && !bitmap_has(bm, TYPE_SOA);
        if let Some(n) = self.nsec_match(name) {
            return if lacks(n.bitmap) && !parent_side(n.bitmap) { Proof::Proven } else { Proof::Unproven };
        }
        if let Some((owner, n)) = self.nsec_cover(name) {
            // An empty non-terminal: the next name is below it.
            if is_under(n.next, name) && !name_eq(n.next, name) {
                return Proof::Proven;
            }
            let wc = wildcard(closest_encloser_nsec(name, owner, n.next));
            return match self.nsec_match(&wc) {
                Some(w) if lacks(w.bitmap) => Proof::Proven,
                _ => Proof::Unproven,
            };
        }
        if self.too_costly {
            return Proof::TooCostly;
        }
        if let Some(n) = self.nsec3_match(name) {
            return if lacks(n.bitmap) && !parent_side(n.bitmap) { Proof::Proven } else { Proof::Unproven };
        }
        let Some((ce, opt_out)) = self.closest_encloser(name) else { return Proof::Unproven };
        if qtype == TYPE_DS && opt_out {
            return Proof::OptOut;
        }
        match self.nsec3_match(&wildcard(ce)) {
            Some(w) if lacks(w.bitmap) => Proof::Proven,
            _ => Proof::Unproven,
        }
    }

    /// A wildcard expansion (RFC 4035 §5.3.4, RFC 5155 §8.8): `owner`
    /// was answered from `*.<its last sig_labels labels>`; no closer
    /// match may exist.
    pub fn expansion(&self, owner: &[u8], sig_labels: usize) -> Proof {
        if self.nsec_cover(owner).is_some() {
            return Proof::Proven;
        }
        if self.too_costly {
            return Proof::TooCostly;
        }
        let n = label_count(owner);
        if sig_labels >= n {
            return Proof::Unproven;
        }
        let next_closer = ancestor(owner, n - sig_labels - 1);
        match self.nsec3_cover(next_closer) {
            Some(c) if c.opt_out() => Proof::OptOut,
            Some(_) => Proof::Proven,
            None => Proof::Unproven,
        }
    }

    /// A negative answer to `DS <name>` from the zone above it.
    pub fn ds_absence(&self, name: &[u8]) -> DsAbsence {
        let cut = |bm: &[u8]| {
            if bitmap_has(bm, TYPE_DS) {
                DsAbsence::Unproven
            } else if bitmap_has(bm, TYPE_NS) && !bitmap_has(bm, TYPE_SOA) {
                DsAbsence::InsecureCut
            } else {
                DsAbsence::NotACut
            }
        };
        if let Some(n) = self.nsec_match(name) {
            return cut(n.bitmap);
        }
        if let Some((owner, n)) = self.nsec_cover(name) {
            return if is_under(n.next, name) && !name_eq(n.next, name) {
                DsAbsence::NotACut
            } else {
                let _ = owner;
                DsAbsence::NoName
            };
        }
        if self.too_costly {
            return DsAbsence::InsecureCut;
        }
        if let Some(n) = self.nsec3_match(name) {
            return cut(n.bitmap);
        }
        match self.closest_encloser(name) {
            Some((_, true)) => DsAbsence::InsecureCut,
            Some((_, false)) => DsAbsence::NoName,
            None => DsAbsence::Unproven,
        }
    }
}

/// `*.<name>`.
fn wildcard(name: &[u8]) -> Vec<u8> {
    let mut w = Vec::with_capacity(name.len() + 2);
    w.extend_from_slice(&[1, b'*']);
    w.extend_from_slice(name);
    w
}

/// Whether an NSEC from `owner` to `next` covers `name` (strictly between;
/// the last NSEC of a zone wraps to its apex).
fn covers_name(owner: &[u8], next: &[u8], name: &[u8]) -> bool {
    let after_owner = canonical_cmp(owner, name) == Less;
    if canonical_cmp(owner, next) == Less {
        after_owner && canonical_cmp(name, next) == Less
    } else {
        after_owner || canonical_cmp(name, next) == Less
    }
}

fn covers_hash(owner: &[u8; 20], next: &[u8], h: &[u8; 20]) -> bool {
    let (o, n, h) = (&owner[..], next, &h[..]);
    if o < n { o < h && h < n } else { o < h || h < n }
}

/// An NSEC of a delegation (NS, no SOA) or a DNAME, at a proper ancestor of
/// `name`: from the parent side, it proves nothing below the cut.
fn cut_above(owner: &[u8], n: &Nsec<'_>, name: &[u8]) -> bool {
    let below = is_under(name, owner) && !name_eq(name, owner);
    below && ((bitmap_has(n.bitmap, TYPE_NS) && !bitmap_has(n.bitmap, TYPE_SOA)) || bitmap_has(n.bitmap, 39))
}

/// The closest encloser an NSEC covering `name` implies: the longer of
/// the names' common ancestors with its owner and its next name.
fn closest_encloser_nsec<'n>(name: &'n [u8], owner: &[u8], next: &[u8]) -> &'n [u8] {
    let common = |other: &[u8]| {
        let (a, b) = (label_count(name), label_count(other));
        (0..=a.min(b)).rev().find(|&k| name_eq(ancestor(name, a - k), ancestor(other, b - k))).unwrap_or(0)
    };
    let k = common(owner).max(common(next));
    ancestor(name, label_count(name) - k)
}
