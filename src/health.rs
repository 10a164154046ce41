//! Health checks (SPEC §10), run from pzdns itself: each target of the
//! snapshot in force is checked every `health_checks.interval` (spread
//! over the interval at random, with jitter), at most
//! `health_checks.concurrency` at once, each within `timeout`. Results
//! move the target's state in [`HealthTable`] after `failure_threshold`
//! or `success_threshold` in a row; the answer path reads that state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::config::routing::{CheckKind, HealthSettings, Target};
use crate::metrics::{HealthCheckLabels, HealthTargetLabels, HealthTransitionLabels, Metrics};
use crate::snapshot::health::{Health, HealthTable, LastResult};
use crate::state::Shared;

/// The longest wait between two looks at what is due.
const MAX_NAP: Duration = Duration::from_secs(1);

/// Checks the targets of `shared`'s snapshot in force until dropped
/// (the task is aborted at shutdown).
pub async fn run(shared: Arc<Shared>) {
    let table = shared.snapshot.load().health.clone();
    let metrics = shared.metrics.clone();
    let mut due: HashMap<u32, (Target, Instant)> = HashMap::new();
    let mut concurrency = 0usize;
    let mut permits = Arc::new(Semaphore::new(0));
    loop {
        let settings = shared.config.load().health.clone();
        if settings.concurrency != concurrency {
            concurrency = settings.concurrency;
            permits = Arc::new(Semaphore::new(concurrency));
        }
        let now = Instant::now();
        let live = table.live();
        // Targets gone from the data: forgotten, and their series with them.
        due.retain(|id, (t, _)| {
            let keep = live.iter().any(|(i, lt)| i == id && lt == t);
            if !keep {
                metrics.health_target_state.remove(&HealthTargetLabels { target: t.to_string() });
            }
            keep
        });
        for (id, t) in live {
            due.entry(id).or_insert_with(|| {
                metrics.health_target_state.get_or_create(&HealthTargetLabels { target: t.to_string() }).set(-1);
                // Spread new targets over the interval.
                (t, now + settings.interval.mul_f64(rand::random::<f64>()))
            });
        }
        for (id, (t, at)) in due.iter_mut() {
            if *at > now {
                continue;
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else { break };
            // ±10% jitter, so that targets do not fall into step.
            *at = now + settings.interval.mul_f64(0.9 + 0.2 * rand::random::<f64>());
            let (id, t, table, metrics, s) = (*id, t.clone(), table.clone(), metrics.clone(), settings.clone());
            tokio::spawn(async move {
                let result = check(&t, s.timeout).await;
                drop(permit);
                record(&table, &metrics, id, &t, result, &s);
            });
        }
        let next = due.values().map(|(_, at)| *at).min().unwrap_or(now + MAX_NAP);
        let nap = next.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(10), MAX_NAP);
        tokio::time::sleep(nap).await;
    }
}

fn record(table: &HealthTable, metrics: &Metrics, id: u32, t: &Target, result: LastResult, s: &HealthSettings) {
    let ok = result.ok;
    metrics.health_checks.get_or_create(&HealthCheckLabels { result: if ok { "ok" } else { "failed" } }).inc();
    let detail = result.detail.clone();
    let Some(change) = table.report(id, t, result, s.failure_threshold, s.success_threshold) else { return };
    let value = match change.to {
        Health::Healthy => 1,
        Health::Unhealthy => 0,
        Health::Unknown => -1,
    };
    metrics.health_target_state.get_or_create(&HealthTargetLabels { target: t.to_string() }).set(value);
    metrics.health_transitions.get_or_create(&HealthTransitionLabels { to: change.to.label() }).inc();
    match change.to {
        Health::Unhealthy => {
            warn!(target: "pzdns::health", target_addr = %t, "{t} is unhealthy ({detail}): left out of answers while its set has others")
        }
        _ => info!(target: "pzdns::health", target_addr = %t, "{t} is {} ({detail})", change.to.label()),
    }
}

/// One check of `t`, within `timeout`.
pub async fn check(t: &Target, timeout: Duration) -> LastResult {
    let started = Instant::now();
    let addr = SocketAddr::new(t.ip, t.check.port);
    let outcome = tokio::time::timeout(timeout, async {
        match &t.check.kind {
            CheckKind::Tcp => TcpStream::connect(addr).await.map(|_| "connected".to_string()).map_err(|e| format!("connect: {e}")),
            CheckKind::Http(path) => http(addr, path).await,
            CheckKind::Dns => dns(addr).await,
        }
    })
    .await;
    let (ok, detail) = match outcome {
        Ok(Ok(d)) => (true, d),
        Ok(Err(e)) => (false, e),
        Err(_) => (false, format!("no result within {timeout:?}")),
    };
    let detail = format!("{detail} in {} ms", started.elapsed().as_millis());
    LastResult { ok, detail, at: SystemTime::now() }
}

/// `GET path`: a 2xx or 3xx status is healthy.
async fn http(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let host = match addr.ip() {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pzdns-health\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    // The status line is all that is read.
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let k = s.read(&mut buf[n..]).await.map_err(|e| format!("read: {e}"))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let line = std::str::from_utf8(&buf[..n]).unwrap_or("");
    let status = line.strip_prefix("HTTP/1.").and_then(|r| r.get(2..5)).and_then(|c| c.parse::<u16>().ok());
    match status {
        Some(c @ 200..=399) => Ok(format!("HTTP {c}")),
        Some(c) => Err(format!("HTTP {c}")),
        None => Err("no HTTP status line".to_string()),
    }
}

/// A question for the root's NS: any reply is healthy.
async fn dns(addr: SocketAddr) -> Result<String, String> {
    let local: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let sock = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    sock.connect(addr).await.map_err(|e| e.to_string())?;
    let id: u16 = rand::random();
    let q = crate::upstream::query_bytes(id, &Name::root(), RecordType::NS, false, false).map_err(|e| e.to_string())?;
    sock.send(&q).await.map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 512];
    loop {
        let n = sock.recv(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
        if n >= 12 && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0 {
            return Ok(format!("DNS reply, rcode {}", buf[3] & 0x0f));
        }
    }
}
