//! `master_file:` — an RFC 1035 zone file, as BIND writes it, parsed with
//! hickory-proto's parser so that BIND zones move in unchanged.
//!
//! hickory's parser reports no positions, so on an error pzdns finds the
//! line itself: it parses ever longer prefixes of the file (by bisection)
//! to find the first line at which parsing fails.

use std::path::Path;

use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::txt::Parser;

use super::diagnostics::{Diagnostics, Pos};
use super::files::FileAccess;

/// Reads and parses `path` with `origin` as the default `$ORIGIN`; a file
/// that cannot be read is reported at `named_at` (the `master_file:` key).
pub fn load(path: &Path, origin: &Name, access: &FileAccess, named_at: (&Path, Pos), diags: &mut Diagnostics) -> Option<Vec<Record>> {
    let text = access.read_text_at(path, named_at.0, named_at.1, diags)?;
    parse_text(path, &text, origin, access, diags)
}

/// Parses master-file text; `path` anchors relative `$INCLUDE`s.
pub fn parse_text(path: &Path, text: &str, origin: &Name, access: &FileAccess, diags: &mut Diagnostics) -> Option<Vec<Record>> {
    if !check_includes(path, text, access, diags) {
        return None;
    }
    match Parser::new(text, Some(path.to_path_buf()), Some(origin.clone())).parse() {
        Ok((_, sets)) => {
            let mut out = Vec::with_capacity(sets.len());
            for set in sets.values() {
                out.extend(set.records_without_rrsigs().cloned());
            }
            Some(out)
        }
        Err(e) => {
            let line = locate_error_line(text, path, origin);
            let mut msg = format!("master file: {e}");
            if msg.contains("ttl not specified") {
                msg.push_str(" (add a `$TTL 60` line at the top, or a TTL on each record)");
            }
            diags.push(path, Pos::new(line, 1), msg);
            None
        }
    }
}

/// `$INCLUDE` may name only regular files under the size limit: a device,
/// a FIFO or a huge file would hang or exhaust a reload.
fn check_includes(path: &Path, text: &str, access: &FileAccess, diags: &mut Diagnostics) -> bool {
    let mut ok = true;
    for (i, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("$INCLUDE")) {
            continue;
        }
        let Some(target) = words.next() else { continue };
        let full = path.parent().unwrap_or(Path::new(".")).join(target.trim_matches('"'));
        if let Err(e) = access.read(&full) {
            diags.push(path, Pos::new(i as u32 + 1, 1), format!("$INCLUDE: {e}"));
            ok = false;
        }
    }
    ok
}

/// The first line at which a prefix of the file stops parsing; 0 if unknown.
fn locate_error_line(text: &str, path: &Path, origin: &Name) -> u32 {
    let ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).chain(std::iter::once(text.len())).collect();
    let fails = |k: usize| -> bool {
        let prefix = &text[..ends[k - 1]];
        match Parser::new(prefix, Some(path.to_path_buf()), Some(origin.clone())).parse() {
            Ok(_) => false,
            // A prefix that cuts a `( ... )` group is not a real failure.
            Err(e) => !e.to_string().contains("unclosed"),
        }
    };
    let (mut lo, mut hi) = (1usize, ends.len());
    if !fails(hi) {
        return 0;
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(mid) { hi = mid } else { lo = mid + 1 }
    }
    lo as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn include_of_a_device_is_refused() {
        let mut d = Diagnostics::new();
        let text = "$TTL 60\n$INCLUDE /dev/zero\n";
        let a = FileAccess::new(Path::new("/tmp"), &[]);
        assert!(parse_text(Path::new("/tmp/x.zone"), text, &Name::from_str("example.com.").unwrap(), &a, &mut d).is_none());
        assert!(d.items()[0].message.contains("outside the zones directory"), "{d}");
        assert_eq!(d.items()[0].pos.line, 2);
    }

    #[test]
    fn finds_the_bad_line() {
        let dir = std::env::temp_dir().join(format!("pzdns-mf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("z.zone");
        std::fs::write(&p, "$TTL 60\n@ IN SOA ns hm 1 2 3 4 5\nwww IN A 10.0.0.1\nbad IN A 10.0.0.999\nok IN A 10.0.0.2\n").unwrap();
        let mut d = Diagnostics::new();
        let a = FileAccess::new(&dir, &[]);
        assert!(load(&p, &Name::from_str("example.com.").unwrap(), &a, (&p, Pos::UNKNOWN), &mut d).is_none());
        assert_eq!(d.items()[0].pos.line, 4, "{d}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
