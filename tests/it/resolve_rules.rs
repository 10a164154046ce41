//! The answering rules on local data, one test per case, over the fixture in
//! tests/fixtures/rules (no sockets: `resolve` is a pure function).

use std::net::IpAddr;
use std::str::FromStr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use pzdns::resolve::{Route, Source, UpstreamReason, resolve};
use pzdns::snapshot::{Snapshot, View};

fn load() -> Snapshot {
    crate::support::rules_snapshot(&crate::support::rules_config())
}

/// The fixture, loaded once for all the cases.
fn snap() -> &'static Snapshot {
    static S: std::sync::OnceLock<Snapshot> = std::sync::OnceLock::new();
    S.get_or_init(load)
}

fn view(s: &Snapshot, from: &str) -> View {
    s.select_view(None, IpAddr::from_str(from).unwrap()).0
}

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

/// What a test expects: rcode, AA, answers as "owner type rdata" lines,
/// authority types, and the upstream question if any.
struct Case {
    from: &'static str,
    qname: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    aa: bool,
    answers: &'static [&'static str],
    authority_soa: bool,
    upstream: Option<&'static str>,
}

fn run(s: &Snapshot, c: &Case) {
    let r = resolve(s, view(s, c.from), &name(c.qname), c.qtype, false);
    let got: Vec<String> = r.answers.iter().map(|a| format!("{} {} {}", a.name, a.record_type(), a.data)).collect();
    let ctx = format!("{} {} from {}: {:?}", c.qname, c.qtype, c.from, got);
    assert_eq!(r.rcode, c.rcode, "rcode of {ctx}");
    assert_eq!(r.authoritative, c.aa, "AA of {ctx}");
    assert_eq!(got, c.answers, "answers of {ctx}");
    assert_eq!(!r.authority.is_empty(), c.authority_soa, "authority of {ctx}");
    if c.authority_soa {
        assert!(r.authority.iter().all(|a| a.record_type() == RecordType::SOA), "{ctx}");
    }
    assert_eq!(r.upstream.as_ref().map(|u| format!("{} {}", u.name, u.qtype)).as_deref(), c.upstream, "upstream of {ctx}");
}

const NOERR: ResponseCode = ResponseCode::NoError;
const A: RecordType = RecordType::A;
const A_VPC: &str = "127.1.0.5";
const B_VPC: &str = "127.2.0.5";
const C_VPC: &str = "127.130.0.5";

/// One test per case of the local-data rules, named after what it shows.
macro_rules! cases {
    ($($(#[doc = $doc:literal])* $name:ident: $case:expr;)*) => {
        $(
            $(#[doc = $doc])*
            #[test]
            fn $name() {
                run(snap(), &$case);
            }
        )*
    };
}

cases! {
    /// Records of the asked type.
    records_of_the_asked_type: Case {
        from: A_VPC,
        qname: "www.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &["www.example.test. A 10.0.0.1", "www.example.test. A 10.0.0.2"],
        authority_soa: false,
        upstream: None,
    };
    /// Case-insensitive match; the stored owner is returned.
    case_insensitive_match_the_stored_owner_is_returned: Case {
        from: A_VPC,
        qname: "WwW.ExAmple.TEST.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &["www.example.test. A 10.0.0.1", "www.example.test. A 10.0.0.2"],
        authority_soa: false,
        upstream: None,
    };
    /// Exists without that type: NODATA with SOA.
    exists_without_that_type_nodata_with_soa: Case {
        from: A_VPC,
        qname: "www.example.test.",
        qtype: RecordType::TXT,
        rcode: NOERR,
        aa: true,
        answers: &[],
        authority_soa: true,
        upstream: None,
    };
    /// Does not exist: NXDOMAIN with SOA.
    does_not_exist_nxdomain_with_soa: Case {
        from: A_VPC,
        qname: "nope.example.test.",
        qtype: A,
        rcode: ResponseCode::NXDomain,
        aa: true,
        answers: &[],
        authority_soa: true,
        upstream: None,
    };
    /// Empty non-terminal: NODATA, not NXDOMAIN.
    empty_non_terminal_nodata_not_nxdomain: Case {
        from: A_VPC,
        qname: "ent.x.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &[],
        authority_soa: true,
        upstream: None,
    };
    empty_non_terminal_parent_is_nodata_too: Case { from: A_VPC, qname: "x.example.test.", qtype: A, rcode: NOERR, aa: true, answers: &[], authority_soa: true, upstream: None };
    /// Wildcard synthesis (RFC 4592), one and two labels deep.
    wildcard_synthesis_rfc_4592_one_and_two_labels: Case {
        from: A_VPC,
        qname: "foo.app.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &["foo.app.example.test. A 10.0.0.9"],
        authority_soa: false,
        upstream: None,
    };
    wildcard_synthesis_two_labels_deep: Case {
        from: A_VPC,
        qname: "a.b.app.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &["a.b.app.example.test. A 10.0.0.9"],
        authority_soa: false,
        upstream: None,
    };
    /// Wildcard owner exists but not for the type: NODATA.
    wildcard_owner_exists_but_not_for_the_type: Case {
        from: A_VPC,
        qname: "foo.app.example.test.",
        qtype: RecordType::MX,
        rcode: NOERR,
        aa: true,
        answers: &[],
        authority_soa: true,
        upstream: None,
    };
    /// An existing name beats the wildcard: host.app has AAAA only, so A is NODATA.
    an_existing_name_beats_the_wildcard_host_app: Case {
        from: A_VPC,
        qname: "host.app.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &[],
        authority_soa: true,
        upstream: None,
    };
    /// The wildcard's own parent (an ENT) is not covered by it.
    the_wildcard_s_own_parent_an_ent_is: Case {
        from: A_VPC,
        qname: "app.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &[],
        authority_soa: true,
        upstream: None,
    };
    /// Below an existing name without wildcard: NXDOMAIN (no wildcard at www).
    below_an_existing_name_without_wildcard_nxdomain_no: Case {
        from: A_VPC,
        qname: "x.www.example.test.",
        qtype: A,
        rcode: ResponseCode::NXDomain,
        aa: true,
        answers: &[],
        authority_soa: true,
        upstream: None,
    };
    /// CNAME inside the zone is followed.
    cname_inside_the_zone_is_followed: Case {
        from: A_VPC,
        qname: "alias.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &["alias.example.test. CNAME www.example.test.", "www.example.test. A 10.0.0.1", "www.example.test. A 10.0.0.2"],
        authority_soa: false,
        upstream: None,
    };
    /// Asking for the CNAME itself does not follow it.
    asking_for_the_cname_itself_does_not_follow: Case {
        from: A_VPC,
        qname: "alias.example.test.",
        qtype: RecordType::CNAME,
        rcode: NOERR,
        aa: true,
        answers: &["alias.example.test. CNAME www.example.test."],
        authority_soa: false,
        upstream: None,
    };
    /// A chain of two links.
    a_chain_of_two_links: Case {
        from: A_VPC,
        qname: "chain1.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &[
            "chain1.example.test. CNAME chain2.example.test.",
            "chain2.example.test. CNAME www.example.test.",
            "www.example.test. A 10.0.0.1",
            "www.example.test. A 10.0.0.2",
        ],
        authority_soa: false,
        upstream: None,
    };
    /// Wildcard CNAME: synthesised with the query name as owner, then followed.
    wildcard_cname_synthesised_with_the_query_name_as: Case {
        from: A_VPC,
        qname: "q.wc.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &["q.wc.example.test. CNAME www.example.test.", "www.example.test. A 10.0.0.1", "www.example.test. A 10.0.0.2"],
        authority_soa: false,
        upstream: None,
    };
    /// CNAME to a missing local name: NXDOMAIN after the chain (RFC 6604).
    cname_to_a_missing_local_name_nxdomain_after: Case {
        from: A_VPC,
        qname: "tomissing.example.test.",
        qtype: A,
        rcode: ResponseCode::NXDomain,
        aa: true,
        answers: &["tomissing.example.test. CNAME nothere.example.test."],
        authority_soa: true,
        upstream: None,
    };
    /// CNAME leaving local data: the target goes upstream.
    cname_leaving_local_data_the_target_goes_upstream: Case {
        from: A_VPC,
        qname: "ext.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &["ext.example.test. CNAME outside.example.org."],
        authority_soa: false,
        upstream: Some("outside.example.org. A"),
    };
    /// CNAME into a recursive_proxy zone where the target is missing: upstream.
    cname_into_a_recursive_proxy_zone_where_the: Case {
        from: A_VPC,
        qname: "toproxy.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &["toproxy.example.test. CNAME gone.proxy.test."],
        authority_soa: false,
        upstream: Some("gone.proxy.test. A"),
    };
    /// Apex CNAME (the seed case): A, AAAA, TXT... all answer with the CNAME, target upstream.
    apex_cname_the_seed_case_a_aaaa_txt: Case {
        from: A_VPC,
        qname: "ecs.cn-hangzhou.aliyuncs.com.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &["ecs.cn-hangzhou.aliyuncs.com. CNAME popunify-vpc.cn-hangzhou.aliyuncs.com."],
        authority_soa: false,
        upstream: Some("popunify-vpc.cn-hangzhou.aliyuncs.com. A"),
    };
    apex_cname_answers_txt_too: Case {
        from: A_VPC,
        qname: "ecs.cn-hangzhou.aliyuncs.com.",
        qtype: RecordType::TXT,
        rcode: NOERR,
        aa: true,
        answers: &["ecs.cn-hangzhou.aliyuncs.com. CNAME popunify-vpc.cn-hangzhou.aliyuncs.com."],
        authority_soa: false,
        upstream: Some("popunify-vpc.cn-hangzhou.aliyuncs.com. TXT"),
    };
    /// ...but SOA and NS at that apex come from the zone.
    but_soa_and_ns_at_that_apex_come: Case {
        from: A_VPC,
        qname: "ecs.cn-hangzhou.aliyuncs.com.",
        qtype: RecordType::NS,
        rcode: NOERR,
        aa: true,
        answers: &["ecs.cn-hangzhou.aliyuncs.com. NS ns.pzdns.invalid."],
        authority_soa: false,
        upstream: None,
    };
    /// Below the apex-CNAME zone: NXDOMAIN (not a recursive proxy).
    below_the_apex_cname_zone_nxdomain_not_a: Case {
        from: A_VPC,
        qname: "x.ecs.cn-hangzhou.aliyuncs.com.",
        qtype: A,
        rcode: ResponseCode::NXDomain,
        aa: true,
        answers: &[],
        authority_soa: true,
        upstream: None,
    };
    /// Overlapping zones bound to different VPCs: vpc-b sees aliyuncs.com's A.
    overlapping_zones_bound_to_different_vpcs_vpc_b: Case {
        from: B_VPC,
        qname: "ecs.cn-hangzhou.aliyuncs.com.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &["ecs.cn-hangzhou.aliyuncs.com. A 100.100.0.1"],
        authority_soa: false,
        upstream: None,
    };
    /// ...and vpc-c, bound to neither, goes to the public authority.
    and_vpc_c_bound_to_neither_goes_to: Case {
        from: C_VPC,
        qname: "ecs.cn-hangzhou.aliyuncs.com.",
        qtype: A,
        rcode: NOERR,
        aa: false,
        answers: &[],
        authority_soa: false,
        upstream: Some("ecs.cn-hangzhou.aliyuncs.com. A"),
    };
    /// recursive_proxy: present names are local, missing ones go upstream.
    recursive_proxy_present_names_are_local_missing_ones: Case {
        from: A_VPC,
        qname: "known.proxy.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &["known.proxy.test. A 10.9.9.9"],
        authority_soa: false,
        upstream: None,
    };
    recursive_proxy_missing_name_goes_upstream: Case {
        from: A_VPC,
        qname: "missing.proxy.test.",
        qtype: A,
        rcode: NOERR,
        aa: false,
        answers: &[],
        authority_soa: false,
        upstream: Some("missing.proxy.test. A"),
    };
    /// ...but an existing name without the type is still NODATA.
    but_an_existing_name_without_the_type_is: Case {
        from: A_VPC,
        qname: "known.proxy.test.",
        qtype: RecordType::TXT,
        rcode: NOERR,
        aa: true,
        answers: &[],
        authority_soa: true,
        upstream: None,
    };
    /// Apex SOA is answered.
    apex_soa_is_answered: Case {
        from: A_VPC,
        qname: "example.test.",
        qtype: RecordType::MX,
        rcode: NOERR,
        aa: true,
        answers: &["example.test. MX 10 mail.example.test."],
        authority_soa: false,
        upstream: None,
    };
    /// IPv6 client of vpc-a.
    ipv6_client_of_vpc_a: Case {
        from: "2001:db8:a::53",
        qname: "www.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: true,
        answers: &["www.example.test. A 10.0.0.1", "www.example.test. A 10.0.0.2"],
        authority_soa: false,
        upstream: None,
    };
    /// A zone invisible to vpc-b: example.test is bound to vpc-a and vpc-c only.
    a_zone_invisible_to_vpc_b_example_test: Case {
        from: B_VPC,
        qname: "www.example.test.",
        qtype: A,
        rcode: NOERR,
        aa: false,
        answers: &[],
        authority_soa: false,
        upstream: Some("www.example.test. A"),
    };
    /// RFC 8482 ANY: one RRset.
    rfc_8482_any_one_rrset: Case {
        from: A_VPC,
        qname: "www.example.test.",
        qtype: RecordType::ANY,
        rcode: NOERR,
        aa: true,
        answers: &["www.example.test. A 10.0.0.1", "www.example.test. A 10.0.0.2"],
        authority_soa: false,
        upstream: None,
    };
}

#[test]
fn master_file_zone_with_apex_cname() {
    let s = snap();
    let r = resolve(s, view(s, A_VPC), &name("ecs.cn-shanghai.aliyuncs.com."), A, false);
    let got: Vec<String> = r.answers.iter().map(|a| format!("{} {} {}", a.name, a.ttl, a.data)).collect();
    assert_eq!(got, ["ecs.cn-shanghai.aliyuncs.com. 60 popunify-vpc.cn-shanghai.aliyuncs.com."]);
    assert_eq!(r.upstream.unwrap().name, name("popunify-vpc.cn-shanghai.aliyuncs.com."));
    // SOA from the file; its negative TTL is min(SOA TTL, MINIMUM) = 30.
    let r = resolve(s, view(s, A_VPC), &name("x.ecs.cn-shanghai.aliyuncs.com."), A, false);
    assert_eq!(r.rcode, ResponseCode::NXDomain);
    assert_eq!(r.authority[0].ttl, 30);
    assert!(r.authority[0].data.to_string().starts_with("ns1.example.net. hostmaster.example.net. 2024010101"));
    let r = resolve(s, view(s, A_VPC), &name("ecs.cn-shanghai.aliyuncs.com."), RecordType::NS, false);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].data.to_string(), "ns1.example.net.");
}

#[test]
fn endpoint_names() {
    let s = snap();
    let base = "ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com.";
    let cases = [
        // Endpoint domain: every Connected zone's address; the Disconnected zone is left out.
        Case {
            from: A_VPC,
            qname: base,
            qtype: A,
            rcode: NOERR,
            aa: true,
            answers: &[
                "ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com. A 192.168.1.1",
                "ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com. A 192.168.2.2",
            ],
            authority_soa: false,
            upstream: None,
        },
        Case {
            from: A_VPC,
            qname: base,
            qtype: RecordType::AAAA,
            rcode: NOERR,
            aa: true,
            answers: &["ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com. AAAA 2408::2"],
            authority_soa: false,
            upstream: None,
        },
        // Zonal domain: that zone's address only.
        Case {
            from: A_VPC,
            qname: "ep-1-cn-hangzhou-k.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com.",
            qtype: A,
            rcode: NOERR,
            aa: true,
            answers: &["ep-1-cn-hangzhou-k.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com. A 192.168.2.2"],
            authority_soa: false,
            upstream: None,
        },
        // Private DNS name.
        Case {
            from: A_VPC,
            qname: "api.vendor.example.",
            qtype: A,
            rcode: NOERR,
            aa: true,
            answers: &["api.vendor.example. A 192.168.1.1", "api.vendor.example. A 192.168.2.2"],
            authority_soa: false,
            upstream: None,
        },
        // The Disconnected zone's zonal name is not published at all: upstream.
        Case {
            from: A_VPC,
            qname: "ep-1-cn-hangzhou-z.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com.",
            qtype: A,
            rcode: NOERR,
            aa: false,
            answers: &[],
            authority_soa: false,
            upstream: Some("ep-1-cn-hangzhou-z.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com. A"),
        },
        // Not visible to another VPC.
        Case {
            from: C_VPC,
            qname: base,
            qtype: A,
            rcode: NOERR,
            aa: false,
            answers: &[],
            authority_soa: false,
            upstream: Some("ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com. A"),
        },
        // A Pending endpoint publishes nothing, even to its own VPC.
        Case {
            from: C_VPC,
            qname: "ep-2.epsrv-2.cn-hangzhou.privatelink.aliyuncs.com.",
            qtype: A,
            rcode: NOERR,
            aa: false,
            answers: &[],
            authority_soa: false,
            upstream: Some("ep-2.epsrv-2.cn-hangzhou.privatelink.aliyuncs.com. A"),
        },
    ];
    for c in &cases {
        run(s, c);
    }
    // A client in the cn-hangzhou-k vSwitch gets its own zone's address first.
    let r = resolve(s, view(s, "127.1.2.7"), &name(base), A, false);
    let got: Vec<String> = r.answers.iter().map(|a| a.data.to_string()).collect();
    assert_eq!(got, ["192.168.2.2", "192.168.1.1"]);
    // vpc-b's own aliyuncs.com zone covers the privatelink names: NXDOMAIN there, not a leak.
    let r = resolve(s, view(s, B_VPC), &name(base), A, false);
    assert_eq!(r.rcode, ResponseCode::NXDomain);
    assert!(r.answers.is_empty());
}

#[test]
fn views_and_routes() {
    let s = snap();
    // Longest prefix: 127.129/16 is vpc-a although 127.128/9 (vpc-c) also holds it.
    let vpc_of = |ip: &str| match view(s, ip) {
        View::Vpc { vpc, .. } => Some(s.vpcs[vpc as usize].id.clone()),
        View::Unknown => None,
    };
    assert_eq!(vpc_of("127.1.200.1").as_deref(), Some("vpc-a"));
    assert_eq!(vpc_of("127.129.200.1").as_deref(), Some("vpc-a"));
    assert_eq!(vpc_of("127.200.0.1").as_deref(), Some("vpc-c"));
    assert_eq!(vpc_of("127.2.0.1").as_deref(), Some("vpc-b"));
    assert_eq!(vpc_of("127.9.0.1"), None);
    assert_eq!(vpc_of("::1"), None);
    assert_eq!(vpc_of("::ffff:127.2.0.1").as_deref(), Some("vpc-b"));
    // The listener bound to vpc-b wins over the source address.
    let (v, _) = s.select_view(Some(1), "127.1.0.5".parse().unwrap());
    assert!(matches!(v, View::Vpc { vpc, .. } if s.vpcs[vpc as usize].id == "vpc-b"));
    // Unknown client under `refuse`: REFUSED, no data at all.
    let r = resolve(s, View::Unknown, &name("www.example.test."), A, false);
    assert_eq!(r.rcode, ResponseCode::Refused);
    assert!(r.answers.is_empty() && r.upstream.is_none());
    assert_eq!(r.source, Source::Refused);
    // Forward zones: vpc-a sees corp.example's forwarder, vpc-b does not.
    let r = resolve(s, view(s, A_VPC), &name("db.corp.example."), A, false);
    assert_eq!(r.upstream.unwrap().route, Route::ForwardZone(0));
    let r = resolve(s, view(s, B_VPC), &name("db.corp.example."), A, false);
    assert_eq!(r.upstream.unwrap().route, Route::Default);
    // A forward zone without `vpcs` applies to every VPC.
    let r = resolve(s, view(s, B_VPC), &name("x.shared.example."), A, false);
    let u = r.upstream.unwrap();
    assert_eq!(u.route, Route::ForwardZone(1));
    assert_eq!(u.reason, UpstreamReason::OutsideZones);
    // A CNAME target under a forward zone goes to that forwarder.
    let r = resolve(s, view(s, A_VPC), &name("corp-link.example.test."), A, false);
    let u = r.upstream.unwrap();
    assert_eq!((u.route, u.reason), (Route::ForwardZone(0), UpstreamReason::CnameTarget));
}

#[test]
fn unknown_clients_forward_never_sees_private_data() {
    let mut cfg = crate::support::rules_config();
    cfg.unknown_clients = pzdns::config::UnknownClients::Forward;
    let s = &pzdns::loader::load(&cfg, 1).unwrap();
    for q in ["www.example.test.", "ecs.cn-hangzhou.aliyuncs.com.", "ep-1.epsrv-1.cn-hangzhou.privatelink.aliyuncs.com."] {
        let r = resolve(s, View::Unknown, &name(q), A, false);
        assert!(r.answers.is_empty() && r.authority.is_empty() && !r.authoritative, "{q}");
        assert_eq!(r.upstream.unwrap().route, Route::Default, "{q}");
    }
    // Forward zones are not for clients in no VPC, scoped or not...
    let r = resolve(s, View::Unknown, &name("db.corp.example."), A, false);
    assert_eq!(r.upstream.unwrap().route, Route::Default);
    let r = resolve(s, View::Unknown, &name("db.shared.example."), A, false);
    assert_eq!(r.upstream.unwrap().route, Route::Default);
    // ...unless the entry says so.
    cfg.forward_zones[1].unknown_clients = true;
    let s = &pzdns::loader::load(&cfg, 1).unwrap();
    let r = resolve(s, View::Unknown, &name("db.shared.example."), A, false);
    assert_eq!(r.upstream.unwrap().route, Route::ForwardZone(1));
}

#[test]
fn explain_says_why() {
    let s = snap();
    let out =
        pzdns::explain::explain(s, &pzdns::explain::Asker::From("127.1.0.5".parse().unwrap()), &name("ecs.cn-hangzhou.aliyuncs.com."), A)
            .unwrap();
    assert!(out.contains("view:     vpc-a (source 127.1.0.5 is in 127.1.0.0/16)"), "{out}");
    assert!(out.contains("is a CNAME → follow popunify-vpc.cn-hangzhou.aliyuncs.com."), "{out}");
    assert!(out.contains("forward popunify-vpc.cn-hangzhou.aliyuncs.com. A upstream via upstreams 127.0.0.1:5311"), "{out}");
    let err = pzdns::explain::explain(s, &pzdns::explain::Asker::Vpc("vpc-zz".into()), &name("x."), A).unwrap_err();
    assert!(err.contains("unknown VPC `vpc-zz`"), "{err}");
}
