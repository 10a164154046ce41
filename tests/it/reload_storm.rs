//! A reload never publishes a tree with a zone missing (issue #25): a
//! separate process renames vpc-b's private zone file between `.yaml` and
//! `.yml` with rename(2) as fast as it can, as `git pull` and git-sync
//! rename files, in a zones directory of thousands of files, while
//! `POST /reload` runs continually and vpc-b asks its private name through
//! a real pzdns on loopback. The public upstream knows the same name with
//! other data, so a reload that read the directory without the file would
//! answer vpc-b from the upstream. Every answer must be the private one.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::support::upstream::FakeUpstream;
use crate::support::*;

/// The name the upstream answers 47.1.1.1 for; vpc-b's zone says 10.2.0.99.
const NAME: &str = "ecs.cn-hangzhou.aliyuncs.com.";
/// The storm lasts at least this long, and until 3 reloads ran during it
/// (a loaded machine reads 4,000 files slowly), at most [`STORM_MAX`].
const STORM: Duration = Duration::from_secs(12);
const STORM_MAX: Duration = Duration::from_secs(60);
const FILLER_FILES: usize = 4000;

#[test]
fn an_atomic_rename_storm_never_loses_a_private_zone() {
    let up = FakeUpstream::start("127.0.0.1");
    let d = std::env::temp_dir().join(format!("pzdns-storm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("vpcs.yaml"), "vpcs:\n  - { id: vpc-a, cidrs: [127.1.0.0/16] }\n  - { id: vpc-b, cidrs: [127.2.0.0/16] }\n")
        .unwrap();
    for i in 0..FILLER_FILES {
        let f = format!("zone: z{i:05}.filler.test\nvpcs: [vpc-a]\nrecords:\n  - {{ name: www, type: A, value: 10.1.0.1 }}\n");
        std::fs::write(d.join(format!("z{i:05}.yaml")), f).unwrap();
    }
    let secret = d.join("secret.b.yaml");
    std::fs::write(&secret, format!("zone: {NAME}\nvpcs: [vpc-b]\nrecords:\n  - {{ name: \"@\", type: A, value: 10.2.0.99 }}\n")).unwrap();
    let cfg = format!(
        "listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\nreload:\n  priority: low\n",
        up.addr
    );
    // `low`: the storm and the queries saturate the cores, where `idle`
    // reload threads would wait for the storm to end.
    let srv = TestServer::start(&d, &cfg);
    let (dns, admin) = (srv.addrs[0], srv.admin.unwrap());
    assert_eq!(ask(dns).as_deref(), Some("10.2.0.99"), "before the storm");

    // The storm: its own process, rename(2) back and forth, ending where it
    // began, until the stop file (outside the zones directory) appears.
    let stop_file = std::env::temp_dir().join(format!("pzdns-storm-{}.stop", std::process::id()));
    let _ = std::fs::remove_file(&stop_file);
    let storm = Command::new("perl")
        .args([
            "-e",
            "($a, $b, $t, $stop) = @ARGV; $end = time + $t; $n = 0; \
             while (time < $end && ! -e $stop) { rename($a, $b) or die \"$!\"; rename($b, $a) or die \"$!\"; $n++; \
             select(undef, undef, undef, 0.0002) } print \"$n\\n\"",
            secret.to_str().unwrap(),
            d.join("secret.b.yml").to_str().unwrap(),
            &STORM_MAX.as_secs().to_string(),
            stop_file.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("perl runs");
    let stop = Arc::new(AtomicBool::new(false));
    let reloads = Arc::new(AtomicUsize::new(0));
    let reloader = {
        let (stop, reloads) = (stop.clone(), reloads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                http(admin, "POST", "/reload");
                reloads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Paced, as the storm is, so that the reloads get CPU time on a
    // small machine; a lost packet is counted apart from a wrong answer.
    let (mut answers, mut wrong, mut lost, mut first_wrong) = (0usize, 0usize, 0usize, None);
    let started = Instant::now();
    while (started.elapsed() < STORM || reloads.load(Ordering::Relaxed) < 3) && started.elapsed() < STORM_MAX {
        match ask(dns) {
            Some(a) if a == "10.2.0.99" => answers += 1,
            Some(other) => {
                answers += 1;
                wrong += 1;
                first_wrong.get_or_insert(other);
            }
            None => lost += 1,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::fs::write(&stop_file, "").unwrap();
    stop.store(true, Ordering::Relaxed);
    reloader.join().unwrap();
    let out = storm.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&stop_file);
    let renames = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success(), "the storm ran: {}", srv.stderr());
    let reloads = reloads.load(Ordering::Relaxed);
    let log = srv.stderr();
    let (loaded, rejected) = (log.matches("data loaded").count() - 1, log.matches("load rejected").count());
    eprintln!(
        "{answers} answers, {wrong} wrong, {lost} lost; {reloads} reloads ({loaded} loaded, {rejected} rejected); {renames} rename pairs"
    );
    assert!(reloads >= 3 && answers >= 1000, "a storm worth the name: {reloads} reloads, {answers} answers: {log}");
    assert_eq!(wrong, 0, "of {answers} answers to vpc-b, {wrong} were not its private data (first: {first_wrong:?})");
    // Once quiet, a reload succeeds and the zone is there.
    let (code, body) = http(admin, "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert_eq!(ask(dns).as_deref(), Some("10.2.0.99"));
    drop(srv);
    drop(up);
    let _ = std::fs::remove_dir_all(&d);
}

/// vpc-b's answer for NAME: the address, or what came instead.
fn ask(dns: SocketAddr) -> Option<String> {
    let sock = UdpSocket::bind("127.2.0.5:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&query(NAME, RecordType::A, None).to_vec().unwrap(), dns).unwrap();
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    let m = Message::from_vec(&buf[..n]).ok()?;
    if m.metadata.response_code != ResponseCode::NoError {
        return Some(format!("{:?}", m.metadata.response_code));
    }
    let addrs: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    Some(addrs.join(","))
}
