//! The README's examples work when copied literally: every block that
//! names its file in its first line (`# zones/vpcs.yaml`,
//! `; zones/policies/lists/block.rpz`) is written to that path and
//! the set is checked with `pzdns check`; every other `pzdns.yaml`
//! snippet must load on its own beside those zones.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::tool;

/// The README's code blocks: (language, the line the block starts at, its text).
fn blocks(readme: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(String, usize, String)> = None;
    for (i, line) in readme.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut cur, fence) {
            (None, Some(lang)) => cur = Some((lang.trim().to_string(), i + 1, String::new())),
            (Some(_), Some(_)) => out.push(cur.take().unwrap()),
            (Some((_, _, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// The file a block names in its first line (`# zones/x.yaml — what it is`).
fn named_path(block: &str) -> Option<PathBuf> {
    // `# ` in YAML and domain lists, `; ` in master files (RPZ).
    let line = block.lines().next()?;
    let first = line.strip_prefix("# ").or_else(|| line.strip_prefix("; "))?;
    let path = first.split_whitespace().next()?;
    (path.ends_with(".yaml") || path.ends_with(".rpz") || path.ends_with(".txt") || path.ends_with(".zone")).then(|| PathBuf::from(path))
}

fn check(config: &Path) -> (Option<i32>, String) {
    let out = crate::support::pzdns_command().args(["check", "--config"]).arg(config).output().unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_readme_yaml_examples_load_together() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let dir = std::env::temp_dir().join(format!("pzdns-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    let mut configs = Vec::new();
    let mut files = 0;
    for (lang, line, text) in blocks(&readme) {
        let Some(path) = named_path(&text) else {
            if lang == "yaml" {
                // A fragment of pzdns.yaml: it must load as one.
                configs.push((line, text));
            }
            continue;
        };
        if path == Path::new("pzdns.yaml") {
            configs.push((line, text));
            continue;
        }
        let to = dir.join(&path);
        assert!(!to.exists(), "README.md:{line}: {} is given twice", path.display());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, text).unwrap();
        files += 1;
    }
    assert!(files >= 4, "the README's zone files were found ({files})");
    assert!(!configs.is_empty());
    for (i, (line, text)) in configs.iter().enumerate() {
        // Fragments about one feature name no zones directory: the README's.
        let mut text = text.clone();
        if !text.lines().any(|l| l.starts_with("zones_dir:")) {
            text.push_str("zones_dir: zones\n");
        }
        // A directory a fragment allows must exist to be checked.
        let outside: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("allow_paths_outside:"))
            .map(|d| d.split('#').next().unwrap().trim().to_string())
            .filter(|d| d.starts_with('/'))
            .collect();
        for d in outside {
            text = text.replace(&d, dir.join("outside").to_str().unwrap());
            std::fs::create_dir_all(dir.join("outside")).unwrap();
        }
        // A TSIG secret a fragment names: any base64 secret (`tsig-keygen` writes the real one).
        for f in text.split("secret_file: ").skip(1).map(|r| r.split([',', ' ', '}', '\n']).next().unwrap()) {
            std::fs::create_dir_all(dir.join(f).parent().unwrap()).unwrap();
            std::fs::write(dir.join(f), "c2VjcmV0IG9mIHRoZSBrZXkgb2YgdnBjLWEsIDMyIGJ5dGVzIQ==\n").unwrap();
        }
        let cfg = dir.join(format!("pzdns-{i}.yaml"));
        std::fs::write(&cfg, &text).unwrap();
        let (code, out) = check(&cfg);
        assert_eq!(code, Some(0), "README.md:{line}: the example does not load with the README's zones:\n{text}\n{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's recipe for another server: the block whose first line
/// starts with `first` (a fence with language `lang`, if given).
fn recipe(readme: &str, lang: &str, first: &str) -> (usize, String) {
    blocks(readme)
        .into_iter()
        .find(|(l, _, text)| (lang.is_empty() || l == lang) && text.starts_with(first))
        .map(|(_, line, text)| (line, text))
        .unwrap_or_else(|| panic!("README.md has a block starting with `{first}`"))
}

/// The recipes for BIND, Unbound and dnsdist load in those servers'
/// own configuration checkers, copied literally.
#[test]
fn the_readme_recipes_load_in_bind_unbound_and_dnsdist() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let dir = std::env::temp_dir().join(format!("pzdns-readme-recipes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let checks: [(&str, &str, &str, &[&str]); 4] = [
        ("named-checkconf", "", "options {", &[]),
        // A secondary of a view: key, catalog-zones, the catalog zone.
        ("named-checkconf", "", "key \"onprem-hz\"", &[]),
        ("unbound-checkconf", "", "server:", &[]),
        ("dnsdist", "lua", "setSecurityPollSuffix", &["--check-config", "-C"]),
    ];
    for (checker, lang, first, args) in checks {
        let (line, text) = recipe(&readme, lang, first);
        let Some(path) = tool(checker) else { continue };
        let file = dir.join(format!("{checker}-{line}.conf"));
        std::fs::write(&file, &text).unwrap();
        let out = Command::new(path).args(args).arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "README.md:{line}: {checker} rejects the recipe:\n{text}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Knot's secondary of a view: knotc checks it (`-c FILE` before the command).
    let (line, text) = recipe(&readme, "", "# knot.conf");
    if let Some(knotc) = tool("knotc") {
        let file = dir.join("knot.conf");
        std::fs::write(&file, &text).unwrap();
        let out = Command::new(knotc).arg("-c").arg(&file).arg("conf-check").output().unwrap();
        assert!(
            out.status.success(),
            "README.md:{line}: knotc rejects the recipe:\n{text}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The keys of the table under "### Server configuration" in
/// docs/REFERENCE.md, as `section.key` (`listen[].address` is `listen.address`).
fn documented_config_keys(reference: &str) -> std::collections::BTreeSet<String> {
    let section = reference.split("### Server configuration").nth(1).expect("the section").split("\n### ").next().unwrap();
    let mut keys = std::collections::BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = row.split('|').nth(1).unwrap();
        for k in cell.split('`').skip(1).step_by(2) {
            keys.insert(k.replace("[]", ""));
        }
    }
    keys
}

/// The keys the configuration reader knows, as `section.key`: read from
/// its own "unknown field … (known: …)" problems for a file with an
/// unknown key in every mapping.
fn reader_config_keys() -> std::collections::BTreeSet<String> {
    let dir = std::env::temp_dir().join(format!("pzdns-readme-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("pzdns.yaml");
    std::fs::write(
        &cfg,
        "zz: 1\nlisten:\n  - { address: 127.0.0.1:0, zz: 1 }\nforward_zones:\n  - { domain: a.test, upstreams: [127.0.0.1], zz: 1 }\n\
         cache: { zz: 1 }\nadmin: { zz: 1 }\ntcp: { zz: 1 }\nreload: { zz: 1 }\ndnstap: { zz: 1 }\nhealth_checks: { zz: 1 }\nrate_limit: { zz: 1 }\n\
         transfers: { zz: 1, keys: [{ zz: 1 }] }\nresolver: { zz: 1 }\nupstream_tls: { zz: 1 }\n",
    )
    .unwrap();
    let problems = pzdns::config::ServerConfig::load_file(&cfg).expect_err("unknown keys are problems").to_string();
    let _ = std::fs::remove_dir_all(&dir);
    let mut keys = std::collections::BTreeSet::new();
    let mut sections = 0;
    for p in problems.lines().filter(|l| l.contains("unknown field `zz` in ")) {
        let what = p.split("unknown field `zz` in ").nth(1).unwrap().split(';').next().unwrap();
        let prefix = match what.trim_start_matches("a ").trim_end_matches(" entry").trim_matches('`') {
            "pzdns.yaml" => String::new(),
            s => format!("{s}."),
        };
        let known = p.split("(known: ").nth(1).unwrap().split(';').next().unwrap();
        for k in known.split(", ") {
            keys.insert(format!("{prefix}{k}"));
        }
        sections += 1;
    }
    assert_eq!(sections, 14, "every mapping reported its unknown key:\n{problems}");
    // The sections themselves are not keys of the table; their keys are.
    keys.retain(|k| {
        ![
            "listen",
            "forward_zones",
            "cache",
            "admin",
            "tcp",
            "reload",
            "dnstap",
            "health_checks",
            "rate_limit",
            "transfers",
            "transfers.keys",
            "resolver",
            "upstream_tls",
        ]
        .contains(&k.as_str())
    });
    keys
}

#[test]
fn the_reference_documents_every_config_key_and_no_other() {
    let reference = std::fs::read_to_string("docs/REFERENCE.md").unwrap();
    let (documented, read) = (documented_config_keys(&reference), reader_config_keys());
    let undocumented: Vec<_> = read.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/REFERENCE.md#server-configuration: keys the reader takes but the table lacks: {undocumented:?}; \
         keys in the table the reader does not take: {unknown:?}"
    );
}

/// Every repository path the operator docs cite: code spans that start
/// with a directory of the repository, and relative link targets.
fn cited_paths(doc: &Path, text: &str) -> Vec<(usize, String)> {
    const ROOTS: [&str; 8] = ["src/", "tests/", "docs/", "deploy/", "bench/", "benches/", "fuzz/", ".ci/"];
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // `tests/it/serve.rs::garbage_then_a_normal_query`, `src/x.rs:12`, `docs/X.md#anchor`.
        let bare = |p: &str| p.split("::").next().unwrap().split([':', '#']).next().unwrap().trim_end_matches(['.', ',']).to_string();
        let spans = line.split('`').skip(1).step_by(2).map(bare).filter(|p| ROOTS.iter().any(|r| p.starts_with(r)));
        let links = line
            .split("](")
            .skip(1)
            .filter_map(|l| l.split(')').next())
            .filter(|t| !t.contains("://") && !t.starts_with("mailto:") && !t.starts_with('#'))
            .map(|t| doc.parent().unwrap().join(bare(t)).to_string_lossy().into_owned());
        for p in spans.chain(links) {
            // Globs and placeholders name no one file.
            if !p.contains(['*', '<', '{', ' ']) {
                out.push((i + 1, p));
            }
        }
    }
    out
}

#[test]
fn every_file_the_docs_cite_exists() {
    let mut missing = Vec::new();
    let mut cited = 0;
    for doc in ["README.md", "SECURITY.md", "deploy/README.md", "docs/ARCHITECTURE.md", "docs/REFERENCE.md", "docs/PERFORMANCE.md"] {
        let text = std::fs::read_to_string(doc).unwrap();
        for (line, p) in cited_paths(Path::new(doc), &text) {
            cited += 1;
            let path = Path::new(&p);
            let normal: PathBuf = path.components().fold(PathBuf::new(), |mut acc, c| {
                match c {
                    std::path::Component::ParentDir => {
                        acc.pop();
                    }
                    std::path::Component::CurDir => {}
                    c => acc.push(c),
                }
                acc
            });
            if !normal.exists() {
                missing.push(format!("{doc}:{line}: {p}"));
            }
        }
    }
    assert!(cited > 50, "the docs' paths were found ({cited})");
    assert!(missing.is_empty(), "cited but not in the repository:\n{}", missing.join("\n"));
}
