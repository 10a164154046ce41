//! Small things an operator relies on: the reload failure counter exists
//! before the first failure, the ready file goes with the process,
//! nonsense worker counts are refused, explain says what the server does.

use std::path::Path;

use crate::support::*;

#[test]
fn reload_metrics_exist_from_the_start() {
    let cfg = "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: 127.0.0.1:0\n";
    let srv = TestServer::start(Path::new(RULES_ZONES), cfg);
    let m = http(srv.admin.unwrap(), "GET", "/metrics").1;
    assert!(m.contains("pzdns_reloads_total{result=\"failure\"} 0"), "the failure series is there at 0: {m}");
    assert!(m.contains("pzdns_reloads_total{result=\"success\"} 1"), "{m}");
    assert_eq!(metric(&m, "pzdns_last_reload_succeeded"), 1.0);
    assert_eq!(metric(&m, "pzdns_last_reload_failure_timestamp_seconds"), 0.0);
    assert!(m.contains("pzdns_query_duration_seconds_bucket{le=\"6.5536\"}"), "latency buckets reach past the upstream timeouts");
}

#[test]
fn the_ready_file_goes_with_the_process() {
    let mut srv = TestServer::start(
        Path::new(RULES_ZONES),
        "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {ZONES}\nadmin:\n  listen: \"off\"\n",
    );
    let ready = srv.dir.join("ready");
    assert!(ready.exists());
    assert!(srv.stop().success());
    assert!(!ready.exists(), "the ready file is removed on exit");
}

#[test]
fn zero_workers_is_refused() {
    let out = crate::support::pzdns_command().args(["serve", "--workers", "0", "--zones", RULES_ZONES]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn explain_says_what_the_server_does_for_transfers_and_numbered_types() {
    let run = |t: &str| {
        let out = crate::support::pzdns_command()
            .args(["explain", "--config", RULES_CONFIG, "--from", "127.1.0.5", "www.example.test.", t])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, out, err) = run("AXFR");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("REFUSED"), "{out}");
    let (code, out, err) = run("TYPE65");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("HTTPS") || out.contains("TYPE65"), "{out}");
}
