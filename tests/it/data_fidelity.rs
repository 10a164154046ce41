//! What is written is what is served (issue 13): zone YAML is read with no
//! YAML schema applied to text, so every YAML 1.1 / 1.2 boolean, null,
//! number, octal, hex, float and sexagesimal spelling reaches the wire
//! exactly as written, through the real server; typed keys accept only
//! their type.

use std::path::PathBuf;

use crate::support::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

const VPCS: &str = "vpcs:\n  - id: vpc-a\n    cidrs: [127.1.0.0/16]\n";

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-fidelity-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("vpcs.yaml"), VPCS).unwrap();
    d
}

fn check(args: &[&str]) -> (i32, String) {
    let out = crate::support::pzdns_command().args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Spellings a YAML schema would turn into something else, usable as DNS
/// labels (no two equal case-insensitively).
const AS_NAMES: &[&str] = &[
    "y",
    "yes",
    "n",
    "no",
    "true",
    "false",
    "on",
    "off",
    "~",
    "null",
    "010",
    "0o10",
    "0x1f",
    "0b101",
    "1e3",
    "1.10",
    "1_000",
    "1:20",
    "190:20:30",
    "+1",
    "-1",
    "0",
    "0777",
    "12e03",
    "0.0",
    "1e-3",
];

/// Spellings for TXT values: all of the above and their other cases, and
/// those that cannot be DNS names.
const AS_VALUES: &[&str] = &[
    "y",
    "Y",
    "yes",
    "Yes",
    "YES",
    "n",
    "N",
    "no",
    "No",
    "NO",
    "true",
    "True",
    "TRUE",
    "false",
    "False",
    "FALSE",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "~",
    "null",
    "Null",
    "NULL",
    "010",
    "0o10",
    "0x1f",
    "0X1F",
    "0b101",
    "1e3",
    "1E3",
    "1.10",
    "1_000",
    "1:20",
    "190:20:30",
    "+1",
    "-1",
    "0",
    "-0",
    "0777",
    ".inf",
    "-.Inf",
    "+.INF",
    ".nan",
    ".NaN",
    ".5",
    "1.",
    "0.",
    "1.0",
    "6.8523015e+5",
    "685.230_15e+03",
    "0x_0A_74_AE",
    "0b1010_0111_0100_1010_1110",
    "02472256",
    "12_345",
    "-12e-3",
];

fn zone_yaml() -> String {
    let mut y = String::from("zone: fidelity.test\nvpcs: [vpc-a]\nrecords:\n");
    for (i, s) in AS_NAMES.iter().enumerate() {
        y.push_str(&format!("  - {{ name: {s}, type: A, value: 10.0.0.{} }}\n", i + 1));
        y.push_str(&format!("  - name: {s}.sub\n    type: A\n    value: 10.1.0.{}\n", i + 1));
    }
    for (i, s) in AS_VALUES.iter().enumerate() {
        y.push_str(&format!("  - {{ name: t{i}, type: TXT, value: {s} }}\n"));
        y.push_str(&format!("  - name: b{i}\n    type: TXT\n    value: {s}\n"));
    }
    y
}

/// A query for a name given label by label (`~`, `+1` or `1:20` are
/// labels DNS allows and hickory's name parser refuses).
fn query_labels(name: &str, qtype: RecordType) -> Message {
    let labels: Vec<&[u8]> = name.trim_end_matches('.').split('.').map(str::as_bytes).collect();
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_labels(labels).unwrap(), qtype));
    m
}

fn txt_strings(r: &hickory_proto::op::Message) -> Vec<String> {
    r.answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::TXT(t) => Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>().join("|")),
            _ => None,
        })
        .collect()
}

#[test]
fn yaml_names_and_values_are_served_exactly_as_written() {
    let d = scratch("serve");
    std::fs::write(d.join("fidelity.yaml"), zone_yaml()).unwrap();
    let (code, out) = check(&["check", "--zones", d.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let s = TestServer::start_default(&d, "vpc-a", "");
    let at = s.addrs[1];
    for (i, name) in AS_NAMES.iter().enumerate() {
        for (sub, net) in [("", 0), (".sub", 1)] {
            let qname = format!("{name}{sub}.fidelity.test.");
            let q = query_labels(&qname, RecordType::A);
            let r = udp(at, "127.0.0.1", &q);
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{qname}");
            let want = format!("{} A 10.{net}.0.{}", q.queries[0].name(), i + 1);
            assert_eq!(lines(&r.answers), [want], "`name: {name}{sub}` is served as {qname}");
        }
    }
    // What a YAML schema would have made of them does not exist.
    for coerced in ["1.1", "10", "8", "31", "5", "1000", "80", "685830", "0.001"] {
        let qname = format!("{coerced}.fidelity.test.");
        let r = udp(at, "127.0.0.1", &query(&qname, RecordType::A, None));
        // (`10` is an empty non-terminal of `1.10`: it may exist, with no data.)
        assert!(r.answers.is_empty(), "{qname} must have no data: {:?}", lines(&r.answers));
    }
    for (i, value) in AS_VALUES.iter().enumerate() {
        for owner in [format!("t{i}.fidelity.test."), format!("b{i}.fidelity.test.")] {
            let r = udp(at, "127.0.0.1", &query(&owner, RecordType::TXT, None));
            assert_eq!(txt_strings(&r), [value.to_string()], "`value: {value}` at {owner}");
        }
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn typed_keys_accept_only_their_type_with_position() {
    let d = scratch("typed");
    std::fs::write(
        d.join("z.yaml"),
        "zone: typed.test\nvpcs: [vpc-a]\nrecursive_proxy: 'yes'\nttl: \"60\"\nrecords:\n  - { name: a, type: A, value: 10.0.0.1, ttl: 0x3c }\n  - { name: b, type: A, value: 10.0.0.2, ttl: 1e3 }\n",
    )
    .unwrap();
    std::fs::write(d.join("y.yaml"), "zone: typed2.test\nvpcs: [vpc-a]\nrecursive_proxy: yes\n").unwrap();
    let (code, out) = check(&["check", "--zones", d.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let z = d.join("z.yaml");
    let y = d.join("y.yaml");
    let z = z.display();
    let y = y.display();
    for want in [
        format!("{z}:3:18: `recursive_proxy` must be true or false, not the quoted text \"yes\""),
        format!("{z}:4:6: `ttl` must be the number 60 without quotes"),
        format!("{z}:6:47: `ttl` must be a whole number in decimal digits (e.g. 300), not `0x3c`"),
        format!("{z}:7:47: `ttl` must be a whole number in decimal digits (e.g. 300), not `1e3`"),
        format!("{y}:3:18: `recursive_proxy` must be true or false, not `yes`"),
    ] {
        assert!(out.lines().any(|l| l.starts_with(&want)), "missing `{want}` in:\n{out}");
    }
    assert!(out.trim_end().ends_with("5 problems found"), "{out}");

    let cfg = d.join("pzdns.yaml");
    std::fs::write(&cfg, format!("zones_dir: {}\nquery_log: 'yes'\n", d.display())).unwrap();
    std::fs::remove_file(d.join("z.yaml")).unwrap();
    std::fs::remove_file(d.join("y.yaml")).unwrap();
    let (code, out) = check(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("pzdns.yaml:2:12: `query_log` must be true or false, not the quoted text \"yes\""), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn vpc_ids_and_zone_names_are_text_as_written() {
    // A VPC id that a YAML 1.1 schema reads as a number or a boolean.
    let d = scratch("ids");
    std::fs::write(d.join("vpcs.yaml"), "vpcs:\n  - id: 0x10\n    cidrs: [127.1.0.0/16]\n  - id: no\n    cidrs: [127.2.0.0/16]\n").unwrap();
    std::fs::write(d.join("z.yaml"), "zone: 010.test\nvpcs: [0x10, no]\nrecords:\n  - { name: www, type: A, value: 10.0.0.1 }\n").unwrap();
    let (code, out) = check(&["check", "--zones", d.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = check(&["explain", "--zones", d.to_str().unwrap(), "--vpc", "0x10", "www.010.test", "A"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("www.010.test. 60 IN A 10.0.0.1"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}
