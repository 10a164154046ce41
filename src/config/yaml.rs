//! The YAML reader: the only module that knows which YAML library pzdns uses.
//!
//! serde-saphyr is used rather than serde_yaml (archived upstream) because it
//! gives the line and column of every value through [`Spanned`], which is what
//! lets validation say `path:line:column` for problems that are valid YAML but
//! wrong data, and because its parse budget stops alias bombs and runaway
//! nesting before they cost memory.

use std::path::Path;

use super::diagnostics::{Diagnostics, Pos};

pub use serde_saphyr::Spanned;

/// Largest file pzdns reads: larger ones are rejected before reading, so a
/// stray multi-gigabyte file cannot exhaust memory.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// Position of a spanned value.
pub fn pos<T>(s: &Spanned<T>) -> Pos {
    let loc = s.referenced;
    Pos::new(loc.line() as u32, loc.column() as u32)
}

/// Reads a file as UTF-8, refusing files over [`MAX_FILE_BYTES`].
pub fn read_file(path: &Path, diags: &mut Diagnostics) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            diags.push(
                path,
                Pos::UNKNOWN,
                format!(
                    "file is {} bytes, over the {} MiB limit; split the zone into smaller files",
                    meta.len(),
                    MAX_FILE_BYTES / 1024 / 1024
                ),
            );
            return None;
        }
        Ok(_) => {}
        Err(e) => {
            diags.push(path, Pos::UNKNOWN, format!("cannot read: {e}"));
            return None;
        }
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = upto.iter().filter(|b| **b == b'\n').count() as u32 + 1;
                diags.push(path, Pos::new(line, 1), "file is not valid UTF-8; save it as UTF-8");
                None
            }
        },
        Err(e) => {
            diags.push(path, Pos::UNKNOWN, format!("cannot read: {e}"));
            None
        }
    }
}

/// Parses `text` (the contents of `path`) into `T`, reporting a syntax or
/// shape error (unknown key, wrong type, missing field) with its position.
pub fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str, diags: &mut Diagnostics) -> Option<T> {
    // Budgets scale with the input so a 1,000,000-record zone file parses,
    // while aliases and depth stay tightly capped: data files need no
    // anchors at all, and a deep document is a mistake or an attack.
    let bytes = text.len();
    let budget = serde_saphyr::budget! {
        max_events: 64 + bytes,
        max_nodes: 64 + bytes,
        max_total_scalar_bytes: 64 + bytes,
        max_aliases: 1_000,
        max_anchors: 1_000,
        max_recorded_anchor_events: 100_000,
        max_depth: 32,
        max_documents: 1,
    };
    let options = serde_saphyr::options! { budget: budget };
    match serde_saphyr::from_str_with_options::<T>(text, options) {
        Ok(v) => Some(v),
        Err(e) => {
            let pos = e.location().map(|l| Pos::new(l.line() as u32, l.column() as u32)).unwrap_or(Pos::UNKNOWN);
            diags.push(path, pos, tidy_message(&e));
            None
        }
    }
}

/// serde-saphyr's message, reduced to one line without the snippet and the
/// position (which the diagnostic prints itself).
fn tidy_message(e: &serde_saphyr::Error) -> String {
    let raw = e.without_snippet().to_string();
    let first = raw.lines().next().unwrap_or("invalid YAML").trim();
    // Drop a trailing " at line X, column Y" the library may append.
    let msg = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    let msg = msg.trim_start_matches("error: ");
    let mut out = msg.to_string();
    if out.contains("budget breached") {
        out = if out.contains("Aliases") || out.contains("Anchors") {
            "too many YAML aliases (*name): pzdns allows 1000; write the values out".to_string()
        } else if out.contains("Depth") {
            "YAML nested deeper than 32 levels".to_string()
        } else {
            format!("YAML too large or too complex ({out})")
        };
    }
    if out.contains("unknown field") {
        out.push_str(" (remove it or fix its spelling; pzdns ignores nothing)");
    }
    out
}
