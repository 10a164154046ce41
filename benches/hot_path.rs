//! Micro-benchmarks of the query path's pieces (issue: performance). They
//! report; nothing here gates CI. `cargo bench --bench hot_path`.
//!
//! - view selection (CIDR → VPC) with 1 and 100 VPCs
//! - zone selection (longest suffix among a VPC's zones) with 1 and 1,000 zones
//! - resolve: a local answer, a wildcard, NXDOMAIN, the apex CNAME
//! - the whole answer path, bytes in → bytes out (read, view, walk, write)
//! - dnstap on: a query's two messages encoded and handed over

use std::hint::black_box;
use std::str::FromStr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use pzdns::answer::{Client, Ctx, Outcome, Transport, answer};
use pzdns::config::zones_dir::{RecordDef, VpcDef, ZoneDef, ZoneOrigin, ZonesData};
use pzdns::config::{Located, Pos, ServerConfig};
use pzdns::dns::names::KeyBuf;
use pzdns::dns::record::tails;
use pzdns::dns::writer::{Flags, ResponseWriter, Section};
use pzdns::resolve::resolve;

/// `vpcs` VPCs on 10.v.0.0/16; `zones` zones z<i>.bench.internal, each with
/// 10 A records, a wildcard and an apex-CNAME zone, all bound to every VPC.
fn snapshot(vpcs: usize, zones: usize) -> pzdns::snapshot::Snapshot {
    let vpc_defs: Vec<VpcDef> = (0..vpcs)
        .map(|v| VpcDef {
            id: format!("vpc-{v}"),
            region: None,
            cidrs: vec![format!("10.{}.{}.0/24", v / 256, v % 256).parse().unwrap()],
            vswitches: vec![],
        })
        .collect();
    let bound: Vec<Located<String>> =
        (0..vpcs).map(|v| Located { value: format!("vpc-{v}"), path: "b".into(), pos: Pos::UNKNOWN }).collect();
    let mut zone_defs = Vec::new();
    for z in 0..zones {
        let origin = Name::from_str(&format!("z{z}.bench.internal.")).unwrap();
        let mut records = Vec::new();
        for i in 0..10u8 {
            let n = Name::from_str(&format!("h{i}.z{z}.bench.internal.")).unwrap();
            records.push(RecordDef {
                record: Record::from_rdata(n, 60, RData::A(A::new(10, 0, 0, i))),
                pos: Pos::UNKNOWN,
                az: None,
                route: None,
            });
        }
        let w = Name::from_str(&format!("*.w.z{z}.bench.internal.")).unwrap();
        records.push(RecordDef {
            record: Record::from_rdata(w, 60, RData::A(A::new(10, 0, 1, 1))),
            pos: Pos::UNKNOWN,
            az: None,
            route: None,
        });
        zone_defs.push(ZoneDef {
            origin,
            kind: ZoneOrigin::File,
            path: "z".into(),
            pos: Pos::UNKNOWN,
            vpcs: bound.clone(),
            recursive_proxy: false,
            ttl: 60,
            records_path: "z".into(),
            records,
        });
    }
    let ecs = Name::from_str("ecs.cn-hangzhou.aliyuncs.com.").unwrap();
    let cname = Record::from_rdata(ecs.clone(), 60, RData::CNAME(CNAME(Name::from_str("popunify-vpc.cn-hangzhou.aliyuncs.com.").unwrap())));
    zone_defs.push(ZoneDef {
        origin: ecs,
        kind: ZoneOrigin::File,
        path: "e".into(),
        pos: Pos::UNKNOWN,
        vpcs: bound,
        recursive_proxy: false,
        ttl: 60,
        records_path: "e".into(),
        records: vec![RecordDef { record: cname, pos: Pos::UNKNOWN, az: None, route: None }],
    });
    let mut cfg = ServerConfig::defaults();
    cfg.upstreams = vec![];
    // 10.255.0.53 speaks for its clients (PROXY v2, ECS).
    cfg.trusted_forwarders = vec!["10.255.0.53/32".parse().unwrap()];
    cfg.client_subnet = pzdns::config::ClientSubnet::Trusted;
    pzdns::loader::build(&cfg, ZonesData { vpcs: vpc_defs, zones: zone_defs, ..Default::default() }, 1).unwrap()
}

fn selection(c: &mut Criterion) {
    for (vpcs, zones) in [(1, 1), (100, 1), (1, 1000), (100, 1000)] {
        let s = snapshot(vpcs, zones);
        let src = format!("10.0.{}.7", (vpcs - 1) % 256).parse().unwrap();
        if zones == 1 {
            c.bench_function(&format!("select_view/{vpcs}vpcs"), |b| b.iter(|| s.select_view(None, black_box(src))));
        }
        let name = Name::from_str(&format!("h3.z{}.bench.internal.", zones - 1)).unwrap();
        let vpc = s.vpc_index(&format!("vpc-{}", vpcs - 1)).unwrap();
        c.bench_function(&format!("select_zone/{vpcs}vpcs/{zones}zones"), |b| {
            b.iter(|| {
                let k = KeyBuf::new(black_box(&name));
                black_box(s.select_zone(vpc, &k).is_some())
            })
        });
    }
}

fn resolving(c: &mut Criterion) {
    let s = snapshot(100, 1000);
    let (view, _) = s.select_view(None, "10.0.5.7".parse().unwrap());
    for (label, q) in [
        ("answer", "h3.z500.bench.internal."),
        ("wildcard", "x.w.z500.bench.internal."),
        ("nxdomain", "nope.z500.bench.internal."),
        ("apex_cname", "ecs.cn-hangzhou.aliyuncs.com."),
    ] {
        let name = Name::from_str(q).unwrap();
        c.bench_function(&format!("resolve/{label}"), |b| {
            b.iter(|| black_box(resolve(&s, view, black_box(&name), RecordType::A, false).answers.len()))
        });
    }
}

fn request_path(c: &mut Criterion) {
    let mut cfg = ServerConfig::defaults();
    cfg.upstreams = vec![];
    let shared = pzdns::state::Shared::new(cfg, snapshot(100, 1000), Arc::new(pzdns::metrics::Metrics::new()));
    let mut q = hickory_proto::op::Message::query();
    q.add_query(hickory_proto::op::Query::query(Name::from_str("h3.z500.bench.internal.").unwrap(), RecordType::A));
    let bytes = q.to_vec().unwrap();
    let client = Client { listener: 0, src: "10.0.5.7:5300".parse().unwrap(), proxy: None, transport: Transport::Udp };
    // The answer path as the UDP loop runs it: read, view, walk, write
    // into a reused buffer.
    let snap = shared.snapshot.load_full();
    let mut out = Vec::with_capacity(1232);
    let mut answer_bench = |name: &str, client: &Client, query: &[u8]| {
        c.bench_function(name, |b| {
            b.iter(|| {
                let ctx = Ctx { snap: &snap, cache: &shared.forwarder.cache, metrics: &shared.metrics, now: std::time::Instant::now() };
                match answer(&ctx, client, black_box(query), &mut out) {
                    Outcome::Done(_) => out.len(),
                    _ => 0,
                }
            })
        });
    };
    answer_bench("answer/local_answer", &client, &bytes);
    // The same answer for a client a trusted forwarder speaks for: by a
    // PROXY v2 header (already split off by the socket loop), and by ECS.
    let forwarder = "10.255.0.53:5300".parse().unwrap();
    let proxied = Client { listener: 0, src: forwarder, proxy: Some("10.0.5.7".parse().unwrap()), transport: Transport::Udp };
    answer_bench("answer/local_answer_proxy_v2", &proxied, &bytes);
    let mut qe = q.clone();
    let mut edns = hickory_proto::op::Edns::new();
    edns.options_mut().insert(hickory_proto::rr::rdata::opt::EdnsOption::Subnet(hickory_proto::rr::rdata::opt::ClientSubnet::new(
        "10.0.5.0".parse().unwrap(),
        24,
        0,
    )));
    qe.set_edns(edns);
    let ecs_bytes = qe.to_vec().unwrap();
    let via = Client { listener: 0, src: forwarder, proxy: None, transport: Transport::Udp };
    answer_bench("answer/local_answer_ecs", &via, &ecs_bytes);
    // DNS Cookies (on by default): a client cookie alone (a server cookie
    // made: one SipHash-2-4), and a valid server cookie (checked: one).
    let with_cookie = |cookie: &[u8]| {
        let mut m = bytes.clone();
        m[11] = 1;
        m.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
        m.extend_from_slice(&(4 + cookie.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 10]);
        m.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
        m.extend_from_slice(cookie);
        m
    };
    let client_cookie = [7u8; 8];
    answer_bench("answer/local_answer_client_cookie", &client, &with_cookie(&client_cookie));
    let server = snap.cookie_secrets.make(&client_cookie, client.src.ip(), pzdns::abuse::cookie::unix_now());
    answer_bench("answer/local_answer_server_cookie", &client, &with_cookie(&[&client_cookie[..], &server[..]].concat()));
    // Response rate limiting's bucket check for one UDP response.
    let rrl = pzdns::abuse::rrl::Rrl::new();
    let settings = pzdns::abuse::rrl::Settings::with_rate(1000);
    ctx_answer(&shared, &snap, &client, &bytes, &mut out);
    let response = out.clone();
    c.bench_function("rrl/check", |b| {
        b.iter(|| rrl.check(&settings, black_box(client.src.ip()), black_box(&response), std::time::Instant::now()))
    });
    // The PROXY v2 header split itself (the UDP loop does it per datagram).
    let mut framed = b"\r\n\r\n\0\r\nQUIT\n\x21\x12\x00\x0c".to_vec();
    framed.extend_from_slice(&[10, 0, 5, 7, 10, 255, 0, 1, 0x30, 0x39, 0, 53]);
    framed.extend_from_slice(&bytes);
    c.bench_function("proxy_v2/split", |b| {
        b.iter(|| matches!(pzdns::server::proxy::split(black_box(&framed)), pzdns::server::proxy::Framing::Proxied(..)))
    });
    // Writing alone: a response of two A records from precomputed bytes.
    let question = &bytes[12..];
    let zone = snap.zones.iter().find(|z| z.nodes.len() > 3).expect("a zone with records");
    let rrset = zone.nodes.iter().flat_map(|(_, n)| n.rrsets()).find(|r| r.rtype() == RecordType::A).expect("an A RRset");
    let flags = Flags { copied: 0, aa: true, ra: true, ad: false, rcode: 0 };
    c.bench_function("encode/answer", |b| {
        b.iter(|| {
            let mut w = ResponseWriter::new(std::mem::take(&mut out), 1, Some(question), 1232, 0);
            for t in tails(rrset.wire()) {
                w.record_at(Section::Answer, 12, t);
            }
            out = w.finish(flags, None);
            out.len()
        })
    });
    // dnstap on: one query's CLIENT_QUERY and CLIENT_RESPONSE encoded and
    // handed to the writer thread (which writes them to /dev/null).
    use pzdns::config::dnstap::{Kinds, Output, Settings};
    use pzdns::dnstap::{Dnstap, Protocol};
    let settings = Settings {
        output: Output::File("/dev/null".into()),
        identity: "bench".into(),
        version: "pzdns".into(),
        kinds: Kinds::ALL,
        queue: 10_000,
    };
    let tap = Dnstap::start(&settings, &shared.metrics).expect("dnstap to /dev/null");
    let (server, took) = ("10.0.0.53:53".parse().unwrap(), std::time::Duration::from_micros(20));
    c.bench_function("dnstap/client_pair", |b| {
        b.iter(|| tap.client(Protocol::Udp, client.src, server, black_box(&bytes), black_box(&out), took, None))
    });
    tap.shutdown(std::time::Duration::from_secs(10));
    let d = &shared.metrics.dnstap;
    eprintln!(
        "dnstap/client_pair: {} messages written, {} dropped (queue full)",
        d.written.get(),
        d.dropped_queue_full.get() + d.dropped_no_collector.get()
    );
}

/// A local answer from a VPC bound to a 1,000,000-name policy (a miss:
/// every label probed; and a hit) beside one from a VPC without policy,
/// on the same snapshot.
fn policy_path(c: &mut Criterion) {
    use pzdns::config::policy::{Action, PolicyDef, RuleSetDef, parse_domain_list};
    let mut data_text = String::new();
    for i in 0..1_000_000u32 {
        data_text.push_str(&format!("h{i}.d{}.example\n", i % 50_000));
    }
    let path: Arc<std::path::Path> = Arc::from(std::path::Path::new("feed.txt"));
    let mut d = pzdns::config::Diagnostics::new();
    let rules = parse_domain_list(&path, &data_text, Action::NxDomain, &mut d);
    let set = RuleSetDef { label: "feed: feed.txt".into(), ede: 15, rules, path: "p".into(), pos: Pos::UNKNOWN };
    let policy = PolicyDef {
        name: "feed".into(),
        path: "p".into(),
        pos: Pos::UNKNOWN,
        vpcs: Some(vec![Located { value: "vpc-0".into(), path: "p".into(), pos: Pos::UNKNOWN }]),
        sets: vec![set],
        warnings: vec![],
    };
    let mut snap = snapshot(2, 10);
    snap.policy = pzdns::snapshot::policy::Policies::build(vec![policy], 2, &|id| snap.vpc_index(id), &mut d);
    let mut cfg = ServerConfig::defaults();
    cfg.upstreams = vec![];
    let shared = pzdns::state::Shared::new(cfg, snap, Arc::new(pzdns::metrics::Metrics::new()));
    let snap = shared.snapshot.load_full();
    let mut out = Vec::with_capacity(1232);
    let mut bench = |label: &str, name: &str, src: &str| {
        let mut q = hickory_proto::op::Message::query();
        q.add_query(hickory_proto::op::Query::query(Name::from_str(name).unwrap(), RecordType::A));
        let bytes = q.to_vec().unwrap();
        let client = Client { listener: 0, src: src.parse().unwrap(), proxy: None, transport: Transport::Udp };
        c.bench_function(label, |b| {
            b.iter(|| {
                let ctx = Ctx { snap: &snap, cache: &shared.forwarder.cache, metrics: &shared.metrics, now: std::time::Instant::now() };
                match answer(&ctx, &client, black_box(&bytes), &mut out) {
                    Outcome::Done(_) => out.len(),
                    _ => 0,
                }
            })
        });
    };
    bench("policy/local_answer_no_policy", "h3.z5.bench.internal.", "10.0.1.7:5300");
    bench("policy/local_answer_1M_rules_miss", "h3.z5.bench.internal.", "10.0.0.7:5300");
    bench("policy/blocked_1M_rules_hit", "x.h77.d77.example.", "10.0.0.7:5300");
}

criterion_group!(benches, selection, resolving, request_path, policy_path);
criterion_main!(benches);

/// One answer into `out`, outside a benchmark (to have a response to bench on).
fn ctx_answer(shared: &pzdns::state::Shared, snap: &Arc<pzdns::snapshot::Snapshot>, client: &Client, q: &[u8], out: &mut Vec<u8>) {
    let ctx = Ctx { snap, cache: &shared.forwarder.cache, metrics: &shared.metrics, now: std::time::Instant::now() };
    answer(&ctx, client, q, out);
}
