//! `pzdns check` and `pzdns explain` as users run them: the real binary.

use std::path::Path;

fn pzdns(args: &[&str]) -> (i32, String, String) {
    let out = crate::support::pzdns_command().args(args).output().expect("runs pzdns");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn example_zones_are_clean() {
    let (code, out, err) = pzdns(&["check", "--zones", "zones"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 10 zones, "), "{out}");
    assert!(out.contains(" 10 VPCs, 1 endpoints (4 endpoint names)"), "{out}");
}

#[test]
fn broken_files_report_every_problem_with_position() {
    let (code, out, _) = pzdns(&["check", "--zones", "tests/fixtures/broken/zones"]);
    assert_eq!(code, 1, "{out}");
    let d = "tests/fixtures/broken/zones";
    let expected = [
        ("a.example.yaml:2:15:", "unknown VPC id `vpc-nope`"),
        ("a.example.yaml:3:6:", "TTL 3 is outside 5..86400"),
        ("a.example.yaml:5:34:", "`10.0.0.300` is not an IPv4 address"),
        ("a.example.yaml:6:34:", "A record beside a CNAME at dup.a.example."),
        ("a.example.yaml:9:35:", "MX record at the apex beside its CNAME"),
        ("a.example.yaml:10:13:", "`x.b.example.` is outside zone `a.example.`"),
        ("a.example.yaml:11:13:", "label bytes exceed 63"),
        ("a.example.yaml:12:22:", "unsupported record type `AAA`"),
        ("a.example.yaml:13:49:", "TTL 100000 is outside"),
        ("a.example.yaml:14:49:", "`10.0.0.7` is not an IPv6 address"),
        ("b2.yaml:2:8:", "zone b.example. is bound to VPC `vpc-y` twice"),
        ("endpoints.yaml:5:10:", "unknown VPC id `vpc-gone`"),
        ("endpoints.yaml:6:13:", "unknown status `Connectd`"),
        ("endpoints.yaml:8:36:", "ip `192.168.2.999` is not an IPv4 address"),
        ("endpoints.yaml:13:12:", "endpoint `ep-2` has no zones"),
        ("loops.yaml:4:40:", "CNAME loop"),
        ("loops.yaml:5:40:", "CNAME loop"),
        ("unknown-key.yaml:3:1:", "unknown field `recods`"),
        ("vpcs.yaml:3:25:", "host bits are set; did you mean 10.1.0.0/16?"),
        ("vpcs.yaml:5:13:", "CIDR 10.0.0.0/8 of VPC `vpc-y` is also a CIDR of VPC `vpc-x`"),
        ("vpcs.yaml:6:9:", "VPC id `vpc-x` is defined twice"),
        ("vpcs.yaml:9:13:", "`not-a-cidr` is not a CIDR"),
    ];
    for (at, msg) in expected {
        let want = format!("{d}/{at} ");
        let line = out.lines().find(|l| l.starts_with(&want)).unwrap_or_else(|| panic!("no problem reported at {want}\n{out}"));
        assert!(line.contains(msg), "at {at} expected `{msg}`, got: {line}");
    }
    assert!(out.trim_end().ends_with(&format!("{} problems found", expected.len())), "{out}");
    // The valid CNAME in loops.yaml is not reported.
    assert!(!out.contains("loops.yaml:6:"), "{out}");
}

#[test]
fn bad_config_file_is_reported_with_position() {
    let dir = std::env::temp_dir().join(format!("pzdns-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("pzdns.yaml");
    std::fs::write(&cfg, "listen:\n  - address: 127.0.0.1\nunknown_clients: maybe\ncache:\n  serve_stale: 1w\nreload:\n  priority: high\n")
        .unwrap();
    let (code, out, _) = pzdns(&["check", "--config", cfg.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("pzdns.yaml:2:14: listen address `127.0.0.1` must be IP:PORT"), "{out}");
    assert!(out.contains("pzdns.yaml:3:18: unknown_clients `maybe` must be `refuse` or `forward`"), "{out}");
    assert!(out.contains("pzdns.yaml:5:16: cache.serve_stale `1w` must be a duration"), "{out}");
    assert!(out.contains("pzdns.yaml:7:13: reload.priority `high` must be `idle` or `low`"), "{out}");
}

#[test]
fn explain_from_a_vpc_and_from_outside() {
    let (code, out, err) = pzdns(&["explain", "--zones", "zones", "--from", "127.0.10.1", "ecs.cn-hangzhou.aliyuncs.com", "A"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("view:     vpc-hz-prod"), "{out}");
    assert!(out.contains("zone ecs.cn-hangzhou.aliyuncs.com."), "{out}");
    assert!(out.contains("ecs.cn-hangzhou.aliyuncs.com. 60 IN CNAME popunify-vpc.cn-hangzhou.aliyuncs.com."), "{out}");
    assert!(out.contains("forward popunify-vpc.cn-hangzhou.aliyuncs.com. A upstream"), "{out}");

    let (code, out, _) = pzdns(&["explain", "--zones", "zones", "--from", "127.0.0.1", "ecs.cn-hangzhou.aliyuncs.com"]);
    assert_eq!(code, 0);
    assert!(out.contains("view:     none"), "{out}");
    assert!(out.contains("rcode REFUSED"), "{out}");

    let (code, out, _) = pzdns(&[
        "explain",
        "--zones",
        "zones",
        "--vpc",
        "vpc-hz-prod",
        "ep-bp191ac9cdad00430b3.epsrv-bp14k2aeyqk0xy8yqp1g.cn-hangzhou.privatelink.aliyuncs.com",
        "A",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("endpoint name"), "{out}");
    assert!(out.contains("A\t192.168.2.77") || out.contains("IN A 192.168.2.77"), "{out}");
    assert!(!out.contains("192.168.4.12"), "a Disconnected zone's IP must not be published: {out}");
}

/// Every configuration shipped in deploy/ loads and checks clean, so the
/// examples cannot rot.
#[test]
fn shipped_configs_are_valid() {
    // The Kubernetes config names the admin token where the pod mounts its
    // Secret; `check` reads that file, so here it names one made for the test.
    const POD_TOKEN: &str = "/etc/pzdns-admin/token";
    let dir = std::env::temp_dir().join(format!("pzdns-shipped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "a-token-for-the-test\n").unwrap();
    let k8s = std::fs::read_to_string("deploy/kubernetes/pzdns.yaml").unwrap();
    assert!(k8s.contains(&format!("token_file: {POD_TOKEN}")), "deploy/kubernetes/pzdns.yaml: token_file {POD_TOKEN}");
    // ... the file of the Secret's key `token` where deployment.yaml mounts it.
    let deployment = std::fs::read_to_string("deploy/kubernetes/deployment.yaml").unwrap();
    assert!(deployment.contains("mountPath: /etc/pzdns-admin\n"), "deployment.yaml mounts the token Secret at /etc/pzdns-admin");
    let k8s_copy = dir.join("kubernetes-pzdns.yaml");
    std::fs::write(&k8s_copy, k8s.replace(POD_TOKEN, token.to_str().unwrap())).unwrap();
    for (shipped, cfg) in [("deploy/docker/pzdns.yaml", Path::new("deploy/docker/pzdns.yaml")), ("deploy/kubernetes/pzdns.yaml", &k8s_copy)]
    {
        let (code, out, err) = pzdns(&["check", "--config", cfg.to_str().unwrap(), "--zones", "zones"]);
        assert_eq!(code, 0, "{shipped}: {out}{err}");
        assert!(out.starts_with("ok: "), "{shipped}: {out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression (found by fuzz/zone_yaml): a zone that fails to build while
/// holding another CNAME made the loop check index a missing zone and panic.
#[test]
fn failed_zone_with_cnames_is_reported_not_a_crash() {
    let (code, out, err) = pzdns(&["check", "--zones", "tests/fixtures/regressions/cname-in-failed-zone"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("only.test.yaml:8:40: alias.only.test. has more than one CNAME"), "{out}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A symbolic-link loop beside a large master file (issue #25): each
/// directory is entered once, so `check` reports both links of the loop,
/// by path, and exits 1 within seconds under a 2 GiB address-space limit,
/// where walking the loop read every file ~1,600 times and ran out of
/// memory. The child is bounded in memory and time, so the test fails
/// rather than hangs or takes the machine down.
#[test]
fn a_symlink_loop_is_reported_not_followed() {
    use std::os::unix::process::CommandExt;
    let d = std::env::temp_dir().join(format!("pzdns-symloop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("loop")).unwrap();
    std::fs::write(d.join("vpcs.yaml"), "vpcs:\n  - { id: vpc-a, cidrs: [10.0.0.0/16] }\n").unwrap();
    std::fs::write(d.join("big.yaml"), "zone: big.test\nvpcs: [vpc-a]\nmaster_file: big.zone\n").unwrap();
    let mut zone = String::from("$ORIGIN big.test.\n$TTL 60\n");
    let mut i = 0;
    while zone.len() < 1_300_000 {
        zone.push_str(&format!("host-number-{i:06} IN A 10.{}.{}.{}\n", (i >> 16) & 255, (i >> 8) & 255, i & 255));
        i += 1;
    }
    std::fs::write(d.join("big.zone"), zone).unwrap();
    std::os::unix::fs::symlink("..", d.join("loop/up")).unwrap();
    std::os::unix::fs::symlink("../loop", d.join("loop/self")).unwrap();
    let out = d.join("out.txt");
    let mut cmd = crate::support::pzdns_command();
    cmd.args(["check", "--zones", d.to_str().unwrap()]).stdout(std::fs::File::create(&out).unwrap());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 2 << 30, rlim_max: 2 << 30 };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("check still running after 30 s: {text}"));
    assert_eq!(status.code(), Some(1), "exits 1 (not killed or aborted: {status}): {text}");
    let up = format!("{}: links back to {}, a directory that holds it", d.join("loop/up").display(), d.display());
    let own = format!("{}: links back to {}", d.join("loop/self").display(), d.join("loop").display());
    assert!(text.contains(&up) && text.contains(&own), "both links named: {text}");
    assert!(text.trim_end().ends_with("2 problems found"), "nothing else: {text}");
    // What one load reads in all is bounded too (`zones_max_bytes`).
    let cfg = d.join("pzdns.yaml");
    std::fs::write(&cfg, format!("zones_dir: {}\nupstreams: []\nzones_max_bytes: 1MiB\n", d.display())).unwrap();
    let (code, out, err) = pzdns(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let want = format!(
        "{} would take this load over the 1 MiB it may read in all (`zones_max_bytes` in pzdns.yaml)",
        d.join("big.zone").display()
    );
    assert!(out.contains(&want), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}
