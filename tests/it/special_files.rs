//! No file can hang or exhaust a load (issue 13): a FIFO, a device, a link
//! out of the zones directory or a path outside it is refused by name, at
//! once, by `pzdns check` and by a running server's reload (which keeps the
//! old data serving and says why on /readyz).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;
use hickory_proto::rr::RecordType;

const VPCS: &str = "vpcs:\n  - id: vpc-a\n    cidrs: [127.1.0.0/16]\n";

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-special-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("zones")).unwrap();
    std::fs::write(d.join("zones/vpcs.yaml"), VPCS).unwrap();
    std::fs::write(d.join("zones/good.yaml"), "zone: good.test\nvpcs: [vpc-a]\nrecords:\n  - { name: www, type: A, value: 10.0.0.1 }\n")
        .unwrap();
    d
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", p.display());
}

/// Runs pzdns with `args`, killing it after 10 s (a hang must fail the
/// test, not hang it): (exit code, stdout, wall time).
fn pzdns(args: &[&str]) -> (i32, String, Duration) {
    let t = Instant::now();
    let mut child = crate::support::pzdns_command().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text, t.elapsed())
}

/// `pzdns check` fails within a second, naming `path` and `words`.
fn check_refuses(args: &[&str], path: &Path, words: &str) {
    let (code, out, took) = pzdns(args);
    assert!(took < Duration::from_secs(1), "check took {took:?}: {out}");
    assert_eq!(code, 1, "{out}");
    let p = path.display().to_string();
    assert!(out.lines().any(|l| l.contains(&p) && l.contains(words)), "expected a line naming {p} with `{words}`:\n{out}");
}

fn check_zones(d: &Path) -> Vec<String> {
    vec!["check".into(), "--zones".into(), d.join("zones").display().to_string()]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_fifo_as_a_zone_file_is_refused_at_once() {
    let d = scratch("fifo");
    let f = d.join("zones/pipe.yaml");
    mkfifo(&f);
    check_refuses(&args(&check_zones(&d)), &f, "is a FIFO (named pipe); pzdns reads only regular files");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn dev_zero_through_a_symlinked_yaml_is_refused_unread() {
    let d = scratch("zero");
    let f = d.join("zones/zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &f).unwrap();
    check_refuses(&args(&check_zones(&d)), &f, "(resolves to /dev/zero) is outside the zones directory");
    // Even when /dev is allowed, a device is not a regular file.
    let cfg = d.join("pzdns.yaml");
    std::fs::write(&cfg, "zones_dir: zones\nallow_paths_outside: /dev\nupstreams: []\n").unwrap();
    check_refuses(&["check", "--config", cfg.to_str().unwrap()], &f, "(resolves to /dev/zero) is a character device");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn fifo_as_vpcs_endpoints_master_file_or_config() {
    let d = scratch("fifo-kinds");
    let z = d.join("zones");
    std::fs::remove_file(z.join("vpcs.yaml")).unwrap();
    mkfifo(&z.join("vpcs.yaml"));
    mkfifo(&z.join("endpoints.yaml"));
    mkfifo(&z.join("m.zone"));
    std::fs::write(z.join("m.yaml"), "zone: m.test\nvpcs: []\nmaster_file: m.zone\n").unwrap();
    let (code, out, took) = pzdns(&args(&check_zones(&d)));
    assert!(took < Duration::from_secs(1), "{took:?} {out}");
    assert_eq!(code, 1, "{out}");
    for p in ["vpcs.yaml", "endpoints.yaml"] {
        let want = format!("{}: file is a FIFO", z.join(p).display());
        assert!(out.contains(&want), "{want}\n{out}");
    }
    let want = format!("{}:3:14: {} is a FIFO", z.join("m.yaml").display(), z.join("m.zone").display());
    assert!(out.contains(&want), "{want}\n{out}");
    let cfg = d.join("pzdns.yaml");
    mkfifo(&cfg);
    check_refuses(&["check", "--config", cfg.to_str().unwrap()], &cfg, "is a FIFO");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn master_file_outside_the_zones_dir_needs_allow_paths_outside() {
    let d = scratch("outside");
    let secret = d.join("secret.zone");
    std::fs::write(&secret, "$TTL 60\n@ IN A 10.9.9.9\n").unwrap();
    std::fs::write(d.join("zones/m.yaml"), "zone: m.test\nvpcs: [vpc-a]\nmaster_file: ../secret.zone\n").unwrap();
    std::fs::write(d.join("zones/etc.yaml"), "zone: etc.test\nvpcs: [vpc-a]\nmaster_file: /etc/passwd\n").unwrap();
    let (code, out, took) = pzdns(&args(&check_zones(&d)));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("m.yaml:3:14: ") && out.contains("secret.zone) is outside the zones directory"), "{out}");
    assert!(out.contains("etc.yaml:3:14: /etc/passwd is outside the zones directory"), "{out}");
    assert!(!out.contains("root:"), "nothing of /etc/passwd is shown: {out}");
    // Allowed explicitly, the file outside loads.
    std::fs::remove_file(d.join("zones/etc.yaml")).unwrap();
    let cfg = d.join("pzdns.yaml");
    std::fs::write(&cfg, format!("zones_dir: zones\nallow_paths_outside: [{}]\nupstreams: []\n", d.display())).unwrap();
    let (code, out, _) = pzdns(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    std::fs::write(&cfg, "zones_dir: zones\nallow_paths_outside: nowhere\n").unwrap();
    let (code, out, _) = pzdns(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("pzdns.yaml:2:22: allow_paths_outside `nowhere` is not a directory"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_reload_that_meets_a_fifo_is_rejected_and_the_old_data_serves() {
    let d = scratch("reload");
    let admin = format!("127.0.0.1:{}", free_tcp_port());
    let s = TestServer::start(
        &d.join("zones"),
        &format!("listen:\n  - address: 127.0.0.1:0\n    vpc: vpc-a\nzones_dir: {{ZONES}}\nupstreams: []\nadmin:\n  listen: {admin}\n"),
    );
    let admin = s.admin.unwrap();
    let ask = |name: &str| lines(&udp(s.addrs[0], "127.0.0.1", &query(name, RecordType::A, None)).answers);
    assert_eq!(ask("www.good.test."), ["www.good.test. A 10.0.0.1"]);

    let fifo = d.join("zones/pipe.yaml");
    mkfifo(&fifo);
    let t = Instant::now();
    let (code, body) = http(admin, "POST", "/reload");
    assert!(t.elapsed() < Duration::from_secs(2), "reload took {:?}", t.elapsed());
    assert_ne!(code, 200, "{body}");
    let (code, body) = http(admin, "GET", "/readyz");
    assert_eq!(code, 200, "still ready: the old data serves");
    assert!(body.contains("last reload failed") && body.contains("pipe.yaml: file is a FIFO"), "{body}");
    assert_eq!(ask("www.good.test."), ["www.good.test. A 10.0.0.1"]);

    // The next valid change loads.
    std::fs::remove_file(&fifo).unwrap();
    std::fs::write(d.join("zones/good.yaml"), "zone: good.test\nvpcs: [vpc-a]\nrecords:\n  - { name: www, type: A, value: 10.0.0.2 }\n")
        .unwrap();
    let (code, body) = http(admin, "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert_eq!(ask("www.good.test."), ["www.good.test. A 10.0.0.2"]);
    drop(s);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn nested_includes_of_a_fifo_or_dev_zero_are_refused_at_once() {
    let d = scratch("include");
    let z = d.join("zones");
    std::fs::write(z.join("m.yaml"), "zone: m.test\nvpcs: [vpc-a]\nmaster_file: m.zone\n").unwrap();
    std::fs::write(z.join("m.zone"), "$TTL 60\nwww IN A 10.0.0.1\n$INCLUDE level1.zone\n").unwrap();
    std::fs::write(z.join("level1.zone"), "a IN A 10.0.0.2\n$INCLUDE pipe.zone\n$INCLUDE zero.zone\n$INCLUDE /dev/zero\n").unwrap();
    mkfifo(&z.join("pipe.zone"));
    std::os::unix::fs::symlink("/dev/zero", z.join("zero.zone")).unwrap();
    let (code, out, took) = pzdns(&args(&check_zones(&d)));
    assert!(took < Duration::from_secs(1), "check took {took:?}: {out}");
    assert_eq!(code, 1, "{out}");
    let l1 = z.join("level1.zone").display().to_string();
    for (line, words) in [
        (2, format!("$INCLUDE: {} is a FIFO (named pipe)", z.join("pipe.zone").display())),
        (3, format!("$INCLUDE: {} (resolves to /dev/zero) is outside the zones directory", z.join("zero.zone").display())),
        (4, "$INCLUDE: /dev/zero is outside the zones directory".to_string()),
    ] {
        let want = format!("{l1}:{line}:1: {words}");
        assert!(out.lines().any(|l| l.starts_with(&want)), "missing `{want}`:\n{out}");
    }
    // With /dev allowed, a device is still not a regular file.
    let cfg = d.join("pzdns.yaml");
    std::fs::write(&cfg, "zones_dir: zones\nallow_paths_outside: [/dev]\nupstreams: []\n").unwrap();
    let (code, out, took) = pzdns(&["check", "--config", cfg.to_str().unwrap()]);
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{l1}:4:1: $INCLUDE: /dev/zero is a character device")), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn include_depth_at_the_limit_loads_over_it_is_refused() {
    // MAX_INCLUDE_DEPTH = 8: a chain of 8 nested includes loads, 9 does not.
    for (depth, ok) in [(7, true), (8, true), (9, false)] {
        let d = scratch(&format!("depth{depth}"));
        let z = d.join("zones");
        std::fs::write(z.join("m.yaml"), "zone: m.test\nvpcs: [vpc-a]\nmaster_file: f0.zone\n").unwrap();
        for i in 0..=depth {
            let next = if i < depth { format!("$INCLUDE f{}.zone\n", i + 1) } else { String::new() };
            std::fs::write(z.join(format!("f{i}.zone")), format!("$TTL 60\nh{i} IN A 10.0.0.{}\n{next}", i + 1)).unwrap();
        }
        let (code, out, _) = pzdns(&args(&check_zones(&d)));
        assert_eq!(code == 0, ok, "depth {depth}: {out}");
        if !ok {
            assert!(out.contains("$INCLUDE nested deeper than 8 files"), "{out}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// The git commit shown in `/readyz` is read from `.git` in the zones
/// directory: a FIFO there (as HEAD) must not hang the load; the server
/// becomes ready and serves, without a commit.
#[test]
fn a_fifo_in_the_git_metadata_does_not_hang_a_load() {
    let d = scratch("git-fifo");
    let z = d.join("zones");
    std::fs::create_dir_all(z.join(".git")).unwrap();
    mkfifo(&z.join(".git/HEAD"));
    let t = std::time::Instant::now();
    let srv = TestServer::start_default(&z, "vpc-a", "");
    assert!(t.elapsed() < Duration::from_secs(10), "ready in {:?}", t.elapsed());
    // Listener 1 is bound to vpc-a, which sees good.test.
    let r = udp(srv.addrs[1], "127.0.0.9", &query("www.good.test.", hickory_proto::rr::RecordType::A, None));
    assert_eq!(r.answers.len(), 1, "{:?}", r);
    drop(srv);
    let _ = std::fs::remove_dir_all(&d);
}
