//! The one answer writer, checked against an independent oracle: for
//! every name of the rules fixture (and children, wildcard matches, names
//! outside every zone), many types, every kind of client, several EDNS
//! shapes and both transports, the response bytes are decoded strictly by
//! hickory-proto and compared with what `resolve()` (hickory records, no
//! wire code of pzdns's) and the cache entry say: header flags, question
//! echo, each section, OPT. Upstream questions are answered from entries
//! put in the cache first. In-process, no sockets.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use pzdns::answer::{Client, Ctx, Outcome, Transport, answer};
use pzdns::dns::names::{KeyBuf, key_to_name};
use pzdns::resolve::{Source, resolve};
use pzdns::state::Shared;
use pzdns::upstream::cache::{Entry, Key, MAX_KEY_LEN, key_bytes};

fn shared() -> Arc<Shared> {
    crate::support::rules_shared(crate::support::rules_config())
}

/// A query with RD and CD set, the name's letters in alternating case
/// (0x20), and an OPT (payload, DO, one option pzdns ignores: 65001,
/// unassigned) when `edns` is given.
fn query(id: u16, name: &Name, qtype: u16, edns: Option<(u16, bool)>) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x10, 0, 1, 0, 0, 0, 0, 0, edns.is_some() as u8]);
    for (i, label) in name.iter().enumerate() {
        m.push(label.len() as u8);
        m.extend(label.iter().enumerate().map(|(j, b)| if (i + j) % 2 == 0 { b.to_ascii_uppercase() } else { *b }));
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    if let Some((payload, dnssec_ok)) = edns {
        m.extend_from_slice(&[0, 0, 41]);
        m.extend_from_slice(&payload.to_be_bytes());
        m.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 6, 0xfd, 0xe9, 0, 2, 0xab, 0xcd]);
    }
    m
}

/// Decodes a response as a strict client would: every byte accounted for.
pub fn decode_strict(bytes: &[u8]) -> Result<Message, String> {
    let mut d = BinDecoder::new(bytes);
    let m = Message::read(&mut d).map_err(|e| e.to_string())?;
    if !d.is_empty() {
        return Err(format!("{} bytes after the last record", d.len()));
    }
    Ok(m)
}

/// Answers in process with the clock at `now`; a question that would
/// wait on an upstream is a failure here (the cache is seeded).
fn ask(shared: &Shared, client: &Client, q: &[u8], now: Instant) -> Option<Vec<u8>> {
    let snap = shared.snapshot.load();
    let ctx = Ctx { snap: &snap, cache: &shared.forwarder.cache, metrics: &shared.metrics, now };
    let mut out = Vec::new();
    match answer(&ctx, client, q, &mut out) {
        Outcome::Done(_) => Some(out),
        Outcome::Drop | Outcome::Silent(_) => None,
        Outcome::Wait(p) => panic!("{} {:?} went upstream though the cache is seeded", p.name, p.qtype),
    }
}

/// Puts an answer for every upstream question the fixture can ask in the
/// cache: a CNAME then an A for type A, NXDOMAIN with an SOA otherwise;
/// with DO=1 an additional record too.
fn seed_cache(shared: &Shared, names: &[Name], types: &[RecordType]) {
    let snap = shared.snapshot.load();
    for src in SOURCES {
        for listener in [0, 1] {
            let view = snap.select_view(Some(listener), src.parse::<SocketAddr>().unwrap().ip()).0;
            for n in names {
                for &t in types {
                    let Some(up) = resolve(&snap, view, n, t, false).upstream else { continue };
                    let (_, route) = snap.upstreams_for(up.route);
                    let target = Name::from_ascii("pub.example.net.").unwrap();
                    let soa = Record::from_rdata(
                        Name::from_ascii("example.net.").unwrap(),
                        900,
                        RData::SOA(SOA::new(target.clone(), target.clone(), 7, 1, 1, 1, 300)),
                    );
                    let (rcode, answers, authorities) = if t == RecordType::A {
                        let c = Record::from_rdata(up.name.clone(), 120, RData::CNAME(CNAME(target.clone())));
                        (ResponseCode::NoError, vec![c, Record::from_rdata(target.clone(), 60, RData::A(A::new(192, 0, 2, 7)))], vec![soa])
                    } else {
                        (ResponseCode::NXDomain, vec![], vec![soa])
                    };
                    let glue = vec![Record::from_rdata(Name::from_ascii("ns.example.net.").unwrap(), 300, RData::A(A::new(192, 0, 2, 53)))];
                    for dnssec_ok in [false, true] {
                        let mut kb = [0u8; MAX_KEY_LEN];
                        let key = Key::from(key_bytes(&mut kb, KeyBuf::new(&up.name).key(), t, dnssec_ok, route));
                        let e = Entry::new(rcode, answers.clone(), authorities.clone(), glue.clone(), dnssec_ok, Duration::from_secs(30));
                        shared.forwarder.cache.insert(key, Arc::new(e));
                    }
                }
            }
        }
    }
}

const SOURCES: [&str; 6] =
    ["127.1.0.5:5300", "127.1.2.9:5300", "127.2.0.5:5300", "127.130.0.5:5300", "127.0.0.1:5300", "[2001:db8:a::5]:5300"];

/// What the response to `q` must hold, from `resolve()` and the cache.
struct Expected {
    rcode: ResponseCode,
    aa: bool,
    ra: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

fn expected(shared: &Shared, listener: usize, src: SocketAddr, name: &Name, t: RecordType, dnssec_ok: bool, now: Instant) -> Expected {
    let snap = shared.snapshot.load();
    let view = snap.select_view(Some(listener), src.ip()).0;
    let res = resolve(&snap, view, name, t, false);
    let mut e = Expected {
        rcode: res.rcode,
        aa: res.authoritative,
        ra: res.source != Source::Refused,
        answers: res.answers.clone(),
        authorities: res.authority.iter().map(|r| (*r).clone()).collect(),
        additionals: vec![],
    };
    if let Some(up) = &res.upstream {
        let (_, route) = snap.upstreams_for(up.route);
        let mut kb = [0u8; MAX_KEY_LEN];
        let key = key_bytes(&mut kb, KeyBuf::new(&up.name).key(), t, dnssec_ok, route);
        let entry = shared.forwarder.cache.get(key, now).expect("seeded");
        e.answers.extend(entry.aged(now, &entry.answers()));
        e.authorities.extend(entry.aged(now, &entry.authorities()));
        e.additionals = entry.aged(now, &entry.additionals());
        e.rcode = entry.rcode;
        // Only answers wholly from local data are authoritative.
        e.aa = false;
    }
    e
}

/// Compares a response with what is expected of it; `full` is the same
/// answer without a size limit (TCP), for the truncation rule.
fn compare(query: &[u8], resp: &[u8], full: &[u8], exp: &Expected, edns: Option<(u16, bool)>, limit: usize, ctx: &str) -> bool {
    let m = decode_strict(resp).unwrap_or_else(|e| panic!("{ctx}: response does not decode: {e}"));
    assert!(resp.len() <= limit, "{ctx}: {} bytes over the limit {limit}", resp.len());
    let question = &query[12..12 + pzdns::dns::record::name_len(&query[12..]) + 4];
    assert!(resp[12..].starts_with(question), "{ctx}: question echoed byte for byte");
    assert_eq!(m.queries.len(), 1, "{ctx}: one question");
    let h = &m.metadata;
    assert_eq!(h.id, u16::from_be_bytes([query[0], query[1]]), "{ctx}: id");
    assert_eq!(h.message_type, hickory_proto::op::MessageType::Response, "{ctx}: QR");
    assert!(h.recursion_desired && h.checking_disabled, "{ctx}: RD and CD copied");
    assert_eq!(h.authoritative, exp.aa, "{ctx}: AA");
    assert_eq!(h.recursion_available, exp.ra, "{ctx}: RA");
    assert_eq!(h.response_code, exp.rcode, "{ctx}: rcode");
    if h.truncation {
        assert!(m.answers.is_empty() && m.authorities.is_empty(), "{ctx}: a truncated response carries the question only");
        assert!(full.len() > limit, "{ctx}: truncated though the whole answer ({} bytes) fits in {limit}", full.len());
    } else {
        assert_eq!(m.answers, exp.answers, "{ctx}: answers");
        assert_eq!(m.authorities, exp.authorities, "{ctx}: authority");
        // Additional data is optional (RFC 2181 §9): left out, not truncated.
        assert!(m.additionals.iter().all(|r| exp.additionals.contains(r)), "{ctx}: additional");
        if resp.len() + 60 < limit {
            assert_eq!(m.additionals, exp.additionals, "{ctx}: additional, with room for it");
        }
    }
    assert_eq!(
        m.edns.as_ref().map(|e| (e.max_payload(), e.version(), e.flags().dnssec_ok)),
        edns.map(|(p, d)| (p.clamp(512, 1232), 0, d)),
        "{ctx}: OPT"
    );
    h.truncation
}

#[test]
fn every_answer_is_what_the_rules_and_the_cache_say() {
    let shared = shared();
    let snap = shared.snapshot.load_full();
    let mut names: BTreeSet<Name> = BTreeSet::new();
    for z in &snap.zones {
        for (k, _) in z.nodes.iter() {
            let n = key_to_name(k);
            names.insert(Name::from_ascii(format!("child.{n}")).unwrap());
            if n.is_wildcard() {
                names.insert(Name::from_ascii(format!("a.b{}", &n.to_ascii()[1..])).unwrap());
            } else {
                names.insert(n);
            }
        }
    }
    for extra in ["outside.example.org.", "db.corp.example.", "x.shared.example.", "com.", "."] {
        names.insert(Name::from_ascii(extra).unwrap());
    }
    let names: Vec<Name> = names.into_iter().collect();
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::CNAME,
        RecordType::MX,
        RecordType::TXT,
        RecordType::SOA,
        RecordType::NS,
        RecordType::ANY,
        RecordType::SRV,
        RecordType::Unknown(999),
    ];
    seed_cache(&shared, &names, &types);

    let now = Instant::now();
    let mut total = 0;
    let mut seen = BTreeSet::new();
    for src in SOURCES {
        let src: SocketAddr = src.parse().unwrap();
        for listener in [0, 1] {
            for n in &names {
                for t in types {
                    for edns in [None, Some((4096, false)), Some((1232, true)), Some((100, false))] {
                        total += 1;
                        let q = query(total as u16, n, u16::from(t), edns);
                        let exp = expected(&shared, listener, src, n, t, edns.is_some_and(|e| e.1), now);
                        let tcp = Client { listener, src, proxy: None, transport: Transport::Tcp };
                        let full = ask(&shared, &tcp, &q, now).expect("answered over TCP");
                        let ctx = format!("{n} {t} from {src} on listener {listener}, EDNS {edns:?}, TCP");
                        compare(&q, &full, &full, &exp, edns, 65535, &ctx);
                        let udp = Client { transport: Transport::Udp, ..tcp };
                        let resp = ask(&shared, &udp, &q, now).expect("answered over UDP");
                        let limit = edns.map_or(512, |(p, _)| p.clamp(512, 1232)) as usize;
                        let ctx = format!("{n} {t} from {src} on listener {listener}, EDNS {edns:?}, UDP");
                        let tc = compare(&q, &resp, &full, &exp, edns, limit, &ctx);
                        let m = decode_strict(&resp).unwrap();
                        seen.insert((format!("{:?}", m.metadata.response_code), exp.aa, !exp.additionals.is_empty(), tc));
                    }
                }
            }
        }
    }
    println!("{total} queries compared; outcomes (rcode, AA, additional, TC): {seen:?}");
    for (rcode, aa) in [("NoError", true), ("NXDomain", true), ("NoError", false), ("NXDomain", false), ("Refused", false)] {
        assert!(seen.iter().any(|(r, a, _, _)| r == rcode && *a == aa), "no {rcode} AA={aa} answer was compared: {seen:?}");
    }
    assert!(seen.iter().any(|(_, _, add, _)| *add), "no answer with an additional section was compared");
    assert!(seen.iter().any(|(_, _, _, tc)| *tc), "no truncated answer was compared");
}

fn udp(src: &str) -> Client {
    Client { listener: 0, src: format!("{src}:5300").parse().unwrap(), proxy: None, transport: Transport::Udp }
}

/// Bytes of the OPT record `query` adds.
const OPT_LEN: usize = 17;

/// The header rules need no data: FORMERR, NOTIMP, BADVERS, REFUSED, and
/// silence for responses and runts.
#[test]
fn header_rules_answer_without_data() {
    let shared = shared();
    let now = Instant::now();
    let www = Name::from_ascii("www.example.test.").unwrap();
    let plain = query(7, &www, 1, Some((1232, false)));
    let question = plain[12..plain.len() - OPT_LEN].to_vec();
    let check = |q: &[u8], rcode: u16, echo: bool, what: &str| {
        let r = ask(&shared, &udp("127.1.0.5"), q, now).unwrap_or_else(|| panic!("{what}: no reply"));
        let m = decode_strict(&r).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(m.metadata.id, 7, "{what}");
        let rc = u16::from(m.metadata.response_code);
        assert_eq!(rc, rcode, "{what}: rcode");
        let echoed = q.get(12..12 + question.len()).is_some_and(|x| r[12..].starts_with(x));
        assert_eq!(echoed, echo, "{what}: question echoed: {echo}");
        assert!(m.answers.is_empty() && m.authorities.is_empty(), "{what}: no records");
        m
    };
    let mut two = plain.clone();
    two[5] = 2;
    two.splice(12 + question.len()..12 + question.len(), question.iter().copied());
    let m = check(&two, 1, false, "two questions");
    assert!(m.edns.is_some(), "OPT echoed on FORMERR");
    let mut notify = plain.clone();
    notify[2] = 0x21; // opcode NOTIFY, RD
    notify[3] = 0x10; // CD
    let m = check(&notify, 4, true, "opcode NOTIFY");
    assert!(!m.metadata.recursion_desired && !m.metadata.checking_disabled, "RD and CD are for QUERY only");
    assert_eq!(m.metadata.op_code, hickory_proto::op::OpCode::Notify, "the opcode is echoed");
    let mut v1 = plain.clone();
    let n = v1.len();
    v1[n - OPT_LEN + 6] = 1; // OPT version 1
    let m = check(&v1, 16, true, "EDNS version 1");
    assert_eq!(m.edns.unwrap().version(), 0, "our version in BADVERS");
    check(&query(7, &www, 252, None), 5, true, "AXFR");
    check(&query(7, &www, 251, None), 5, true, "IXFR");
    let mut chaos = query(7, &www, 16, None);
    let n = chaos.len();
    chaos[n - 1] = 3;
    check(&chaos, 5, true, "class CHAOS");
    let mut compressed = plain[..12].to_vec();
    compressed.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    compressed[11] = 0;
    check(&compressed, 1, false, "compressed question");
    let mut cut = plain.clone();
    cut.truncate(plain.len() - 3);
    let r = ask(&shared, &udp("127.1.0.5"), &cut, now).expect("FORMERR");
    assert_eq!((r.len(), r[3] & 0x0f, r[2] & 0x80), (12, 1, 0x80), "header-only FORMERR");
    let mut response = plain.clone();
    response[2] |= 0x80;
    assert!(ask(&shared, &udp("127.1.0.5"), &response, now).is_none(), "a response is never answered");
    let mut garbage_response = vec![0u8; 12];
    garbage_response[2] = 0x80;
    garbage_response[5] = 9;
    assert!(ask(&shared, &udp("127.1.0.5"), &garbage_response, now).is_none(), "nor an undecodable one");
    assert!(ask(&shared, &udp("127.1.0.5"), &plain[..11], now).is_none(), "under 12 bytes: nothing");
}

/// An answer too big for a client without EDNS is a well-formed message
/// with TC=1 and the question only (it was once cut mid-record, leaving
/// bytes after the header's counts: "Message has N extra bytes at end").
#[test]
fn a_truncated_answer_is_a_well_formed_message() {
    let shared = shared();
    let many = Name::from_ascii("many.example.test.").unwrap();
    let q = query(9, &many, 1, None);
    let r = ask(&shared, &udp("127.1.0.5"), &q, Instant::now()).unwrap();
    let m = decode_strict(&r).expect("strictly well formed");
    assert!(m.metadata.truncation && m.answers.is_empty(), "TC=1, question only");
    let tcp = Client { transport: Transport::Tcp, ..udp("127.1.0.5") };
    let r = ask(&shared, &tcp, &q, Instant::now()).unwrap();
    assert_eq!(decode_strict(&r).unwrap().answers.len(), 100, "the whole answer over TCP");
}

/// Owner names point at the question (RFC 1035 §4.1.4), so each address
/// takes 16 bytes.
#[test]
fn answer_owner_names_are_compressed() {
    let shared = shared();
    let many = Name::from_ascii("many.example.test.").unwrap();
    let q = query(9, &many, 1, Some((4096, false)));
    let tcp = Client { transport: Transport::Tcp, ..udp("127.1.0.5") };
    let r = ask(&shared, &tcp, &q, Instant::now()).unwrap();
    let at = q.len() - OPT_LEN;
    assert_eq!(&r[at..at + 2], &[0xc0, 12], "the first owner is a pointer to the question");
    assert_eq!(r.len(), q.len() + 100 * 16 - OPT_LEN + 11, "every owner is a 2-byte pointer");
}
