//! DNS over TCP (RFC 7766), answered through the same answer path as UDP.
//!
//! - at most `max_connections` at once; one more is closed at once;
//! - a connection idle for `idle_timeout` is closed, and so is one that
//!   starts a message and does not finish it within the same time
//!   (slowloris);
//! - up to [`MAX_IN_FLIGHT_PER_CONNECTION`] queries of one connection are
//!   answered concurrently, each as soon as it is ready (RFC 7766 §6.2.1.1
//!   allows answers out of order; the message IDs pair them).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::debug;

use super::proxy::{self, Claim, Framing};
use crate::answer::{Client, Transport};
use crate::config::ProxyProtocol;
use crate::state::Shared;

/// Queries of one connection answered at once; more wait (back-pressure).
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 16;

/// Limits for TCP (docs/REFERENCE.md#limits).
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// Accepts connections on `listener` until `shutdown` turns true, then
/// waits (at most `grace`) for the connections' queries in flight.
pub async fn serve(
    listener: TcpListener,
    index: usize,
    shared: Arc<Shared>,
    limits: TcpLimits,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut conns = JoinSet::new();
    loop {
        let (stream, src) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "TCP accept failed");
                    // EMFILE and the like: back off rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shared.metrics.tcp_refused.inc();
            debug!(%src, "TCP connection limit reached: closing");
            drop(stream);
            continue;
        };
        let (shared, stop) = (shared.clone(), shutdown.clone());
        conns.spawn(async move {
            let m = shared.metrics.clone();
            m.tcp_connections.inc();
            let mode = shared.snapshot.load().listener_proxy.get(index).copied().unwrap_or_default();
            let mut stream = stream;
            if let Some(proxy) = read_proxy_header(&mut stream, mode, limits.idle_timeout, &shared).await {
                let client = Client { listener: index, src, proxy, transport: Transport::Tcp };
                connection(stream, client, shared, limits.idle_timeout, stop).await;
            }
            m.tcp_connections.dec();
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
}

/// Reads the PROXY v2 header a connection starts with, by the listener's
/// mode: the client it names (`Some(None)`: no header, or a LOCAL one), or
/// `None` to close the connection (counted): a malformed header, none
/// where one is required, or one not complete within `idle`.
async fn read_proxy_header(stream: &mut TcpStream, mode: ProxyProtocol, idle: Duration, shared: &Shared) -> Option<Option<IpAddr>> {
    if mode == ProxyProtocol::Off {
        return Some(None);
    }
    let work = async {
        let mut first = [0u8; proxy::HEADER_MIN];
        // Peek until the fixed part is here (or the stream shows it is no header).
        loop {
            let n = stream.peek(&mut first).await.ok()?;
            if n == 0 {
                return None;
            }
            match proxy::split(&first[..n]) {
                Framing::Bare => return Some(None),
                Framing::Malformed => return Some(Some(Err(()))),
                _ if n == first.len() => break,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        let mut header = vec![0u8; proxy::header_len(&first)];
        stream.read_exact(&mut header).await.ok()?;
        Some(Some(match proxy::split(&header) {
            Framing::Proxied(Claim::Client(c), _) => Ok(Some(c.ip())),
            Framing::Proxied(Claim::Local, _) => Ok(None),
            _ => Err(()),
        }))
    };
    let outcome = tokio::time::timeout(idle, work).await.ok().flatten();
    match outcome {
        Some(Some(Ok(claim))) => Some(claim),
        Some(None) if mode == ProxyProtocol::Optional => Some(None),
        _ => {
            shared.metrics.proxy_dropped.inc();
            None
        }
    }
}

async fn connection(stream: TcpStream, client: Client, shared: Arc<Shared>, idle: Duration, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT_PER_CONNECTION);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let mut framed = Vec::with_capacity(msg.len() + 2);
            framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
            framed.extend_from_slice(&msg);
            if wr.write_all(&framed).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    let mut queries = JoinSet::new();
    loop {
        // Idle: waiting for the next message to start.
        let len = tokio::select! {
            r = tokio::time::timeout(idle, rd.read_u16()) => match r {
                Ok(Ok(n)) => n as usize,
                _ => break,
            },
            _ = stopped(&mut stop) => break,
        };
        // Started: the whole message must follow within the same time.
        let mut buf = vec![0u8; len];
        match tokio::time::timeout(idle, rd.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        while queries.try_join_next().is_some() {}
        let (shared, tx) = (shared.clone(), tx.clone());
        queries.spawn(async move {
            if let Some(bytes) = shared.answer_bytes(client, &buf).await {
                let _ = tx.send(bytes).await;
            }
            drop(permit);
        });
    }
    // Let the queries already read finish, then close.
    while queries.join_next().await.is_some() {}
    drop(tx);
    let _ = writer.await;
}

/// Resolves once the shutdown flag is set (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
