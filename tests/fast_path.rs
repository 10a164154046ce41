//! The UDP fast path answers exactly what the general path answers: for
//! every name of the rules fixture (and children, wildcard matches, names
//! outside every zone), many types, every kind of client and several EDNS
//! shapes, both responses decode to the same header, question, sections
//! and OPT. Upstream questions are answered from entries put in the cache
//! first, so the cache-hit path is compared too. In-process, no sockets.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use pzdns::config::ServerConfig;
use pzdns::metrics::Metrics;
use pzdns::resolve::resolve;
use pzdns::server::{Shared, fast_path, handler::answer_raw};
use pzdns::snapshot::Snapshot;
use pzdns::snapshot::names::{KeyBuf, key_to_name};
use pzdns::upstream::cache::{Entry, Key, MAX_KEY_LEN, key_bytes};

fn shared() -> Arc<Shared> {
    let cfg = ServerConfig::load_file(Path::new("tests/fixtures/rules/pzdns.yaml")).expect("fixture config loads");
    let snap = Snapshot::load(&cfg, 1).unwrap_or_else(|d| panic!("fixture loads:\n{d}"));
    Shared::new(cfg, snap, Arc::new(Metrics::new()))
}

/// A query with the name's letters in alternating case (0x20), and an
/// OPT (payload, DO, one option) when `edns` is given.
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
        m.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 6, 0, 10, 0, 2, 0xab, 0xcd]);
    }
    m
}

/// Puts an answer for every upstream question the fixture can ask in the
/// cache: a CNAME then an A for type A, NODATA with an SOA otherwise.
fn seed_cache(shared: &Shared, names: &[Name], types: &[RecordType]) {
    let snap = shared.snapshot.load();
    for src in SOURCES {
        let view = snap.view_for(None, src.parse::<SocketAddr>().unwrap().ip()).0;
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
                for dnssec_ok in [false, true] {
                    let mut kb = [0u8; MAX_KEY_LEN];
                    let key = Key::from(key_bytes(&mut kb, KeyBuf::new(&up.name).key(), t, dnssec_ok, route));
                    let e = Entry::new(rcode, answers.clone(), authorities.clone(), vec![], dnssec_ok, Duration::from_secs(30));
                    shared.forwarder.cache.insert(key, Arc::new(e));
                }
            }
        }
    }
}

const SOURCES: [&str; 6] =
    ["127.1.0.5:5300", "127.1.2.9:5300", "127.2.0.5:5300", "127.130.0.5:5300", "127.0.0.1:5300", "[2001:db8:a::5]:5300"];

fn compare(query: &[u8], fast: &[u8], general: &[u8], limit: usize, ctx: &str) {
    let f = Message::from_vec(fast).unwrap_or_else(|e| panic!("{ctx}: fast response does not decode: {e}"));
    let g = Message::from_vec(general).unwrap_or_else(|e| panic!("{ctx}: general response does not decode: {e}"));
    assert!(fast.len() <= limit, "{ctx}: {} bytes over the limit {limit}", fast.len());
    let question = &query[12..12 + pzdns::wire::name_len(&query[12..]) + 4];
    assert!(fast[12..].starts_with(question) && general[12..].starts_with(question), "{ctx}: question echoed as received");
    if f.metadata.truncation {
        assert!(general.len() > limit, "{ctx}: truncated though the general answer fits ({} bytes)", general.len());
        assert!(f.answers.is_empty() && f.authorities.is_empty(), "{ctx}: a truncated response carries the question only");
        let mut gm = g.metadata;
        gm.truncation = true;
        assert_eq!(f.metadata, gm, "{ctx}: header");
    } else {
        assert!(general.len() <= limit, "{ctx}: the general path would truncate ({} bytes) but the fast one did not", general.len());
        assert_eq!(f.metadata, g.metadata, "{ctx}: header");
        assert_eq!(f.answers, g.answers, "{ctx}: answers");
        assert_eq!(f.authorities, g.authorities, "{ctx}: authority");
        assert_eq!(f.additionals, g.additionals, "{ctx}: additional");
        assert!(fast.len() <= general.len(), "{ctx}: compression never makes a response longer");
    }
    assert_eq!(f.queries, g.queries, "{ctx}: question");
    assert_eq!(
        f.edns.as_ref().map(|e| (e.max_payload(), e.version(), e.flags().dnssec_ok)),
        g.edns.as_ref().map(|e| (e.max_payload(), e.version(), e.flags().dnssec_ok)),
        "{ctx}: OPT"
    );
}

#[test]
fn fast_path_answers_as_the_general_path_does() {
    let shared = shared();
    let snap = shared.snapshot.load_full();
    let mut names: BTreeSet<Name> = BTreeSet::new();
    for z in &snap.zones {
        for k in z.nodes.keys() {
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

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut out = Vec::new();
    let (mut fast_count, mut total) = (0, 0);
    let mut seen = BTreeSet::new();
    for src in SOURCES {
        let src: SocketAddr = src.parse().unwrap();
        for listener in [0, 1] {
            for n in &names {
                for t in types {
                    for edns in [None, Some((4096, false)), Some((1232, true)), Some((100, false))] {
                        total += 1;
                        let q = query(total as u16, n, u16::from(t), edns);
                        let ctx = format!("{n} {t} from {src} on listener {listener}, EDNS {edns:?}");
                        let Some(a) = fast_path::answer(&shared, &snap, listener, src.ip(), &q, &mut out, Instant::now()) else { continue };
                        fast_count += 1;
                        let general = rt.block_on(answer_raw(&shared, listener, &q, src)).expect("general path answers");
                        let limit = edns.map_or(512, |(p, _)| p.clamp(512, 1232)) as usize;
                        compare(&q, &out, &general, limit, &ctx);
                        let m = Message::from_vec(&out).unwrap();
                        seen.insert((format!("{:?}", m.metadata.response_code), a.source, m.metadata.truncation));
                    }
                }
            }
        }
    }
    println!("{fast_count} of {total} queries took the fast path; outcomes: {seen:?}");
    for (rcode, source) in [
        ("NoError", "zone"),
        ("NoError", "endpoint"),
        ("NXDomain", "zone"),
        ("NoError", "cache"),
        ("NXDomain", "cache"),
        ("Refused", "refused"),
    ] {
        assert!(seen.iter().any(|(r, s, _)| r == rcode && *s == source), "no fast answer {rcode}/{source} was compared: {seen:?}");
    }
    assert!(seen.iter().any(|(_, _, tc)| *tc), "no truncated answer was compared");
    assert!(fast_count * 2 > total, "only {fast_count} of {total} took the fast path");
}

/// What the fast path leaves to the general one.
#[test]
fn fast_path_declines_what_it_does_not_cover() {
    let shared = shared();
    let snap = shared.snapshot.load_full();
    let src = "127.1.0.5".parse().unwrap();
    let mut out = Vec::new();
    let www = Name::from_ascii("www.example.test.").unwrap();
    let plain = query(1, &www, 1, None);
    assert!(fast_path::answer(&shared, &snap, 0, src, &plain, &mut out, Instant::now()).is_some());
    let mut two_questions = plain.clone();
    two_questions[5] = 2;
    let mut chaos = plain.clone();
    let n = chaos.len();
    chaos[n - 1] = 3;
    let mut notify = plain.clone();
    notify[2] = 0x20;
    let badvers = {
        let mut q = query(1, &www, 1, Some((1232, false)));
        let n = q.len();
        q[n - 17 + 6] = 1; // OPT version 1
        q
    };
    for (what, q) in [
        ("two questions", two_questions),
        ("class CHAOS", chaos),
        ("opcode NOTIFY", notify),
        ("EDNS version 1", badvers),
        ("AXFR", query(1, &www, 252, None)),
        ("uncached upstream question", query(1, &Name::from_ascii("nowhere.example.org.").unwrap(), 28, None)),
    ] {
        assert!(fast_path::answer(&shared, &snap, 0, src, &q, &mut out, Instant::now()).is_none(), "{what} takes the general path");
    }
}
