//! RFC conformance of every response, one rule per test, each with the
//! text it checks. Raw packets where a library would hide the bytes.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::upstream::FakeUpstream;
use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, RecordType};

const ZONES: &str = RULES_ZONES;
const A_VPC: &str = "127.1.0.5";

fn server() -> TestServer {
    TestServer::start_default(Path::new(ZONES), "vpc-b", "")
}

/// A raw query: header flags word, one question, then `additional` bytes
/// (with `arcount` records in them).
fn raw_query(id: u16, flags: u16, name: &str, qtype: u16, qclass: u16, additional: &[u8], arcount: u16) -> Vec<u8> {
    let mut p = Vec::new();
    for v in [id, flags, 1, 0, 0, arcount] {
        p.extend_from_slice(&v.to_be_bytes());
    }
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&qclass.to_be_bytes());
    p.extend_from_slice(additional);
    p
}

/// An OPT pseudo-record: payload size, extended-rcode/version/flags word, options.
fn opt(payload: u16, ttl: u32, options: &[u8]) -> Vec<u8> {
    let mut o = vec![0u8];
    o.extend_from_slice(&41u16.to_be_bytes());
    o.extend_from_slice(&payload.to_be_bytes());
    o.extend_from_slice(&ttl.to_be_bytes());
    o.extend_from_slice(&(options.len() as u16).to_be_bytes());
    o.extend_from_slice(options);
    o
}

fn raw(s: SocketAddr, pkt: &[u8]) -> Vec<u8> {
    udp_raw(s, A_VPC.parse().unwrap(), pkt).expect("a reply")
}

const RD: u16 = 0x0100;

/// RFC 1035 §4.1.1: QR=1; ID and OPCODE copied; Z "must be zero in all
/// queries and responses"; RD copied. RFC 4035 §3.2.2: CD copied.
#[test]
fn rfc1035_header() {
    let srv = server();
    // Z (0x0040) and CD (0x0010) set in the query.
    let r = raw(srv.addrs[0], &raw_query(0xbeef, RD | 0x0040 | 0x0010, "www.example.test", 1, 1, &[], 0));
    assert_eq!(&r[..2], &[0xbe, 0xef], "ID copied");
    let flags = u16::from_be_bytes([r[2], r[3]]);
    assert_ne!(flags & 0x8000, 0, "QR");
    assert_eq!(flags & 0x7800, 0, "OPCODE QUERY copied");
    assert_ne!(flags & 0x0400, 0, "AA for local data");
    assert_ne!(flags & 0x0100, 0, "RD copied");
    assert_ne!(flags & 0x0080, 0, "RA for a VPC client");
    assert_eq!(flags & 0x0040, 0, "Z is zero");
    assert_ne!(flags & 0x0010, 0, "CD copied");
    assert_eq!(flags & 0x000f, 0, "NOERROR");
}

/// RFC 1035 §4.1.2 and the 0x20 practice (draft-vixie-dnsext-dns0x20):
/// the question is echoed byte for byte, case included.
#[test]
fn rfc1035_question_echoed_with_case() {
    let srv = server();
    let q = raw_query(7, RD, "wWw.eXaMpLe.TeSt", 1, 1, &[], 0);
    let r = raw(srv.addrs[0], &q);
    assert_eq!(&r[12..q.len()], &q[12..], "question section");
}

/// RFC 1035 §4.2.1: without EDNS a UDP message is at most 512 bytes; a
/// longer answer sets TC (and the client retries over TCP, RFC 7766 §5).
#[test]
fn rfc1035_udp_limit_and_tc() {
    let srv = server();
    let r = raw(srv.addrs[0], &raw_query(8, RD, "many.example.test", 1, 1, &[], 0));
    assert!(r.len() <= 512);
    assert_ne!(r[2] & 0x02, 0, "TC");
    let full = tcp(srv.addrs[0], A_VPC, &query("many.example.test.", RecordType::A, None));
    assert_eq!(full.answers.len(), 100);
}

/// RFC 6891 §6.1.1: no OPT in, no OPT out; an OPT in, exactly one OPT out
/// (§7: "the responder MUST include an OPT RR").
#[test]
fn rfc6891_opt_presence() {
    let srv = server();
    let r = Message::from_vec(&raw(srv.addrs[0], &raw_query(9, RD, "www.example.test", 1, 1, &[], 0))).unwrap();
    assert!(r.edns.is_none());
    let r = raw(srv.addrs[0], &raw_query(9, RD, "www.example.test", 1, 1, &opt(4096, 0, &[]), 1));
    assert_eq!(u16::from_be_bytes([r[10], r[11]]), 1, "ARCOUNT: one OPT");
    let m = Message::from_vec(&r).unwrap();
    let e = m.edns.unwrap();
    assert_eq!((e.version(), e.max_payload()), (0, 1232), "version 0, our payload capped at 1232");
}

/// RFC 6891 §6.1.1: "If a query message with more than one OPT RR is
/// received, a FORMERR (RCODE=1) MUST be returned."
#[test]
fn rfc6891_two_opts_formerr() {
    let srv = server();
    let two = [opt(1232, 0, &[]), opt(1232, 0, &[])].concat();
    let r = raw(srv.addrs[0], &raw_query(10, RD, "www.example.test", 1, 1, &two, 2));
    assert_eq!(r[3] & 0x0f, 1, "FORMERR");
}

/// RFC 6891 §6.1.3: version above ours → BADVERS (16: 0 in the header, 1 in
/// the OPT's extended rcode), with an OPT of the version we do speak.
#[test]
fn rfc6891_badvers() {
    let srv = server();
    let r = raw(srv.addrs[0], &raw_query(11, RD, "www.example.test", 1, 1, &opt(1232, 0x0001_0000, &[]), 1));
    assert_eq!(r[3] & 0x0f, 0);
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert_eq!(m.edns.unwrap().version(), 0);
    assert!(m.answers.is_empty());
}

/// RFC 6891 §6.1.2/§6.1.4: unknown options and unknown flag bits are
/// ignored, not echoed; DO (RFC 3225 §3) is copied.
#[test]
fn rfc6891_unknown_options_and_flags_not_echoed_do_copied() {
    let srv = server();
    // DO (0x8000) and an unknown flag (0x0001); option 65001 with 2 bytes.
    let r = raw(srv.addrs[0], &raw_query(12, RD, "www.example.test", 1, 1, &opt(1232, 0x0000_8001, &[0xfd, 0xe9, 0, 2, 0xab, 0xcd]), 1));
    let m = Message::from_vec(&r).unwrap();
    let e = m.edns.unwrap();
    assert!(e.flags().dnssec_ok, "DO copied");
    assert!(e.options().as_ref().is_empty(), "no option echoed");
    // The raw OPT TTL field carries only DO: unknown flag bits are zero.
    let opt_at = r.len() - 11;
    assert_eq!(&r[opt_at..opt_at + 3], &[0, 0, 41]);
    assert_eq!(u32::from_be_bytes(r[opt_at + 5..opt_at + 9].try_into().unwrap()), 0x0000_8000);
    assert_eq!(m.answers.len(), 2);
}

/// RFC 6891 §6.2.5: a payload size under 512 is treated as 512.
#[test]
fn rfc6891_small_payload_is_512() {
    let srv = server();
    let m = Message::from_vec(&raw(srv.addrs[0], &raw_query(13, RD, "www.example.test", 1, 1, &opt(100, 0, &[]), 1))).unwrap();
    assert_eq!(m.edns.unwrap().max_payload(), 512);
}

/// RFC 7873 §5.2: a server that does not implement cookies ignores the
/// option and answers normally.
#[test]
fn rfc7873_cookie_ignored() {
    let srv = server();
    let mut q = query("www.example.test.", RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().options_mut().insert(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
    let r = udp(srv.addrs[0], A_VPC, &q);
    assert_eq!(r.answers.len(), 2);
}

/// RFC 2181 §5.2: all records of an RRset have one TTL (pzdns uses the
/// smallest given); §8: a TTL with the top bit set is read as 0.
#[test]
fn rfc2181_ttls() {
    let srv = server();
    let r = udp(srv.addrs[0], A_VPC, &query("ttlmix.example.test.", RecordType::A, None));
    let ttls: Vec<u32> = r.answers.iter().map(|a| a.ttl).collect();
    assert_eq!(ttls, [50, 50]);
    let up = FakeUpstream::start("127.0.0.1");
    up.ttl.store(0x8000_0001, std::sync::atomic::Ordering::Relaxed);
    let srv = TestServer::start_default(Path::new(ZONES), "vpc-b", &format!("upstreams: [{}]\n", up.addr));
    let r = udp(srv.addrs[0], A_VPC, &query("www.public.example.", RecordType::A, None));
    assert!(r.answers.iter().all(|a| a.ttl == 0), "{:?}", r.answers);
    udp(srv.addrs[0], A_VPC, &query("www.public.example.", RecordType::A, None));
    assert_eq!(up.queries(), 2, "a TTL-0 answer is not cached");
}

/// RFC 2308 §3, §5: NXDOMAIN and NODATA carry the zone SOA in authority,
/// with TTL min(SOA TTL, SOA MINIMUM).
#[test]
fn rfc2308_negative_answers() {
    let srv = server();
    for (name, qtype, rcode) in
        [("nope.example.test.", RecordType::A, ResponseCode::NXDomain), ("www.example.test.", RecordType::MX, ResponseCode::NoError)]
    {
        let r = udp(srv.addrs[0], A_VPC, &query(name, qtype, None));
        assert_eq!(r.metadata.response_code, rcode);
        assert!(r.answers.is_empty() && r.metadata.authoritative);
        assert_eq!(r.authorities.len(), 1);
        assert_eq!((r.authorities[0].record_type(), r.authorities[0].ttl), (RecordType::SOA, 300));
    }
    // The master file's SOA: TTL 3600, MINIMUM 30 → 30.
    let r = udp(srv.addrs[0], A_VPC, &query("x.ecs.cn-shanghai.aliyuncs.com.", RecordType::A, None));
    assert_eq!(r.authorities[0].ttl, 30);
}

/// RFC 4592 §2.2, §3.3: a wildcard answers for names that do not exist
/// below its parent, not for an existing name nor an empty non-terminal;
/// asking for `*` itself answers the wildcard's own records.
#[test]
fn rfc4592_wildcards() {
    let srv = server();
    let s = srv.addrs[0];
    let a = |n: &str| udp(s, A_VPC, &query(n, RecordType::A, None));
    assert_eq!(lines(&a("a.b.app.example.test.").answers), ["a.b.app.example.test. A 10.0.0.9"]);
    let r = a("host.app.example.test."); // exists (AAAA only)
    assert!(r.answers.is_empty() && r.metadata.response_code == ResponseCode::NoError);
    let r = a("app.example.test."); // the empty non-terminal above the wildcard
    assert!(r.answers.is_empty() && r.metadata.response_code == ResponseCode::NoError);
    assert_eq!(lines(&a("*.app.example.test.").answers), ["*.app.example.test. A 10.0.0.9"]);
}

/// RFC 6604 §3: the rcode is that of the last link of a CNAME chain, and
/// the chain is in the answer.
#[test]
fn rfc6604_cname_chain_rcode() {
    let srv = server();
    let r = udp(srv.addrs[0], A_VPC, &query("tomissing.example.test.", RecordType::A, None));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(lines(&r.answers), ["tomissing.example.test. CNAME nothere.example.test."]);
    assert!(r.metadata.authoritative);
}

/// RFC 1035 §4.1.4: a pointer must point to a prior occurrence of a name.
/// A question that uses one (found by fuzz/request: a pointer into the
/// header) gets FORMERR without the question, since echoing it verbatim
/// would make the pointer point into our own response.
#[test]
fn rfc1035_compressed_question_is_formerr() {
    let srv = server();
    let mut q = raw_query(30, RD, "www.example.test", 1, 1, &[], 0);
    // Replace the name with a pointer to offset 2 (the header's flags).
    q.truncate(12);
    q.extend_from_slice(&[0x01, 0x02, 0xc0, 0x02, 0, 1, 0, 1]);
    let r = raw(srv.addrs[0], &q);
    assert_eq!(r[3] & 0x0f, 1, "FORMERR");
    assert_eq!(u16::from_be_bytes([r[4], r[5]]), 0, "no question echoed");
    Message::from_vec(&r).expect("a well-formed response");
}

/// RFC 8482 §4.1: ANY is answered with one RRset, not all of them.
#[test]
fn rfc8482_any() {
    let srv = server();
    let r = udp(srv.addrs[0], A_VPC, &query("example.test.", RecordType::ANY, None));
    let types: std::collections::HashSet<RecordType> = r.answers.iter().map(|a| a.record_type()).collect();
    assert_eq!(types.len(), 1, "{:?}", lines(&r.answers));
}

/// RFC 7766 §8: two-byte length framing; §6.2.1.1: several queries on one
/// connection (pipelining) all get answers; §6.2.3: idle connections are
/// closed by the server (after 10 s here).
#[test]
fn rfc7766_tcp() {
    let srv = server();
    let mut t = tcp_connect(srv.addrs[0], A_VPC.parse().unwrap());
    let qs: Vec<Message> = (0..5).map(|i| query(&format!("q{i}.app.example.test."), RecordType::A, None)).collect();
    let mut all = Vec::new();
    for q in &qs {
        all.extend_from_slice(&(q.to_vec().unwrap().len() as u16).to_be_bytes());
        all.extend_from_slice(&q.to_vec().unwrap());
    }
    // All five in one write: the server must split them by their length prefixes.
    std::io::Write::write_all(&mut t, &all).unwrap();
    let mut ids: Vec<u16> = (0..5).map(|_| Message::from_vec(&tcp_recv(&mut t)).unwrap().metadata.id).collect();
    let mut want: Vec<u16> = qs.iter().map(|q| q.metadata.id).collect();
    ids.sort_unstable();
    want.sort_unstable();
    assert_eq!(ids, want);
    // Idle: the server closes the connection.
    t.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let started = Instant::now();
    let mut b = [0u8; 1];
    let n = t.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0, "closed by the server");
    assert!(started.elapsed() < Duration::from_secs(14));
}

/// RFC 8906 §3: never drop a query because of what it asks: unknown and
/// meta types, flags a query should not carry, other classes — all get an
/// answer.
#[test]
fn rfc8906_every_query_answered() {
    let srv = server();
    let s = srv.addrs[0];
    let rcode = |pkt: Vec<u8>| raw(s, &pkt)[3] & 0x0f;
    assert_eq!(rcode(raw_query(20, RD, "www.example.test", 65280, 1, &[], 0)), 0, "unknown type: NODATA");
    assert_eq!(rcode(raw_query(21, RD, "www.example.test", 41, 1, &[], 0)), 0, "OPT as a qtype");
    assert_eq!(rcode(raw_query(22, RD | 0x0200, "www.example.test", 1, 1, &[], 0)), 0, "TC set in a query");
    assert_eq!(rcode(raw_query(23, RD | 0x0400, "www.example.test", 1, 1, &[], 0)), 0, "AA set in a query");
    assert_eq!(rcode(raw_query(24, RD, "version.bind", 16, 3, &[], 0)), 5, "CHAOS: REFUSED, not dropped");
    let mut q = query("www.example.test.", RecordType::A, None);
    q.queries[0].set_query_class(DNSClass::ANY);
    assert_eq!(udp(s, A_VPC, &q).metadata.response_code, ResponseCode::Refused);
    // No question at all: FORMERR, not silence.
    let mut empty = raw_query(25, RD, "x", 1, 1, &[], 0);
    empty.truncate(12);
    empty[5] = 0;
    assert_eq!(raw(s, &empty)[3] & 0x0f, 1);
}
