//! `resolver.mode: recursive`: pzdns resolving from the root of a public
//! DNS built on loopback (tests/it/support/hierarchy.rs), beside Unbound
//! resolving from the same root hints as the oracle; poisoned glue; the
//! bound on work; private zones still answered locally.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::support::hierarchy::{Hierarchy, default_servers, private_zones, unbound_oracle};
use crate::support::*;

/// rcode and the answer RRsets without TTLs (Unbound ages what it cached),
/// sorted. Asked up to three times, 5 s each, as a stub resolver would: on a
/// loaded machine a first reply can take longer than one wait.
fn seen(server: SocketAddr, name: &str, qtype: RecordType) -> (ResponseCode, Vec<String>) {
    seen_with(server, name, qtype, false)
}

/// [`seen`], with the DO bit as given.
fn seen_with(server: SocketAddr, name: &str, qtype: RecordType, dnssec_ok: bool) -> (ResponseCode, Vec<String>) {
    let mut q = query(name, qtype, Some(1232));
    if let Some(e) = q.edns.as_mut() {
        e.set_dnssec_ok(dnssec_ok);
    }
    let q = q.to_vec().unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = vec![0u8; 65535];
    for _ in 0..3 {
        sock.send_to(&q, server).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let m = Message::from_vec(&buf[..n]).unwrap();
            return (m.metadata.response_code, rrsets(&m));
        }
    }
    panic!("{server}: no reply to {name} {qtype} in three tries");
}

fn rrsets(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| format!("{} {} {}", r.name.to_lowercase(), r.record_type(), r.data)).collect();
    v.sort();
    v
}

/// pzdns in recursive mode from the hierarchy's hints; `extra` is added
/// to its config (with no `upstreams:` in it, there are none).
fn pzdns_recursive(h: &Hierarchy, extra: &str) -> TestServer {
    let zones = private_zones(&h.dir);
    let upstreams = if extra.lines().any(|l| l.starts_with("upstreams:")) { "" } else { "upstreams: []\n" };
    TestServer::start(
        &zones,
        &format!(
            "listen:\n  - address: 127.0.0.1:0\n{upstreams}zones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\nresolver:\n  mode: recursive\n  root_hints: {}\n  dnssec: off\n{extra}",
            h.root_hints.display()
        ),
    )
}

/// The corpus: every shape of the hierarchy, names × types.
const CORPUS: &[(&str, RecordType)] = &[
    ("a.test.", RecordType::TXT),
    ("a.test.", RecordType::MX),
    ("a.test.", RecordType::NS),
    ("a.test.", RecordType::DS),
    ("g.test.", RecordType::DS),
    ("test.", RecordType::TXT),
    ("mail.a.test.", RecordType::A),
    ("www2.a.test.", RecordType::A),
    ("www2.a.test.", RecordType::AAAA),
    ("www2.a.test.", RecordType::TXT),
    ("in.a.test.", RecordType::A),
    ("www.a.test.", RecordType::A),
    ("www.a.test.", RecordType::CNAME),
    ("alias.b.other.", RecordType::A),
    ("plain.b.other.", RecordType::A),
    ("dangling.a.test.", RecordType::A),
    ("nope.a.test.", RecordType::A),
    ("x.y.nope.a.test.", RecordType::A),
    ("x.wild.a.test.", RecordType::A),
    ("x.wild.a.test.", RecordType::AAAA),
    ("deep.ent.a.test.", RecordType::A),
    ("ent.a.test.", RecordType::A),
    ("v6.a.test.", RecordType::AAAA),
    ("host.g.test.", RecordType::A),
    ("g.test.", RecordType::TXT),
    ("www.lame.test.", RecordType::A),
    ("www.sub.evil.test.", RecordType::A),
    ("ns.a.test.", RecordType::A),
    ("nothing.test.", RecordType::A),
    ("nosuchtld.", RecordType::A),
    ("b.other.", RecordType::SOA),
];

/// For the corpus, pzdns resolving from the root gives the rcode and the
/// answer RRsets Unbound gives, cold, then from its cache, then with DO=1
/// (another cache key: resolved again, authorities asked with DO=1); the
/// table is printed (`--nocapture`).
#[test]
fn recursive_answers_match_unbound() {
    let Some(h) = Hierarchy::start(&default_servers()) else { return };
    let Some((_unbound, unb)) = unbound_oracle(&h) else { return };
    let pz = pzdns_recursive(&h, "");
    let pzs = pz.addrs[0];
    let mut table = String::from("name | type | pzdns | Unbound\n");
    let mut differ = Vec::new();
    for pass in ["cold", "cached", "DO=1"] {
        for &(name, qtype) in CORPUS {
            let dnssec_ok = pass == "DO=1";
            let (p, u) = (seen_with(pzs, name, qtype, dnssec_ok), seen_with(unb, name, qtype, dnssec_ok));
            if pass == "cold" {
                table.push_str(&format!("{name} | {qtype} | {:?} {:?} | {:?} {:?}\n", p.0, p.1, u.0, u.1));
            }
            if p != u {
                differ.push(format!("{pass}: {name} {qtype}: pzdns {p:?}, Unbound {u:?}"));
            }
        }
    }
    eprintln!("{table}");
    assert!(differ.is_empty(), "pzdns and Unbound differ:\n{}", differ.join("\n"));
    // Not vacuous: the chain across three zones, the lame and the glueless delegation answer.
    assert_eq!(
        seen(pzs, "www.a.test.", RecordType::A),
        (
            ResponseCode::NoError,
            vec![
                "alias.b.other. CNAME host.g.test.".to_string(),
                "host.g.test. A 192.0.2.7".to_string(),
                "www.a.test. CNAME alias.b.other.".to_string()
            ]
        )
    );
    assert_eq!(seen(pzs, "www.lame.test.", RecordType::A), (ResponseCode::NoError, vec!["www.lame.test. A 192.0.2.40".to_string()]));
    assert_eq!(seen(pzs, "nope.a.test.", RecordType::A).0, ResponseCode::NXDomain);
    // An answer too big for UDP: the authority truncates, pzdns asks it again over TCP.
    let over_tcp = |server| rrsets(&tcp(server, "127.0.0.1", &query("big.a.test.", RecordType::TXT, Some(1232))));
    let big = over_tcp(pzs);
    assert_eq!(big.len(), 12);
    assert_eq!(big, over_tcp(unb));
    // A second name under a zone does not start at the root: the delegation path is cached.
    let (_, explain) = http(pz.admin.unwrap(), "GET", "/explain?vpc=vpc-lo&name=mail.a.test&type=A");
    assert!(
        explain.contains("resolve mail.a.test. A from the root servers") && explain.contains("a.test. → ns.a.test. 127.53.0.105"),
        "{explain}"
    );
    let (_, metrics) = http(pz.admin.unwrap(), "GET", "/metrics");
    assert!(metric(&metrics, "pzdns_authority_queries_total{outcome=\"referral\"}") >= 3.0, "{metrics}");
    assert!(metric(&metrics, "pzdns_upstream_tcp_retries_total{upstream=\"authority\",reason=\"truncated\"}") >= 1.0, "{metrics}");
}

/// Authority queries spent on a resolution, from the histogram's sum.
fn authority_queries(pz: &TestServer) -> f64 {
    let (_, metrics) = http(pz.admin.unwrap(), "GET", "/metrics");
    metric(&metrics, "pzdns_authority_queries_per_resolution_sum")
}

/// The delegations met are cached: a second name under a zone costs one
/// query (to the zone's server), not a walk from the root.
#[test]
fn a_second_name_under_a_zone_does_not_start_at_the_root() {
    let Some(h) = Hierarchy::start(&default_servers()) else { return };
    let pz = pzdns_recursive(&h, "");
    let pzs = pz.addrs[0];
    assert_eq!(seen(pzs, "mail.a.test.", RecordType::A).0, ResponseCode::NoError);
    let cold = authority_queries(&pz);
    assert!(cold >= 3.0, "root, test., a.test.: {cold}");
    assert_eq!(seen(pzs, "www2.a.test.", RecordType::TXT).1, ["www2.a.test. TXT two"]);
    assert_eq!(authority_queries(&pz) - cold, 1.0);
}

/// A name found not to be a zone cut on the way (a wildcard's parent, an
/// empty non-terminal) is remembered: each new name under it costs one
/// query, as in Unbound, not a minimised one and then the full one.
#[test]
fn a_name_seen_not_to_be_a_cut_is_not_asked_again() {
    let Some(h) = Hierarchy::start(&default_servers()) else { return };
    let pz = pzdns_recursive(&h, "");
    let pzs = pz.addrs[0];
    assert_eq!(seen(pzs, "one.wild.a.test.", RecordType::A).1, ["one.wild.a.test. A 192.0.2.9"]);
    let cold = authority_queries(&pz);
    for (i, name) in ["two.wild.a.test.", "three.wild.a.test.", "x.deep.ent.a.test."].iter().enumerate() {
        let before = authority_queries(&pz);
        seen(pzs, name, RecordType::A);
        // `ent.a.test.` is new to the last name: asked once, minimised.
        let spent = if i == 2 { 3.0 } else { 1.0 };
        assert_eq!(authority_queries(&pz) - before, spent, "{name} (cold: {cold})");
    }
    // Known non-cuts again: one query for the full name.
    let before = authority_queries(&pz);
    seen(pzs, "y.deep.ent.a.test.", RecordType::A);
    assert_eq!(authority_queries(&pz) - before, 1.0);
}

/// Every query to an authority comes from a new source port with a new
/// id, RD=0, the name in random case (0x20); a server that answers
/// FORMERR to EDNS is asked again without it, and then without it at once.
#[test]
fn authority_queries_are_fresh_and_edns_falls_back() {
    let Some(h) = Hierarchy::start(&default_servers()) else { return };
    let pz = pzdns_recursive(&h, "");
    let pzs = pz.addrs[0];
    let names = ["www.noedns.test.", "mail.noedns.test.", "ftp.noedns.test.", "imap.noedns.test."];
    for name in names {
        assert_eq!(seen(pzs, name, RecordType::A), (ResponseCode::NoError, vec![format!("{name} A 192.0.2.112")]));
    }
    let got: Vec<(SocketAddr, Message, Vec<u8>)> =
        h.noedns_queries.lock().unwrap().iter().map(|(from, b)| (*from, Message::from_vec(b).unwrap(), b.clone())).collect();
    let with_edns = got.iter().filter(|(_, m, _)| m.edns.is_some()).count();
    assert_eq!(with_edns, 1, "asked with EDNS once, then remembered: {got:?}");
    assert_eq!(got.len(), names.len() + 1);
    let mut ports: Vec<u16> = got.iter().map(|(f, _, _)| f.port()).collect();
    let mut ids: Vec<u16> = got.iter().map(|(_, m, _)| m.metadata.id).collect();
    ports.dedup();
    ids.sort();
    ids.dedup();
    assert_eq!((ports.len(), ids.len()), (got.len(), got.len()), "a new port and id each time");
    assert!(got.iter().all(|(_, m, _)| !m.metadata.recursion_desired));
    assert!(got.iter().any(|(_, _, b)| b[12..].iter().any(u8::is_ascii_uppercase)), "0x20: some letters in upper case");
}

/// `forward_zones` still forward in recursive mode; `upstreams` are not
/// used (nor shown in the upstream metrics).
#[test]
fn forward_zones_still_forward_in_recursive_mode() {
    let Some(h) = Hierarchy::start(&default_servers()) else { return };
    let up = crate::support::upstream::FakeUpstream::start("127.0.0.1");
    let unused = crate::support::upstream::FakeUpstream::start("127.0.0.1");
    let pz = pzdns_recursive(
        &h,
        &format!("upstreams: [{}]\nforward_zones:\n  - domain: corp.example\n    upstreams: [{}]\n", unused.addr, up.addr),
    );
    let pzs = pz.addrs[0];
    assert_eq!(seen(pzs, "db.corp.example.", RecordType::A), (ResponseCode::NoError, vec!["db.corp.example. A 10.99.0.1".to_string()]));
    assert_eq!(up.queries(), 1);
    assert_eq!(seen(pzs, "mail.a.test.", RecordType::A).1, ["mail.a.test. A 192.0.2.25"]);
    assert_eq!(up.queries(), 1, "the rest from the root");
    assert_eq!(unused.queries(), 0);
    let (_, metrics) = http(pz.admin.unwrap(), "GET", "/metrics");
    assert!(metrics.contains(&format!("upstream=\"{}\"", up.addr)), "{metrics}");
    assert!(!metrics.contains(&format!("upstream=\"{}\"", unused.addr)), "{metrics}");
}

/// An authority that offers glue for a name outside its zone (the server
/// of `evil.test.` refers `sub.evil.test.` to `ns.a.test.` with an address
/// for it that leads to 6.6.6.6): the glue is not used, `ns.a.test.` is
/// resolved where it belongs, and its cached address is not poisoned.
#[test]
fn out_of_bailiwick_glue_is_not_used() {
    let Some(h) = Hierarchy::start(&default_servers()) else { return };
    let pz = pzdns_recursive(&h, "");
    let pzs = pz.addrs[0];
    assert_eq!(
        seen(pzs, "www.sub.evil.test.", RecordType::A),
        (ResponseCode::NoError, vec!["www.sub.evil.test. A 192.0.2.80".to_string()])
    );
    assert_eq!(seen(pzs, "ns.a.test.", RecordType::A), (ResponseCode::NoError, vec!["ns.a.test. A 127.53.0.105".to_string()]));
}

/// A delegation loop: loop1.test NS ns.loop2.test, loop2.test NS
/// ns.loop1.test, no glue anywhere. The bound on glueless depth ends it
/// in SERVFAIL with an EDE, quickly, and the server answers on; so does
/// a zone whose every server is unreachable.
#[test]
fn a_delegation_loop_ends_in_servfail_quickly() {
    let Some(h) = Hierarchy::start(&default_servers()) else { return };
    let pz = pzdns_recursive(&h, "");
    let pzs = pz.addrs[0];
    let t = Instant::now();
    let m = udp(pzs, "127.0.0.1", &query("www.loop1.test.", RecordType::A, Some(1232)));
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let ede = m.edns.as_ref().and_then(|e| e.options().get(hickory_proto::rr::rdata::opt::EdnsCode::from(15)));
    assert!(ede.is_some(), "an EDE says why: {m:?}");
    assert_eq!(seen(pzs, "www2.a.test.", RecordType::A).0, ResponseCode::NoError);
    // Every server of a zone unreachable: SERVFAIL (EDE 22) at once. Unbound
    // gives no reply within 30 s here, so this name is not in the oracle's corpus.
    let t = Instant::now();
    let m = udp(pzs, "127.0.0.1", &query("www.alllame.test.", RecordType::A, Some(1232)));
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.edns.as_ref().and_then(|e| e.options().get(hickory_proto::rr::rdata::opt::EdnsCode::from(15))).is_some());
}

/// Private zones are answered locally in recursive mode, and a public
/// CNAME into a private zone ends in the private data, as in forward mode.
#[test]
fn private_zones_are_local_in_recursive_mode() {
    let Some(h) = Hierarchy::start(&default_servers()) else { return };
    let pz = pzdns_recursive(&h, "");
    let pzs = pz.addrs[0];
    let m = udp(pzs, "127.0.0.1", &query("host.priv.test.", RecordType::A, Some(1232)));
    assert!(m.metadata.authoritative);
    assert_eq!(rrsets(&m), ["host.priv.test. A 10.1.1.1"]);
    let m = udp(pzs, "127.0.0.1", &query("toprivate.a.test.", RecordType::A, Some(1232)));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.authoritative, "part of it is public");
    assert_eq!(rrsets(&m), ["host.priv.test. A 10.1.1.1", "toprivate.a.test. CNAME host.priv.test."]);
}

/// A server whose first reply is lost (it drops every other query): asked
/// again, longer, before the name fails; the answer comes within the bound.
#[test]
fn a_lost_reply_is_asked_again() {
    let Some(h) = Hierarchy::start(&default_servers()) else { return };
    let pz = pzdns_recursive(&h, "");
    let t = Instant::now();
    assert_eq!(
        seen(pz.addrs[0], "www.flaky.test.", RecordType::A),
        (ResponseCode::NoError, vec!["www.flaky.test. A 192.0.2.113".to_string()])
    );
    assert!(t.elapsed() < Duration::from_millis(2500), "took {:?}", t.elapsed());
}

/// `resolver.mode` changes on a reload, both ways, without a restart.
#[test]
fn the_mode_changes_on_reload() {
    let Some(h) = Hierarchy::start(&default_servers()) else { return };
    let pz = pzdns_recursive(&h, "");
    let cfg = pz.dir.join("pzdns.yaml");
    let recursive = std::fs::read_to_string(&cfg).unwrap();
    let reload = |text: &str| {
        std::fs::write(&cfg, text).unwrap();
        let (code, body) = http(pz.admin.unwrap(), "POST", "/reload");
        assert_eq!(code, 200, "{body}");
    };
    reload(&recursive.replace("mode: recursive", "mode: forward"));
    let m = udp(pz.addrs[0], "127.0.0.1", &query("mail.a.test.", RecordType::A, Some(1232)));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "forward mode with no upstreams");
    reload(&recursive);
    assert_eq!(seen(pz.addrs[0], "www2.a.test.", RecordType::TXT).1, ["www2.a.test. TXT two"]);
}

/// dnstap records the exchanges with authorities as RESOLVER_QUERY and
/// RESOLVER_RESPONSE (dnstap-read's RQ, RR), naming the server asked.
#[test]
fn dnstap_shows_authority_exchanges_as_resolver_messages() {
    let Some(reader) = tool("dnstap-read") else { return };
    let Some(h) = Hierarchy::start(&default_servers()) else { return };
    let file = h.dir.join("pzdns.dnstap");
    let mut pz = pzdns_recursive(&h, &format!("dnstap:\n  file: {}\n", file.display()));
    assert_eq!(seen(pz.addrs[0], "mail.a.test.", RecordType::A).0, ResponseCode::NoError);
    assert!(pz.stop().success(), "{}", pz.stderr());
    let out = std::process::Command::new(reader).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    // Each server on the way: the root (minimised: test/IN/A), test. (a.test/IN/A), a.test. (the name).
    for (server, question) in [("127.53.0.101:53", "test/in/a"), ("127.53.0.105:53", "mail.a.test/in/a")] {
        for kind in [" rq ", " rr "] {
            assert!(
                text.lines().any(|l| l.contains(kind) && l.contains(server) && l.contains(question)),
                "{kind}{server} {question}:\n{text}"
            );
        }
    }
    assert!(!text.contains(" fq "), "no forwarder messages in recursive mode:\n{text}");
}

/// A server that refers a zone to itself (selfref.test. is delegated to
/// ns1.test., a server of test., which answers with the same delegation)
/// is lame; with no other server the name is SERVFAIL (EDE 22), as BIND
/// 9.18 resolving from the same hints answers. Unbound answers NOERROR
/// with nothing in it (a NODATA that would be cached as "no such data"),
/// so this name is not in the Unbound corpus.
#[test]
fn a_server_that_refers_a_zone_to_itself_is_lame() {
    let Some(named) = tool("named") else { return };
    let Some(h) = Hierarchy::start(&default_servers()) else { return };
    let pz = pzdns_recursive(&h, "");
    let m = udp(pz.addrs[0], "127.0.0.1", &query("www.selfref.test.", RecordType::A, Some(1232)));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.edns.as_ref().and_then(|e| e.options().get(hickory_proto::rr::rdata::opt::EdnsCode::from(15))).is_some());
    let d = h.dir.join("named");
    std::fs::create_dir_all(d.join("peer")).unwrap();
    let port = crate::interop::free_udp_port("127.0.0.1");
    std::fs::write(
        d.join("named.conf"),
        format!(
            "options {{ directory \"{}\"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; recursion yes; allow-query {{ any; }}; dnssec-validation no; pid-file none; }};\nzone \".\" {{ type hint; file \"{}\"; }};\n",
            d.display(),
            h.root_hints.display()
        ),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _bind = crate::interop::Peer::start(
        std::process::Command::new(named).args(["-g", "-u", "root", "-c"]).arg(d.join("named.conf")),
        d.join("peer"),
        addr,
    );
    assert_eq!(seen(addr, "www.selfref.test.", RecordType::A), (ResponseCode::ServFail, vec![]), "BIND");
    assert_eq!(seen(addr, "www2.a.test.", RecordType::A), seen(pz.addrs[0], "www2.a.test.", RecordType::A), "BIND resolves the rest");
}
