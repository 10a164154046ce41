//! `resolver.trust_anchors: FILE`: DS or DNSKEY records in master-file
//! syntax (what `dnssec-dsfromkey`, `dnssec-keygen`'s `.key` files,
//! unbound-anchor's `root.key` and IANA's DS lines hold), every problem
//! with `path:line:col`.

use std::path::Path;

use super::Pos;
use super::diagnostics::Diagnostics;
use crate::dnssec::{Anchor, wire};

/// The anchors of `text` (read from `path`), grouped by owner.
pub fn parse(path: &Path, text: &str, diags: &mut Diagnostics) -> Vec<Anchor> {
    let mut anchors: Vec<Anchor> = Vec::new();
    for (line, col, tokens) in records(text) {
        let at = Pos::new(line, col);
        let mut it = tokens.iter().peekable();
        let Some(owner_text) = it.next() else { continue };
        let owner = match hickory_proto::rr::Name::from_ascii(owner_text) {
            Ok(n) if n.is_fqdn() || *owner_text == "." => crate::dns::names::name_key(&n).to_vec(),
            _ => {
                diags.push(
                    path,
                    at,
                    format!("trust anchor owner `{owner_text}` must be a fully qualified name (ending in a dot, e.g. `.` or `example.`)"),
                );
                continue;
            }
        };
        // An optional TTL and class, in either order.
        while it.peek().is_some_and(|t| t.eq_ignore_ascii_case("IN") || t.chars().all(|c| c.is_ascii_digit())) {
            it.next();
        }
        let rtype = it.next().map(|t| t.to_ascii_uppercase()).unwrap_or_default();
        let fields: Vec<&String> = it.collect();
        let rdata = match rtype.as_str() {
            "DS" => ds_rdata(&fields),
            "DNSKEY" => dnskey_rdata(&fields),
            _ => Err(format!("`{rtype}` is not a trust anchor; give DS or DNSKEY records (e.g. `. IN DS 20326 8 2 E06D44B8...`)")),
        };
        let rdata = match rdata {
            Ok(r) => r,
            Err(e) => {
                diags.push(path, at, e);
                continue;
            }
        };
        let i = match anchors.iter().position(|a| a.owner == owner) {
            Some(i) => i,
            None => {
                anchors.push(Anchor { owner, ds: Vec::new(), dnskeys: Vec::new() });
                anchors.len() - 1
            }
        };
        if rtype == "DS" { anchors[i].ds.push(rdata) } else { anchors[i].dnskeys.push(rdata) }
    }
    if anchors.is_empty() && diags.is_empty() {
        diags.push(
            path,
            Pos::new(1, 1),
            "no DS or DNSKEY record in the trust anchor file; put one per line, e.g. `. IN DS 20326 8 2 E06D44B8...`",
        );
    }
    anchors
}

fn number<T: std::str::FromStr>(s: Option<&&String>, what: &str) -> Result<T, String> {
    let s = s.ok_or_else(|| format!("the {what} is missing"))?;
    s.parse().map_err(|_| format!("the {what} `{s}` is not a number in range"))
}

/// `key-tag algorithm digest-type digest` (the digest may be split by spaces).
fn ds_rdata(f: &[&String]) -> Result<Vec<u8>, String> {
    let tag: u16 = number(f.first(), "DS key tag")?;
    let alg: u8 = number(f.get(1), "DS algorithm")?;
    let dt: u8 = number(f.get(2), "DS digest type")?;
    let hex: String = f.iter().skip(3).map(|s| s.as_str()).collect();
    let digest = wire::hex_decode(hex.as_bytes()).filter(|d| !d.is_empty()).ok_or("the DS digest must be hexadecimal digits")?;
    let mut rd = tag.to_be_bytes().to_vec();
    rd.extend_from_slice(&[alg, dt]);
    rd.extend(digest);
    Ok(rd)
}

/// `flags protocol algorithm public-key` (the key in base64, may be split).
fn dnskey_rdata(f: &[&String]) -> Result<Vec<u8>, String> {
    let flags: u16 = number(f.first(), "DNSKEY flags")?;
    let proto: u8 = number(f.get(1), "DNSKEY protocol")?;
    let alg: u8 = number(f.get(2), "DNSKEY algorithm")?;
    let b64: String = f.iter().skip(3).map(|s| s.as_str()).collect();
    let key = super::transfers::base64_decode(&b64).filter(|k| !k.is_empty()).ok_or("the DNSKEY public key must be base64")?;
    if proto != 3 {
        return Err(format!("the DNSKEY protocol is {proto}; it is always 3"));
    }
    let mut rd = flags.to_be_bytes().to_vec();
    rd.extend_from_slice(&[proto, alg]);
    rd.extend(key);
    Ok(rd)
}

/// The records of a master file: comments (`;`) dropped, lines inside
/// parentheses joined; each with the line and column it starts at.
fn records(text: &str) -> Vec<(u32, u32, Vec<String>)> {
    let mut out = Vec::new();
    let mut current: Option<(u32, u32, Vec<String>)> = None;
    let mut depth = 0u32;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split(';').next().unwrap_or("");
        let mut word = String::new();
        let push = |w: &mut String, cur: &mut Option<(u32, u32, Vec<String>)>, col: usize| {
            if !w.is_empty() {
                cur.get_or_insert_with(|| (n as u32 + 1, col as u32 + 1, Vec::new())).2.push(std::mem::take(w));
            }
        };
        let mut start = 0;
        for (i, c) in line.char_indices() {
            match c {
                '(' | ')' => {
                    push(&mut word, &mut current, start);
                    depth = if c == '(' { depth + 1 } else { depth.saturating_sub(1) };
                }
                c if c.is_whitespace() => push(&mut word, &mut current, start),
                c => {
                    if word.is_empty() {
                        start = i;
                    }
                    word.push(c);
                }
            }
        }
        push(&mut word, &mut current, start);
        if depth == 0
            && let Some(r) = current.take()
        {
            out.push(r);
        }
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_and_dnskey_lines_with_comments_and_parentheses() {
        let text = "; root KSK\n. 86400 IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n\
                    example. IN DNSKEY 257 3 13 (\n  mdsswUyr3DPW132mOi8V9xESWE8jTo0d\n  xCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ== ) ; {id = 1}\n";
        let mut d = Diagnostics::new();
        let a = parse(Path::new("ta"), text, &mut d);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].owner, vec![0]);
        assert_eq!(a[0].ds, crate::dnssec::builtin_anchors()[0].ds[..1].to_vec());
        assert_eq!(a[1].owner, b"\x07example\x00".to_vec());
        assert_eq!(a[1].dnskeys[0].len(), 4 + 64);
    }

    #[test]
    fn problems_name_the_line_and_column() {
        let mut d = Diagnostics::new();
        parse(Path::new("ta"), ". IN DS 20326 8 2 E06D\n  example IN DS 1 8 2 ABCD\n. IN A 192.0.2.1\n. IN DS 1 8 2 XYZ\n", &mut d);
        let text: Vec<String> = d.items().iter().map(|i| i.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].contains("ta:2:3") && text[0].contains("fully qualified"), "{text:?}");
        assert!(text[1].contains("ta:3:1") && text[1].contains("not a trust anchor"), "{text:?}");
        assert!(text[2].contains("ta:4:1") && text[2].contains("hexadecimal"), "{text:?}");
    }
}
