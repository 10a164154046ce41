//! Spoofing resistance of upstream questions: 0x20 (the name's letters in
//! random case, echoed exactly or not taken over UDP), the fallback for an
//! upstream that does not keep the case, clients never seeing the random
//! case, and a flood of unwanted replies making pzdns ask over TCP.

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::support::upstream::{Behavior, FakeUpstream};
use crate::support::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

const ZONES: &str = RULES_ZONES;
const A_VPC: &str = "127.1.0.5";

fn server(up: &FakeUpstream) -> TestServer {
    let cfg = format!("listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n", up.addr);
    TestServer::start(Path::new(ZONES), &cfg)
}

fn ask(s: &TestServer, name: &str) -> Message {
    udp(s.addrs[0], A_VPC, &query(name, RecordType::A, Some(1232)))
}

#[test]
fn upstream_questions_carry_mixed_case() {
    let up = FakeUpstream::start("127.0.0.1");
    let srv = server(&up);
    for i in 0..20 {
        let name = format!("mixed{i}.stale.public.example.");
        assert_eq!(lines(&ask(&srv, &name).answers), [format!("{name} A 192.0.2.53")]);
    }
    let names = up.names.lock().unwrap().clone();
    let mixed = names.iter().filter(|n| n.chars().any(|c| c.is_ascii_uppercase())).count();
    eprintln!("questions as the upstream saw them: {:?}", &names[..3]);
    assert_eq!(names.len(), 20);
    // 30 letters each: all lowercase by chance is 1 in 2^30.
    assert!(mixed >= 19, "{mixed} of 20 questions in mixed case (the clients asked in lowercase)");
    assert!(names.iter().all(|n| n.to_lowercase().starts_with("mixed")), "only the case changes: {names:?}");
}

#[test]
fn a_reply_whose_question_differs_in_case_is_not_taken_over_udp() {
    let up = FakeUpstream::start("127.0.0.1");
    // The right id, the question with every letter's case swapped, 6.6.6.6; then the real reply.
    up.set(Behavior::CaseSpoofFirst);
    let srv = server(&up);
    let r = ask(&srv, "spoof.public.example.");
    assert_eq!(lines(&r.answers), ["spoof.public.example. A 192.0.2.53"], "the forged reply was taken");
    assert_eq!(up.tcp_queries.load(Ordering::Relaxed), 1, "asked again over TCP");
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    assert_eq!(metric(&m, &format!("pzdns_upstream_tcp_retries_total{{upstream=\"{}\",reason=\"case\"}}", up.addr)), 1.0);
}

#[test]
fn an_upstream_that_lowercases_every_reply_still_works() {
    let up = FakeUpstream::start("127.0.0.1");
    up.set(Behavior::LowercaseEcho);
    let srv = server(&up);
    for i in 0..6 {
        let name = format!("lower{i}.stale.public.example.");
        assert_eq!(lines(&ask(&srv, &name).answers), [format!("{name} A 192.0.2.53")], "question {i}");
    }
    // The first question went to TCP, whose reply was lowercased too: from
    // then on the upstream is asked without 0x20, over UDP.
    assert_eq!((up.udp_queries.load(Ordering::Relaxed), up.tcp_queries.load(Ordering::Relaxed)), (6, 1));
    let names = up.names.lock().unwrap().clone();
    assert!(names[2..].iter().all(|n| *n == n.to_lowercase()), "asked without 0x20 after the fallback: {names:?}");
    assert!(srv.stderr().contains("does not keep the case of the question"), "logged: {}", srv.stderr());
}

/// Checks that every name in `m` has, in the labels it shares with
/// `asked`, the case of `asked`, and elsewhere the upstream's data's case
/// (lowercase here): nothing of the random case sent upstream.
fn assert_case_of(m: &Message, asked: &Name) {
    assert!(m.queries[0].name().eq_case(asked), "question {} echoed as {}", asked, m.queries[0].name());
    let mut names: Vec<Name> = Vec::new();
    for r in m.answers.iter().chain(&m.authorities) {
        names.push(r.name.clone());
        match &r.data {
            RData::SOA(soa) => names.extend([soa.mname.clone(), soa.rname.clone()]),
            RData::CNAME(c) => names.push(c.0.clone()),
            _ => {}
        }
    }
    let theirs: Vec<&[u8]> = asked.iter().rev().collect();
    for n in names {
        let mut shared = true;
        for (i, l) in n.iter().rev().enumerate() {
            shared &= theirs.get(i).is_some_and(|t| t.eq_ignore_ascii_case(l));
            let ok = if shared { theirs[i] == l } else { l.iter().all(|b| !b.is_ascii_uppercase()) };
            assert!(ok, "{n} in the response to {asked}: a label in a case nobody asked ({m:?})");
        }
    }
}

#[test]
fn clients_see_their_own_case_never_the_random_one() {
    let up = FakeUpstream::start("127.0.0.1");
    let srv = server(&up);
    let q = |name: &Name| {
        let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(name.clone(), RecordType::A));
        m
    };
    for i in 0..5 {
        // An answer (its owner echoed by the upstream in the case it was asked) ...
        let asked = Name::from_ascii(format!("WwW{i}.Stale.Public.Example.")).unwrap();
        let r = udp(srv.addrs[0], A_VPC, &q(&asked));
        assert_eq!(r.answers.len(), 1);
        assert_case_of(&r, &asked);
        // ... and from the cache, to a client asking in another case.
        let again = Name::from_ascii(format!("www{i}.STALE.public.EXAMPLE.")).unwrap();
        assert_case_of(&udp(srv.addrs[0], A_VPC, &q(&again)), &again);
        // NXDOMAIN: the SOA's owner is a suffix of the name asked.
        let asked = Name::from_ascii(format!("NoWhere{i}.Example.")).unwrap();
        let r = udp(srv.addrs[0], A_VPC, &q(&asked));
        assert_eq!((r.metadata.response_code, r.authorities.len()), (ResponseCode::NXDomain, 1));
        assert_case_of(&r, &asked);
    }
    let names = up.names.lock().unwrap().clone();
    assert!(names.iter().any(|n| n.chars().any(|c| c.is_ascii_uppercase()) && *n != n.to_lowercase()), "0x20 was on: {names:?}");
}

#[test]
fn a_flood_of_unwanted_replies_makes_pzdns_ask_over_tcp() {
    let up = FakeUpstream::start("127.0.0.1");
    // 600 replies with wrong ids, then one with the right id (a spoofer who
    // guessed it), all with 6.6.6.6; the real answer only over TCP.
    up.set(Behavior::UnwantedFlood(600));
    let srv = server(&up);
    let r = ask(&srv, "spoof.public.example.");
    assert_eq!(lines(&r.answers), ["spoof.public.example. A 192.0.2.53"], "a forged answer was taken");
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    let unwanted = metric(&m, &format!("pzdns_upstream_unwanted_replies_total{{upstream=\"{}\"}}", up.addr));
    let events = metric(&m, "pzdns_events_total{event=\"unwanted_replies\"}");
    let distrusted = metric(&m, &format!("pzdns_upstream_tcp_retries_total{{upstream=\"{}\",reason=\"distrusted\"}}", up.addr));
    eprintln!("unwanted replies counted {unwanted}; threshold crossed {events}; over TCP as distrusted {distrusted}");
    assert!(unwanted >= 200.0 && events == 1.0 && distrusted == 1.0, "{unwanted} {events} {distrusted}");
    // While distrusted, new questions to it go over TCP straight away.
    let udp_before = up.udp_queries.load(Ordering::Relaxed);
    assert_eq!(lines(&ask(&srv, "x.stale.public.example.").answers), ["x.stale.public.example. A 192.0.2.53"]);
    assert_eq!(up.udp_queries.load(Ordering::Relaxed), udp_before, "not asked over UDP");
    assert!(srv.stderr().contains("unwanted replies"), "logged naming the upstream: {}", srv.stderr());
}
