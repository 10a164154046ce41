//! `master_file:` — an RFC 1035 zone file read as BIND reads it, so that
//! BIND zones move in unchanged: `$ORIGIN`, `$TTL`, `$INCLUDE`,
//! `$GENERATE`, parentheses across lines, quoted strings, `\DDD` decimal
//! escapes, `@`, relative and absolute names, TTL and class in either
//! order, RFC 3597 `\#` RDATA, CRLF line ends and a byte-order mark.
//!
//! Every problem is reported with its `path:line:column`, in the file it
//! is in (an `$INCLUDE`d file names itself), and reading goes on after
//! it. Data outside the zone is an error, never silently dropped. TTLs
//! follow BIND: `$TTL` when given; else the last explicit TTL (RFC 1035);
//! an SOA without one takes its MINIMUM and makes it the default.
//!
//! Every file is read through [`FileAccess`]: nested `$INCLUDE`s are
//! regular files inside the zones directory, at most
//! [`MAX_INCLUDE_DEPTH`] deep.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::{Name, Record};

use super::diagnostics::{Diagnostics, Pos};
use super::files::FileAccess;
use super::presentation::{self as p, Lexer, Line, Tok};

/// `$INCLUDE` nesting: a file may include files that include files, this deep.
pub const MAX_INCLUDE_DEPTH: usize = 8;
/// Records one `$GENERATE` may produce (a /16 reverse zone).
pub const MAX_GENERATE: u64 = 65_536;
/// Problems reported per load before giving up on the rest.
pub const MAX_PROBLEMS: usize = 1_000;

/// A record read from a master file, with where it was written.
#[derive(Debug, Clone)]
pub struct MasterRecord {
    pub record: Record,
    /// The file it is in (the master file, or an `$INCLUDE`d file),
    /// shared by all the records of that file.
    pub path: Arc<Path>,
    pub pos: Pos,
    /// Where it sits in the master file named by the zone: its own
    /// position, or that of the `$INCLUDE` line that brought it in.
    pub top_pos: Pos,
}

/// Reads and parses `path` as the zone `zone`; a file that cannot be read
/// is reported at `named_at` (the `master_file:` key).
pub fn load(path: &Path, zone: &Name, access: &FileAccess, named_at: (&Path, Pos), diags: &mut Diagnostics) -> Option<Vec<MasterRecord>> {
    let text = access.read_text_at(path, named_at.0, named_at.1, diags)?;
    Some(parse_text(path, &text, zone, access, diags))
}

/// Parses master-file text for `zone` (the initial `$ORIGIN`); `path`
/// names it in messages and anchors relative `$INCLUDE`s. Never panics.
pub fn parse_text(path: &Path, text: &str, zone: &Name, access: &FileAccess, diags: &mut Diagnostics) -> Vec<MasterRecord> {
    let mut r = Reader {
        zone: zone.clone(),
        access,
        diags,
        problems: 0,
        default_ttl: None,
        last_ttl: None,
        out: Vec::new(),
        stack: vec![path.to_path_buf()],
        current: Arc::from(path),
    };
    let mut st = FileState { origin: zone.clone(), owner: None };
    r.file(path, text, &mut st, None);
    r.out
}

struct Reader<'a> {
    zone: Name,
    access: &'a FileAccess,
    diags: &'a mut Diagnostics,
    problems: usize,
    /// `$TTL`, or an SOA's MINIMUM when the SOA had no TTL.
    default_ttl: Option<u32>,
    /// The last explicit TTL, used while there is no default (RFC 1035).
    last_ttl: Option<u32>,
    out: Vec<MasterRecord>,
    /// Files being read, outermost first (for include loops and depth).
    stack: Vec<PathBuf>,
    /// The file being read, as records keep it.
    current: Arc<Path>,
}

/// What an `$INCLUDE` restores when it returns.
#[derive(Clone)]
struct FileState {
    origin: Name,
    owner: Option<Name>,
}

impl Reader<'_> {
    fn problem(&mut self, path: &Path, pos: Pos, msg: impl Into<String>) {
        self.problems += 1;
        if self.problems < MAX_PROBLEMS {
            self.diags.push(path, pos, msg);
        } else if self.problems == MAX_PROBLEMS {
            self.diags.push(path, pos, format!("more than {MAX_PROBLEMS} problems in this master file; stopped reading it"));
        }
    }

    fn gave_up(&self) -> bool {
        self.problems >= MAX_PROBLEMS
    }

    /// Reads one file. `top` is the `$INCLUDE` position in the top file
    /// that led here (`None` for the top file itself).
    fn file(&mut self, path: &Path, text: &str, st: &mut FileState, top: Option<Pos>) {
        if text.starts_with('\u{feff}') {
            // BIND reads the mark as the start of the first owner name and
            // rejects the file; so does pzdns, saying what it is.
            self.problem(
                path,
                Pos::new(1, 1),
                "the file starts with a byte-order mark (U+FEFF), which BIND reads as part of the first name; save it as UTF-8 without BOM",
            );
            return;
        }
        let mut lexer = Lexer::new(text);
        let mut errs = Vec::new();
        while let Some(line) = lexer.next_line(&mut errs) {
            for (pos, e) in errs.drain(..) {
                self.problem(path, pos, e);
            }
            if self.gave_up() {
                return;
            }
            if line.broken {
                continue;
            }
            self.line(path, line, st, top);
        }
        for (pos, e) in errs.drain(..) {
            self.problem(path, pos, e);
        }
    }

    fn line(&mut self, path: &Path, line: Line, st: &mut FileState, top: Option<Pos>) {
        let first = &line.toks[0];
        if !line.blank_start && !first.quoted && first.text.starts_with('$') {
            let d = first.text.to_ascii_uppercase();
            match d.as_str() {
                "$ORIGIN" => self.origin(path, &line.toks, st),
                "$TTL" => self.ttl_directive(path, &line.toks),
                "$INCLUDE" => self.include(path, &line.toks, st, top),
                "$GENERATE" => self.generate(path, &line.toks, st, top),
                _ => self.problem(
                    path,
                    first.pos,
                    format!("unknown directive `{}`; master files know $ORIGIN, $TTL, $INCLUDE and $GENERATE", first.text),
                ),
            }
            return;
        }
        let (owner, rest) = if line.blank_start {
            match &st.owner {
                Some(o) => (o.clone(), &line.toks[..]),
                None => {
                    self.problem(path, first.pos, "this line starts with white space, so it continues the previous owner name, but no record comes before it; write the owner name first");
                    return;
                }
            }
        } else {
            match p::parse_name(&first.text, Some(&st.origin)) {
                Ok(n) => (n, &line.toks[1..]),
                Err(e) => {
                    self.problem(path, first.pos, e);
                    return;
                }
            }
        };
        st.owner = Some(owner.clone());
        let owner_pos = if line.blank_start { first.pos } else { line.toks[0].pos };
        let origin = st.origin.clone();
        self.record(path, owner, owner_pos, rest, &origin, top);
    }

    /// `[ttl] [class] type rdata` (TTL and class in either order) after
    /// the owner.
    fn record(&mut self, path: &Path, owner: Name, pos: Pos, toks: &[Tok], origin: &Name, top: Option<Pos>) {
        let mut ttl: Option<u32> = None;
        let mut class_seen = false;
        let mut i = 0;
        let rtype = loop {
            let Some(t) = toks.get(i) else {
                let at = toks.last().map_or(pos, |t| t.pos);
                self.problem(path, at, "record has no type; write `name [ttl] [IN] TYPE value`");
                return;
            };
            i += 1;
            if t.quoted {
                self.problem(path, t.pos, format!("expected a TTL, class or type, found the quoted string \"{}\"", t.text));
                return;
            }
            if ttl.is_none() && t.text.starts_with(|c: char| c.is_ascii_digit()) {
                match p::parse_ttl(&t.text) {
                    Some(v) => ttl = Some(v),
                    None => {
                        self.problem(path, t.pos, format!("`{}` is not a TTL (seconds, or units like 1h30m)", t.text));
                        return;
                    }
                }
                continue;
            }
            let up = t.text.to_ascii_uppercase();
            if !class_seen && (matches!(up.as_str(), "IN" | "CH" | "HS" | "NONE" | "ANY") || up.starts_with("CLASS")) {
                if up != "IN" && up != "CLASS1" {
                    self.problem(path, t.pos, format!("class {} is not served: pzdns zones are class IN", t.text));
                    return;
                }
                class_seen = true;
                continue;
            }
            match p::parse_type(&t.text) {
                Some(rt) => break (rt, t.pos),
                None => {
                    self.problem(
                        path,
                        t.pos,
                        format!("unknown record type `{}`; use a type such as A, AAAA, CNAME, TXT or TYPEnnn (RFC 3597)", t.text),
                    );
                    return;
                }
            }
        };
        let (rtype, type_pos) = rtype;
        let rdata_toks = &toks[i..];
        if let Some(why) = p::refused_type(rtype) {
            self.problem(path, type_pos, why);
            return;
        }
        let data = match p::rdata(rtype, rdata_toks, Some(origin)) {
            Ok(d) => d,
            Err((k, e)) => {
                let at = rdata_toks.get(k).map_or(type_pos, |t| t.pos);
                self.problem(path, at, e);
                return;
            }
        };
        if !self.zone.zone_of(&owner) {
            self.problem(
                path,
                pos,
                format!(
                    "{} is outside zone {}: out-of-zone data is refused, not dropped (check $ORIGIN, or the final `.` of the name)",
                    owner, self.zone
                ),
            );
            return;
        }
        let ttl = match ttl {
            Some(t) => {
                if self.default_ttl.is_none() {
                    self.last_ttl = Some(t);
                }
                t
            }
            None => match (self.default_ttl, self.last_ttl, &data) {
                (Some(d), ..) => d,
                (None, Some(l), _) => l,
                (None, None, hickory_proto::rr::RData::SOA(soa)) => {
                    // BIND: "no TTL specified; using SOA MINTTL instead".
                    self.default_ttl = Some(soa.minimum);
                    soa.minimum
                }
                _ => {
                    self.problem(path, pos, "record has no TTL and none applies: add `$TTL 3600` (or another default) at the top of the file, or give the record a TTL");
                    return;
                }
            },
        };
        self.out.push(MasterRecord {
            record: Record::from_rdata(owner, ttl, data),
            path: self.current.clone(),
            pos,
            top_pos: top.unwrap_or(pos),
        });
    }

    fn origin(&mut self, path: &Path, toks: &[Tok], st: &mut FileState) {
        let [_, name] = toks else {
            self.problem(path, toks[0].pos, "write `$ORIGIN name.` (one name)");
            return;
        };
        match p::parse_name(&name.text, Some(&st.origin)) {
            Ok(n) => st.origin = n,
            Err(e) => self.problem(path, name.pos, e),
        }
    }

    fn ttl_directive(&mut self, path: &Path, toks: &[Tok]) {
        let [_, t] = toks else {
            self.problem(path, toks[0].pos, "write `$TTL 3600` (one TTL)");
            return;
        };
        match p::parse_ttl(&t.text) {
            Some(v) if !t.quoted => self.default_ttl = Some(v),
            _ => self.problem(path, t.pos, format!("`{}` is not a TTL (seconds, or units like 1h30m)", t.text)),
        }
    }

    /// `$INCLUDE file [origin]`: the file is read with that origin (or the
    /// current one); the origin and owner come back afterwards, `$TTL`
    /// carries on (as BIND does).
    fn include(&mut self, path: &Path, toks: &[Tok], st: &mut FileState, top: Option<Pos>) {
        let at = toks[0].pos;
        if toks.len() < 2 || toks.len() > 3 {
            self.problem(path, at, "write `$INCLUDE file [origin]`");
            return;
        }
        let target = match p::unescape(&toks[1].text) {
            Ok(b) => PathBuf::from(String::from_utf8_lossy(&b).into_owned()),
            Err(e) => {
                self.problem(path, toks[1].pos, e);
                return;
            }
        };
        let full = path.parent().unwrap_or(Path::new(".")).join(&target);
        let mut inner = st.clone();
        if let Some(o) = toks.get(2) {
            match p::parse_name(&o.text, Some(&st.origin)) {
                Ok(n) => inner.origin = n,
                Err(e) => {
                    self.problem(path, o.pos, e);
                    return;
                }
            }
        }
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            self.problem(path, at, format!("$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH} files (an include loop?)"));
            return;
        }
        let canon = std::fs::canonicalize(&full).unwrap_or_else(|_| full.clone());
        if self.stack.iter().any(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()) == canon) {
            self.problem(path, at, format!("$INCLUDE {}: the file includes itself (through {} file(s))", full.display(), self.stack.len()));
            return;
        }
        let mut d = Diagnostics::new();
        let Some(text) = self.access.read_text_at(&full, path, at, &mut d) else {
            for x in d.items() {
                self.problem(&x.path, x.pos, format!("$INCLUDE: {}", x.message));
            }
            return;
        };
        self.stack.push(full.clone());
        let outer = std::mem::replace(&mut self.current, Arc::from(full.as_path()));
        self.file(&full, &text, &mut inner, Some(top.unwrap_or(at)));
        self.current = outer;
        self.stack.pop();
    }

    /// `$GENERATE start-stop[/step] lhs [ttl] [class] type rhs`: `$` is the
    /// counter, `${offset[,width[,base]]}` formats it (base d, o, x, X),
    /// `$$` is a literal `$`, `\$` passes through escaped.
    fn generate(&mut self, path: &Path, toks: &[Tok], st: &mut FileState, top: Option<Pos>) {
        let at = toks[0].pos;
        if toks.len() < 5 {
            self.problem(path, at, "write `$GENERATE start-stop[/step] lhs [ttl] [class] type rhs`");
            return;
        }
        let range = &toks[1];
        let Some((start, stop, step)) = parse_range(&range.text) else {
            self.problem(
                path,
                range.pos,
                format!("$GENERATE range `{}` must be start-stop or start-stop/step, with start <= stop", range.text),
            );
            return;
        };
        let count = (stop - start) / step + 1;
        if count > MAX_GENERATE {
            self.problem(path, range.pos, format!("$GENERATE range makes {count} records; at most {MAX_GENERATE} per line: split it"));
            return;
        }
        let lhs = &toks[2];
        let middle = &toks[3..toks.len() - 1];
        let rhs = &toks[toks.len() - 1];
        // Check the templates once, not once per record.
        for t in [lhs, rhs] {
            if let Err(e) = substitute(&t.text, start) {
                self.problem(path, t.pos, e);
                return;
            }
        }
        let origin = st.origin.clone();
        let mut i = start;
        while i <= stop {
            let owner_text = substitute(&lhs.text, i).unwrap_or_default();
            let owner = match p::parse_name(&owner_text, Some(&origin)) {
                Ok(n) => n,
                Err(e) => {
                    self.problem(path, lhs.pos, format!("$GENERATE owner `{owner_text}`: {e}"));
                    return;
                }
            };
            let rhs_text = substitute(&rhs.text, i).unwrap_or_default();
            // BIND reads the substituted right-hand side as RDATA text.
            let mut errs = Vec::new();
            let mut rd: Vec<Tok> = middle.to_vec();
            if let Some(l) = Lexer::new(&rhs_text).next_line(&mut errs) {
                rd.extend(l.toks.into_iter().map(|mut t| {
                    t.pos = rhs.pos;
                    t
                }));
            }
            if let Some((_, e)) = errs.into_iter().next() {
                self.problem(path, rhs.pos, format!("$GENERATE value `{rhs_text}`: {e}"));
                return;
            }
            let before = self.problems;
            self.record(path, owner, lhs.pos, &rd, &origin, top);
            if self.problems > before {
                return; // one problem per $GENERATE line, not one per record
            }
            i += step;
        }
    }
}

/// `start-stop[/step]`.
fn parse_range(s: &str) -> Option<(u64, u64, u64)> {
    let (range, step) = match s.split_once('/') {
        Some((r, st)) => (r, st.parse::<u64>().ok().filter(|v| *v > 0)?),
        None => (s, 1),
    };
    let (a, b) = range.split_once('-')?;
    let (a, b) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
    (a <= b && b <= u32::MAX as u64).then_some((a, b, step))
}

/// Replaces `$` and `${offset,width,base}` in a `$GENERATE` template.
fn substitute(t: &str, i: u64) -> Result<String, String> {
    let mut out = String::new();
    let b = t.as_bytes();
    let mut k = 0;
    while k < b.len() {
        match b[k] {
            b'\\' => {
                // Escapes pass through to the name or value reader.
                out.push('\\');
                if let Some(c) = t[k + 1..].chars().next() {
                    out.push(c);
                    k += c.len_utf8();
                }
                k += 1;
            }
            b'$' if b.get(k + 1) == Some(&b'$') => {
                out.push_str("\\$");
                k += 2;
            }
            b'$' if b.get(k + 1) == Some(&b'{') => {
                let end = t[k..].find('}').ok_or_else(|| format!("`{t}`: `${{` without `}}`"))? + k;
                let spec = &t[k + 2..end];
                let parts: Vec<&str> = spec.split(',').collect();
                let bad = || format!("`${{{spec}}}` must be ${{offset[,width[,base]]}} with base d, o, x or X");
                let offset: i64 = parts.first().and_then(|s| s.trim().parse().ok()).ok_or_else(bad)?;
                let width: usize = match parts.get(1) {
                    Some(w) => w.trim().parse().ok().filter(|w| *w <= 255).ok_or_else(bad)?,
                    None => 0,
                };
                let v = i as i64 + offset;
                if v < 0 {
                    return Err(format!("`${{{spec}}}` makes a negative number"));
                }
                let s = match parts.get(2).map(|s| s.trim()) {
                    None | Some("d") => format!("{v:0width$}"),
                    Some("o") => format!("{v:0width$o}"),
                    Some("x") => format!("{v:0width$x}"),
                    Some("X") => format!("{v:0width$X}"),
                    Some("n") | Some("N") => {
                        return Err("nibble mode (n, N) in $GENERATE is not supported by pzdns; write the names out".into());
                    }
                    Some(_) => return Err(bad()),
                };
                if parts.len() > 3 {
                    return Err(bad());
                }
                out.push_str(&s);
                k = end + 1;
            }
            b'$' => {
                out.push_str(&i.to_string());
                k += 1;
            }
            _ => {
                let c = t[k..].chars().next().unwrap_or(' ');
                out.push(c);
                k += c.len_utf8();
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{RData, RecordType};
    use std::str::FromStr;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pzdns-mf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn read(text: &str) -> (Vec<MasterRecord>, Vec<String>) {
        let d = scratch("read");
        let p = d.join("z.zone");
        let mut diags = Diagnostics::new();
        let recs = parse_text(&p, text, &Name::from_str("c.example.").unwrap(), &FileAccess::new(&d, &[]), &mut diags);
        let probs = diags.items().iter().map(|x| format!("{}:{}: {}", x.pos.line, x.pos.column, x.message)).collect();
        (recs, probs)
    }

    fn txt(r: &MasterRecord) -> Vec<Vec<u8>> {
        match &r.record.data {
            RData::TXT(t) => t.txt_data.iter().map(|s| s.to_vec()).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quoted_strings_and_decimal_escapes() {
        let (r, p) =
            read("$TTL 60\nt IN TXT ( \"x y\" )\ntxt IN TXT ( \"part one \"\n    \"part two\" )\ne TXT \"\\065\" a\\\"b \\; \"x;y\"\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(txt(&r[0]), [b"x y".to_vec()]);
        assert_eq!(txt(&r[1]), [b"part one ".to_vec(), b"part two".to_vec()]);
        assert_eq!(txt(&r[2]), [b"A".to_vec(), b"a\"b".to_vec(), b";".to_vec(), b"x;y".to_vec()]);
        assert_eq!(r[1].pos, Pos::new(3, 1));
    }

    #[test]
    fn out_of_zone_data_is_an_error_with_its_line() {
        let (r, p) = read("$TTL 60\nwww A 10.0.0.1\n$ORIGIN other.example.\nfoo A 10.0.0.2\nbar.c.example. A 10.0.0.3\n");
        assert_eq!(r.len(), 2);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("4:1: foo.other.example. is outside zone c.example."), "{p:?}");
    }

    #[test]
    fn every_problem_with_its_position() {
        let (_, p) =
            read("$TTL 60\nbad A 10.0.0.300\nbad2 MX x\n  A 1.2.3.4 5\nw TXT \"open\nq BOGUS x\n$FOO\nd DNAME x.\nk 1x A 1.1.1.1\n");
        assert_eq!(
            p,
            [
                "2:7: `10.0.0.300` is not an IPv4 address (write it like 192.0.2.1)",
                "3:9: MX preference `x` is not a number from 0 to 65535; write the value as `PREFERENCE exchange.name`",
                "4:13: unexpected `5` after the A value; write it as `192.0.2.1`",
                "5:7: quoted string is not closed on its line (a `\"` is missing)",
                "6:3: unknown record type `BOGUS`; use a type such as A, AAAA, CNAME, TXT or TYPEnnn (RFC 3597)",
                "7:1: unknown directive `$FOO`; master files know $ORIGIN, $TTL, $INCLUDE and $GENERATE",
                "8:3: DNAME records are not supported: pzdns does not implement DNAME redirection (RFC 6672); use a CNAME for each name",
                "9:3: `1x` is not a TTL (seconds, or units like 1h30m)",
            ]
        );
    }

    #[test]
    fn ttls_as_bind() {
        // No $TTL: an SOA without TTL takes its MINIMUM, which becomes the default.
        let (r, p) = read("@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns 100 A 10.0.0.1\nx A 10.0.0.2\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(r.iter().map(|r| r.record.ttl).collect::<Vec<_>>(), [5, 5, 100, 5]);
        // No $TTL, explicit TTLs: RFC 1035, the last one carries on.
        let (r, p) =
            read("www 300 IN A 10.0.0.9\n@ IN 600 SOA ns hm ( 1 2 3 4 5 )\nx A 10.0.0.2\n$TTL 1h\nz A 10.0.0.3\nq 1w2d IN A 1.1.1.1\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(r.iter().map(|r| r.record.ttl).collect::<Vec<_>>(), [300, 600, 600, 3600, 777_600]);
        let (_, p) = read("www IN A 10.0.0.9\n");
        assert!(p[0].contains("no TTL"), "{p:?}");
    }

    #[test]
    fn generate_and_rfc3597() {
        let (r, p) = read(
            "$TTL 60\n$GENERATE 1-3/2 h$ A 10.1.0.$\n$GENERATE 1-2 h${10,2,x} CNAME h$.\\$\n$GENERATE 250-251 $ PTR ${-240,3,o}.x.\nr TYPE65280 \\# 3 010203\ns A \\# 4 0a000001\n",
        );
        assert!(p.is_empty(), "{p:?}");
        let lines: Vec<String> = r.iter().map(|r| format!("{} {}", r.record.name, r.record.data)).collect();
        assert_eq!(
            lines[..6],
            [
                "h1.c.example. 10.1.0.1",
                "h3.c.example. 10.1.0.3",
                "h0b.c.example. h1.\\$.c.example.",
                "h0c.c.example. h2.\\$.c.example.",
                "250.c.example. 012.x.",
                "251.c.example. 013.x."
            ]
        );
        assert_eq!(r[6].record.record_type(), RecordType::Unknown(65280));
        assert_eq!(r[7].record.data.to_string(), "10.0.0.1");
        let (_, p) = read("$TTL 60\n$GENERATE 0-70000 h$ A 10.0.0.1\n");
        assert!(p[0].contains("at most 65536"), "{p:?}");
    }

    #[test]
    fn includes_are_read_through_the_same_checks() {
        let d = scratch("inc");
        std::fs::write(
            d.join("inc.zone"),
            "  A 10.0.0.2\n$TTL 77\na A 1.1.1.1\n$ORIGIN zz.c.example.\nb A 2.2.2.2\n$INCLUDE deeper.zone\n",
        )
        .unwrap();
        let fifo = d.join("deeper.zone");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        std::fs::write(d.join("loop.zone"), "$INCLUDE loop.zone\n").unwrap();
        let top = d.join("z.zone");
        let text = "$TTL 60\nx A 10.0.0.1\n$INCLUDE inc.zone sub\n  A 10.0.0.3\n$INCLUDE loop.zone\n";
        let mut diags = Diagnostics::new();
        let t = std::time::Instant::now();
        let r = parse_text(&top, text, &Name::from_str("c.example.").unwrap(), &FileAccess::new(&d, &[]), &mut diags);
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        let lines: Vec<String> = r.iter().map(|r| format!("{} {} {}", r.record.name, r.record.ttl, r.record.data)).collect();
        assert_eq!(
            lines,
            [
                "x.c.example. 60 10.0.0.1",
                "x.c.example. 60 10.0.0.2",
                "a.sub.c.example. 77 1.1.1.1",
                "b.zz.c.example. 77 2.2.2.2",
                "x.c.example. 77 10.0.0.3"
            ]
        );
        assert_eq!(&*r[2].path, d.join("inc.zone"));
        assert_eq!((r[2].pos, r[2].top_pos), (Pos::new(3, 1), Pos::new(3, 1)));
        let probs: Vec<String> = diags.items().iter().map(|x| x.to_string()).collect();
        assert_eq!(probs.len(), 2, "{probs:#?}");
        assert!(
            probs[0].starts_with(&format!("{}:6:1: $INCLUDE: {} is a FIFO", d.join("inc.zone").display(), fifo.display())),
            "{probs:#?}"
        );
        assert!(probs[1].contains("loop.zone:1:1: $INCLUDE") && probs[1].contains("includes itself"), "{probs:#?}");
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn crlf_bom_tabs_and_comments() {
        let (_, p) = read("\u{feff}$TTL 60\nwww A 10.0.0.1\n");
        assert_eq!(
            p,
            [
                "1:1: the file starts with a byte-order mark (U+FEFF), which BIND reads as part of the first name; save it as UTF-8 without BOM"
            ]
        );
        let (r, p) = read(
            "$TTL 60\r\n@\tIN\tSOA\tns hm (\r\n\t1 ; serial\r\n\t2 3 4 5 )\r\n;only a comment\r\n\t; indented comment\r\nwww\tA\t10.0.0.1 ; trailing\r\n",
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].record.data.to_string(), "10.0.0.1");
    }
}
