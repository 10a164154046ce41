//! Files → a checked snapshot: reads the zones directory (`config`),
//! builds the indexes (`snapshot`), then runs the checks that need the
//! answering rules themselves (`resolve`): every CNAME chain is followed
//! in the view of every VPC that sees it. It sits above both, so that
//! `snapshot` never calls up into `resolve`.

use std::sync::{Arc, Weak};

use hickory_proto::rr::RecordType;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::config::zones_dir::{self, Previous, ZonesData};
use crate::config::{Diagnostics, ServerConfig};
use crate::dns::names::KeyBuf;
use crate::resolve::{End, resolve, walk};
use crate::snapshot::zone::{NO_AZ, Zone};
use crate::snapshot::{CnameSite, Snapshot, View, ZoneLayout};

/// Loads `cfg.zones_dir` and builds a snapshot, or reports every problem.
pub fn load(cfg: &ServerConfig, generation: u64) -> Result<Snapshot, Diagnostics> {
    let t0 = std::time::Instant::now();
    let (data, diags) = zones_dir::load(cfg);
    let t1 = t0.elapsed();
    let built = build(cfg, data, generation);
    if std::env::var_os("PZDNS_TIMING").is_some() {
        eprintln!("timing: read+parse {:?}, build {:?}", t1, t0.elapsed() - t1);
    }
    with_read_problems(built, diags)
}

/// A built snapshot, unless reading the files found problems: then those
/// and the build's, together, sorted.
fn with_read_problems(built: Result<Snapshot, Diagnostics>, mut diags: Diagnostics) -> Result<Snapshot, Diagnostics> {
    match built {
        Ok(s) if diags.is_empty() => Ok(s),
        Ok(_) => {
            diags.sort();
            Err(diags)
        }
        Err(more) => {
            diags.extend(more);
            diags.sort();
            Err(diags)
        }
    }
}

/// What a reload keeps from one load to the next: what the last successful
/// load read, so that the next reads again only the zone files that
/// changed and takes the other zones from the snapshot in force.
#[derive(Debug, Default)]
pub struct Incremental {
    read: Previous,
    racy_window: Option<std::time::Duration>,
    chains: ChainMemo,
}

impl Incremental {
    /// As [`Incremental::default`], trusting stamps however recent (tests
    /// that set distinct modification times themselves).
    pub fn trusting_recent_stamps() -> Self {
        Incremental { racy_window: Some(std::time::Duration::ZERO), ..Incremental::default() }
    }
}

/// How much of a load was done again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reuse {
    /// Zone files read and built again.
    pub read: usize,
    /// Zone files whose zones were taken from the previous snapshot.
    pub reused: usize,
}

/// Loads as [`load`] does, reading and building again only the zone files
/// that changed since `prev` was loaded (with `inc`): every other zone is
/// the previous snapshot's, shared. The result is what [`load`] gives for
/// the same files (`tests/it/incremental.rs` compares them), except that
/// an unchanged zone keeps the serial of its synthesised SOA. The duplicate
/// check runs over all zones again; a CNAME chain is followed again unless
/// it went only through zones shared with `prev` (see
/// [`check_cname_chains`]). `inc` is updated only when the load succeeds.
pub fn load_incremental(
    cfg: &ServerConfig,
    generation: u64,
    prev: Option<&Snapshot>,
    inc: &mut Incremental,
) -> Result<(Snapshot, Reuse), Diagnostics> {
    let window = inc.racy_window.unwrap_or(crate::config::files::RACY_WINDOW);
    let (mut data, diags) = zones_dir::load_reusing(cfg, prev.map(|_| &inc.read), window);
    let read = std::mem::take(&mut data.read);
    let reuse =
        Reuse { read: data.zones.iter().filter(|z| matches!(z.kind, zones_dir::ZoneOrigin::File)).count(), reused: data.reused.len() };
    let memo = prev.map(|p| (p, &inc.chains));
    let (built, chains) = build_and_check(cfg, data, generation, memo);
    let snap = with_read_problems(built, diags)?;
    inc.read = read;
    inc.chains = chains;
    Ok((snap, reuse))
}

/// Builds a snapshot from data already read, and checks its CNAME chains.
pub fn build(cfg: &ServerConfig, data: ZonesData, generation: u64) -> Result<Snapshot, Diagnostics> {
    build_and_check(cfg, data, generation, None).0
}

/// As [`build`], taking the zones of `data.reused` from `prev`, whose
/// chains were checked as `memo` says: [`Snapshot::build_reusing`], then
/// [`check_cname_chains`].
fn build_and_check(
    cfg: &ServerConfig,
    data: ZonesData,
    generation: u64,
    prev: Option<(&Snapshot, &ChainMemo)>,
) -> (Result<Snapshot, Diagnostics>, ChainMemo) {
    let (snap, cnames, mut diags) = Snapshot::build_reusing(cfg, data, generation, prev.map(|p| p.0));
    let memo = check_cname_chains(&snap, &cnames, prev.map(|p| p.1), &mut diags);
    if diags.is_empty() {
        (Ok(snap), memo)
    } else {
        diags.sort();
        (Err(diags), ChainMemo::default())
    }
}

/// What the CNAME checks of a load saw, so that the next load follows
/// again only the chains that may have changed.
#[derive(Debug, Default)]
struct ChainMemo {
    /// How the snapshot the checks ran on chose zones, and whether a
    /// response policy applied there (the walks follow policies too).
    layout: ZoneLayout,
    policy: bool,
    /// Every zone of that snapshot, weakly: an address recorded below stays
    /// that zone's (never another zone's) while the memo lives.
    _held: Vec<Weak<Zone>>,
    /// Per zone (by address): per CNAME owner, in the zone's order, the
    /// zones its walks went through, in the view of every VPC that sees it.
    visited: FxHashMap<usize, Vec<Box<[usize]>>>,
}

fn zone_addr(z: &Arc<Zone>) -> usize {
    Arc::as_ptr(z) as usize
}

/// Follows every CNAME in the view of every VPC that sees its zone: a loop
/// or a chain over the limit would SERVFAIL at query time, so it is an
/// error now. A chain whose walks (in the snapshot `memo` was made on) went
/// only through zones this snapshot shares, with zones chosen the same way
/// and no policy in either, is as it was, and is not followed again.
fn check_cname_chains(snap: &Snapshot, cnames: &[CnameSite], memo: Option<&ChainMemo>, diags: &mut Diagnostics) -> ChainMemo {
    let policy = !snap.policy.rules.is_empty();
    let memo = memo.filter(|m| !m.policy && !policy && snap.has_zone_layout(&m.layout));
    let current: FxHashSet<usize> = snap.zones.iter().map(zone_addr).collect();
    let mut out = ChainMemo {
        layout: snap.zone_layout(),
        policy,
        _held: snap.zones.iter().map(Arc::downgrade).collect(),
        visited: FxHashMap::default(),
    };
    let mut site = 0;
    for (i, (zi, owner, path, pos)) in cnames.iter().enumerate() {
        // Sites come zone by zone, in each zone's order.
        site = if i > 0 && cnames[i - 1].0 == *zi { site + 1 } else { 0 };
        let zone = &snap.zones[*zi as usize];
        let sites = out.visited.entry(zone_addr(zone)).or_default();
        let before = memo.and_then(|m| m.visited.get(&zone_addr(zone))).and_then(|v| v.get(site));
        if let Some(v) = before.filter(|v| v.iter().all(|a| current.contains(a))) {
            sites.push(v.clone());
            continue;
        }
        let mut went: Vec<usize> = Vec::new();
        if !owner.is_wildcard() {
            let key = KeyBuf::new(owner);
            for vpc in &zone.vpcs {
                let view = View::Vpc { vpc: *vpc, az: NO_AZ };
                // The walk alone (no allocation); the words only for a problem.
                let w = walk(snap, view, &key, RecordType::A);
                went.extend(w.links().iter().filter_map(|l| l.zone).map(|z| zone_addr(&snap.zones[z as usize])));
                if !matches!(w.end, End::Loop | End::TooLong) {
                    continue;
                }
                if let Some(problem) = resolve(snap, view, owner, RecordType::A, true).chain_problem() {
                    diags.push(path, *pos, format!("{problem} in the view of VPC `{}`", snap.vpcs[*vpc as usize].id));
                    break;
                }
            }
        }
        went.sort_unstable();
        went.dedup();
        sites.push(went.into_boxed_slice());
    }
    out
}
