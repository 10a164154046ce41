//! The `zones/` directory: `vpcs.yaml`, `endpoints.yaml`, and one YAML file
//! per zone (in any subdirectory; hidden entries such as `.git` are skipped).
//!
//! This module checks each file on its own and the references between files
//! (VPC ids); the snapshot builder checks what needs the records grouped by
//! name (CNAME beside other data, duplicate zones per VPC, CNAME loops).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;

use super::diagnostics::{Diagnostics, Pos};
use super::files::{FileAccess, Stamp, unchanged};
use super::routing::{Failover, MAX_ANSWERS, MAX_WEIGHT, RouteDef, parse_check};
use super::schema::{EndpointsFile, Values, VpcsFile, ZoneFile};
use super::yaml::{self, Spanned, pos};
use super::{Located, MAX_TTL, MIN_TTL, ServerConfig, presentation, rdata};

pub const VPCS_FILE: &str = "vpcs.yaml";
pub const ENDPOINTS_FILE: &str = "endpoints.yaml";
/// Most files a zones directory may hold; more is a mistake (or an attack).
pub const MAX_FILES: usize = 100_000;
/// Deepest subdirectory nesting read.
pub const MAX_DEPTH: usize = 16;
/// PrivateZone's default TTL.
pub const DEFAULT_TTL: u32 = 60;
pub const DEFAULT_ENDPOINT_TEMPLATE: &str = "{endpoint}.{service}.{region}.privatelink.aliyuncs.com";
pub const DEFAULT_ZONAL_TEMPLATE: &str = "{endpoint}-{zone}.{service}.{region}.privatelink.aliyuncs.com";
/// Endpoint and endpoint-zone statuses (Alibaba Cloud's); only Connected is published.
pub const STATUSES: &[&str] = &["Connected", "Connecting", "Disconnected", "Disconnecting", "Pending", "Rejected", "Deleting", "Deleted"];

/// A VPC of `vpcs.yaml`.
#[derive(Debug, Clone)]
pub struct VpcDef {
    pub id: String,
    pub region: Option<String>,
    pub cidrs: Vec<IpNet>,
    pub vswitches: Vec<VswitchDef>,
}

#[derive(Debug, Clone)]
pub struct VswitchDef {
    pub id: String,
    pub zone: String,
    pub cidr: IpNet,
}

/// Where a zone came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneOrigin {
    /// A zone file (YAML, maybe with a master file).
    File,
    /// Generated from `endpoints.yaml` for this endpoint id.
    Endpoint(String),
}

/// One zone, parsed and checked field by field.
#[derive(Debug, Clone)]
pub struct ZoneDef {
    pub origin: Name,
    pub kind: ZoneOrigin,
    /// The YAML file and the position of its `zone:` key.
    pub path: PathBuf,
    pub pos: Pos,
    pub vpcs: Vec<Located<String>>,
    pub recursive_proxy: bool,
    pub ttl: u32,
    /// Where `records` positions point: the YAML file, or the master file.
    pub records_path: PathBuf,
    pub records: Vec<RecordDef>,
}

#[derive(Debug, Clone)]
pub struct RecordDef {
    pub record: Record,
    pub pos: Pos,
    /// For endpoint records: the endpoint zone (e.g. cn-hangzhou-b) this
    /// address lives in, so answers can prefer the client's own zone.
    pub az: Option<String>,
    /// Weight, failover role, health check (SPEC §10); boxed, as few
    /// records have one.
    pub route: Option<Box<super::routing::RouteDef>>,
}

/// The whole directory.
#[derive(Debug, Clone, Default)]
pub struct ZonesData {
    pub dir: PathBuf,
    pub vpcs: Vec<VpcDef>,
    pub zones: Vec<ZoneDef>,
    /// Number of endpoints in `endpoints.yaml` (all statuses).
    pub endpoints: usize,
    pub files_read: usize,
    /// Response policies (files with `policy:` instead of `zone:`).
    pub policies: Vec<super::policy::PolicyDef>,
    /// Zone files not read again: unchanged since the previous load, whose
    /// zones stand as that load built them (see [`load_reusing`]).
    pub reused: Vec<PathBuf>,
    /// What this load read, for the next one to compare with.
    pub read: Previous,
}

/// The zone files a successful load read, each with the files read for it
/// (the YAML file, its master file, every `$INCLUDE`) and their stamps,
/// and what every zone file was read against: the next load reads again
/// only the zone files for which something differs. Policy files,
/// `vpcs.yaml` and `endpoints.yaml` are read every time.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    basis: Option<Basis>,
    files: HashMap<PathBuf, Vec<(PathBuf, Option<Stamp>)>>,
}

/// What reading a zone file depends on besides its own files: where files
/// may be read from, and the VPC ids in order (a zone holds VPC indices).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Basis {
    dir: PathBuf,
    allowed: Vec<PathBuf>,
    vpcs: Vec<String>,
}

impl Previous {
    /// Zone files that would be taken as they are.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Loads and checks `cfg.zones_dir`, together with the VPC references in
/// `cfg` (listeners and forward zones). Returns what could be read along
/// with every problem found, so that later checks (which need the records
/// grouped) can still run and report theirs in the same pass.
pub fn load(cfg: &ServerConfig) -> (ZonesData, Diagnostics) {
    load_reusing(cfg, None, super::files::RACY_WINDOW)
}

/// As [`load`], reading again only the zone files for which `prev` (what
/// the previous successful load read) shows a change: the others are
/// listed in `reused`, for the snapshot builder to take their zones from
/// the previous snapshot. Files modified within `racy_window` of being
/// read are read again next time whatever their stamps say.
///
/// A load whose directories changed while it read them (an entry renamed,
/// added or removed: `git pull`, git-sync, an editor) may have missed a
/// file, so it is not used: the load is made again, at most
/// [`LOAD_ATTEMPTS`] times, then fails with a problem saying so (and a
/// reload keeps the data in force).
pub fn load_reusing(cfg: &ServerConfig, prev: Option<&Previous>, racy_window: std::time::Duration) -> (ZonesData, Diagnostics) {
    let mut attempt = 1;
    loop {
        let (data, mut diags, listed) = load_once(cfg, prev, racy_window);
        let Some(what) = changed_since(&listed) else {
            return (data, diags);
        };
        if attempt == LOAD_ATTEMPTS {
            diags.push(
                &cfg.zones_dir,
                Pos::UNKNOWN,
                format!(
                    "the zones directory changed while it was read, {LOAD_ATTEMPTS} times in a row (last: {what}); \
                     a file may have been missed, so nothing read was used: load again once the writer is done"
                ),
            );
            return (data, diags);
        }
        std::thread::sleep(std::time::Duration::from_millis(50 * attempt as u64));
        attempt += 1;
    }
}

/// Loads made before a load whose directories kept changing fails.
pub const LOAD_ATTEMPTS: usize = 3;

/// One load, and the directories it listed (for [`changed_since`]).
fn load_once(cfg: &ServerConfig, prev: Option<&Previous>, racy_window: std::time::Duration) -> (ZonesData, Diagnostics, Vec<Listed>) {
    let dir = &cfg.zones_dir;
    let mut diags = Diagnostics::new();
    let mut data = ZonesData { dir: dir.clone(), ..Default::default() };
    if !dir.is_dir() {
        diags.push(
            dir,
            Pos::UNKNOWN,
            "zones directory does not exist or is not a directory; set `zones_dir` in pzdns.yaml or pass --zones DIR",
        );
        return (data, diags, Vec::new());
    }
    let mut walk = Walk { limit: MAX_FILES, files: Vec::new(), entered: HashMap::new(), listed: Vec::new(), diags: &mut diags };
    let complete = walk.enter(dir, 0);
    let (mut files, listed) = (walk.files, walk.listed);
    if !complete {
        // Over the limit (reported): reading them all is what the limit
        // prevents, and the load fails on that problem.
        return (data, diags, listed);
    }
    files.sort();
    data.files_read = files.len();
    let access = FileAccess::new(dir, &cfg.allow_paths_outside).with_racy_window(racy_window).with_load_limit(cfg.zones_max_bytes);

    let is_top = |f: &Path, n: &str| f.parent() == Some(dir.as_path()) && f.file_name().and_then(|x| x.to_str()) == Some(n);
    // VPCs first: every other file refers to them. Whether the file is
    // there is what the listing says, as for every other file.
    let vpcs_path = dir.join(VPCS_FILE);
    if files.iter().any(|f| is_top(f, VPCS_FILE)) {
        load_vpcs(&vpcs_path, &access, &mut data, &mut diags);
    }
    let known: HashSet<String> = data.vpcs.iter().map(|v| v.id.clone()).collect();
    let basis =
        Basis { dir: dir.clone(), allowed: cfg.allow_paths_outside.clone(), vpcs: data.vpcs.iter().map(|v| v.id.clone()).collect() };
    let prev = prev.filter(|p| p.basis.as_ref() == Some(&basis));
    data.read.basis = Some(basis);
    let check_vpc = |l: &Located<String>, diags: &mut Diagnostics| {
        if !known.contains(&l.value) {
            diags.push(&l.path, l.pos, unknown_vpc_msg(&l.value, dir, &known));
        }
    };
    for l in &cfg.listen {
        if let Some(v) = &l.vpc {
            check_vpc(v, &mut diags);
        }
    }
    for fz in &cfg.forward_zones {
        for v in fz.vpcs.iter().flatten() {
            check_vpc(v, &mut diags);
        }
    }
    for k in &cfg.transfers.keys {
        check_vpc(&k.vpc, &mut diags);
    }

    let zone_files: Vec<&PathBuf> = files.iter().filter(|f| !is_top(f, VPCS_FILE) && !is_top(f, ENDPOINTS_FILE)).collect();
    // Zone files are independent: parse them on rayon's pool (every core).
    // Results come back in file order, so output is deterministic.
    // Per file: what it holds (`None`: unchanged, not read), its problems,
    // and the files read for it.
    type Read = (PathBuf, Option<DataFile>, Diagnostics, Vec<(PathBuf, Option<Stamp>)>);
    let parsed: Vec<Read> = {
        use rayon::prelude::*;
        zone_files
            .par_iter()
            .map(|f| {
                if let Some(reads) = prev.and_then(|p| p.files.get(*f)).and_then(|r| unchanged(r, &access, racy_window)) {
                    return ((*f).clone(), None, Diagnostics::new(), reads);
                }
                let mut d = Diagnostics::new();
                let (access, reads) = access.recording();
                let z = load_zone_file(f, dir, &known, &access, &mut d);
                let reads = std::mem::take(&mut *reads.lock().unwrap_or_else(|p| p.into_inner()));
                ((*f).clone(), Some(z), d, reads)
            })
            .collect()
    };
    for (path, z, d, reads) in parsed {
        diags.extend(d);
        match z {
            None => {
                data.reused.push(path.clone());
                data.read.files.insert(path, reads);
            }
            Some(DataFile::Zone(z)) => {
                data.zones.push(z);
                data.read.files.insert(path, reads);
            }
            Some(DataFile::Policy(p)) => data.policies.push(p),
            Some(DataFile::Nothing) => {}
        }
    }
    if files.iter().any(|f| is_top(f, ENDPOINTS_FILE)) {
        load_endpoints(&dir.join(ENDPOINTS_FILE), &known, &access, &mut data, &mut diags);
    }
    add_unknown_vpcs(&mut data, &known);
    (data, diags, listed)
}

/// Every VPC id that zones and endpoints name but `vpcs.yaml` lacks (each
/// reference is a problem, reported) stands as a VPC without CIDRs, after
/// the real ones: the load fails on those problems, but the checks that
/// need the zones a VPC sees (CNAME chains, two zones of one name, names
/// an endpoint shadows) still run, so that one `check` shows everything.
fn add_unknown_vpcs(data: &mut ZonesData, known: &HashSet<String>) {
    let mut added: HashSet<&str> = HashSet::new();
    let mut unknown: Vec<String> = Vec::new();
    for l in data.zones.iter().flat_map(|z| z.vpcs.iter()) {
        if !known.contains(&l.value) && added.insert(&l.value) {
            unknown.push(l.value.clone());
        }
    }
    for id in unknown {
        data.vpcs.push(VpcDef { id, region: None, cidrs: Vec::new(), vswitches: Vec::new() });
    }
}

fn unknown_vpc_msg(id: &str, dir: &Path, known: &HashSet<String>) -> String {
    let vpcs = dir.join(VPCS_FILE);
    match yaml::did_you_mean(id, known.iter().map(String::as_str)) {
        Some(s) => format!("unknown VPC id `{id}`; did you mean `{s}`? (VPCs are defined in {})", vpcs.display()),
        None if !vpcs.exists() => format!("unknown VPC id `{id}`: {} does not exist; create it and define the VPCs there", vpcs.display()),
        None => format!("unknown VPC id `{id}`; define it in {}", vpcs.display()),
    }
}

/// Words that cannot be VPC ids: `unknown` labels clients in no VPC (in
/// metrics, logs and /explain), so a VPC of that name would be ambiguous.
pub const RESERVED_VPC_IDS: &[&str] = &["unknown"];

/// A directory as a load listed it: its stamp just before, and its
/// entries (name and inode; hidden ones left out), sorted.
#[derive(Debug)]
struct Listed {
    path: PathBuf,
    stamp: Option<Stamp>,
    entries: Vec<(std::ffi::OsString, u64)>,
}

/// The entries of `dir` that are read (hidden ones such as `.git` are
/// not), by name, with their inodes.
fn list_dir(dir: &Path) -> std::io::Result<Vec<(std::ffi::OsString, u64)>> {
    use std::os::unix::fs::DirEntryExt;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.as_encoded_bytes().starts_with(b".") {
            out.push((name, entry.ino()));
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a directory listed by a load differs now, and how. The stamp
/// (modification and change time) moves with any entry renamed, added or
/// removed; the second listing also catches a change made within the
/// stamp's granularity. Together they miss only what a listing missed
/// twice, each time within one tick of the clock that stamps directories.
fn changed_since(listed: &[Listed]) -> Option<String> {
    for l in listed {
        let now = list_dir(&l.path);
        let Ok(now) = now else {
            return Some(format!("{} can no longer be read", l.path.display()));
        };
        if now != l.entries {
            let names = |a: &[(std::ffi::OsString, u64)], b: &[(std::ffi::OsString, u64)]| {
                a.iter().filter(|e| !b.contains(e)).take(3).map(|(n, _)| format!("`{}`", n.to_string_lossy())).collect::<Vec<_>>()
            };
            let (gone, came) = (names(&l.entries, &now), names(&now, &l.entries));
            return Some(format!("in {}, gone: {}; new: {}", l.path.display(), or_none(&gone), or_none(&came)));
        }
        if Stamp::of(&l.path) != l.stamp {
            return Some(format!("{} was modified", l.path.display()));
        }
    }
    None
}

fn or_none(names: &[String]) -> String {
    if names.is_empty() { "none".to_string() } else { names.join(", ") }
}

/// The walk of the zones directory: every directory is entered once, by
/// its device and inode, so that a link back up the tree (or to a
/// directory read already) is a problem, not a loop that reads every
/// file again at every level.
struct Walk<'d> {
    limit: usize,
    files: Vec<PathBuf>,
    /// Every directory entered, by (device, inode), with its path.
    entered: HashMap<(u64, u64), PathBuf>,
    listed: Vec<Listed>,
    diags: &'d mut Diagnostics,
}

impl Walk<'_> {
    /// Collects the YAML files under `dir` (at most `limit`). Returns
    /// `false` when there are more than `limit` (reported once): the load
    /// must then fail with that reason, never go on with part of the data
    /// or none.
    fn enter(&mut self, dir: &Path, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            self.diags.push(dir, Pos::UNKNOWN, format!("directory nesting is deeper than {MAX_DEPTH} levels"));
            return true;
        }
        // Stamped before it is listed: a change made while the load reads
        // shows in `changed_since`.
        let stamp = Stamp::of(dir);
        if let Some(s) = stamp {
            if let Some(first) = self.entered.get(&s.dev_ino()) {
                let msg = if dir.starts_with(first) {
                    format!("links back to {}, a directory that holds it: a loop; remove the link", first.display())
                } else {
                    format!("is the directory {} again (read already); a directory is read once: remove one of the links", first.display())
                };
                self.diags.push(dir, Pos::UNKNOWN, msg);
                return true;
            }
            self.entered.insert(s.dev_ino(), dir.to_path_buf());
        }
        let entries = match list_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.diags.push(dir, Pos::UNKNOWN, format!("cannot read directory: {e}"));
                return true;
            }
        };
        for (name, _) in &entries {
            let path = dir.join(name);
            // metadata() follows symlinks, which is what git-sync's
            // symlink swap needs.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let name = name.to_string_lossy();
            if meta.is_dir() {
                if !self.enter(&path, depth + 1) {
                    return false;
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                if self.files.len() >= self.limit {
                    self.diags.push(
                        dir,
                        Pos::UNKNOWN,
                        format!(
                            "more than {} YAML files under the zones directory; pzdns reads at most that many, so nothing was loaded",
                            self.limit
                        ),
                    );
                    return false;
                }
                self.files.push(path);
            }
        }
        self.listed.push(Listed { path: dir.to_path_buf(), stamp, entries });
        true
    }
}

fn load_vpcs(path: &Path, access: &FileAccess, data: &mut ZonesData, diags: &mut Diagnostics) {
    let Some(text) = access.read_text(path, diags) else {
        return;
    };
    let Some(file) = yaml::parse_tree(path, &text, diags).and_then(|n| VpcsFile::read(&n, path, diags)) else {
        return;
    };
    let mut ids: HashMap<String, Pos> = HashMap::new();
    let mut cidrs: HashMap<IpNet, String> = HashMap::new();
    for v in file.vpcs {
        spaces_around("VPC id", &v.id.value, path, pos(&v.id), diags);
        let id = v.id.value.trim().to_string();
        if id.is_empty() {
            diags.push(path, pos(&v.id), "VPC id is empty");
            continue;
        }
        if let Some(first) = ids.get(&id) {
            diags.push(path, pos(&v.id), format!("VPC id `{id}` is defined twice (first at line {})", first.line));
            continue;
        }
        if RESERVED_VPC_IDS.iter().any(|r| r.eq_ignore_ascii_case(&id)) {
            diags.push(
                path,
                pos(&v.id),
                format!("`{id}` cannot be a VPC id: pzdns uses it for clients in no VPC (metrics, logs, explain); choose another id"),
            );
            continue;
        }
        ids.insert(id.clone(), pos(&v.id));
        if v.cidrs.value.is_empty() {
            diags.push(path, pos(&v.cidrs), format!("VPC `{id}` has no cidrs; list its address ranges, e.g. [192.168.0.0/16]"));
        }
        let mut def = VpcDef { id: id.clone(), region: v.region.map(|r| r.value), cidrs: Vec::new(), vswitches: Vec::new() };
        for c in &v.cidrs.value {
            let Some(net) = parse_cidr(&c.value, path, pos(c), diags) else {
                continue;
            };
            if let Some(other) = cidrs.get(&net) {
                diags.push(
                    path,
                    pos(c),
                    format!("CIDR {net} of VPC `{id}` is also a CIDR of VPC `{other}`; a source address must map to one VPC"),
                );
                continue;
            }
            cidrs.insert(net, id.clone());
            def.cidrs.push(net);
        }
        let mut vsw_ids = HashSet::new();
        for s in v.vswitches {
            let Some(net) = parse_cidr(&s.cidr.value, path, pos(&s.cidr), diags) else {
                continue;
            };
            if !def.cidrs.iter().any(|c| c.contains(&net)) {
                diags.push(path, pos(&s.cidr), format!("vSwitch CIDR {net} is not inside any CIDR of VPC `{id}`"));
            }
            if !vsw_ids.insert(s.id.value.clone()) {
                diags.push(path, pos(&s.id), format!("vSwitch id `{}` is given twice", s.id.value));
            }
            if s.zone.value.trim().is_empty() {
                diags.push(path, pos(&s.zone), "vSwitch zone is empty; give the zone id, e.g. cn-hangzhou-b");
            }
            def.vswitches.push(VswitchDef { id: s.id.value, zone: s.zone.value, cidr: net });
        }
        data.vpcs.push(def);
    }
}

fn parse_cidr(s: &str, path: &Path, p: Pos, diags: &mut Diagnostics) -> Option<IpNet> {
    let s = s.trim();
    match s.parse::<IpNet>() {
        Ok(IpNet::V6(net)) if net.addr().to_ipv4_mapped().is_some() => {
            let hint = match (net.addr().to_ipv4_mapped(), net.prefix_len().checked_sub(96)) {
                (Some(v4), Some(p)) => {
                    format!("write it as {}", IpNet::new(v4.into(), p).map(|n| n.trunc().to_string()).unwrap_or_default())
                }
                _ => "write the IPv4 range itself".to_string(),
            };
            diags.push(
                path,
                p,
                format!("`{s}` is an IPv4-mapped IPv6 range: IPv4 clients arrive with IPv4 addresses, so it can never match; {hint}"),
            );
            None
        }
        Ok(net) if net.trunc() == net => Some(net),
        Ok(net) => {
            diags.push(path, p, format!("`{s}` is not a network address: host bits are set; did you mean {}?", net.trunc()));
            None
        }
        Err(_) => {
            diags.push(path, p, format!("`{s}` is not a CIDR; write it like 192.168.0.0/16 or 2001:db8::/32"));
            None
        }
    }
}

fn check_ttl(t: &Spanned<i64>, path: &Path, diags: &mut Diagnostics) -> Option<u32> {
    if (MIN_TTL..=MAX_TTL).contains(&t.value) {
        Some(t.value as u32)
    } else {
        diags.push(path, pos(t), format!("TTL {} is outside {MIN_TTL}..{MAX_TTL} seconds", t.value));
        None
    }
}

fn check_vpc_list(
    list: &[Spanned<String>],
    known: &HashSet<String>,
    path: &Path,
    dir: &Path,
    diags: &mut Diagnostics,
) -> Vec<Located<String>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for v in list {
        spaces_around("VPC id", &v.value, path, pos(v), diags);
        let id = v.value.trim();
        if !known.contains(id) {
            diags.push(path, pos(v), unknown_vpc_msg(id, dir, known));
        }
        // An unknown id is kept: `load_reusing` gives it a VPC of its own
        // for the checks that need views to run in the same pass.
        if !seen.insert(id.to_string()) {
            diags.push(path, pos(v), format!("VPC `{id}` is listed twice"));
        } else {
            out.push(Located { value: id.to_string(), path: path.to_path_buf(), pos: pos(v) });
        }
    }
    out
}

fn zones_dir_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// What a YAML file of the zones directory (other than `vpcs.yaml` and
/// `endpoints.yaml`) holds.
enum DataFile {
    Zone(ZoneDef),
    Policy(super::policy::PolicyDef),
    Nothing,
}

/// Reads one zone or policy file; `Nothing` only when nothing useful could be read.
fn load_zone_file(path: &Path, dir: &Path, known: &HashSet<String>, access: &FileAccess, diags: &mut Diagnostics) -> DataFile {
    let Some(text) = access.read_text(path, diags) else { return DataFile::Nothing };
    let Some(node) = yaml::parse_tree(path, &text, diags) else { return DataFile::Nothing };
    if super::policy::is_policy(&node) {
        let check = |v: &Spanned<String>, d: &mut Diagnostics| {
            let ok = known.contains(&v.value);
            if !ok {
                d.push(path, v.pos, unknown_vpc_msg(&v.value, dir, known));
            }
            ok
        };
        return super::policy::read_policy(&node, path, access, &check, diags).map_or(DataFile::Nothing, DataFile::Policy);
    }
    zone_from_tree(path, &node, known, access, diags).map_or(DataFile::Nothing, DataFile::Zone)
}

/// Parses and checks one zone file's text (`path` names it in messages
/// and anchors a relative `master_file`, which is read through `access`).
/// Never panics, whatever the text.
pub fn load_zone_text(path: &Path, text: &str, known: &HashSet<String>, access: &FileAccess, diags: &mut Diagnostics) -> Option<ZoneDef> {
    let node = yaml::parse_tree(path, text, diags)?;
    zone_from_tree(path, &node, known, access, diags)
}

fn zone_from_tree(
    path: &Path,
    node: &yaml::Node,
    known: &HashSet<String>,
    access: &FileAccess,
    diags: &mut Diagnostics,
) -> Option<ZoneDef> {
    let file = ZoneFile::read(node, path, diags)?;
    spaces_around("zone", &file.zone.value, path, pos(&file.zone), diags);
    let origin = match rdata::parse_absolute_name(&file.zone.value) {
        Ok(n) if n.is_root() => {
            diags.push(path, pos(&file.zone), "the root zone `.` cannot be a private zone; use forward_zones or upstreams");
            return None;
        }
        Ok(n) => n.to_lowercase(),
        Err(e) => {
            diags.push(path, pos(&file.zone), format!("zone: {e}"));
            return None;
        }
    };
    let vpcs = check_vpc_list(&file.vpcs.value, known, path, &zones_dir_of(path), diags);
    let ttl = file.ttl.as_ref().and_then(|t| check_ttl(t, path, diags)).unwrap_or(DEFAULT_TTL);
    let mut zone = ZoneDef {
        origin: origin.clone(),
        kind: ZoneOrigin::File,
        path: path.to_path_buf(),
        pos: pos(&file.zone),
        vpcs,
        recursive_proxy: file.recursive_proxy.map(|r| r.value).unwrap_or(false),
        ttl,
        records_path: path.to_path_buf(),
        records: Vec::new(),
    };
    match (&file.records, &file.master_file) {
        (Some(_), Some(m)) => {
            diags.push(path, pos(m), "a zone has either `records` or `master_file`, not both");
        }
        (None, Some(m)) => {
            let mf = path.parent().unwrap_or(Path::new(".")).join(&m.value);
            zone.records_path = mf.clone();
            if !mf.exists() {
                diags.push(path, pos(m), format!("master_file {} does not exist", mf.display()));
            } else if let Some(recs) = super::master_file::load(&mf, &origin, access, (path, pos(m)), diags) {
                for r in recs {
                    let rt = r.record.record_type();
                    if !(MIN_TTL..=MAX_TTL).contains(&(r.record.ttl as i64)) {
                        diags.push(
                            &r.path,
                            r.pos,
                            format!(
                                "{} {}: TTL {} is outside {MIN_TTL}..{MAX_TTL} seconds",
                                r.record.name,
                                super::presentation::type_name(rt),
                                r.record.ttl
                            ),
                        );
                        continue;
                    }
                    if rt == RecordType::SOA && r.record.name != origin {
                        diags.push(&r.path, r.pos, format!("an SOA record belongs at the apex {origin} only, not at {}", r.record.name));
                        continue;
                    }
                    zone.records.push(RecordDef { record: r.record, pos: r.top_pos, az: None, route: None });
                }
            }
        }
        (Some(recs), None) => {
            zone.records.reserve(recs.value.len());
            for r in &recs.value {
                parse_record_entry(r, &zone.origin, ttl, path, &mut zone.records, diags);
            }
        }
        (None, None) => {}
    }
    Some(zone)
}

fn parse_record_entry(
    r: &super::schema::RecordEntry<'_>,
    origin: &Name,
    zone_ttl: u32,
    path: &Path,
    out: &mut Vec<RecordDef>,
    diags: &mut Diagnostics,
) {
    spaces_around("type", r.rtype.value, path, pos(&r.rtype), diags);
    let rtype = match rdata::parse_type(r.rtype.value) {
        Ok(t) => t,
        Err(e) => {
            diags.push(path, pos(&r.rtype), e);
            return;
        }
    };
    spaces_around("name", r.name.value, path, pos(&r.name), diags);
    let owner = match owner_name(r.name.value, origin) {
        Ok(n) => n,
        Err(e) => {
            diags.push(path, pos(&r.name), e);
            return;
        }
    };
    if let Some(e) = origin_repeated(r.name.value.trim(), origin) {
        diags.push(path, pos(&r.name), e);
    }
    if rtype == RecordType::SOA && owner != *origin {
        diags.push(path, pos(&r.rtype), "an SOA record belongs at the apex (`@`) only");
        return;
    }
    let ttl = match &r.ttl {
        Some(t) => match check_ttl(t, path, diags) {
            Some(t) => t,
            None => return,
        },
        None => zone_ttl,
    };
    let route = read_route(r, rtype, path, diags);
    let push = |text: &str, p: Pos, out: &mut Vec<RecordDef>, diags: &mut Diagnostics| {
        spaces_around("value", text, path, p, diags);
        match rdata::parse_value(rtype, text) {
            Ok(data) => {
                if let Some(e) = address_as_name(&data) {
                    diags.push(path, p, e);
                }
                out.push(RecordDef { record: Record::from_rdata(owner.clone(), ttl, data), pos: p, az: None, route: route.clone() })
            }
            Err(e) => diags.push(path, p, e),
        }
    };
    match &r.value.value {
        Values::One(s) => push(s, pos(&r.value), out, diags),
        Values::Many(list) => {
            if list.is_empty() {
                diags.push(path, pos(&r.value), "value list is empty; give at least one value");
            }
            if rtype == RecordType::CNAME && list.len() > 1 {
                diags.push(path, pos(&r.value), "a name has at most one CNAME (RFC 2181 §10.1); give one target");
                return;
            }
            for v in list {
                push(v.value, pos(v), out, diags);
            }
        }
    }
}

/// A record's `weight`, `answers`, `failover` and `health` (SPEC §10).
/// Health checks address the record's own address, so they go on A and
/// AAAA records only; a CNAME, SOA or NS set is never routed.
fn read_route(r: &super::schema::RecordEntry<'_>, rtype: RecordType, path: &Path, diags: &mut Diagnostics) -> Option<Box<RouteDef>> {
    if r.weight.is_none() && r.answers.is_none() && r.failover.is_none() && r.health.is_none() {
        return None;
    }
    let mut route = RouteDef::default();
    let first = [r.weight.as_ref().map(pos), r.answers.as_ref().map(pos), r.failover.as_ref().map(pos), r.health.as_ref().map(pos)];
    if matches!(rtype, RecordType::CNAME | RecordType::SOA | RecordType::NS) {
        let at = first.into_iter().flatten().next().unwrap_or(Pos::UNKNOWN);
        diags.push(
            path,
            at,
            format!("a {rtype} record cannot be weighted, fail over or be health-checked; remove weight/answers/failover/health"),
        );
        return None;
    }
    if let Some(w) = &r.weight {
        match u32::try_from(w.value) {
            Ok(v) if v <= MAX_WEIGHT => route.weight = Some(v),
            _ => diags.push(path, pos(w), format!("weight {} must be from 0 to {MAX_WEIGHT}", w.value)),
        }
    }
    if let Some(a) = &r.answers {
        match u8::try_from(a.value) {
            Ok(v) if (1..=MAX_ANSWERS).contains(&v) => route.answers = Some(v),
            _ => diags.push(path, pos(a), format!("answers {} must be from 1 to {MAX_ANSWERS}", a.value)),
        }
        if r.weight.is_none() {
            diags.push(path, pos(a), "answers applies to weighted records; give the records a `weight` too");
        }
    }
    if let Some(f) = &r.failover {
        match f.value.trim() {
            "primary" => route.failover = Some(Failover::Primary),
            "secondary" => route.failover = Some(Failover::Secondary),
            other => diags.push(path, pos(f), format!("failover `{other}` must be `primary` or `secondary`")),
        }
    }
    if let Some(h) = &r.health {
        if !matches!(rtype, RecordType::A | RecordType::AAAA) {
            diags.push(path, pos(h), format!("health checks go on A and AAAA records (they check the record's address), not on {rtype}"));
        } else {
            match parse_check(h.value) {
                Ok(c) => route.health = Some(c),
                Err(e) => diags.push(path, pos(h), e),
            }
        }
    }
    Some(Box::new(route))
}

/// Leading or trailing white space in a name, id or value: a problem, as
/// white space inside one is (trimming it silently would make `" www"`
/// and `"www"` the same while `"w ww"` is an error).
fn spaces_around(field: &str, text: &str, path: &Path, at: Pos, diags: &mut Diagnostics) -> bool {
    let t = text.trim();
    if t.len() == text.len() {
        return false;
    }
    let side = match (text.starts_with(t), text.ends_with(t)) {
        (false, false) => "start and end",
        (false, true) => "start",
        _ => "end",
    };
    diags.push(path, at, format!("{field} `{text}` has white space at its {side}; remove it: `{t}`"));
    true
}

/// A relative record name that ends with the zone's own name, as a full
/// name written without its final dot (`www.w.test` in zone `w.test` is
/// `www.w.test.w.test.`): almost always a mistake, so a problem; a name
/// that really repeats the zone's is written absolute.
fn origin_repeated(t: &str, origin: &Name) -> Option<String> {
    if t.ends_with('.') || t == "@" || origin.is_root() {
        return None;
    }
    // Compare label by label, from the right, ASCII case-insensitively.
    let n = origin.num_labels() as usize;
    let labels: Vec<&str> = t.split('.').collect();
    if labels.len() < n || !labels[labels.len() - n..].iter().zip(origin.iter()).all(|(a, b)| a.as_bytes().eq_ignore_ascii_case(b)) {
        return None;
    }
    let apex = origin.to_ascii();
    let relative = match labels.len() - n {
        0 => "@".to_string(),
        k => labels[..k].join("."),
    };
    Some(format!(
        "name `{t}` ends with the zone's own name, so it means `{t}.{apex}`; did you mean `{t}.` (absolute) or `{relative}`? (to mean `{t}.{apex}`, write it so, absolute)"
    ))
}

/// A name in a record value that is an IP address (`CNAME 10.0.0.1`,
/// `MX 10 10.0.0.25`): it would be served, and followed, as a name.
fn address_as_name(data: &RData) -> Option<String> {
    let (what, name, fix) = match data {
        RData::CNAME(c) => ("a CNAME target", &c.0, ""),
        RData::MX(m) => ("an MX exchange", &m.exchange, "give the mail server's name, with an A record for that name"),
        RData::SRV(s) => ("an SRV target", &s.target, "give the server's name, with an A record for that name"),
        RData::PTR(p) => ("a PTR target", &p.0, "give the host name the address belongs to"),
        RData::NS(n) => ("an NS target", &n.0, "give the name server's name, with an A record for that name"),
        _ => return None,
    };
    // Only names that could be addresses are spelled out: the first label
    // of every address is digits (IPv4) or holds a `:` (IPv6).
    let first = name.iter().next()?;
    if !(first.iter().all(u8::is_ascii_digit) || first.contains(&b':')) {
        return None;
    }
    // The labels as written (`to_ascii` would escape an IPv6 address's `:`).
    let labels: Vec<&str> = name.iter().map(std::str::from_utf8).collect::<Result<_, _>>().ok()?;
    let bare = labels.join(".");
    let ip = bare.parse::<std::net::IpAddr>().ok()?;
    let a = if ip.is_ipv4() { "A" } else { "AAAA" };
    let fix = if fix.is_empty() { format!("did you mean an {a} record (`type: {a}, value: {bare}`)?") } else { fix.to_string() };
    Some(format!("{what} is a name; `{bare}` is an address: {fix}"))
}

/// A record's `name`: `@` is the apex, a name ending in `.` is absolute and
/// must lie inside the zone, anything else is relative to the zone.
fn owner_name(name: &str, origin: &Name) -> Result<Name, String> {
    let t = name.trim();
    if t == "@" {
        return Ok(origin.clone());
    }
    if let Some(n) = plain_relative_name(t, origin) {
        return Ok(n);
    }
    let full = rdata::parse_relative_name(t, origin)?.to_lowercase();
    if !origin.zone_of(&full) {
        return Err(format!("`{t}` is outside zone `{origin}`; use a relative name or one ending in .{origin}"));
    }
    Ok(full)
}

/// What the lines after it in [`owner_name`] make of a relative name of
/// plain labels (see [`presentation::plain_name`]), built without their
/// allocations: its labels lowercased, then the origin's (lowercase
/// already). `None` for any other name, absolute ones included: the
/// general reader reads it, and reports what is wrong.
fn plain_relative_name(t: &str, origin: &Name) -> Option<Name> {
    if t.ends_with('.') {
        return None;
    }
    presentation::plain_name(t, Some(origin), true)
}

/// Template placeholders allowed in endpoint names.
const PLACEHOLDERS: &[&str] = &["{endpoint}", "{service}", "{region}", "{zone}"];

fn check_template(t: &Spanned<String>, zonal: bool, path: &Path, diags: &mut Diagnostics) -> bool {
    let mut rest = t.value.as_str();
    let mut ok = true;
    while let Some(i) = rest.find('{') {
        let end = rest[i..].find('}').map(|j| i + j + 1);
        let Some(end) = end else {
            diags.push(path, pos(t), "template has a `{` without `}`");
            return false;
        };
        let ph = &rest[i..end];
        if !PLACEHOLDERS.contains(&ph) {
            diags.push(path, pos(t), format!("unknown placeholder `{ph}`; use {{endpoint}}, {{service}}, {{region}} or {{zone}}"));
            ok = false;
        }
        rest = &rest[end..];
    }
    let has_zone = t.value.contains("{zone}");
    if zonal && !has_zone {
        diags.push(path, pos(t), "the zonal template must contain {zone}, or every zone would get the same name");
        ok = false;
    }
    if !zonal && has_zone {
        diags.push(path, pos(t), "the endpoint template cannot use {zone}: the endpoint domain covers every zone");
        ok = false;
    }
    ok
}

fn render(template: &str, ep: &str, service: &str, region: &str, zone: &str) -> String {
    template.replace("{endpoint}", ep).replace("{service}", service).replace("{region}", region).replace("{zone}", zone)
}

fn check_status(s: &Option<Spanned<String>>, path: &Path, diags: &mut Diagnostics) -> Option<bool> {
    match s {
        None => Some(true),
        Some(s) => match STATUSES.iter().find(|k| k.eq_ignore_ascii_case(s.value.trim())) {
            Some(k) => Some(*k == "Connected"),
            None => {
                diags.push(path, pos(s), format!("unknown status `{}`; use one of {}", s.value, STATUSES.join(", ")));
                None
            }
        },
    }
}

/// Reads `endpoints.yaml` and generates, for each Connected endpoint, one
/// zone per published name (endpoint domain, zonal domains, private DNS
/// names), each holding A/AAAA at its apex (docs/REFERENCE.md#endpoints).
fn load_endpoints(path: &Path, known: &HashSet<String>, access: &FileAccess, data: &mut ZonesData, diags: &mut Diagnostics) {
    let Some(text) = access.read_text(path, diags) else {
        return;
    };
    let Some(file) = yaml::parse_tree(path, &text, diags).and_then(|n| EndpointsFile::read(&n, path, diags)) else {
        return;
    };
    let dir = zones_dir_of(path);
    data.endpoints = file.endpoints.len();
    let ttl = file.ttl.as_ref().and_then(|t| check_ttl(t, path, diags)).unwrap_or(DEFAULT_TTL);
    let (mut ep_t, mut zonal_t) = (DEFAULT_ENDPOINT_TEMPLATE.to_string(), DEFAULT_ZONAL_TEMPLATE.to_string());
    if let Some(names) = &file.names {
        if let Some(t) = &names.endpoint
            && check_template(t, false, path, diags)
        {
            ep_t = t.value.clone();
        }
        if let Some(t) = &names.zonal
            && check_template(t, true, path, diags)
        {
            zonal_t = t.value.clone();
        }
    }
    let mut ids = HashSet::new();
    for ep in &file.endpoints {
        for (field, v) in [("endpoint id", &ep.id), ("service", &ep.service), ("region", &ep.region)] {
            spaces_around(field, &v.value, path, pos(v), diags);
        }
        let id = ep.id.value.trim();
        if id.is_empty() {
            diags.push(path, pos(&ep.id), "endpoint id is empty");
            continue;
        }
        if !ids.insert(id.to_string()) {
            diags.push(path, pos(&ep.id), format!("endpoint `{id}` is listed twice"));
            continue;
        }
        for (field, v) in [("service", &ep.service), ("region", &ep.region)] {
            if v.value.trim().is_empty() {
                diags.push(path, pos(v), format!("endpoint `{id}`: {field} is empty"));
            }
        }
        let mut vpcs = check_vpc_list(std::slice::from_ref(&ep.vpc), known, path, &dir, diags);
        for v in check_vpc_list(&ep.visible_to, known, path, &dir, diags) {
            if !vpcs.iter().any(|x| x.value == v.value) {
                vpcs.push(v);
            }
        }
        let connected = check_status(&ep.status, path, diags);
        if ep.zones.value.is_empty() {
            diags.push(path, pos(&ep.zones), format!("endpoint `{id}` has no zones; list each zone with its ip"));
        }
        let mut zones: Vec<EndpointZone> = Vec::new();
        for z in &ep.zones.value {
            for (field, v) in [("zone", Some(&z.zone)), ("ip", z.ip.as_ref()), ("ipv6", z.ipv6.as_ref())] {
                if let Some(v) = v {
                    spaces_around(field, &v.value, path, pos(v), diags);
                }
            }
            let zid = z.zone.value.trim().to_string();
            if zid.is_empty() || !zid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                diags.push(
                    path,
                    pos(&z.zone),
                    format!("endpoint zone `{}` must be a zone id like cn-hangzhou-b (letters, digits, `-`)", z.zone.value),
                );
                continue;
            }
            if zones.iter().any(|(n, ..)| *n == zid) {
                diags.push(path, pos(&z.zone), format!("zone `{zid}` is listed twice for endpoint `{id}`"));
                continue;
            }
            let ip = z.ip.as_ref().and_then(|s| match s.value.trim().parse::<Ipv4Addr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    diags.push(path, pos(s), format!("ip `{}` is not an IPv4 address", s.value));
                    None
                }
            });
            let ip6 = z.ipv6.as_ref().and_then(|s| match s.value.trim().parse::<Ipv6Addr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    diags.push(path, pos(s), format!("ipv6 `{}` is not an IPv6 address", s.value));
                    None
                }
            });
            if z.ip.is_none() && z.ipv6.is_none() {
                diags.push(path, pos(&z.zone), format!("zone `{zid}` of endpoint `{id}` has neither ip nor ipv6"));
            }
            let zc = check_status(&z.status, path, diags).unwrap_or(false);
            let check = z.health.as_ref().and_then(|h| match parse_check(&h.value) {
                Ok(c) => Some(c),
                Err(e) => {
                    diags.push(path, pos(h), e);
                    None
                }
            });
            let weight = z.weight.as_ref().and_then(|w| match u32::try_from(w.value) {
                Ok(v) if v <= MAX_WEIGHT => Some(v),
                _ => {
                    diags.push(path, pos(w), format!("weight {} must be from 0 to {MAX_WEIGHT}", w.value));
                    None
                }
            });
            let route = (check.is_some() || weight.is_some()).then(|| RouteDef { health: check, weight, ..RouteDef::default() });
            zones.push((zid, ip, ip6, zc, route));
        }
        let mut private_names = Vec::new();
        for n in &ep.private_dns_names {
            spaces_around("private_dns_names", &n.value, path, pos(n), diags);
            match rdata::parse_absolute_name(&n.value) {
                Ok(name) => private_names.push((name.to_lowercase(), pos(n))),
                Err(e) => diags.push(path, pos(n), format!("private_dns_names: {e}")),
            }
        }
        if connected != Some(true) {
            continue;
        }
        let spec = EndpointSpec {
            id,
            service: ep.service.value.trim(),
            region: ep.region.value.trim(),
            templates: (&ep_t, &zonal_t),
            zones: &zones,
            private_names: &private_names,
            ttl,
            vpcs: &vpcs,
            path,
            at: pos(&ep.id),
        };
        generate_endpoint_names(&spec, data, diags);
    }
}

/// One zone of an endpoint: (zone id, IPv4, IPv6, Connected, weight and health check).
type EndpointZone = (String, Option<Ipv4Addr>, Option<Ipv6Addr>, bool, Option<RouteDef>);

/// A Connected endpoint, checked, as the names it generates need it.
struct EndpointSpec<'a> {
    id: &'a str,
    service: &'a str,
    region: &'a str,
    /// The `names.endpoint` and `names.zonal` templates.
    templates: (&'a str, &'a str),
    zones: &'a [EndpointZone],
    /// Each with the position of its `private_dns_names` entry.
    private_names: &'a [(Name, Pos)],
    ttl: u32,
    vpcs: &'a [Located<String>],
    path: &'a Path,
    at: Pos,
}

/// PrivateLink endpoint name generation: the endpoint domain with the
/// addresses of every Connected zone, each zonal domain with its zone's,
/// each private DNS name with every Connected zone's; A from `ip`, AAAA
/// from `ipv6`. Each name becomes a zone of its own, visible to the
/// endpoint's VPC and `visible_to`.
fn generate_endpoint_names(ep: &EndpointSpec<'_>, data: &mut ZonesData, diags: &mut Diagnostics) {
    let mut make = |name_text: String, zone_filter: Option<&str>, at: Pos| {
        let name = match rdata::parse_absolute_name(&name_text) {
            Ok(n) => n.to_lowercase(),
            Err(e) => {
                diags.push(ep.path, ep.at, format!("endpoint `{}` generates an invalid name: {e}", ep.id));
                return;
            }
        };
        let mut records = Vec::new();
        for (zid, ip, ip6, connected, route) in ep.zones {
            if !connected || zone_filter.is_some_and(|f| f != zid) {
                continue;
            }
            // A zonal name is that zone's own name: it answers its address
            // whatever the check says. The names of every zone drop a zone
            // that fails its check.
            let route = route.as_ref().filter(|_| zone_filter.is_none()).map(|r| Box::new(r.clone()));
            if let Some(ip) = ip {
                records.push(RecordDef {
                    record: Record::from_rdata(name.clone(), ep.ttl, RData::A((*ip).into())),
                    pos: ep.at,
                    az: Some(zid.clone()),
                    route: route.clone(),
                });
            }
            if let Some(ip6) = ip6 {
                records.push(RecordDef {
                    record: Record::from_rdata(name.clone(), ep.ttl, RData::AAAA((*ip6).into())),
                    pos: ep.at,
                    az: Some(zid.clone()),
                    route: route.clone(),
                });
            }
        }
        if records.is_empty() {
            return;
        }
        data.zones.push(ZoneDef {
            origin: name,
            kind: ZoneOrigin::Endpoint(ep.id.to_string()),
            path: ep.path.to_path_buf(),
            pos: at,
            vpcs: ep.vpcs.to_vec(),
            recursive_proxy: false,
            ttl: ep.ttl,
            records_path: ep.path.to_path_buf(),
            records,
        });
    };
    let (ep_t, zonal_t) = ep.templates;
    make(render(ep_t, ep.id, ep.service, ep.region, ""), None, ep.at);
    for (zid, ..) in ep.zones {
        make(render(zonal_t, ep.id, ep.service, ep.region, zid), Some(zid), ep.at);
    }
    for (n, at) in ep.private_names {
        make(n.to_string(), None, *at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`owner_name`] as it is without [`plain_relative_name`].
    fn general_owner(t: &str, origin: &Name) -> Result<Name, String> {
        let full = rdata::parse_relative_name(t, origin)?.to_lowercase();
        if !origin.zone_of(&full) {
            return Err("outside".into());
        }
        Ok(full)
    }

    fn same_owner(t: &str, origin: &Name) {
        if let Some(n) = plain_relative_name(t, origin) {
            let g = general_owner(t, origin).unwrap_or_else(|e| panic!("{t}: the shortcut read what the reader refuses: {e}"));
            assert_eq!((n.to_ascii(), n.is_fqdn(), n.num_labels()), (g.to_ascii(), g.is_fqdn(), g.num_labels()), "{t}");
            assert_eq!(n.iter().collect::<Vec<_>>(), g.iter().collect::<Vec<_>>(), "{t}");
        }
    }

    #[test]
    fn plain_owner_names_as_the_general_reader() {
        let origin = Name::from_ascii("zone-0.Scale.internal.").unwrap().to_lowercase();
        let l63 = "a".repeat(63);
        let near = |n: usize| vec!["b".repeat(40); n].join(".");
        for t in ["h0", "H0.Sub", "*.w2", "_sip._tcp", "a-b", "*", &l63, &format!("{l63}.x"), &near(5)] {
            assert!(plain_relative_name(t, &origin).is_some(), "{t}");
            same_owner(t, &origin);
        }
        for t in ["", ".", "a.", ".a", "a..b", "a b", "a\\.b", "é", "@", &"a".repeat(64), &near(6)] {
            assert!(plain_relative_name(t, &origin).is_none(), "{t}");
        }
        // At the 255-byte limit, both ways.
        for n in 180..220 {
            same_owner(
                &"c".repeat(n).as_bytes().chunks(60).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("."),
                &origin,
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn plain_owner_names_random(t in "[a-zA-Z0-9*_.-]{0,70}") {
            let origin = Name::from_ascii("z.test.").unwrap();
            same_owner(&t, &origin);
        }
    }

    /// A directory is entered once: links back up the tree, or to a
    /// directory read already, are problems named by their paths, and
    /// each file is listed once.
    #[test]
    fn a_directory_is_entered_once() {
        let d = std::env::temp_dir().join(format!("pzdns-loop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("loop")).unwrap();
        std::fs::create_dir_all(d.join("real")).unwrap();
        std::fs::write(d.join("a.yaml"), "").unwrap();
        std::fs::write(d.join("real/b.yaml"), "").unwrap();
        std::os::unix::fs::symlink("..", d.join("loop/up")).unwrap();
        std::os::unix::fs::symlink("../loop", d.join("loop/self")).unwrap();
        std::os::unix::fs::symlink("real", d.join("twin")).unwrap();
        let mut diags = Diagnostics::new();
        let mut walk = Walk { limit: 100, files: Vec::new(), entered: HashMap::new(), listed: Vec::new(), diags: &mut diags };
        assert!(walk.enter(&d, 0));
        let files = walk.files;
        assert_eq!(files, [d.join("a.yaml"), d.join("real/b.yaml")], "each file once");
        let problems: Vec<String> = diags.items().iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems.iter().any(|p| p.starts_with(&format!(
                "{}: links back to {},",
                d.join("loop/self").display(),
                d.join("loop").display()
            ))),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with(&format!("{}: links back to {},", d.join("loop/up").display(), d.display()))),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with(&format!(
                "{}: is the directory {} again",
                d.join("twin").display(),
                d.join("real").display()
            ))),
            "{problems:?}"
        );
        std::fs::remove_dir_all(&d).ok();
    }

    /// What a load listed is compared with the directory afterwards: a
    /// rename (even one back and forth, which leaves the names as they
    /// were but the directory's stamp moved) is seen.
    #[test]
    fn a_listing_that_changed_is_seen() {
        let d = std::env::temp_dir().join(format!("pzdns-listing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("secret.b.yaml"), "").unwrap();
        let listing = || {
            let mut diags = Diagnostics::new();
            let mut walk = Walk { limit: 100, files: Vec::new(), entered: HashMap::new(), listed: Vec::new(), diags: &mut diags };
            walk.enter(&d, 0);
            walk.listed
        };
        let listed = listing();
        assert_eq!(changed_since(&listed), None);
        std::fs::rename(d.join("secret.b.yaml"), d.join("secret.b.yml")).unwrap();
        let what = changed_since(&listed).expect("renamed");
        assert!(what.contains("gone: `secret.b.yaml`; new: `secret.b.yml`"), "{what}");
        let listed = listing();
        // Back and forth: the same names, but not the same directory.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::rename(d.join("secret.b.yml"), d.join("x.yml")).unwrap();
        std::fs::rename(d.join("x.yml"), d.join("secret.b.yml")).unwrap();
        assert!(changed_since(&listed).is_some_and(|w| w.contains("was modified")));
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn file_limit_at_under_and_over() {
        let d = std::env::temp_dir().join(format!("pzdns-limit-{}", std::process::id()));
        for (n, ok) in [(4, true), (5, true), (6, false)] {
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(d.join("sub")).unwrap();
            for i in 0..n {
                let at = if i % 2 == 0 { d.join(format!("f{i}.yaml")) } else { d.join("sub").join(format!("f{i}.yaml")) };
                std::fs::write(at, "").unwrap();
            }
            let mut diags = Diagnostics::new();
            let mut walk = Walk { limit: 5, files: Vec::new(), entered: HashMap::new(), listed: Vec::new(), diags: &mut diags };
            assert_eq!(walk.enter(&d, 0), ok, "{n} files");
            let files = walk.files;
            if ok {
                assert!(diags.is_empty() && files.len() == n, "{n}: {diags}");
            } else {
                assert_eq!(diags.len(), 1, "reported once: {diags}");
                assert!(diags.items()[0].message.starts_with("more than 5 YAML files"), "{diags}");
            }
        }
        std::fs::remove_dir_all(&d).ok();
    }
}
