//! The YAML reader: the only module that knows which YAML library pzdns uses.
//!
//! Files are read with granit-parser's event stream into a plain tree of
//! [`Node`]s that keeps every scalar **as written**: no schema (YAML 1.1 or
//! 1.2) is applied, so `no`, `010`, `0x1f`, `1.10` and `~` stay those
//! strings. Typed keys (TTLs, booleans, counts) are read from that text by
//! [`MapReader`], which accepts only their type: `true`/`false` unquoted
//! for a boolean, decimal digits unquoted for a number. What is written is
//! what is served.
//!
//! The tree builder also enforces what a data file needs and an attack
//! would abuse: one document, nesting at most [`MAX_DEPTH`], aliases and
//! their expansion bounded by the size of the input.
//!
//! Every problem is reported, not just the first: a wrong type, an unknown
//! key (with "did you mean"), a key given twice, a missing key.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use granit_parser::{Event, Parser, ScalarStyle, Span};

use super::diagnostics::{Diagnostics, Pos};

/// Deepest nesting of lists and mappings in a data file.
pub const MAX_DEPTH: usize = 32;
/// Most aliases (`*name`) in one file: data files need none; a few are fine.
pub const MAX_ALIASES: usize = 1_000;

/// A value with the position it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Spanned<T> {
    pub fn new(value: T, pos: Pos) -> Self {
        Spanned { value, pos }
    }
}

/// Position of a spanned value.
pub fn pos<T>(s: &Spanned<T>) -> Pos {
    s.pos
}

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unquoted.
    Plain,
    /// `'…'` or `"…"`, or tagged `!!str`.
    Quoted,
    /// `|` or `>` blocks.
    Block,
}

/// One YAML node, as written.
#[derive(Debug, Clone)]
pub enum Node {
    /// A scalar's text after YAML's own escape and folding rules, never
    /// resolved to a type.
    Scalar {
        text: String,
        style: Style,
        pos: Pos,
    },
    /// A key with nothing after it (`key:`), or an empty document.
    Empty {
        pos: Pos,
    },
    Seq {
        items: Vec<Node>,
        pos: Pos,
    },
    /// Keys in file order; keys are scalars (others are reported).
    Map {
        entries: Vec<(Spanned<String>, Node)>,
        pos: Pos,
    },
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Scalar { pos, .. } | Node::Empty { pos } | Node::Seq { pos, .. } | Node::Map { pos, .. } => *pos,
        }
    }

    /// What the node is, for messages: "text `x`", "a list", "a mapping".
    pub fn describe(&self) -> String {
        match self {
            Node::Scalar { text, style: Style::Plain, .. } => format!("`{}`", shorten(text)),
            Node::Scalar { text, .. } => format!("the quoted text \"{}\"", shorten(text)),
            Node::Empty { .. } => "nothing".to_string(),
            Node::Seq { .. } => "a list".to_string(),
            Node::Map { .. } => "a mapping (key: value)".to_string(),
        }
    }

    fn count(&self) -> usize {
        match self {
            Node::Scalar { .. } | Node::Empty { .. } => 1,
            Node::Seq { items, .. } => 1 + items.iter().map(Node::count).sum::<usize>(),
            Node::Map { entries, .. } => 1 + entries.iter().map(|(_, v)| 1 + v.count()).sum::<usize>(),
        }
    }
}

fn shorten(s: &str) -> Cow<'_, str> {
    if s.chars().count() > 40 { Cow::Owned(format!("{}…", s.chars().take(40).collect::<String>())) } else { Cow::Borrowed(s) }
}

fn marker_pos(span: &Span) -> Pos {
    Pos::new(span.start.line() as u32, span.start.col() as u32 + 1)
}

/// Parses `text` (the contents of `path`) into a tree of nodes as written.
/// An empty document is [`Node::Empty`]. `None` when the text is not YAML
/// (reported with its position) or breaks a limit.
pub fn parse_tree(path: &Path, text: &str, diags: &mut Diagnostics) -> Option<Node> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut b = Builder { stack: Vec::new(), anchors: HashMap::new(), aliases: 0, budget: 64 + 2 * text.len(), root: None, docs: 0 };
    for ev in Parser::new_from_str(text) {
        let (event, span) = match ev {
            Ok(e) => e,
            Err(e) => {
                let m = e.marker();
                diags.push(path, Pos::new(m.line() as u32, m.col() as u32 + 1), syntax_message(&e.info().to_string(), text));
                return None;
            }
        };
        if let Err((p, msg)) = b.event(event, &span) {
            diags.push(path, p, msg);
            return None;
        }
    }
    Some(b.root.unwrap_or(Node::Empty { pos: Pos::new(1, 1) }))
}

/// The library's message, in words for someone who wrote a data file.
fn syntax_message(info: &str, text: &str) -> String {
    let first = info.lines().next().unwrap_or("invalid YAML").trim();
    let looks_like_yaml = text.lines().any(|l| {
        let t = l.trim_start();
        !t.starts_with('#') && (t.contains(": ") || t.ends_with(':') || t.starts_with("- "))
    });
    if looks_like_yaml {
        format!("not valid YAML: {first}")
    } else {
        format!("not valid YAML ({first}); pzdns data files are YAML mappings like `key: value`")
    }
}

enum Frame {
    Seq { items: Vec<Node>, pos: Pos, anchor: usize },
    Map { entries: Vec<(Spanned<String>, Node)>, key: Option<Result<Spanned<String>, Pos>>, pos: Pos, anchor: usize },
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    aliases: usize,
    /// Nodes that may still be created (aliases copy theirs): an alias
    /// bomb runs out of budget instead of memory.
    budget: usize,
    root: Option<Node>,
    docs: usize,
}

type BuildError = (Pos, String);

impl Builder {
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), BuildError> {
        let p = marker_pos(span);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart(..) => {
                self.docs += 1;
                if self.docs > 1 {
                    return Err((p, "more than one YAML document (`---`) in the file; pzdns reads one per file".into()));
                }
                Ok(())
            }
            Event::Scalar(value, style, anchor, tag) => {
                let mut style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                };
                if let Some(t) = &tag {
                    if t.is_yaml_core_schema_tag("str") {
                        style = Style::Quoted;
                    } else {
                        return Err((p, format!("YAML tag `{}` is not used by pzdns; remove it", t.original())));
                    }
                }
                let empty = style == Style::Plain && span.start.index() == span.end.index();
                let node = if empty { Node::Empty { pos: p } } else { Node::Scalar { text: value.into_owned(), style, pos: p } };
                self.spend(1, p)?;
                if anchor != 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.add(node)
            }
            Event::Alias(id) => {
                self.aliases += 1;
                if self.aliases > MAX_ALIASES {
                    return Err((p, format!("too many YAML aliases (*name): pzdns allows {MAX_ALIASES}; write the values out")));
                }
                // An alias inside an anchored value is how alias bombs are
                // built (each level multiplies the last); data never needs it.
                if self.stack.iter().any(|f| matches!(f, Frame::Seq { anchor, .. } | Frame::Map { anchor, .. } if *anchor != 0)) {
                    return Err((p, "an alias (*name) inside an anchored (&name) value: nested aliases are refused, as they multiply; write the values out".into()));
                }
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return Err((p, "alias (*name) to an anchor that is not defined before it".into()));
                };
                self.spend(node.count(), p)?;
                self.add(node)
            }
            Event::SequenceStart(_, anchor, tag) | Event::MappingStart(_, anchor, tag) if tag.is_some() => {
                let _ = anchor;
                let t = tag.map(|t| t.original()).unwrap_or_default();
                Err((p, format!("YAML tag `{t}` is not used by pzdns; remove it")))
            }
            Event::SequenceStart(_, anchor, _) => self.push(Frame::Seq { items: Vec::new(), pos: p, anchor }, p),
            Event::MappingStart(_, anchor, _) => self.push(Frame::Map { entries: Vec::new(), key: None, pos: p, anchor }, p),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq { items, pos, anchor }) => (Node::Seq { items, pos }, anchor),
                    Some(Frame::Map { entries, pos, anchor, .. }) => (Node::Map { entries, pos }, anchor),
                    None => return Ok(()),
                };
                if node.1 != 0 {
                    self.anchors.insert(node.1, node.0.clone());
                }
                self.add(node.0)
            }
            _ => Ok(()),
        }
    }

    fn spend(&mut self, n: usize, p: Pos) -> Result<(), BuildError> {
        if n > self.budget {
            return Err((p, "YAML expands to too many values (aliases copied too often); write the values out".into()));
        }
        self.budget -= n;
        Ok(())
    }

    fn push(&mut self, f: Frame, p: Pos) -> Result<(), BuildError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err((p, format!("YAML nested deeper than {MAX_DEPTH} levels")));
        }
        self.spend(1, p)?;
        self.stack.push(f);
        Ok(())
    }

    fn add(&mut self, node: Node) -> Result<(), BuildError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    *key = Some(match node {
                        Node::Scalar { text, pos, .. } => Ok(Spanned::new(text, pos)),
                        Node::Empty { pos } => Ok(Spanned::new(String::new(), pos)),
                        other => Err(other.pos()),
                    });
                    Ok(())
                }
                Some(Ok(k)) => {
                    entries.push((k, node));
                    Ok(())
                }
                Some(Err(p)) => Err((p, "a mapping key must be plain text, not a list or mapping".into())),
            },
        }
    }
}

/// The keys of one mapping, read one by one. Every problem is reported:
/// a key given twice, a missing key, a value of the wrong type, and, in
/// [`MapReader::finish`], every key nobody asked for (with "did you mean").
pub struct MapReader<'a> {
    path: &'a Path,
    /// Where the mapping starts, for "missing key" messages.
    pub pos: Pos,
    /// What the mapping is, for messages: "a zone file", "a record".
    what: &'static str,
    entries: Vec<(&'a Spanned<String>, &'a Node, bool)>,
    asked: Vec<&'static str>,
}

impl<'a> MapReader<'a> {
    /// `None` (reported) if `node` is not a mapping.
    pub fn new(node: &'a Node, what: &'static str, path: &'a Path, diags: &mut Diagnostics) -> Option<Self> {
        let Node::Map { entries, pos } = node else {
            diags.push(path, node.pos(), format!("{what} must be a mapping (`key: value` lines), found {}", node.describe()));
            return None;
        };
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        let mut kept = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            if let Some(first) = seen.get(k.value.as_str()) {
                diags.push(path, k.pos, format!("`{}` is given twice in {what} (first at line {}); keep one of them", k.value, first.line));
                continue;
            }
            seen.insert(&k.value, k.pos);
            kept.push((k, v, false));
        }
        Some(MapReader { path, pos: *pos, what, entries: kept, asked: Vec::new() })
    }

    /// The value of `key`, if present.
    pub fn get(&mut self, key: &'static str) -> Option<&'a Node> {
        self.asked.push(key);
        let e = self.entries.iter_mut().find(|e| e.0.value == key)?;
        e.2 = true;
        Some(e.1)
    }

    /// Reports `key` missing.
    pub fn missing(&self, key: &str, hint: &str, diags: &mut Diagnostics) {
        diags.push(self.path, self.pos, format!("{} has no `{key}`{hint}", self.what));
    }

    /// A required key.
    pub fn require(&mut self, key: &'static str, hint: &str, diags: &mut Diagnostics) -> Option<&'a Node> {
        let v = self.get(key);
        if v.is_none() {
            self.missing(key, hint, diags);
        }
        v
    }

    /// Text, exactly as written.
    pub fn text(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<Spanned<String>> {
        let node = self.get(key)?;
        text(node, key, self.path, diags)
    }

    pub fn req_text(&mut self, key: &'static str, hint: &str, diags: &mut Diagnostics) -> Option<Spanned<String>> {
        let node = self.require(key, hint, diags)?;
        text(node, key, self.path, diags)
    }

    /// `true` or `false`, unquoted.
    pub fn bool(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<Spanned<bool>> {
        let node = self.get(key)?;
        match node {
            Node::Scalar { text, style: Style::Plain, pos } if text == "true" || text == "false" => {
                Some(Spanned::new(text == "true", *pos))
            }
            Node::Scalar { text, style: Style::Quoted, pos } if text == "true" || text == "false" => {
                diags.push(self.path, *pos, format!("`{key}` must be the boolean {text} without quotes; quoted, it is text"));
                None
            }
            other => {
                diags.push(self.path, other.pos(), format!("`{key}` must be true or false, not {}", other.describe()));
                None
            }
        }
    }

    /// A whole number written in decimal digits, unquoted.
    pub fn int(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<Spanned<i64>> {
        let node = self.get(key)?;
        int(node, key, self.path, diags)
    }

    /// A list of nodes (`[a, b]` or `- a` lines).
    pub fn list(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<Spanned<&'a [Node]>> {
        let node = self.get(key)?;
        list(node, key, self.path, diags)
    }

    pub fn req_list(&mut self, key: &'static str, hint: &str, diags: &mut Diagnostics) -> Option<Spanned<&'a [Node]>> {
        let node = self.require(key, hint, diags)?;
        list(node, key, self.path, diags)
    }

    /// A list of text values.
    pub fn texts(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<Spanned<Vec<Spanned<String>>>> {
        let l = self.list(key, diags)?;
        Some(Spanned::new(l.value.iter().filter_map(|n| text(n, key, self.path, diags)).collect(), l.pos))
    }

    /// Reports every key that was not asked for, suggesting the closest
    /// known key.
    pub fn finish(self, diags: &mut Diagnostics) {
        for (k, _, used) in &self.entries {
            if *used {
                continue;
            }
            let hint = match did_you_mean(&k.value, self.asked.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? "),
                None => String::new(),
            };
            let mut known: Vec<&str> = self.asked.clone();
            known.dedup();
            diags.push(
                self.path,
                k.pos,
                format!(
                    "unknown field `{}` in {}; {hint}(known: {}; pzdns ignores nothing, so remove it or fix its spelling)",
                    k.value,
                    self.what,
                    known.join(", ")
                ),
            );
        }
    }
}

/// A scalar as text, exactly as written.
pub fn text(node: &Node, key: &str, path: &Path, diags: &mut Diagnostics) -> Option<Spanned<String>> {
    match node {
        Node::Scalar { text, pos, .. } => Some(Spanned::new(text.clone(), *pos)),
        Node::Empty { pos } => {
            diags.push(path, *pos, format!("`{key}` has no value; write one after the colon"));
            None
        }
        other => {
            diags.push(path, other.pos(), format!("`{key}` must be a single value, not {}", other.describe()));
            None
        }
    }
}

/// A whole number in decimal digits, unquoted.
pub fn int(node: &Node, key: &str, path: &Path, diags: &mut Diagnostics) -> Option<Spanned<i64>> {
    match node {
        Node::Scalar { text, style: Style::Plain, pos } if is_decimal(text) => match text.parse::<i64>() {
            Ok(n) => Some(Spanned::new(n, *pos)),
            Err(_) => {
                diags.push(path, *pos, format!("`{key}` value {text} is too large"));
                None
            }
        },
        Node::Scalar { text, style: Style::Quoted, pos } if is_decimal(text) => {
            diags.push(path, *pos, format!("`{key}` must be the number {text} without quotes; quoted, it is text"));
            None
        }
        other => {
            diags.push(path, other.pos(), format!("`{key}` must be a whole number in decimal digits (e.g. 300), not {}", other.describe()));
            None
        }
    }
}

fn is_decimal(s: &str) -> bool {
    let d = s.strip_prefix('-').unwrap_or(s);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

pub fn list<'a>(node: &'a Node, key: &str, path: &Path, diags: &mut Diagnostics) -> Option<Spanned<&'a [Node]>> {
    match node {
        Node::Seq { items, pos } => Some(Spanned::new(items.as_slice(), *pos)),
        other => {
            diags.push(path, other.pos(), format!("`{key}` must be a list (`[a, b]` or `- a` lines), not {}", other.describe()));
            None
        }
    }
}

/// The closest of `candidates` to `word` (Levenshtein distance at most a
/// third of the word's length, at least 1), for "did you mean" hints.
pub fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (edit_distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> (Option<Node>, Diagnostics) {
        let mut d = Diagnostics::new();
        (parse_tree(Path::new("t.yaml"), text, &mut d), d)
    }

    fn scalar(n: &Node) -> (&str, Style) {
        match n {
            Node::Scalar { text, style, .. } => (text, *style),
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn scalars_are_text_as_written() {
        let spellings = [
            "y",
            "Y",
            "yes",
            "No",
            "NO",
            "on",
            "Off",
            "true",
            "False",
            "~",
            "null",
            "Null",
            "010",
            "0o10",
            "0x1f",
            "0b101",
            "1e3",
            "1.10",
            "1_000",
            "1:20",
            "190:20:30",
            ".inf",
            "-.Inf",
            ".NaN",
            "+1",
            "-0",
            "0.",
            "2001:db8::1",
            "=",
            "<<",
        ];
        for s in spellings {
            let (node, d) = tree(&format!("k: {s}\n"));
            assert!(d.is_empty(), "{s}: {d}");
            let Some(Node::Map { entries, .. }) = node else { panic!() };
            assert_eq!(scalar(&entries[0].1), (s, Style::Plain), "{s}");
        }
        let (node, _) = tree("k: '010'\nj: \"a\\tb\"\nm: !!str 0x1f\nn:\n");
        let Some(Node::Map { entries, .. }) = node else { panic!() };
        assert_eq!(scalar(&entries[0].1), ("010", Style::Quoted));
        assert_eq!(scalar(&entries[1].1), ("a\tb", Style::Quoted));
        assert_eq!(scalar(&entries[2].1), ("0x1f", Style::Quoted));
        assert!(matches!(entries[3].1, Node::Empty { .. }));
    }

    #[test]
    fn typed_keys_accept_only_their_type() {
        let (node, _) = tree("a: true\nb: 'yes'\nc: yes\nd: 60\ne: \"60\"\nf: 0x3c\ng: 1e3\n");
        let node = node.unwrap();
        let mut d = Diagnostics::new();
        let mut m = MapReader::new(&node, "a test", Path::new("t.yaml"), &mut d).unwrap();
        assert_eq!(m.bool("a", &mut d).map(|b| b.value), Some(true));
        assert!(m.bool("b", &mut d).is_none());
        assert!(m.bool("c", &mut d).is_none());
        assert_eq!(m.int("d", &mut d).map(|b| b.value), Some(60));
        assert!(m.int("e", &mut d).is_none());
        assert!(m.int("f", &mut d).is_none());
        assert!(m.int("g", &mut d).is_none());
        m.finish(&mut d);
        let lines: Vec<String> = d.items().iter().map(|x| x.to_string()).collect();
        assert_eq!(d.len(), 5, "{lines:#?}");
        assert!(lines[0].starts_with("t.yaml:2:4: `b` must be true or false, not the quoted text \"yes\""), "{lines:#?}");
        assert!(lines[1].starts_with("t.yaml:3:4: `c` must be true or false, not `yes`"), "{lines:#?}");
        assert!(lines[2].starts_with("t.yaml:5:4: `e` must be the number 60 without quotes"), "{lines:#?}");
    }

    #[test]
    fn duplicate_and_unknown_keys_in_plain_words() {
        let (node, _) = tree("zone: a\nzone: b\nrecods: []\n");
        let node = node.unwrap();
        let mut d = Diagnostics::new();
        let mut m = MapReader::new(&node, "a zone file", Path::new("t.yaml"), &mut d).unwrap();
        m.get("zone");
        m.get("records");
        m.finish(&mut d);
        let lines: Vec<String> = d.items().iter().map(|x| x.to_string()).collect();
        assert_eq!(lines[0], "t.yaml:2:1: `zone` is given twice in a zone file (first at line 1); keep one of them");
        assert!(lines[1].starts_with("t.yaml:3:1: unknown field `recods` in a zone file; did you mean `records`?"), "{}", lines[1]);
    }

    #[test]
    fn limits() {
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        let (n, d) = tree(&deep);
        assert!(n.is_none() && d.items()[0].message.contains("deeper than 32"), "{d}");
        let bomb = "a: &a [x, x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n";
        let (n, d) = tree(bomb);
        assert!(n.is_none() && d.items()[0].to_string().starts_with("t.yaml:2:8: an alias (*name) inside an anchored"), "{d}");
        let wide = format!("a: &a [{}]\nb: [{}]\n", vec!["x"; 100].join(", "), vec!["*a"; 900].join(", "));
        let (n, d) = tree(&wide);
        assert!(n.is_none() && d.items()[0].message.contains("too many values"), "{d}");
        let (n, d) = tree("a: 1\n---\nb: 2\n");
        assert!(n.is_none() && d.items()[0].message.contains("more than one YAML document"), "{d}");
        let (n, d) = tree("");
        assert!(matches!(n, Some(Node::Empty { .. })) && d.is_empty());
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("recods", ["zone", "records", "ttl"]), Some("records"));
        assert_eq!(did_you_mean("vpc-hz-prd", ["vpc-hz-prod", "vpc-bj"]), Some("vpc-hz-prod"));
        assert_eq!(did_you_mean("xyz", ["records"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
