//! A response assembled from record bytes: header, the question as
//! received, then records whose bytes were precomputed (at load, or when
//! an upstream answer was cached), with names compressed (RFC 1035
//! §4.1.4) against names already in the message, truncation, and OPT.
//! The one place where pzdns writes DNS messages.

use super::{OPT_LEN, QR, TC, TYPE_OPT};

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
}

/// The header of a response, apart from the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// Opcode and the query flags the rules copy (RD, CD), already masked.
    pub copied: u16,
    pub aa: bool,
    pub ra: bool,
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
    /// record when `edns`.
    pub fn new(mut buf: Vec<u8>, id: u16, question: Option<&[u8]>, limit: usize, edns: bool) -> Self {
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
            reserve: if edns { OPT_LEN } else { 0 },
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
        if names == 0 || tail.len() < 10 + before {
            self.buf.extend_from_slice(tail);
            return;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&tail[..10 + before]);
        let mut at = 10 + before;
        for _ in 0..names {
            let n = super::record::name_len(&tail[at..]);
            self.put_name(&tail[at..at + n]);
            at += n;
        }
        self.buf.extend_from_slice(&tail[at..]);
        let rdlen = (self.buf.len() - start - 10) as u16;
        self.buf[start + 8..start + 10].copy_from_slice(&rdlen.to_be_bytes());
    }

    /// Adds a record whose owner is the name at `owner_pos` (a pointer)
    /// and whose TYPE..RDATA are `tail`; returns where TYPE starts (a
    /// CNAME's target is at +10), or `None` once the response is truncated.
    pub fn record_at(&mut self, section: Section, owner_pos: usize, tail: &[u8]) -> Option<usize> {
        if self.truncated || tail.len() < 10 {
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

    /// Adds a record with owner `owner` (uncompressed wire, compressed
    /// here) and its TTL replaced by `ttl`.
    pub fn record_named(&mut self, section: Section, owner: &[u8], tail: &[u8], ttl: u32) -> Option<usize> {
        if self.truncated || tail.len() < 10 {
            return None;
        }
        let start = self.buf.len();
        self.put_name(owner);
        let t = self.buf.len();
        self.put_tail(tail);
        self.buf[t + 4..t + 8].copy_from_slice(&ttl.to_be_bytes());
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

    /// Whether a record was left out for want of room.
    pub fn truncated(&self) -> bool {
        self.truncated
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
        if let Some(o) = opt {
            let ttl: u32 = (o.rcode_high as u32) << 24 | if o.dnssec_ok { super::DO_BIT } else { 0 };
            self.buf.push(0);
            self.buf.extend_from_slice(&TYPE_OPT.to_be_bytes());
            self.buf.extend_from_slice(&o.payload.to_be_bytes());
            self.buf.extend_from_slice(&ttl.to_be_bytes());
            self.buf.extend_from_slice(&[0, 0]);
            let ar = counts[2] + 1;
            self.buf[10..12].copy_from_slice(&ar.to_be_bytes());
        }
        self.buf
    }
}
