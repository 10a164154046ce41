//! A response assembled from record bytes: header, the question as
//! received, then records whose bytes were precomputed (at load, or when
//! an upstream answer was cached), with names compressed (RFC 1035
//! §4.1.4) against names already in the message, truncation, and OPT.
//! The one place where pzdns writes DNS messages.

use super::query::{ClientSubnet, OPTION_CLIENT_SUBNET, OPTION_COOKIE, OPTION_NSID};
use super::{OPT_LEN, QR, RR_FIXED_LEN, RR_RDLENGTH, RR_TTL, TC, TYPE_OPT};

/// Most name positions remembered for compression; later names are
/// written in full (still correct, only longer).
const MAX_NAMES: usize = 48;
/// Offsets past this cannot be the target of a compression pointer.
const MAX_POINTER: usize = 0x3fff;

/// Section counts, in header order after QDCOUNT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer = 0,
    Authority = 1,
    /// Optional data (RFC 2181 §9): left out without TC when it does not fit.
    Additional = 2,
}

/// The OPT record of a response (RFC 6891 §6.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt {
    pub payload: u16,
    pub dnssec_ok: bool,
    /// The upper 8 bits of a 12-bit rcode (BADVERS is 1 here).
    pub rcode_high: u8,
    /// The client subnet echoed with the scope prefix length that decided
    /// the answer (RFC 7871 §7.2.1).
    pub subnet: Option<(ClientSubnet, u8)>,
    /// An Extended DNS Error (RFC 8914): INFO-CODE and EXTRA-TEXT.
    pub ede: Option<(u16, &'static str)>,
    /// This server's NSID (RFC 5001), when the query asked for it.
    pub nsid: Option<Nsid>,
    /// The COOKIE sent back (RFC 7873 §5.2): the client's cookie, then
    /// this server's (RFC 9018: 16 bytes).
    pub cookie: Option<[u8; COOKIE_LEN]>,
}

/// A COOKIE option's data as pzdns sends it: client and server cookie.
pub const COOKIE_LEN: usize = 24;

/// An NSID payload, kept inline so that an `Opt` is plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nsid {
    bytes: [u8; Nsid::MAX],
    len: u8,
}

impl Nsid {
    /// Longest NSID accepted (the config says so when it is longer).
    pub const MAX: usize = 64;

    pub fn new(id: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; Nsid::MAX];
        bytes.get_mut(..id.len())?.copy_from_slice(id);
        Some(Nsid { bytes, len: id.len() as u8 })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// The EDNS option code of Extended DNS Errors.
const OPTION_EDE: u16 = 15;

impl Opt {
    /// Bytes the record takes.
    pub fn wire_len(&self) -> usize {
        OPT_LEN
            + self.subnet.map_or(0, |(s, _)| 8 + s.addr_len as usize)
            + self.ede.map_or(0, |(_, t)| 6 + t.len())
            + self.nsid.map_or(0, |n| 4 + n.len as usize)
            + self.cookie.map_or(0, |_| 4 + COOKIE_LEN)
    }
}

/// The header of a response, apart from the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// Opcode and the query flags the rules copy (RD, CD), already masked.
    pub copied: u16,
    pub aa: bool,
    pub ra: bool,
    /// Authentic Data: every upstream part validated secure (RFC 4035 §3.2.3).
    pub ad: bool,
    /// The low 4 bits of the rcode.
    pub rcode: u8,
}

pub struct ResponseWriter {
    buf: Vec<u8>,
    /// Largest message allowed (the UDP payload), OPT included.
    limit: usize,
    /// Bytes reserved at the end for the OPT record.
    reserve: usize,
    /// Length of header and question: what a truncated response keeps.
    question_end: usize,
    counts: [u16; 3],
    truncated: bool,
    /// Positions of label starts already in the message.
    names: [u16; MAX_NAMES],
    n_names: usize,
}

impl ResponseWriter {
    /// Starts a response with message id `id` in `buf` (cleared; its
    /// capacity is reused), echoing `question` (QNAME QTYPE QCLASS as
    /// received, or none), at most `limit` bytes, room kept for an OPT
    /// record of `opt_len` bytes (0: none).
    pub fn new(mut buf: Vec<u8>, id: u16, question: Option<&[u8]>, limit: usize, opt_len: usize) -> Self {
        buf.clear();
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, question.is_some() as u8, 0, 0, 0, 0, 0, 0]);
        if let Some(q) = question {
            buf.extend_from_slice(q);
        }
        let question_end = buf.len();
        let mut w = ResponseWriter {
            buf,
            limit,
            reserve: opt_len,
            question_end,
            counts: [0; 3],
            truncated: false,
            names: [0; MAX_NAMES],
            n_names: 0,
        };
        if question.is_some() {
            w.remember(12);
        }
        w
    }

    /// Drops every record written so far (an answer that turned into a
    /// failure), keeping header and question.
    pub fn clear_records(&mut self) {
        self.buf.truncate(self.question_end);
        self.counts = [0; 3];
        self.truncated = false;
        let question = self.question_end > 12;
        self.n_names = 0;
        if question {
            self.remember(12);
        }
    }

    /// Records the label starts of the uncompressed name at `pos`.
    fn remember(&mut self, mut pos: usize) {
        while pos <= MAX_POINTER && self.n_names < MAX_NAMES {
            let Some(&len) = self.buf.get(pos) else { return };
            if len == 0 || len & 0xc0 != 0 {
                return;
            }
            self.names[self.n_names] = pos as u16;
            self.n_names += 1;
            pos += 1 + len as usize;
        }
    }

    /// Whether the name at `pos` in the message (following pointers)
    /// equals `name` (uncompressed wire), ignoring ASCII case.
    fn name_at_equals(&self, mut pos: usize, mut name: &[u8]) -> bool {
        let mut hops = 0;
        loop {
            let Some(&len) = self.buf.get(pos) else { return false };
            if len & 0xc0 == 0xc0 {
                let Some(&lo) = self.buf.get(pos + 1) else { return false };
                pos = ((len as usize & 0x3f) << 8) | lo as usize;
                hops += 1;
                if hops > 64 {
                    return false;
                }
                continue;
            }
            let n = len as usize;
            if name.first() != Some(&len) {
                return false;
            }
            if n == 0 {
                return true;
            }
            let (Some(a), Some(b)) = (self.buf.get(pos + 1..pos + 1 + n), name.get(1..1 + n)) else { return false };
            if !a.eq_ignore_ascii_case(b) {
                return false;
            }
            pos += 1 + n;
            name = &name[1 + n..];
        }
    }

    /// Writes `name` (uncompressed wire) compressed against the names
    /// already written, and remembers its new labels.
    fn put_name(&mut self, name: &[u8]) {
        let start = self.buf.len();
        let mut at = 0;
        while at < name.len() && name[at] != 0 {
            let suffix = &name[at..];
            if let Some(&p) = self.names[..self.n_names].iter().find(|&&p| self.name_at_equals(p as usize, suffix)) {
                self.buf.extend_from_slice(&name[..at]);
                self.buf.extend_from_slice(&(0xc000 | p).to_be_bytes());
                self.remember(start);
                return;
            }
            at += 1 + name[at] as usize;
        }
        self.buf.extend_from_slice(name);
        self.remember(start);
    }

    fn bump(&mut self, section: Section) {
        self.counts[section as usize] += 1;
    }

    fn fits(&mut self, section: Section, start: usize) -> bool {
        if self.buf.len() + self.reserve > self.limit {
            self.buf.truncate(start);
            // Names remembered inside the dropped bytes must not be pointed at.
            while self.n_names > 0 && self.names[self.n_names - 1] as usize >= start {
                self.n_names -= 1;
            }
            if section != Section::Additional {
                self.truncated = true;
            }
            return false;
        }
        true
    }

    /// Copies a record's TYPE..RDATA; the names in the RDATA of the RFC
    /// 1035 types that allow it (CNAME, NS, PTR, MX, SOA) are compressed.
    fn put_tail(&mut self, tail: &[u8]) {
        let rtype = u16::from_be_bytes([tail[0], tail[1]]);
        // (fixed bytes before the names, number of names)
        let (before, names) = match rtype {
            super::TYPE_NS | super::TYPE_CNAME | super::TYPE_PTR => (0, 1),
            super::TYPE_MX => (2, 1),
            super::TYPE_SOA => (0, 2),
            _ => (0, 0),
        };
        if names == 0 || tail.len() < RR_FIXED_LEN + before {
            self.buf.extend_from_slice(tail);
            return;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&tail[..RR_FIXED_LEN + before]);
        let mut at = RR_FIXED_LEN + before;
        for _ in 0..names {
            let n = super::record::name_len(&tail[at..]);
            self.put_name(&tail[at..at + n]);
            at += n;
        }
        self.buf.extend_from_slice(&tail[at..]);
        let rdlen = (self.buf.len() - start - RR_FIXED_LEN) as u16;
        self.buf[start + RR_RDLENGTH.start..start + RR_RDLENGTH.end].copy_from_slice(&rdlen.to_be_bytes());
    }

    /// Adds a record whose owner is the name at `owner_pos` (a pointer)
    /// and whose TYPE..RDATA are `tail`; returns where TYPE starts (a
    /// CNAME's target is at +10), or `None` once the response is truncated.
    pub fn record_at(&mut self, section: Section, owner_pos: usize, tail: &[u8]) -> Option<usize> {
        if self.truncated || tail.len() < RR_FIXED_LEN {
            return None;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&(0xc000 | owner_pos as u16).to_be_bytes());
        self.put_tail(tail);
        if !self.fits(section, start) {
            return None;
        }
        self.bump(section);
        Some(start + 2)
    }

    /// Lowers the TTL of the record whose TYPE starts at `at` (as
    /// [`ResponseWriter::record_at`] returned) to at most `max`.
    pub fn cap_ttl(&mut self, at: usize, max: u32) {
        let Some(b) = self.buf.get_mut(at + RR_TTL.start..at + RR_TTL.end) else { return };
        let ttl = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if ttl > max {
            b.copy_from_slice(&max.to_be_bytes());
        }
    }

    /// Adds a record with owner `owner` (uncompressed wire, compressed
    /// here) and its TTL replaced by `ttl`.
    pub fn record_named(&mut self, section: Section, owner: &[u8], tail: &[u8], ttl: u32) -> Option<usize> {
        if self.truncated || tail.len() < RR_FIXED_LEN {
            return None;
        }
        let start = self.buf.len();
        self.put_name(owner);
        let t = self.buf.len();
        self.put_tail(tail);
        self.buf[t + RR_TTL.start..t + RR_TTL.end].copy_from_slice(&ttl.to_be_bytes());
        if !self.fits(section, start) {
            return None;
        }
        self.bump(section);
        Some(t)
    }

    /// Where the name at `pos` really starts (following pointers).
    fn follow(&self, mut pos: usize) -> usize {
        for _ in 0..64 {
            match (self.buf.get(pos), self.buf.get(pos + 1)) {
                (Some(&hi), Some(&lo)) if hi & 0xc0 == 0xc0 => pos = ((hi as usize & 0x3f) << 8) | lo as usize,
                _ => break,
            }
        }
        pos
    }

    /// Number of labels of the name at `pos`.
    pub fn labels_at(&self, pos: usize) -> usize {
        let mut pos = self.follow(pos);
        let mut n = 0;
        while let Some(&len) = self.buf.get(pos) {
            if len == 0 || n > 127 {
                break;
            }
            n += 1;
            pos = self.follow(pos + 1 + len as usize);
        }
        n
    }

    /// Position of the ancestor `skip` labels up of the name at `pos`.
    pub fn ancestor_at(&self, pos: usize, skip: usize) -> usize {
        let mut pos = self.follow(pos);
        for _ in 0..skip {
            let len = self.buf.get(pos).copied().unwrap_or(0) as usize;
            pos = self.follow(pos + 1 + len);
        }
        pos
    }

    /// Marks the response truncated: it keeps only the question, TC=1
    /// (a `tcp-only` policy over UDP).
    pub fn truncate(&mut self) {
        self.truncated = true;
    }

    /// Whether a record was left out for want of room.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// An EDNS option's code and length.
    fn option(&mut self, code: u16, len: usize) {
        self.buf.extend_from_slice(&code.to_be_bytes());
        self.buf.extend_from_slice(&(len as u16).to_be_bytes());
    }

    /// Completes the header and the OPT record and returns the message.
    /// A truncated response keeps only the question, with TC set (RFC
    /// 2181 §9).
    pub fn finish(mut self, flags: Flags, opt: Option<Opt>) -> Vec<u8> {
        let mut bits = QR | flags.copied | (flags.rcode as u16 & 0x0f);
        if flags.aa {
            bits |= super::AA;
        }
        if flags.ra {
            bits |= super::RA;
        }
        if flags.ad {
            bits |= super::AD;
        }
        let mut counts = self.counts;
        if self.truncated {
            bits |= TC;
            self.buf.truncate(self.question_end);
            counts = [0; 3];
        }
        self.buf[2..4].copy_from_slice(&bits.to_be_bytes());
        for (i, c) in counts.iter().enumerate() {
            self.buf[6 + 2 * i..8 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
        if let Some(mut o) = opt {
            // An Extended DNS Error is information, not data: left out
            // when the message has no room for it.
            if self.buf.len() + o.wire_len() > self.limit {
                o.ede = None;
            }
            let ttl: u32 = (o.rcode_high as u32) << 24 | if o.dnssec_ok { super::DO_BIT } else { 0 };
            self.buf.push(0);
            self.buf.extend_from_slice(&TYPE_OPT.to_be_bytes());
            self.buf.extend_from_slice(&o.payload.to_be_bytes());
            self.buf.extend_from_slice(&ttl.to_be_bytes());
            let rdlen = (o.wire_len() - OPT_LEN) as u16;
            self.buf.extend_from_slice(&rdlen.to_be_bytes());
            if let Some((sub, scope)) = o.subnet {
                let n = sub.addr_len as usize;
                self.option(OPTION_CLIENT_SUBNET, 4 + n);
                self.buf.extend_from_slice(&sub.family.to_be_bytes());
                self.buf.extend_from_slice(&[sub.source_prefix, scope]);
                self.buf.extend_from_slice(&sub.addr[..n]);
            }
            if let Some(n) = o.nsid {
                self.option(OPTION_NSID, n.len as usize);
                self.buf.extend_from_slice(n.as_bytes());
            }
            if let Some(c) = o.cookie {
                self.option(OPTION_COOKIE, COOKIE_LEN);
                self.buf.extend_from_slice(&c);
            }
            if let Some((code, text)) = o.ede {
                self.option(OPTION_EDE, 2 + text.len());
                self.buf.extend_from_slice(&code.to_be_bytes());
                self.buf.extend_from_slice(text.as_bytes());
            }
            let ar = counts[2] + 1;
            self.buf[10..12].copy_from_slice(&ar.to_be_bytes());
        }
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `www.example.` A IN, as a question.
    const Q: &[u8] = b"\x03www\x07example\x00\x00\x01\x00\x01";

    /// TYPE A, CLASS IN, TTL 60, RDLENGTH 4, 192.0.2.1.
    const A_TAIL: [u8; 14] = [0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1];

    fn flags() -> Flags {
        Flags { copied: crate::dns::RD, aa: true, ra: false, ad: false, rcode: 0 }
    }

    #[test]
    fn owners_and_names_in_rdata_point_at_the_question() {
        let mut w = ResponseWriter::new(Vec::new(), 0x1234, Some(Q), 512, 0);
        // A CNAME owned by the question, pointing to mail.example.
        let mut cname = vec![0, 5, 0, 1, 0, 0, 0, 60, 0, 14];
        cname.extend_from_slice(b"\x04mail\x07example\x00");
        let at = w.record_at(Section::Answer, 12, &cname).unwrap();
        // Its target: `mail` then a pointer to `example.` in the question.
        assert_eq!(&w.buf[at + 10..], b"\x04mail\xc0\x10");
        assert_eq!(u16::from_be_bytes([w.buf[at + 8], w.buf[at + 9]]), 7, "RDLENGTH rewritten");
        w.record_named(Section::Answer, b"\x04MAIL\x07example\x00", &A_TAIL, 30).unwrap();
        let m = w.finish(flags(), None);
        assert_eq!(&m[..4], &[0x12, 0x34, 0x85, 0x00], "id, QR AA RD, NOERROR");
        assert_eq!(&m[4..12], &[0, 1, 0, 2, 0, 0, 0, 0]);
        let a = m.len() - 16;
        assert_eq!(&m[a..a + 2], &[0xc0, (at + 10) as u8], "owner compressed case-insensitively against the CNAME target");
        assert_eq!(&m[a + 6..a + 10], &30u32.to_be_bytes(), "TTL replaced");
    }

    #[test]
    fn what_does_not_fit_truncates_to_the_question() {
        let mut w = ResponseWriter::new(Vec::new(), 1, Some(Q), 12 + Q.len() + 16 + crate::dns::OPT_LEN, crate::dns::OPT_LEN);
        assert!(w.record_at(Section::Answer, 12, &A_TAIL).is_some());
        assert!(w.record_at(Section::Answer, 12, &A_TAIL).is_none(), "the second does not fit beside OPT");
        let m = w.finish(
            flags(),
            Some(Opt { payload: 1232, dnssec_ok: true, rcode_high: 0, subnet: None, ede: None, nsid: None, cookie: None }),
        );
        assert_eq!(m[2] & 0x02, 0x02, "TC");
        assert_eq!(&m[6..12], &[0, 0, 0, 0, 0, 1], "no records but OPT");
        assert_eq!(m.len(), 12 + Q.len() + crate::dns::OPT_LEN);
        assert_eq!(&m[m.len() - 11..], &[0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0], "OPT: payload, DO");
    }

    #[test]
    fn additional_data_is_left_out_without_tc() {
        let mut w = ResponseWriter::new(Vec::new(), 1, Some(Q), 12 + Q.len() + 16, 0);
        assert!(w.record_at(Section::Answer, 12, &A_TAIL).is_some());
        assert!(w.record_named(Section::Additional, b"\x02ns\x07example\x00", &A_TAIL, 60).is_none());
        let m = w.finish(flags(), None);
        assert_eq!(m[2] & 0x02, 0, "no TC for optional data");
        assert_eq!(&m[6..12], &[0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn extended_rcodes_carry_their_high_bits_in_opt() {
        let w = ResponseWriter::new(Vec::new(), 1, Some(Q), 512, crate::dns::OPT_LEN);
        let f = Flags { copied: 0, aa: false, ra: false, ad: false, rcode: 0 };
        let m = w.finish(
            f,
            Some(Opt {
                payload: 512,
                dnssec_ok: false,
                rcode_high: 1,
                subnet: None,
                ede: Some((21, "no")),
                nsid: Nsid::new(b"a1"),
                cookie: None,
            }),
        );
        assert_eq!(m[3] & 0x0f, 0);
        let opt = 12 + Q.len();
        assert_eq!(m[opt + 5], 1, "BADVERS = 16: 1 in the OPT's extended rcode");
        // Options: NSID (3) "a1", then EDE (15) 21 "no".
        assert_eq!(&m[opt + 9..opt + 11], &[0, 14], "RDLENGTH");
        assert_eq!(&m[opt + 11..], &[0, 3, 0, 2, b'a', b'1', 0, 15, 0, 4, 0, 21, b'n', b'o']);
    }

    #[test]
    fn clearing_keeps_header_and_question() {
        let mut w = ResponseWriter::new(Vec::new(), 1, Some(Q), 512, 0);
        w.record_at(Section::Answer, 12, &A_TAIL);
        w.clear_records();
        let m = w.finish(Flags { rcode: 2, ..flags() }, None);
        assert_eq!(m.len(), 12 + Q.len());
        assert_eq!((m[3] & 0x0f, &m[6..8]), (2, &[0u8, 0][..]));
    }
}
