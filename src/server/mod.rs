//! hickory-server glue: binds every listener (UDP with one SO_REUSEPORT
//! socket per worker, plus TCP), serves until SIGTERM, then drains.
//!
//! Start-up runs in fixed phases — load data, bind everything, log every
//! bound address, serve — so a bad config or a busy port fails before a
//! single query is answered (exit 2).

pub mod fast_path;
pub mod handler;
pub mod tcp;
pub mod udp;
pub mod udp_mmsg;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::config::zones_dir::ZonesData;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
pub use handler::{DnsHandler, MAX_UDP_PAYLOAD, Shared};

/// How long SIGTERM waits for queries in flight before exiting anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Receive buffer asked for each UDP socket: bursts queue here instead of
/// being dropped by the kernel (the default is ~208 KiB).
pub const UDP_RECV_BUFFER: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind {proto} {addr}: {source}")]
    Bind { proto: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot write ready file {path}: {source}")]
    ReadyFile { path: PathBuf, source: std::io::Error },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("{problems} problem(s) in {}; run `pzdns check`", dir.display())]
    Data { problems: usize, dir: PathBuf },
}

/// The servers of all listeners, bound and ready.
pub struct Bound {
    /// UDP sockets (one per worker per listener), served by [`udp::serve`].
    udp: Vec<(tokio::net::UdpSocket, DnsHandler)>,
    /// TCP listeners with their listener's handler, served by [`tcp::serve`].
    tcp: Vec<(tokio::net::TcpListener, DnsHandler)>,
    /// The address each listener actually got (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    pub shared: Arc<Shared>,
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(false).ok();
    }
    // Best effort: the kernel caps it at net.core.rmem_max.
    s.set_recv_buffer_size(UDP_RECV_BUFFER).ok();
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(false).ok();
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Where a response goes: pzdns's one `ResponseHandler`, for its UDP and
/// TCP servers and the in-process path (`handler::answer_raw`).
#[derive(Clone)]
pub(crate) enum Sink {
    /// Sent to `dst` over a worker's UDP socket, in at most the client's
    /// limit (512 bytes without EDNS; the encoder drops records and sets TC).
    Udp { socket: Arc<tokio::net::UdpSocket>, dst: SocketAddr },
    /// Handed to a TCP connection's writer task.
    Tcp(tokio::sync::mpsc::Sender<Vec<u8>>),
    /// Kept for the caller.
    Capture(Arc<std::sync::Mutex<Option<Vec<u8>>>>),
}

#[async_trait::async_trait]
impl hickory_server::server::ResponseHandler for Sink {
    async fn send_response<'a>(
        &mut self,
        response: hickory_server::zone_handler::MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        >,
    ) -> Result<hickory_server::server::ResponseInfo, hickory_server::net::NetError> {
        let max = match self {
            Sink::Udp { .. } => response.edns().map_or(512, |e| e.max_payload()),
            _ => u16::MAX,
        };
        let mut bytes = Vec::with_capacity(512);
        let info = {
            let mut enc = hickory_proto::serialize::binary::BinEncoder::new(&mut bytes);
            enc.set_max_size(max);
            response.destructive_emit(&mut enc)?
        };
        match self {
            Sink::Udp { socket, dst } => {
                socket.send_to(&bytes, *dst).await?;
            }
            Sink::Tcp(tx) => tx.send(bytes).await.map_err(|_| hickory_server::net::NetError::from("TCP connection closed"))?,
            Sink::Capture(slot) => *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes),
        }
        Ok(info)
    }
}

/// `workers` UDP sockets and one TCP listener on the same port. With port
/// 0 the first UDP socket picks the port, which some TCP socket may already
/// hold (an outgoing connection's ephemeral port): then try another.
fn bind_pair(addr: SocketAddr, workers: usize) -> Result<(SocketAddr, Vec<std::net::UdpSocket>, std::net::TcpListener), ServeError> {
    let bind_err = |proto, addr, source| ServeError::Bind { proto, addr, source };
    let tries = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let first = udp_socket(addr).map_err(|e| bind_err("UDP", addr, e))?;
        let actual = first.local_addr().map_err(|e| bind_err("UDP", addr, e))?;
        let mut udp = vec![first];
        for _ in 1..workers.max(1) {
            udp.push(udp_socket(actual).map_err(|e| bind_err("UDP", actual, e))?);
        }
        match tcp_listener(actual) {
            Ok(tcp) => return Ok((actual, udp, tcp)),
            Err(e) => last = Some(bind_err("TCP", actual, e)),
        }
    }
    Err(last.unwrap_or_else(|| bind_err("TCP", addr, std::io::Error::other("no port"))))
}

/// Binds every listener of `cfg`: `workers` UDP sockets sharing one port
/// (SO_REUSEPORT lets the kernel spread datagrams over them) and one TCP
/// listener. Must run inside the tokio runtime.
pub fn bind(cfg: &ServerConfig, shared: Arc<Shared>, workers: usize) -> Result<Bound, ServeError> {
    let mut udp_sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
    let mut addrs = Vec::new();
    for (i, l) in cfg.listen.iter().enumerate() {
        let bind_err = |proto, addr, source| ServeError::Bind { proto, addr, source };
        let (actual, udp, tcp) = bind_pair(l.address, workers)?;
        for s in udp {
            let s = tokio::net::UdpSocket::from_std(s).map_err(|e| bind_err("UDP", actual, e))?;
            udp_sockets.push((s, DnsHandler { listener: i, shared: shared.clone() }));
        }
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| bind_err("TCP", actual, e))?;
        tcp_listeners.push((tcp, DnsHandler { listener: i, shared: shared.clone() }));
        match &l.vpc {
            Some(v) => {
                info!(address = %actual, udp_sockets = workers, vpc = %v.value, "listening on UDP and TCP (inbound endpoint)")
            }
            None => info!(address = %actual, udp_sockets = workers, "listening on UDP and TCP"),
        }
        addrs.push(actual);
    }
    Ok(Bound { udp: udp_sockets, tcp: tcp_listeners, addrs, shared })
}

/// Serves until SIGTERM or SIGINT, in phases: admin HTTP up (not ready),
/// data loaded (ready), DNS sockets bound, file watch started. SIGHUP,
/// the watch and `POST /reload` reload the zones directory.
pub async fn serve(cfg: ServerConfig, workers: usize, ready_file: Option<PathBuf>) -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;

    let metrics = Arc::new(Metrics::new());
    let empty =
        Snapshot::build(&cfg, ZonesData::default(), 0).map_err(|d| ServeError::Data { problems: d.len(), dir: cfg.zones_dir.clone() })?;
    let shared = Shared::new(cfg.clone(), empty, metrics);
    let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
    let mut admin_addr = None;
    if let Some(addr) = cfg.admin_listen {
        let l = crate::admin::bind(addr).await.map_err(|source| ServeError::Bind { proto: "HTTP", addr, source })?;
        let actual = l.local_addr().unwrap_or(addr);
        admin_addr = Some(actual);
        info!(address = %actual, "admin HTTP listening (/metrics /healthz /readyz /zones /explain, POST /reload)");
        let mut rx = admin_stopped.clone();
        tokio::spawn(crate::admin::serve(l, shared.clone(), async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }));
    }
    crate::reload::reload(&shared, "start").await.map_err(|d| ServeError::Data { problems: d.len(), dir: cfg.zones_dir.clone() })?;

    let mut bound = bind(&cfg, shared.clone(), workers)?;
    if let Some(path) = &ready_file {
        let mut text: String = bound.addrs.iter().map(|a| format!("{a}\n")).collect();
        if let Some(a) = admin_addr {
            text.push_str(&format!("admin={a}\n"));
        }
        std::fs::write(path, text).map_err(|source| ServeError::ReadyFile { path: path.clone(), source })?;
    }
    let (stop_tcp, tcp_stopped) = tokio::sync::watch::channel(false);
    let limits = tcp::TcpLimits { max_connections: cfg.tcp_max_connections, idle_timeout: cfg.tcp_idle_timeout };
    let mut tcp_tasks = tokio::task::JoinSet::new();
    for (l, h) in bound.tcp.drain(..) {
        tcp_tasks.spawn(tcp::serve(l, h, limits, tcp_stopped.clone(), SHUTDOWN_GRACE));
    }
    let mut udp_tasks = tokio::task::JoinSet::new();
    for (sock, h) in bound.udp.drain(..) {
        udp_tasks.spawn(udp::serve(sock, h, tcp_stopped.clone()));
    }
    crate::reload::spawn_watcher(shared.clone());
    info!(generation = shared.snapshot.load().generation, "serving");
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => { let _ = crate::reload::reload(&shared, "sighup").await; }
        }
    }
    info!("shutting down: no new queries, finishing those in flight");
    let _ = stop_tcp.send(true);
    while udp_tasks.join_next().await.is_some() {}
    // UDP queries still waiting on an upstream finish, within the grace time.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tcp_tasks.join_next().await.is_some() {}
        while shared.metrics.upstream_in_flight.get() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    if drained.is_err() {
        warn!("queries still in flight after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    let _ = stop_admin.send(true);
    info!("stopped");
    Ok(())
}
