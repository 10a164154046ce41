//! Hostile or broken data is rejected with a clear error, not by
//! exhausting memory or time (SPEC.md §5, issue: resource bounds).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-bounds-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("vpcs.yaml"), "vpcs: []\n").unwrap();
    d
}

/// Runs `pzdns check` on `dir`: (exit code, stdout, wall time, peak RSS in KiB).
fn check(dir: &Path) -> (i32, String, Duration, i64) {
    let t = Instant::now();
    let out = crate::support::pzdns_command().args(["check", "--zones"]).arg(dir).output().unwrap();
    let took = t.elapsed();
    // Peak RSS of the child, from the kernel's accounting of waited-for children.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let _ = std::fs::remove_dir_all(dir);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), took, ru.ru_maxrss)
}

#[test]
fn a_2_gib_file_is_refused_unread() {
    let d = scratch("big");
    // Sparse: 2 GiB of size, no disk used.
    std::fs::File::create(d.join("huge.yaml")).unwrap().set_len(2 << 30).unwrap();
    let (code, out, took, rss) = check(&d);
    assert_eq!(code, 1);
    assert!(out.contains("huge.yaml: file is 2147483648 bytes, over the 512 MiB limit"), "{out}");
    assert!(took < Duration::from_secs(5) && rss < 500_000, "{took:?} {rss} KiB");
}

#[test]
fn an_alias_flood_is_stopped_by_the_budget() {
    let d = scratch("alias");
    let mut y = String::from(
        "zone: alias.test\nvpcs: []\nrecords:\n  - { name: r0, type: A, value: &v [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4] }\n",
    );
    for i in 1..5000 {
        y.push_str(&format!("  - {{ name: r{i}, type: A, value: *v }}\n"));
    }
    std::fs::write(d.join("alias.yaml"), y).unwrap();
    let (code, out, _, _) = check(&d);
    assert_eq!(code, 1);
    assert!(out.contains("alias.yaml:1005:36: too many YAML aliases"), "{out}");
}

#[test]
fn a_billion_laughs_never_expands() {
    let d = scratch("laughs");
    let mut y = String::from(
        "zone: lol.test\nvpcs: []\nrecords:\n  - { name: a, type: TXT, value: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol] }\n",
    );
    for i in 1..10 {
        let refs = vec![format!("*l{}", i - 1); 9].join(", ");
        y.push_str(&format!("  - {{ name: a{i}, type: TXT, value: &l{i} [{refs}] }}\n"));
    }
    std::fs::write(d.join("lol.yaml"), y).unwrap();
    let (code, out, took, rss) = check(&d);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("lol.yaml:5:"), "rejected at the first nested alias: {out}");
    assert!(took < Duration::from_secs(5) && rss < 500_000, "{took:?} {rss} KiB");
}

#[test]
fn deep_nesting_is_rejected_where_it_starts() {
    let d = scratch("deep");
    let v = format!("{}\"a\"{}", "[".repeat(100), "]".repeat(100));
    std::fs::write(d.join("deep.yaml"), format!("zone: d.test\nvpcs: []\nrecords:\n  - {{ name: x, type: TXT, value: {v} }}\n")).unwrap();
    let (code, out, _, _) = check(&d);
    assert_eq!(code, 1);
    assert!(out.contains("deep.yaml:4:") && out.contains("nested deeper than 32 levels"), "{out}");
}

#[test]
fn more_than_100000_files_are_refused_before_reading() {
    let d = scratch("many");
    let sub = d.join("z");
    std::fs::create_dir_all(&sub).unwrap();
    for i in 0..100_001 {
        std::fs::write(sub.join(format!("f{i}.yaml")), "").unwrap();
    }
    let (code, out, took, _) = check(&d);
    assert_eq!(code, 1);
    assert!(out.contains("more than 100000 YAML files"), "{out}");
    assert_eq!(out.lines().count(), 2, "one problem, not one per file: {out}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}
