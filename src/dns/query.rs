//! A query message read in place: header, the first question as received,
//! and the OPT record. Every other record is walked for structure only
//! (a query carries none that pzdns acts on). One reader for every
//! transport; nothing is allocated.

use super::{CD, OPCODE, QR, RD, TYPE_OPT, TYPE_TSIG};

/// The EDNS part of a query (RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryEdns {
    pub payload: u16,
    pub dnssec_ok: bool,
    pub version: u8,
    /// The EDNS Client Subnet option (RFC 7871), if one was sent well formed.
    pub subnet: Option<ClientSubnet>,
    /// An ECS option was sent but is malformed: FORMERR where ECS is
    /// believed (a trusted forwarder, `client_subnet: trusted`), else ignored.
    pub bad_subnet: bool,
    /// The query asks for the server's NSID (RFC 5001).
    pub nsid: bool,
    /// The options do not fill the RDATA exactly (a length overruns it,
    /// or bytes are left over). The query is still answered, the options
    /// ignored, as they are anyway; it is counted (`Event::MalformedOption`).
    pub malformed_options: bool,
    /// The first DNS COOKIE option (RFC 7873), if it was well formed.
    pub cookie: Option<CookieOpt>,
    /// A COOKIE option of a length RFC 7873 §4 does not allow (not 8, nor
    /// 16 to 40): FORMERR, as BIND answers.
    pub bad_cookie: bool,
}

/// A DNS COOKIE option as sent (RFC 7873 §4): the client cookie, and the
/// server cookie the client holds for this server, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieOpt {
    pub client: [u8; 8],
    server: [u8; 32],
    server_len: u8,
}

impl CookieOpt {
    /// Reads a COOKIE option's data; `None` for a length other than 8 or 16 to 40.
    fn read(data: &[u8]) -> Option<Self> {
        if data.len() != 8 && !(16..=40).contains(&data.len()) {
            return None;
        }
        let mut c = CookieOpt { client: [0; 8], server: [0; 32], server_len: (data.len() - 8) as u8 };
        c.client.copy_from_slice(&data[..8]);
        c.server[..data.len() - 8].copy_from_slice(&data[8..]);
        Some(c)
    }

    /// The server cookie as sent (empty: the client has none yet).
    pub fn server(&self) -> &[u8] {
        &self.server[..self.server_len as usize]
    }
}

/// An EDNS Client Subnet option as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    /// 1 for IPv4, 2 for IPv6, 0 for none (source prefix 0, no address).
    pub family: u16,
    pub source_prefix: u8,
    /// The address bytes as sent: `ceil(source_prefix / 8)` of them.
    pub addr: [u8; 16],
    pub addr_len: u8,
}

impl ClientSubnet {
    /// The client subnet's address (host bits zero); for family 0 (no
    /// address, RFC 7871 §7.1.2's "do not use my address"), `0.0.0.0`.
    pub fn ip(&self) -> std::net::IpAddr {
        let a = self.addr;
        if self.family == 2 { std::net::Ipv6Addr::from(a).into() } else { std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).into() }
    }

    /// Reads an ECS option's data (after code and length). `None` for
    /// what BIND answers FORMERR (RFC 7871 §6): a family other than 0, 1
    /// and 2, family 0 with a prefix, a source prefix longer than the
    /// family's address, other than `ceil(source_prefix / 8)` address
    /// bytes, address bits set past the prefix, or a SCOPE PREFIX-LENGTH
    /// other than 0 (it "MUST be set to 0" in queries).
    fn read(data: &[u8]) -> Option<Self> {
        let (family, source_prefix) = (u16::from_be_bytes([*data.first()?, *data.get(1)?]), *data.get(2)?);
        let scope = *data.get(3)?;
        let addr = data.get(4..)?;
        let max = match family {
            0 => 0,
            1 => 32,
            2 => 128,
            _ => return None,
        };
        let addr_len = (source_prefix as usize).div_ceil(8);
        if source_prefix > max || addr.len() != addr_len || scope != 0 {
            return None;
        }
        // Bits past the prefix must be zero.
        if let Some(&last) = addr.last()
            && source_prefix % 8 != 0
            && last & (0xff >> (source_prefix % 8)) != 0
        {
            return None;
        }
        let mut a = [0u8; 16];
        a[..addr_len].copy_from_slice(addr);
        Some(ClientSubnet { family, source_prefix, addr: a, addr_len: addr_len as u8 })
    }

    /// What the option claims about the client: its address and source
    /// prefix length, or `None` for a prefix of 0 (family 0 included),
    /// which says nothing about the client (RFC 7871 §7.1.2), and for
    /// `::ffff:0:0/96`, every IPv4-mapped address: IPv4's prefix 0.
    pub fn claim(&self) -> Option<(std::net::IpAddr, u8)> {
        let ip = self.ip();
        let all_mapped = self.source_prefix == 96 && matches!(ip, std::net::IpAddr::V6(a) if a.to_ipv4_mapped().is_some());
        (self.source_prefix > 0 && !all_mapped).then_some((ip, self.source_prefix))
    }
}

/// The EDNS option code of Client Subnet.
pub const OPTION_CLIENT_SUBNET: u16 = 8;
/// The EDNS option code of NSID.
pub const OPTION_NSID: u16 = 3;
/// The EDNS option code of DNS COOKIE.
pub const OPTION_COOKIE: u16 = 10;

/// The question as it stands in the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuestionPart<'a> {
    /// QDCOUNT is not 1 (no question, or several).
    NotOne,
    /// The one question's name uses a compression pointer: echoing it
    /// verbatim would point into pzdns's response, not the query.
    Compressed,
    /// QNAME (uncompressed wire), QTYPE, QCLASS, and the bytes to echo.
    One { question: &'a [u8], qname: &'a [u8], qtype: u16, qclass: u16 },
}

/// A query, as far as the answering rules need it.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub id: u16,
    pub flags: u16,
    /// QDCOUNT as sent (a query with none and only a COOKIE is answered, RFC 7873 §5.4).
    pub qdcount: u16,
    pub question: QuestionPart<'a>,
    pub edns: Option<QueryEdns>,
    /// Where the TSIG record (RFC 8945) starts, when the query is signed:
    /// the last record of the message.
    pub tsig: Option<usize>,
}

/// Why a message cannot be read as a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Nothing may be sent back: under 12 bytes (no header to answer to)
    /// or a response (QR=1; answering responses makes reflection loops).
    Drop,
    /// The header reads but the rest does not: FORMERR, header only.
    FormErr { id: u16, flags: u16 },
}

impl<'a> Query<'a> {
    pub fn opcode(&self) -> u8 {
        ((self.flags & OPCODE) >> 11) as u8
    }

    /// The header bits a response copies from this query.
    pub fn copied_flags(&self) -> u16 {
        copied_flags(self.flags)
    }

    pub fn recursion_desired(&self) -> bool {
        self.flags & RD != 0
    }

    /// The one question, if there is exactly one and it can be echoed.
    pub fn one(&self) -> Option<(&'a [u8], &'a [u8], u16, u16)> {
        match self.question {
            QuestionPart::One { question, qname, qtype, qclass } => Some((question, qname, qtype, qclass)),
            _ => None,
        }
    }

    pub fn parse(msg: &'a [u8]) -> Result<Self, Unreadable> {
        if msg.len() < 12 {
            return Err(Unreadable::Drop);
        }
        let be = |i: usize| msg.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let (id, flags) = (be(0).unwrap_or(0), be(2).unwrap_or(0));
        if flags & QR != 0 {
            return Err(Unreadable::Drop);
        }
        let bad = Unreadable::FormErr { id, flags };
        let count = |i| be(i).unwrap_or(0) as usize;
        let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
        let mut r = Reader { msg, pos: 12 };
        let mut question = QuestionPart::NotOne;
        for i in 0..qd {
            let start = r.pos;
            let compressed = r.skip_name().ok_or(bad)?;
            let name_end = r.pos;
            let (qtype, qclass) = (r.u16().ok_or(bad)?, r.u16().ok_or(bad)?);
            if qd == 1 && i == 0 {
                question = if compressed {
                    QuestionPart::Compressed
                } else {
                    QuestionPart::One { question: &msg[start..r.pos], qname: &msg[start..name_end], qtype, qclass }
                };
            }
        }
        for _ in 0..an + ns {
            r.skip_record().ok_or(bad)?;
        }
        let mut edns = None;
        let mut tsig = None;
        for i in 0..ar {
            let owner = r.pos;
            r.skip_name().ok_or(bad)?;
            let root = r.pos == owner + 1 && msg[owner] == 0;
            let rtype = r.u16().ok_or(bad)?;
            let class = r.u16().ok_or(bad)?;
            let ttl = r.u32().ok_or(bad)?;
            let rdlen = r.u16().ok_or(bad)? as usize;
            let rdata = r.take(rdlen).ok_or(bad)?;
            if rtype == TYPE_TSIG {
                // RFC 8945 §5.1: the TSIG record is the last one, or FORMERR.
                if i + 1 != ar {
                    return Err(bad);
                }
                tsig = Some(owner);
            }
            if rtype == TYPE_OPT {
                // RFC 6891 §6.1.1: one OPT, owned by the root, or FORMERR.
                if edns.is_some() || !root {
                    return Err(bad);
                }
                let version = (ttl >> 16) as u8;
                let (mut subnet, mut bad_subnet, mut nsid) = (None, false, false);
                let (mut cookie, mut bad_cookie, mut seen_cookie) = (None, false, false);
                let malformed_options = options_malformed(rdata);
                let mut opts = rdata;
                while opts.len() >= 4 {
                    let (code, len) = (u16::from_be_bytes([opts[0], opts[1]]), u16::from_be_bytes([opts[2], opts[3]]) as usize);
                    let Some(data) = opts.get(4..4 + len) else { break };
                    if code == OPTION_CLIENT_SUBNET {
                        subnet = ClientSubnet::read(data);
                        bad_subnet = subnet.is_none();
                    }
                    nsid |= code == OPTION_NSID;
                    // The first COOKIE counts, as in BIND.
                    if code == OPTION_COOKIE && !seen_cookie {
                        seen_cookie = true;
                        cookie = CookieOpt::read(data);
                        bad_cookie = cookie.is_none();
                    }
                    opts = &opts[4 + len..];
                }
                edns = Some(QueryEdns {
                    payload: class,
                    dnssec_ok: ttl & super::DO_BIT != 0,
                    version,
                    subnet,
                    bad_subnet,
                    nsid,
                    malformed_options,
                    cookie,
                    bad_cookie,
                });
            }
        }
        // Bytes after the last record are ignored, as BIND and NSD do.
        Ok(Query { id, flags, qdcount: qd as u16, question, edns, tsig })
    }
}

/// Whether OPT RDATA is not a whole number of options (RFC 6891 §6.1.2:
/// CODE, LENGTH, LENGTH bytes, repeated).
fn options_malformed(mut rdata: &[u8]) -> bool {
    while !rdata.is_empty() {
        let Some(len) = rdata.get(2..4).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize) else { return true };
        let Some(rest) = rdata.get(4 + len..) else { return true };
        rdata = rest;
    }
    false
}

/// The header bits a response copies from a query's: the opcode always;
/// RD and CD only for opcode QUERY, the one they are defined for (RFC
/// 1035, RFC 4035), as BIND, NSD and Knot do.
pub fn copied_flags(flags: u16) -> u16 {
    let opcode = flags & OPCODE;
    if opcode == 0 { flags & (RD | CD) } else { opcode }
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.msg.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Skips a name; `Some(true)` if it ends in a compression pointer.
    /// Plain labels may make at most 255 bytes (RFC 1035 §2.3.4).
    fn skip_name(&mut self) -> Option<bool> {
        let start = self.pos;
        loop {
            let len = *self.msg.get(self.pos)?;
            match len & 0xc0 {
                0 => {
                    self.pos += 1 + len as usize;
                    if self.pos - start > super::names::MAX_NAME_WIRE_LEN || self.pos > self.msg.len() {
                        return None;
                    }
                    if len == 0 {
                        return Some(false);
                    }
                }
                0xc0 => {
                    self.take(2)?;
                    return Some(true);
                }
                // 0x40 and 0x80: extended and reserved label types (RFC 6891 §5).
                _ => return None,
            }
        }
    }

    fn skip_record(&mut self) -> Option<()> {
        self.skip_name()?;
        self.take(8)?;
        let rdlen = self.u16()? as usize;
        self.take(rdlen).map(|_| ())
    }
}

/// Where the TSIG record of any message (a response too) starts, if its
/// last record is one; `Err` if the message does not read.
#[allow(clippy::result_unit_err)]
pub fn response_tsig(msg: &[u8]) -> Result<Option<usize>, ()> {
    let count = |i: usize| msg.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize).ok_or(());
    let (qd, records) = (count(4)?, count(6)? + count(8)? + count(10)?);
    let mut r = Reader { msg, pos: 12 };
    for _ in 0..qd {
        r.skip_name().ok_or(())?;
        r.take(4).ok_or(())?;
    }
    let mut last = None;
    for _ in 0..records {
        let start = r.pos;
        r.skip_name().ok_or(())?;
        let rtype = r.u16().ok_or(())?;
        r.pos = start;
        r.skip_record().ok_or(())?;
        last = Some((start, rtype));
    }
    Ok(last.filter(|(_, t)| *t == TYPE_TSIG).map(|(s, _)| s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(flags: u16, qd: u16, an: u16, tail: &[u8], arcount: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34];
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&qd.to_be_bytes());
        m.extend_from_slice(&an.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&arcount.to_be_bytes());
        for _ in 0..qd {
            m.extend_from_slice(b"\x03WwW\x07example\x00\x00\x01\x00\x01");
        }
        m.extend_from_slice(tail);
        m
    }

    // One option: 65001 (unassigned), empty.
    const OPT: [u8; 15] = [0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 4, 0xfd, 0xe9, 0, 0];

    #[test]
    fn a_plain_query_reads_in_place() {
        let m = q(RD, 1, 0, &[], 0);
        let p = Query::parse(&m).unwrap();
        assert_eq!(p.id, 0x1234);
        let (question, qname, qtype, qclass) = p.one().unwrap();
        assert_eq!((qname, qtype, qclass), (&b"\x03WwW\x07example\x00"[..], 1, 1));
        assert_eq!(question.len(), qname.len() + 4);
        assert_eq!(p.edns, None);
        let m = q(RD, 1, 0, &OPT, 1);
        let p = Query::parse(&m).unwrap();
        assert_eq!(
            p.edns,
            Some(QueryEdns {
                payload: 1232,
                dnssec_ok: true,
                version: 0,
                subnet: None,
                bad_subnet: false,
                nsid: false,
                malformed_options: false,
                cookie: None,
                bad_cookie: false,
            })
        );
    }

    #[test]
    fn malformed_options_are_seen_and_the_query_still_reads() {
        let opt = |rdata: &[u8]| {
            let mut o = vec![0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0];
            o.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            o.extend_from_slice(rdata);
            o
        };
        for (rdata, bad) in [
            (&[][..], false),
            (&[0, 10, 0, 2, 1, 2][..], false),
            (&[0, 10, 0, 2, 1, 2, 0, 8, 0, 0][..], false),
            (&[0, 10, 0, 40, 1, 2, 3, 4, 5, 6, 7, 8][..], true),
            (&[0, 10, 0][..], true),
            (&[0, 10, 0, 0, 9][..], true),
        ] {
            let m = q(RD, 1, 0, &opt(rdata), 1);
            assert_eq!(Query::parse(&m).unwrap().edns.unwrap().malformed_options, bad, "{rdata:?}");
        }
    }

    #[test]
    fn responses_and_runts_are_dropped() {
        assert_eq!(Query::parse(&q(QR, 1, 0, &[], 0)).unwrap_err(), Unreadable::Drop);
        assert_eq!(Query::parse(&[0; 11]).unwrap_err(), Unreadable::Drop);
        // A response that does not even decode: still nothing back.
        assert_eq!(Query::parse(&[0, 0, 0x80, 0, 0, 9, 0, 0, 0, 0, 0, 0]).unwrap_err(), Unreadable::Drop);
    }

    #[test]
    fn shapes_the_rules_answer() {
        assert_eq!(Query::parse(&q(RD, 2, 0, &[], 0)).unwrap().question, QuestionPart::NotOne);
        assert_eq!(Query::parse(&q(RD, 0, 0, &[], 0)).unwrap().question, QuestionPart::NotOne);
        let mut m = q(RD, 1, 0, &[], 0);
        m.truncate(12);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(Query::parse(&m).unwrap().question, QuestionPart::Compressed);
        let v1 = [0, 0, 41, 4, 0xd0, 0, 1, 0, 0, 0, 0];
        assert_eq!(Query::parse(&q(RD, 1, 0, &v1, 1)).unwrap().edns.unwrap().version, 1);
        let m = q(0x2800 | RD | CD, 1, 0, &[], 0);
        let update = Query::parse(&m).unwrap();
        assert_eq!((update.opcode(), update.copied_flags()), (5, 0x2800), "opcode kept, RD and CD clear");
        // A record in the answer section is walked, not refused.
        let rec = [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4];
        assert!(Query::parse(&q(RD, 1, 1, &rec, 0)).is_ok());
        // Trailing bytes are ignored.
        assert!(Query::parse(&q(RD, 1, 0, &[0], 0)).is_ok());
    }

    #[test]
    fn broken_structure_is_formerr() {
        let formerr = Unreadable::FormErr { id: 0x1234, flags: RD };
        assert_eq!(Query::parse(&q(RD, 1, 0, &OPT[..10], 1)).unwrap_err(), formerr, "cut OPT");
        let two: Vec<u8> = OPT.iter().chain(OPT.iter()).copied().collect();
        assert_eq!(Query::parse(&q(RD, 1, 0, &two, 2)).unwrap_err(), formerr, "two OPTs");
        assert_eq!(Query::parse(&q(RD, 1, 1, &[], 0)).unwrap_err(), formerr, "a missing answer record");
        let full = q(RD, 1, 0, &OPT, 1);
        for cut in 12..full.len() {
            assert_eq!(Query::parse(&full[..cut]).unwrap_err(), formerr, "cut at {cut}");
        }
        let mut m = q(RD, 1, 0, &[], 0);
        m[12] = 0x40;
        assert_eq!(Query::parse(&m).unwrap_err(), formerr, "extended label type");
    }

    #[test]
    fn client_subnet_is_read_and_checked() {
        let ecs = |data: &[u8]| {
            let mut opt = vec![0, 0, 41, 4, 0xd0, 0, 0, 0, 0];
            opt.extend_from_slice(&((data.len() + 4) as u16).to_be_bytes());
            opt.extend_from_slice(&[0, 8]);
            opt.extend_from_slice(&(data.len() as u16).to_be_bytes());
            opt.extend_from_slice(data);
            let m = q(RD, 1, 0, &opt, 1);
            Query::parse(&m).unwrap().edns.unwrap()
        };
        let e = ecs(&[0, 1, 24, 0, 127, 1, 0]);
        let s = e.subnet.unwrap();
        assert_eq!((s.source_prefix, s.ip()), (24, "127.1.0.0".parse().unwrap()));
        let e = ecs(&[0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0xa]);
        assert_eq!(e.subnet.unwrap().ip(), "2001:db8:a::".parse::<std::net::IpAddr>().unwrap());
        let e = ecs(&[0, 0, 0, 0]);
        let s = e.subnet.unwrap();
        assert_eq!((s.family, s.claim()), (0, None), "family 0: no address, no claim");
        assert_eq!(ecs(&[0, 1, 0, 0]).subnet.unwrap().claim(), None, "source prefix 0: no claim");
        let mapped = ecs(&[0, 2, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 2, 0, 5]).subnet.unwrap();
        assert_eq!(mapped.claim(), Some(("::ffff:127.2.0.5".parse().unwrap(), 128)), "a mapped address stays IPv6 here");
        let all_mapped = ecs(&[0, 2, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]).subnet.unwrap();
        assert_eq!(all_mapped.claim(), None, "::ffff:0:0/96 is IPv4's /0");
        for bad in [
            &[0, 1, 24, 0, 127, 1][..],    // too few address bytes
            &[0, 1, 24, 0, 127, 1, 0, 0],  // too many
            &[0, 1, 33, 0, 1, 2, 3, 4, 5], // longer than IPv4
            &[0, 2, 129, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
            &[0, 3, 8, 0, 1],           // unknown family
            &[0, 0, 8, 0, 1],           // family 0 with a prefix
            &[0, 1, 23, 0, 127, 1, 1],  // a bit set past the prefix
            &[0, 1, 24, 16, 127, 1, 0], // scope set in a query
            &[0, 1, 24],                // no scope byte
        ] {
            let e = ecs(bad);
            assert!(e.subnet.is_none() && e.bad_subnet, "{bad:?}");
        }
    }

    #[test]
    fn cookies_are_read_and_bad_lengths_seen() {
        let with = |opts: &[(u16, &[u8])]| {
            let mut rdata = Vec::new();
            for (code, data) in opts {
                rdata.extend_from_slice(&code.to_be_bytes());
                rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
                rdata.extend_from_slice(data);
            }
            let mut opt = vec![0, 0, 41, 4, 0xd0, 0, 0, 0, 0];
            opt.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            opt.extend_from_slice(&rdata);
            Query::parse(&q(RD, 1, 0, &opt, 1)).unwrap().edns.unwrap()
        };
        let e = with(&[(OPTION_COOKIE, &[1, 2, 3, 4, 5, 6, 7, 8])]);
        let c = e.cookie.unwrap();
        assert_eq!((c.client, c.server(), e.bad_cookie), ([1, 2, 3, 4, 5, 6, 7, 8], &[][..], false));
        let full: Vec<u8> = (0..24).collect();
        let c = with(&[(OPTION_COOKIE, &full)]).cookie.unwrap();
        assert_eq!(c.server(), &full[8..]);
        let longest: Vec<u8> = (0..40).collect();
        assert_eq!(with(&[(OPTION_COOKIE, &longest)]).cookie.unwrap().server().len(), 32);
        for bad in [0usize, 7, 9, 15, 41] {
            let data = vec![7u8; bad];
            let e = with(&[(OPTION_COOKIE, &data)]);
            assert!(e.cookie.is_none() && e.bad_cookie, "length {bad}");
        }
        // Only the first COOKIE counts.
        let e = with(&[(OPTION_COOKIE, &[9; 8]), (OPTION_COOKIE, &[1; 3])]);
        assert_eq!((e.cookie.unwrap().client, e.bad_cookie), ([9; 8], false));
    }
}
