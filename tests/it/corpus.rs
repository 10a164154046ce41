//! Master files read as BIND reads them (issue 13), with BIND as the oracle.
//!
//! Every `*.zone` under tests/fixtures/corpus/ starts with `; origin NAME`.
//! For each, `named-compilezone -i none -f text -F raw -o FILE ORIGIN ZONE`
//! (bind9-utils) writes the records BIND loads in its raw format: RDATA in
//! wire form, read here without any presentation parsing. pzdns must load
//! exactly those RRsets (owner, type, TTL and the set of RDATA, compared
//! as decoded values, never as text). Where BIND rejects a file
//! (`*.bad.zone`), pzdns must reject it too, naming every line BIND names.
//! `*.strict.zone` files are those BIND loads with a warning and pzdns
//! refuses on purpose (out-of-zone data), naming the line.
//!
//! Files named `*.inc` are only `$INCLUDE`d. `.ci/run` installs bind9-utils
//! and sets PZDNS_REQUIRE_TOOLS=1, so that a missing tool fails there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};
use pzdns::config::Diagnostics;
use pzdns::config::files::FileAccess;
use pzdns::config::master_file;

const CORPUS: &str = "tests/fixtures/corpus";

/// owner (lower case), type → (TTL, RDATA set)
type RRsets = BTreeMap<(String, u16), (u32, Vec<RData>)>;

fn add(sets: &mut RRsets, owner: &Name, rtype: RecordType, ttl: u32, data: RData) {
    let e = sets.entry((owner.to_lowercase().to_string(), rtype.into())).or_insert((ttl, Vec::new()));
    // RFC 2181 §5.2: one TTL per RRset; pzdns serves the smallest given.
    e.0 = e.0.min(ttl);
    if !e.1.contains(&data) {
        e.1.push(data);
        // A set: compare in a stable order.
        e.1.sort_by_key(|d| format!("{d:?}"));
    }
}

fn have_bind() -> bool {
    if Command::new("named-compilezone").arg("-v").output().is_ok() {
        return true;
    }
    assert!(std::env::var_os("PZDNS_REQUIRE_TOOLS").is_none(), "named-compilezone is required (apt-get install bind9-utils)");
    eprintln!("skipped: named-compilezone not installed (apt-get install bind9-utils)");
    false
}

fn origin_of(text: &str, path: &Path) -> Name {
    let first = text.trim_start_matches('\u{feff}').lines().next().unwrap_or("");
    let o = first.strip_prefix("; origin ").unwrap_or_else(|| panic!("{}: first line must be `; origin NAME`", path.display()));
    Name::from_str(o.trim()).unwrap()
}

/// BIND's load: Ok(RRsets) or Err(stderr).
fn bind_load(file: &Path, origin: &Name) -> Result<RRsets, String> {
    let out_file =
        std::env::temp_dir().join(format!("pzdns-corpus-{}-{}.raw", std::process::id(), file.file_name().unwrap().to_str().unwrap()));
    let out = Command::new("named-compilezone")
        .current_dir(file.parent().unwrap())
        .args(["-i", "none", "-f", "text", "-F", "raw", "-o"])
        .arg(&out_file)
        .arg(origin.to_string())
        .arg(file.file_name().unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(stderr);
    }
    let raw = std::fs::read(&out_file).unwrap();
    let _ = std::fs::remove_file(&out_file);
    Ok(parse_raw(&raw))
}

/// BIND's raw zone format (lib/dns/master.c, load_raw): a 24-byte header
/// (format 2, version 1, dump time, flags, source serial, last transfer),
/// then per RRset: total length (u32, itself
/// included), class, type, covers (u16 each), TTL, RDATA count (u32),
/// owner (u16 length + wire name), then each RDATA (u16 length + bytes).
fn parse_raw(b: &[u8]) -> RRsets {
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    assert_eq!(u32_at(0), 2, "raw format");
    assert_eq!(u32_at(4), 1, "raw format version");
    let mut sets = RRsets::new();
    let mut i = 24;
    while i < b.len() {
        let total = u32_at(i) as usize;
        let (rtype, ttl, count) = (u16_at(i + 6), u32_at(i + 10), u32_at(i + 14));
        let name_len = u16_at(i + 18) as usize;
        let owner = Name::from_wire_bytes(&b[i + 20..i + 20 + name_len]);
        let mut k = i + 20 + name_len;
        for _ in 0..count {
            let len = u16_at(k) as usize;
            let data = &b[k + 2..k + 2 + len];
            let rt = RecordType::from(rtype);
            let rd =
                RData::read(&mut BinDecoder::new(data), rt, Restrict::new(len as u16)).unwrap_or_else(|e| panic!("BIND's {rt} RDATA: {e}"));
            add(&mut sets, &owner, rt, ttl, rd);
            k += 2 + len;
        }
        assert_eq!(k, i + total, "raw RRset length");
        i += total;
    }
    sets
}

trait FromWire {
    fn from_wire_bytes(b: &[u8]) -> Name;
}

impl FromWire for Name {
    fn from_wire_bytes(b: &[u8]) -> Name {
        use hickory_proto::serialize::binary::BinDecodable;
        Name::read(&mut BinDecoder::new(b)).unwrap()
    }
}

fn pzdns_load(file: &Path, origin: &Name) -> (RRsets, Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut d = Diagnostics::new();
    let access = FileAccess::new(file.parent().unwrap(), &[]);
    let recs = master_file::parse_text(file, &text, origin, &access, &mut d);
    let mut sets = RRsets::new();
    for r in recs {
        add(&mut sets, &r.record.name, r.record.record_type(), r.record.ttl, r.record.data);
    }
    (sets, d.items().iter().map(|x| x.to_string()).collect())
}

/// Line numbers BIND names as errors in `file` (not its warnings).
fn bind_error_lines(stderr: &str, file: &str) -> Vec<u32> {
    const WARNINGS: &[&str] = &["ignoring out-of-zone data", "using SOA MINTTL", "using RFC1035 TTL semantics", "inherited owner"];
    let mut lines = Vec::new();
    for l in stderr.lines() {
        if WARNINGS.iter().any(|w| l.contains(w)) {
            continue;
        }
        let Some(i) = l.find(&format!("{file}:")) else { continue };
        let rest = &l[i + file.len() + 1..];
        if let Some(n) = rest.split(':').next().and_then(|n| n.parse().ok()) {
            lines.push(n);
        }
    }
    lines
}

fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(CORPUS).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "zone")).collect();
    files.sort();
    files
}

fn show(sets: &RRsets) -> String {
    sets.iter().map(|((o, t), (ttl, v))| format!("  {o} {ttl} {} {:?}\n", RecordType::from(*t), v)).collect()
}

#[test]
fn corpus_loads_exactly_what_bind_loads() {
    if !have_bind() {
        return;
    }
    let files = corpus_files();
    assert!(files.len() >= 30, "the corpus has {} files; it must have at least 30", files.len());
    let (mut same, mut rejected, mut strict) = (0, 0, 0);
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(file).unwrap();
        let origin = origin_of(&text, file);
        let bind = bind_load(file, &origin);
        let (ours, problems) = pzdns_load(file, &origin);
        if name.ends_with(".bad.zone") {
            let Err(stderr) = bind else {
                failures.push(format!("{name}: BIND loads it, but it is named .bad.zone"));
                continue;
            };
            let lines = bind_error_lines(&stderr, &name);
            if lines.is_empty() {
                failures.push(format!("{name}: BIND rejects it without naming a line:\n{stderr}"));
            }
            for l in lines {
                let at = format!("{name}:{l}:");
                if !problems.iter().any(|p| p.contains(&at)) {
                    failures.push(format!("{name}: BIND names line {l}, pzdns does not:\nBIND: {stderr}\npzdns: {problems:#?}"));
                }
            }
            rejected += 1;
            continue;
        }
        let bind = match bind {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{name}: BIND rejects it:\n{e}"));
                continue;
            }
        };
        if name.ends_with(".strict.zone") {
            if problems.is_empty() {
                failures.push(format!("{name}: pzdns must refuse it (BIND only warns)"));
            }
            strict += 1;
            continue;
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: pzdns reports problems BIND does not: {problems:#?}"));
            continue;
        }
        if ours != bind {
            failures.push(format!("{name}: RRsets differ\nBIND:\n{}pzdns:\n{}", show(&bind), show(&ours)));
            continue;
        }
        same += 1;
    }
    eprintln!(
        "corpus: {} files: {same} loaded identically to BIND, {rejected} rejected by both, {strict} refused by pzdns only",
        files.len()
    );
    assert!(failures.is_empty(), "{} of {} corpus files fail:\n{}", failures.len(), files.len(), failures.join("\n\n"));
}

/// The accepted corpus, as zones in a zones directory, passes `pzdns check`;
/// the rejected files fail it, naming the lines BIND names.
#[test]
fn pzdns_check_agrees_on_the_corpus() {
    if !have_bind() {
        return;
    }
    for (kind, want_ok) in [("good", true), ("bad", false)] {
        let dir = std::env::temp_dir().join(format!("pzdns-corpus-check-{kind}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // One VPC per zone: several corpus files share an origin.
        let mut vpcs = String::from("vpcs:\n");
        let mut expect = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(CORPUS).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for (i, p) in entries.into_iter().enumerate() {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            std::fs::copy(&p, dir.join(&name)).unwrap();
            let bad = name.ends_with(".bad.zone") || name.ends_with(".strict.zone");
            if !name.ends_with(".zone") || bad == want_ok {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let origin = origin_of(&text, &p);
            let stem = name.trim_end_matches(".zone");
            vpcs.push_str(&format!("  - id: vpc-{i}\n    cidrs: [10.{i}.0.0/16]\n"));
            std::fs::write(dir.join(format!("{stem}.yaml")), format!("zone: {origin}\nvpcs: [vpc-{i}]\nmaster_file: {name}\n")).unwrap();
            if !want_ok && name.ends_with(".bad.zone") {
                let stderr = bind_load(&p, &origin).unwrap_err();
                for l in bind_error_lines(&stderr, &name) {
                    expect.push(format!("{}:{l}:", dir.join(&name).display()));
                }
            }
        }
        std::fs::write(dir.join("vpcs.yaml"), vpcs).unwrap();
        let out = crate::support::pzdns_command().args(["check", "--zones"]).arg(&dir).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.success(), want_ok, "{kind} corpus: {stdout}");
        for at in expect {
            assert!(stdout.lines().any(|l| l.starts_with(&at)), "pzdns check does not name {at}:\n{stdout}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
