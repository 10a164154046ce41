//! Record types operators put in private zones beyond the first nine
//! (issue 13): HTTPS, SVCB, TLSA, SSHFP, NAPTR and any type in RFC 3597
//! form, in YAML and master files alike, served through the real server;
//! types whose answering pzdns does not implement are refused by name.

use std::path::PathBuf;

use crate::support::*;
use hickory_proto::rr::{RData, RecordType};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-types-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("vpcs.yaml"), "vpcs:\n  - id: vpc-a\n    cidrs: [127.1.0.0/16]\n").unwrap();
    d
}

fn check(d: &std::path::Path) -> (i32, String) {
    let out = crate::support::pzdns_command().args(["check", "--zones"]).arg(d).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

const YAML: &str = r#"zone: types.test
vpcs: [vpc-a]
records:
  - { name: "@", type: HTTPS, value: '1 . alpn="h3,h2" port=8443 ipv4hint=10.0.0.80' }
  - { name: _dns, type: SVCB, value: "1 dns.types.test alpn=dot port=853" }
  - { name: _443._tcp.www, type: TLSA, value: "3 1 1 2BB183AF3D8F7B5C45C6E2B7A5F7B1B91C3D0F2E8A6B4C2D1E0F9A8B7C6D5E4F" }
  - { name: host, type: SSHFP, value: "4 2 123456789abcdef67890123456789abcdef67890123456789abcdef123456789" }
  - { name: sip, type: NAPTR, value: '100 10 "S" "SIP+D2U" "" _sip._udp.types.test' }
  - { name: private, type: TYPE65280, value: '\# 4 0A000001' }
  - { name: hinfo, type: hinfo, value: '"x86_64" "Linux"' }
"#;

const MASTER: &str = "$TTL 60\n\
@ IN HTTPS 1 . alpn=\"h3,h2\" port=8443 ipv4hint=10.0.0.80\n\
_dns IN SVCB 1 dns alpn=dot port=853\n\
_443._tcp.www IN TLSA 3 1 1 ( 2BB183AF3D8F7B5C45C6E2B7A5F7B1B9\n 1C3D0F2E8A6B4C2D1E0F9A8B7C6D5E4F )\n\
host IN SSHFP 4 2 123456789abcdef67890123456789abcdef67890123456789abcdef123456789\n\
sip IN NAPTR 100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp\n\
private IN TYPE65280 \\# 4 0A000001\n\
hinfo IN HINFO \"x86_64\" Linux\n";

/// The same records from YAML and from a master file, answered alike.
#[test]
fn new_types_in_yaml_and_master_files_are_served() {
    let from_yaml = scratch("yaml");
    std::fs::write(from_yaml.join("types.yaml"), YAML).unwrap();
    let from_master = scratch("master");
    std::fs::write(from_master.join("types.yaml"), "zone: types.test\nvpcs: [vpc-a]\nmaster_file: types.zone\n").unwrap();
    std::fs::write(from_master.join("types.zone"), MASTER).unwrap();
    let mut answers = Vec::new();
    for d in [&from_yaml, &from_master] {
        let (code, out) = check(d);
        assert_eq!(code, 0, "{out}");
        let s = TestServer::start_default(d, "vpc-a", "");
        let ask = |name: &str, t: RecordType| udp(s.addrs[1], "127.0.0.1", &query(name, t, None));
        let mut got = Vec::new();
        for (name, t) in [
            ("types.test.", RecordType::HTTPS),
            ("_dns.types.test.", RecordType::SVCB),
            ("_443._tcp.www.types.test.", RecordType::TLSA),
            ("host.types.test.", RecordType::SSHFP),
            ("sip.types.test.", RecordType::NAPTR),
            ("private.types.test.", RecordType::Unknown(65280)),
            ("hinfo.types.test.", RecordType::HINFO),
        ] {
            let r = ask(name, t);
            assert_eq!(r.answers.len(), 1, "{name} {t}: {:?}", r.answers);
            assert_eq!(r.answers[0].record_type(), t);
            got.push(r.answers[0].data.clone());
        }
        match &got[0] {
            RData::HTTPS(h) => {
                let text = h.to_string();
                assert!(text.contains("alpn=h3,h2") && text.contains("port=8443") && text.contains("ipv4hint=10.0.0.80"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        match &got[5] {
            RData::Unknown { rdata, .. } => assert_eq!(rdata.anything, [10, 0, 0, 1]),
            other => panic!("{other:?}"),
        }
        answers.push(got);
        drop(s);
    }
    assert_eq!(answers[0], answers[1], "YAML and master file give the same records");
    let _ = std::fs::remove_dir_all(&from_yaml);
    let _ = std::fs::remove_dir_all(&from_master);
}

#[test]
fn types_pzdns_does_not_implement_are_refused_by_name() {
    let d = scratch("refused");
    std::fs::write(
        d.join("r.yaml"),
        "zone: r.test\nvpcs: [vpc-a]\nrecords:\n  - { name: a, type: DNAME, value: x.example }\n  - { name: b, type: DS, value: 1 2 3 ab }\n  - { name: c, type: TYPE46, value: '\\# 1 00' }\n",
    )
    .unwrap();
    std::fs::write(d.join("m.yaml"), "zone: m.test\nvpcs: [vpc-a]\nmaster_file: m.zone\n").unwrap();
    std::fs::write(d.join("m.zone"), "$TTL 60\nd IN DNAME x.example.\n@ IN DNSKEY 257 3 13 AAAA\ne IN RRSIG A 13 2 60 1 2 3 x. AAAA\n")
        .unwrap();
    let (code, out) = check(&d);
    assert_eq!(code, 1, "{out}");
    let r = d.join("r.yaml").display().to_string();
    let m = d.join("m.zone").display().to_string();
    for (at, words) in [
        (format!("{r}:4:22:"), "DNAME records are not supported: pzdns does not implement DNAME redirection (RFC 6672)"),
        (format!("{r}:5:22:"), "DS records are not supported: pzdns does not sign zones"),
        (format!("{r}:6:22:"), "RRSIG records are not supported"),
        (format!("{m}:2:6:"), "DNAME records are not supported"),
        (format!("{m}:3:6:"), "DNSKEY records are not supported"),
        (format!("{m}:4:6:"), "RRSIG records are not supported"),
    ] {
        assert!(out.lines().any(|l| l.starts_with(&at) && l.contains(words)), "missing {at} {words}:\n{out}");
    }
    let _ = std::fs::remove_dir_all(&d);
}
