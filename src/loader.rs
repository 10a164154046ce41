//! Files → a checked snapshot: reads the zones directory (`config`),
//! builds the indexes (`snapshot`), then runs the checks that need the
//! answering rules themselves (`resolve`): every CNAME chain is followed
//! in the view of every VPC that sees it. It sits above both, so that
//! `snapshot` never calls up into `resolve`.

use hickory_proto::rr::RecordType;

use crate::config::zones_dir::{self, ZonesData};
use crate::config::{Diagnostics, ServerConfig};
use crate::resolve::resolve;
use crate::snapshot::zone::NO_AZ;
use crate::snapshot::{CnameSite, Snapshot, View};

/// Loads `cfg.zones_dir` and builds a snapshot, or reports every problem.
pub fn load(cfg: &ServerConfig, generation: u64) -> Result<Snapshot, Diagnostics> {
    let t0 = std::time::Instant::now();
    let (data, mut diags) = zones_dir::load(cfg);
    let t1 = t0.elapsed();
    let built = build(cfg, data, generation);
    if std::env::var_os("PZDNS_TIMING").is_some() {
        eprintln!("timing: read+parse {:?}, build {:?}", t1, t0.elapsed() - t1);
    }
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

/// Builds a snapshot from data already read, and checks its CNAME chains.
pub fn build(cfg: &ServerConfig, data: ZonesData, generation: u64) -> Result<Snapshot, Diagnostics> {
    let (snap, cnames, mut diags) = Snapshot::build(cfg, data, generation);
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
