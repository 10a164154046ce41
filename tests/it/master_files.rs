//! `master_file:` zones read as BIND reads them (issue 13), through the
//! real binary: what the file says is what is served, and every problem
//! is named with its line.

use std::path::PathBuf;

use crate::support::*;
use hickory_proto::rr::{RData, RecordType};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-master-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("vpcs.yaml"), "vpcs:\n  - id: vpc-a\n    cidrs: [127.1.0.0/16]\n").unwrap();
    std::fs::write(d.join("c.yaml"), "zone: c.example\nvpcs: [vpc-a]\nmaster_file: c.zone\n").unwrap();
    d
}

fn check(d: &std::path::Path) -> (i32, String) {
    let out = crate::support::pzdns_command().args(["check", "--zones"]).arg(d).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn txt(r: &hickory_proto::op::Message) -> Vec<Vec<Vec<u8>>> {
    r.answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::TXT(t) => Some(t.txt_data.iter().map(|s| s.to_vec()).collect()),
            _ => None,
        })
        .collect()
}

#[test]
fn quoted_strings_parentheses_and_decimal_escapes_are_served_as_written() {
    let d = scratch("served");
    std::fs::write(
        d.join("c.zone"),
        "$TTL 60\n@ IN SOA ns hostmaster 1 3600 900 604800 30\n@ IN NS ns.example.net.\n\
         t IN TXT ( \"x y\" )\n\
         txt IN TXT ( \"part one \"\n          \"part two\" )\n\
         e IN TXT \"\\065\" \"a;b\" \\; a\\\"b\n\
         $GENERATE 1-3 h$ A 10.0.0.$\n\
         r IN TYPE65280 \\# 3 010203\n",
    )
    .unwrap();
    let (code, out) = check(&d);
    assert_eq!(code, 0, "{out}");
    let s = TestServer::start_default(&d, "vpc-a", "");
    let ask = |name: &str, t: RecordType| udp(s.addrs[1], "127.0.0.1", &query(name, t, None));
    assert_eq!(txt(&ask("t.c.example.", RecordType::TXT)), [vec![b"x y".to_vec()]]);
    assert_eq!(txt(&ask("txt.c.example.", RecordType::TXT)), [vec![b"part one ".to_vec(), b"part two".to_vec()]]);
    assert_eq!(txt(&ask("e.c.example.", RecordType::TXT)), [vec![b"A".to_vec(), b"a;b".to_vec(), b";".to_vec(), b"a\"b".to_vec()]]);
    assert_eq!(lines(&ask("h2.c.example.", RecordType::A).answers), ["h2.c.example. A 10.0.0.2"]);
    let r = ask("r.c.example.", RecordType::Unknown(65280));
    assert_eq!(r.answers.len(), 1, "{:?}", r.answers);
    match &r.answers[0].data {
        RData::Unknown { code, rdata } => assert_eq!((*code, rdata.anything.as_slice()), (RecordType::Unknown(65280), &[1u8, 2, 3][..])),
        other => panic!("{other:?}"),
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn out_of_zone_data_is_an_error_with_its_line_not_dropped() {
    let d = scratch("ooz");
    std::fs::write(d.join("c.zone"), "$TTL 60\nwww IN A 10.0.0.1\n$ORIGIN other.example.\nfoo IN A 10.0.0.2\nbar IN A 10.0.0.3\n").unwrap();
    let (code, out) = check(&d);
    assert_eq!(code, 1, "{out}");
    let f = d.join("c.zone");
    for line in [4, 5] {
        let want = format!("{}:{line}:1: ", f.display());
        assert!(out.lines().any(|l| l.starts_with(&want) && l.contains("is outside zone c.example.")), "{want}\n{out}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn every_problem_of_a_master_file_at_once() {
    let d = scratch("five");
    std::fs::write(
        d.join("c.zone"),
        "$TTL 60\nbad IN A 10.0.0.300\nmx IN MX mail\nw IN TXT \"never closed\nx IN BOGUS 1\nd IN DNAME elsewhere.example.\nok IN A 10.0.0.1\n",
    )
    .unwrap();
    let (code, out) = check(&d);
    assert_eq!(code, 1, "{out}");
    let f = d.join("c.zone").display().to_string();
    let problems: Vec<&str> = out.lines().filter(|l| l.starts_with(&f)).collect();
    assert_eq!(problems.len(), 5, "{out}");
    for (at, words) in [
        ("2:10", "`10.0.0.300` is not an IPv4 address"),
        ("3:10", "MX preference `mail` is not a number"),
        ("4:10", "quoted string is not closed"),
        ("5:6", "unknown record type `BOGUS`"),
        ("6:6", "DNAME records are not supported"),
    ] {
        let want = format!("{f}:{at}: ");
        assert!(problems.iter().any(|l| l.starts_with(&want) && l.contains(words)), "{want}{words}\n{out}");
    }
    assert!(out.trim_end().ends_with("5 problems found"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}
