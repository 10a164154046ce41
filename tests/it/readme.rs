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
    let out = Command::new(env!("CARGO_BIN_EXE_pzdns")).args(["check", "--config"]).arg(config).output().unwrap();
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
    let checks: [(&str, &str, &str, &[&str]); 3] = [
        ("named-checkconf", "", "options {", &[]),
        ("unbound-checkconf", "", "server:", &[]),
        ("dnsdist", "lua", "setSecurityPollSuffix", &["--check-config", "-C"]),
    ];
    for (checker, lang, first, args) in checks {
        let (line, text) = recipe(&readme, lang, first);
        let Some(path) = tool(checker) else { continue };
        let file = dir.join(format!("{checker}.conf"));
        std::fs::write(&file, &text).unwrap();
        let out = Command::new(path).args(args).arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "README.md:{line}: {checker} rejects the recipe:\n{text}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
