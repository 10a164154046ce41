//! A response assembled into a caller's buffer: header, the question as
//! received, then records whose bytes were precomputed, with owner names
//! compressed (RFC 1035 §4.1.4) against names already in the message.

use super::query::{AA, CD, PlainQuery, QR, RA, RD, TC};

/// Most name positions remembered for compression; later names are
/// written in full (still correct, only longer).
const MAX_NAMES: usize = 48;
/// Offsets past this cannot be the target of a compression pointer.
const MAX_POINTER: usize = 0x3fff;
/// The OPT record pzdns sends: root owner, TYPE, CLASS, TTL, RDLENGTH.
pub const OPT_LEN: usize = 11;

/// Section counts, in header order after QDCOUNT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer = 0,
    Authority = 1,
}

pub struct ResponseWriter<'b> {
    buf: &'b mut Vec<u8>,
    /// Largest message allowed (the UDP payload), OPT included.
    limit: usize,
    /// Bytes reserved at the end for the OPT record.
    reserve: usize,
    /// Length of header and question: what a truncated response keeps.
    question_end: usize,
    counts: [u16; 2],
    truncated: bool,
    /// Positions of label starts already in the message.
    names: [u16; MAX_NAMES],
    n_names: usize,
}

impl<'b> ResponseWriter<'b> {
    /// Starts the response to `q` in `buf` (cleared), at most `limit` bytes.
    pub fn new(buf: &'b mut Vec<u8>, q: &PlainQuery<'_>, limit: usize) -> Self {
        buf.clear();
        buf.extend_from_slice(&q.id.to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(q.question);
        let question_end = buf.len();
        let mut w = ResponseWriter {
            buf,
            limit,
            reserve: if q.edns.is_some() { OPT_LEN } else { 0 },
            question_end,
            counts: [0; 2],
            truncated: false,
            names: [0; MAX_NAMES],
            n_names: 0,
        };
        w.remember(12);
        w
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

    fn fits(&mut self, start: usize) -> bool {
        if self.buf.len() + self.reserve > self.limit {
            self.buf.truncate(start);
            self.truncated = true;
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
            2 | 5 | 12 => (0, 1),
            15 => (2, 1),
            6 => (0, 2),
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
            let n = super::name_len(&tail[at..]);
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
        if !self.fits(start) {
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
        if !self.fits(start) {
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

    /// Completes the header (flags from the query's RD and CD) and the
    /// OPT record, and returns the message length. A truncated response
    /// keeps only the question, with TC set (RFC 2181 §9).
    pub fn finish(self, q: &PlainQuery<'_>, aa: bool, ra: bool, rcode: u8) {
        let mut flags = QR | (q.flags & (RD | CD)) | (rcode as u16 & 0x0f);
        if aa {
            flags |= AA;
        }
        if ra {
            flags |= RA;
        }
        let mut counts = self.counts;
        if self.truncated {
            flags |= TC;
            self.buf.truncate(self.question_end);
            counts = [0, 0];
        }
        self.buf[2..4].copy_from_slice(&flags.to_be_bytes());
        self.buf[6..8].copy_from_slice(&counts[0].to_be_bytes());
        self.buf[8..10].copy_from_slice(&counts[1].to_be_bytes());
        if let Some(e) = q.edns {
            let payload = e.payload.clamp(512, crate::server::MAX_UDP_PAYLOAD);
            let ttl: u32 = if e.dnssec_ok { 0x8000 } else { 0 };
            self.buf.push(0);
            self.buf.extend_from_slice(&41u16.to_be_bytes());
            self.buf.extend_from_slice(&payload.to_be_bytes());
            self.buf.extend_from_slice(&ttl.to_be_bytes());
            self.buf.extend_from_slice(&[0, 0]);
            self.buf[10..12].copy_from_slice(&1u16.to_be_bytes());
        }
    }
}
