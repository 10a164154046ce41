//! Running the server: start-up in fixed phases (admin up, data loaded,
//! sockets bound, watch started), then serving until the shutdown future
//! completes (SIGTERM or SIGINT for `pzdns serve`), then the drain. A bad
//! config or a busy port fails before a single query is answered (exit 2).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::config::zones_dir::ZonesData;
use crate::config::{ListenTransport, ServerConfig};
use crate::metrics::Metrics;
use crate::server::{self, BindError, tcp, tls, udp};
use crate::state::Shared;

/// How long SIGTERM waits for queries in flight before exiting anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long the exit waits for dnstap to write what is queued and end its stream.
pub const DNSTAP_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot write ready file {path}: {source}")]
    ReadyFile { path: PathBuf, source: std::io::Error },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("{problems} problem(s) in {}; run `pzdns check`", dir.display())]
    Data { problems: usize, dir: PathBuf },
    #[error(transparent)]
    Dnstap(#[from] crate::dnstap::StartError),
    #[error("listener {addr}: TLS certificate: {source}")]
    Tls { addr: std::net::SocketAddr, source: crate::server::tls::CertError },
}

/// SIGTERM or SIGINT, as a future for [`run`]'s `shutdown`. The handlers are
/// installed here, at once, so a signal that comes during start-up is not
/// lost (it stops the server as soon as it serves). Call it inside the runtime.
pub fn termination_signal() -> Result<impl Future<Output = ()>, ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Serves until `shutdown` completes, in phases: admin HTTP up (not ready),
/// data loaded (ready), DNS sockets bound, file watch started; then stops
/// listening, drains (at most [`SHUTDOWN_GRACE`]) and returns. `pzdns serve`
/// passes [`termination_signal`]; a test can pass any future and run a whole
/// server in its own process. SIGHUP, the watch and `POST /reload` reload
/// the zones directory.
pub async fn run(
    cfg: ServerConfig,
    workers: usize,
    ready_file: Option<PathBuf>,
    source: Option<crate::state::ConfigSource>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;

    let metrics = Arc::new(Metrics::new());
    let data_error = |d: crate::config::Diagnostics| ServeError::Data { problems: d.len(), dir: cfg.zones_dir.clone() };
    let empty = crate::loader::build(&cfg, ZonesData::default(), 0).map_err(data_error)?;
    let shared = Shared::with_source(cfg.clone(), empty, metrics, source);
    if let Some(settings) = &cfg.dnstap {
        shared.set_dnstap(crate::dnstap::Dnstap::start(settings, &shared.metrics)?);
        info!(output = %settings.output, "dnstap on");
    }
    let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
    let mut admin_addr = None;
    if let Some(addr) = cfg.admin_listen {
        let l = crate::admin::bind(addr).await.map_err(|source| BindError { proto: "HTTP", addr, source })?;
        let actual = l.local_addr().unwrap_or(addr);
        admin_addr = Some(actual);
        info!(address = %actual, "admin HTTP listening (/metrics /healthz /readyz /zones /explain /cache, POST /reload /cache/flush)");
        let mut rx = admin_stopped.clone();
        tokio::spawn(crate::admin::serve(l, shared.clone(), async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }));
    }
    crate::reload::reload(&shared, "start").await.map_err(data_error)?;

    // Certificates before sockets: one that cannot serve stops the start.
    let mut kinds = Vec::with_capacity(cfg.listen.len());
    for l in &cfg.listen {
        kinds.push(match (l.transport, &l.tls) {
            (ListenTransport::Tls | ListenTransport::Https, Some(files)) => {
                let certs = tls::Certs::load(files, l.transport).map_err(|source| ServeError::Tls { addr: l.address, source })?;
                if l.transport == ListenTransport::Tls { tcp::Stream::Tls(certs) } else { tcp::Stream::Https(certs) }
            }
            _ => tcp::Stream::Tcp,
        });
    }
    let mut bound = server::bind(&cfg, workers)?;
    let _ = shared.recorder.listeners.set(bound.addrs.clone());
    let (stop_dns, dns_stopped) = tokio::sync::watch::channel(false);
    let mut tcp_tasks = tokio::task::JoinSet::new();
    for (l, listener) in bound.tcp.drain(..) {
        let kind = kinds[listener].clone();
        tcp_tasks.spawn(tcp::serve(l, listener, kind, shared.clone(), dns_stopped.clone(), SHUTDOWN_GRACE));
    }
    let certs: Vec<_> = kinds
        .iter()
        .filter_map(|k| match k {
            tcp::Stream::Tls(c) | tcp::Stream::Https(c) => Some(c.clone()),
            tcp::Stream::Tcp => None,
        })
        .collect();
    let cert_watch = (!certs.is_empty()).then(|| tokio::spawn(tls::watch(certs, shared.metrics.clone())));
    let mut udp_tasks = tokio::task::JoinSet::new();
    for (sock, listener) in bound.udp.drain(..) {
        udp_tasks.spawn(udp::serve(sock, listener, shared.clone(), dns_stopped.clone()));
    }
    crate::reload::spawn_watcher(shared.clone());
    // Ready once everything serves and the watch is on: a change made as
    // soon as the ready file appears is seen.
    if let Some(path) = &ready_file {
        let mut text: String = bound.addrs.iter().map(|a| format!("{a}\n")).collect();
        if let Some(a) = admin_addr {
            text.push_str(&format!("admin={a}\n"));
        }
        std::fs::write(path, text).map_err(|source| ServeError::ReadyFile { path: path.clone(), source })?;
    }
    // Events counted but not yet logged get their line once their interval is over.
    let flusher = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                shared.metrics.events.flush();
                shared.metrics.upstream_log.flush();
            }
        })
    };
    let checker = tokio::spawn(crate::health::run(shared.clone()));
    info!(generation = shared.snapshot.load().generation, "serving");
    // Secondaries hear of every zone at start: a change made while pzdns was down reaches them.
    crate::transfer::notify::spawn(
        crate::transfer::notify::after_load(None, &shared.snapshot.load(), &shared.metrics),
        shared.metrics.clone(),
    );
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = hup.recv() => { let _ = crate::reload::reload(&shared, "sighup").await; }
        }
    }
    info!("shutting down: no new queries, finishing those in flight");
    let _ = stop_dns.send(true);
    while udp_tasks.join_next().await.is_some() {}
    // UDP queries still waiting on an upstream finish, within the grace time.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tcp_tasks.join_next().await.is_some() {}
        shared.waiting.drained().await;
    })
    .await;
    if drained.is_err() {
        warn!("queries still in flight after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    let _ = stop_admin.send(true);
    if let Some(tap) = shared.recorder.dnstap.get().cloned() {
        // Queued messages are written and the stream ended (STOP).
        let ended = tokio::task::spawn_blocking(move || tap.shutdown(DNSTAP_GRACE)).await.unwrap_or(false);
        if !ended {
            warn!("dnstap: the stream did not end within {DNSTAP_GRACE:?}");
        }
    }
    flusher.abort();
    checker.abort();
    if let Some(w) = cert_watch {
        w.abort();
    }
    shared.metrics.events.flush();
    shared.metrics.upstream_log.flush();
    // The ready file says the server is up: not any more.
    if let Some(path) = &ready_file {
        let _ = std::fs::remove_file(path);
    }
    info!("stopped");
    Ok(())
}
