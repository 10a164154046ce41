//! The crate's modules depend one way: each uses only the modules listed
//! before it in docs/ARCHITECTURE.md's module table (and itself). A
//! `crate::x` path to a module listed later fails here, naming the file
//! and line.
//! docs/ARCHITECTURE.md keeps a table of the answering rules and the
//! functions that implement them: each named function must exist. Its
//! "Dependencies and why" has a row for each crate of Cargo.toml.

use std::path::{Path, PathBuf};

/// The rows of the first table in docs/ARCHITECTURE.md whose header
/// starts with `| {first} `, split into cells.
fn table(first: &str) -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string("docs/ARCHITECTURE.md").unwrap();
    let head = format!("| {first} ");
    doc.lines()
        .skip_while(|l| !l.starts_with(&head))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').map(|c| c.trim().trim_matches('`').to_string()).collect())
        .collect()
}

fn order() -> Vec<String> {
    table("module").into_iter().map(|cells| cells[1].clone()).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_depend_one_way() {
    let order = order();
    assert!(order.len() > 10, "docs/ARCHITECTURE.md lists the modules in order: {order:?}");
    let lib = std::fs::read_to_string("src/lib.rs").unwrap();
    let declared: Vec<&str> = lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|m| m.trim_end_matches(';')).collect();
    for m in &declared {
        assert!(order.iter().any(|o| o == m), "module `{m}` of src/lib.rs is missing from docs/ARCHITECTURE.md's table");
    }
    let rank = |m: &str| order.iter().position(|x| x == m);
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    let mut wrong = Vec::new();
    for f in files {
        let rel = f.strip_prefix("src").unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        let Some(own) = rank(&first) else { continue }; // lib.rs, main.rs
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + 7..];
                let used: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if let Some(r) = rank(&used)
                    && r > own
                {
                    wrong.push(format!("{}:{}: `{first}` uses `{used}`, which is listed after it", f.display(), n + 1));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "modules must only use those listed before them in docs/ARCHITECTURE.md:\n{}", wrong.join("\n"));
}

#[test]
fn the_rule_table_names_real_functions() {
    let rows = table("rule");
    assert!(rows.len() >= 10, "docs/ARCHITECTURE.md has the rule table: {} rows", rows.len());
    for cells in rows {
        let (func, file) = (&cells[3], &cells[4]);
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{cells:?}: {file}: {e}"));
        assert!(text.contains(&format!("fn {func}(")) || text.contains(&format!("fn {func}<")), "{cells:?}: no `fn {func}` in {file}");
    }
}

/// The crates `Cargo.toml` depends on (dev-dependencies too), by name.
fn cargo_dependencies() -> Vec<String> {
    let manifest = std::fs::read_to_string("Cargo.toml").unwrap();
    let mut section = "";
    let mut crates = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if (section == "[dependencies]" || section == "[dev-dependencies]")
            && let Some((name, _)) = line.split_once('=')
            && !line.starts_with('#')
        {
            crates.push(name.trim().to_string());
        }
    }
    crates
}

/// docs/ARCHITECTURE.md's "Dependencies and why" has a row for every crate
/// of Cargo.toml, and no row for a crate that is not there any more.
#[test]
fn the_dependency_table_lists_every_crate_of_cargo_toml() {
    let crates = cargo_dependencies();
    assert!(crates.len() > 10, "Cargo.toml's dependencies read: {crates:?}");
    let doc = std::fs::read_to_string("docs/ARCHITECTURE.md").unwrap();
    // The first cell of each row: `name` (or several, `a`, `b`), maybe "(dev)".
    let listed: Vec<String> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| crate "))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .flat_map(|l| l.split('|').nth(1).unwrap_or("").split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>())
        .collect();
    let missing: Vec<&String> = crates.iter().filter(|c| !listed.contains(c)).collect();
    let stale: Vec<&String> = listed.iter().filter(|c| !crates.contains(c)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/ARCHITECTURE.md, \"Dependencies and why\": no row for {missing:?} (in Cargo.toml); rows for {stale:?} (not in Cargo.toml)"
    );
}
