//! DNS presentation format, read as BIND reads it: the tokens of a master
//! file (quoted strings, `\DDD` decimal and `\X` escapes, parentheses
//! across lines, `;` comments, CRLF), names, TTLs with units, and the
//! RDATA of every type pzdns serves, including RFC 3597 `\# len hex`.
//!
//! RDATA is first written in wire form, then decoded by hickory-proto into
//! its typed value: what is served is exactly the bytes the text means,
//! and a value hickory cannot decode is refused here, not at query time.
//!
//! Used by master files (`master_file.rs`, names relative to `$ORIGIN`) and
//! YAML record values (`rdata.rs`, names always absolute).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::rr::{Label, Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};

use super::diagnostics::Pos;

/// One token: a word or a quoted string, with escapes still in its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Tok {
    pub text: String,
    pub quoted: bool,
    /// Follows the previous token with no white space (`alpn="h2"`).
    pub glued: bool,
    pub pos: Pos,
}

/// One logical line of a master file (parentheses joined).
#[derive(Debug, Default)]
pub struct Line {
    pub toks: Vec<Tok>,
    /// The line starts with white space: the owner is the previous one.
    pub blank_start: bool,
    /// A lexical error was reported on this line: do not use it.
    pub broken: bool,
}

/// A master file's tokens, one logical line at a time.
pub struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: u32,
    col: u32,
    /// YAML values: `;` and parentheses are ordinary characters.
    plain: bool,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Self {
        Lexer { chars: text.chars().peekable(), line: 1, col: 1, plain: false }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn here(&self) -> Pos {
        Pos::new(self.line, self.col)
    }

    /// The next logical line with at least one token; lexical problems are
    /// pushed to `errs`.
    pub fn next_line(&mut self, errs: &mut Vec<(Pos, String)>) -> Option<Line> {
        let mut out = Line::default();
        let mut depth = 0u32;
        let mut open_at = Pos::UNKNOWN;
        let mut at_line_start = true;
        let mut glued = false;
        loop {
            let Some(&c) = self.chars.peek() else {
                if depth > 0 {
                    errs.push((self.here(), format!("end of file inside the `(` opened at line {}: a `)` is missing", open_at.line)));
                    out.broken = true;
                }
                return if out.toks.is_empty() { None } else { Some(out) };
            };
            if at_line_start && depth == 0 && out.toks.is_empty() {
                out.blank_start = c == ' ' || c == '\t';
            }
            at_line_start = false;
            match c {
                '\n' => {
                    self.bump();
                    at_line_start = true;
                    glued = false;
                    if depth == 0 && !out.toks.is_empty() {
                        return Some(out);
                    }
                }
                ' ' | '\t' | '\r' => {
                    self.bump();
                    glued = false;
                }
                ';' if !self.plain => {
                    while self.chars.peek().is_some_and(|c| *c != '\n') {
                        self.bump();
                    }
                }
                '(' if !self.plain => {
                    if depth == 0 {
                        open_at = self.here();
                    }
                    self.bump();
                    depth += 1;
                    glued = false;
                }
                ')' if !self.plain => {
                    if depth == 0 {
                        errs.push((self.here(), "`)` without a `(` before it".into()));
                        out.broken = true;
                    } else {
                        depth -= 1;
                    }
                    self.bump();
                    glued = false;
                }
                '"' => {
                    let pos = self.here();
                    self.bump();
                    let mut text = String::new();
                    let mut closed = false;
                    while let Some(&c) = self.chars.peek() {
                        match c {
                            '"' => {
                                self.bump();
                                closed = true;
                                break;
                            }
                            '\n' => break,
                            '\\' => {
                                self.bump();
                                text.push('\\');
                                if let Some(&n) = self.chars.peek()
                                    && n != '\n'
                                {
                                    self.bump();
                                    text.push(n);
                                }
                            }
                            _ => {
                                self.bump();
                                text.push(c);
                            }
                        }
                    }
                    if !closed {
                        errs.push((pos, "quoted string is not closed on its line (a `\"` is missing)".into()));
                        out.broken = true;
                    }
                    out.toks.push(Tok { text, quoted: true, glued, pos });
                    glued = true;
                }
                _ => {
                    let pos = self.here();
                    let mut text = String::new();
                    while let Some(&c) = self.chars.peek() {
                        let delim = matches!(c, ' ' | '\t' | '\r' | '\n' | '"') || (!self.plain && matches!(c, ';' | '(' | ')'));
                        if delim {
                            break;
                        }
                        self.bump();
                        text.push(c);
                        if c == '\\'
                            && let Some(&n) = self.chars.peek()
                            && n != '\n'
                        {
                            self.bump();
                            text.push(n);
                        }
                    }
                    out.toks.push(Tok { text, quoted: false, glued, pos });
                    glued = true;
                }
            }
        }
    }
}

/// The tokens of a YAML record value: presentation syntax on one line,
/// where `;` and parentheses are ordinary characters.
pub fn lex_value(text: &str) -> Result<Vec<Tok>, String> {
    let mut l = Lexer { chars: text.chars().peekable(), line: 1, col: 1, plain: true };
    let mut errs = Vec::new();
    let mut toks = Vec::new();
    while let Some(line) = l.next_line(&mut errs) {
        toks.extend(line.toks);
    }
    match errs.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(toks),
    }
}

/// Decodes `\DDD` (decimal, 0-255) and `\X` escapes.
pub fn unescape(raw: &str) -> Result<Vec<u8>, String> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let Some(&n) = b.get(i + 1) else {
            return Err("a `\\` at the end of a value escapes nothing".into());
        };
        if n.is_ascii_digit() {
            let digits = &b[i + 1..(i + 4).min(b.len())];
            if digits.len() < 3 || !digits.iter().all(u8::is_ascii_digit) {
                let shown: String = String::from_utf8_lossy(&b[i..(i + 4).min(b.len())]).into();
                return Err(format!("`{shown}`: a decimal escape has exactly three digits, as in \\065 for `A`"));
            }
            let v = (digits[0] - b'0') as u32 * 100 + (digits[1] - b'0') as u32 * 10 + (digits[2] - b'0') as u32;
            if v > 255 {
                return Err(format!("`\\{}` is over 255: a decimal escape \\DDD is one byte", String::from_utf8_lossy(digits)));
            }
            out.push(v as u8);
            i += 4;
        } else {
            // `\X`: X itself (a whole UTF-8 character).
            let len = utf8_len(n);
            out.extend_from_slice(&b[i + 1..(i + 1 + len).min(b.len())]);
            i += 1 + len;
        }
    }
    Ok(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// A `<character-string>`: at most 255 bytes once escapes are decoded.
pub fn char_string(t: &Tok) -> Result<Vec<u8>, String> {
    let b = unescape(&t.text)?;
    if b.len() > 255 {
        return Err(format!("a string is {} bytes; each string is at most 255: split it into several quoted strings", b.len()));
    }
    Ok(b)
}

/// Bytes of a name's wire form: at most 255.
fn wire_len(labels: &[Vec<u8>]) -> usize {
    labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1
}

/// Parses a domain name in presentation syntax (BIND's rules: `\.` and
/// `\DDD` inside labels, any other byte allowed). A relative name is
/// appended to `origin`; with no origin (YAML values) it is absolute.
pub fn parse_name(raw: &str, origin: Option<&Name>) -> Result<Name, String> {
    if raw == "@" {
        return origin.cloned().ok_or_else(|| "`@` is not allowed in a value: write the full name (values are always absolute)".into());
    }
    if raw == "." {
        return Ok(Name::root());
    }
    if raw.is_empty() {
        return Err("empty domain name".into());
    }
    if let Some(n) = plain_name(raw, origin, false) {
        return Ok(n);
    }
    parse_name_escaped(raw, origin)
}

/// What [`parse_name`] makes of a name of plain labels (letters, digits,
/// `-`, `_`, `*`, one dot between labels, an optional final dot), built
/// without its allocations; `None` for anything else, which the general
/// reader reads and reports. Most owner names in a large file are plain.
/// With `lowercase`, the labels of `raw` are lowercased (not the origin's).
pub(super) fn plain_name(raw: &str, origin: Option<&Name>, lowercase: bool) -> Option<Name> {
    let (body, absolute) = match raw.strip_suffix('.') {
        Some(b) => (b, true),
        None => (raw, false),
    };
    let b = body.as_bytes();
    if b.is_empty() || !b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'*' | b'.')) {
        return None;
    }
    let origin_len = match (absolute, origin) {
        (false, Some(o)) => o.iter().map(|l| l.len() + 1).sum::<usize>(),
        _ => 0,
    };
    // As wire_len: each label and its length byte, and the root.
    if body.len() + 1 + origin_len + 1 > 255 {
        return None;
    }
    let mut n = Name::root();
    let mut buf = [0u8; 63];
    for label in body.split('.') {
        if label.is_empty() || label.len() > buf.len() {
            return None;
        }
        let bytes = &mut buf[..label.len()];
        bytes.copy_from_slice(label.as_bytes());
        if lowercase {
            bytes.make_ascii_lowercase();
        }
        n = n.append_label(Label::from_raw_bytes(bytes).ok()?).ok()?;
    }
    if let (false, Some(o)) = (absolute, origin) {
        n = n.append_name(o).ok()?;
    }
    n.set_fqdn(true);
    Some(n)
}

/// [`parse_name`] for any name: escapes, any characters, every problem.
fn parse_name_escaped(raw: &str, origin: Option<&Name>) -> Result<Name, String> {
    // Split on unescaped dots, decoding each label.
    let b = raw.as_bytes();
    let mut labels: Vec<Vec<u8>> = Vec::new();
    let mut cur = String::new();
    let mut absolute = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                // `\DDD` (only ASCII digits: a short one is reported by
                // unescape) or `\X` with X a whole character.
                let digits = b[i + 1..].iter().take(3).take_while(|c| c.is_ascii_digit()).count();
                let len = if digits > 0 { 1 + digits } else { 1 + b.get(i + 1).map_or(0, |c| utf8_len(*c)) };
                let end = (i + len).min(b.len());
                cur.push_str(&raw[i..end]);
                i = end;
            }
            b'.' => {
                if cur.is_empty() {
                    return Err(format!("`{raw}` is not a domain name: it has an empty label (`..` or a leading `.`)"));
                }
                labels.push(unescape(&cur)?);
                cur.clear();
                if i + 1 == b.len() {
                    absolute = true;
                }
                i += 1;
            }
            _ => {
                let len = utf8_len(b[i]);
                let end = (i + len).min(b.len());
                cur.push_str(&raw[i..end]);
                i = end;
            }
        }
    }
    if !cur.is_empty() {
        labels.push(unescape(&cur)?);
    }
    for l in &labels {
        if l.len() > 63 {
            return Err(format!(
                "label `{}` is {} bytes: label bytes exceed 63 (labels are at most 63 bytes)",
                String::from_utf8_lossy(l),
                l.len()
            ));
        }
    }
    let mut all = labels;
    if !absolute && let Some(o) = origin {
        all.extend(o.iter().map(<[u8]>::to_vec));
    }
    if wire_len(&all) > 255 {
        let what = if !absolute && origin.is_some() {
            format!("`{raw}` + `{}`", origin.map(|o| o.to_string()).unwrap_or_default())
        } else {
            format!("`{raw}`")
        };
        return Err(format!("{what} is {} bytes long; names are at most 255", wire_len(&all)));
    }
    let labels: Result<Vec<Label>, _> = all.iter().map(|l| Label::from_raw_bytes(l)).collect();
    let labels = labels.map_err(|e| format!("`{raw}` is not a domain name: {e}"))?;
    let mut n = Name::from_labels(labels).map_err(|e| format!("`{raw}` is not a domain name: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// A TTL: seconds, or BIND's units (`1h30m`, `1w`, `2D`).
pub fn parse_ttl(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u32>().ok();
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mult = match c.to_ascii_lowercase() {
            'w' => 604_800,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        num.clear();
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    if !num.is_empty() {
        return None;
    }
    u32::try_from(total).ok()
}

/// A record type: a mnemonic (any case) or RFC 3597 `TYPEnnn`.
pub fn parse_type(s: &str) -> Option<RecordType> {
    let up = s.to_ascii_uppercase();
    if let Some(n) = up.strip_prefix("TYPE")
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        return n.parse::<u16>().ok().map(RecordType::from);
    }
    match RecordType::from_str(&up) {
        Ok(RecordType::Unknown(_)) | Err(_) => None,
        Ok(t) => Some(t),
    }
}

/// A type as written in messages: its mnemonic, or `TYPEnnn`.
pub fn type_name(t: RecordType) -> String {
    match t {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    }
}

/// Types whose meaning pzdns does not implement: refused with why.
pub fn refused_type(t: RecordType) -> Option<String> {
    let n = type_name(t);
    let code: u16 = t.into();
    match code {
        39 => {
            Some("DNAME records are not supported: pzdns does not implement DNAME redirection (RFC 6672); use a CNAME for each name".into())
        }
        24 | 25 | 43 | 46 | 47 | 48 | 50 | 51 | 59 | 60 | 30 => {
            Some(format!("{n} records are not supported: pzdns does not sign zones or answer DNSSEC queries for private zones; remove it"))
        }
        6 => None,
        41 | 249 | 250 | 251 | 252 | 253 | 254 | 255 | 0 => Some(format!("{n} is not a type of data a zone can hold")),
        _ => None,
    }
}

/// Types read in their own presentation syntax; any other (not refused)
/// type is read in RFC 3597 `\# len hex` form.
pub const TEXT_TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::NS,
    RecordType::PTR,
    RecordType::MX,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::CAA,
    RecordType::SOA,
    RecordType::HTTPS,
    RecordType::SVCB,
    RecordType::TLSA,
    RecordType::SSHFP,
    RecordType::NAPTR,
    RecordType::HINFO,
];

/// A problem with RDATA: the index of the token it concerns (or the
/// number of tokens when one is missing), and what is wrong.
pub type RdataError = (usize, String);

struct Fields<'a> {
    toks: &'a [Tok],
    i: usize,
    rtype: RecordType,
    shape: &'static str,
}

impl<'a> Fields<'a> {
    fn next(&mut self, what: &str) -> Result<&'a Tok, RdataError> {
        match self.toks.get(self.i) {
            Some(t) => {
                self.i += 1;
                Ok(t)
            }
            None => Err((self.i, format!("{} value is missing its {what}; write it as `{}`", type_name(self.rtype), self.shape))),
        }
    }

    fn word(&mut self, what: &str) -> Result<&'a Tok, RdataError> {
        let i = self.i;
        let t = self.next(what)?;
        if t.quoted {
            return Err((i, format!("{} {what} must not be quoted", type_name(self.rtype))));
        }
        Ok(t)
    }

    fn num<T: TryFrom<u64>>(&mut self, what: &str, max: u64) -> Result<T, RdataError> {
        let i = self.i;
        let t = self.word(what)?;
        let v = t.text.parse::<u64>().ok().filter(|v| *v <= max && t.text.bytes().all(|b| b.is_ascii_digit()));
        v.and_then(|v| T::try_from(v).ok()).ok_or_else(|| {
            (
                i,
                format!(
                    "{} {what} `{}` is not a number from 0 to {max}; write the value as `{}`",
                    type_name(self.rtype),
                    t.text,
                    self.shape
                ),
            )
        })
    }

    fn ttl_like(&mut self, what: &str) -> Result<u32, RdataError> {
        let i = self.i;
        let t = self.word(what)?;
        parse_ttl(&t.text).ok_or_else(|| (i, format!("SOA {what} `{}` is not a number of seconds (units w d h m s allowed)", t.text)))
    }

    fn name(&mut self, what: &str, origin: Option<&Name>, out: &mut Vec<u8>) -> Result<(), RdataError> {
        let i = self.i;
        let t = self.next(what)?;
        let n = parse_name(&t.text, origin).map_err(|e| (i, e))?;
        put_name(&n, out);
        Ok(())
    }

    fn string(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), RdataError> {
        let i = self.i;
        let t = self.next(what)?;
        let b = char_string(t).map_err(|e| (i, e))?;
        out.push(b.len() as u8);
        out.extend_from_slice(&b);
        Ok(())
    }

    /// Hex in the remaining tokens (white space allowed between digits).
    fn hex_rest(&mut self, what: &str, out: &mut Vec<u8>) -> Result<(), RdataError> {
        if self.i >= self.toks.len() {
            return Err((self.i, format!("{} value is missing its {what}; write it as `{}`", type_name(self.rtype), self.shape)));
        }
        let start = self.i;
        let mut s = String::new();
        while let Some(t) = self.toks.get(self.i) {
            s.push_str(&t.text);
            self.i += 1;
        }
        let b = hex(&s).map_err(|e| (start, format!("{} {what}: {e}", type_name(self.rtype))))?;
        out.extend_from_slice(&b);
        Ok(())
    }

    fn end(&self) -> Result<(), RdataError> {
        match self.toks.get(self.i) {
            None => Ok(()),
            Some(t) => {
                Err((self.i, format!("unexpected `{}` after the {} value; write it as `{}`", t.text, type_name(self.rtype), self.shape)))
            }
        }
    }
}

fn put_name(n: &Name, out: &mut Vec<u8>) {
    for l in n.iter() {
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
}

/// Decodes hex digits; an odd count or another character is an error.
pub fn hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("`{s}` has an odd number of hex digits"));
    }
    let val = |c: u8| -> Result<u8, String> {
        (c as char).to_digit(16).map(|d| d as u8).ok_or_else(|| format!("`{}` is not a hex digit", c as char))
    };
    s.as_bytes().chunks(2).map(|p| Ok(val(p[0])? << 4 | val(p[1])?)).collect()
}

/// Decodes base64 (RFC 4648, padding required as written by every tool).
pub fn base64(s: &str) -> Result<Vec<u8>, String> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return Err("base64 text must be a multiple of 4 characters (with `=` padding)".into());
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (ci, chunk) in b.chunks(4).enumerate() {
        let last = ci + 1 == b.len() / 4;
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err("misplaced `=` in base64 text".into());
        }
        let mut n = 0u32;
        for (k, c) in chunk.iter().enumerate() {
            let v = if k >= 4 - pad { 0 } else { val(*c).ok_or_else(|| format!("`{}` is not a base64 character", *c as char))? };
            n = n << 6 | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

/// Reads the RDATA of `rtype` from `toks` into its wire form. Names in it
/// are relative to `origin`, or absolute when there is none.
pub fn rdata_wire(rtype: RecordType, toks: &[Tok], origin: Option<&Name>) -> Result<Vec<u8>, RdataError> {
    if let Some(first) = toks.first()
        && !first.quoted
        && first.text == "\\#"
    {
        return generic_wire(rtype, toks);
    }
    if !TEXT_TYPES.contains(&rtype) {
        return Err((0, format!("write {} records in RFC 3597 form: `{} \\# <length> <hex>`", type_name(rtype), type_name(rtype))));
    }
    let shape = match rtype {
        RecordType::A => "192.0.2.1",
        RecordType::AAAA => "2001:db8::1",
        RecordType::CNAME | RecordType::PTR => "target.name",
        RecordType::NS => "nameserver.name",
        RecordType::MX => "PREFERENCE exchange.name",
        RecordType::SRV => "PRIORITY WEIGHT PORT target.name",
        RecordType::TXT => "\"text\" [\"more text\" ...]",
        RecordType::CAA => "FLAGS TAG \"VALUE\"",
        RecordType::SOA => "mname rname SERIAL REFRESH RETRY EXPIRE MINIMUM",
        RecordType::HTTPS | RecordType::SVCB => "PRIORITY target.name [key=value ...]",
        RecordType::TLSA => "USAGE SELECTOR MATCHING-TYPE hex",
        RecordType::SSHFP => "ALGORITHM FP-TYPE hex",
        RecordType::NAPTR => "ORDER PREFERENCE \"FLAGS\" \"SERVICES\" \"REGEXP\" replacement.name",
        RecordType::HINFO => "\"CPU\" \"OS\"",
        _ => "",
    };
    let mut f = Fields { toks, i: 0, rtype, shape };
    let mut out = Vec::new();
    match rtype {
        RecordType::A => {
            let t = f.word("address")?;
            let ip =
                Ipv4Addr::from_str(&t.text).map_err(|_| (0, format!("`{}` is not an IPv4 address (write it like 192.0.2.1)", t.text)))?;
            out.extend_from_slice(&ip.octets());
        }
        RecordType::AAAA => {
            let t = f.word("address")?;
            let ip =
                Ipv6Addr::from_str(&t.text).map_err(|_| (0, format!("`{}` is not an IPv6 address (write it like 2001:db8::1)", t.text)))?;
            out.extend_from_slice(&ip.octets());
        }
        RecordType::CNAME | RecordType::NS | RecordType::PTR => f.name("target", origin, &mut out)?,
        RecordType::MX => {
            out.extend_from_slice(&f.num::<u16>("preference", 65535)?.to_be_bytes());
            f.name("exchange", origin, &mut out)?;
        }
        RecordType::SRV => {
            for what in ["priority", "weight", "port"] {
                out.extend_from_slice(&f.num::<u16>(what, 65535)?.to_be_bytes());
            }
            f.name("target", origin, &mut out)?;
        }
        RecordType::TXT => {
            f.string("text", &mut out)?;
            while f.i < toks.len() {
                f.string("text", &mut out)?;
            }
        }
        RecordType::HINFO => {
            f.string("CPU", &mut out)?;
            f.string("OS", &mut out)?;
        }
        RecordType::CAA => {
            out.push(f.num::<u8>("flags", 255)?);
            let i = f.i;
            let tag = f.word("tag")?;
            if tag.text.is_empty() || tag.text.len() > 255 || !tag.text.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err((i, format!("CAA tag `{}` must be letters and digits, e.g. issue, issuewild, iodef", tag.text)));
            }
            out.push(tag.text.len() as u8);
            out.extend_from_slice(tag.text.as_bytes());
            let i = f.i;
            let v = f.next("value")?;
            out.extend_from_slice(&unescape(&v.text).map_err(|e| (i, e))?);
        }
        RecordType::SOA => {
            f.name("mname", origin, &mut out)?;
            f.name("rname", origin, &mut out)?;
            out.extend_from_slice(&f.num::<u32>("serial", u32::MAX as u64)?.to_be_bytes());
            for what in ["refresh", "retry", "expire", "minimum"] {
                out.extend_from_slice(&f.ttl_like(what)?.to_be_bytes());
            }
        }
        RecordType::NAPTR => {
            out.extend_from_slice(&f.num::<u16>("order", 65535)?.to_be_bytes());
            out.extend_from_slice(&f.num::<u16>("preference", 65535)?.to_be_bytes());
            f.string("flags", &mut out)?;
            f.string("services", &mut out)?;
            f.string("regexp", &mut out)?;
            f.name("replacement", origin, &mut out)?;
        }
        RecordType::SSHFP => {
            out.push(f.num::<u8>("algorithm", 255)?);
            out.push(f.num::<u8>("fingerprint type", 255)?);
            f.hex_rest("fingerprint", &mut out)?;
        }
        RecordType::TLSA => {
            out.push(f.num::<u8>("usage", 255)?);
            out.push(f.num::<u8>("selector", 255)?);
            out.push(f.num::<u8>("matching type", 255)?);
            f.hex_rest("certificate data", &mut out)?;
        }
        RecordType::HTTPS | RecordType::SVCB => {
            out.extend_from_slice(&f.num::<u16>("priority", 65535)?.to_be_bytes());
            f.name("target", origin, &mut out)?;
            svc_params(&mut f, &mut out)?;
        }
        _ => unreachable!("TEXT_TYPES"),
    }
    f.end()?;
    Ok(out)
}

/// RFC 3597: `\# <length> <hex>...`.
fn generic_wire(rtype: RecordType, toks: &[Tok]) -> Result<Vec<u8>, RdataError> {
    let Some(len_tok) = toks.get(1) else {
        return Err((1, "`\\#` must be followed by the RDATA length in bytes and the RDATA in hex (RFC 3597)".into()));
    };
    let len: usize = len_tok
        .text
        .parse()
        .ok()
        .filter(|n| *n <= 65535 && len_tok.text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| (1, format!("RFC 3597 length `{}` is not a number from 0 to 65535", len_tok.text)))?;
    let s: String = toks[2..].iter().map(|t| t.text.as_str()).collect();
    let b = hex(&s).map_err(|e| (2, format!("RFC 3597 data of {}: {e}", type_name(rtype))))?;
    if b.len() != len {
        return Err((2, format!("RFC 3597 data is {} bytes but its length says {len}", b.len())));
    }
    Ok(b)
}

const SVC_KEYS: &[&str] = &["mandatory", "alpn", "no-default-alpn", "port", "ipv4hint", "ech", "ipv6hint", "dohpath", "ohttp"];

fn svc_key(s: &str) -> Option<u16> {
    if let Some(i) = SVC_KEYS.iter().position(|k| *k == s) {
        return Some(i as u16);
    }
    let n = s.strip_prefix("key")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse().ok()
}

/// Splits a SvcParam value list on unescaped commas, decoding each item.
fn value_list(raw: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut it = raw.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => {
                cur.push('\\');
                if let Some(n) = it.next() {
                    cur.push(n);
                }
            }
            ',' => items.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    items.push(cur);
    items.iter().map(|s| unescape(s)).collect()
}

/// SvcParams (RFC 9460 §2.1), written in wire form in key order.
fn svc_params(f: &mut Fields<'_>, out: &mut Vec<u8>) -> Result<(), RdataError> {
    let mut params: Vec<(u16, Vec<u8>)> = Vec::new();
    while f.i < f.toks.len() {
        let i = f.i;
        let t = &f.toks[i];
        f.i += 1;
        if t.quoted {
            return Err((i, format!("SvcParam `{}` must be key=value; only the value may be quoted", t.text)));
        }
        let (key_text, mut value) = match t.text.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (t.text.clone(), None),
        };
        // `key="quoted value"` arrives as `key=` and a glued quoted token.
        if value.as_deref() == Some("")
            && let Some(n) = f.toks.get(f.i)
            && n.quoted
            && n.glued
        {
            value = Some(n.text.clone());
            f.i += 1;
        }
        let key =
            svc_key(&key_text).ok_or_else(|| (i, format!("unknown SvcParam key `{key_text}`; use {} or keyNNNNN", SVC_KEYS.join(", "))))?;
        if params.iter().any(|(k, _)| *k == key) {
            return Err((i, format!("SvcParam `{key_text}` is given twice")));
        }
        let need = |v: &Option<String>| -> Result<String, RdataError> {
            v.clone().filter(|s| !s.is_empty()).ok_or_else(|| (i, format!("SvcParam `{key_text}` needs a value (`{key_text}=...`)")))
        };
        let bad = |e: String| (i, format!("SvcParam `{key_text}`: {e}"));
        let wire = match key {
            0 => {
                let mut keys = Vec::new();
                for k in value_list(&need(&value)?).map_err(bad)? {
                    let name = String::from_utf8_lossy(&k).into_owned();
                    let n = svc_key(&name).ok_or_else(|| bad(format!("unknown key `{name}` in mandatory")))?;
                    if n == 0 || keys.contains(&n) {
                        return Err(bad(format!("`{name}` cannot be listed in mandatory (listed twice, or mandatory itself)")));
                    }
                    keys.push(n);
                }
                keys.sort_unstable();
                keys.iter().flat_map(|k| k.to_be_bytes()).collect()
            }
            1 => {
                let mut w = Vec::new();
                for id in value_list(&need(&value)?).map_err(bad)? {
                    if id.is_empty() || id.len() > 255 {
                        return Err(bad("each ALPN id is 1 to 255 bytes".into()));
                    }
                    w.push(id.len() as u8);
                    w.extend_from_slice(&id);
                }
                w
            }
            2 | 8 => {
                if value.is_some() {
                    return Err(bad("takes no value".into()));
                }
                Vec::new()
            }
            3 => {
                let v = need(&value)?;
                let p: u16 =
                    v.parse().ok().filter(|_| v.bytes().all(|b| b.is_ascii_digit())).ok_or_else(|| bad(format!("`{v}` is not a port")))?;
                p.to_be_bytes().to_vec()
            }
            4 => {
                let mut w = Vec::new();
                for a in value_list(&need(&value)?).map_err(bad)? {
                    let s = String::from_utf8_lossy(&a).into_owned();
                    let ip = Ipv4Addr::from_str(&s).map_err(|_| bad(format!("`{s}` is not an IPv4 address")))?;
                    w.extend_from_slice(&ip.octets());
                }
                w
            }
            6 => {
                let mut w = Vec::new();
                for a in value_list(&need(&value)?).map_err(bad)? {
                    let s = String::from_utf8_lossy(&a).into_owned();
                    let ip = Ipv6Addr::from_str(&s).map_err(|_| bad(format!("`{s}` is not an IPv6 address")))?;
                    w.extend_from_slice(&ip.octets());
                }
                w
            }
            5 => base64(&need(&value)?).map_err(bad)?,
            _ => match &value {
                Some(v) => unescape(v).map_err(bad)?,
                None => Vec::new(),
            },
        };
        if wire.len() > 65535 {
            return Err(bad("value too long".into()));
        }
        params.push((key, wire));
    }
    params.sort_by_key(|(k, _)| *k);
    for (k, v) in params {
        out.extend_from_slice(&k.to_be_bytes());
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(&v);
    }
    Ok(())
}

/// The typed value of wire-form RDATA, as hickory-proto decodes it; a
/// value it cannot decode is refused.
pub fn decode(rtype: RecordType, wire: &[u8]) -> Result<RData, String> {
    if wire.len() > 65535 {
        return Err(format!("{} value is {} bytes; RDATA is at most 65535", type_name(rtype), wire.len()));
    }
    let mut d = BinDecoder::new(wire);
    let r = RData::read(&mut d, rtype, Restrict::new(wire.len() as u16))
        .map_err(|e| format!("{} value is not valid {}: {e}", type_name(rtype), type_name(rtype)))?;
    if d.index() != wire.len() {
        return Err(format!("{} value has {} bytes left over", type_name(rtype), wire.len() - d.index()));
    }
    Ok(r)
}

/// Reads RDATA from tokens into hickory's typed value.
pub fn rdata(rtype: RecordType, toks: &[Tok], origin: Option<&Name>) -> Result<RData, RdataError> {
    let wire = rdata_wire(rtype, toks, origin)?;
    decode(rtype, &wire).map_err(|e| (0, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain name reads as the general reader reads it, labels, case and
    /// all; the shortcut takes no name the general reader refuses.
    fn same_name(raw: &str, origin: Option<&Name>) {
        if let Some(n) = plain_name(raw, origin, false) {
            let g = parse_name_escaped(raw, origin).unwrap_or_else(|e| panic!("{raw}: the shortcut read what the reader refuses: {e}"));
            assert_eq!((n.to_ascii(), n.is_fqdn(), n.num_labels()), (g.to_ascii(), g.is_fqdn(), g.num_labels()), "{raw}");
            assert_eq!(n.iter().collect::<Vec<_>>(), g.iter().collect::<Vec<_>>(), "{raw}");
            assert!(n.eq_case(&g), "{raw}");
        }
    }

    #[test]
    fn plain_names_as_the_general_reader() {
        let origin = Name::from_ascii("Zone-0.Example.").unwrap();
        for raw in ["h0", "H0.Sub", "*.w2", "_sip._tcp", "a-b", "*", "www.example.com.", "A.B.", &"a".repeat(63)] {
            assert!(plain_name(raw, Some(&origin), false).is_some(), "{raw}");
            same_name(raw, Some(&origin));
            same_name(raw, None);
        }
        for raw in [".", "a..b", ".a", "a\\.b", "é", "a b", &"a".repeat(64), "a.."] {
            assert!(plain_name(raw, Some(&origin), false).is_none(), "{raw}");
        }
        for n in 180..260 {
            let raw = "c".repeat(n).as_bytes().chunks(60).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(".");
            same_name(&raw, Some(&origin));
            same_name(&format!("{raw}."), None);
        }
    }

    proptest::proptest! {
        #[test]
        fn plain_names_random(raw in "[a-zA-Z0-9*_.-]{1,80}") {
            let origin = Name::from_ascii("z.Test.").unwrap();
            same_name(&raw, Some(&origin));
            same_name(&raw, None);
        }
    }

    fn toks(s: &str) -> Vec<Tok> {
        let mut errs = Vec::new();
        let l = Lexer::new(s).next_line(&mut errs).unwrap();
        assert!(errs.is_empty(), "{errs:?}");
        l.toks
    }

    fn texts(s: &str) -> Vec<(String, bool)> {
        toks(s).into_iter().map(|t| (t.text, t.quoted)).collect()
    }

    #[test]
    fn lexing_as_bind() {
        assert_eq!(texts("t IN TXT ( \"x y\" )"), [("t".into(), false), ("IN".into(), false), ("TXT".into(), false), ("x y".into(), true)]);
        assert_eq!(texts("y TXT a\"b c\"\n"), [("y".into(), false), ("TXT".into(), false), ("a".into(), false), ("b c".into(), true)]);
        assert_eq!(
            texts("a TXT \"x;y\" \\; z ; comment"),
            [("a".into(), false), ("TXT".into(), false), ("x;y".into(), true), ("\\;".into(), false), ("z".into(), false)]
        );
        let mut errs = Vec::new();
        let mut l = Lexer::new("a ( b\n ; c\n\t c ) d\r\n\n  e f\n");
        let one = l.next_line(&mut errs).unwrap();
        assert_eq!(one.toks.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(one.toks[2].pos, Pos::new(3, 3));
        let two = l.next_line(&mut errs).unwrap();
        assert!(two.blank_start && two.toks[0].pos == Pos::new(5, 3));
        assert!(l.next_line(&mut errs).is_none() && errs.is_empty());
        let mut l = Lexer::new("a \"open\nb ( c\n");
        l.next_line(&mut errs);
        l.next_line(&mut errs);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].0, Pos::new(1, 3));
        assert_eq!(errs[1].0, Pos::new(3, 1));
        assert!(errs[1].1.contains("`(` opened at line 2: a `)` is missing"), "{errs:?}");
    }

    #[test]
    fn escapes_are_decimal() {
        assert_eq!(unescape("\\065\\066C\\\"\\\\").unwrap(), b"ABC\"\\");
        assert_eq!(unescape("\\255\\000").unwrap(), [255, 0]);
        assert!(unescape("\\256").unwrap_err().contains("over 255"));
        assert!(unescape("\\1x").unwrap_err().contains("three digits"));
    }

    #[test]
    fn names_as_bind() {
        let o = Name::from_str("c.example.").unwrap();
        assert_eq!(parse_name("www", Some(&o)).unwrap().to_string(), "www.c.example.");
        assert_eq!(parse_name("www.x.", Some(&o)).unwrap().to_string(), "www.x.");
        assert_eq!(parse_name("@", Some(&o)).unwrap(), o);
        let n = parse_name("a\\.b", Some(&o)).unwrap();
        assert_eq!(n.num_labels(), 3);
        assert_eq!(n.iter().next().unwrap(), b"a.b");
        assert_eq!(parse_name("\\065", None).unwrap().iter().next().unwrap(), b"A");
        assert_eq!(parse_name("~.+1.1:20", None).unwrap().num_labels(), 3);
        assert!(parse_name("a..b", None).is_err());
        assert!(parse_name("\\13Ϙn", None).unwrap_err().contains("three digits"));
        assert!(parse_name("a\\Ϙ.b", None).is_ok());
        assert!(parse_name(&"a".repeat(64), None).unwrap_err().contains("label bytes exceed 63"));
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(parse_name(&long, None).unwrap_err().contains("at most 255"));
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("3600"), Some(3600));
        assert_eq!(parse_ttl("1h30m"), Some(5400));
        assert_eq!(parse_ttl("1W2d"), Some(777_600));
        assert_eq!(parse_ttl("1x"), None);
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl("5h3"), None);
    }

    fn rd(t: RecordType, s: &str) -> Result<RData, RdataError> {
        rdata(t, &toks(&format!("{s}\n")), Some(&Name::from_str("c.example.").unwrap()))
    }

    #[test]
    fn types() {
        let txt = rd(RecordType::TXT, "\"part one \" \"part two\" \\065").unwrap();
        let RData::TXT(t) = &txt else { panic!() };
        assert_eq!(t.txt_data.iter().map(|s| s.to_vec()).collect::<Vec<_>>(), [b"part one ".to_vec(), b"part two".to_vec(), b"A".to_vec()]);
        assert!(rd(RecordType::A, "10.0.0.01").is_err());
        assert_eq!(rd(RecordType::A, "\\# 4 0A000001").unwrap().to_string(), "10.0.0.1");
        assert!(rd(RecordType::A, "\\# 3 0A0000").is_err());
        let u = rdata(RecordType::from(65280), &toks("\\# 3 01 0203\n"), None).unwrap();
        assert_eq!(u.record_type(), RecordType::Unknown(65280));
        let h = rd(RecordType::HTTPS, "1 . alpn=\"h2,h3\" port=443 ipv4hint=192.0.2.1,192.0.2.2 ech=AAEC").unwrap();
        assert_eq!(h.record_type(), RecordType::HTTPS);
        let s = rd(RecordType::SVCB, "0 svc.example.").unwrap();
        assert_eq!(s.record_type(), RecordType::SVCB);
        assert!(rd(RecordType::HTTPS, "1 . port=1 port=2").unwrap_err().1.contains("twice"));
        assert!(rd(RecordType::TLSA, "3 1 1 0123456789ABCDEF 0123").is_ok());
        assert!(rd(RecordType::SSHFP, "4 2 123456789abcdef67890123456789abcdef67890123456789abcdef123456789").is_ok());
        assert!(rd(RecordType::NAPTR, "100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp").is_ok());
        assert!(rd(RecordType::CAA, "0 issue \"ca.example; account=1\"").is_ok());
        assert!(rd(RecordType::MX, "10").unwrap_err().1.contains("missing its exchange"));
        assert!(rd(RecordType::MX, "10 a b").unwrap_err().1.contains("unexpected `b`"));
        assert!(refused_type(RecordType::DNAME).unwrap().contains("DNAME"));
        assert!(refused_type(RecordType::from(46)).unwrap().contains("DNSSEC"));
        assert_eq!(parse_type("type65280"), Some(RecordType::Unknown(65280)));
        assert_eq!(parse_type("TYPE1"), Some(RecordType::A));
        assert_eq!(base64("AAEC").unwrap(), [0, 1, 2]);
        assert_eq!(base64("AAE=").unwrap(), [0, 1]);
    }
}
