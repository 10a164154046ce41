//! Admin HTTP (docs/REFERENCE.md#admin-http), loopback by default: `/metrics` (Prometheus
//! text), `/healthz`, `/readyz`, `/zones` (JSON), `/explain`, `POST /reload`.
//! It starts before the data is loaded, so `/readyz` can say "not yet".
//! With `admin.token_file`, every request but `/healthz` and `/readyz`
//! needs `Authorization: Bearer <token>` (docs/REFERENCE.md#admin-http).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hickory_proto::rr::{Name, RecordType};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::zones_dir::ZoneOrigin;
use crate::explain::{Asker, explain_with};
use crate::state::Shared;

/// The OpenMetrics text format that prometheus-client writes.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format, for scrapers that do not ask for OpenMetrics.
const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Most cache entries `GET /cache` lists at once (the count says how many there are).
pub const MAX_CACHE_DUMP: usize = 100_000;

/// The admin routes, behind the token check when a token is configured.
pub fn router(shared: Arc<Shared>) -> Router {
    routes(shared.clone()).layer(from_fn_with_state(shared, require_token))
}

fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/zones", get(zones))
        .route("/explain", get(explain_handler))
        .route("/reload", post(reload))
        .route("/cache", get(cache_dump))
        .route("/cache/flush", post(cache_flush))
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

/// Probes a supervisor or a load balancer sends without credentials.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// With a token configured (read again with the config on every reload),
/// 401 for a request to anything but [`OPEN_PATHS`] that does not carry it
/// as `Authorization: Bearer <token>`.
async fn require_token(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let Some(token) = s.config.load().admin_token.clone() else { return next.run(req).await };
    if OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| bearer(v.as_bytes()));
    if given.is_some_and(|g| token.matches(g)) {
        return next.run(req).await;
    }
    let why = if given.is_some() { "the bearer token is wrong" } else { "this needs `Authorization: Bearer <token>`" };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"pzdns admin\"")],
        format!("401 unauthorized: {why} (the token is in the file admin.token_file names)\n"),
    )
        .into_response()
}

/// The credentials of an `Authorization: Bearer …` value (the scheme is
/// case-insensitive, RFC 9110 §11.1).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(rest.trim_ascii())
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

/// `/metrics`: OpenMetrics when the scraper accepts it (Prometheus asks
/// for it first), else the Prometheus text format 0.0.4.
async fn metrics(State(s): State<Arc<Shared>>, headers: axum::http::HeaderMap) -> Response {
    s.metrics.cache_entries.set(s.forwarder.cache.entry_count() as i64);
    s.metrics.cache_bytes.set(s.forwarder.cache.bytes() as i64);
    s.metrics.upstream_waiters.set(s.forwarder.waiting() as i64);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accepts_openmetrics(accept) {
        ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], s.metrics.encode()).into_response()
    } else {
        ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], s.metrics.encode_text()).into_response()
    }
}

/// Whether an Accept header takes OpenMetrics (with a quality above 0).
pub fn accepts_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let mut it = part.split(';').map(str::trim);
        let media = it.next().unwrap_or("");
        let q = it.find_map(|p| p.strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
        media.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
    })
}

fn unix(t: Option<std::time::SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs())
}

/// A time as RFC 3339 in UTC, to the second (`2026-11-29T23:40:00Z`).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
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
    let mut body = format!("ready: generation {}", st.generation);
    if let Some(at) = st.loaded_at {
        body.push_str(&format!(", loaded {} ({} ms)", rfc3339(at), st.load_ms));
    }
    if let Some(c) = &st.git_commit {
        body.push_str(&format!(", commit {c}"));
        // The data served is not that commit's: say so where it is named.
        body.push_str(match st.git_dirty {
            Some(true) => " with local changes (dirty)",
            Some(false) => "",
            None => " (local changes not checked: no answer from git status)",
        });
    }
    body.push('\n');
    if let Some(f) = &st.last_failure {
        body.push_str(&format!(
            "last reload failed ({}, at {}): generation {} keeps serving\n{}\n",
            f.trigger,
            rfc3339(f.at),
            st.generation,
            f.problems.join("\n")
        ));
    }
    for what in &st.restart_needed {
        body.push_str(&format!("restart needed: {what}\n"));
    }
    (StatusCode::OK, body).into_response()
}

/// A name given to `/cache` or `/cache/flush`, as a cache key's name part.
fn name_key(text: &str) -> Result<crate::dns::names::KeyBuf, String> {
    let mut n = Name::from_str(text).map_err(|e| format!("`{text}` is not a domain name: {e}"))?;
    n.set_fqdn(true);
    Ok(crate::dns::names::KeyBuf::new(&n))
}

/// `GET /cache[?name=N]`: the cached answers, as master-file lines under a
/// comment per entry (type asked, DO, rcode, TTL left, stale or not).
async fn cache_dump(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let only = match q.get("name").map(|n| name_key(n)) {
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, e + "\n").into_response(),
        Some(Ok(k)) => Some(k),
        None => None,
    };
    let now = std::time::Instant::now();
    let mut entries = s.forwarder.cache.entries();
    if let Some(k) = &only {
        entries.retain(|(key, _)| key.name_key() == k.key());
    }
    entries.sort_by(|a, b| a.0.name_key().cmp(b.0.name_key()).then(u16::from(a.0.qtype()).cmp(&u16::from(b.0.qtype()))));
    let total = entries.len();
    let mut out = format!("; {total} cached answer(s)\n");
    for (key, e) in entries.iter().take(MAX_CACHE_DUMP) {
        let name = crate::dns::names::key_to_name(key.name_key());
        let left = i64::from(e.ttl) - i64::from(e.age(now));
        let state = if left > 0 { format!("expires in {left}s") } else { format!("stale for {}s", -left) };
        let dnssec = match e.dnssec() {
            crate::dnssec::Status::Unchecked => String::new(),
            s => format!(" dnssec={}", s.label()),
        };
        out.push_str(&format!(
            "; {name} {} DO={} rcode={} {state}{dnssec}\n",
            key.qtype(),
            u8::from(key.dnssec_ok()),
            crate::explain::rcode_name(crate::answer::response_code(u16::from(e.rcode))),
        ));
        for section in [e.answers(), e.authorities(), e.additionals()] {
            for r in e.aged(now, &section) {
                out.push_str(&format!("{r}\n"));
            }
        }
    }
    if total > MAX_CACHE_DUMP {
        out.push_str(&format!("; … {} more not listed (ask for one name with ?name=)\n", total - MAX_CACHE_DUMP));
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response()
}

/// `POST /cache/flush?name=N | suffix=D | all`: removes those answers.
async fn cache_flush(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m + "\n").into_response();
    let picked = [q.contains_key("name"), q.contains_key("suffix"), q.contains_key("all")].iter().filter(|b| **b).count();
    if picked != 1 {
        return bad("give exactly one of name=NAME, suffix=DOMAIN or all".into());
    }
    let (n, what) = if let Some(name) = q.get("name") {
        let k = match name_key(name) {
            Ok(k) => k,
            Err(e) => return bad(e),
        };
        (s.forwarder.cache.flush(|key| key == k.key()), format!("for {name}"))
    } else if let Some(d) = q.get("suffix") {
        let k = match name_key(d) {
            Ok(k) => k,
            Err(e) => return bad(e),
        };
        (s.forwarder.cache.flush(|key| crate::dns::names::key_is_under(key, k.key())), format!("at or under {d}"))
    } else {
        (s.forwarder.cache.flush(|_| true), "in all".to_string())
    };
    tracing::info!(flushed = n, "cache flushed {what}");
    (StatusCode::OK, format!("flushed {n} cached answer(s) {what}\n")).into_response()
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
                "health": z.health_ids.iter().filter_map(|&id| snap.health.describe(id)).map(|(slot, state)| json!({
                    "target": slot.target.to_string(),
                    "state": state.label(),
                    "since": unix(slot.since),
                    "last": slot.last.as_ref().map(|l| json!({"ok": l.ok, "detail": l.detail, "at": unix(Some(l.at))})),
                })).collect::<Vec<_>>(),
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
        // true: files under zones_dir differ from git_commit; null: not known (no git), or no commit.
        "git_dirty": st.git_commit.as_ref().and(st.git_dirty),
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
    // Each upstream part as the cache holds it now, with its validation status.
    let note = |n: &Name, t: RecordType, route: u64| {
        let now = std::time::Instant::now();
        let validating = s.forwarder.validating();
        let found: Vec<String> = [false, true]
            .into_iter()
            .filter_map(|dnssec_ok| s.forwarder.cached(n, t, dnssec_ok, route).map(|e| (dnssec_ok, e)))
            .map(|(dnssec_ok, e)| crate::explain::cached_answer(dnssec_ok, &e, now, validating))
            .collect();
        if !found.is_empty() {
            return found;
        }
        let when =
            if validating { "validated when it arrives (resolver.dnssec: validate)" } else { "not validated (resolver.dnssec: off)" };
        vec![format!("not in the cache: asked on the next query, {when}")]
    };
    match explain_with(&snap, &asker, &name, qtype, &note) {
        Ok(mut text) if snap.root_hints.is_some() => {
            // Recursive mode: the delegations the server holds for the name now.
            use std::fmt::Write;
            let path = s.forwarder.delegation_path(&name);
            let _ = writeln!(text, "delegations cached above {name} (recursive mode; the root's servers are the hints):");
            if path.is_empty() {
                let _ = writeln!(text, "  none: the next resolution starts at the root");
            }
            for (zone, servers) in path {
                let list: Vec<String> = servers
                    .iter()
                    .map(|(ns, addrs)| {
                        let ns = ns.as_ref().map_or_else(|| "?".to_string(), |n| n.to_string());
                        if addrs.is_empty() {
                            format!("{ns} (no glue)")
                        } else {
                            format!("{ns} {}", addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "))
                        }
                    })
                    .collect();
                let _ = writeln!(text, "  {zone} → {}", list.join(", "));
            }
            (StatusCode::OK, text).into_response()
        }
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
