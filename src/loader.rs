//! Files → a checked snapshot: reads the zones directory (`config`),
//! builds the indexes (`snapshot`), then runs the checks that need the
//! answering rules themselves (`resolve`): every CNAME chain is followed
//! in the view of every VPC that sees it. It sits above both, so that
//! `snapshot` never calls up into `resolve`.

use hickory_proto::rr::RecordType;

use crate::config::zones_dir::{self, Previous, ZonesData};
use crate::config::{Diagnostics, ServerConfig};
use crate::resolve::resolve;
use crate::snapshot::zone::NO_AZ;
use crate::snapshot::{CnameSite, Snapshot, View};

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
}

impl Incremental {
    /// As [`Incremental::default`], trusting stamps however recent (tests
    /// that set distinct modification times themselves).
    pub fn trusting_recent_stamps() -> Self {
        Incremental { read: Previous::default(), racy_window: Some(std::time::Duration::ZERO) }
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
/// an unchanged zone keeps the serial of its synthesised SOA. Every check
/// across zones (duplicate zones per VPC, CNAME chains) runs over all of
/// them again. `inc` is updated only when the load succeeds.
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
    let snap = with_read_problems(build_reusing(cfg, data, generation, prev), diags)?;
    inc.read = read;
    Ok((snap, reuse))
}

/// Builds a snapshot from data already read, and checks its CNAME chains.
pub fn build(cfg: &ServerConfig, data: ZonesData, generation: u64) -> Result<Snapshot, Diagnostics> {
    build_reusing(cfg, data, generation, None)
}

/// As [`build`], taking the zones of `data.reused` from `prev`.
fn build_reusing(cfg: &ServerConfig, data: ZonesData, generation: u64, prev: Option<&Snapshot>) -> Result<Snapshot, Diagnostics> {
    let (snap, cnames, mut diags) = Snapshot::build_reusing(cfg, data, generation, prev);
    check_cname_chains(&snap, &cnames, &mut diags);
    if diags.is_empty() {
        Ok(snap)
    } else {
        diags.sort();
        Err(diags)
    }
}

/// Follows every CNAME in the view of every VPC that sees its zone: a loop
/// or a chain over the limit would SERVFAIL at query time, so it is an
/// error now.
fn check_cname_chains(snap: &Snapshot, cnames: &[CnameSite], diags: &mut Diagnostics) {
    for (zi, owner, path, pos) in cnames {
        if owner.is_wildcard() {
            continue;
        }
        let zone = &snap.zones[*zi as usize];
        for vpc in &zone.vpcs {
            let view = View::Vpc { vpc: *vpc, az: NO_AZ };
            let r = resolve(snap, view, owner, RecordType::A, true);
            if let Some(problem) = r.chain_problem() {
                diags.push(path, *pos, format!("{problem} in the view of VPC `{}`", snap.vpcs[*vpc as usize].id));
                break;
            }
        }
    }
}
