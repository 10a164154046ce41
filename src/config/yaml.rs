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
//! Record lines written as one flow mapping each (`- { name: …, … }`) are
//! read without the library, which then reads the rest of the file and
//! still decides what is YAML; see [`parse_tree`].
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

use granit_parser::{Event, Parser, ScalarStyle, Span, StructureStyle};

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

/// One YAML node, as written. Text is borrowed from the file's text where
/// YAML wrote it verbatim (a plain scalar, a quoted one without escapes),
/// so reading a large file does not allocate a string per scalar.
#[derive(Debug, Clone)]
pub enum Node<'a> {
    /// A scalar's text after YAML's own escape and folding rules, never
    /// resolved to a type.
    Scalar {
        text: Cow<'a, str>,
        style: Style,
        pos: Pos,
    },
    /// A key with nothing after it (`key:`), or an empty document.
    Empty {
        pos: Pos,
    },
    Seq {
        items: Vec<Node<'a>>,
        pos: Pos,
    },
    /// Keys in file order; keys are scalars (others are reported).
    Map {
        entries: Vec<(Spanned<Cow<'a, str>>, Node<'a>)>,
        pos: Pos,
    },
}

impl Node<'_> {
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
///
/// Lines that are one flow mapping of simple scalars as an item of a block
/// list (`  - { name: "www", type: A, value: "10.0.0.1" }`, one record per
/// line, as large zone files are written) are read by [`flow_line`]
/// instead of by the YAML library, which is most of the time of a large
/// load otherwise; the library still reads the file around them, and
/// decides whether they are list items at all (see [`parse_with_runs`]).
pub fn parse_tree<'a>(path: &Path, text: &'a str, diags: &mut Diagnostics) -> Option<Node<'a>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(node) = parse_with_runs(text) {
        return Some(node);
    }
    parse_all(path, text, diags)
}

/// [`parse_tree`] without the shortcut: every line read by the library.
fn parse_all<'a>(path: &Path, text: &'a str, diags: &mut Diagnostics) -> Option<Node<'a>> {
    let mut b = Builder::new(text, Vec::new());
    match b.run(Parser::new_from_str(text), |c| c) {
        Ok(()) => Some(b.finish()),
        Err(Failure::Yaml(p, msg)) => {
            diags.push(path, p, syntax_message(&msg, text));
            None
        }
        Err(Failure::Build(p, msg)) => {
            diags.push(path, p, msg);
            None
        }
        // Only the shortcut has runs.
        Err(Failure::Runs) => {
            diags.push(path, Pos::new(1, 1), "the file could not be read");
            None
        }
    }
}

/// Longest line [`flow_line`] reads: far below the 1024 characters a YAML
/// implicit key may span, and longer records are rare.
const MAX_FLOW_LINE: usize = 512;

/// Lines read by [`flow_line`]: consecutive lines with their `-` at the
/// same column, each a list item.
struct Run<'a> {
    /// The first line (1-based) and the column (0-based) of its `{`.
    line: usize,
    brace: usize,
    /// One [`Node::Map`] per line.
    nodes: Vec<Node<'a>>,
    /// The nodes they count for the alias budget, as the library's events would.
    cost: usize,
}

/// The shortcut: finds the runs of [`flow_line`] lines, and has the YAML
/// library read the text with each run replaced by `- {}` on its first
/// line (the same bytes up to the `{`) and empty lines for the others,
/// so that every other line keeps its number and columns.
///
/// Why that is the same YAML: each line of a run is a block list entry
/// whose node is a flow mapping that starts and ends on the line, holds
/// only plain and double-quoted scalars without escapes, and is followed
/// by nothing. The inside of a flow mapping does not reach outside it, so
/// the text reads the same as with `{}` there, provided that `{` is where
/// a flow mapping starts, as an item of a block list: which the library
/// tells (the builder checks that the event at each run's `{` is the start
/// of an empty flow mapping directly in a block list, and that every run
/// was met). The run's other lines are then further items of that list
/// (same column, the item before complete), where empty lines change
/// nothing. `None` when the text has no such line or the check fails or
/// anything is wrong: the caller then reads the whole text with the
/// library, which reports the problem exactly as it would have.
fn parse_with_runs(text: &str) -> Option<Node<'_>> {
    // The library also breaks lines at `\r`, and stops at NUL.
    if text.bytes().any(|b| b == b'\r' || b == 0) {
        return None;
    }
    let mut runs: Vec<Run<'_>> = Vec::new();
    let mut shortened = String::new();
    // Bytes of `text` copied into `shortened` so far.
    let mut copied = 0;
    // The open run: its `-` column and where its first line ends.
    let mut open: Option<usize> = None;
    let mut start = 0;
    for (i, line) in text.split('\n').enumerate() {
        let end = start + line.len();
        match flow_line(line, i + 1) {
            Some((dash, brace, node, cost)) => {
                if open == Some(dash) {
                    let r = runs.last_mut().expect("open run");
                    r.nodes.push(node);
                    r.cost += cost;
                    // Drop the line, keep its line break.
                    shortened.push_str(&text[copied..start]);
                    copied = end;
                } else {
                    open = Some(dash);
                    runs.push(Run { line: i + 1, brace, nodes: vec![node], cost });
                    shortened.push_str(&text[copied..start + brace]);
                    shortened.push_str("{}");
                    copied = end;
                }
            }
            None => open = None,
        }
        start = end + 1;
    }
    if runs.is_empty() {
        return None;
    }
    shortened.push_str(&text[copied..]);
    let mut b = Builder::new(text, runs);
    b.run(Parser::new_from_str(&shortened), |c| Cow::Owned(c.into_owned())).ok()?;
    if b.next_run < b.runs.len() {
        return None;
    }
    Some(b.finish())
}

/// Reads one line `INDENT- { key: value, … }` into a [`Node::Map`], or
/// `None` if the line is anything else. Keys are plain words; values are
/// plain words or double-quoted text of printable ASCII without `\`.
/// Plain words are `[A-Za-z0-9][A-Za-z0-9._/-]*`: nothing a YAML plain
/// scalar in a flow mapping would read differently or end at. Spaces
/// (never tabs) may stand between tokens; nothing may follow the `}` but
/// spaces. Returns the columns (0-based) of the `-` and the `{`, the node
/// and what it counts for the alias budget.
fn flow_line(line: &str, lineno: usize) -> Option<(usize, usize, Node<'_>, usize)> {
    let b = line.as_bytes();
    if b.len() > MAX_FLOW_LINE {
        return None;
    }
    let spaces = |mut i: usize| {
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        i
    };
    let word = |i: usize| {
        if !b.get(i)?.is_ascii_alphanumeric() {
            return None;
        }
        let mut j = i + 1;
        while b.get(j).is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'/' | b'-')) {
            j += 1;
        }
        Some(j)
    };
    let at = |col: usize| Pos::new(lineno as u32, col as u32 + 1);
    let dash = spaces(0);
    if b.get(dash) != Some(&b'-') || b.get(dash + 1) != Some(&b' ') {
        return None;
    }
    let brace = spaces(dash + 1);
    if b.get(brace) != Some(&b'{') {
        return None;
    }
    let mut entries = Vec::with_capacity(4);
    let mut i = brace + 1;
    loop {
        let k = spaces(i);
        let k_end = word(k)?;
        if b.get(k_end) != Some(&b':') || b.get(k_end + 1) != Some(&b' ') {
            return None;
        }
        let v = spaces(k_end + 1);
        let (text, style, v_end) = if b.get(v) == Some(&b'"') {
            let mut j = v + 1;
            while let Some(&c) = b.get(j) {
                if c == b'"' {
                    break;
                }
                if !(b' '..=b'~').contains(&c) || c == b'\\' {
                    return None;
                }
                j += 1;
            }
            b.get(j)?;
            (&line[v + 1..j], Style::Quoted, j + 1)
        } else {
            let j = word(v)?;
            (&line[v..j], Style::Plain, j)
        };
        entries.push((Spanned::new(Cow::Borrowed(&line[k..k_end]), at(k)), Node::Scalar { text: Cow::Borrowed(text), style, pos: at(v) }));
        i = spaces(v_end);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => break,
            _ => return None,
        }
    }
    if spaces(i + 1) != b.len() {
        return None;
    }
    let cost = 1 + 2 * entries.len();
    Some((dash, brace, Node::Map { entries, pos: at(brace) }, cost))
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

enum Frame<'a> {
    Seq {
        items: Vec<Node<'a>>,
        pos: Pos,
        anchor: usize,
        block: bool,
    },
    Map {
        entries: Vec<(Spanned<Cow<'a, str>>, Node<'a>)>,
        key: Option<Result<Spanned<Cow<'a, str>>, Pos>>,
        pos: Pos,
        anchor: usize,
        /// The `{}` standing for a run (the index in `runs`).
        run: Option<usize>,
    },
}

struct Builder<'a> {
    stack: Vec<Frame<'a>>,
    anchors: HashMap<usize, Node<'a>>,
    aliases: usize,
    /// Nodes that may still be created (aliases copy theirs): an alias
    /// bomb runs out of budget instead of memory.
    budget: usize,
    root: Option<Node<'a>>,
    docs: usize,
    /// Lines read by [`flow_line`], in order, and the next to meet.
    runs: Vec<Run<'a>>,
    next_run: usize,
}

/// Why the builder stopped.
enum Failure {
    /// The library's error, with its position.
    Yaml(Pos, String),
    /// A limit or a construct pzdns refuses.
    Build(Pos, String),
    /// A run's `{}` was not where a run can stand (only with runs).
    Runs,
}

impl From<(Pos, String)> for Failure {
    fn from((p, m): (Pos, String)) -> Self {
        Failure::Build(p, m)
    }
}

type BuildError = (Pos, String);

impl<'a> Builder<'a> {
    fn new(text: &str, runs: Vec<Run<'a>>) -> Self {
        Builder {
            stack: Vec::new(),
            anchors: HashMap::new(),
            aliases: 0,
            budget: 64 + 2 * text.len(),
            root: None,
            docs: 0,
            runs,
            next_run: 0,
        }
    }

    /// Feeds the library's events; `own` turns their text into text of `'a`.
    fn run<'e>(
        &mut self,
        events: impl Iterator<Item = Result<(Event<'e>, Span), granit_parser::ScanError>>,
        own: impl Fn(Cow<'e, str>) -> Cow<'a, str>,
    ) -> Result<(), Failure> {
        for ev in events {
            let (event, span) = match ev {
                Ok(e) => e,
                Err(e) => {
                    let m = e.marker();
                    return Err(Failure::Yaml(Pos::new(m.line() as u32, m.col() as u32 + 1), e.info().to_string()));
                }
            };
            self.event(event, &span, &own)?;
        }
        Ok(())
    }

    fn finish(self) -> Node<'a> {
        self.root.unwrap_or(Node::Empty { pos: Pos::new(1, 1) })
    }

    fn event<'e>(&mut self, event: Event<'e>, span: &Span, own: &impl Fn(Cow<'e, str>) -> Cow<'a, str>) -> Result<(), Failure> {
        let p = marker_pos(span);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart(..) => {
                self.docs += 1;
                if self.docs > 1 {
                    return Err(Failure::Build(p, "more than one YAML document (`---`) in the file; pzdns reads one per file".into()));
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
                        return Err(Failure::Build(p, format!("YAML tag `{}` is not used by pzdns; remove it", t.original())));
                    }
                }
                let empty = style == Style::Plain && span.start.index() == span.end.index();
                let node = if empty { Node::Empty { pos: p } } else { Node::Scalar { text: own(value), style, pos: p } };
                self.spend(1, p)?;
                if anchor != 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                Ok(self.add(node)?)
            }
            Event::Alias(id) => {
                self.aliases += 1;
                if self.aliases > MAX_ALIASES {
                    return Err(Failure::Build(
                        p,
                        format!("too many YAML aliases (*name): pzdns allows {MAX_ALIASES}; write the values out"),
                    ));
                }
                // An alias inside an anchored value is how alias bombs are
                // built (each level multiplies the last); data never needs it.
                if self.stack.iter().any(|f| matches!(f, Frame::Seq { anchor, .. } | Frame::Map { anchor, .. } if *anchor != 0)) {
                    return Err(Failure::Build(
                        p,
                        "an alias (*name) inside an anchored (&name) value: nested aliases are refused, as they multiply; write the values out"
                            .into(),
                    ));
                }
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return Err(Failure::Build(p, "alias (*name) to an anchor that is not defined before it".into()));
                };
                self.spend(node.count(), p)?;
                Ok(self.add(node)?)
            }
            Event::SequenceStart(_, anchor, tag) | Event::MappingStart(_, anchor, tag) if tag.is_some() => {
                let _ = anchor;
                let t = tag.map(|t| t.original()).unwrap_or_default();
                Err(Failure::Build(p, format!("YAML tag `{t}` is not used by pzdns; remove it")))
            }
            Event::SequenceStart(style, anchor, _) => {
                Ok(self.push(Frame::Seq { items: Vec::new(), pos: p, anchor, block: style == StructureStyle::Block }, p)?)
            }
            Event::MappingStart(style, anchor, _) => {
                let at_run = self.runs.get(self.next_run).is_some_and(|r| r.line == span.start.line() && r.brace == span.start.col());
                let run = if at_run {
                    if style != StructureStyle::Flow || anchor != 0 || !matches!(self.stack.last(), Some(Frame::Seq { block: true, .. })) {
                        return Err(Failure::Runs);
                    }
                    self.next_run += 1;
                    Some(self.next_run - 1)
                } else {
                    None
                };
                Ok(self.push(Frame::Map { entries: Vec::new(), key: None, pos: p, anchor, run }, p)?)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq { items, pos, anchor, .. }) => (Node::Seq { items, pos }, anchor),
                    Some(Frame::Map { entries, key, run: Some(i), .. }) => {
                        if !entries.is_empty() || key.is_some() {
                            return Err(Failure::Runs);
                        }
                        return self.add_run(i, p);
                    }
                    Some(Frame::Map { entries, pos, anchor, .. }) => (Node::Map { entries, pos }, anchor),
                    None => return Ok(()),
                };
                if node.1 != 0 {
                    self.anchors.insert(node.1, node.0.clone());
                }
                Ok(self.add(node.0)?)
            }
            _ => Ok(()),
        }
    }

    /// A run's nodes in place of its `{}` (whose push spent one node).
    fn add_run(&mut self, i: usize, p: Pos) -> Result<(), Failure> {
        let run = &mut self.runs[i];
        let nodes = std::mem::take(&mut run.nodes);
        let cost = run.cost - 1;
        self.spend(cost, p)?;
        let Some(Frame::Seq { items, .. }) = self.stack.last_mut() else { return Err(Failure::Runs) };
        if items.is_empty() {
            *items = nodes;
        } else {
            items.extend(nodes);
        }
        Ok(())
    }

    fn spend(&mut self, n: usize, p: Pos) -> Result<(), BuildError> {
        if n > self.budget {
            return Err((p, "YAML expands to too many values (aliases copied too often); write the values out".into()));
        }
        self.budget -= n;
        Ok(())
    }

    fn push(&mut self, f: Frame<'a>, p: Pos) -> Result<(), BuildError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err((p, format!("YAML nested deeper than {MAX_DEPTH} levels")));
        }
        self.spend(1, p)?;
        self.stack.push(f);
        Ok(())
    }

    fn add(&mut self, node: Node<'a>) -> Result<(), BuildError> {
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
                        Node::Empty { pos } => Ok(Spanned::new(Cow::Borrowed(""), pos)),
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
    entries: Vec<(&'a Spanned<Cow<'a, str>>, &'a Node<'a>, bool)>,
    asked: Vec<&'static str>,
}

/// Mappings up to this many keys find a key given twice by comparing
/// them; larger ones use a hash map.
const SMALL_MAP: usize = 16;

impl<'a> MapReader<'a> {
    /// `None` (reported) if `node` is not a mapping.
    pub fn new(node: &'a Node<'a>, what: &'static str, path: &'a Path, diags: &mut Diagnostics) -> Option<Self> {
        let Node::Map { entries, pos } = node else {
            diags.push(path, node.pos(), format!("{what} must be a mapping (`key: value` lines), found {}", node.describe()));
            return None;
        };
        let twice = |k: &Spanned<Cow<'_, str>>, first: Pos, diags: &mut Diagnostics| {
            diags.push(path, k.pos, format!("`{}` is given twice in {what} (first at line {}); keep one of them", k.value, first.line));
        };
        let mut kept: Vec<(&'a Spanned<Cow<'a, str>>, &'a Node<'a>, bool)> = Vec::with_capacity(entries.len());
        if entries.len() <= SMALL_MAP {
            for (k, v) in entries {
                if let Some(first) = kept.iter().find(|e| e.0.value == k.value) {
                    twice(k, first.0.pos, diags);
                    continue;
                }
                kept.push((k, v, false));
            }
        } else {
            let mut seen: HashMap<&str, Pos> = HashMap::new();
            for (k, v) in entries {
                if let Some(first) = seen.get(&*k.value) {
                    twice(k, *first, diags);
                    continue;
                }
                seen.insert(&k.value, k.pos);
                kept.push((k, v, false));
            }
        }
        Some(MapReader { path, pos: *pos, what, entries: kept, asked: Vec::with_capacity(8) })
    }

    /// The value of `key`, if present.
    pub fn get(&mut self, key: &'static str) -> Option<&'a Node<'a>> {
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
    pub fn require(&mut self, key: &'static str, hint: &str, diags: &mut Diagnostics) -> Option<&'a Node<'a>> {
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

    /// As [`MapReader::req_text`], borrowed from the tree.
    pub fn req_str(&mut self, key: &'static str, hint: &str, diags: &mut Diagnostics) -> Option<Spanned<&'a str>> {
        let node = self.require(key, hint, diags)?;
        str_of(node, key, self.path, diags)
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
    pub fn list(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<Spanned<&'a [Node<'a>]>> {
        let node = self.get(key)?;
        list(node, key, self.path, diags)
    }

    pub fn req_list(&mut self, key: &'static str, hint: &str, diags: &mut Diagnostics) -> Option<Spanned<&'a [Node<'a>]>> {
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
pub fn text(node: &Node<'_>, key: &str, path: &Path, diags: &mut Diagnostics) -> Option<Spanned<String>> {
    str_of(node, key, path, diags).map(|s| Spanned::new(s.value.to_string(), s.pos))
}

/// As [`text`], borrowed from the tree.
pub fn str_of<'a>(node: &'a Node<'_>, key: &str, path: &Path, diags: &mut Diagnostics) -> Option<Spanned<&'a str>> {
    match node {
        Node::Scalar { text, pos, .. } => Some(Spanned::new(&**text, *pos)),
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
pub fn int(node: &Node<'_>, key: &str, path: &Path, diags: &mut Diagnostics) -> Option<Spanned<i64>> {
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

pub fn list<'a>(node: &'a Node, key: &str, path: &Path, diags: &mut Diagnostics) -> Option<Spanned<&'a [Node<'a>]>> {
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

    fn tree(text: &str) -> (Option<Node<'_>>, Diagnostics) {
        let mut d = Diagnostics::new();
        (parse_tree(Path::new("t.yaml"), text, &mut d), d)
    }

    fn scalar<'a>(n: &'a Node<'_>) -> (&'a str, Style) {
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
            let text = format!("k: {s}\n");
            let (node, d) = tree(&text);
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

    /// The tree and the problems, with the shortcut (when it applies) and
    /// with the library reading every line.
    fn both(text: &str) -> (String, String, bool) {
        let shortcut = parse_with_runs(text).is_some();
        let (n, d) = tree(text);
        let mut d2 = Diagnostics::new();
        let n2 = parse_all(Path::new("t.yaml"), text, &mut d2);
        assert_eq!(format!("{n:?}"), format!("{n2:?}"), "{text}");
        assert_eq!(d.to_string(), d2.to_string(), "{text}");
        (format!("{n:?}"), d.to_string(), shortcut)
    }

    #[test]
    fn record_lines_read_as_the_library_reads_them() {
        let zone = "zone: z.test\nvpcs: [a]\nrecords:\n";
        for (lines, shortcut) in [
            ("  - { name: \"h0\", type: A, value: \"10.0.0.1\" }\n  - {name: \"*.w\", type: TXT, value: \"a b # c: d\"}\n", true),
            ("- { name: www, type: A, value: 10.0.0.1, ttl: 300 }\n- { name: no, type: A, value: 010 }", true),
            ("  -   {  name:   h1 ,type: A , value: \"\"  }   \n", true),
            ("  - { name: a, name: b }\n  - { nme: a, type: A, value: x }\n", true),
            // Two runs (another column), lines the library reads in between.
            ("  - { name: a, type: A, value: x }\n  -  { name: b, type: A, value: x }\nother:\n- { name: c }\n", true),
            ("  - { name: a, type: A, value: x }\n  - name: b\n    type: A\n  - { name: c, type: A, value: x }\n", true),
            // Not for the shortcut: the library reads these lines.
            ("  - { name: \"a\\tb\", type: A }\n", false),
            ("  - { name: a, type: A } # note\n", false),
            ("  - { name: *a, type: A }\n", false),
            ("  - { name: 1:20, type: A }\n", false),
            ("  - { name: ~, type: A }\n", false),
            ("  - { name: \"é\", type: A }\n", false),
            ("  - { name: a, type: A, }\n", false),
            ("  - { \"name\": a }\n", false),
            ("  - {name:a}\n", false),
            ("  - { name: a, type: A }\r\n", false),
            ("\t- { name: a, type: A }\n", false),
        ] {
            let text = format!("{zone}{lines}");
            let (_, d, used) = both(&text);
            assert_eq!(used, shortcut, "{text}\n{d}");
        }
        // Record-like lines that are not list items: inside a block
        // scalar, a quoted scalar, a flow list, under a mapping, at the
        // top, after the end of the list; broken files. The shortcut must
        // give way and the library report what it reports.
        for text in [
            "x: |\n  - { name: a, type: A }\n  - { name: b, type: A }\ny: 1\n",
            "x: \"abc\n  - { name: a, type: A }\n  def\"\n",
            "x: [\n  - { name: a, type: A }\n]\n",
            "x:\n  y: 1\n  - { name: a, type: A }\n",
            "- { name: a, type: A }\n- { name: b, type: A }\n",
            "records:\n  - { name: a, type: A }\nzone: z\n  - { name: b, type: A }\n",
            "records:\n  - { name: a, type: A }\n    - { name: b, type: A }\n",
            "records:\n  - { name: a, type: A }\n    more: 1\n",
            "records:\n  - { name: a, type: A }\n  -\n",
            "records: &r\n  - { name: a, type: A }\nagain: *r\n",
            "records: !!seq\n  - { name: a, type: A }\n",
            "records:\n  - { name: a, type: A }\n---\nx: 1\n",
            "records:\n  - { name: a, type: A }\n  - { name: b, type: A\n",
            "? - { name: a, type: A }\n: 1\n",
            "records:\n  - - { name: a, type: A }\n",
        ] {
            both(text);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// Files made of record lines (and near misses) and other YAML
        /// lines read the same with and without the shortcut.
        #[test]
        fn shortcut_reads_as_the_library(lines in proptest::collection::vec(line(), 1..24)) {
            both(&lines.concat());
        }

        /// The same under `records:`, mostly with lines the shortcut takes.
        #[test]
        fn shortcut_reads_records_as_the_library(lines in proptest::collection::vec(line(), 1..24)) {
            both(&format!("records:\n{}", lines.concat()));
        }
    }

    fn line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let indent = prop::sample::select(vec!["", "  ", "    ", " ", "\t"]);
        let key = prop::sample::select(vec!["name", "type", "value", "ttl", "nme", "Name", "a-b", "\"name\"", "*a", "? x", ""]);
        let value = prop::sample::select(vec![
            "A",
            "CNAME",
            "300",
            "010",
            "no",
            "~",
            "h0.x.test",
            "*.w2",
            "1:20",
            "-1",
            "a#b",
            "a #b",
            "\"10.0.0.1\"",
            "\"record 3\"",
            "\"a\\tb\"",
            "\"q\\\"\"",
            "\"# x\"",
            "\"{ }\"",
            "\"é\"",
            "\"open",
            "'s'",
            "[a, b]",
            "",
            "{}",
        ]);
        let sep = prop::sample::select(vec![": ", ":", ":  ", " : "]);
        let comma = prop::sample::select(vec![", ", ",", " , ", "  ,  "]);
        let close = prop::sample::select(vec![" }", "}", "} # c", "}:", "},", "} x", "}  ", " ,}", ""]);
        let pair = (key, sep, value).prop_map(|(k, s, v)| format!("{k}{s}{v}"));
        let record = (
            indent,
            prop::sample::select(vec!["- ", "-  ", "-", "- - "]),
            prop::sample::select(vec!["{ ", "{", "{  "]),
            prop::collection::vec(pair, 0..5),
            comma,
            close,
        )
            .prop_map(|(i, d, o, pairs, c, e)| format!("{i}{d}{o}{}{e}\n", pairs.join(c)));
        let other = prop::sample::select(vec![
            "records:\n",
            "zone: z.test\n",
            "vpcs: [a]\n",
            "\n",
            "  \n",
            "# comment\n",
            "x: |\n",
            "x: >-\n",
            "y: \"multi\n",
            "  line\"\n",
            "---\n",
            "...\n",
            "  foo: bar\n",
            "records: [\n",
            "]\n",
            "- a\n",
            "  - a\n",
            "  -\n",
            "ttl: 300\n",
            "\ttab: 1\n",
            "records: &r\n",
            "copy: *r\n",
            "  - name: a\n",
            "    type: A\n",
            "\r\n",
        ])
        .prop_map(str::to_string);
        let good_pair = (
            prop::sample::select(vec!["name", "type", "value", "ttl", "nme"]),
            prop::sample::select(vec![": ", ":  "]),
            prop::sample::select(vec!["A", "300", "010", "no", "h0.x.test", "\"10.0.0.1\"", "\"record 3\"", "\"# x\"", "\"*.w\"", "\"\""]),
        )
            .prop_map(|(k, s, v)| format!("{k}{s}{v}"));
        let good = (prop::sample::select(vec!["  ", "  ", ""]), prop::collection::vec(good_pair, 1..5))
            .prop_map(|(i, pairs)| format!("{i}- {{ {} }}\n", pairs.join(", ")));
        prop_oneof![16 => good, 2 => record, 1 => other]
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("recods", ["zone", "records", "ttl"]), Some("records"));
        assert_eq!(did_you_mean("vpc-hz-prd", ["vpc-hz-prod", "vpc-bj"]), Some("vpc-hz-prod"));
        assert_eq!(did_you_mean("xyz", ["records"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
