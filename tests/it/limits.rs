//! Every limit on what a zones directory may hold, at, just under and just
//! over it: either everything loads, or `pzdns check` fails naming the
//! limit. Never a silently partial load.

use std::path::{Path, PathBuf};

const VPCS: &str = "vpcs:\n  - { id: vpc-a, cidrs: [127.1.0.0/16] }\n";

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-limits-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("vpcs.yaml"), VPCS).unwrap();
    d
}

/// `pzdns check` on `dir`: (exit code, output). With a config of its own:
/// without `--config`, `check` would read the checkout's ./pzdns.yaml,
/// which users edit.
fn check(dir: &Path) -> (i32, String) {
    let cfg = dir.with_extension("yaml");
    std::fs::write(&cfg, "upstreams: []\nadmin:\n  listen: \"off\"\n").unwrap();
    let out = crate::support::pzdns_command().arg("check").arg("--config").arg(&cfg).arg("--zones").arg(dir).output().unwrap();
    let _ = std::fs::remove_file(&cfg);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn generate_makes_at_most_65536_records_per_line() {
    for (n, ok) in [(65_535u64, true), (65_536, true), (65_537, false)] {
        let d = scratch(&format!("gen-{n}"));
        std::fs::write(d.join("g.yaml"), "zone: g.test\nvpcs: [vpc-a]\nmaster_file: g.zone\n").unwrap();
        std::fs::write(d.join("g.zone"), format!("$TTL 60\n$GENERATE 1-{n} h$ A 10.0.0.1\n")).unwrap();
        let (code, out) = check(&d);
        if ok {
            assert_eq!(code, 0, "{n} records: {out}");
            assert!(out.contains(&format!("{} records", n + 2)) || out.contains("ok:"), "{out}");
        } else {
            assert_eq!(code, 1, "{n}: {out}");
            assert!(out.contains("at most 65536") && out.contains("g.zone:2"), "the limit and the line are named: {out}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn directories_nest_at_most_16_deep() {
    for (depth, ok) in [(15usize, true), (16, true), (17, false)] {
        let d = scratch(&format!("depth-{depth}"));
        let mut p = d.clone();
        for i in 0..depth {
            p = p.join(format!("d{i}"));
        }
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("deep.yaml"), "zone: deep.test\nvpcs: [vpc-a]\nrecords:\n  - { name: www, type: A, value: 10.0.0.1 }\n")
            .unwrap();
        let (code, out) = check(&d);
        if ok {
            assert_eq!(code, 0, "depth {depth}: {out}");
            assert!(out.contains("1 zones"), "the deep zone loaded: {out}");
        } else {
            assert_eq!(code, 1, "depth {depth}: {out}");
            assert!(out.contains("deeper than 16 levels"), "{out}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn yaml_nests_at_most_32_levels() {
    // The zone file's own levels (mapping, records, a record) plus a TXT
    // value nested in flow lists; each extra level one more `[`.
    let zone = |levels: usize| {
        let value = format!("{}\"x\"{}", "[".repeat(levels), "]".repeat(levels));
        format!("zone: n.test\nvpcs: [vpc-a]\nrecords:\n  - {{ name: www, type: TXT, value: {value} }}\n")
    };
    let mut seen = Vec::new();
    for levels in 26..34 {
        let d = scratch(&format!("yaml-{levels}"));
        std::fs::write(d.join("n.yaml"), zone(levels)).unwrap();
        let (_, out) = check(&d);
        seen.push((levels, out.contains("nested deeper than 32 levels")));
        let _ = std::fs::remove_dir_all(&d);
    }
    // Exactly one step from "within the limit" to "over it", and over it says so.
    let first_over = seen.iter().position(|(_, over)| *over).expect("deep nesting is refused by name");
    assert!(first_over > 0 && seen[first_over..].iter().all(|(_, over)| *over), "{seen:?}");
}

#[test]
fn yaml_aliases_at_most_1000() {
    for (n, ok) in [(999usize, true), (1000, true), (1001, false)] {
        let d = scratch(&format!("alias-{n}"));
        let mut t = String::from("zone: a.test\nvpcs: [vpc-a]\nttl: 60\nrecords:\n  - { name: h0, type: A, value: &ip 10.0.0.1 }\n");
        for i in 1..=n {
            t.push_str(&format!("  - {{ name: h{i}, type: A, value: *ip }}\n"));
        }
        std::fs::write(d.join("a.yaml"), t).unwrap();
        let (code, out) = check(&d);
        if ok {
            assert_eq!(code, 0, "{n} aliases: {out}");
        } else {
            assert_eq!(code, 1, "{n} aliases: {out}");
            assert!(out.contains("too many YAML aliases"), "{out}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
