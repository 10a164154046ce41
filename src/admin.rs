//! Admin HTTP (docs/REFERENCE.md#admin-http), loopback by default: `/metrics` (Prometheus
//! text), `/healthz`, `/readyz`, `/zones` (JSON), `/explain`, `POST /reload`.
//! It starts before the data is loaded, so `/readyz` can say "not yet".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hickory_proto::rr::{Name, RecordType};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::zones_dir::ZoneOrigin;
use crate::explain::{Asker, explain};
use crate::state::Shared;

/// The OpenMetrics text format that prometheus-client writes.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/zones", get(zones))
        .route("/explain", get(explain_handler))
        .route("/reload", post(reload))
        .with_state(shared)
}

/// Time a client has to send a request's headers, from the connection's
/// start or the end of its previous response (so an idle kept-alive
/// connection is closed after it too).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections at once; one more is closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Largest request body (no endpoint takes one); larger is 413.
pub const MAX_BODY: usize = 64 * 1024;
/// Read buffer of a connection: the longest request head (hyper's least).
pub const MAX_HEAD: usize = 16 * 1024;
/// A connection is asked to close after this long (once its request in
/// hand is answered), and closed [`CLOSE_GRACE`] later whatever it does:
/// a client that does not read its response cannot keep the slot.
pub const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(60);
pub const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// Serves the admin router on `listener` until `shutdown` resolves, with
/// the limits above.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = router(shared).layer(from_fn(refuse_large_bodies)).layer(DefaultBodyLimit::max(MAX_BODY));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        while conns.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        conns.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_HEAD);
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            if tokio::time::timeout(MAX_CONNECTION_LIFE, conn.as_mut()).await.is_err() {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
            }
            drop(slot);
        });
    }
}

/// 413 for a request that says its body is over [`MAX_BODY`] (a body
/// that does not say is never read: no endpoint reads one).
async fn refuse_large_bodies(req: Request, next: Next) -> Response {
    let len = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if len.is_some_and(|n| n > MAX_BODY as u64) {
        return (StatusCode::PAYLOAD_TOO_LARGE, format!("request bodies are limited to {MAX_BODY} bytes\n")).into_response();
    }
    next.run(req).await
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    s.metrics.cache_entries.set(s.forwarder.cache.entry_count() as i64);
    s.metrics.cache_bytes.set(s.forwarder.cache.bytes() as i64);
    s.metrics.upstream_waiters.set(s.forwarder.waiting() as i64);
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], s.metrics.encode()).into_response()
}

fn unix(t: Option<std::time::SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs())
}

/// 200 once data is loaded (a later failed reload does not change that:
/// the old data still serves, and the body says what failed); 503 before.
async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let st = s.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if st.generation == 0 {
        let body = match &st.last_failure {
            Some(f) => format!("not ready: the data could not be loaded:\n{}\n", f.problems.join("\n")),
            None => "not ready: loading data\n".to_string(),
        };
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    let mut body = format!("ready: generation {}\n", st.generation);
    if let Some(f) = &st.last_failure {
        body.push_str(&format!(
            "last reload failed ({}, at {}): generation {} keeps serving\n{}\n",
            f.trigger,
            unix(Some(f.at)).unwrap_or(0),
            st.generation,
            f.problems.join("\n")
        ));
    }
    (StatusCode::OK, body).into_response()
}

async fn zones(State(s): State<Arc<Shared>>) -> Response {
    let snap = s.snapshot.load_full();
    let st = s.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let zones: Vec<_> = snap
        .zones
        .iter()
        .map(|z| {
            let (kind, endpoint) = match &z.kind {
                ZoneOrigin::File => ("zone", None),
                ZoneOrigin::Endpoint(id) => ("endpoint", Some(id.as_str())),
            };
            json!({
                "name": z.origin.to_string(),
                "kind": kind,
                "endpoint": endpoint,
                "file": z.path.display().to_string(),
                "vpcs": z.vpcs.iter().map(|v| snap.vpcs[*v as usize].id.as_str()).collect::<Vec<_>>(),
                "records": z.record_count,
                "recursive_proxy": z.recursive_proxy,
            })
        })
        .collect();
    let vpcs: Vec<_> = snap
        .vpcs
        .iter()
        .map(|v| json!({"id": v.id, "region": v.region, "cidrs": v.cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>()}))
        .collect();
    let body = json!({
        "generation": st.generation,
        "loaded_at": unix(st.loaded_at),
        "load_ms": st.load_ms,
        "git_commit": st.git_commit,
        "zones_dir": snap.zones_dir.display().to_string(),
        "stats": {"zones": snap.stats.zones, "endpoint_names": snap.stats.endpoint_names, "records": snap.stats.records, "vpcs": snap.stats.vpcs, "endpoints": snap.stats.endpoints},
        "last_reload_failure": st.last_failure.as_ref().map(|f| json!({"at": unix(Some(f.at)), "trigger": f.trigger, "problems": f.problems})),
        "vpcs": vpcs,
        "zones": zones,
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// `/explain?vpc=ID|from=IP&name=NAME&type=TYPE`: the same text as `pzdns explain`.
async fn explain_handler(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m + "\n").into_response();
    let asker = match (q.get("vpc"), q.get("from")) {
        (Some(v), None) => Asker::Vpc(v.clone()),
        (None, Some(ip)) => match ip.parse() {
            Ok(ip) => Asker::From(ip),
            Err(_) => return bad(format!("from=`{ip}` is not an IP address")),
        },
        _ => return bad("give exactly one of vpc=ID or from=IP".into()),
    };
    let Some(name) = q.get("name") else { return bad("name= is required".into()) };
    let name = match Name::from_str(name) {
        Ok(mut n) => {
            n.set_fqdn(true);
            n
        }
        Err(e) => return bad(format!("name=`{name}`: {e}")),
    };
    let qtype = match q.get("type").map(|t| crate::explain::parse_type(t)) {
        None => RecordType::A,
        Some(Some(t)) => t,
        Some(None) => return bad("type= is not a record type (e.g. A, AAAA, TXT, TYPE65)".into()),
    };
    let snap = s.snapshot.load_full();
    match explain(&snap, &asker, &name, qtype) {
        Ok(text) => (StatusCode::OK, text).into_response(),
        Err(e) => bad(e),
    }
}

async fn reload(State(s): State<Arc<Shared>>) -> Response {
    match crate::reload::reload(&s, "api").await {
        Ok(generation) => (StatusCode::OK, format!("reloaded: generation {generation}\n")).into_response(),
        Err(d) => (StatusCode::UNPROCESSABLE_ENTITY, format!("rejected, the previous data keeps serving:\n{d}")).into_response(),
    }
}
