//! Server cookies (RFC 9018): version 1, three reserved bytes, a
//! timestamp, and SipHash-2-4 over the client cookie, those eight bytes
//! and the client's address, keyed by a secret replicas can share. The
//! previous secret is still accepted, so a new one can be rolled out to
//! every replica before the old one goes.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher24;

/// A server cookie's length (RFC 9018 §4).
pub const SERVER_COOKIE_LEN: usize = 16;
/// A cookie older than this is no longer valid (RFC 9018 §4.3: one hour).
pub const LIFETIME_SECS: u32 = 3600;
/// A timestamp this far ahead of the clock is still accepted (RFC 9018
/// §4.3: five minutes, for replicas whose clocks differ).
pub const FUTURE_SECS: u32 = 300;
/// A valid cookie younger than this is sent back as it came (RFC 9018
/// §4.3: a new one once half its life is over).
pub const REFRESH_SECS: u32 = LIFETIME_SECS / 2;
/// RFC 9018's version.
const VERSION: u8 = 1;

/// A 16-byte SipHash key.
pub type Secret = [u8; 16];

/// The secrets server cookies are made and checked with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secrets {
    /// New cookies are made with this one.
    pub current: Secret,
    /// Cookies made with this one are still valid (and replaced).
    pub previous: Option<Secret>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// What a query's server cookie turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Made by this server (or a replica sharing its secret) for this
    /// client, within its lifetime. `renew`: send a new one back (over
    /// half its life, or made with the previous secret).
    Valid { renew: bool },
    /// Not ours, not for this client, or expired: the client gets a new one.
    Invalid,
}

/// The random secret of a process that was given none: one for the
/// process's life, so that reloads do not invalidate cookies.
pub fn process_secret() -> Secret {
    static SECRET: std::sync::OnceLock<Secret> = std::sync::OnceLock::new();
    *SECRET.get_or_init(rand::random)
}

/// Seconds since the Unix epoch, as RFC 9018's 32-bit serial number.
pub fn unix_now() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

impl Secrets {
    /// A new server cookie for `client` at `ip`, stamped `now`.
    pub fn make(&self, client: &[u8; 8], ip: IpAddr, now: u32) -> [u8; SERVER_COOKIE_LEN] {
        let mut c = [0u8; SERVER_COOKIE_LEN];
        c[0] = VERSION;
        c[4..8].copy_from_slice(&now.to_be_bytes());
        let hash = hash(&self.current, client, &c[..8], ip);
        c[8..].copy_from_slice(&hash);
        c
    }

    /// Checks the server cookie a query brought.
    pub fn check(&self, client: &[u8; 8], server: &[u8], ip: IpAddr, now: u32) -> Check {
        if server.len() != SERVER_COOKIE_LEN || server[0] != VERSION {
            return Check::Invalid;
        }
        let stamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
        // Serial-number arithmetic (RFC 1982), as RFC 9018 §4.3 says.
        let age = now.wrapping_sub(stamp) as i32;
        if age > LIFETIME_SECS as i32 || age < -(FUTURE_SECS as i32) {
            return Check::Invalid;
        }
        let old = age > REFRESH_SECS as i32;
        if same(&hash(&self.current, client, &server[..8], ip), &server[8..]) {
            return Check::Valid { renew: old };
        }
        match self.previous {
            Some(p) if same(&hash(&p, client, &server[..8], ip), &server[8..]) => Check::Valid { renew: true },
            _ => Check::Invalid,
        }
    }
}

/// SipHash-2-4 of client cookie | version | reserved | timestamp | client
/// address (4 or 16 bytes), as RFC 9018 §4.4 defines it.
/// `head` is the cookie's first 8 bytes.
fn hash(secret: &Secret, client: &[u8; 8], head: &[u8], ip: IpAddr) -> [u8; 8] {
    // One write of the whole input: the hasher's bookkeeping of a partial
    // word runs once per answer rather than once per part.
    let mut input = [0u8; 32];
    input[..8].copy_from_slice(client);
    input[8..16].copy_from_slice(head);
    let len = match ip.to_canonical() {
        IpAddr::V4(a) => {
            input[16..20].copy_from_slice(&a.octets());
            20
        }
        IpAddr::V6(a) => {
            input[16..32].copy_from_slice(&a.octets());
            32
        }
    };
    let mut h = SipHasher24::new_with_key(secret);
    h.write(&input[..len]);
    h.finish().to_le_bytes()
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// Reads a `cookie_secret_file`: one secret (32 hex digits) per line, the
/// current first, then at most one previous; `#` comments and blank lines
/// are skipped. The error says which line is wrong and how to fix it.
pub fn parse_secrets(text: &str) -> Result<Secrets, String> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let secret = parse_hex(l).ok_or_else(|| {
            format!("line {}: `{l}` is not a secret of 16 bytes in hex (32 digits; make one with `openssl rand -hex 16`)", n + 1)
        })?;
        found.push(secret);
    }
    match found[..] {
        [] => Err("no secret in it; write one line of 32 hex digits (`openssl rand -hex 16`)".into()),
        [current] => Ok(Secrets { current, previous: None }),
        [current, previous] => Ok(Secrets { current, previous: Some(previous) }),
        _ => Err(format!("{} secrets in it; at most two lines: the current secret, then the previous one still accepted", found.len())),
    }
}

fn parse_hex(s: &str) -> Option<Secret> {
    let b = s.as_bytes();
    if b.len() != 32 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(b[2 * i])? << 4 | digit(b[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn rfc_9018_appendix_a_vectors() {
        let secret: Secret = hex("e5e973e5a6b2a43f48e7dc849e37bfcf").try_into().unwrap();
        let s = Secrets { current: secret, previous: None };
        // A.1: the first query, client 198.51.100.100.
        let client: [u8; 8] = hex("2464c4abcf10c957").try_into().unwrap();
        let ip: IpAddr = "198.51.100.100".parse().unwrap();
        assert_eq!(s.make(&client, ip, 1559731985).to_vec(), hex("010000005cf79f111f8130c3eee29480"));
        // A.2: the same client renews it over half an hour later.
        assert_eq!(s.make(&client, ip, 1559734385).to_vec(), hex("010000005cf7a871d4a564a1442aca77"));
        // A.3: another client, whose server cookie has reserved bits set
        // (hashed as received), gets a new one.
        let client: [u8; 8] = hex("fc93fc62807ddb86").try_into().unwrap();
        let ip: IpAddr = "203.0.113.203".parse().unwrap();
        assert_eq!(s.check(&client, &hex("01abcdef5cf78f71a314227b6679ebf5"), ip, 1559727985 + 600), Check::Valid { renew: false });
        assert_eq!(s.make(&client, ip, 1559734700).to_vec(), hex("010000005cf7a9acf73a7810aca2381e"));
        // A.4: an IPv6 client whose cookie was made before the secret rolled over.
        let rolled = Secrets {
            current: hex("445536bcd2513298075a5d379663c962").try_into().unwrap(),
            previous: Some(hex("dd3bdf9344b678b185a6f5cb60fca715").try_into().unwrap()),
        };
        let client: [u8; 8] = hex("22681ab97d52c298").try_into().unwrap();
        let ip: IpAddr = "2001:db8:220:1:59de:d0f4:8769:82b8".parse().unwrap();
        assert_eq!(rolled.check(&client, &hex("010000005cf7c57926556bd0934c72f8"), ip, 1559741961), Check::Valid { renew: true });
        assert_eq!(rolled.make(&client, ip, 1559741961).to_vec(), hex("010000005cf7c609a6bb79d16625507a"));
    }

    #[test]
    fn valid_renewed_and_invalid() {
        let s = Secrets { current: [7; 16], previous: None };
        let (c, ip): ([u8; 8], IpAddr) = ([1; 8], "192.0.2.1".parse().unwrap());
        let t = 1_000_000;
        let sc = s.make(&c, ip, t);
        assert_eq!(s.check(&c, &sc, ip, t), Check::Valid { renew: false });
        assert_eq!(s.check(&c, &sc, ip, t + REFRESH_SECS + 1), Check::Valid { renew: true }, "over half its life");
        assert_eq!(s.check(&c, &sc, ip, t + LIFETIME_SECS + 1), Check::Invalid, "expired");
        assert_eq!(s.check(&c, &sc, ip, t - FUTURE_SECS - 1), Check::Invalid, "too far in the future");
        assert_eq!(s.check(&c, &sc, "192.0.2.2".parse().unwrap(), t), Check::Invalid, "another client address");
        assert_eq!(s.check(&[2; 8], &sc, ip, t), Check::Invalid, "another client cookie");
        assert_eq!(s.check(&c, &sc[..8], ip, t), Check::Invalid, "not 16 bytes");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(s.check(&c, &sc, mapped, t), Check::Valid { renew: false }, "IPv4-mapped is the IPv4 address");
        // Rotation: made with the old secret, accepted and renewed.
        let rotated = Secrets { current: [8; 16], previous: Some([7; 16]) };
        assert_eq!(rotated.check(&c, &sc, ip, t), Check::Valid { renew: true });
        assert_eq!(Secrets { current: [8; 16], previous: None }.check(&c, &sc, ip, t), Check::Invalid);
    }

    #[test]
    fn secret_files() {
        let a = "00112233445566778899aabbccddeeff";
        assert_eq!(parse_secrets(&format!("# current\n{a}\n")).unwrap().current[1], 0x11);
        let two = parse_secrets(&format!("{a}\n\n{}\n", "ff".repeat(16))).unwrap();
        assert_eq!(two.previous, Some([0xff; 16]));
        assert!(parse_secrets("").unwrap_err().contains("no secret"));
        assert!(parse_secrets("abc\n").unwrap_err().contains("line 1: `abc` is not a secret of 16 bytes"));
        assert!(parse_secrets(&format!("{a}\n{a}\n{a}\n")).unwrap_err().contains("at most two lines"));
    }
}
