//! Response rate limiting over UDP, as BIND's and Knot's RRL: each client
//! network (an IPv4 /24, an IPv6 /56 by default) has, per kind of
//! response, a token bucket credited `rate` tokens a second (at most
//! `rate` saved, a debt of at most `window` seconds' worth). A response
//! that finds the bucket empty is held back: every `slip`-th of them goes
//! out empty (TC=1, so a real client asks again over TCP; BADCOOKIE with
//! a fresh cookie to a client that sent a cookie, so it asks again over
//! UDP with it, as BIND does), the others are dropped. The kinds are an
//! answer or NODATA (one bucket per name and type), NXDOMAIN (one per
//! zone, the owner of the negative SOA) and errors (one per network).
//!
//! The buckets are a fixed table indexed by a keyed hash (SipHash-1-3
//! with a random key: a spoofer cannot aim two keys at one slot); a key
//! that lands on a slot held by another takes it over. Each slot is
//! updated with atomics: the workers never wait on each other and nothing
//! is allocated per response.

use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use siphasher::sip::SipHasher13;

use crate::dns::{HEADER_LEN, RR_FIXED_LEN, TC, TYPE_OPT, TYPE_SOA, query::OPTION_COOKIE, rcode};

/// Buckets in the table: its memory is fixed (24 bytes a slot).
pub const SLOTS: usize = 1 << 16;
/// Largest `responses_per_second` (and NXDOMAIN, error rates), as BIND's.
pub const MAX_RATE: u32 = 1000;
/// Largest `window`, in seconds (BIND allows an hour; the bucket's
/// arithmetic holds this much debt at the largest rate).
pub const MAX_WINDOW: u32 = 600;
/// Largest `slip` (BIND's).
pub const MAX_SLIP: u32 = 10;
/// The extended rcode a slipped response to a cookie client carries.
const BADCOOKIE: u16 = rcode::BADCOOKIE;

/// Which clients' responses are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every client's.
    All,
    /// Only those of sources in no VPC (the internet side of an
    /// `unknown_clients: forward` server); VPC clients are not limited.
    NoVpc,
}

/// `rate_limit:` of pzdns.yaml, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub responses_per_second: u32,
    pub nxdomains_per_second: u32,
    pub errors_per_second: u32,
    /// Every `slip`-th response held back goes out empty; 0: all dropped.
    pub slip: u32,
    pub window: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub scope: Scope,
}

impl Settings {
    /// BIND's defaults, for a rate of `rate` responses a second.
    pub fn with_rate(rate: u32) -> Self {
        Settings {
            responses_per_second: rate,
            nxdomains_per_second: rate,
            errors_per_second: rate,
            slip: 2,
            window: 15,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            scope: Scope::All,
        }
    }

    /// Whether responses to a client in a VPC (`true`) or in none are limited.
    pub fn applies(&self, in_vpc: bool) -> bool {
        !(in_vpc && self.scope == Scope::NoVpc)
    }
}

/// What becomes of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Send,
    /// Over the limit: nothing is sent.
    Drop,
    /// Over the limit: sent empty ([`slip`] rewrites it).
    Slip,
}

/// The kinds of response that have buckets of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Answer = 1,
    NxDomain = 2,
    Error = 3,
}

struct Slot {
    /// The key this bucket counts for (0: none yet).
    tag: AtomicU64,
    /// Milliseconds since the table's start (high 32 bits) and balance in
    /// thousandths of a response (low 32 bits, signed).
    state: AtomicU64,
    /// Responses held back since the slot was taken, for `slip`.
    held: AtomicU32,
}

/// The buckets every UDP worker shares.
pub struct Rrl {
    slots: Box<[Slot]>,
    key: [u8; 16],
    epoch: Instant,
}

impl Default for Rrl {
    fn default() -> Self {
        Self::new()
    }
}

impl Rrl {
    pub fn new() -> Self {
        let slots = (0..SLOTS).map(|_| Slot { tag: AtomicU64::new(0), state: AtomicU64::new(0), held: AtomicU32::new(0) }).collect();
        Rrl { slots, key: rand::random(), epoch: Instant::now() }
    }

    /// Decides whether `response` (as it would be sent over UDP to
    /// `client`) goes out, at `now`.
    pub fn check(&self, s: &Settings, client: IpAddr, response: &[u8], now: Instant) -> Action {
        let Some((kind, tag)) = self.key_of(s, client, response) else { return Action::Send };
        let rate = match kind {
            Kind::Answer => s.responses_per_second,
            Kind::NxDomain => s.nxdomains_per_second,
            Kind::Error => s.errors_per_second,
        };
        if rate == 0 {
            return Action::Send;
        }
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u32;
        let slot = &self.slots[tag as usize % SLOTS];
        let full = i64::from(rate) * 1000;
        if slot.tag.load(Relaxed) != tag {
            // Taken over: a new bucket, this response its first.
            slot.tag.store(tag, Relaxed);
            slot.state.store(pack(ms, full - 1000), Relaxed);
            slot.held.store(0, Relaxed);
            return Action::Send;
        }
        let floor = -(i64::from(rate) * i64::from(s.window.max(1)) * 1000);
        let mut old = slot.state.load(Relaxed);
        let limited = loop {
            let (then, balance) = unpack(old);
            let elapsed = i64::from(ms.wrapping_sub(then));
            let credited = (balance + elapsed * i64::from(rate)).min(full);
            let after = credited - 1000;
            let new = pack(ms, after.max(floor));
            match slot.state.compare_exchange_weak(old, new, Relaxed, Relaxed) {
                Ok(_) => break after < 0,
                Err(x) => old = x,
            }
        };
        if !limited {
            return Action::Send;
        }
        let n = slot.held.fetch_add(1, Relaxed).wrapping_add(1);
        if s.slip > 0 && n.is_multiple_of(s.slip) { Action::Slip } else { Action::Drop }
    }

    /// The response's kind and its bucket's key: client network, kind
    /// and (answers) name and type or (NXDOMAIN) zone. `None`: not a
    /// response this can read (then it is not limited).
    fn key_of(&self, s: &Settings, client: IpAddr, response: &[u8]) -> Option<(Kind, u64)> {
        let mut h = SipHasher13::new_with_key(&self.key);
        match client.to_canonical() {
            IpAddr::V4(a) => {
                let bits = u32::from(a) & u32::MAX.checked_shl(32 - u32::from(s.ipv4_prefix.min(32))).unwrap_or(0);
                h.write(&bits.to_be_bytes());
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a) & u128::MAX.checked_shl(128 - u32::from(s.ipv6_prefix.min(128))).unwrap_or(0);
                h.write(&bits.to_be_bytes());
            }
        }
        let rc = u16::from(*response.get(3)? & 0x0f);
        let qd = count(response, 4)?;
        let kind = match rc {
            rcode::NOERROR => Kind::Answer,
            rcode::NXDOMAIN => Kind::NxDomain,
            _ => Kind::Error,
        };
        h.write_u8(kind as u8);
        let mut name = [0u8; 255];
        match kind {
            Kind::Answer if qd == 1 => {
                let end = name_end(response, HEADER_LEN)?;
                let n = lower_name(response, HEADER_LEN, &mut name)?;
                h.write(&name[..n]);
                h.write(response.get(end..end + 2)?);
            }
            Kind::NxDomain if qd == 1 => {
                // The zone: the owner of the SOA in authority, else the name.
                let mut at = name_end(response, HEADER_LEN)? + 4;
                for _ in 0..count(response, 6)? {
                    at = record_end(response, at)?;
                }
                let soa = count(response, 8)? > 0
                    && name_end(response, at).and_then(|e| response.get(e..e + 2)) == Some(&TYPE_SOA.to_be_bytes()[..]);
                let n = lower_name(response, if soa { at } else { HEADER_LEN }, &mut name)?;
                h.write(&name[..n]);
            }
            _ => {}
        }
        Some((kind, h.finish().max(1)))
    }
}

fn pack(ms: u32, balance: i64) -> u64 {
    (u64::from(ms) << 32) | u64::from(balance as i32 as u32)
}

fn unpack(v: u64) -> (u32, i64) {
    ((v >> 32) as u32, i64::from(v as u32 as i32))
}

fn count(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

/// Where the name at `pos` ends in the message (after its pointer, if any).
fn name_end(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0 if len == 0 => return Some(pos + 1),
            0 => pos += 1 + len as usize,
            0xc0 => return Some(pos + 2),
            _ => return None,
        }
    }
}

fn record_end(msg: &[u8], pos: usize) -> Option<usize> {
    let at = name_end(msg, pos)?;
    let rdlen = count(msg, at + 8)? as usize;
    let end = at + RR_FIXED_LEN + rdlen;
    (end <= msg.len()).then_some(end)
}

/// The name at `pos` (pointers followed) lowercased into `out`; its length.
fn lower_name(msg: &[u8], mut pos: usize, out: &mut [u8; 255]) -> Option<usize> {
    let (mut n, mut hops) = (0, 0);
    loop {
        let len = *msg.get(pos)?;
        if len & 0xc0 == 0xc0 {
            hops += 1;
            if hops > 64 {
                return None;
            }
            pos = (usize::from(len & 0x3f) << 8) | usize::from(*msg.get(pos + 1)?);
            continue;
        }
        let label = msg.get(pos..pos + 1 + len as usize)?;
        out.get_mut(n..n + label.len())?.copy_from_slice(label);
        out[n..n + label.len()].make_ascii_lowercase();
        n += label.len();
        if len == 0 {
            return Some(n);
        }
        pos += label.len();
    }
}

/// Rewrites a response held back by [`Rrl::check`] as it slips out:
/// header, question and OPT only. To a client that sent a cookie (the
/// response carries one: it did not have a valid server cookie, or it
/// would not be limited) it is BADCOOKIE with the fresh cookie; to others
/// TC=1. Returns `false` (leave it unsent) if it cannot be read.
pub fn slip(response: &mut Vec<u8>) -> bool {
    let Some((question_end, opt)) = shape(response) else { return false };
    let cookie = opt.clone().is_some_and(|o| has_cookie(&response[o]));
    let opt_len = opt.as_ref().map_or(0, |o| o.len());
    if let Some(o) = opt {
        response.copy_within(o, question_end);
    }
    response.truncate(question_end + opt_len);
    let mut flags = u16::from_be_bytes([response[2], response[3]]);
    if cookie {
        flags = (flags & !0x000f) | (BADCOOKIE & 0x0f);
        // The OPT's TTL: extended rcode in its first byte.
        response[question_end + 5] = (BADCOOKIE >> 4) as u8;
    } else {
        flags |= TC;
    }
    response[2..4].copy_from_slice(&flags.to_be_bytes());
    response[6..12].copy_from_slice(&[0, 0, 0, 0, 0, u8::from(opt_len > 0)]);
    true
}

/// Where a response's question ends, and its OPT record, if any.
fn shape(msg: &[u8]) -> Option<(usize, Option<std::ops::Range<usize>>)> {
    let mut at = HEADER_LEN;
    for _ in 0..count(msg, 4)? {
        at = name_end(msg, at)? + 4;
    }
    let question_end = at;
    let records = u32::from(count(msg, 6)?) + u32::from(count(msg, 8)?) + u32::from(count(msg, 10)?);
    let mut opt = None;
    for _ in 0..records {
        let end = record_end(msg, at)?;
        if name_end(msg, at).and_then(|e| msg.get(e..e + 2)) == Some(&TYPE_OPT.to_be_bytes()[..]) {
            opt = Some(at..end);
        }
        at = end;
    }
    (question_end <= msg.len()).then_some((question_end, opt))
}

/// Whether an OPT record (root owner, fixed part, options) holds a COOKIE.
fn has_cookie(opt: &[u8]) -> bool {
    let mut o = opt.get(1 + RR_FIXED_LEN..).unwrap_or(&[]);
    while o.len() >= 4 {
        let (code, len) = (u16::from_be_bytes([o[0], o[1]]), u16::from_be_bytes([o[2], o[3]]) as usize);
        if code == OPTION_COOKIE {
            return true;
        }
        o = o.get(4 + len..).unwrap_or(&[]);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A response for `www.example.` A with `rcode` and one A record.
    fn response(name: &[u8], rc: u8) -> Vec<u8> {
        let mut m = vec![0, 1, 0x81, 0x80 | rc, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(name);
        m.extend_from_slice(&[0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        m
    }

    #[test]
    fn a_flood_is_held_back_and_every_slip_th_slips() {
        let rrl = Rrl::new();
        let s = Settings::with_rate(5);
        let t = Instant::now();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let r = response(b"\x03www\x07example\x00", 0);
        let got: Vec<Action> = (0..15).map(|_| rrl.check(&s, ip, &r, t)).collect();
        assert!(got[..5].iter().all(|a| *a == Action::Send), "{got:?}");
        assert_eq!(got[5..], [Action::Drop, Action::Slip].iter().cycle().take(10).copied().collect::<Vec<_>>()[..]);
        // The same /24, another host: the same bucket; another /24: its own.
        assert_ne!(rrl.check(&s, "192.0.2.200".parse().unwrap(), &r, t), Action::Send);
        assert_eq!(rrl.check(&s, "192.0.3.7".parse().unwrap(), &r, t), Action::Send);
        // Another name: its own bucket; the same name in other case: the same.
        assert_eq!(rrl.check(&s, ip, &response(b"\x03ftp\x07example\x00", 0), t), Action::Send);
        assert_ne!(rrl.check(&s, ip, &response(b"\x03WWW\x07example\x00", 0), t), Action::Send);
        // The debt is paid back at `rate` a second.
        let later = t + Duration::from_secs(4);
        assert_eq!(rrl.check(&s, ip, &r, later), Action::Send, "12 over: a debt of 12, 20 credited in 4 s, at most 5 kept");
        let off = Settings { responses_per_second: 0, ..s };
        assert_eq!(rrl.check(&off, ip, &r, t), Action::Send);
    }

    #[test]
    fn nxdomain_counts_per_zone_and_errors_per_network() {
        let rrl = Rrl::new();
        let s = Settings { slip: 0, ..Settings::with_rate(2) };
        let t = Instant::now();
        let ip: IpAddr = "2001:db8:1:2::5".parse().unwrap();
        // NXDOMAIN for two names of example., the SOA owned by example.
        let nx = |label: &[u8]| {
            let mut m = vec![0, 1, 0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0];
            m.extend_from_slice(label);
            m.extend_from_slice(b"\x07example\x00\x00\x01\x00\x01");
            let apex = 12 + label.len();
            m.extend_from_slice(&[0xc0, apex as u8, 0, 6, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, apex as u8]);
            m
        };
        assert_eq!(rrl.check(&s, ip, &nx(b"\x01a"), t), Action::Send);
        assert_eq!(rrl.check(&s, ip, &nx(b"\x01b"), t), Action::Send);
        assert_eq!(rrl.check(&s, ip, &nx(b"\x01c"), t), Action::Drop, "the zone's bucket, whatever the name");
        let refused = response(b"\x03www\x07example\x00", 5);
        assert_eq!(rrl.check(&s, "2001:db8:1:ff::9".parse().unwrap(), &refused, t), Action::Send);
        assert_eq!(rrl.check(&s, ip, &response(b"\x03ftp\x07example\x00", 2), t), Action::Send);
        assert_eq!(rrl.check(&s, ip, &refused, t), Action::Drop, "errors: one bucket for the /56");
        assert!(!Settings { scope: Scope::NoVpc, ..s }.applies(true));
    }

    #[test]
    fn a_slip_is_empty() {
        let mut r = response(b"\x03www\x07example\x00", 0);
        r[11] = 1;
        r.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        let q_end = 12 + 13 + 4;
        assert!(slip(&mut r));
        assert_eq!(r.len(), q_end + 11);
        assert_eq!((r[2] & 0x02, &r[6..12]), (0x02, &[0u8, 0, 0, 0, 0, 1][..]), "TC, OPT only");
        // With a cookie: BADCOOKIE, the cookie kept.
        let mut r = response(b"\x03www\x07example\x00", 0);
        r[11] = 1;
        r.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 28, 0, 10, 0, 24]);
        r.extend_from_slice(&[5; 24]);
        assert!(slip(&mut r));
        assert_eq!((r[2] & 0x02, r[3] & 0x0f, r[q_end + 5]), (0, 7, 1), "no TC; 23 = 1 << 4 | 7");
        assert_eq!(&r[r.len() - 24..], &[5; 24]);
    }
}
