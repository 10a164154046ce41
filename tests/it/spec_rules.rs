//! SPEC.md rules that no other test pins down: the command line (§1), the
//! endpoint name templates (§2), graceful SIGTERM (§4), long names (§5).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::upstream::{Behavior, FakeUpstream};
use crate::support::*;
use hickory_proto::rr::RecordType;

const ZONES: &str = RULES_ZONES;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pzdns-spec-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pzdns_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pzdns")).current_dir(dir).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// §1: `pzdns --version`, `pzdns help`.
#[test]
fn version_and_help() {
    let (code, out, _) = pzdns_in(Path::new("."), &["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with(concat!("pzdns ", env!("CARGO_PKG_VERSION"), " (commit ")), "{out}");
    let (code, out, _) = pzdns_in(Path::new("."), &["help"]);
    assert_eq!(code, 0);
    for cmd in ["serve", "check", "explain"] {
        assert!(out.contains(cmd), "{out}");
    }
}

/// §1: without `--config`, `./pzdns.yaml` if present, else the defaults (zones `./zones`).
#[test]
fn config_file_in_the_working_directory() {
    let d = scratch("cwd");
    let zones = std::fs::canonicalize(ZONES).unwrap();
    let (code, _, err) = pzdns_in(&d, &["check"]);
    assert_eq!(code, 1, "no ./pzdns.yaml and no ./zones: {err}");
    std::fs::write(d.join("pzdns.yaml"), format!("zones_dir: {}\n", zones.display())).unwrap();
    let (code, out, _) = pzdns_in(&d, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&zones.display().to_string()), "the file's zones_dir is used: {out}");
    // PZDNS_CONFIG names the file instead, or `none` for the defaults,
    // whatever ./pzdns.yaml says (here it is broken).
    std::fs::write(d.join("other.yaml"), format!("zones_dir: {}\n", zones.display())).unwrap();
    std::fs::write(d.join("pzdns.yaml"), "listen: [oops\n").unwrap();
    let with_env = |v: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_pzdns")).current_dir(&d).env("PZDNS_CONFIG", v).args(["check"]).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = with_env(d.join("other.yaml").to_str().unwrap());
    assert_eq!(code, Some(0), "PZDNS_CONFIG names the file: {out}");
    assert!(out.contains(&zones.display().to_string()), "{out}");
    let (code, out) = with_env("none");
    assert_eq!(code, Some(1), "none: the defaults (./zones, missing here), not the broken ./pzdns.yaml: {out}");
    assert!(out.contains("zones directory does not exist") && !out.contains("not valid YAML"), "{out}");
    let _ = std::fs::remove_dir_all(&d);
}

/// §1: flags override config keys (`--upstream`, `--log-format`).
#[test]
fn flags_override_the_config_file() {
    let up = FakeUpstream::start("127.0.0.1");
    let d = scratch("flags");
    let zones = std::fs::canonicalize(ZONES).unwrap();
    // The file names an upstream that does not answer, and text logs.
    std::fs::write(
        d.join("pzdns.yaml"),
        format!(
            "listen:\n  - address: 127.0.0.1:0\nupstreams: [127.0.0.1:9]\nzones_dir: {}\nadmin:\n  listen: \"off\"\nlog_format: text\nresolver:\n  dnssec: off\n",
            zones.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pzdns"))
        .args(["serve", "--config", d.join("pzdns.yaml").to_str().unwrap(), "--upstream", &up.addr.to_string(), "--log-format", "json"])
        .args(["--ready-file", d.join("ready").to_str().unwrap()])
        .stderr(std::fs::File::create(d.join("err.log")).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !std::fs::read_to_string(d.join("ready")).is_ok_and(|s| s.ends_with('\n')) {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr = std::fs::read_to_string(d.join("ready")).unwrap().lines().next().unwrap().parse().unwrap();
    let r = udp(addr, "127.1.0.5", &query("www.public.example.", RecordType::A, None));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let log = std::fs::read_to_string(d.join("err.log")).unwrap();
    let _ = std::fs::remove_dir_all(&d);
    assert_eq!(r.answers.len(), 2, "answered through --upstream, not the file's");
    assert!(log.lines().next().unwrap_or("").starts_with('{'), "--log-format json: {log}");
}

/// §4: SIGTERM stops listening and lets queries in flight finish.
#[test]
fn sigterm_lets_queries_in_flight_finish() {
    let up = FakeUpstream::start("127.0.0.1");
    up.set(Behavior::DelayMs(700));
    let mut srv = TestServer::start_default(Path::new(ZONES), "vpc-b", &format!("upstreams: [{}]\n", up.addr));
    let s = srv.addrs[0];
    let pending = std::thread::spawn(move || udp(s, "127.1.0.5", &query("slow.public.example.", RecordType::A, None)));
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let status = srv.stop();
    let r = pending.join().unwrap();
    assert_eq!(r.answers.len(), 1, "the query in flight was answered");
    assert!(status.success(), "{status}");
    assert!(t.elapsed() >= Duration::from_millis(400), "it waited for the query: {:?}", t.elapsed());
}

/// §4 in process: `app::run` takes its shutdown as a future (`pzdns serve`
/// gives it SIGTERM/SIGINT), so a whole server runs inside this test: when
/// the future completes, the query in flight is answered, then run returns
/// Ok and removes its ready file.
#[test]
fn app_run_in_process_drains_and_returns_when_its_shutdown_completes() {
    let up = FakeUpstream::start("127.0.0.1");
    up.set(Behavior::DelayMs(700));
    let d = scratch("in-process");
    let zones = std::fs::canonicalize(ZONES).unwrap();
    let yaml = format!(
        "listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {}\nadmin:\n  listen: \"off\"\nresolver:\n  dnssec: off\n",
        up.addr,
        zones.display()
    );
    std::fs::write(d.join("pzdns.yaml"), yaml).unwrap();
    let cfg = pzdns::config::ServerConfig::load_file(&d.join("pzdns.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let ready = d.join("ready");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(pzdns::app::run(cfg, 2, Some(ready.clone()), None, async {
        let _ = stopped.await;
    }));
    let t = Instant::now();
    let addr: std::net::SocketAddr = loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && text.ends_with('\n')
        {
            break text.lines().next().unwrap().parse().unwrap();
        }
        assert!(!server.is_finished(), "run ended before it was ready: {:?}", rt.block_on(server));
        assert!(t.elapsed() < Duration::from_secs(20), "not ready");
        std::thread::sleep(Duration::from_millis(10));
    };
    let local = udp(addr, "127.1.0.5", &query("www.example.test.", RecordType::A, None));
    assert_eq!(local.answers.len(), 2, "it serves");
    let pending = std::thread::spawn(move || udp(addr, "127.1.0.5", &query("slow.public.example.", RecordType::A, None)));
    // The question is in flight once the upstream has it.
    while up.queries() == 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "the upstream never got the question");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.send(()).unwrap();
    let result = rt.block_on(server).expect("run did not panic");
    // Nothing of the server outlives run: an answer not sent by now never is.
    rt.shutdown_timeout(Duration::ZERO);
    assert!(result.is_ok(), "{result:?}");
    assert!(!ready.exists(), "the ready file is removed on the way out");
    let r = pending.join().unwrap();
    assert_eq!(r.answers.len(), 1, "the query in flight was answered before run returned");
    let _ = std::fs::remove_dir_all(&d);
}

/// §2: the name templates fit other clouds' naming; §5: a generated or
/// written name over 255 bytes is an error with its position.
#[test]
fn endpoint_templates_and_long_names() {
    let d = scratch("tpl");
    std::fs::write(d.join("vpcs.yaml"), "vpcs:\n  - { id: vpc-a, cidrs: [10.0.0.0/16] }\n").unwrap();
    std::fs::write(
        d.join("endpoints.yaml"),
        "names:\n  endpoint: \"vpce-{endpoint}.{service}.{region}.vpce.amazonaws.com\"\n  zonal: \"vpce-{endpoint}-{zone}.{service}.{region}.vpce.amazonaws.com\"\nendpoints:\n  - id: 0abc\n    service: kinesis\n    region: us-east-1\n    vpc: vpc-a\n    zones:\n      - { zone: us-east-1a, ip: 10.0.1.5 }\n",
    )
    .unwrap();
    // In the scratch directory: it has no pzdns.yaml of its own.
    let (code, out, err) = pzdns_in(
        &d,
        &["explain", "--zones", d.to_str().unwrap(), "--vpc", "vpc-a", "vpce-0abc-us-east-1a.kinesis.us-east-1.vpce.amazonaws.com", "A"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("vpce-0abc-us-east-1a.kinesis.us-east-1.vpce.amazonaws.com. 60 IN A 10.0.1.5"), "{out}");
    let long = vec!["a".repeat(60); 5].join(".");
    std::fs::write(
        d.join("long.yaml"),
        format!("zone: long.test\nvpcs: [vpc-a]\nrecords:\n  - {{ name: {long}, type: A, value: 10.0.0.1 }}\n"),
    )
    .unwrap();
    let (code, out, _) = pzdns_in(&d, &["check", "--zones", d.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&d);
    assert_eq!(code, 1);
    assert!(out.contains("long.yaml:4:13:") && out.contains("255"), "{out}");
}
