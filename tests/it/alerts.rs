//! The shipped alert rules (deploy/prometheus/alerts.yaml) against what a
//! real server exposes: every series they select exists in the first
//! scrape of a fresh server, and `promtool test rules`, fed with a run of
//! real scrapes (a failing upstream, then a rejected reload), fires them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use hickory_proto::rr::RecordType;

use crate::support::upstream::{Behavior, FakeUpstream};
use crate::support::*;

/// Samples of a text exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.to_string()))
        })
        .collect()
}

/// A label matcher: label, negated (`!=`), value.
type Matcher = (String, bool, String);

/// The metric selectors of the alert expressions: `name{matchers}` or a bare name.
fn selectors(rules: &str) -> Vec<(String, Vec<Matcher>)> {
    let mut out = Vec::new();
    let mut rest = rules;
    while let Some(i) = rest.find("pzdns_") {
        let s = &rest[i..];
        let name: String = s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let after = &s[name.len()..];
        let mut matchers = Vec::new();
        if let Some(body) = after.strip_prefix('{').and_then(|b| b.split_once('}')).map(|(b, _)| b) {
            for m in body.split(',') {
                let (k, neg, v) = match m.split_once("!=") {
                    Some((k, v)) => (k, true, v),
                    None => match m.split_once('=') {
                        Some((k, v)) => (k, false, v),
                        None => continue,
                    },
                };
                // A template (`{{ $labels.upstream }}`) in a description matches anything.
                if !v.contains("{{") {
                    matchers.push((k.trim().to_string(), neg, v.trim().trim_matches('"').to_string()));
                }
            }
        }
        rest = &s[name.len()..];
        // Metrics only named in a description must exist too.
        if !out.iter().any(|(n, m): &(String, Vec<_>)| *n == name && *m == matchers) {
            out.push((name, matchers));
        }
    }
    out
}

fn matches(series: &str, name: &str, matchers: &[Matcher]) -> bool {
    let (n, labels) = series.split_once('{').unwrap_or((series, ""));
    // A histogram is named without its `_bucket`, `_sum`, `_count` in prose.
    (n == name || ["_bucket", "_sum", "_count"].iter().any(|x| n.strip_suffix(x) == Some(name)))
        && matchers.iter().all(|(k, neg, v)| {
            let has = labels.contains(&format!("{k}=\"{v}\""));
            if *neg { !has } else { has }
        })
}

#[test]
fn every_series_the_alerts_select_exists_at_start() {
    let up = FakeUpstream::start("127.0.0.1");
    let cfg = format!("listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n", up.addr);
    let srv = TestServer::start(Path::new(RULES_ZONES), &cfg);
    let scrape = samples(&http(srv.admin.unwrap(), "GET", "/metrics").1);
    let rules = std::fs::read_to_string("deploy/prometheus/alerts.yaml").unwrap();
    let sel = selectors(&rules);
    assert!(sel.len() >= 4, "{sel:?}");
    for (name, m) in sel {
        assert!(scrape.keys().any(|s| matches(s, &name, &m)), "alerts.yaml selects {name}{m:?}, which a fresh server does not expose");
    }
}

#[test]
fn the_alerts_fire_on_real_scrapes() {
    let Some(promtool) = tool("promtool") else { return };
    // A writable copy of the zones, to break and reload.
    let dir = std::env::temp_dir().join(format!("pzdns-alerts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let zones = dir.join("zones");
    copy_dir(Path::new(RULES_ZONES), &zones);
    let up = FakeUpstream::start("127.0.0.1");
    up.set(Behavior::ServFail);
    let cfg = format!("listen:\n  - address: 127.0.0.1:0\nupstreams: [{}]\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n", up.addr);
    let srv = TestServer::start(&zones, &cfg);
    let admin = srv.admin.unwrap();
    let server = srv.addrs[0];
    let src: std::net::IpAddr = "127.1.0.5".parse().unwrap();

    // One scrape per (synthetic) minute: a reload rejected between minutes
    // 9 and 10; from minute 5, 70 queries a minute, all SERVFAIL.
    let mut scrapes = Vec::new();
    let mut n = 0;
    for minute in 0..=30 {
        if minute == 10 {
            // The file watch rejects it (one failure, counted once).
            std::fs::write(zones.join("broken.yaml"), "zone: broken.test\nvpcs: [vpc-nowhere]\nrecords: []\n").unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            while metric(&http(admin, "GET", "/metrics").1, "pzdns_reloads_total{result=\"failure\"}") < 1.0 {
                assert!(std::time::Instant::now() < deadline, "the watch did not reload: {}", srv.stderr());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        if minute >= 5 {
            for _ in 0..70 {
                n += 1;
                let q = query(&format!("u{n}.flood.example."), RecordType::A, Some(1232));
                udp_raw(server, src, &q.to_vec().unwrap()).expect("answered");
            }
        }
        scrapes.push(samples(&http(admin, "GET", "/metrics").1));
    }

    // The scrapes as promtool input series, one value per minute.
    let mut all: Vec<&String> = scrapes.iter().flat_map(|s| s.keys()).collect();
    all.sort();
    all.dedup();
    let mut series = String::new();
    for s in all {
        if !s.starts_with("pzdns_") {
            continue;
        }
        let labelled = match s.split_once('{') {
            Some((n, rest)) => format!("{n}{{job=\"pzdns\",instance=\"i\",{rest}"),
            None => format!("{s}{{job=\"pzdns\",instance=\"i\"}}"),
        };
        let values: Vec<&str> = scrapes.iter().map(|sc| sc.get(s).map_or("_", String::as_str)).collect();
        writeln!(series, "      - series: '{labelled}'\n        values: '{}'", values.join(" ")).unwrap();
    }
    let rules = std::fs::canonicalize("deploy/prometheus/alerts.yaml").unwrap();
    let test = format!(
        r#"rule_files:
  - {rules}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
{series}    alert_rule_test:
      - eval_time: 8m
        alertname: PzdnsReloadFailed
        exp_alerts: []
      - eval_time: 15m
        alertname: PzdnsReloadFailed
        exp_alerts:
          - exp_labels: {{severity: warning, job: pzdns, instance: i, result: failure}}
            exp_annotations:
              summary: "pzdns i rejected a zones reload"
              description: "i failed 1 reload(s) in the last 10 minutes and keeps serving its previous data. The problems are in its log and in the body of GET /readyz (path:line:column: message); run `pzdns check --zones DIR` on the zones repository and fix the commit."
      - eval_time: 4m
        alertname: PzdnsHighServfailRate
        exp_alerts: []
      - eval_time: 29m
        alertname: PzdnsHighServfailRate
        exp_alerts:
          - exp_labels: {{severity: critical, job: pzdns}}
            exp_annotations:
              summary: "pzdns (pzdns): 100% of answers are SERVFAIL"
              description: "SERVFAIL almost always means the upstream resolvers fail or time out (see PzdnsUpstreamErrors and pzdns_upstream_requests_total by outcome); with cache.serve_stale some of those are still answered from the cache."
"#,
        rules = rules.display()
    );
    let file = dir.join("alerts_real_test.yaml");
    std::fs::write(&file, &test).unwrap();
    let out = Command::new(promtool).args(["test", "rules"]).arg(&file).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool test rules on real scrapes failed:\n{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_shipped_alert_tests_pass() {
    let Some(promtool) = tool("promtool") else { return };
    for args in [["check", "rules", "deploy/prometheus/alerts.yaml"], ["test", "rules", "deploy/prometheus/alerts_test.yaml"]] {
        let out = Command::new(&promtool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
