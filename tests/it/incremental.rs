//! An incremental reload gives exactly what a full load of the same tree
//! gives. Random sequences of edits, new files, deletions, renames, master
//! file includes and `vpcs.yaml` changes (duplicate zones and CNAME loops
//! among them) are loaded both ways after every step; both must accept or
//! reject alike (with the same problems), and answer every name of every
//! zone, of every type, in every VPC's view alike.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use hickory_proto::rr::{Name, RData, Record, RecordType};
use pzdns::config::ServerConfig;
use pzdns::loader::{Incremental, load, load_incremental};
use pzdns::resolve::{Resolution, resolve};
use pzdns::snapshot::zone::NO_AZ;
use pzdns::snapshot::{Snapshot, View};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Tree {
    dir: PathBuf,
    /// Files written so far: each gets a modification time of its own, so
    /// that no two versions of a file share a stamp however fast they come.
    writes: u64,
    zones: Vec<String>,
    vpcs: Vec<String>,
}

impl Tree {
    fn write(&mut self, rel: &str, text: &str) {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        self.writes += 1;
        let t = SystemTime::now() - Duration::from_secs(100_000) + Duration::from_secs(self.writes);
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(t).unwrap();
    }

    fn write_vpcs(&mut self) {
        let mut text = String::from("vpcs:\n");
        for (i, v) in self.vpcs.clone().iter().enumerate() {
            text.push_str(&format!("  - id: {v}\n    cidrs: [127.{}.0.0/16]\n", 50 + i));
        }
        self.write("vpcs.yaml", &text);
    }

    /// A zone file of random content: addresses, TXT, a CNAME to a name of
    /// another zone (maybe into a loop), a wildcard, bound to some VPCs.
    fn write_zone(&mut self, rng: &mut StdRng, rel: &str, zone: &str) {
        let mut vpcs: Vec<&String> = self.vpcs.iter().filter(|_| rng.random_bool(0.6)).collect();
        if vpcs.is_empty() {
            vpcs.push(&self.vpcs[0]);
        }
        let mut text = format!("zone: {zone}\nvpcs: [{}]\nrecords:\n", vpcs.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "));
        for n in ["www", "api", "db"] {
            if rng.random_bool(0.8) {
                text.push_str(&format!(
                    "  - {{ name: {n}, type: A, value: 10.{}.{}.{} }}\n",
                    rng.random_range(0..4),
                    rng.random_range(0..4),
                    rng.random_range(1..4)
                ));
            }
        }
        text.push_str(&format!("  - {{ name: \"@\", type: TXT, value: \"v{}\" }}\n", rng.random_range(0..5)));
        if rng.random_bool(0.3) {
            text.push_str("  - { name: \"*.wild\", type: A, value: 10.9.9.9 }\n");
        }
        if !self.zones.is_empty() && rng.random_bool(0.7) {
            let other = &self.zones[rng.random_range(0..self.zones.len())];
            let target = ["www", "link", "api"][rng.random_range(0..3)];
            text.push_str(&format!("  - {{ name: link, type: CNAME, value: {target}.{other} }}\n"));
        }
        self.write(rel, &text);
    }
}

/// Every name worth asking: each zone's apex and usual names, wildcard
/// matches, a missing name.
fn probes(t: &Tree) -> Vec<Name> {
    let mut out = BTreeSet::new();
    for z in &t.zones {
        for n in ["", "www.", "api.", "db.", "link.", "x.wild.", "missing."] {
            out.insert(format!("{n}{z}."));
        }
    }
    out.insert("m.test.".to_string());
    out.insert("inc.m.test.".to_string());
    out.into_iter().map(|n| Name::from_str(&n).unwrap()).collect()
}

fn record(r: &Record) -> String {
    match &r.data {
        // A zone left as it was keeps its synthesised SOA's serial.
        RData::SOA(s) => format!("{} {} SOA {} {} {}", r.name, r.ttl, s.mname, s.rname, s.minimum),
        _ => r.to_string(),
    }
}

fn render(r: &Resolution<'_>) -> String {
    let ans: Vec<String> = r.answers.iter().map(record).collect();
    let auth: Vec<String> = r.authority.iter().map(|a| record(a)).collect();
    format!(
        "{:?} aa={} src={:?} up={:?} policy={:?} ans={ans:?} auth={auth:?}",
        r.rcode, r.authoritative, r.source, r.upstream, r.policy_end
    )
}

/// The two snapshots answer every probe alike in every view.
fn same_answers(t: &Tree, inc: &Snapshot, full: &Snapshot, step: usize) {
    assert_eq!(
        (inc.stats.zones, inc.stats.records, inc.stats.vpcs, inc.stats.endpoint_names),
        (full.stats.zones, full.stats.records, full.stats.vpcs, full.stats.endpoint_names),
        "step {step}: counts"
    );
    let mut views = vec![View::Unknown];
    for v in &t.vpcs {
        let (a, b) = (inc.vpc_index(v).unwrap(), full.vpc_index(v).unwrap());
        assert_eq!(a, b, "step {step}: VPC {v} has one index");
        views.push(View::Vpc { vpc: a, az: NO_AZ });
    }
    for view in views {
        for name in probes(t) {
            for qtype in [RecordType::A, RecordType::TXT, RecordType::CNAME, RecordType::SOA, RecordType::NS] {
                let (a, b) = (render(&resolve(inc, view, &name, qtype, false)), render(&resolve(full, view, &name, qtype, false)));
                assert_eq!(a, b, "step {step}: {name} {qtype} in {view:?}: incremental vs full");
            }
        }
    }
}

fn run(seed: u64, steps: usize) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = std::env::temp_dir().join(format!("pzdns-incremental-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut t = Tree { dir: dir.clone(), writes: 0, zones: Vec::new(), vpcs: vec!["vpc-a".into(), "vpc-b".into(), "vpc-c".into()] };
    t.write_vpcs();
    for i in 0..8 {
        let z = format!("z{i}.test");
        t.write_zone(&mut rng, &format!("zones/{z}.yaml"), &z);
        t.zones.push(z);
    }
    t.write("m.yaml", "zone: m.test\nvpcs: [vpc-a]\nmaster_file: m.zone\n");
    t.write("m.zone", "$TTL 300\n@ IN A 10.1.1.1\n$INCLUDE inc.zone\n");
    t.write("inc.zone", "inc IN A 10.1.1.2\n");
    let cfg = ServerConfig { zones_dir: dir.clone(), upstreams: Vec::new(), ..ServerConfig::defaults() };

    let mut inc = Incremental::trusting_recent_stamps();
    let mut in_force: Option<Snapshot> = None;
    let (mut read, mut reused) = (0, 0);
    for step in 0..steps {
        if step > 0 {
            match rng.random_range(0..10) {
                // Edit a zone.
                0..=2 => {
                    let i = rng.random_range(0..t.zones.len());
                    let z = t.zones[i].clone();
                    if t.dir.join(format!("zones/{z}.yaml")).exists() {
                        t.write_zone(&mut rng, &format!("zones/{z}.yaml"), &z);
                    }
                }
                // A new zone.
                3 => {
                    let z = format!("n{step}.test");
                    t.write_zone(&mut rng, &format!("zones/{z}.yaml"), &z);
                    t.zones.push(z);
                }
                // A zone gone.
                4 => {
                    let z = t.zones[rng.random_range(0..t.zones.len())].clone();
                    let _ = std::fs::remove_file(t.dir.join(format!("zones/{z}.yaml")));
                }
                // Renamed (moved to another directory, same content).
                5 => {
                    let z = t.zones[rng.random_range(0..t.zones.len())].clone();
                    let from = t.dir.join(format!("zones/{z}.yaml"));
                    if from.exists() {
                        std::fs::create_dir_all(t.dir.join("moved")).unwrap();
                        std::fs::rename(&from, t.dir.join(format!("moved/{z}.yaml"))).unwrap();
                    }
                }
                // VPCs: one more, or the same in another order.
                6 => {
                    if rng.random_bool(0.5) {
                        t.vpcs.push(format!("vpc-{step}"));
                    } else {
                        t.vpcs.rotate_left(1);
                    }
                    t.write_vpcs();
                }
                // The file a master file includes.
                7 => {
                    let text = format!("inc IN A 10.1.1.{}\n", rng.random_range(2..9));
                    t.write("inc.zone", &text);
                }
                // A second zone of a name, in a VPC that may already have it.
                8 => {
                    let z = t.zones[rng.random_range(0..t.zones.len())].clone();
                    if rng.random_bool(0.5) {
                        t.write_zone(&mut rng, &format!("dup/{z}.yaml"), &z);
                    } else {
                        let _ = std::fs::remove_dir_all(t.dir.join("dup"));
                    }
                }
                // Undo the moves and duplicates now and then.
                _ => {
                    let _ = std::fs::remove_dir_all(t.dir.join("dup"));
                }
            }
        }
        let full = load(&cfg, step as u64 + 1);
        let incr = load_incremental(&cfg, step as u64 + 1, in_force.as_ref(), &mut inc);
        match (incr, full) {
            (Ok((s, r)), Ok(f)) => {
                same_answers(&t, &s, &f, step);
                read += r.read;
                reused += r.reused;
                in_force = Some(s);
            }
            (Err(a), Err(b)) => {
                let (a, b): (Vec<String>, Vec<String>) =
                    (a.items().iter().map(|d| d.to_string()).collect(), b.items().iter().map(|d| d.to_string()).collect());
                assert_eq!(a, b, "step {step}: the same problems");
            }
            (Ok(_), Err(b)) => panic!("step {step}: the incremental load accepted what a full load rejects:\n{b}"),
            (Err(a), Ok(_)) => panic!("step {step}: the incremental load rejected what a full load accepts:\n{a}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    (read, reused)
}

#[test]
fn incremental_reloads_equal_full_loads() {
    let (mut read, mut reused) = (0, 0);
    for seed in 0..6 {
        let (r, u) = run(seed, 40);
        read += r;
        reused += u;
    }
    // The incremental path was taken: most zone files were left as they were.
    assert!(reused > read, "reused {reused} zone files, read {read}");
}

#[test]
fn a_change_to_an_included_file_is_seen() {
    let dir = std::env::temp_dir().join(format!("pzdns-incremental-include-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut t = Tree { dir: dir.clone(), writes: 0, zones: Vec::new(), vpcs: vec!["vpc-a".into()] };
    t.write_vpcs();
    t.write("m.yaml", "zone: m.test\nvpcs: [vpc-a]\nmaster_file: m.zone\n");
    t.write("m.zone", "$TTL 300\n@ IN A 10.1.1.1\n$INCLUDE inc.zone\n");
    t.write("inc.zone", "inc IN A 10.1.1.2\n");
    let cfg = ServerConfig { zones_dir: dir.clone(), upstreams: Vec::new(), ..ServerConfig::defaults() };
    let mut inc = Incremental::trusting_recent_stamps();
    let (s1, _) = load_incremental(&cfg, 1, None, &mut inc).unwrap();
    let (s2, r) = load_incremental(&cfg, 2, Some(&s1), &mut inc).unwrap();
    assert_eq!((r.read, r.reused), (0, 1), "nothing changed: nothing read");
    t.write("inc.zone", "inc IN A 10.1.1.3\n");
    let (s3, r) = load_incremental(&cfg, 3, Some(&s2), &mut inc).unwrap();
    assert_eq!((r.read, r.reused), (1, 0), "the zone whose include changed is read again");
    let view = View::Vpc { vpc: 0, az: NO_AZ };
    let a = resolve(&s3, view, &Name::from_str("inc.m.test.").unwrap(), RecordType::A, false);
    assert_eq!(a.answers[0].data.to_string(), "10.1.1.3");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

/// Zone `c{i}` holds `link` as a CNAME to `link.c{i+1}`; the last one's
/// `link` is an address, or (`open`) a CNAME to a name in no zone.
fn write_chain(t: &mut Tree, n: usize, open: bool) {
    for i in 0..n {
        let link = if i + 1 < n || open {
            format!("{{ name: link, type: CNAME, value: link.c{}.test }}", i + 1)
        } else {
            "{ name: link, type: A, value: 10.7.7.7 }".to_string()
        };
        t.write(&format!("c{i}.yaml"), &format!("zone: c{i}.test\nvpcs: [vpc-a]\nrecords:\n  - {link}\n"));
    }
}

/// A fresh tree holding the longest chain (see [`write_chain`]) that a
/// full load accepts, `n` zones; returns the tree, its config and `n`.
fn longest_accepted_chain(name: &str, open: bool) -> (Tree, ServerConfig, usize) {
    let dir = std::env::temp_dir().join(format!("pzdns-incremental-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut t = Tree { dir: dir.clone(), writes: 0, zones: Vec::new(), vpcs: vec!["vpc-a".into()] };
    t.write_vpcs();
    let cfg = ServerConfig { zones_dir: dir.clone(), upstreams: Vec::new(), ..ServerConfig::defaults() };
    let mut n = 2;
    loop {
        write_chain(&mut t, n + 1, open);
        if load(&cfg, 1).is_err() {
            break;
        }
        n += 1;
        assert!(n < 40, "some chain length is refused");
    }
    for i in 0..=n + 1 {
        let _ = std::fs::remove_file(dir.join(format!("c{i}.yaml")));
    }
    write_chain(&mut t, n, open);
    (t, cfg, n)
}

/// Both loads refuse the tree, and the incremental one names c0's chain.
fn both_refuse_c0(cfg: &ServerConfig, prev: &pzdns::snapshot::Snapshot, inc: &mut Incremental, generation: u64) {
    assert!(load(cfg, generation).is_err(), "a full load rejects the chain");
    let r = load_incremental(cfg, generation, Some(prev), inc);
    let Err(problems) = r else { panic!("the incremental load rejects it too") };
    assert!(problems.to_string().contains("c0.yaml"), "the unchanged zone's chain is the one reported: {problems}");
    let _ = std::fs::remove_dir_all(&cfg.zones_dir);
}

/// The case an incremental reload is most easily wrong about: a zone left
/// as it was whose CNAME chain, through a zone that changed, is now too
/// long. Only the unchanged zone's own chain shows it.
#[test]
fn an_unchanged_zone_whose_chain_grows_too_long_is_rejected() {
    let (mut t, cfg, n) = longest_accepted_chain("chain", false);
    let mut inc = Incremental::trusting_recent_stamps();
    let (s1, _) = load_incremental(&cfg, 1, None, &mut inc).expect("the longest accepted chain loads");
    // The last zone's address becomes one more CNAME (to a new zone): only
    // c0's chain is over the limit; c0 .. c(n-2) are not touched.
    let last = n - 1;
    t.write(
        &format!("c{last}.yaml"),
        &format!("zone: c{last}.test\nvpcs: [vpc-a]\nrecords:\n  - {{ name: link, type: CNAME, value: link.c{n}.test }}\n"),
    );
    t.write(&format!("c{n}.yaml"), &format!("zone: c{n}.test\nvpcs: [vpc-a]\nrecords:\n  - {{ name: link, type: A, value: 10.7.7.8 }}\n"));
    both_refuse_c0(&cfg, &s1, &mut inc, 2);
}

/// As above, with every zone there from the start, so that the zones are
/// chosen as before and only the changed zone is built again: the chain of
/// c0, whose own zone and its file did not change, still has to be followed
/// again, because it goes through the zone that changed.
#[test]
fn a_chain_through_a_changed_zone_is_followed_again_when_no_zone_is_added() {
    let (mut t, cfg, n) = longest_accepted_chain("chain2", false);
    // c(n) beside the chain, unreached.
    t.write(&format!("c{n}.yaml"), &format!("zone: c{n}.test\nvpcs: [vpc-a]\nrecords:\n  - {{ name: link, type: A, value: 10.7.7.8 }}\n"));
    let mut inc = Incremental::trusting_recent_stamps();
    let (s1, _) = load_incremental(&cfg, 1, None, &mut inc).expect("the longest accepted chain loads");
    // A harmless change first: an unrelated zone is rebuilt, every chain stays.
    t.write(&format!("c{n}.yaml"), &format!("zone: c{n}.test\nvpcs: [vpc-a]\nrecords:\n  - {{ name: link, type: A, value: 10.7.7.9 }}\n"));
    let (s2, reuse) = load_incremental(&cfg, 2, Some(&s1), &mut inc).expect("an address change loads");
    assert_eq!(reuse.read, 1, "only the changed file is read again");
    let last = n - 1;
    t.write(
        &format!("c{last}.yaml"),
        &format!("zone: c{last}.test\nvpcs: [vpc-a]\nrecords:\n  - {{ name: link, type: CNAME, value: link.c{n}.test }}\n"),
    );
    both_refuse_c0(&cfg, &s2, &mut inc, 3);
}

/// A chain that left local data (its last target in no zone) grows when a
/// zone is added that holds that target: no zone it went through changed,
/// so only "the zones are chosen differently now" says to follow it again.
#[test]
fn a_chain_into_a_new_zone_is_followed_again() {
    let (mut t, cfg, n) = longest_accepted_chain("chain3", true);
    let mut inc = Incremental::trusting_recent_stamps();
    let (s1, _) = load_incremental(&cfg, 1, None, &mut inc).expect("the longest accepted chain loads");
    t.write(
        &format!("c{n}.yaml"),
        &format!("zone: c{n}.test\nvpcs: [vpc-a]\nrecords:\n  - {{ name: link, type: CNAME, value: link.c{}.test }}\n", n + 1),
    );
    both_refuse_c0(&cfg, &s1, &mut inc, 2);
}
