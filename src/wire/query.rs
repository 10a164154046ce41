//! The header, question and OPT of a plain query, read in place.

/// DNS header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2).
pub const QR: u16 = 0x8000;
pub const OPCODE: u16 = 0x7800;
pub const AA: u16 = 0x0400;
pub const TC: u16 = 0x0200;
pub const RD: u16 = 0x0100;
pub const RA: u16 = 0x0080;
pub const CD: u16 = 0x0010;

/// Record types the fast path leaves to the general path: OPT as a
/// question, TKEY, TSIG, IXFR, AXFR, MAILB, MAILA (and 0).
fn general_qtype(t: u16) -> bool {
    matches!(t, 0 | 41 | 249..=254)
}

/// The EDNS part of a query (RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryEdns {
    pub payload: u16,
    pub dnssec_ok: bool,
}

/// A query with one question of class IN, no compression, no records
/// other than one version-0 OPT, nothing after it. Anything else is not
/// a `PlainQuery` and takes the general path.
#[derive(Debug, Clone, Copy)]
pub struct PlainQuery<'a> {
    pub id: u16,
    pub flags: u16,
    /// QNAME, QTYPE and QCLASS as received (echoed byte for byte).
    pub question: &'a [u8],
    pub qname: &'a [u8],
    pub qtype: u16,
    pub edns: Option<QueryEdns>,
}

impl<'a> PlainQuery<'a> {
    pub fn parse(msg: &'a [u8]) -> Option<Self> {
        let be = |i: usize| Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]));
        let flags = be(2)?;
        if flags & (QR | OPCODE) != 0 || be(4)? != 1 || be(6)? != 0 || be(8)? != 0 {
            return None;
        }
        let arcount = be(10)?;
        if arcount > 1 {
            return None;
        }
        // QNAME: plain labels only, at most 255 bytes.
        let mut pos = 12;
        loop {
            let len = *msg.get(pos)? as usize;
            if len & 0xc0 != 0 {
                return None;
            }
            pos += 1 + len;
            if len == 0 {
                break;
            }
            if pos - 12 > 255 {
                return None;
            }
        }
        if pos - 12 > 255 {
            return None;
        }
        let qname = &msg[12..pos];
        let (qtype, qclass) = (be(pos)?, be(pos + 2)?);
        if qclass != 1 || general_qtype(qtype) {
            return None;
        }
        let question = &msg[12..pos + 4];
        pos += 4;
        let mut edns = None;
        if arcount == 1 {
            // OPT: root owner, type 41, CLASS = payload, TTL = extended
            // rcode, version, DO; options walked but not used.
            if *msg.get(pos)? != 0 || be(pos + 1)? != 41 {
                return None;
            }
            let payload = be(pos + 3)?;
            let (ext_rcode, version, do_z) = (*msg.get(pos + 5)?, *msg.get(pos + 6)?, be(pos + 7)?);
            if ext_rcode != 0 || version != 0 {
                return None;
            }
            let rdlen = be(pos + 9)? as usize;
            let mut opt = pos + 11;
            let end = opt + rdlen;
            while opt < end {
                opt += 4 + be(opt + 2)? as usize;
            }
            if opt != end {
                return None;
            }
            pos = end;
            edns = Some(QueryEdns { payload, dnssec_ok: do_z & 0x8000 != 0 });
        }
        if pos != msg.len() {
            return None;
        }
        Some(PlainQuery { id: be(0)?, flags, question, qname, qtype, edns })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(flags: u16, an: u16, ar: &[u8], arcount: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34];
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, an as u8, 0, 0, 0, arcount as u8]);
        m.extend_from_slice(b"\x03WwW\x07example\x00\x00\x01\x00\x01");
        m.extend_from_slice(ar);
        m
    }

    #[test]
    fn plain_queries_parse_and_others_do_not() {
        let m = q(RD, 0, &[], 0);
        let p = PlainQuery::parse(&m).unwrap();
        assert_eq!((p.id, p.qtype, p.qname, p.edns), (0x1234, 1, &b"\x03WwW\x07example\x00"[..], None));
        let opt = [0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 4, 0, 10, 0, 0];
        let m = q(RD, 0, &opt, 1);
        let p = PlainQuery::parse(&m).unwrap();
        assert_eq!(p.edns, Some(QueryEdns { payload: 1232, dnssec_ok: true }));
        assert!(PlainQuery::parse(&q(QR, 0, &[], 0)).is_none(), "a response");
        assert!(PlainQuery::parse(&q(0x2800, 0, &[], 0)).is_none(), "opcode UPDATE");
        assert!(PlainQuery::parse(&q(RD, 1, &[], 0)).is_none(), "an answer record");
        assert!(PlainQuery::parse(&q(RD, 0, &[0, 0, 41, 4, 0xd0, 0, 1, 0, 0, 0, 0], 1)).is_none(), "EDNS version 1");
        assert!(PlainQuery::parse(&q(RD, 0, &[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 5, 0, 10, 0, 9, 1], 1)).is_none(), "bad option length");
        assert!(PlainQuery::parse(&q(RD, 0, &[0], 0)).is_none(), "trailing byte");
        let mut m = q(RD, 0, &[], 0);
        m[12] = 0xc0;
        assert!(PlainQuery::parse(&m).is_none(), "compressed question");
        for cut in 0..q(RD, 0, &opt, 1).len() {
            assert!(PlainQuery::parse(&q(RD, 0, &opt, 1)[..cut]).is_none());
        }
    }
}
