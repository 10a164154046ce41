//! Sockets: binds every listener (UDP with one SO_REUSEPORT socket per
//! worker, plus TCP; TCP alone for DNS over TLS and over HTTPS) and
//! serves them through the answer path. A port that
//! another socket holds already, SO_REUSEPORT or not, fails the bind.
//! Start-up, signals and the drain are `app`'s.

pub mod doh;
pub mod proxy;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod udp_mmsg;

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::info;

use crate::config::{ListenTransport, ServerConfig};

/// Receive buffer asked for each UDP socket: bursts queue here instead of
/// being dropped by the kernel (the default is ~208 KiB).
pub const UDP_RECV_BUFFER: usize = 4 * 1024 * 1024;

/// A listener that cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {proto} {addr}: {source}{}", bind_hint(source, addr))]
pub struct BindError {
    pub proto: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// How to get past the usual reasons a bind fails.
fn bind_hint(e: &std::io::Error, addr: &SocketAddr) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            "; ports below 1024 need the capability CAP_NET_BIND_SERVICE: `setcap cap_net_bind_service=+ep` on the binary, \
             AmbientCapabilities=CAP_NET_BIND_SERVICE under systemd, or the sysctl net.ipv4.ip_unprivileged_port_start={}",
            addr.port()
        ),
        std::io::ErrorKind::AddrInUse if addr.port() == 5353 => {
            "; port 5353 is mDNS, which avahi holds on most desktops: listen on another port (--listen 127.0.0.1:5300)".into()
        }
        _ => String::new(),
    }
}

/// The servers of all listeners, bound and ready.
pub struct Bound {
    /// UDP sockets (one per worker per listener) with their listener's
    /// index, served by [`udp::serve`].
    pub udp: Vec<(tokio::net::UdpSocket, usize)>,
    /// TCP listeners with their listener's index, served by [`tcp::serve`].
    pub tcp: Vec<(tokio::net::TcpListener, usize)>,
    /// The address each listener actually got (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
}

/// A UDP socket bound to `addr`. The first socket of a listener is bound
/// without SO_REUSEPORT, so that its bind fails if any other socket holds
/// the port, even one with SO_REUSEPORT of another process of the same
/// user (which the kernel would otherwise let share the port and its
/// queries); SO_REUSEPORT is set once it is bound, and the workers'
/// sockets join it.
fn udp_socket(addr: SocketAddr, first: bool) -> std::io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if !first {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(false).ok();
    }
    // Best effort: the kernel caps it at net.core.rmem_max.
    s.set_recv_buffer_size(UDP_RECV_BUFFER).ok();
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    if first {
        s.set_reuse_port(true)?;
    }
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

/// `workers` UDP sockets and one TCP listener on the same port. With port
/// 0 the first UDP socket picks the port, which some TCP socket may already
/// hold (an outgoing connection's ephemeral port): then try another.
fn bind_pair(addr: SocketAddr, workers: usize) -> Result<(SocketAddr, Vec<std::net::UdpSocket>, std::net::TcpListener), BindError> {
    let bind_err = |proto, addr, source| BindError { proto, addr, source };
    let tries = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let first = udp_socket(addr, true).map_err(|e| bind_err("UDP", addr, e))?;
        let actual = first.local_addr().map_err(|e| bind_err("UDP", addr, e))?;
        let mut udp = vec![first];
        for _ in 1..workers.max(1) {
            udp.push(udp_socket(actual, false).map_err(|e| bind_err("UDP", actual, e))?);
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
pub fn bind(cfg: &ServerConfig, workers: usize) -> Result<Bound, BindError> {
    let mut udp_sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
    let mut addrs = Vec::new();
    for (i, l) in cfg.listen.iter().enumerate() {
        let bind_err = |proto, addr, source| BindError { proto, addr, source };
        if l.transport != ListenTransport::UdpTcp {
            let tcp = tcp_listener(l.address).map_err(|e| bind_err("TCP", l.address, e))?;
            let actual = tcp.local_addr().map_err(|e| bind_err("TCP", l.address, e))?;
            let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| bind_err("TCP", actual, e))?;
            tcp_listeners.push((tcp, i));
            let what = if l.transport == ListenTransport::Tls { "DNS over TLS" } else { "DNS over HTTPS" };
            match &l.vpc {
                Some(v) => info!(address = %actual, vpc = %v.value, "listening for {what} (inbound endpoint)"),
                None => info!(address = %actual, "listening for {what}"),
            }
            addrs.push(actual);
            continue;
        }
        let (actual, udp, tcp) = bind_pair(l.address, workers)?;
        for s in udp {
            let s = tokio::net::UdpSocket::from_std(s).map_err(|e| bind_err("UDP", actual, e))?;
            udp_sockets.push((s, i));
        }
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| bind_err("TCP", actual, e))?;
        tcp_listeners.push((tcp, i));
        match &l.vpc {
            Some(v) => {
                info!(address = %actual, udp_sockets = workers, vpc = %v.value, "listening on UDP and TCP (inbound endpoint)")
            }
            None => info!(address = %actual, udp_sockets = workers, "listening on UDP and TCP"),
        }
        addrs.push(actual);
    }
    Ok(Bound { udp: udp_sockets, tcp: tcp_listeners, addrs })
}
