//! The real binary on loopback, queried over UDP and TCP from the sources
//! of different VPCs (SPEC.md §3 and its Protocol paragraph).

use std::net::SocketAddr;
use std::path::Path;

use crate::support::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

const ZONES: &str = RULES_ZONES;
const A_VPC: &str = "127.1.0.5";
const B_VPC: &str = "127.2.0.5";
const C_VPC: &str = "127.130.0.5";
const UNKNOWN: &str = "127.0.0.1";

fn server() -> TestServer {
    TestServer::start_default(Path::new(ZONES), "vpc-b", "")
}

fn flags(m: &Message) -> String {
    let h = &m.metadata;
    let mut f = vec!["qr"];
    if h.authoritative {
        f.push("aa");
    }
    if h.truncation {
        f.push("tc");
    }
    if h.recursion_desired {
        f.push("rd");
    }
    if h.recursion_available {
        f.push("ra");
    }
    f.join(" ")
}

/// One expected exchange: every section, rcode and flags.
struct Case {
    from: &'static str,
    name: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    flags: &'static str,
    answer: &'static [&'static str],
    authority: &'static [RecordType],
}

fn check(s: SocketAddr, tcp_too: bool, c: &Case) {
    let q = query(c.name, c.qtype, Some(1232));
    let mut replies = vec![("udp", udp(s, c.from, &q))];
    if tcp_too {
        replies.push(("tcp", tcp(s, c.from, &q)));
    }
    for (proto, r) in replies {
        let ctx = format!("{} {} from {} over {proto}", c.name, c.qtype, c.from);
        assert_eq!(r.metadata.message_type, MessageType::Response, "{ctx}");
        assert_eq!(r.metadata.response_code, c.rcode, "rcode of {ctx}");
        assert_eq!(flags(&r), c.flags, "flags of {ctx}");
        assert_eq!(lines(&r.answers), c.answer, "answer of {ctx}");
        let auth: Vec<RecordType> = r.authorities.iter().map(|a| a.record_type()).collect();
        assert_eq!(auth, c.authority, "authority of {ctx}");
        assert!(r.additionals.is_empty(), "additional of {ctx}");
        let e = r.edns.as_ref().expect("OPT echoed");
        assert_eq!((e.max_payload(), e.version()), (1232, 0), "{ctx}");
    }
}

#[test]
fn answers_per_vpc_over_udp_and_tcp() {
    let srv = server();
    let s = srv.addrs[0];
    use RecordType::*;
    const NOERR: ResponseCode = ResponseCode::NoError;
    let cases = [
        // The apex CNAME, asked as CNAME, from a bound VPC.
        Case {
            from: A_VPC,
            name: "ecs.cn-hangzhou.aliyuncs.com.",
            qtype: CNAME,
            rcode: NOERR,
            flags: "qr aa rd ra",
            answer: &["ecs.cn-hangzhou.aliyuncs.com. CNAME popunify-vpc.cn-hangzhou.aliyuncs.com."],
            authority: &[],
        },
        // The same name from vpc-b: its own aliyuncs.com zone, not vpc-a's CNAME.
        Case {
            from: B_VPC,
            name: "ecs.cn-hangzhou.aliyuncs.com.",
            qtype: A,
            rcode: NOERR,
            flags: "qr aa rd ra",
            answer: &["ecs.cn-hangzhou.aliyuncs.com. A 100.100.0.1"],
            authority: &[],
        },
        // Endpoint domain and zonal domain.
        Case {
            from: A_VPC,
            name: "ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com.",
            qtype: A,
            rcode: NOERR,
            flags: "qr aa rd ra",
            answer: &[
                "ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com. A 192.168.1.1",
                "ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com. A 192.168.2.2",
            ],
            authority: &[],
        },
        Case {
            from: A_VPC,
            name: "ep-1-cn-hangzhou-j.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com.",
            qtype: A,
            rcode: NOERR,
            flags: "qr aa rd ra",
            answer: &["ep-1-cn-hangzhou-j.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com. A 192.168.1.1"],
            authority: &[],
        },
        // NXDOMAIN and NODATA, SOA in authority.
        Case {
            from: A_VPC,
            name: "nope.example.test.",
            qtype: A,
            rcode: ResponseCode::NXDomain,
            flags: "qr aa rd ra",
            answer: &[],
            authority: &[SOA],
        },
        Case { from: A_VPC, name: "www.example.test.", qtype: TXT, rcode: NOERR, flags: "qr aa rd ra", answer: &[], authority: &[SOA] },
        // Wildcard.
        Case {
            from: A_VPC,
            name: "x.app.example.test.",
            qtype: A,
            rcode: NOERR,
            flags: "qr aa rd ra",
            answer: &["x.app.example.test. A 10.0.0.9"],
            authority: &[],
        },
        // In-zone CNAME chased.
        Case {
            from: A_VPC,
            name: "alias.example.test.",
            qtype: A,
            rcode: NOERR,
            flags: "qr aa rd ra",
            answer: &["alias.example.test. CNAME www.example.test.", "www.example.test. A 10.0.0.1", "www.example.test. A 10.0.0.2"],
            authority: &[],
        },
        // RFC 8482: ANY gets one RRset.
        Case {
            from: A_VPC,
            name: "www.example.test.",
            qtype: ANY,
            rcode: NOERR,
            flags: "qr aa rd ra",
            answer: &["www.example.test. A 10.0.0.1", "www.example.test. A 10.0.0.2"],
            authority: &[],
        },
        // A source in no VPC: REFUSED, nothing else, no RA.
        Case {
            from: UNKNOWN,
            name: "www.example.test.",
            qtype: A,
            rcode: ResponseCode::Refused,
            flags: "qr rd",
            answer: &[],
            authority: &[],
        },
    ];
    for c in &cases {
        check(s, true, c);
    }
}

/// What the serving issue pinned as SERVFAIL now gets the upstream answer;
/// with no upstreams at all it is still SERVFAIL, with no private data in it.
#[test]
fn names_that_go_upstream_get_the_upstream_answer() {
    let up = crate::support::upstream::FakeUpstream::start("127.0.0.1");
    let srv = TestServer::start_default(Path::new(ZONES), "vpc-b", &format!("upstreams: [{}]\n", up.addr));
    let s = srv.addrs[0];
    let r = udp(s, A_VPC, &query("ecs.cn-hangzhou.aliyuncs.com.", RecordType::A, None));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        lines(&r.answers)[1..],
        ["popunify-vpc.cn-hangzhou.aliyuncs.com. A 100.100.2.148", "popunify-vpc.cn-hangzhou.aliyuncs.com. A 100.100.2.149"]
    );
    let r = udp(s, C_VPC, &query("ecs.cn-hangzhou.aliyuncs.com.", RecordType::A, None));
    assert_eq!(lines(&r.answers), ["ecs.cn-hangzhou.aliyuncs.com. A 47.1.1.1"]);
    let r = udp(s, A_VPC, &query("missing.proxy.test.", RecordType::A, None));
    assert_eq!(lines(&r.answers), ["missing.proxy.test. A 198.51.100.1"]);

    let srv = server(); // upstreams: []
    for (from, name) in [(A_VPC, "ecs.cn-hangzhou.aliyuncs.com."), (C_VPC, "ecs.cn-hangzhou.aliyuncs.com."), (A_VPC, "example.org.")] {
        let r = udp(srv.addrs[0], from, &query(name, RecordType::A, None));
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "{name} from {from}");
        assert!(r.answers.is_empty() && r.authorities.is_empty(), "{name} from {from}: {:?}", lines(&r.answers));
    }
}

#[test]
fn inbound_endpoint_listener_answers_as_its_vpc() {
    let srv = server();
    // Listener 1 is bound to vpc-b: 127.0.0.1 (in no VPC) is answered as vpc-b.
    let r = udp(srv.addrs[1], UNKNOWN, &query("ecs.cn-hangzhou.aliyuncs.com.", RecordType::A, None));
    assert_eq!(lines(&r.answers), ["ecs.cn-hangzhou.aliyuncs.com. A 100.100.0.1"]);
    // Even a vpc-a source is answered as vpc-b there.
    let r = udp(srv.addrs[1], A_VPC, &query("ecs.cn-hangzhou.aliyuncs.com.", RecordType::A, None));
    assert_eq!(lines(&r.answers), ["ecs.cn-hangzhou.aliyuncs.com. A 100.100.0.1"]);
}

#[test]
fn ipv6_listener_refuses_an_unknown_source() {
    let srv = server();
    let r = udp(srv.addrs[2], "::1", &query("www.example.test.", RecordType::A, None));
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    let r = tcp(srv.addrs[2], "::1", &query("www.example.test.", RecordType::A, None));
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn truncation_then_full_answer_over_tcp() {
    let srv = server();
    let s = srv.addrs[0];
    // 100 A records (~1.7 KB) fit neither 512 bytes (no EDNS) nor 1232.
    for edns in [None, Some(4096)] {
        let q = query("many.example.test.", RecordType::A, edns);
        let raw = udp_raw(s, A_VPC.parse().unwrap(), &q.to_vec().unwrap()).unwrap();
        assert!(raw.len() <= edns.map_or(512, |_| 1232), "UDP reply of {} bytes", raw.len());
        let r = Message::from_vec(&raw).unwrap();
        assert!(r.metadata.truncation, "TC set (edns {edns:?})");
        let r = tcp(s, A_VPC, &q);
        assert!(!r.metadata.truncation);
        assert_eq!(r.answers.len(), 100);
    }
}

#[test]
fn edns_echo_badvers_and_header_rules() {
    let srv = server();
    let s = srv.addrs[0];
    // No OPT in, no OPT out.
    let r = udp(s, A_VPC, &query("www.example.test.", RecordType::A, None));
    assert!(r.edns.is_none());
    // A small client buffer is respected but never below 512.
    let r = udp(s, A_VPC, &query("www.example.test.", RecordType::A, Some(200)));
    assert_eq!(r.edns.unwrap().max_payload(), 512);
    // Unknown EDNS options are ignored, not echoed.
    let mut q = query("www.example.test.", RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().options_mut().insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(65001, vec![1, 2, 3]));
    let r = udp(s, A_VPC, &q);
    assert_eq!(r.answers.len(), 2);
    assert!(r.edns.unwrap().options().as_ref().is_empty(), "no option echoed");
    // DO is echoed.
    let mut q = query("www.example.test.", RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().set_dnssec_ok(true);
    let r = udp(s, A_VPC, &q);
    assert!(r.edns.unwrap().flags().dnssec_ok);
    // EDNS version 1: BADVERS (16: rcode 0 in the header, 1 in OPT), OPT version 0.
    let mut q = query("www.example.test.", RecordType::A, None);
    let mut e = Edns::new();
    e.set_version(1);
    q.set_edns(e);
    let raw = udp_raw(s, A_VPC.parse().unwrap(), &q.to_vec().unwrap()).unwrap();
    assert_eq!(raw[3] & 0x0f, 0, "header rcode low bits");
    let r = Message::from_vec(&raw).unwrap();
    assert_eq!(u16::from(r.metadata.response_code), 16, "BADVERS (code 16, which hickory names BADSIG)");
    assert_eq!(r.edns.unwrap().version(), 0);
    // Two questions: FORMERR.
    let mut q = query("www.example.test.", RecordType::A, None);
    q.add_query(Query::query(Name::from_ascii("alias.example.test.").unwrap(), RecordType::A));
    let raw = udp_raw(s, A_VPC.parse().unwrap(), &q.to_vec().unwrap()).unwrap();
    assert_eq!(Message::from_vec(&raw).unwrap().metadata.response_code, ResponseCode::FormErr);
    // Another opcode: NOTIMP.
    let mut q = query("www.example.test.", RecordType::A, None);
    q.metadata.op_code = OpCode::Status;
    let r = udp(s, A_VPC, &q);
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    // Zone transfers: REFUSED.
    let r = tcp(s, A_VPC, &query("example.test.", RecordType::AXFR, None));
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    // Classes other than IN (version.bind CH TXT): REFUSED, nothing forwarded.
    let mut q = query("version.bind.", RecordType::TXT, None);
    q.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    let r = udp(s, A_VPC, &q);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    // RD is copied: RD=0 in, RD=0 out.
    let mut q = query("www.example.test.", RecordType::A, None);
    q.metadata.recursion_desired = false;
    let r = udp(s, A_VPC, &q);
    assert!(!r.metadata.recursion_desired);
    assert_eq!(r.answers.len(), 2);
}

#[test]
fn case_randomised_question_is_echoed() {
    let srv = server();
    // 0x20: udp() asserts the question comes back byte for byte.
    let r = udp(srv.addrs[0], A_VPC, &query("wWw.ExAmPlE.tEsT.", RecordType::A, None));
    assert_eq!(r.answers.len(), 2);
    let r = tcp(srv.addrs[0], A_VPC, &query("EP-1.epsrv-1.CN-HANGZHOU.privatelink.aliyuncs.com.", RecordType::A, None));
    assert_eq!(r.answers.len(), 2);
}

#[test]
fn garbage_then_a_normal_query() {
    let srv = server();
    let s = srv.addrs[0];
    let from = A_VPC.parse().unwrap();
    // 5 bytes: not even a header; dropped (nothing to answer to).
    assert!(udp_raw_quick(s, from, &[1, 2, 3, 4, 5]).is_none());
    // A header claiming a question that is not there: FORMERR.
    let bad = [0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x03, b'w'];
    let raw = udp_raw(s, from, &bad).expect("FORMERR reply");
    assert_eq!(raw[3] & 0x0f, 1, "FORMERR");
    assert_eq!(&raw[..2], &[0x12, 0x34]);
    // The server is still there.
    let r = udp(s, A_VPC, &query("www.example.test.", RecordType::A, None));
    assert_eq!(r.answers.len(), 2);
    // Garbage over TCP does not stop other connections either.
    let mut t = tcp_connect(s, from);
    tcp_send(&mut t, &[0xff; 5]);
    let r = tcp(s, A_VPC, &query("www.example.test.", RecordType::A, None));
    assert_eq!(r.answers.len(), 2);
}

fn udp_raw_quick(server: SocketAddr, from: std::net::IpAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = std::net::UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
    sock.send_to(bytes, server).unwrap();
    let mut buf = [0u8; 512];
    sock.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
}

#[test]
fn tcp_pipelining_on_one_connection() {
    let srv = server();
    let mut t = tcp_connect(srv.addrs[0], A_VPC.parse().unwrap());
    let names = ["www.example.test.", "alias.example.test.", "nope.example.test."];
    let qs: Vec<Message> = names.iter().map(|n| query(n, RecordType::A, None)).collect();
    for q in &qs {
        tcp_send(&mut t, &q.to_vec().unwrap());
    }
    let mut ids: Vec<u16> = (0..qs.len()).map(|_| Message::from_vec(&tcp_recv(&mut t)).unwrap().metadata.id).collect();
    let mut want: Vec<u16> = qs.iter().map(|q| q.metadata.id).collect();
    ids.sort_unstable();
    want.sort_unstable();
    assert_eq!(ids, want);
}

#[test]
fn sigterm_stops_cleanly_and_port_in_use_exits_2() {
    let mut srv = server();
    let taken = srv.addrs[0];
    // While it runs, a second server on the same TCP port cannot start.
    let out = crate::support::pzdns_command()
        .args(["serve", "--zones", ZONES, "--listen", &taken.to_string(), "--admin", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("pzdns: cannot start: cannot bind "), "{err}");
    assert!(last.contains(&taken.to_string()), "{last}");
    let st = srv.stop();
    assert!(st.success(), "exit status after SIGTERM: {st}");
    assert!(srv.stderr().contains("stopped"), "{}", srv.stderr());
}

#[test]
fn invalid_data_at_start_exits_2() {
    let out = crate::support::pzdns_command()
        .args(["serve", "--zones", "tests/fixtures/broken/zones", "--listen", "127.0.0.1:0", "--admin", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vpcs.yaml:9:13"), "problems are logged: {err}");
    assert!(err.lines().last().unwrap().starts_with("pzdns: cannot start: 22 problem(s)"), "{err}");
}

/// dig, a client no one here wrote. .ci/run installs it (dnsutils) and sets
/// PZDNS_REQUIRE_TOOLS=1 so that a missing dig fails there.
#[test]
fn dig_sees_the_apex_cname_and_the_refusal() {
    if std::process::Command::new("dig").arg("-v").output().is_err() {
        assert!(std::env::var_os("PZDNS_REQUIRE_TOOLS").is_none(), "dig is required (apt-get install dnsutils)");
        eprintln!("skipped: dig not installed (apt-get install dnsutils)");
        return;
    }
    let srv = server();
    let s = srv.addrs[0];
    let dig = |from: &str, args: &[&str]| -> String {
        let mut cmd = std::process::Command::new("dig");
        cmd.args(["+nocookie", "+tries=1", "+time=3", "-p", &s.port().to_string(), &format!("@{}", s.ip()), "-b", from]);
        let out = cmd.args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = dig(A_VPC, &["ecs.cn-hangzhou.aliyuncs.com", "CNAME"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("flags: qr aa rd ra;"), "{out}");
    assert!(out.contains("ecs.cn-hangzhou.aliyuncs.com. 60 IN\tCNAME\tpopunify-vpc.cn-hangzhou.aliyuncs.com."), "{out}");
    assert!(out.contains("EDNS: version: 0, flags:; udp: 1232"), "{out}");
    let out = dig(UNKNOWN, &["ecs.cn-hangzhou.aliyuncs.com", "A"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    // dig retries over TCP by itself on TC=1 and gets all 100 records.
    let out = dig(A_VPC, &["+noedns", "many.example.test", "A"]);
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("ANSWER: 100,"), "{out}");
}
