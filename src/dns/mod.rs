//! DNS wire format as pzdns reads and writes it: name keys, record bytes,
//! the query reader and the response writer, and the protocol's numbers.
//! A leaf: it depends on hickory-proto only, and everything above uses it.
//!
//! Why pzdns writes responses itself rather than through hickory-proto's
//! `MessageResponse`: decoding into a `Message` and encoding back cost
//! several allocations per query, most of pzdns's user-space time under
//! load (docs/PERFORMANCE.md, "Profiles"). hickory-proto still parses zone
//! data and upstream replies, and builds the records stored here.

pub mod names;
pub mod query;
pub mod record;
pub mod writer;

/// Header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2).
pub const QR: u16 = 0x8000;
pub const OPCODE: u16 = 0x7800;
pub const AA: u16 = 0x0400;
pub const TC: u16 = 0x0200;
pub const RD: u16 = 0x0100;
pub const RA: u16 = 0x0080;
pub const AD: u16 = 0x0020;
pub const CD: u16 = 0x0010;

/// Length of the header; the question starts here.
pub const HEADER_LEN: usize = 12;
/// A record after its owner name: TYPE, CLASS, TTL, RDLENGTH; RDATA follows.
pub const RR_FIXED_LEN: usize = 10;
/// Where TTL and RDLENGTH sit in those fixed bytes.
pub const RR_TTL: std::ops::Range<usize> = 4..8;
pub const RR_RDLENGTH: std::ops::Range<usize> = 8..10;

/// Record types pzdns treats specially, by number.
pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_MX: u16 = 15;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_TSIG: u16 = 250;
pub const TYPE_IXFR: u16 = 251;
pub const TYPE_AXFR: u16 = 252;
/// CLASS IN.
pub const CLASS_IN: u16 = 1;
/// CLASS ANY (TSIG records are of it).
pub const CLASS_ANY: u16 = 255;
/// Opcode NOTIFY (RFC 1996).
pub const OPCODE_NOTIFY: u8 = 4;

/// The DO bit in the OPT record's TTL field (RFC 3225).
pub const DO_BIT: u32 = 0x8000;
/// The EDNS version pzdns speaks (RFC 6891).
pub const EDNS_VERSION: u8 = 0;
/// The OPT record pzdns sends: root owner, TYPE, CLASS, TTL, RDLENGTH.
pub const OPT_LEN: usize = 11;

/// Largest UDP payload pzdns sends or advertises (the DNS flag day 2020
/// value): avoids IP fragmentation on any path.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// The UDP payload of a query without EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;
/// Largest DNS message over TCP (its two-byte length prefix).
pub const MAX_TCP_MESSAGE: usize = u16::MAX as usize;

/// Response codes pzdns sends, as numbers (12-bit for BADVERS).
pub mod rcode {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    /// Not authoritative; with TSIG (RFC 8945), not authorized.
    pub const NOTAUTH: u16 = 9;
    pub const BADVERS: u16 = 16;
    /// A missing or invalid server cookie (RFC 7873 §8).
    pub const BADCOOKIE: u16 = 23;
}
