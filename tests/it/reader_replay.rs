//! The zone readers rewritten for issue 13 (YAML tree, master-file reader)
//! replayed over every input the fuzzers have kept (fuzz/corpus/zone_yaml
//! and fuzz/corpus/master_file), through the fuzz targets' own entry
//! points: no input panics, and a zone that loads also builds. A cheap
//! guard between fuzzing runs; it is not a substitute for them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::rr::Name;
use pzdns::config::files::FileAccess;
use pzdns::config::zones_dir::{VpcDef, ZonesData, load_zone_text};
use pzdns::config::{Diagnostics, ServerConfig, master_file};
use pzdns::snapshot::Snapshot;

/// The inputs kept in a corpus directory. A corpus that is missing or empty
/// fails the test: replaying nothing would pass whatever the readers do.
fn inputs(dir: &str) -> Vec<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let entries = std::fs::read_dir(&path).unwrap_or_else(|e| {
        panic!("{}: {e}: the fuzz corpus is part of the repository; restore it (git checkout -- {dir})", path.display())
    });
    let mut v: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    assert!(!v.is_empty(), "{}: no inputs: the fuzz corpus is part of the repository; restore it (git checkout -- {dir})", path.display());
    v.sort();
    v
}

/// Fails unless `replayed` of a corpus's inputs went through the reader:
/// inputs that are not UTF-8 are skipped, and a corpus of nothing else
/// would test nothing.
fn assert_replayed(what: &str, replayed: usize, of: usize) {
    eprintln!("replayed {replayed} of {of} {what} inputs");
    assert!(replayed > 0, "none of the {of} {what} inputs was replayed (none is UTF-8 text)");
}

#[test]
fn zone_yaml_corpus_never_panics() {
    let known: HashSet<String> = ["vpc-a".to_string(), "vpc-b".to_string()].into();
    let access = FileAccess::new(Path::new("/nonexistent"), &[]);
    let files = inputs("fuzz/corpus/zone_yaml");
    let (mut replayed, mut built) = (0, 0);
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        replayed += 1;
        let mut d = Diagnostics::new();
        if let Some(z) = load_zone_text(Path::new("fuzz.yaml"), &text, &known, &access, &mut d) {
            built += 1;
            let vpcs = ["vpc-a", "vpc-b"]
                .iter()
                .enumerate()
                .map(|(i, id)| VpcDef {
                    id: id.to_string(),
                    region: None,
                    cidrs: vec![format!("10.{i}.0.0/16").parse().unwrap()],
                    vswitches: vec![],
                })
                .collect();
            let data = ZonesData { vpcs, zones: vec![z], ..Default::default() };
            let _ = Snapshot::build(&ServerConfig::defaults(), data, 1);
        }
        for p in d.items() {
            let _ = p.to_string();
        }
    }
    assert_replayed("zone_yaml", replayed, files.len());
    // Some inputs must load, or "a zone that loads also builds" is untested.
    assert!(built > 0, "none of the {replayed} zone_yaml inputs loads as a zone");
}

#[test]
fn master_file_corpus_never_panics() {
    let access = FileAccess::new(Path::new("/nonexistent"), &[]);
    let origin = Name::from_str("example.test.").unwrap();
    let files = inputs("fuzz/corpus/master_file");
    let mut replayed = 0;
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        replayed += 1;
        let mut d = Diagnostics::new();
        let _ = master_file::parse_text(Path::new("/nonexistent/fuzz.zone"), &text, &origin, &access, &mut d);
        for p in d.items() {
            assert!(p.pos.line > 0, "{}: a master-file problem without a line: {p}", f.display());
        }
    }
    assert_replayed("master_file", replayed, files.len());
}

proptest::proptest! {
    // 1000 cases each on every `cargo test`; PZDNS_SOUP_CASES=N for a longer run.
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("PZDNS_SOUP_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
        ..Default::default()
    })]

    /// Text made of master-file syntax (escapes, quotes, parentheses,
    /// directives, multi-byte characters) never panics the reader, and
    /// every problem has a line.
    #[test]
    fn master_file_syntax_soup_never_panics(text in r#"((\$(ORIGIN|TTL|GENERATE|INCLUDE) )|[a-z0-9@*.]{0,6}|[ \t\r\n();"\\$#{},=-]|\\[0-9]{1,3}|Ϙ|é|(IN|A|TXT|MX|SRV|HTTPS|SVCB|CAA|TYPE65280|SOA|NAPTR|TLSA) ){0,40}"#) {
        let access = FileAccess::new(Path::new("/nonexistent"), &[]);
        let mut d = Diagnostics::new();
        let _ = master_file::parse_text(Path::new("/nonexistent/p.zone"), &text, &Name::from_str("example.test.").unwrap(), &access, &mut d);
        for p in d.items() {
            proptest::prop_assert!(p.pos.line > 0, "{}", p);
        }
    }

    /// YAML-ish text never panics the zone-file reader.
    #[test]
    fn zone_yaml_soup_never_panics(text in r#"((zone|vpcs|records|name|type|value|ttl|recursive_proxy): |[a-z0-9@*.~]{0,5}|[ \n\-\[\]{},:'"&*!|>#\\]|TXT|A|HTTPS|yes|010|0x1f|é){0,40}"#) {
        let known: HashSet<String> = ["vpc-a".to_string()].into();
        let access = FileAccess::new(Path::new("/nonexistent"), &[]);
        let mut d = Diagnostics::new();
        let _ = load_zone_text(Path::new("p.yaml"), &text, &known, &access, &mut d);
    }
}

/// The response-policy readers over the policy_lists corpus (first byte:
/// RPZ or domain list) and over every master-file input read as an RPZ
/// zone: no panic, and what reads compiles and is matched.
#[test]
fn policy_list_corpus_never_panics() {
    use pzdns::config::policy::{Action, PolicyDef, RuleSetDef, Trigger, parse_domain_list, parse_rpz};
    use std::sync::Arc;
    let access = FileAccess::new(Path::new("/nonexistent"), &[]);
    let path: Arc<Path> = Arc::from(Path::new("/nonexistent/list"));
    let (mut inputs_read, mut inputs_kept) = (0, 0);
    for (dir, rpz_only) in [("fuzz/corpus/policy_lists", false), ("fuzz/corpus/master_file", true)] {
        let files = inputs(dir);
        inputs_kept += files.len();
        for f in files {
            let Ok(bytes) = std::fs::read(&f) else { continue };
            let (rpz, body) = match (rpz_only, bytes.split_first()) {
                (true, _) => (true, &bytes[..]),
                (false, Some((m, rest))) => (m % 2 == 0, rest),
                (false, None) => continue,
            };
            let Ok(text) = std::str::from_utf8(body) else { continue };
            inputs_read += 1;
            let (mut d, mut w) = (Diagnostics::new(), Vec::new());
            let rules = if rpz {
                parse_rpz(&path, text, &access, &mut w, &mut d)
            } else {
                parse_domain_list(&path, text, Action::NxDomain, &mut d)
            };
            let names: Vec<Name> = rules
                .iter()
                .filter_map(|r| match &r.trigger {
                    Trigger::Name { name, wildcard: false } | Trigger::Domain(name) => Some(name.clone()),
                    Trigger::Name { wildcard: true, .. } | Trigger::ResponseIp(_) => None,
                })
                .collect();
            let set = RuleSetDef { label: "r: l".into(), ede: 15, rules, path: "p".into(), pos: pzdns::config::Pos::new(1, 1) };
            let def = PolicyDef {
                name: "r".into(),
                path: "p".into(),
                pos: pzdns::config::Pos::new(1, 1),
                vpcs: None,
                sets: vec![set],
                warnings: w,
            };
            let p = pzdns::snapshot::policy::Policies::build(vec![def], 1, &|_| Some(0), &mut d);
            for n in names {
                assert!(
                    p.match_name(0, &pzdns::dns::names::KeyBuf::new(&n)).is_some(),
                    "{}: trigger {n} does not match itself",
                    f.display()
                );
            }
        }
    }
    assert_replayed("policy list", inputs_read, inputs_kept);
}
