//! `pzdns check` reports every problem at once, each with path:line:col and
//! words a user understands (issue 13): type errors, unknown and duplicate
//! keys, "did you mean", reserved VPC ids, CIDRs that can never match,
//! upstreams nothing can be sent to, duplicate forward zones, and limits
//! that end in an error rather than an empty load.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-problems-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("zones")).unwrap();
    std::fs::write(
        d.join("zones/vpcs.yaml"),
        "vpcs:\n  - id: vpc-hz-prod\n    cidrs: [10.0.0.0/16]\n  - id: vpc-bj-dev\n    cidrs: [10.1.0.0/16]\n",
    )
    .unwrap();
    d
}

fn pzdns(args: &[&str]) -> (i32, String) {
    let out = crate::support::pzdns_command().args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn check_zones(d: &Path) -> (i32, String) {
    pzdns(&["check", "--zones", d.join("zones").to_str().unwrap()])
}

/// Each `(at, words)`: a line starting with `path:at: ` containing `words`.
fn expect(out: &str, path: &Path, wanted: &[(&str, &str)]) {
    for (at, words) in wanted {
        let start = format!("{}:{at}: ", path.display());
        assert!(out.lines().any(|l| l.starts_with(&start) && l.contains(words)), "missing `{start}…{words}` in:\n{out}");
    }
}

#[test]
fn five_different_problems_in_one_file_print_five_lines() {
    let d = scratch("five");
    let z = d.join("zones/z.yaml");
    std::fs::write(
        &z,
        "zone: z.test\nvpcs: [vpc-hz-prd]\nttl: 1h\nrecursive_proxy: 'yes'\nrecods: []\nrecords:\n  - { name: www, type: A, value: 10.0.0.256 }\n",
    )
    .unwrap();
    let (code, out) = check_zones(&d);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with(z.to_str().unwrap())).collect();
    assert_eq!(lines.len(), 5, "{out}");
    expect(
        &out,
        &z,
        &[
            ("2:8", "unknown VPC id `vpc-hz-prd`; did you mean `vpc-hz-prod`?"),
            ("3:6", "`ttl` must be a whole number in decimal digits (e.g. 300), not `1h`"),
            ("4:18", "`recursive_proxy` must be true or false, not the quoted text \"yes\""),
            ("5:1", "unknown field `recods` in a zone file; did you mean `records`?"),
            ("7:34", "`10.0.0.256` is not an IPv4 address"),
        ],
    );
    assert!(out.trim_end().ends_with("5 problems found"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn duplicate_keys_missing_keys_and_non_yaml_in_plain_words() {
    let d = scratch("keys");
    let z = d.join("zones/z.yaml");
    std::fs::write(&z, "zone: z.test\nvpcs: [vpc-hz-prod]\nzone: y.test\nrecords:\n  - { name: www, type: A }\n").unwrap();
    let t = d.join("zones/text.yaml");
    std::fs::write(&t, "this is not a zone file\n").unwrap();
    let (code, out) = check_zones(&d);
    assert_eq!(code, 1, "{out}");
    expect(
        &out,
        &z,
        &[("3:1", "`zone` is given twice in a zone file (first at line 1); keep one of them"), ("5:5", "a record has no `value`")],
    );
    expect(&out, &t, &[("1:1", "a zone file must be a mapping (`key: value` lines), found `this is not a zone file`")]);
    assert!(!out.contains("DuplicateKeyPolicy") && !out.contains("expected mapping start"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn reserved_vpc_ids_and_ipv4_mapped_cidrs_are_refused() {
    let d = scratch("vpcs");
    let v = d.join("zones/vpcs.yaml");
    std::fs::write(
        &v,
        "vpcs:\n  - id: unknown\n    cidrs: [10.9.0.0/16]\n  - id: vpc-x\n    cidrs: [\"::ffff:127.0.130.0/120\", 10.8.0.0/16]\n",
    )
    .unwrap();
    let (code, out) = check_zones(&d);
    assert_eq!(code, 1, "{out}");
    expect(
        &out,
        &v,
        &[
            ("2:9", "`unknown` cannot be a VPC id: pzdns uses it for clients in no VPC"),
            (
                "5:13",
                "`::ffff:127.0.130.0/120` is an IPv4-mapped IPv6 range: IPv4 clients arrive with IPv4 addresses, so it can never match; write it as 127.0.130.0/24",
            ),
        ],
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn upstreams_that_cannot_be_asked_and_duplicate_forward_zones_are_refused() {
    let d = scratch("upstreams");
    let cfg = d.join("pzdns.yaml");
    std::fs::write(
        &cfg,
        "zones_dir: zones\nupstreams: [127.0.0.1:0, 255.255.255.255, 0.0.0.0, 224.0.0.1, 223.5.5.5]\nforward_zones:\n  - domain: corp.example.com\n    upstreams: [10.1.1.53]\n  - domain: Corp.Example.Com.\n    upstreams: [10.1.1.54]\n  - domain: lab.example.com\n    upstreams: [10.1.1.55]\n    vpcs: [vpc-hz-prod]\n  - domain: lab.example.com\n    upstreams: [10.1.1.56]\n    vpcs: [vpc-bj-dev]\n  - domain: lab.example.com\n    upstreams: [10.1.1.57:0]\n    vpcs: [vpc-bj-dev, vpc-hz-prod]\n",
    )
    .unwrap();
    let (code, out) = pzdns(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    expect(
        &out,
        &cfg,
        &[
            ("2:13", "upstream `127.0.0.1:0` has port 0"),
            ("2:26", "upstream `255.255.255.255` is a broadcast or multicast address"),
            ("2:43", "upstream `0.0.0.0` is the unspecified address"),
            ("2:52", "upstream `224.0.0.1` is a broadcast or multicast address"),
            ("6:13", "forward zone Corp.Example.Com. is given twice for the same VPCs (first at line 4)"),
            ("15:17", "upstream `10.1.1.57:0` has port 0"),
            ("14:13", "forward zone lab.example.com. is given twice for the same VPCs (first at line 8)"),
        ],
    );
    // Disjoint VPCs: the same domain may be forwarded differently per VPC.
    assert!(!out.contains(&format!("{}:11:", cfg.display())), "{out}");
    assert!(out.trim_end().ends_with("7 problems found"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

/// At exactly 100,000 files everything loads; one more and the check fails
/// with the limit named (tests/data_bounds.rs covers 100,001). Before, at
/// exactly 100,000, `check` said `ok: 0 zones` and exited 0.
#[test]
fn exactly_100000_files_load_they_do_not_vanish() {
    let d = scratch("limit");
    let z = d.join("zones");
    std::fs::write(z.join("vpcs.yaml"), "vpcs: []\n").unwrap();
    // Hard links to one zone file bound to no VPC: cheap to make, and the
    // same zone name bound to no VPC twice is not a conflict.
    // (A file has at most 65,000 links on ext4: one source per 10,000.)
    for i in 0..99_999 {
        let sub = z.join(format!("d{}", i / 1000));
        let one = d.join(format!("one{}.yaml", i / 10_000));
        if i % 10_000 == 0 {
            std::fs::write(&one, "zone: z.test\nvpcs: []\n").unwrap();
        }
        if i % 1000 == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        std::fs::hard_link(&one, sub.join(format!("z{i}.yaml"))).unwrap();
    }
    let t = Instant::now();
    let (code, out) = check_zones(&d);
    assert_eq!(code, 0, "{}", &out[..out.len().min(2000)]);
    assert!(out.starts_with("ok: 99999 zones, "), "{out}");
    assert!(out.contains("from 100000 files"), "{out}");
    eprintln!("100,000 files checked in {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(120));
    let _ = std::fs::remove_dir_all(&d);
}

/// Issue 26: a full name without its final dot in `name:` is the zone's
/// name twice (`www.w.test` in zone `w.test` is `www.w.test.w.test.`).
#[test]
fn a_full_name_without_its_final_dot_is_reported_with_both_fixes() {
    let d = scratch("fqdn");
    let z = d.join("zones/w.yaml");
    std::fs::write(
        &z,
        "zone: w.test\nvpcs: [vpc-hz-prod]\nrecords:\n  - { name: www.w.test, type: A, value: 10.0.0.1 }\n  - { name: W.TEST, type: A, value: 10.0.0.2 }\n  - { name: ok.w.test.w.test., type: A, value: 10.0.0.3 }\n  - { name: www.w.tests, type: A, value: 10.0.0.4 }\n",
    )
    .unwrap();
    let (code, out) = check_zones(&d);
    assert_eq!(code, 1, "{out}");
    expect(
        &out,
        &z,
        &[
            (
                "4:13",
                "name `www.w.test` ends with the zone's own name, so it means `www.w.test.w.test.`; did you mean `www.w.test.` (absolute) or `www`?",
            ),
            ("5:13", "did you mean `W.TEST.` (absolute) or `@`?"),
        ],
    );
    // Written absolute, a name that repeats the zone's is what it says; a
    // label that only starts like the zone's name is no repetition.
    assert!(out.trim_end().ends_with("2 problems found"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Issue 26: an IP address where a name belongs is served as a name (the
/// CNAME `10.0.0.1.` is then asked upstream): each is reported, with the fix.
#[test]
fn an_address_where_a_name_belongs_is_reported() {
    let d = scratch("ipname");
    let z = d.join("zones/w.yaml");
    std::fs::write(
        &z,
        r#"zone: w.test
vpcs: [vpc-hz-prod]
records:
  - { name: c, type: CNAME, value: 10.0.0.1 }
  - { name: c6, type: CNAME, value: "2001:db8::1" }
  - { name: m, type: MX, value: "10 10.0.0.25" }
  - { name: s, type: SRV, value: "10 60 5060 10.0.0.7." }
  - { name: p, type: PTR, value: 10.0.0.8 }
  - { name: n, type: NS, value: 10.0.0.9 }
  - { name: fine, type: CNAME, value: 10.0.0.9.in-addr.example }
  - { name: mx2, type: MX, value: "10 10mail.w.test" }
"#,
    )
    .unwrap();
    let (code, out) = check_zones(&d);
    assert_eq!(code, 1, "{out}");
    expect(
        &out,
        &z,
        &[
            ("4:36", "a CNAME target is a name; `10.0.0.1` is an address: did you mean an A record (`type: A, value: 10.0.0.1`)?"),
            ("5:37", "did you mean an AAAA record (`type: AAAA, value: 2001:db8::1`)?"),
            ("6:33", "an MX exchange is a name; `10.0.0.25` is an address"),
            ("7:34", "an SRV target is a name; `10.0.0.7` is an address"),
            ("8:34", "a PTR target is a name; `10.0.0.8` is an address"),
            ("9:33", "an NS target is a name; `10.0.0.9` is an address"),
        ],
    );
    assert!(out.trim_end().ends_with("6 problems found"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Issue 26: white space around a name, id or value was trimmed without a
/// word while white space inside one is an error: both are problems now.
#[test]
fn white_space_around_names_ids_and_values_is_reported() {
    let d = scratch("spaces");
    let z = d.join("zones/w.yaml");
    std::fs::write(
        &z,
        "zone: 'w.test '\nvpcs: [' vpc-hz-prod']\nrecords:\n  - { name: ' www', type: A, value: '10.0.0.1 ' }\n  - { name: t, type: TXT, value: ' hello' }\n  - { name: in side, type: A, value: 10.0.0.2 }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("zones/endpoints.yaml"),
        "endpoints:\n  - id: 'ep-1 '\n    service: epsrv-1\n    region: cn-hangzhou\n    vpc: vpc-hz-prod\n    zones:\n      - { zone: cn-hangzhou-b, ip: ' 10.0.1.7' }\n",
    )
    .unwrap();
    let (code, out) = check_zones(&d);
    assert_eq!(code, 1, "{out}");
    expect(
        &out,
        &z,
        &[
            ("1:7", "zone `w.test ` has white space at its end; remove it: `w.test`"),
            ("2:8", "VPC id ` vpc-hz-prod` has white space at its start; remove it: `vpc-hz-prod`"),
            ("4:13", "name ` www` has white space at its start"),
            ("4:37", "value `10.0.0.1 ` has white space at its end"),
            ("5:34", "value ` hello` has white space at its start"),
            ("6:13", "`in side` is not a domain name: it contains white space"),
        ],
    );
    let e = d.join("zones/endpoints.yaml");
    expect(&out, &e, &[("2:9", "endpoint id `ep-1 ` has white space at its end"), ("7:36", "ip ` 10.0.1.7` has white space at its start")]);
    assert!(out.trim_end().ends_with("8 problems found"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Issue 26: a CNAME loop is reported with the file's other problems, not
/// only once they are fixed: a zone with a problem (an unknown VPC id,
/// data beside a CNAME) is still walked in the same pass.
#[test]
fn a_cname_loop_is_reported_with_the_files_other_problems() {
    let d = scratch("loop");
    let z = d.join("zones/w.yaml");
    std::fs::write(
        &z,
        "zone: w.test\nvpcs: [vpc-hz-prd]\nrecords:\n  - { name: l1, type: CNAME, value: l2.w.test }\n  - { name: l2, type: CNAME, value: l1.w.test }\n",
    )
    .unwrap();
    let y = d.join("zones/y.yaml");
    std::fs::write(
        &y,
        "zone: y.test\nvpcs: [vpc-hz-prod]\nrecords:\n  - { name: l1, type: CNAME, value: l2.y.test }\n  - { name: l2, type: CNAME, value: l1.y.test }\n  - { name: l2, type: A, value: 10.0.0.1 }\n",
    )
    .unwrap();
    let (code, out) = check_zones(&d);
    assert_eq!(code, 1, "{out}");
    expect(
        &out,
        &z,
        &[
            ("2:8", "unknown VPC id `vpc-hz-prd`; did you mean `vpc-hz-prod`?"),
            ("4:37", "CNAME loop: the chain comes back to l1.w.test."),
            ("5:37", "CNAME loop: the chain comes back to l2.w.test."),
        ],
    );
    expect(
        &out,
        &y,
        &[
            ("4:37", "CNAME loop: the chain comes back to l1.y.test. in the view of VPC `vpc-hz-prod`"),
            ("6:33", "A record beside a CNAME at l2.y.test."),
        ],
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Issue 26: with vpcs.yaml missing, every reference to a VPC id is
/// reported, saying the file is missing, and the checks that need the
/// zones a VPC sees (two zones of one name, CNAME loops) still run.
#[test]
fn without_vpcs_yaml_every_reference_and_every_other_problem_is_reported() {
    let d = scratch("novpcs");
    std::fs::remove_file(d.join("zones/vpcs.yaml")).unwrap();
    let a = d.join("zones/a.yaml");
    std::fs::write(&a, "zone: w.test\nvpcs: [vpc-hz-prod, vpc-bj-dev]\nrecords:\n  - { name: l1, type: CNAME, value: l1.w.test }\n")
        .unwrap();
    let b = d.join("zones/b.yaml");
    std::fs::write(&b, "zone: w.test\nvpcs: [vpc-hz-prod]\n").unwrap();
    let (code, out) = check_zones(&d);
    assert_eq!(code, 1, "{out}");
    let missing = format!("{} does not exist", d.join("zones/vpcs.yaml").display());
    expect(&out, &a, &[("2:8", &missing), ("2:21", &missing), ("4:37", "CNAME loop")]);
    expect(
        &out,
        &b,
        &[("2:8", &missing), ("2:8", &format!("zone w.test. is bound to VPC `vpc-hz-prod` twice: also at {}:1", a.display()))],
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Issue 26: an endpoint's private DNS name is a zone of its own, hiding a
/// zone file's records at and under it in the endpoint's VPCs: reported,
/// naming the endpoint and the zone file.
#[test]
fn an_endpoint_name_that_hides_a_zones_records_is_reported() {
    let d = scratch("shadow");
    let z = d.join("zones/proxy.yaml");
    std::fs::write(
        &z,
        "zone: vpc-proxy.aliyuncs.com\nvpcs: [vpc-hz-prod, vpc-bj-dev]\nrecords:\n  - { name: a.openapi, type: A, value: 10.9.9.9 }\n  - { name: other, type: A, value: 10.9.9.8 }\n",
    )
    .unwrap();
    let e = d.join("zones/endpoints.yaml");
    std::fs::write(
        &e,
        "endpoints:\n  - id: ep-1\n    service: epsrv-1\n    region: cn-hangzhou\n    vpc: vpc-hz-prod\n    zones:\n      - { zone: cn-hangzhou-b, ip: 10.0.1.7 }\n    private_dns_names: [new.vpc-proxy.aliyuncs.com, openapi.vpc-proxy.aliyuncs.com]\n",
    )
    .unwrap();
    let (code, out) = check_zones(&d);
    assert_eq!(code, 1, "{out}");
    expect(
        &out,
        &e,
        &[(
            "8:53",
            &format!(
                "endpoint `ep-1` publishes openapi.vpc-proxy.aliyuncs.com., which hides the records at and under that name in zone vpc-proxy.aliyuncs.com. ({}:1) from VPC `vpc-hz-prod`",
                z.display()
            ),
        )],
    );
    assert!(out.trim_end().ends_with("1 problem found"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}
