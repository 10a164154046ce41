//! The asker's VPC survives the forwarding hop: a trusted forwarder's
//! PROXY v2 header, or its EDNS Client Subnet, picks the view as a direct
//! query from that client would; from any other source the claim is
//! ignored (and counted). kdig speaks both (`+proxy`, `+subnet`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use proptest::prelude::*;
use pzdns::answer::{Client, Ctx, Outcome, Transport, answer};

use crate::support::*;

/// vpc-a (127.1/16) sees a.test, vpc-b (127.2/16, and a /24 of vpc-c
/// inside it) sees b.test; the forwarder 127.0.0.53 is in no VPC.
fn zones(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-identity-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let w = |f: &str, t: &str| std::fs::write(d.join(f), t).unwrap();
    w(
        "vpcs.yaml",
        "vpcs:\n  - { id: vpc-a, cidrs: [127.1.0.0/16, \"2001:db8:a::/48\"] }\n  - { id: vpc-b, cidrs: [127.2.0.0/16] }\n  - { id: vpc-c, cidrs: [127.2.9.0/24] }\n",
    );
    w("a.yaml", "zone: a.test\nvpcs: [vpc-a]\nrecords:\n  - { name: www, type: A, value: 10.1.1.1 }\n");
    w("b.yaml", "zone: b.test\nvpcs: [vpc-b]\nrecords:\n  - { name: www, type: A, value: 10.2.2.2 }\n");
    d
}

const FORWARDER: &str = "127.0.0.53";
const STRANGER: &str = "127.0.0.77";

fn server(zones: &Path) -> TestServer {
    let cfg = format!(
        "listen:\n  - address: 127.0.0.1:0\n    proxy_protocol: optional\n  - address: 127.0.0.2:0\n    proxy_protocol: required\nupstreams: []\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\ntrusted_forwarders: [{FORWARDER}/32]\nclient_subnet: trusted\n"
    );
    TestServer::start(zones, &cfg)
}

/// kdig's answer lines and its status, asked from `from`.
fn kdig(kdig: &Path, server: SocketAddr, from: &str, extra: &[&str], name: &str, tcp: bool) -> String {
    let mut c = Command::new(kdig);
    c.args(["-b", from, "-p", &server.port().to_string(), &format!("@{}", server.ip()), name, "A", "+retry=0", "+time=2"]);
    if tcp {
        c.arg("+tcp");
    }
    c.args(extra);
    let out = c.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn kdig_proxy_and_subnet_pick_the_claimed_vpc_only_from_a_trusted_forwarder() {
    let Some(kd) = tool("kdig") else { return };
    let z = zones("kdig");
    let srv = server(&z);
    let (opt, req) = (srv.addrs[0], srv.addrs[1]);
    let admin = srv.admin.unwrap();
    for tcp in [false, true] {
        // PROXY v2 from the trusted forwarder: the claimed client's view.
        let out = kdig(&kd, opt, FORWARDER, &["+proxy=127.1.0.5-127.0.0.1"], "www.a.test.", tcp);
        assert!(out.contains("NOERROR") && out.contains("10.1.1.1"), "tcp={tcp}: {out}");
        let out = kdig(&kd, req, FORWARDER, &["+proxy=127.2.0.5-127.0.0.2"], "www.b.test.", tcp);
        assert!(out.contains("10.2.2.2"), "required listener, tcp={tcp}: {out}");
        // The same claim from a stranger: its own view (no VPC: refused).
        let out = kdig(&kd, opt, STRANGER, &["+proxy=127.1.0.5-127.0.0.1"], "www.a.test.", tcp);
        assert!(out.contains("REFUSED") && !out.contains("10.1.1.1"), "untrusted PROXY, tcp={tcp}: {out}");
    }
    // ECS from the trusted forwarder; the scope says how much of the
    // address decided (vpc-b's /16, or vpc-c's /24 inside it).
    let out = kdig(&kd, opt, FORWARDER, &["+subnet=127.2.0.0/24"], "www.b.test.", false);
    assert!(out.contains("10.2.2.2") && out.contains("127.2.0.0/24/24"), "ECS: {out}");
    let out = kdig(&kd, opt, FORWARDER, &["+subnet=127.1.0.0/24"], "www.a.test.", false);
    assert!(out.contains("10.1.1.1") && out.contains("127.1.0.0/24/16"), "ECS, scope 16: {out}");
    let out = kdig(&kd, opt, FORWARDER, &["+subnet=2001:db8:a::/56"], "www.a.test.", true);
    assert!(out.contains("10.1.1.1"), "ECS IPv6 over TCP: {out}");
    // ECS from a stranger: ignored for the view and not echoed.
    let out = kdig(&kd, opt, STRANGER, &["+subnet=127.1.0.0/24"], "www.a.test.", false);
    assert!(out.contains("REFUSED") && !out.contains("CLIENT-SUBNET"), "untrusted ECS: {out}");
    let ignored = metric(&http(admin, "GET", "/metrics").1, "pzdns_client_claims_ignored_total");
    assert!(ignored >= 3.0, "claims ignored are counted: {ignored}");
    // The required listener drops a bare query and garbage after the signature.
    let before = metric(&http(admin, "GET", "/metrics").1, "pzdns_proxy_dropped_total");
    let q = query("www.a.test.", RecordType::A, None).to_vec().unwrap();
    assert!(udp_raw(req, FORWARDER.parse().unwrap(), &q).is_none(), "no header on a required listener: no answer");
    let mut garbage = b"\r\n\r\n\0\r\nQUIT\n\x39\x11\x00\x0c".to_vec();
    garbage.extend_from_slice(&[0; 12]);
    garbage.extend_from_slice(&q);
    assert!(udp_raw(opt, FORWARDER.parse().unwrap(), &garbage).is_none(), "a malformed header: no answer");
    let after = metric(&http(admin, "GET", "/metrics").1, "pzdns_proxy_dropped_total");
    assert!(after >= before + 2.0, "drops counted: {before} -> {after}");
    // A LOCAL header (dnsdist's health check): the forwarder speaks for itself.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    local.extend_from_slice(&q);
    let r = Message::from_vec(&udp_raw(req, FORWARDER.parse().unwrap(), &local).expect("LOCAL answered")).unwrap();
    assert_eq!(r.metadata.response_code, hickory_proto::op::ResponseCode::Refused, "answered as the forwarder (in no VPC)");
    drop(srv);
    let _ = std::fs::remove_dir_all(&z);
}

/// In process: for random clients and names, a query claiming client C
/// through the trusted forwarder gets exactly the answer a direct query
/// from C gets; through an untrusted source, exactly what that source
/// itself gets.
#[test]
fn a_claim_through_a_trusted_forwarder_answers_as_the_client_itself() {
    let z = zones("props");
    let shared = trusted_forwarder_shared(&z);
    let snap = shared.snapshot.load_full();
    // The answer, or the name it would ask upstream (no upstreams here).
    let ask = |client: &Client, bytes: &[u8]| -> Result<Message, String> {
        let ctx = Ctx { snap: &snap, cache: &shared.forwarder.cache, metrics: &shared.metrics, now: Instant::now() };
        let mut out = Vec::new();
        match answer(&ctx, client, bytes, &mut out) {
            Outcome::Done(_) => Ok(Message::from_vec(&out).unwrap()),
            Outcome::Wait(p) => Err(p.name.to_string()),
            Outcome::Drop | Outcome::Silent(_) => Err("dropped".into()),
        }
    };
    let sections = |m: &Result<Message, String>| {
        m.as_ref()
            .map(|m| (m.metadata.response_code, m.metadata.authoritative, m.answers.clone(), m.authorities.clone()))
            .map_err(Clone::clone)
    };
    // Names in local zones: outside them a question would go upstream.
    let names = ["www.a.test.", "www.b.test.", "nope.a.test.", "b.test.", "x.www.b.test."];
    let clients = ["127.1.0.5", "127.1.200.1", "127.2.0.9", "127.2.9.1", "127.3.0.1", "2001:db8:a::5"];
    proptest!(ProptestConfig::with_cases(300), |(ci in 0..clients.len(), ni in 0..names.len(), via_trusted: bool, use_ecs: bool, tcp: bool)| {
        let c: std::net::IpAddr = clients[ci].parse().unwrap();
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let q = query(names[ni], RecordType::A, Some(1232));
        let plain = q.to_vec().unwrap();
        let direct = ask(&Client { listener: 0, src: SocketAddr::new(c, 5300), proxy: None, transport }, &plain);
        let via: std::net::IpAddr = if via_trusted { FORWARDER } else { STRANGER }.parse().unwrap();
        let own = ask(&Client { listener: 0, src: SocketAddr::new(via, 5300), proxy: None, transport }, &plain);
        let claimed = if use_ecs {
            let mut q = q.clone();
            let prefix = if c.is_ipv4() { 32 } else { 128 };
            let subnet = hickory_proto::rr::rdata::opt::ClientSubnet::new(c, prefix, 0);
            q.edns.as_mut().unwrap().options_mut().insert(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(subnet));
            ask(&Client { listener: 0, src: SocketAddr::new(via, 5300), proxy: None, transport }, &q.to_vec().unwrap())
        } else {
            ask(&Client { listener: 0, src: SocketAddr::new(via, 5300), proxy: Some(c), transport }, &plain)
        };
        let want = if via_trusted { sections(&direct) } else { sections(&own) };
        prop_assert_eq!(sections(&claimed), want, "{} from {} via {} (ecs {})", names[ni], c, via, use_ecs);
    });
    let _ = std::fs::remove_dir_all(&z);
}

/// The zones of `zones()` answered in process, with FORWARDER trusted
/// and its ECS believed, and no upstreams.
fn trusted_forwarder_shared(z: &Path) -> Arc<pzdns::state::Shared> {
    let mut cfg = pzdns::config::ServerConfig::defaults();
    cfg.zones_dir = z.to_path_buf();
    cfg.upstreams = vec![];
    cfg.trusted_forwarders = vec![format!("{FORWARDER}/32").parse().unwrap()];
    cfg.client_subnet = pzdns::config::ClientSubnet::Trusted;
    rules_shared_with(cfg)
}

fn rules_shared_with(cfg: pzdns::config::ServerConfig) -> Arc<pzdns::state::Shared> {
    let snap = pzdns::loader::load(&cfg, 1).unwrap_or_else(|d| panic!("loads:\n{d}"));
    pzdns::state::Shared::new(cfg, snap, Arc::new(pzdns::metrics::Metrics::new()))
}

#[test]
fn explain_via_says_whose_identity_is_used_and_why() {
    let z = zones("explain");
    let cfg = z.with_extension("yaml");
    std::fs::write(&cfg, format!("zones_dir: {}\nupstreams: []\ntrusted_forwarders: [{FORWARDER}/32]\n", z.display())).unwrap();
    let run = |via: &str| {
        let out = crate::support::pzdns_command()
            .args(["explain", "--config", cfg.to_str().unwrap(), "--from", "127.1.0.5", "--via", via, "www.a.test."])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let trusted = run(FORWARDER);
    assert!(trusted.contains("view:     vpc-a") && trusted.contains("claimed by trusted forwarder 127.0.0.53"), "{trusted}");
    assert!(trusted.contains("10.1.1.1"), "{trusted}");
    let stranger = run(STRANGER);
    assert!(stranger.contains("127.0.0.77 is not in trusted_forwarders"), "{stranger}");
    assert!(!stranger.contains("10.1.1.1"), "{stranger}");
    let _ = std::fs::remove_dir_all(&z);
    let _ = std::fs::remove_file(&cfg);
}

/// An IPv4-mapped address in an IPv6 ECS option (family 2) is the IPv4
/// client it maps: the view is that client's, and the echo keeps family 2
/// and source /128 with the scope in IPv6 bits (96 + the IPv4 scope), so
/// that an RFC 7871 cache downstream does not hand the answer to every
/// client that shares the first 16 or 24 bits.
#[test]
fn kdig_ipv4_mapped_subnet_is_scoped_in_ipv6_bits() {
    let Some(kd) = tool("kdig") else { return };
    let z = zones("mapped");
    let srv = server(&z);
    let opt = srv.addrs[0];
    // vpc-b's /16 holds vpc-c's /24: a /24 decides, 96 + 24.
    let out = kdig(&kd, opt, FORWARDER, &["+subnet=::ffff:127.2.0.5/128"], "www.b.test.", false);
    assert!(out.contains("NOERROR") && out.contains("10.2.2.2"), "vpc-b's view: {out}");
    assert!(out.contains("::ffff:127.2.0.5/128/120"), "family 2 kept, scope 120: {out}");
    // vpc-a's /16 holds nothing else: 96 + 16.
    let out = kdig(&kd, opt, FORWARDER, &["+subnet=::ffff:127.1.0.5/128"], "www.a.test.", true);
    assert!(out.contains("10.1.1.1") && out.contains("::ffff:127.1.0.5/128/112"), "vpc-a, scope 112: {out}");
    // Not vpc-b's data for a mapped client of vpc-a.
    let out = kdig(&kd, opt, FORWARDER, &["+subnet=::ffff:127.1.0.5/128"], "www.b.test.", false);
    assert!(!out.contains("10.2.2.2"), "{out}");
    drop(srv);
    let _ = std::fs::remove_dir_all(&z);
}

/// A forwarder's subnet coarser than the VPCs in it (here a /16 that
/// holds vpc-b and vpc-c's /24) must not pick one VPC's view: a downstream
/// RFC 7871 cache keeps the answer for the whole /16, vpc-c's clients
/// included. It is answered as a client in no VPC (REFUSED here), with
/// the scope of the whole block; a block inside one VPC still picks it.
#[test]
fn kdig_subnet_coarser_than_the_vpcs_in_it_picks_no_vpc() {
    let Some(kd) = tool("kdig") else { return };
    let z = zones("coarse");
    let srv = server(&z);
    let opt = srv.addrs[0];
    let out = kdig(&kd, opt, FORWARDER, &["+subnet=127.2.0.0/16"], "www.b.test.", false);
    assert!(!out.contains("10.2.2.2"), "vpc-b's private answer for a block vpc-c shares: {out}");
    assert!(out.contains("REFUSED") && out.contains("127.2.0.0/16/16"), "as no VPC, for the whole block: {out}");
    let out = kdig(&kd, opt, FORWARDER, &["+subnet=::ffff:127.2.0.0/112"], "www.b.test.", false);
    assert!(!out.contains("10.2.2.2") && out.contains("REFUSED"), "the same block, IPv4-mapped: {out}");
    // Within one VPC: its view, as before.
    let out = kdig(&kd, opt, FORWARDER, &["+subnet=127.2.1.0/24"], "www.b.test.", false);
    assert!(out.contains("10.2.2.2") && out.contains("127.2.1.0/24/24"), "{out}");
    let out = kdig(&kd, opt, FORWARDER, &["+subnet=127.1.0.0/16"], "www.a.test.", false);
    assert!(out.contains("10.1.1.1"), "{out}");
    drop(srv);
    let _ = std::fs::remove_dir_all(&z);
}

/// RFC 7871 §6 asks a server to reject a malformed option with FORMERR,
/// as BIND does: from a trusted forwarder (where ECS is believed) a
/// malformed option is FORMERR; from any other source the option is not
/// read and the query is answered as without it. A source prefix of 0
/// (family 0 included) claims nothing: answered as the forwarder, scope 0.
#[test]
fn malformed_subnets_are_formerr_where_believed() {
    let z = zones("malformed");
    let shared = trusted_forwarder_shared(&z);
    let snap = shared.snapshot.load_full();
    let ask = |from: &str, ecs: &[u8]| -> Vec<u8> {
        let mut m = query("www.a.test.", RecordType::A, None).to_vec().unwrap();
        m[11] = 1; // ARCOUNT: the OPT below
        m.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
        m.extend_from_slice(&((ecs.len() + 4) as u16).to_be_bytes());
        m.extend_from_slice(&[0, 8]);
        m.extend_from_slice(&(ecs.len() as u16).to_be_bytes());
        m.extend_from_slice(ecs);
        let ctx = Ctx { snap: &snap, cache: &shared.forwarder.cache, metrics: &shared.metrics, now: Instant::now() };
        let client = Client { listener: 0, src: SocketAddr::new(from.parse().unwrap(), 5300), proxy: None, transport: Transport::Udp };
        let mut out = Vec::new();
        assert!(matches!(answer(&ctx, &client, &m, &mut out), Outcome::Done(_)));
        out
    };
    let rcode = |r: &[u8]| hickory_proto::op::ResponseCode::from(0, r[3] & 0xf);
    // The echoed option's (source, scope), read from the OPT record's
    // bytes: hickory does not decode every family the echo may carry.
    let ecs_echo = |r: &[u8]| {
        let opt = r.windows(3).rposition(|w| w == [0, 0, 41])?;
        let mut o = &r[opt + 11..];
        while o.len() >= 4 {
            let (code, len) = (u16::from_be_bytes([o[0], o[1]]), u16::from_be_bytes([o[2], o[3]]) as usize);
            if code == 8 {
                return Some((o[6], o[7]));
            }
            o = &o[4 + len..];
        }
        None
    };
    use hickory_proto::op::ResponseCode::{FormErr, NoError, Refused};
    let good = ask(FORWARDER, &[0, 1, 24, 0, 127, 1, 0]);
    assert_eq!((rcode(&good), ecs_echo(&good)), (NoError, Some((24, 16))), "well formed: vpc-a, scope 16");
    for bad in [
        &[0, 1, 24, 0, 127, 1][..],      // an address byte short
        &[0, 1, 24, 0, 127, 1, 0, 0],    // one too many
        &[0, 1, 33, 0, 127, 1, 0, 0, 0], // longer than IPv4
        &[0, 1, 23, 0, 127, 1, 1],       // a bit set past the prefix
        &[0, 1, 24, 24, 127, 1, 0],      // a scope in the query
        &[0, 3, 8, 0, 127],              // an unknown family
        &[0, 0, 8, 0, 127],              // family 0 with a prefix
    ] {
        let r = ask(FORWARDER, bad);
        assert_eq!((rcode(&r), ecs_echo(&r)), (FormErr, None), "trusted, {bad:?}");
        // A stranger's option is not read: as without it (in no VPC: refused).
        assert_eq!(rcode(&ask(STRANGER, bad)), Refused, "stranger, {bad:?}");
    }
    // Source prefix 0 says nothing about the client: the forwarder's own
    // view (in no VPC here), valid for any client of it (scope 0).
    for anonymous in [&[0, 1, 0, 0][..], &[0, 2, 0, 0], &[0, 0, 0, 0]] {
        let r = ask(FORWARDER, anonymous);
        assert_eq!((rcode(&r), ecs_echo(&r)), (Refused, Some((0, 0))), "{anonymous:?}");
    }
    let _ = std::fs::remove_dir_all(&z);
}
