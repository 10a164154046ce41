//! The dnstap protobuf schema (dnstap.proto, `Dnstap` and `Message`),
//! encoded by hand: a dozen fields of three wire types do not need a code
//! generator, and writing straight into a reused buffer allocates nothing.
//!
//! Each message is encoded in two passes over the same field list: one
//! that only counts bytes (protobuf puts a nested message's length before
//! it), one that writes.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

/// `Message.Type` values pzdns writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// An exchange with an authoritative server, in recursive mode.
    ResolverQuery = 3,
    ResolverResponse = 4,
    ClientQuery = 5,
    ClientResponse = 6,
    ForwarderQuery = 7,
    ForwarderResponse = 8,
}

/// `SocketProtocol` values pzdns writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Protocol {
    Udp = 1,
    Tcp = 2,
    /// DNS over TLS.
    Dot = 3,
    /// DNS over HTTPS.
    Doh = 4,
}

/// `SocketFamily`.
const INET: u64 = 1;
const INET6: u64 = 2;
/// `Dnstap.Type.MESSAGE`.
const TYPE_MESSAGE: u64 = 1;

const VARINT: u8 = 0;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// One dnstap `Message`: who asked whom, when, and the wire messages.
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    pub kind: Kind,
    pub protocol: Protocol,
    /// The initiator (the client; pzdns for forwarder messages).
    pub query_addr: SocketAddr,
    /// The responder (pzdns's listener; the upstream).
    pub response_addr: SocketAddr,
    pub query_time: Option<SystemTime>,
    pub query_message: Option<&'a [u8]>,
    pub response_time: Option<SystemTime>,
    pub response_message: Option<&'a [u8]>,
    /// The response policy applied to the answer, if any (`Message.policy`).
    pub policy: Option<Policy<'a>>,
}

/// dnstap's `Policy`: the operator policy applied to a message.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// `type`: "RPZ" for a rule from an RPZ file, "pzdns" for the others.
    pub kind: &'a str,
    /// `rule`: which rule matched (pzdns writes its rule set's name).
    pub rule: &'a [u8],
    /// `action`: NXDOMAIN 1, NODATA 2, PASS 3, DROP 4, TRUNCATE 5,
    /// LOCAL_DATA 6 (`None`: none of them, e.g. REFUSED).
    pub action: Option<u8>,
    /// `match`: QNAME 1, RESPONSE_IP 3.
    pub matched: u8,
}

fn policy_fields(s: &mut impl Sink, p: &Policy<'_>) {
    bytes(s, 1, p.kind.as_bytes());
    bytes(s, 2, p.rule);
    if let Some(a) = p.action {
        uint(s, 3, a as u64);
    }
    uint(s, 4, p.matched as u64);
}

/// Where encoded bytes go: a counter or a buffer.
trait Sink {
    fn put(&mut self, b: &[u8]);
    fn byte(&mut self, b: u8) {
        self.put(&[b]);
    }
}

struct Count(usize);

impl Sink for Count {
    fn put(&mut self, b: &[u8]) {
        self.0 += b.len();
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    fn byte(&mut self, b: u8) {
        self.push(b);
    }
}

fn varint(s: &mut impl Sink, mut v: u64) {
    while v >= 0x80 {
        s.byte((v as u8) | 0x80);
        v >>= 7;
    }
    s.byte(v as u8);
}

fn key(s: &mut impl Sink, field: u8, wire: u8) {
    // Every field number here is below 16: the key is one byte.
    s.byte((field << 3) | wire);
}

fn uint(s: &mut impl Sink, field: u8, v: u64) {
    key(s, field, VARINT);
    varint(s, v);
}

fn bytes(s: &mut impl Sink, field: u8, b: &[u8]) {
    key(s, field, LEN);
    varint(s, b.len() as u64);
    s.put(b);
}

fn time(s: &mut impl Sink, sec_field: u8, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    uint(s, sec_field, d.as_secs());
    key(s, sec_field + 1, FIXED32);
    s.put(&d.subsec_nanos().to_le_bytes());
}

/// An address as the family says: 4 bytes for INET, 16 for INET6; `None`
/// when an IPv6 address has no IPv4 form in an INET message.
fn addr_bytes(ip: IpAddr, inet: bool, out: &mut [u8; 16]) -> Option<usize> {
    match (ip.to_canonical(), inet) {
        (IpAddr::V4(v4), true) => {
            out[..4].copy_from_slice(&v4.octets());
            Some(4)
        }
        (IpAddr::V6(v6), true) if v6.is_unspecified() => {
            out[..4].fill(0);
            Some(4)
        }
        (IpAddr::V6(_), true) => None,
        (IpAddr::V4(v4), false) => {
            *out = v4.to_ipv6_mapped().octets();
            Some(16)
        }
        (IpAddr::V6(v6), false) => {
            *out = v6.octets();
            Some(16)
        }
    }
}

fn message_fields(s: &mut impl Sink, m: &Msg<'_>) {
    // The initiator's family names the message's: a client on a dual-stack
    // listener with an IPv4-mapped address is an IPv4 client.
    let inet = m.query_addr.ip().to_canonical().is_ipv4();
    uint(s, 1, m.kind as u64);
    uint(s, 2, if inet { INET } else { INET6 });
    uint(s, 3, m.protocol as u64);
    let mut a = [0u8; 16];
    if let Some(n) = addr_bytes(m.query_addr.ip(), inet, &mut a) {
        bytes(s, 4, &a[..n]);
    }
    if let Some(n) = addr_bytes(m.response_addr.ip(), inet, &mut a) {
        bytes(s, 5, &a[..n]);
    }
    uint(s, 6, m.query_addr.port() as u64);
    uint(s, 7, m.response_addr.port() as u64);
    if let Some(t) = m.query_time {
        time(s, 8, t);
    }
    if let Some(q) = m.query_message {
        bytes(s, 10, q);
    }
    if let Some(t) = m.response_time {
        time(s, 12, t);
    }
    if let Some(r) = m.response_message {
        bytes(s, 14, r);
    }
    if let Some(p) = &m.policy {
        let mut c = Count(0);
        policy_fields(&mut c, p);
        key(s, 15, LEN);
        varint(s, c.0 as u64);
        policy_fields(s, p);
    }
}

fn dnstap_fields(s: &mut impl Sink, identity: &[u8], version: &[u8], m: &Msg<'_>, message_len: usize) {
    if !identity.is_empty() {
        bytes(s, 1, identity);
    }
    if !version.is_empty() {
        bytes(s, 2, version);
    }
    key(s, 14, LEN);
    varint(s, message_len as u64);
    message_fields(s, m);
    uint(s, 15, TYPE_MESSAGE);
}

/// Appends one Frame Streams data frame holding a `Dnstap` message to
/// `out`: its length (4 bytes, big-endian), then the protobuf. Empty
/// `identity` or `version` are left out.
pub fn append_frame(out: &mut Vec<u8>, identity: &[u8], version: &[u8], m: &Msg<'_>) {
    let mut c = Count(0);
    message_fields(&mut c, m);
    let message_len = c.0;
    let mut c = Count(0);
    dnstap_fields(&mut c, identity, version, m, message_len);
    let total = c.0;
    out.reserve(4 + total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    let start = out.len();
    dnstap_fields(out, identity, version, m, message_len);
    debug_assert_eq!(out.len() - start, total);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a protobuf message into (field, wire type, value) triples;
    /// an independent reader for the encoder's output.
    fn fields(mut b: &[u8]) -> Vec<(u64, u8, Vec<u8>)> {
        fn var(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            for i in 0.. {
                let x = b[0];
                *b = &b[1..];
                v |= ((x & 0x7f) as u64) << (7 * i);
                if x < 0x80 {
                    break;
                }
            }
            v
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let k = var(&mut b);
            let (field, wire) = (k >> 3, (k & 7) as u8);
            let value = match wire {
                0 => var(&mut b).to_le_bytes().to_vec(),
                2 => {
                    let n = var(&mut b) as usize;
                    let v = b[..n].to_vec();
                    b = &b[n..];
                    v
                }
                5 => {
                    let v = b[..4].to_vec();
                    b = &b[4..];
                    v
                }
                w => panic!("wire type {w}"),
            };
            out.push((field, wire, value));
        }
        out
    }

    fn num(v: &[u8]) -> u64 {
        u64::from_le_bytes(v.try_into().unwrap())
    }

    #[test]
    fn a_policy_is_the_messages_field_15() {
        let m = Msg {
            kind: Kind::ClientResponse,
            protocol: Protocol::Udp,
            query_addr: "127.0.10.1:5000".parse().unwrap(),
            response_addr: "127.0.0.1:53".parse().unwrap(),
            query_time: None,
            query_message: None,
            response_time: None,
            response_message: Some(b"r"),
            policy: Some(Policy { kind: "RPZ", rule: b"egress: lists/block.rpz", action: Some(1), matched: 1 }),
        };
        let mut out = Vec::new();
        append_frame(&mut out, b"", b"", &m);
        let top = fields(&out[4..]);
        let msg = fields(&top[0].2);
        let policy = fields(&msg.iter().find(|x| x.0 == 15).expect("Message.policy").2);
        assert_eq!(policy[0], (1, 2, b"RPZ".to_vec()), "Policy.type");
        assert_eq!(policy[1], (2, 2, b"egress: lists/block.rpz".to_vec()), "Policy.rule");
        assert_eq!((policy[2].0, num(&policy[2].2)), (3, 1), "Policy.action NXDOMAIN");
        assert_eq!((policy[3].0, num(&policy[3].2)), (4, 1), "Policy.match QNAME");
    }

    #[test]
    fn a_client_response_decodes_field_by_field() {
        let t = UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
        let big = vec![7u8; 300];
        let m = Msg {
            kind: Kind::ClientResponse,
            protocol: Protocol::Tcp,
            query_addr: "[::ffff:127.0.0.5]:40000".parse().unwrap(),
            response_addr: "[::]:53".parse().unwrap(),
            query_time: Some(t),
            query_message: None,
            response_time: Some(t),
            response_message: Some(&big),
            policy: None,
        };
        let mut out = vec![0xaa];
        append_frame(&mut out, b"replica-1", b"", &m);
        assert_eq!(out[0], 0xaa, "appended, not overwritten");
        let len = u32::from_be_bytes(out[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 5);
        let top = fields(&out[5..]);
        assert_eq!(top[0], (1, 2, b"replica-1".to_vec()));
        assert_eq!(top.iter().map(|f| f.0).collect::<Vec<_>>(), [1, 14, 15], "no version field when it is empty");
        assert_eq!(num(&top[2].2), 1, "Dnstap.type MESSAGE");
        let msg = fields(&top[1].2);
        let get = |f: u64| msg.iter().find(|x| x.0 == f).map(|x| x.2.clone());
        assert_eq!(num(&get(1).unwrap()), 6, "CLIENT_RESPONSE");
        assert_eq!(num(&get(2).unwrap()), 1, "an IPv4-mapped client is INET");
        assert_eq!(num(&get(3).unwrap()), 2, "TCP");
        assert_eq!(get(4).unwrap(), [127, 0, 0, 5]);
        assert_eq!(get(5).unwrap(), [0, 0, 0, 0], "the dual-stack wildcard as 0.0.0.0");
        assert_eq!((num(&get(6).unwrap()), num(&get(7).unwrap())), (40000, 53));
        assert_eq!(num(&get(8).unwrap()), 1_700_000_000);
        assert_eq!(u32::from_le_bytes(get(9).unwrap().try_into().unwrap()), 123_456_789);
        assert_eq!(get(10), None, "no query message in a response");
        assert_eq!(get(14).unwrap(), big, "a length over 127 takes a two-byte varint");
    }

    #[test]
    fn an_ipv6_forwarder_query() {
        let m = Msg {
            kind: Kind::ForwarderQuery,
            protocol: Protocol::Udp,
            query_addr: "[2001:db8::1]:5000".parse().unwrap(),
            response_addr: "127.0.0.1:53".parse().unwrap(),
            query_time: None,
            query_message: Some(b"q"),
            response_time: None,
            response_message: None,
            policy: None,
        };
        let mut out = Vec::new();
        append_frame(&mut out, b"", b"v", &m);
        let top = fields(&out[4..]);
        let msg = fields(&top[1].2);
        let get = |f: u64| msg.iter().find(|x| x.0 == f).map(|x| x.2.clone());
        assert_eq!(num(&get(2).unwrap()), 2, "INET6");
        assert_eq!(get(4).unwrap().len(), 16);
        assert_eq!(get(5).unwrap()[..12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff], "IPv4 as mapped in an INET6 message");
        assert_eq!(get(10).unwrap(), b"q");
    }
}
