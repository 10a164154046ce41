//! Response policies (rule 1a): the same RPZ file answered as Unbound
//! answers it, per-VPC scoping (listeners bound to a VPC included),
//! response-IP rebinding protection, alert-only, EDE 15 as dig shows it,
//! explain naming rule, file and line, and `check` reporting every
//! problem with its position.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::interop::{Peer, free_udp_port, scratch};
use crate::support::upstream::FakeUpstream;
use crate::support::*;

const ZONES: &str = "tests/fixtures/policy/zones";
const RPZ: &str = "tests/fixtures/policy/rpz";

/// One UDP exchange that may get no reply (a dropped query).
fn udp_maybe(server: SocketAddr, from: &str, q: &Message) -> Option<Message> {
    let sock = std::net::UdpSocket::bind((from, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&q.to_vec().unwrap(), server).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(Message::from_vec(&buf[..n]).unwrap())
}

/// The answer section without TTLs (Unbound ages what it cached), sorted.
fn rrsets(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| format!("{} {} {}", r.name.to_lowercase(), r.record_type(), r.data)).collect();
    v.sort();
    v
}

/// rcode, TC and the answer RRsets, or `None` when there was no reply.
type Seen = Option<(ResponseCode, bool, Vec<String>)>;

fn seen(server: SocketAddr, name: &str, qtype: RecordType) -> Seen {
    udp_maybe(server, "127.0.0.1", &query(name, qtype, Some(1232))).map(|m| (m.metadata.response_code, m.metadata.truncation, rrsets(&m)))
}

/// Unbound (`rpz:` with `zonefile:`, `respip` module) and pzdns read the
/// same RPZ file; both resolve `pub.test` from the same NSD. Every
/// supported trigger and action gives the same rcode and answer RRsets,
/// except where pzdns deliberately differs (asserted separately below,
/// and explained in README.md, "Response policies").
#[test]
fn the_same_rpz_file_answers_as_unbound_does() {
    let (Some(unbound), Some(nsd)) = (tool("unbound"), tool("nsd")) else { return };
    let dir = scratch("rpz-unbound");
    let rpz = std::fs::canonicalize(RPZ).unwrap();
    std::fs::copy(rpz.join("pub.zone"), dir.join("pub.zone")).unwrap();
    std::fs::copy(rpz.join("block.rpz"), dir.join("block.rpz")).unwrap();
    let d = dir.display();

    // The public authority for both.
    let nsd_port = free_udp_port("127.0.0.1");
    std::fs::write(
        dir.join("nsd.conf"),
        format!(
            "server:\n  ip-address: 127.0.0.1@{nsd_port}\n  port: {nsd_port}\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 1\nremote-control:\n  control-enable: no\nzone:\n  name: pub.test\n  zonefile: pub.zone\n"
        ),
    )
    .unwrap();
    let nsd_addr: SocketAddr = format!("127.0.0.1:{nsd_port}").parse().unwrap();
    let nsd_dir = scratch("rpz-nsd");
    let _nsd = Peer::start(Command::new(nsd).arg("-d").arg("-c").arg(dir.join("nsd.conf")), nsd_dir, nsd_addr);

    // Unbound: a resolver with the RPZ zone, `test.` served (it is a
    // default local zone otherwise), pub.test from NSD.
    let unb_port = free_udp_port("127.0.0.1");
    std::fs::write(
        dir.join("unbound.conf"),
        format!(
            "server:\n    interface: 127.0.0.1\n    port: {unb_port}\n    do-ip6: no\n    do-daemonize: no\n    username: \"\"\n    chroot: \"\"\n    directory: \"{d}\"\n    pidfile: \"{d}/unbound.pid\"\n    use-syslog: no\n    access-control: 127.0.0.0/8 allow\n    do-not-query-localhost: no\n    local-zone: \"test.\" nodefault\n    module-config: \"respip iterator\"\nremote-control:\n    control-enable: no\nstub-zone:\n    name: \"pub.test\"\n    stub-addr: 127.0.0.1@{nsd_port}\nrpz:\n    name: rpz.test.\n    zonefile: {d}/block.rpz\n"
        ),
    )
    .unwrap();
    let unb: SocketAddr = format!("127.0.0.1:{unb_port}").parse().unwrap();
    let unb_dir = scratch("rpz-unb");
    let _unbound = Peer::start(Command::new(unbound).arg("-d").arg("-c").arg(dir.join("unbound.conf")), unb_dir, unb);

    // pzdns: the same file as a policy of every VPC.
    let zones = dir.join("zones");
    std::fs::create_dir_all(zones.join("lists")).unwrap();
    std::fs::copy(rpz.join("block.rpz"), zones.join("lists/block.rpz")).unwrap();
    std::fs::write(zones.join("vpcs.yaml"), "vpcs:\n  - id: vpc-lo\n    cidrs: [127.0.0.0/8]\n").unwrap();
    std::fs::write(zones.join("rpz.yaml"), "policy: rpz\nrules:\n  - rpz: lists/block.rpz\n").unwrap();
    let pz = TestServer::start(
        &zones,
        &format!("listen:\n  - address: 127.0.0.1:0\nupstreams: [{nsd_addr}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: \"off\"\n"),
    );
    let pzs = pz.addrs[0];

    let nx = |n: &str| Some((ResponseCode::NXDomain, false, Vec::<String>::new())).filter(|_| !n.is_empty());
    let cases: &[(&str, RecordType, &str)] = &[
        ("blocked.pub.test.", RecordType::A, "QNAME, CNAME . → NXDOMAIN"),
        ("x.wild.pub.test.", RecordType::A, "wildcard-blocked"),
        ("wild.pub.test.", RecordType::A, "a wildcard does not cover its own parent"),
        ("ok.wild.pub.test.", RecordType::A, "passthru inside a blocked wildcard"),
        ("nodata.pub.test.", RecordType::A, "CNAME *. → NODATA"),
        ("local.pub.test.", RecordType::A, "local data A"),
        ("local.pub.test.", RecordType::TXT, "local data TXT"),
        ("local.pub.test.", RecordType::MX, "local data without the type: NODATA"),
        ("redirect.pub.test.", RecordType::A, "CNAME override, target resolved"),
        ("redirect.pub.test.", RecordType::TXT, "CNAME override, another type"),
        ("chain.pub.test.", RecordType::A, "an upstream chain whose target is blocked"),
        ("rebind.pub.test.", RecordType::A, "rpz-ip: an answer address in the range → NXDOMAIN"),
        ("free.pub.test.", RecordType::A, "not covered"),
        ("drop.pub.test.", RecordType::A, "rpz-drop: no reply from either"),
        ("tcp.pub.test.", RecordType::A, "rpz-tcp-only over UDP: TC=1, no records"),
    ];
    for (name, qtype, what) in cases {
        let (u, p) = (seen(unb, name, *qtype), seen(pzs, name, *qtype));
        assert_eq!(p, u, "{name} {qtype} ({what}): pzdns (left) and Unbound (right) differ");
    }
    // The cases are not vacuous.
    assert_eq!(seen(pzs, "blocked.pub.test.", RecordType::A), nx("x"));
    assert_eq!(seen(pzs, "drop.pub.test.", RecordType::A), None);
    assert_eq!(seen(pzs, "local.pub.test.", RecordType::A).unwrap().2, ["local.pub.test. A 10.9.9.9"]);
    assert_eq!(seen(pzs, "chain.pub.test.", RecordType::A).unwrap().2, ["chain.pub.test. CNAME bad-target.pub.test."]);

    assert_eq!(seen(pzs, "tcp.pub.test.", RecordType::A), Some((ResponseCode::NoError, true, vec![])));
    // Over TCP, rpz-tcp-only answers normally, on both.
    for server in [unb, pzs] {
        let t = tcp(server, "127.0.0.1", &query("tcp.pub.test.", RecordType::A, Some(1232)));
        assert_eq!(rrsets(&t), ["tcp.pub.test. A 192.0.2.6"], "{server}");
    }

    // The deliberate difference: an rpz-ip match at the end of a CNAME
    // chain. Unbound keeps the chain and answers NXDOMAIN; pzdns answers
    // NXDOMAIN with nothing, so that a blocked answer shows nothing of
    // where the name leads.
    let u = seen(unb, "chain2.pub.test.", RecordType::A).unwrap();
    assert_eq!((u.0, u.2.clone()), (ResponseCode::NXDomain, vec!["chain2.pub.test. CNAME rebind.pub.test.".to_string()]));
    assert_eq!(seen(pzs, "chain2.pub.test.", RecordType::A), nx("x"));
    std::fs::remove_dir_all(&dir).ok();
}

fn metrics(s: &TestServer) -> String {
    http(s.admin.unwrap(), "GET", "/metrics").1
}

fn policy_server(up: &FakeUpstream) -> TestServer {
    TestServer::start(
        Path::new(ZONES),
        &format!(
            "listen:\n  - address: 127.0.0.1:0\n  - address: 127.0.0.9:0\n    vpc: vpc-a\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\nquery_log: true\n",
            up.addr
        ),
    )
}

#[test]
fn scoped_per_vpc_and_listener_with_rebinding_and_alert() {
    let up = FakeUpstream::start("127.0.0.1");
    let s = policy_server(&up);
    let (a, b) = ("127.0.1.5", "127.0.2.5");
    let ask = |server, from, name: &str| udp(server, from, &query(name, RecordType::A, Some(1232)));
    let m = metrics(&s);
    let alert = "pzdns_policy_hits_total{policy=\"watch\",rule_set=\"watch: lists/feed.txt\",action=\"alert\"}";
    assert!(m.contains(&format!("{alert} 0")), "known series exist at 0: {m}");

    // The feed: blocked from vpc-a, answered (and counted) from vpc-b.
    let r = ask(s.addrs[0], a, "www.public.example.");
    assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NXDomain, 0));
    let r = ask(s.addrs[0], b, "www.public.example.");
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(lines(&r.answers).len(), 2, "the CNAME and its address: alert answers normally");
    assert_eq!(metric(&metrics(&s), alert), 1.0);
    // The listener bound to vpc-a follows vpc-a, whatever the source.
    let r = ask(s.addrs[1], b, "www.public.example.");
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    // Names under a feed entry, and a local CNAME whose target is in it.
    assert_eq!(ask(s.addrs[0], a, "deep.evil.example.").metadata.response_code, ResponseCode::NXDomain);
    let r = ask(s.addrs[0], a, "alias.apps.test.");
    assert_eq!((r.metadata.response_code, lines(&r.answers).len()), (ResponseCode::NXDomain, 1), "the chain up to the blocked name");
    assert_eq!(ask(s.addrs[0], b, "web.apps.test.").answers.len(), 1);
    // Inline rules: a wildcard NODATA, an override.
    let r = ask(s.addrs[0], a, "x.tunnel.example.");
    assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NoError, 0));
    let r = ask(s.addrs[0], a, "api.example.com.");
    assert_eq!(lines(&r.answers), ["api.example.com. A 10.0.0.5"]);

    // Rebinding: a public name resolving into 10.0.0.0/8 is blocked for
    // vpc-a, answered for vpc-b; vpc-a's own names in 10/8 are allowed
    // first (allow stops every later rule).
    let r = ask(s.addrs[0], a, "db.corp.example.");
    assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NXDomain, 0));
    assert_eq!(lines(&ask(s.addrs[0], b, "db.corp.example.").answers), ["db.corp.example. A 10.99.0.1"]);
    assert_eq!(lines(&ask(s.addrs[0], a, "www.internal.test.").answers), ["www.internal.test. A 10.1.0.1"]);

    // Over TCP too.
    let r = tcp(s.addrs[0], a, &query("blocked.example.com.", RecordType::A, None));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    let m = metrics(&s);
    assert_eq!(metric(&m, "pzdns_policy_hits_total{policy=\"egress\",rule_set=\"egress: lists/feed.txt\",action=\"nxdomain\"}"), 5.0);
    assert_eq!(
        metric(&m, "pzdns_policy_hits_total{policy=\"egress\",rule_set=\"egress: response_ip 10.0.0.0/8\",action=\"nxdomain\"}"),
        1.0
    );
    assert!(s.stderr().contains("policy=\"watch: lists/feed.txt=alert\""), "the query log marks the hit: {}", s.stderr());
}

#[test]
fn dig_shows_ede_15_with_the_rule_set() {
    let Some(dig) = tool("dig") else { return };
    let up = FakeUpstream::start("127.0.0.1");
    let s = policy_server(&up);
    let a = s.addrs[0];
    let out = Command::new(dig)
        .args(["-b", "127.0.1.7", "-p", &a.port().to_string(), &format!("@{}", a.ip()), "blocked.example.com", "A", "+tries=1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status: NXDOMAIN"), "{text}");
    assert!(text.contains("EDE: 15 (Blocked): (egress: lists/feed.txt)"), "{text}");
    // Without EDNS, no OPT, so no EDE.
    let out = Command::new(tool("dig").unwrap())
        .args(["-b", "127.0.1.7", "-p", &a.port().to_string(), &format!("@{}", a.ip()), "blocked.example.com", "A", "+noedns", "+tries=1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status: NXDOMAIN") && !text.contains("EDE"), "{text}");
}

#[test]
fn explain_names_the_rule_its_file_and_line() {
    let out =
        crate::support::pzdns_command().args(["explain", "--zones", ZONES, "--vpc", "vpc-a", "deep.evil.example", "A"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("deep.evil.example. matches policy `egress` rule `evil.example. (and the names below it)` at tests/fixtures/policy/zones/policies/lists/feed.txt:3:1"),
        "{text}"
    );
    assert!(text.contains("answer:   rcode NXDOMAIN"), "{text}");
    assert!(text.contains("without the policy: rcode NOERROR, deep.evil.example. A forwarded upstream"), "{text}");
    // From vpc-b the same name only alerts.
    let out =
        crate::support::pzdns_command().args(["explain", "--zones", ZONES, "--vpc", "vpc-b", "deep.evil.example", "A"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("alert: answered normally"), "{text}");
}

#[test]
fn check_reports_every_policy_problem_with_its_position() {
    let d = scratch("policy-check");
    std::fs::create_dir_all(d.join("lists")).unwrap();
    std::fs::write(d.join("vpcs.yaml"), "vpcs:\n  - id: vpc-a\n    cidrs: [10.0.0.0/8]\n").unwrap();
    std::fs::write(
        d.join("bad.yaml"),
        "policy: bad\nvpcs: [vpc-x]\nrules:\n  - rpz: lists/bad.rpz\n  - domains: lists/missing.txt\n    action: nxdomain\n  - { name: a.example, action: blok }\n  - domains: lists/gone.txt\n    action: nxdomain\n    on_load_error: open\n",
    )
    .unwrap();
    std::fs::write(d.join("lists/bad.rpz"), "$TTL 60\nok.example CNAME .\nbad.example A 10.0.0.300\n").unwrap();
    let out = crate::support::pzdns_command().args(["check", "--zones", d.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let p = |f: &str| d.join(f).display().to_string();
    for want in [
        format!("{}:2:8: unknown VPC id `vpc-x`", p("bad.yaml")),
        format!("{}:3:15: `10.0.0.300` is not an IPv4 address", p("lists/bad.rpz")),
        format!("{}:5:14: cannot read {}", p("bad.yaml"), p("lists/missing.txt")),
        format!("{}:7:32: unknown action `blok`; did you mean `block`", p("bad.yaml")),
    ] {
        let prefix: String = want.chars().take(want.find(';').unwrap_or(want.len())).collect();
        assert!(text.lines().any(|l| l.starts_with(&prefix)), "missing `{prefix}` in:\n{text}");
    }
    assert!(!text.contains("gone.txt"), "on_load_error: open is a warning, not a problem:\n{text}");
    // Fixed, the open rule set is a warning and check passes.
    std::fs::write(d.join("bad.yaml"), "policy: bad\nrules:\n  - domains: lists/gone.txt\n    action: nxdomain\n    on_load_error: open\n")
        .unwrap();
    let out = crate::support::pzdns_command().args(["check", "--zones", d.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("warning: ") && text.contains("on_load_error: open: rule set `bad: lists/gone.txt` is left out"), "{text}");
    std::fs::remove_dir_all(&d).ok();
}

/// The README's examples (zones/policies) load and do what it says.
#[test]
fn the_example_policy_loads_and_explains() {
    let run = |args: &[&str]| {
        let out = crate::support::pzdns_command().args(args).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, text) = run(&["check", "--zones", "zones"]);
    assert!(ok && text.contains("policies: 1 with 6 rule sets, 16 rules") && !text.contains("warning"), "{text}");
    let (_, text) = run(&["explain", "--zones", "zones", "--from", "127.0.10.1", "x.malware.example", "A"]);
    assert!(text.contains("rule `*.malware.example.` at zones/policies/lists/block.rpz:8:1") && text.contains("rcode NXDOMAIN"), "{text}");
    let (_, text) = run(&["explain", "--zones", "zones", "--from", "127.0.10.1", "ok.malware.example", "A"]);
    assert!(text.contains("allow (passthru)") && text.contains("forwarded upstream") || text.contains("upstream"), "{text}");
    let (_, text) = run(&["explain", "--zones", "zones", "--from", "127.0.10.1", "s3.example", "A"]);
    assert!(
        text.contains("s3.example. 300 IN CNAME www.svc.hz.internal.") && text.contains("www.svc.hz.internal. 300 IN A 10.0.0.1"),
        "{text}"
    );
    // Another VPC: no policy.
    let (_, text) = run(&["explain", "--zones", "zones", "--from", "127.0.20.1", "x.malware.example", "A"]);
    assert!(!text.contains("policy") && text.contains("upstream"), "{text}");
}

/// Reload: a broken policy is rejected whole with its `path:line:col`
/// (the old policy keeps answering); a changed list applies atomically.
#[test]
fn reload_rejects_a_broken_policy_and_applies_a_changed_list() {
    let d = scratch("policy-reload");
    let z = d.join("zones");
    std::fs::create_dir_all(z.join("policies/lists")).unwrap();
    for f in ["vpcs.yaml", "internal.yaml", "apps.yaml", "policies/egress.yaml", "policies/watch.yaml", "policies/lists/feed.txt"] {
        std::fs::copy(Path::new(ZONES).join(f), z.join(f)).unwrap();
    }
    let up = FakeUpstream::start("127.0.0.1");
    let s = TestServer::start(
        &z,
        &format!("listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n", up.addr),
    );
    let rcode = || udp(s.addrs[0], "127.0.1.5", &query("www.public.example.", RecordType::A, None)).metadata.response_code;
    assert_eq!(rcode(), ResponseCode::NXDomain);
    let egress = z.join("policies/egress.yaml");
    let good = std::fs::read_to_string(&egress).unwrap();
    std::fs::write(&egress, good.replace("action: nodata", "action: nodta")).unwrap();
    let (code, body) = http(s.admin.unwrap(), "POST", "/reload");
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("egress.yaml:10:41: unknown action `nodta`; did you mean `nodata`?") && !body.contains("needs an `action:`"),
        "{body}"
    );
    assert_eq!(rcode(), ResponseCode::NXDomain, "the old policy keeps answering");
    std::fs::write(&egress, good).unwrap();
    std::fs::write(z.join("policies/lists/feed.txt"), "blocked.example.com\n").unwrap();
    let (code, body) = http(s.admin.unwrap(), "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert_eq!(rcode(), ResponseCode::NoError, "no longer listed: the public answer");
    std::fs::remove_dir_all(&d).ok();
}
