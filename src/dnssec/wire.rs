//! DNSSEC records in wire form: the RDATA of RRSIG, DNSKEY, DS, NSEC and
//! NSEC3 read in place, names compared in canonical order (RFC 4034 §6.1),
//! the signed data of an RRset laid out (RFC 4034 §3.1.8.1, §6.2) and the
//! signature checked with `ring`.
//!
//! Every reader takes bytes from outside and returns `None` on anything
//! short or malformed: none of them indexes past what it checked.

use ring::signature;

pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_NS: u16 = 2;
pub const TYPE_DS: u16 = 43;
pub const TYPE_RRSIG: u16 = 46;
pub const TYPE_NSEC: u16 = 47;
pub const TYPE_DNSKEY: u16 = 48;
pub const TYPE_NSEC3: u16 = 50;

/// A record read in place: the owner (uncompressed wire form, any case),
/// its type, class, TTL and RDATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rr<'a> {
    pub owner: &'a [u8],
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub rdata: &'a [u8],
}

impl<'a> Rr<'a> {
    /// A record laid out as the cache keeps it: the owner uncompressed,
    /// then TYPE CLASS TTL RDLENGTH RDATA.
    pub fn parse(wire: &'a [u8]) -> Option<Self> {
        let n = name_end(wire, 0)?;
        let tail = wire.get(n..n + 10)?;
        let len = u16::from_be_bytes([tail[8], tail[9]]) as usize;
        let rdata = wire.get(n + 10..n + 10 + len)?;
        Some(Rr {
            owner: &wire[..n],
            rtype: u16::from_be_bytes([tail[0], tail[1]]),
            class: u16::from_be_bytes([tail[2], tail[3]]),
            ttl: u32::from_be_bytes([tail[4], tail[5], tail[6], tail[7]]),
            rdata,
        })
    }
}

/// Every record of `wires` that reads ([`Rr::parse`]).
pub fn parse_all<'a>(wires: impl IntoIterator<Item = &'a [u8]>) -> Vec<Rr<'a>> {
    wires.into_iter().filter_map(Rr::parse).collect()
}

/// Where the uncompressed name starting at `at` ends (after its root label).
pub fn name_end(b: &[u8], at: usize) -> Option<usize> {
    let mut p = at;
    loop {
        let len = *b.get(p)? as usize;
        if len > 63 || p + 1 - at > 255 {
            return None;
        }
        p += 1 + len;
        if len == 0 {
            return (p <= b.len() && p - at <= 255).then_some(p);
        }
    }
}

/// The labels of a wire name, leftmost first (the root label left out).
pub fn labels(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut p = 0;
    std::iter::from_fn(move || {
        let len = *name.get(p)? as usize;
        if len == 0 {
            return None;
        }
        let l = name.get(p + 1..p + 1 + len)?;
        p += 1 + len;
        Some(l)
    })
}

pub fn label_count(name: &[u8]) -> usize {
    labels(name).count()
}

/// The ancestor of `name` that drops its `skip` leftmost labels.
pub fn ancestor(name: &[u8], skip: usize) -> &[u8] {
    let mut p = 0;
    for _ in 0..skip {
        match name.get(p) {
            Some(&0) | None => break,
            Some(&len) => p += 1 + len as usize,
        }
    }
    name.get(p..).unwrap_or(&[0])
}

/// `name` lowercased (ASCII), as canonical form wants it.
pub fn lower(name: &[u8]) -> Vec<u8> {
    let mut v = name.to_vec();
    lower_in_place(&mut v);
    v
}

/// Lowercases the letters of a wire name in place (length bytes are at
/// most 63, never letters).
pub fn lower_in_place(name: &mut [u8]) {
    name.make_ascii_lowercase();
}

/// Whether two wire names are equal but for ASCII case.
pub fn name_eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether `name` is `zone` or under it.
pub fn is_under(name: &[u8], zone: &[u8]) -> bool {
    let (n, z) = (label_count(name), label_count(zone));
    n >= z && name_eq(ancestor(name, n - z), zone)
}

/// Canonical DNS name order (RFC 4034 §6.1): label by label from the
/// right, each compared as lowercased bytes, a shorter name first.
pub fn canonical_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let la: Vec<&[u8]> = labels(a).collect();
    let lb: Vec<&[u8]> = labels(b).collect();
    for (x, y) in la.iter().rev().zip(lb.iter().rev()) {
        let x = x.iter().map(u8::to_ascii_lowercase);
        let y = y.iter().map(u8::to_ascii_lowercase);
        match x.cmp(y) {
            std::cmp::Ordering::Equal => {}
            o => return o,
        }
    }
    la.len().cmp(&lb.len())
}

/// The fixed part of an RRSIG's RDATA and its signer, read in place.
#[derive(Debug, Clone, Copy)]
pub struct Rrsig<'a> {
    pub covered: u16,
    pub algorithm: u8,
    pub labels: u8,
    pub original_ttl: u32,
    pub expiration: u32,
    pub inception: u32,
    pub key_tag: u16,
    pub signer: &'a [u8],
    pub signature: &'a [u8],
    /// RDATA up to the signature: what the signed data starts with.
    pub head: &'a [u8],
}

impl<'a> Rrsig<'a> {
    pub fn parse(rdata: &'a [u8]) -> Option<Self> {
        let f = rdata.get(..18)?;
        let end = name_end(rdata, 18)?;
        Some(Rrsig {
            covered: u16::from_be_bytes([f[0], f[1]]),
            algorithm: f[2],
            labels: f[3],
            original_ttl: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
            expiration: u32::from_be_bytes([f[8], f[9], f[10], f[11]]),
            inception: u32::from_be_bytes([f[12], f[13], f[14], f[15]]),
            key_tag: u16::from_be_bytes([f[16], f[17]]),
            signer: &rdata[18..end],
            signature: &rdata[end..],
            head: &rdata[..end],
        })
    }
}

/// The type an RRSIG's RDATA covers.
pub fn rrsig_covers(rdata: &[u8]) -> Option<u16> {
    rdata.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// The signer name of an RRSIG's RDATA.
pub fn rrsig_signer(rdata: &[u8]) -> Option<&[u8]> {
    Rrsig::parse(rdata).map(|s| s.signer)
}

#[derive(Debug, Clone, Copy)]
pub struct Dnskey<'a> {
    pub flags: u16,
    pub protocol: u8,
    pub algorithm: u8,
    pub key: &'a [u8],
    pub rdata: &'a [u8],
}

/// The Zone Key flag (RFC 4034 §2.1.1): only such keys sign zone data.
pub const FLAG_ZONE: u16 = 0x0100;
/// The REVOKE flag (RFC 5011): a revoked key is not used.
pub const FLAG_REVOKE: u16 = 0x0080;

impl<'a> Dnskey<'a> {
    pub fn parse(rdata: &'a [u8]) -> Option<Self> {
        let f = rdata.get(..4)?;
        Some(Dnskey { flags: u16::from_be_bytes([f[0], f[1]]), protocol: f[2], algorithm: f[3], key: &rdata[4..], rdata })
    }

    /// RFC 4034 Appendix B (algorithm 1 is obsolete and not supported).
    pub fn key_tag(&self) -> u16 {
        key_tag(self.rdata)
    }

    /// A key that may have signed zone data.
    pub fn usable(&self) -> bool {
        self.protocol == 3 && self.flags & FLAG_ZONE != 0 && self.flags & FLAG_REVOKE == 0
    }
}

pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        ac += if i & 1 == 1 { *b as u32 } else { (*b as u32) << 8 };
    }
    ac += (ac >> 16) & 0xffff;
    (ac & 0xffff) as u16
}

#[derive(Debug, Clone, Copy)]
pub struct Ds<'a> {
    pub key_tag: u16,
    pub algorithm: u8,
    pub digest_type: u8,
    pub digest: &'a [u8],
}

impl<'a> Ds<'a> {
    pub fn parse(rdata: &'a [u8]) -> Option<Self> {
        let f = rdata.get(..4)?;
        Some(Ds { key_tag: u16::from_be_bytes([f[0], f[1]]), algorithm: f[2], digest_type: f[3], digest: &rdata[4..] })
    }

    /// Whether this DS can be checked at all (a supported signing
    /// algorithm and digest type).
    pub fn supported(&self) -> bool {
        algorithm_supported(self.algorithm) && digest_supported(self.digest_type)
    }

    /// Whether `key` (owned by `owner`) is the key this DS names.
    pub fn matches(&self, owner: &[u8], key: &Dnskey<'_>) -> bool {
        if key.algorithm != self.algorithm || key.key_tag() != self.key_tag {
            return false;
        }
        let alg = match self.digest_type {
            1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            2 => &ring::digest::SHA256,
            4 => &ring::digest::SHA384,
            _ => return false,
        };
        let mut ctx = ring::digest::Context::new(alg);
        ctx.update(&lower(owner));
        ctx.update(key.rdata);
        ctx.finish().as_ref() == self.digest
    }
}

/// RFC 8624 §3.1: the algorithms pzdns validates. Any other (RSAMD5,
/// DSA, RSASHA1, GOST, ED448...) makes a zone insecure, never bogus.
pub fn algorithm_supported(alg: u8) -> bool {
    matches!(alg, 8 | 10 | 13 | 14 | 15)
}

/// RFC 8624 §3.3: SHA-1 (still MUST validate), SHA-256, SHA-384.
pub fn digest_supported(t: u8) -> bool {
    matches!(t, 1 | 2 | 4)
}

/// The type bitmap of an NSEC or NSEC3: whether `t` is in it (RFC 4034 §4.1.2).
pub fn bitmap_has(mut bitmap: &[u8], t: u16) -> bool {
    let (window, bit) = ((t >> 8) as u8, (t & 0xff) as usize);
    while bitmap.len() >= 2 {
        let (w, len) = (bitmap[0], bitmap[1] as usize);
        let Some(bits) = bitmap.get(2..2 + len) else { return false };
        if w == window {
            return bits.get(bit / 8).is_some_and(|b| b & (0x80 >> (bit % 8)) != 0);
        }
        bitmap = &bitmap[2 + len..];
    }
    false
}

#[derive(Debug, Clone, Copy)]
pub struct Nsec<'a> {
    pub next: &'a [u8],
    pub bitmap: &'a [u8],
}

impl<'a> Nsec<'a> {
    pub fn parse(rdata: &'a [u8]) -> Option<Self> {
        let end = name_end(rdata, 0)?;
        Some(Nsec { next: &rdata[..end], bitmap: &rdata[end..] })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Nsec3<'a> {
    pub hash_alg: u8,
    pub flags: u8,
    pub iterations: u16,
    pub salt: &'a [u8],
    pub next: &'a [u8],
    pub bitmap: &'a [u8],
}

impl<'a> Nsec3<'a> {
    pub fn parse(rdata: &'a [u8]) -> Option<Self> {
        let f = rdata.get(..5)?;
        let salt_len = f[4] as usize;
        let salt = rdata.get(5..5 + salt_len)?;
        let hash_len = *rdata.get(5 + salt_len)? as usize;
        let next = rdata.get(6 + salt_len..6 + salt_len + hash_len)?;
        Some(Nsec3 {
            hash_alg: f[0],
            flags: f[1],
            iterations: u16::from_be_bytes([f[2], f[3]]),
            salt,
            next,
            bitmap: &rdata[6 + salt_len + hash_len..],
        })
    }

    pub fn opt_out(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// RFC 5155 §5: IH(salt, name, iterations) with SHA-1.
pub fn nsec3_hash(name: &[u8], salt: &[u8], iterations: u16) -> [u8; 20] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&lower(name));
    ctx.update(salt);
    let mut h = [0u8; 20];
    h.copy_from_slice(ctx.finish().as_ref());
    for _ in 0..iterations {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(&h);
        ctx.update(salt);
        h.copy_from_slice(ctx.finish().as_ref());
    }
    h
}

/// The hash an NSEC3 owner's first label spells in base32hex (RFC 4648 §7).
pub fn base32hex_decode(label: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(label.len() * 5 / 8);
    let (mut acc, mut bits) = (0u64, 0u32);
    for &c in label {
        let v = match c.to_ascii_uppercase() {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'A'..=b'V' => c - b'A' + 10,
            _ => return None,
        };
        acc = (acc << 5) | v as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// RDATA types whose embedded names are lowercased in canonical form
/// (RFC 4034 §6.2 as amended by RFC 6840 §5.1), with where the names are:
/// the byte offset of the first name and how many names follow in a row.
fn rdata_names(rtype: u16) -> Option<(usize, usize)> {
    Some(match rtype {
        2..=5 | 7..=9 | 12 | 39 => (0, 1), // NS MD MF CNAME MB MG MR PTR DNAME
        6 | 14 | 17 => (0, 2),             // SOA MINFO RP
        15 | 18 | 21 | 36 => (2, 1),       // MX AFSDB RT KX
        26 => (2, 2),                      // PX
        33 => (6, 1),                      // SRV
        _ => return None,
    })
}

/// RDATA in canonical form: the names of the types above lowercased.
pub fn canonical_rdata(rtype: u16, rdata: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let Some((start, count)) = rdata_names(rtype) else { return rdata.into() };
    let mut v = rdata.to_vec();
    let mut at = start;
    for _ in 0..count {
        let Some(end) = name_end(&v, at) else { break };
        lower_in_place(&mut v[at..end]);
        at = end;
    }
    v.into()
}

/// The data an RRSIG signs (RFC 4034 §3.1.8.1): its RDATA without the
/// signature (signer lowercased), then each record of the RRset in
/// canonical form and order, duplicates once, with the original TTL, the
/// owner rebuilt as `*.<the last labels>` for a wildcard expansion.
pub fn signed_data(sig: &Rrsig<'_>, rrset: &[Rr<'_>]) -> Option<Vec<u8>> {
    let first = rrset.first()?;
    let owner_labels = label_count(first.owner);
    let sig_labels = sig.labels as usize;
    if sig_labels > owner_labels {
        return None;
    }
    let mut owner = Vec::with_capacity(first.owner.len() + 2);
    if sig_labels < owner_labels {
        owner.extend_from_slice(&[1, b'*']);
    }
    owner.extend_from_slice(&lower(ancestor(first.owner, owner_labels - sig_labels)));
    let mut rdatas: Vec<std::borrow::Cow<'_, [u8]>> = rrset.iter().map(|r| canonical_rdata(r.rtype, r.rdata)).collect();
    rdatas.sort();
    rdatas.dedup();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&sig.head[..18]);
    out.extend_from_slice(&lower(sig.signer));
    for rd in &rdatas {
        out.extend_from_slice(&owner);
        out.extend_from_slice(&first.rtype.to_be_bytes());
        out.extend_from_slice(&first.class.to_be_bytes());
        out.extend_from_slice(&sig.original_ttl.to_be_bytes());
        out.extend_from_slice(&u16::try_from(rd.len()).ok()?.to_be_bytes());
        out.extend_from_slice(rd);
    }
    Some(out)
}

/// Checks `signature` over `data` with a DNSKEY's public key.
pub fn verify(key: &Dnskey<'_>, data: &[u8], sig: &[u8]) -> bool {
    match key.algorithm {
        8 | 10 => {
            // RFC 3110: exponent length (1 byte, or 0 then 2 bytes), exponent, modulus.
            let k = key.key;
            let (elen, rest) = match k.first() {
                Some(0) => match k.get(1..3) {
                    Some(b) => (u16::from_be_bytes([b[0], b[1]]) as usize, &k[3..]),
                    None => return false,
                },
                Some(&n) => (n as usize, &k[1..]),
                None => return false,
            };
            if elen == 0 || rest.len() <= elen {
                return false;
            }
            let (e, n) = rest.split_at(elen);
            let params = if key.algorithm == 8 {
                &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
            } else {
                &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY
            };
            signature::RsaPublicKeyComponents { n, e }.verify(params, data, sig).is_ok()
        }
        13 | 14 => {
            let (alg, len) =
                if key.algorithm == 13 { (&signature::ECDSA_P256_SHA256_FIXED, 64) } else { (&signature::ECDSA_P384_SHA384_FIXED, 96) };
            if key.key.len() != len {
                return false;
            }
            let mut point = Vec::with_capacity(len + 1);
            point.push(4);
            point.extend_from_slice(key.key);
            signature::UnparsedPublicKey::new(alg, &point).verify(data, sig).is_ok()
        }
        15 => key.key.len() == 32 && signature::UnparsedPublicKey::new(&signature::ED25519, key.key).verify(data, sig).is_ok(),
        _ => false,
    }
}

/// RFC 4034 §3.1.5: serial-number arithmetic (RFC 1982) on 32-bit times.
pub fn time_le(a: u32, b: u32) -> bool {
    a == b || (b.wrapping_sub(a) as i32) > 0
}

/// The name at the start of an RDATA (a CNAME's target), uncompressed.
pub fn rdata_name(rdata: &[u8]) -> Option<&[u8]> {
    name_end(rdata, 0).map(|e| &rdata[..e])
}

/// Hexadecimal digits (either case) to bytes.
pub fn hex_decode(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A name in wire form, for the tests of `dnssec`.
    pub(crate) fn name(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in s.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    #[test]
    fn canonical_order_of_rfc_4034() {
        // The example list of RFC 4034 §6.1, in order.
        let list = ["example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.", "zABC.a.EXAMPLE.", "z.example.", "*.z.example."];
        for w in list.windows(2) {
            assert_eq!(canonical_cmp(&name(w[0]), &name(w[1])), std::cmp::Ordering::Less, "{} < {}", w[0], w[1]);
        }
        assert_eq!(canonical_cmp(&name("A.example."), &name("a.EXAMPLE.")), std::cmp::Ordering::Equal);
    }

    #[test]
    fn key_tag_of_rfc_4034_example() {
        // RFC 4034 §5.4's DS example: the DNSKEY of dskey.example.com. has tag 60485.
        let key = "AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==";
        let key = data_encoding::BASE64.decode(key.as_bytes()).unwrap();
        let mut rdata = vec![1, 0, 3, 5];
        rdata.extend_from_slice(&key);
        assert_eq!(key_tag(&rdata), 60485);
    }

    #[test]
    fn nsec3_hash_of_rfc_5155_appendix_a() {
        // "example" with salt aabbccdd and 12 iterations hashes to 0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.
        let salt = [0xaa, 0xbb, 0xcc, 0xdd];
        let h = nsec3_hash(&name("example."), &salt, 12);
        assert_eq!(base32hex_decode(b"0p9mhaveqvm6t7vbl5lop2u3t2rp3tom").unwrap(), h);
        let h = nsec3_hash(&name("a.example."), &salt, 12);
        assert_eq!(base32hex_decode(b"35mthgpgcu1qg68fab165klnsnk3dpvl").unwrap(), h);
    }

    #[test]
    fn bitmaps() {
        // RFC 4034 §4.3: A MX RRSIG NSEC TYPE1234.
        let mut bm = vec![0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b];
        bm.extend([0; 26]);
        bm.push(0x20);
        for t in [1, 15, 46, 47, 1234] {
            assert!(bitmap_has(&bm, t), "{t}");
        }
        for t in [2, 5, 43, 48, 1235, 65535] {
            assert!(!bitmap_has(&bm, t), "{t}");
        }
        assert!(!bitmap_has(&bm[..5], 1234), "cut short: absent, no panic");
    }

    #[test]
    fn serial_time() {
        assert!(time_le(1, 2) && time_le(2, 2) && !time_le(3, 2));
        assert!(time_le(u32::MAX - 5, 3), "wraps");
    }
}
