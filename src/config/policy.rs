//! Response policies (docs/REFERENCE.md#response-policies): a YAML file in
//! the zones directory with `policy:` instead of `zone:`, bound to VPCs,
//! holding ordered rule sets. A rule set is one inline rule (`name:` or
//! `response_ip:`), an RPZ zone in master-file format (`rpz:`, read by the
//! same reader as `master_file:`), or a plain domain list (`domains:`).
//!
//! Every problem is reported with its `path:line:column`, in the file it
//! is in, and reading goes on after it. A list file that cannot be read
//! is a problem unless its rule set says `on_load_error: open` (left out,
//! with a warning) or `closed` (matches every name).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;

use super::diagnostics::{Diagnostics, Pos};
use super::files::FileAccess;
use super::yaml::{self, MapReader, Node, Spanned, pos};
use super::{Located, MAX_TTL, MIN_TTL, rdata};

/// Default TTL of local data written inline (RPZ records carry their own).
pub const DEFAULT_POLICY_TTL: u32 = 60;
/// Problems reported per list file before giving up on the rest.
pub const MAX_LIST_PROBLEMS: usize = 1_000;

/// What a matching rule does. An override's local data (`R`) and CNAME
/// (`C`) are the records and the target with its TTL as read here, and
/// indices into the compiled data on the query path
/// (`snapshot::policy::PolicyAction`): one list of actions for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<R = Vec<Record>, C = (Name, u32)> {
    NxDomain,
    NoData,
    Refused,
    /// No reply at all.
    Drop,
    /// TC=1 over UDP; answered normally over TCP.
    TcpOnly,
    /// Answered normally; the hit is logged and counted.
    Alert,
    /// Passthru: answered normally, and no later rule applies.
    Allow,
    /// Local data: these records (owner: the trigger) replace the answer;
    /// a type the data lacks is NODATA.
    Records(R),
    /// A CNAME to this name replaces the answer; the target is resolved.
    Cname(C),
}

/// The kinds of [`Action`], as metric labels and in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    NxDomain,
    NoData,
    Refused,
    Drop,
    TcpOnly,
    Alert,
    Allow,
    Override,
}

impl ActionKind {
    pub const ALL: [ActionKind; 8] = [
        ActionKind::NxDomain,
        ActionKind::NoData,
        ActionKind::Refused,
        ActionKind::Drop,
        ActionKind::TcpOnly,
        ActionKind::Alert,
        ActionKind::Allow,
        ActionKind::Override,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::NxDomain => "nxdomain",
            ActionKind::NoData => "nodata",
            ActionKind::Refused => "refused",
            ActionKind::Drop => "drop",
            ActionKind::TcpOnly => "tcp-only",
            ActionKind::Alert => "alert",
            ActionKind::Allow => "allow",
            ActionKind::Override => "override",
        }
    }
}

impl<R, C> Action<R, C> {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::NxDomain => ActionKind::NxDomain,
            Action::NoData => ActionKind::NoData,
            Action::Refused => ActionKind::Refused,
            Action::Drop => ActionKind::Drop,
            Action::TcpOnly => ActionKind::TcpOnly,
            Action::Alert => ActionKind::Alert,
            Action::Allow => ActionKind::Allow,
            Action::Records(_) | Action::Cname(_) => ActionKind::Override,
        }
    }
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The name itself (`wildcard: false`), or the names below it (`*.name`).
    Name { name: Name, wildcard: bool },
    /// The name and every name below it (a domain list entry).
    Domain(Name),
    /// An answer holding an A or AAAA inside this network.
    ResponseIp(IpNet),
}

/// One rule, with where it was written.
#[derive(Debug, Clone)]
pub struct RuleDef {
    pub trigger: Trigger,
    pub action: Action,
    pub path: Arc<Path>,
    pub pos: Pos,
}

/// What to do when a rule set's list file cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnLoadError {
    /// A problem like any other: `check` fails, start exits, reload keeps the old data.
    #[default]
    Fail,
    /// The rule set is left out (fail open), with a warning.
    Open,
    /// The rule set matches every name (fail closed) with its action.
    Closed,
}

/// One entry of `rules:`.
#[derive(Debug, Clone)]
pub struct RuleSetDef {
    /// `policy: what` (the file as written, the inline name or network):
    /// the `rule_set` metric label and the EDE EXTRA-TEXT.
    pub label: String,
    /// The Extended DNS Error INFO-CODE of its blocks (0: none).
    pub ede: u16,
    pub rules: Vec<RuleDef>,
    pub path: PathBuf,
    pub pos: Pos,
}

/// A policy file.
#[derive(Debug, Clone)]
pub struct PolicyDef {
    pub name: String,
    pub path: PathBuf,
    pub pos: Pos,
    /// `None`: every VPC, and sources in no VPC.
    pub vpcs: Option<Vec<Located<String>>>,
    pub sets: Vec<RuleSetDef>,
    /// Things that do not stop the load (a list left out by `on_load_error:
    /// open`, RPZ triggers pzdns does not apply), as `path:line:col: text`.
    pub warnings: Vec<String>,
}

/// Whether a parsed YAML file is a policy file (has a top-level `policy:`).
pub fn is_policy(node: &Node) -> bool {
    matches!(node, Node::Map { entries, .. } if entries.iter().any(|(k, _)| k.value == "policy"))
}

fn parse_action_word(s: &Spanned<String>, path: &Path, diags: &mut Diagnostics) -> Option<Action> {
    Some(match s.value.trim() {
        "nxdomain" => Action::NxDomain,
        "nodata" => Action::NoData,
        "refused" => Action::Refused,
        "drop" => Action::Drop,
        "tcp-only" => Action::TcpOnly,
        "alert" => Action::Alert,
        "allow" => Action::Allow,
        "override" => Action::Records(Vec::new()),
        other => {
            let words = ActionKind::ALL.map(ActionKind::as_str);
            let hint = match yaml::did_you_mean(other, words.iter().copied()) {
                Some(w) => format!("did you mean `{w}`? "),
                None => String::new(),
            };
            diags.push(path, s.pos, format!("unknown action `{other}`; {hint}use one of {}", words.join(", ")));
            return None;
        }
    })
}

fn parse_ede(s: &Spanned<String>, path: &Path, diags: &mut Diagnostics) -> Option<u16> {
    match s.value.trim() {
        "blocked" => Some(15),
        "censored" => Some(16),
        "filtered" => Some(17),
        "none" => Some(0),
        other => {
            diags.push(path, s.pos, format!("ede `{other}` must be `blocked` (15), `censored` (16), `filtered` (17) or `none`"));
            None
        }
    }
}

/// Reads a policy file whose YAML is `node`. `check_vpc` reports an
/// unknown VPC id and says whether it is known.
pub fn read_policy(
    node: &Node,
    path: &Path,
    access: &FileAccess,
    check_vpc: &dyn Fn(&Spanned<String>, &mut Diagnostics) -> bool,
    diags: &mut Diagnostics,
) -> Option<PolicyDef> {
    let mut m = MapReader::new(node, "a policy file", path, diags)?;
    let name = m.req_text("policy", " (the policy's name, e.g. `policy: egress`)", diags);
    let vpcs = m.texts("vpcs", diags).map(|l| {
        let mut out: Vec<Located<String>> = Vec::new();
        for v in l.value {
            if out.iter().any(|x| x.value == v.value) {
                diags.push(path, v.pos, format!("VPC `{}` is listed twice", v.value));
            } else if check_vpc(&v, diags) {
                out.push(Located { value: v.value, path: path.to_path_buf(), pos: v.pos });
            }
        }
        out
    });
    let default_ede = m.text("ede", diags).and_then(|e| parse_ede(&e, path, diags)).unwrap_or(15);
    let rules = m.req_list("rules", " (the ordered rule sets, e.g. `rules: [{ domains: lists/feed.txt, action: nxdomain }]`)", diags);
    m.finish(diags);
    let name = name?;
    let pname = name.value.trim().to_string();
    if pname.is_empty() || !pname.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        diags.push(path, name.pos, format!("policy name `{}` must be letters, digits, `-`, `_` or `.`", name.value));
    }
    let mut def = PolicyDef { name: pname, path: path.to_path_buf(), pos: name.pos, vpcs, sets: Vec::new(), warnings: Vec::new() };
    let file: Arc<Path> = Arc::from(path);
    for item in rules.map(|r| r.value).unwrap_or_default() {
        if let Some(set) = read_rule_set(item, &def.name, default_ede, &file, access, &mut def.warnings, diags) {
            def.sets.push(set);
        }
    }
    Some(def)
}

/// The keys of one rule, as written.
struct RuleKeys<'a> {
    /// Where the rule's map starts.
    at: Pos,
    rpz: Option<Spanned<String>>,
    domains: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    response_ip: Option<&'a Node<'a>>,
    action: Option<Spanned<String>>,
    records: Option<Spanned<&'a [Node<'a>]>>,
    cname: Option<Spanned<String>>,
    ttl: Option<Spanned<i64>>,
    ede: u16,
    on_error: Option<Spanned<String>>,
}

impl<'a> RuleKeys<'a> {
    fn read(node: &'a Node<'a>, default_ede: u16, path: &'a Path, diags: &mut Diagnostics) -> Option<Self> {
        let mut m = MapReader::new(node, "a rule", path, diags)?;
        let keys = RuleKeys {
            at: m.pos,
            rpz: m.text("rpz", diags),
            domains: m.text("domains", diags),
            name: m.text("name", diags),
            response_ip: m.get("response_ip"),
            action: m.text("action", diags),
            records: m.list("records", diags),
            cname: m.text("cname", diags),
            ttl: m.int("ttl", diags),
            ede: m.text("ede", diags).and_then(|e| parse_ede(&e, path, diags)).unwrap_or(default_ede),
            on_error: m.text("on_load_error", diags),
        };
        m.finish(diags);
        Some(keys)
    }
}

/// What every kind of rule set needs besides its own keys.
struct RuleContext<'a> {
    policy: &'a str,
    file: &'a Arc<Path>,
    /// The TTL of override data (`ttl:`, checked).
    ttl: u32,
    /// The action as read, and where; `None` when it is missing or unknown.
    action: Option<(Action, Pos)>,
    /// Whether `action:` is there at all (an unknown one was reported).
    action_written: bool,
    overriding: bool,
}

fn read_rule_set(
    node: &Node,
    policy: &str,
    default_ede: u16,
    file: &Arc<Path>,
    access: &FileAccess,
    warnings: &mut Vec<String>,
    diags: &mut Diagnostics,
) -> Option<RuleSetDef> {
    let path: &Path = file;
    let keys = RuleKeys::read(node, default_ede, path, diags)?;
    let at = keys.at;
    let kinds =
        [keys.rpz.is_some(), keys.domains.is_some(), keys.name.is_some(), keys.response_ip.is_some()].iter().filter(|x| **x).count();
    if kinds != 1 {
        diags.push(path, at, "a rule has exactly one of `rpz:` (an RPZ file), `domains:` (a domain list), `name:` or `response_ip:`");
        return None;
    }
    let on_error = read_on_load_error(&keys.on_error, path, diags);
    if on_error != OnLoadError::Fail && keys.rpz.is_none() && keys.domains.is_none() {
        diags.push(path, at, "`on_load_error` applies to list files (`rpz:` or `domains:`) only");
    }
    let ttl = match &keys.ttl {
        Some(t) if (MIN_TTL..=MAX_TTL).contains(&t.value) => t.value as u32,
        Some(t) => {
            diags.push(path, t.pos, format!("TTL {} is outside {}..{} seconds", t.value, MIN_TTL, MAX_TTL));
            DEFAULT_POLICY_TTL
        }
        None => DEFAULT_POLICY_TTL,
    };
    // An action that is there but unknown is reported once, as unknown.
    let action_written = keys.action.is_some();
    let action = match &keys.action {
        Some(a) => parse_action_word(a, path, diags).map(|x| (x, a.pos)),
        None => None,
    };
    let overriding = matches!(action, Some((Action::Records(_), _)));
    if !overriding && (keys.records.is_some() || keys.cname.is_some()) {
        diags.push(path, at, "`records` and `cname` go with `action: override` only");
    }
    let set = RuleSetDef { label: String::new(), ede: keys.ede, rules: Vec::new(), path: path.to_path_buf(), pos: at };
    let cx = RuleContext { policy, file, ttl, action, action_written, overriding };
    if let Some(n) = &keys.name {
        return name_rule(set, n, &keys, cx, diags);
    }
    if let Some(node) = keys.response_ip {
        return response_ip_rule(set, node, &keys, cx, diags);
    }
    list_rule(set, &keys, cx, on_error, access, warnings, diags)
}

fn read_on_load_error(on_error: &Option<Spanned<String>>, path: &Path, diags: &mut Diagnostics) -> OnLoadError {
    match on_error {
        None => OnLoadError::Fail,
        Some(s) => match s.value.trim() {
            "fail" => OnLoadError::Fail,
            "open" => OnLoadError::Open,
            "closed" => OnLoadError::Closed,
            other => {
                diags.push(path, s.pos, format!("on_load_error `{other}` must be `fail`, `open` or `closed`"));
                OnLoadError::Fail
            }
        },
    }
}

/// The override of an inline rule: its records, or a CNAME.
fn override_action(keys: &RuleKeys<'_>, ttl: u32, owner: &Name, path: &Path, diags: &mut Diagnostics) -> Option<Action> {
    let at = keys.at;
    match (&keys.records, &keys.cname) {
        (Some(_), Some(c)) => {
            diags.push(path, c.pos, "an override has `records` or `cname`, not both");
            None
        }
        (None, Some(c)) => match rdata::parse_absolute_name(&c.value) {
            Ok(n) => Some(Action::Cname((n.to_lowercase(), ttl))),
            Err(e) => {
                diags.push(path, c.pos, format!("cname: {e}"));
                None
            }
        },
        (Some(list), None) => {
            let mut out = Vec::new();
            for r in list.value {
                if let Some(rec) = read_override_record(r, owner, ttl, path, diags) {
                    out.push(rec);
                }
            }
            if out.is_empty() {
                diags.push(path, list.pos, "`records` is empty; give at least one `{ type: A, value: 10.0.0.5 }`");
                return None;
            }
            if out.iter().any(|r| r.record_type() == RecordType::CNAME) {
                diags.push(path, list.pos, "a CNAME override is written `cname: target`, not as a record");
                return None;
            }
            Some(Action::Records(out))
        }
        (None, None) => {
            diags.push(path, at, "`action: override` needs `records: [...]` (local data) or `cname: target`");
            None
        }
    }
}

/// A `name:` rule: one name, or `*.` and a name.
fn name_rule(
    mut set: RuleSetDef,
    n: &Spanned<String>,
    keys: &RuleKeys<'_>,
    cx: RuleContext<'_>,
    diags: &mut Diagnostics,
) -> Option<RuleSetDef> {
    let (path, at, file): (&Path, Pos, &Arc<Path>) = (cx.file, keys.at, cx.file);
    set.label = format!("{}: {}", cx.policy, n.value.trim());
    let Some((action, _)) = cx.action else {
        if !cx.action_written {
            diags.push(path, at, "a `name:` rule needs an `action:` (nxdomain, nodata, refused, drop, tcp-only, alert, allow or override)");
        }
        return None;
    };
    let text = n.value.trim();
    let (wildcard, rest) = match text.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, text),
    };
    let owner = match rdata::parse_absolute_name(rest) {
        Ok(o) => o.to_lowercase(),
        Err(e) => {
            diags.push(path, n.pos, format!("name: {e}"));
            return None;
        }
    };
    if owner.iter().any(|l| l == b"*") {
        diags.push(path, n.pos, "a `*` is allowed only as the whole first label (`*.example.com`)");
        return None;
    }
    let action = if cx.overriding { override_action(keys, cx.ttl, &owner, path, diags)? } else { action };
    set.rules.push(RuleDef { trigger: Trigger::Name { name: owner, wildcard }, action, path: file.clone(), pos: n.pos });
    Some(set)
}

/// A `response_ip:` rule: one network, or a list of them.
fn response_ip_rule(
    mut set: RuleSetDef,
    node: &Node<'_>,
    keys: &RuleKeys<'_>,
    cx: RuleContext<'_>,
    diags: &mut Diagnostics,
) -> Option<RuleSetDef> {
    let (path, at, file): (&Path, Pos, &Arc<Path>) = (cx.file, keys.at, cx.file);
    let Some((action, _)) = cx.action else {
        if !cx.action_written {
            diags.push(path, at, "a `response_ip:` rule needs an `action:`");
        }
        return None;
    };
    let nets: Vec<Spanned<String>> = match node {
        Node::Seq { items, .. } => items.iter().filter_map(|i| yaml::text(i, "response_ip", path, diags)).collect(),
        other => yaml::text(other, "response_ip", path, diags).into_iter().collect(),
    };
    set.label = format!("{}: response_ip {}", cx.policy, nets.iter().map(|n| n.value.trim()).collect::<Vec<_>>().join(","));
    let action = if cx.overriding {
        if keys.cname.is_some() {
            diags.push(path, at, "a `response_ip:` override replaces the answer with `records`, not a CNAME");
            return None;
        }
        override_action(keys, cx.ttl, &Name::root(), path, diags)?
    } else {
        action
    };
    for n in nets {
        match n.value.trim().parse::<IpNet>() {
            Ok(net) if net.trunc() == net => {
                set.rules.push(RuleDef { trigger: Trigger::ResponseIp(net), action: action.clone(), path: file.clone(), pos: n.pos })
            }
            Ok(net) => diags.push(path, n.pos, format!("`{}` has host bits set; did you mean {}?", n.value, net.trunc())),
            Err(_) => diags.push(path, n.pos, format!("response_ip `{}` must be a CIDR, e.g. 10.0.0.0/8", n.value)),
        }
    }
    Some(set)
}

/// An `rpz:` or `domains:` rule: a list file read as `on_load_error` says.
fn list_rule(
    mut set: RuleSetDef,
    keys: &RuleKeys<'_>,
    cx: RuleContext<'_>,
    on_error: OnLoadError,
    access: &FileAccess,
    warnings: &mut Vec<String>,
    diags: &mut Diagnostics,
) -> Option<RuleSetDef> {
    let (path, at): (&Path, Pos) = (cx.file, keys.at);
    let (list, is_rpz) = match (&keys.rpz, &keys.domains) {
        (Some(r), _) => (r, true),
        (_, Some(d)) => (d, false),
        _ => return None,
    };
    set.label = format!("{}: {}", cx.policy, list.value.trim());
    let list_path = path.parent().unwrap_or(Path::new(".")).join(list.value.trim());
    if cx.overriding {
        diags.push(
            path,
            cx.action.as_ref().map_or(at, |a| a.1),
            "`action: override` is for `name:` rules; an RPZ file writes its local data as records",
        );
        return None;
    }
    let set_action = cx.action.map(|a| a.0);
    if !is_rpz && set_action.is_none() {
        if cx.action_written {
            return None;
        }
        diags.push(
            path,
            at,
            "a `domains:` list needs an `action:` for its names (nxdomain, nodata, refused, drop, tcp-only, alert or allow)",
        );
        return None;
    }
    let mut d = Diagnostics::new();
    let text = access.read_text_at(&list_path, path, list.pos, &mut d);
    let Some(text) = text else {
        match on_error {
            OnLoadError::Fail => diags.extend(d),
            OnLoadError::Open => {
                for x in d.items() {
                    warnings.push(format!("{x} (on_load_error: open: rule set `{}` is left out)", set.label));
                }
            }
            OnLoadError::Closed => {
                for x in d.items() {
                    warnings.push(format!("{x} (on_load_error: closed: rule set `{}` matches every name)", set.label));
                }
                let action = set_action.unwrap_or(Action::NxDomain);
                set.rules.push(RuleDef {
                    trigger: Trigger::Domain(Name::root()),
                    action,
                    path: Arc::from(list_path.as_path()),
                    pos: Pos::UNKNOWN,
                });
            }
        }
        return Some(set);
    };
    let lp: Arc<Path> = Arc::from(list_path.as_path());
    if is_rpz {
        set.rules = parse_rpz(&lp, &text, access, warnings, diags);
        if let Some(a) = set_action {
            // As BIND's `policy` option: every trigger takes this action.
            for r in &mut set.rules {
                r.action = a.clone();
            }
        }
    } else {
        set.rules = parse_domain_list(&lp, &text, set_action.unwrap_or(Action::NxDomain), diags);
    }
    Some(set)
}

/// One `records:` entry of an inline override: `{ type: A, value: 10.0.0.5 }`.
fn read_override_record(node: &Node, owner: &Name, ttl: u32, path: &Path, diags: &mut Diagnostics) -> Option<Record> {
    let mut m = MapReader::new(node, "an override record", path, diags)?;
    let t = m.req_text("type", " (e.g. `type: A`)", diags);
    let v = m.req_text("value", " (e.g. `value: 10.0.0.5`)", diags);
    m.finish(diags);
    let (t, v) = (t?, v?);
    let rtype = match rdata::parse_type(&t.value) {
        Ok(r) => r,
        Err(e) => {
            diags.push(path, t.pos, e);
            return None;
        }
    };
    match rdata::parse_value(rtype, &v.value) {
        Ok(data) => Some(Record::from_rdata(owner.clone(), ttl, data)),
        Err(e) => {
            diags.push(path, pos(&v), e);
            None
        }
    }
}

/// A domain list: one name per line, `#` starts a comment, blank lines
/// are skipped; each name matches itself and every name below it. A
/// leading `*.` matches only the names below. A name given twice is
/// kept once.
pub fn parse_domain_list(path: &Arc<Path>, text: &str, action: Action, diags: &mut Diagnostics) -> Vec<RuleDef> {
    let mut out = Vec::new();
    let mut problems = 0;
    let mut seen: rustc_hash::FxHashSet<(Name, bool)> = rustc_hash::FxHashSet::default();
    for (i, line) in text.lines().enumerate() {
        let body = line.split('#').next().unwrap_or("");
        let word = body.trim();
        if word.is_empty() {
            continue;
        }
        let col = (body.len() - body.trim_start().len()) as u32 + 1;
        let at = Pos::new(i as u32 + 1, col);
        let mut report = |msg: String, diags: &mut Diagnostics| {
            problems += 1;
            if problems < MAX_LIST_PROBLEMS {
                diags.push(path, at, msg);
            } else if problems == MAX_LIST_PROBLEMS {
                diags.push(path, at, format!("more than {MAX_LIST_PROBLEMS} problems in this list; stopped reporting"));
            }
        };
        if word.contains(char::is_whitespace) {
            report(format!("`{word}` is not one domain name: a list has one name per line (hosts-file lines are not read)"), diags);
            continue;
        }
        let (wildcard, rest) = match word.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, word),
        };
        let name = match rdata::parse_absolute_name(rest) {
            Ok(n) if n.is_root() => {
                report("the root `.` would match every name; list the domains themselves".into(), diags);
                continue;
            }
            Ok(n) if n.iter().any(|l| l == b"*") => {
                report(format!("`{word}`: a `*` is allowed only as the whole first label"), diags);
                continue;
            }
            Ok(n) => n.to_lowercase(),
            Err(e) => {
                report(e, diags);
                continue;
            }
        };
        if !seen.insert((name.clone(), wildcard)) {
            continue;
        }
        let trigger = if wildcard { Trigger::Name { name, wildcard: true } } else { Trigger::Domain(name) };
        out.push(RuleDef { trigger, action: action.clone(), path: path.clone(), pos: at });
    }
    out
}

/// The special CNAME targets of RPZ (the policy actions), by name.
fn rpz_action(target: &Name) -> Option<Action> {
    if target.is_root() {
        return Some(Action::NxDomain);
    }
    let t = target.to_lowercase().to_ascii();
    match t.as_str() {
        "*." => Some(Action::NoData),
        "rpz-passthru." => Some(Action::Allow),
        "rpz-drop." => Some(Action::Drop),
        "rpz-tcp-only." => Some(Action::TcpOnly),
        _ => None,
    }
}

/// Reads an RPZ zone (master-file format, as BIND and Unbound read it).
/// The zone's origin is the owner of its SOA (none: the root, so that a
/// file whose names are relative to an origin it never states reads as
/// the trigger names themselves). Supported triggers: QNAME (exact and
/// `*.` wildcard) and response IP (`rpz-ip`); `rpz-client-ip`,
/// `rpz-nsdname` and `rpz-nsip` records are skipped with a warning.
pub fn parse_rpz(path: &Arc<Path>, text: &str, access: &FileAccess, warnings: &mut Vec<String>, diags: &mut Diagnostics) -> Vec<RuleDef> {
    let recs = super::master_file::parse_text(path, text, &Name::root(), access, diags);
    let origin =
        recs.iter().find(|r| r.record.record_type() == RecordType::SOA).map(|r| r.record.name.to_lowercase()).unwrap_or_else(Name::root);
    let mut out: Vec<RuleDef> = Vec::new();
    // Trigger → its rule in `out`, to gather local data of one owner.
    let mut at: rustc_hash::FxHashMap<Trigger, usize> = rustc_hash::FxHashMap::default();
    let mut skipped: Option<(Arc<Path>, Pos, &'static str, usize)> = None;
    for r in recs {
        let owner = r.record.name.to_lowercase();
        let rtype = r.record.record_type();
        if !origin.zone_of(&owner) {
            diags.push(&r.path, r.pos, format!("{owner} is outside the RPZ zone {origin} (the owner of its SOA)"));
            continue;
        }
        if owner == origin {
            // The zone's own SOA and NS: not triggers.
            if !matches!(rtype, RecordType::SOA | RecordType::NS) {
                diags.push(
                    &r.path,
                    r.pos,
                    format!(
                        "{} record at the RPZ zone's apex {origin}: only SOA and NS belong there",
                        super::presentation::type_name(rtype)
                    ),
                );
            }
            continue;
        }
        let rel: Vec<Vec<u8>> = owner.iter().take(owner.iter().count() - origin.iter().count()).map(<[u8]>::to_vec).collect();
        let last = rel.last().map(|l| l.as_slice()).unwrap_or(b"");
        let trigger = match last {
            b"rpz-ip" => match rpz_ip(&rel[..rel.len() - 1]) {
                Ok(net) => Trigger::ResponseIp(net),
                Err(e) => {
                    diags.push(&r.path, r.pos, format!("{owner}: {e}"));
                    continue;
                }
            },
            b"rpz-client-ip" | b"rpz-nsdname" | b"rpz-nsip" => {
                let what = match last {
                    b"rpz-client-ip" => "rpz-client-ip",
                    b"rpz-nsdname" => "rpz-nsdname",
                    _ => "rpz-nsip",
                };
                match &mut skipped {
                    Some(s) => s.3 += 1,
                    None => skipped = Some((r.path.clone(), r.pos, what, 1)),
                }
                continue;
            }
            _ => {
                let wildcard = rel.first().is_some_and(|l| l == b"*");
                let labels = if wildcard { &rel[1..] } else { &rel[..] };
                if labels.iter().any(|l| l == b"*") {
                    diags.push(&r.path, r.pos, format!("{owner}: a `*` is allowed only as the whole first label"));
                    continue;
                }
                if labels.is_empty() {
                    diags.push(&r.path, r.pos, format!("{owner}: `*.` at the RPZ apex would match every name; list the domains"));
                    continue;
                }
                match Name::from_labels(labels.iter().map(|l| l.as_slice())) {
                    Ok(mut n) => {
                        n.set_fqdn(true);
                        Trigger::Name { name: n, wildcard }
                    }
                    Err(e) => {
                        diags.push(&r.path, r.pos, format!("{owner}: {e}"));
                        continue;
                    }
                }
            }
        };
        let is_ip = matches!(trigger, Trigger::ResponseIp(_));
        let action = match &r.record.data {
            RData::CNAME(t) => match rpz_action(&t.0) {
                Some(a) => a,
                // The old passthru form: a CNAME to the trigger name itself.
                None if !is_ip && t.0.to_lowercase() == trigger_name(&trigger) => Action::Allow,
                None if t.0.iter().next() == Some(b"*") => {
                    diags.push(&r.path, r.pos, format!("{owner}: CNAME to `{}`: a wildcard CNAME target (the query name under another domain) is not supported; give a target name", t.0));
                    continue;
                }
                None if is_ip => {
                    diags.push(
                        &r.path,
                        r.pos,
                        format!("{owner}: an rpz-ip trigger replaces the answer with records, not a CNAME to another name"),
                    );
                    continue;
                }
                None => Action::Cname((t.0.to_lowercase(), r.record.ttl)),
            },
            _ => {
                let mut rec = r.record.clone();
                rec.name = trigger_name(&trigger);
                Action::Records(vec![rec])
            }
        };
        match at.get(&trigger) {
            None => {
                at.insert(trigger.clone(), out.len());
                out.push(RuleDef { trigger, action, path: r.path.clone(), pos: r.pos });
            }
            Some(&i) => match (&mut out[i].action, action) {
                (Action::Records(have), Action::Records(mut more)) => have.append(&mut more),
                (first, _) => {
                    let kind = first.kind();
                    let line = out[i].pos.line;
                    let what = match kind {
                        ActionKind::Override => "local data",
                        k => k.as_str(),
                    };
                    diags.push(&r.path, r.pos, format!("{owner} already has a policy ({what}, line {line}): a CNAME action stands alone, as a CNAME does (RFC 1034 §3.6.2)"));
                }
            },
        }
    }
    if let Some((p, at, what, n)) = skipped {
        warnings.push(format!(
            "{}:{}:{}: {n} {what} trigger(s) skipped: pzdns applies QNAME and rpz-ip triggers only",
            p.display(),
            at.line,
            at.column
        ));
    }
    out
}

fn trigger_name(t: &Trigger) -> Name {
    match t {
        Trigger::Name { name, .. } | Trigger::Domain(name) => name.clone(),
        Trigger::ResponseIp(_) => Name::root(),
    }
}

/// An `rpz-ip` owner (the labels before `rpz-ip`): the prefix length,
/// then the address reversed: `32.1.0.0.10` is 10.0.0.1/32; for IPv6,
/// 16-bit groups in hex, `zz` standing for the `::` run
/// (`128.1.zz.db8.2001` is 2001:db8::1/128).
pub fn rpz_ip(labels: &[Vec<u8>]) -> Result<IpNet, String> {
    let text: Vec<String> = labels.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let bad = || {
        format!("`{}.rpz-ip` is not an rpz-ip trigger (prefix length, then the address reversed, e.g. 32.1.0.0.10.rpz-ip)", text.join("."))
    };
    let (len, rest) = text.split_first().ok_or_else(bad)?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let groups: Vec<&str> = rest.iter().rev().map(String::as_str).collect();
    let net = if groups.len() == 4 && groups.iter().all(|g| g.parse::<u8>().is_ok()) {
        let a: std::net::Ipv4Addr = groups.join(".").parse().map_err(|_| bad())?;
        IpNet::new(a.into(), len).map_err(|_| bad())?
    } else {
        if groups.iter().filter(|g| **g == "zz").count() > 1 || groups.len() > 8 || groups.is_empty() {
            return Err(bad());
        }
        let mut t = groups.join(":").replace("zz", "");
        if t.starts_with(':') && !t.starts_with("::") {
            t.insert(0, ':');
        }
        if t.ends_with(':') && !t.ends_with("::") {
            t.push(':');
        }
        let a: std::net::Ipv6Addr = t.parse().map_err(|_| bad())?;
        IpNet::new(a.into(), len).map_err(|_| bad())?
    };
    if net.trunc() != net {
        return Err(format!("{net} has host bits set; the trigger for that network is {}", net.trunc()));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Result<IpNet, String> {
        let labels: Vec<Vec<u8>> = s.split('.').map(|l| l.as_bytes().to_vec()).collect();
        rpz_ip(&labels)
    }

    #[test]
    fn rpz_ip_owners() {
        assert_eq!(ip("32.1.0.0.10").unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(ip("8.0.0.0.10").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(ip("128.1.zz.db8.2001").unwrap().to_string(), "2001:db8::1/128");
        assert_eq!(ip("48.zz.db8.2001").unwrap().to_string(), "2001:db8::/48");
        assert_eq!(ip("64.zz.1.2.3.4").unwrap().to_string(), "4:3:2:1::/64");
        assert!(ip("24.1.0.0.10").is_err(), "host bits");
        assert!(ip("33.1.0.0.10").is_err());
        assert!(ip("x.1.0.0.10").is_err());
        assert!(ip("64.zz.1.zz.2").is_err());
    }

    #[test]
    fn rpz_triggers_and_actions() {
        let d = std::env::temp_dir().join(format!("pzdns-rpz-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p: Arc<Path> = Arc::from(d.join("x.rpz").as_path());
        let text = "$TTL 300\n$ORIGIN rpz.test.\n@ SOA ns hm 1 2 3 4 5\n@ NS ns.\nbad.example CNAME .\n*.bad.example CNAME .\nok.bad.example CNAME rpz-passthru.\nnd.example CNAME *.\ndrop.example CNAME rpz-drop.\ntc.example CNAME rpz-tcp-only.\nlocal.example A 10.0.0.5\nlocal.example TXT \"hi\"\ncn.example CNAME www.other.example.\n32.1.0.0.10.rpz-ip CNAME .\n24.0.0.10.rpz-client-ip CNAME .\nbad.example A 1.2.3.4\n";
        let (mut w, mut diags) = (Vec::new(), Diagnostics::new());
        let rules = parse_rpz(&p, text, &FileAccess::new(&d, &[]), &mut w, &mut diags);
        let got: Vec<String> = rules.iter().map(|r| format!("{:?} {:?}", r.trigger, r.action.kind())).collect();
        assert_eq!(rules.len(), 9, "{got:#?}");
        assert!(matches!(&rules[6].action, Action::Records(v) if v.len() == 2), "{got:#?}");
        assert!(matches!(rules[8].trigger, Trigger::ResponseIp(_)));
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(diags.len(), 1, "{diags}");
        assert!(diags.items()[0].message.contains("already has a policy (nxdomain, line 5)"), "{diags}");
        assert_eq!(diags.items()[0].pos, Pos::new(16, 1));
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn domain_lists() {
        let p: Arc<Path> = Arc::from(Path::new("feed.txt"));
        let mut diags = Diagnostics::new();
        let r = parse_domain_list(
            &p,
            "# feed\nbad.example\n  Bad.Example  # again\n*.wild.example\n\nx y\nbad..name\n",
            Action::NxDomain,
            &mut diags,
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].trigger, Trigger::Domain(Name::from_ascii("bad.example.").unwrap()));
        let probs: Vec<String> = diags.items().iter().map(|d| d.to_string()).collect();
        assert_eq!(probs.len(), 2, "{probs:?}");
        assert!(probs[0].starts_with("feed.txt:6:1: `x y` is not one domain name"), "{probs:?}");
        assert!(probs[1].starts_with("feed.txt:7:1:"), "{probs:?}");
    }
}
