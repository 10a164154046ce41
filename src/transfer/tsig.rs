//! TSIG (RFC 8945): verifying a signed request and signing the responses
//! to it, one message or a stream (§5.3.1), with HMAC-SHA256 or -SHA512.

use ring::hmac;

use crate::config::transfers::{TsigAlgorithm, TsigKey};
use crate::dns::{CLASS_ANY, TYPE_TSIG};

/// The time skew allowed, in seconds (RFC 8945 §10 recommends 300).
pub const FUDGE: u16 = 300;

/// TSIG errors (RFC 8945 §3), carried in the TSIG record of a NOTAUTH response.
pub mod error {
    pub const BADSIG: u16 = 16;
    pub const BADKEY: u16 = 17;
    pub const BADTIME: u16 = 18;

    /// The error's name, for logs and metrics.
    pub fn name(e: u16) -> &'static str {
        match e {
            BADSIG => "BADSIG",
            BADKEY => "BADKEY",
            BADTIME => "BADTIME",
            _ => "FORMERR",
        }
    }
}

/// A TSIG record as read from a message.
#[derive(Debug, Clone)]
pub struct TsigRecord {
    /// Where the record starts: the message before it is what was signed.
    pub start: usize,
    /// The key's name, lowercase wire form.
    pub key: Vec<u8>,
    /// The algorithm's name, lowercase wire form.
    pub algorithm: Vec<u8>,
    pub time: u64,
    pub fudge: u16,
    pub mac: Vec<u8>,
    pub original_id: u16,
    pub error: u16,
    pub other: Vec<u8>,
}

/// Reads the name at `pos` of `msg`, following compression pointers, as
/// lowercase wire form; and where the name ends in place.
pub fn read_name(msg: &[u8], mut pos: usize) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::with_capacity(32);
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos)? as usize;
        match len & 0xc0 {
            0 => {
                out.push(len as u8);
                if len == 0 {
                    return Some((out, end.unwrap_or(pos + 1)));
                }
                out.extend(msg.get(pos + 1..pos + 1 + len)?.iter().map(u8::to_ascii_lowercase));
                if out.len() > crate::dns::names::MAX_NAME_WIRE_LEN {
                    return None;
                }
                pos += 1 + len;
            }
            0xc0 => {
                let ptr = ((len & 0x3f) << 8) | *msg.get(pos + 1)? as usize;
                end.get_or_insert(pos + 2);
                if ptr >= pos {
                    return None;
                }
                pos = ptr;
            }
            _ => return None,
        }
    }
    None
}

impl TsigRecord {
    /// Reads the TSIG record at `start`, the last record of `msg`.
    pub fn read(msg: &[u8], start: usize) -> Option<TsigRecord> {
        let (key, mut p) = read_name(msg, start)?;
        let be16 = |p: usize| msg.get(p..p + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        if be16(p)? != TYPE_TSIG {
            return None;
        }
        let rdlen = be16(p + 8)? as usize;
        p += 10;
        let rdata_end = p.checked_add(rdlen)?;
        msg.get(p..rdata_end)?;
        let (algorithm, q) = read_name(msg, p)?;
        p = q;
        let t = msg.get(p..p + 6)?;
        let time = t.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let fudge = be16(p + 6)?;
        let mac_len = be16(p + 8)? as usize;
        p += 10;
        let mac = msg.get(p..p + mac_len)?.to_vec();
        p += mac_len;
        let original_id = be16(p)?;
        let error = be16(p + 2)?;
        let other_len = be16(p + 4)? as usize;
        p += 6;
        let other = msg.get(p..p + other_len)?.to_vec();
        if p + other_len != rdata_end {
            return None;
        }
        Some(TsigRecord { start, key, algorithm, time, fudge, mac, original_id, error, other })
    }
}

fn ring_algorithm(a: TsigAlgorithm) -> hmac::Algorithm {
    match a {
        TsigAlgorithm::HmacSha256 => hmac::HMAC_SHA256,
        TsigAlgorithm::HmacSha512 => hmac::HMAC_SHA512,
    }
}

/// The key's name in lowercase wire form.
pub fn key_wire(k: &TsigKey) -> Vec<u8> {
    crate::dns::names::name_key(&k.name).to_vec()
}

fn put48(ctx: &mut hmac::Context, t: u64) {
    ctx.update(&t.to_be_bytes()[2..]);
}

/// The digest's TSIG variables (RFC 8945 §4.3.3).
fn variables(ctx: &mut hmac::Context, key: &[u8], alg: &[u8], time: u64, fudge: u16, error: u16, other: &[u8]) {
    ctx.update(key);
    ctx.update(&CLASS_ANY.to_be_bytes());
    ctx.update(&0u32.to_be_bytes());
    ctx.update(alg);
    put48(ctx, time);
    ctx.update(&fudge.to_be_bytes());
    ctx.update(&error.to_be_bytes());
    ctx.update(&(other.len() as u16).to_be_bytes());
    ctx.update(other);
}

/// A request that verified: the key (index into the keys given) and
/// what the response's signature chains from.
#[derive(Debug, Clone)]
pub struct Verified {
    pub key: usize,
    pub record: TsigRecord,
}

/// A request that did not: the TSIG error, and the key when it was known
/// (BADTIME is answered signed with it).
#[derive(Debug, Clone)]
pub struct Rejected {
    pub error: u16,
    pub key: Option<usize>,
    pub record: TsigRecord,
}

/// Verifies the TSIG record at `start` of the request `msg` against
/// `keys` at `now` (seconds since the epoch). `None`: no readable TSIG
/// record there (FORMERR).
pub fn verify(keys: &[&TsigKey], msg: &[u8], start: usize, now: u64) -> Option<Result<Verified, Rejected>> {
    let record = TsigRecord::read(msg, start)?;
    let found = keys.iter().position(|k| key_wire(k) == record.key && k.algorithm.wire_name() == record.algorithm.as_slice());
    let Some(ki) = found else {
        return Some(Err(Rejected { error: error::BADKEY, key: None, record }));
    };
    let k = keys[ki];
    let mac_len = ring_algorithm(k.algorithm).digest_algorithm().output_len();
    // Truncated MACs (RFC 8945 §5.2.2.1) are not accepted: a full one or BADSIG.
    if record.mac.len() != mac_len || msg.len() < 12 {
        return Some(Err(Rejected { error: error::BADSIG, key: None, record }));
    }
    let hkey = hmac::Key::new(ring_algorithm(k.algorithm), &k.secret.0);
    let mut ctx = hmac::Context::with_key(&hkey);
    signed_message(&mut ctx, msg, start, &record);
    let tag = ctx.sign();
    if !constant_time_eq(tag.as_ref(), &record.mac) {
        return Some(Err(Rejected { error: error::BADSIG, key: None, record }));
    }
    // Time is checked after the MAC (RFC 8945 §5.2.3), so that only the key's holder learns ours.
    if now.abs_diff(record.time) > u64::from(record.fudge) {
        return Some(Err(Rejected { error: error::BADTIME, key: Some(ki), record }));
    }
    Some(Ok(Verified { key: ki, record }))
}

/// Feeds the MAC what RFC 8945 §4.3.1 signs of `msg`, whose TSIG record
/// starts at `start`: the header with the original id and the additional
/// count less the TSIG, the rest before the TSIG, and its variables.
fn signed_message(ctx: &mut hmac::Context, msg: &[u8], start: usize, record: &TsigRecord) {
    let mut header = [0u8; 12];
    header.copy_from_slice(&msg[..12]);
    header[..2].copy_from_slice(&record.original_id.to_be_bytes());
    let ar = u16::from_be_bytes([header[10], header[11]]).saturating_sub(1);
    header[10..12].copy_from_slice(&ar.to_be_bytes());
    ctx.update(&header);
    ctx.update(&msg[12..start]);
    variables(ctx, &record.key, &record.algorithm, record.time, record.fudge, record.error, &record.other);
}

/// Whether `msg`, a response to a request of ours whose MAC was
/// `request_mac`, is signed with `key` (RFC 8945 §5.3) within the fudge of
/// `now`. Its rcode and TSIG error are the caller's to check.
pub fn verify_response(key: &TsigKey, msg: &[u8], request_mac: &[u8], now: u64) -> bool {
    let Ok(q) = crate::dns::query::response_tsig(msg) else { return false };
    let Some(start) = q else { return false };
    let Some(record) = TsigRecord::read(msg, start) else { return false };
    if record.key != key_wire(key) || record.algorithm != key.algorithm.wire_name() {
        return false;
    }
    let hkey = hmac::Key::new(ring_algorithm(key.algorithm), &key.secret.0);
    let mut ctx = hmac::Context::with_key(&hkey);
    ctx.update(&(request_mac.len() as u16).to_be_bytes());
    ctx.update(request_mac);
    signed_message(&mut ctx, msg, start, &record);
    constant_time_eq(ctx.sign().as_ref(), &record.mac) && now.abs_diff(record.time) <= u64::from(record.fudge)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// Signs the responses to one request, each chained to the one before
/// (RFC 8945 §5.3: the first to the request's MAC, the next to the last).
pub struct Signer {
    key: hmac::Key,
    name: Vec<u8>,
    algorithm: &'static [u8],
    original_id: u16,
    /// The MAC the next signature chains from.
    prior: Vec<u8>,
    first: bool,
}

impl Signer {
    /// For the responses to `request`, verified with `key`.
    pub fn new(key: &TsigKey, request: &TsigRecord) -> Signer {
        Signer {
            key: hmac::Key::new(ring_algorithm(key.algorithm), &key.secret.0),
            name: key_wire(key),
            algorithm: key.algorithm.wire_name(),
            original_id: request.original_id,
            prior: request.mac.clone(),
            first: true,
        }
    }

    /// For a request of pzdns's own (a NOTIFY): nothing to chain from.
    pub fn for_request(key: &TsigKey, id: u16) -> Signer {
        Signer {
            key: hmac::Key::new(ring_algorithm(key.algorithm), &key.secret.0),
            name: key_wire(key),
            algorithm: key.algorithm.wire_name(),
            original_id: id,
            prior: Vec::new(),
            first: true,
        }
    }

    /// The MAC of the last message signed (a NOTIFY's, to check the reply).
    pub fn last_mac(&self) -> &[u8] {
        &self.prior
    }

    /// Appends a TSIG record to the whole message `msg` (its ARCOUNT
    /// counts it), signed at `now`; `error` and `other` as RFC 8945 says
    /// (BADTIME carries the server's time).
    pub fn sign(&mut self, msg: &mut Vec<u8>, now: u64, error: u16, other: &[u8]) {
        let mut ctx = hmac::Context::with_key(&self.key);
        if !self.prior.is_empty() {
            ctx.update(&(self.prior.len() as u16).to_be_bytes());
            ctx.update(&self.prior);
        }
        ctx.update(msg);
        if self.first {
            variables(&mut ctx, &self.name, self.algorithm, now, FUDGE, error, other);
        } else {
            // Later messages of a stream: the timers only (RFC 8945 §5.3.1).
            put48(&mut ctx, now);
            ctx.update(&FUDGE.to_be_bytes());
        }
        let mac = ctx.sign();
        append_tsig(msg, &self.name, self.algorithm, now, mac.as_ref(), self.original_id, error, other);
        self.prior = mac.as_ref().to_vec();
        self.first = false;
    }
}

/// Appends a TSIG record and counts it in ARCOUNT.
#[allow(clippy::too_many_arguments)]
pub fn append_tsig(msg: &mut Vec<u8>, name: &[u8], alg: &[u8], time: u64, mac: &[u8], original_id: u16, error: u16, other: &[u8]) {
    msg.extend_from_slice(name);
    msg.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    let rdlen = alg.len() + 6 + 2 + 2 + mac.len() + 2 + 2 + 2 + other.len();
    msg.extend_from_slice(&(rdlen as u16).to_be_bytes());
    msg.extend_from_slice(alg);
    msg.extend_from_slice(&time.to_be_bytes()[2..]);
    msg.extend_from_slice(&FUDGE.to_be_bytes());
    msg.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    msg.extend_from_slice(mac);
    msg.extend_from_slice(&original_id.to_be_bytes());
    msg.extend_from_slice(&error.to_be_bytes());
    msg.extend_from_slice(&(other.len() as u16).to_be_bytes());
    msg.extend_from_slice(other);
    if msg.len() >= 12 {
        let ar = u16::from_be_bytes([msg[10], msg[11]]).wrapping_add(1);
        msg[10..12].copy_from_slice(&ar.to_be_bytes());
    }
}

/// Room a TSIG record takes at most (name, algorithm, a SHA-512 MAC, BADTIME's other data).
pub const MAX_TSIG_LEN: usize = 255 + 13 + 10 + 16 + 64 + 6 + 6;

/// The time now, in seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::transfers::TsigSecret;
    use std::str::FromStr;

    fn key(secret: &[u8]) -> TsigKey {
        TsigKey {
            name: hickory_proto::rr::Name::from_str("k1.").unwrap(),
            algorithm: TsigAlgorithm::HmacSha256,
            secret: TsigSecret(secret.into()),
            secret_file: Default::default(),
            vpc: crate::config::Located { value: "vpc-a".into(), path: Default::default(), pos: crate::config::Pos::new(1, 1) },
            notify: Vec::new(),
        }
    }

    fn query() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x00\x00\xfc\x00\x01");
        m
    }

    #[test]
    fn a_signed_request_verifies_and_a_changed_one_does_not() {
        let k = key(b"0123456789abcdef0123456789abcdef");
        let mut m = query();
        let start = m.len();
        Signer::for_request(&k, 0x1234).sign(&mut m, 1_000_000, 0, &[]);
        assert!(verify(&[&k], &m, start, 1_000_100).unwrap().is_ok());
        let late = verify(&[&k], &m, start, 1_000_000 + 301).unwrap().unwrap_err();
        assert_eq!((late.error, late.key), (error::BADTIME, Some(0)));
        let other = key(b"another secret, another mac.....");
        assert_eq!(verify(&[&other], &m, start, 1_000_000).unwrap().unwrap_err().error, error::BADSIG);
        let mut changed = m.clone();
        changed[13] ^= 0x20; // one letter of the question
        assert_eq!(verify(&[&k], &changed, start, 1_000_000).unwrap().unwrap_err().error, error::BADSIG);
        let mut renamed = k.clone();
        renamed.name = hickory_proto::rr::Name::from_str("k2.").unwrap();
        assert_eq!(verify(&[&renamed], &m, start, 1_000_000).unwrap().unwrap_err().error, error::BADKEY);
    }

    #[test]
    fn a_response_verifies_against_the_requests_mac_only() {
        let k = key(b"0123456789abcdef0123456789abcdef");
        let mut req = query();
        let start = req.len();
        let mut ours = Signer::for_request(&k, 0x1234);
        ours.sign(&mut req, 1_000_000, 0, &[]);
        let record = TsigRecord::read(&req, start).unwrap();
        let mut resp = query();
        resp[2] |= 0x80;
        Signer::new(&k, &record).sign(&mut resp, 1_000_001, 0, &[]);
        assert!(verify_response(&k, &resp, ours.last_mac(), 1_000_001));
        assert!(!verify_response(&k, &resp, &[0; 32], 1_000_001), "another request's MAC");
        assert!(!verify_response(&k, &resp, ours.last_mac(), 1_000_001 + 301), "too late");
        assert!(!verify_response(&k, &query(), ours.last_mac(), 1_000_001), "unsigned");
    }

    #[test]
    fn compressed_names_are_followed() {
        let msg = b"\x00\x00\x07Example\x00\xc0\x02";
        assert_eq!(read_name(msg, 11).unwrap(), (b"\x07example\x00".to_vec(), 13));
        assert!(read_name(b"\xc0\x00", 0).is_none(), "a pointer to itself");
    }
}
