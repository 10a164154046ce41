//! DNS over UDP, served here rather than by hickory-server's UDP loop,
//! which spawns a task for every datagram and routes each response through
//! a channel back to the socket's task (docs/PERFORMANCE.md: 9.3–10.1
//! µs of CPU per query with this loop against 11.2–11.3 with hickory's,
//! before the fast path and batching below brought it to ~6.5).
//!
//! Here each worker socket's task receives datagrams in batches
//! (`udp_mmsg`: recvmmsg/sendmmsg) and first offers each
//! to the fast path (`fast_path`: plain queries answered from local data
//! or a fresh cache entry, written straight into this loop's buffer).
//! Anything else is decoded with hickory-proto and runs the same handler
//! as TCP: answered inline when it completes without waiting, or on a
//! task of its own when it must wait (an upstream question, a full send
//! buffer), so the socket never stalls behind it.

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Instant;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::debug;

use super::udp_mmsg::{BATCH, RecvBatch, SendBatch};
use super::{DnsHandler, Sink};
use crate::metrics::rcode_label;

/// One query from decode to sent response; owns everything so it can move
/// to a task if it has to wait.
async fn respond(handler: DnsHandler, socket: Arc<UdpSocket>, req: Request) {
    let dst = req.src();
    handler.handle_request::<Sink, TokioTime>(&req, Sink::Udp { socket, dst }).await;
}

/// Whether answering `req` involves an upstream (or the cache in front of
/// it): a resolve of ~200 ns, done again by the handler.
fn goes_upstream(handler: &DnsHandler, req: &Request) -> bool {
    let Some(q) = req.queries.queries().first() else { return false };
    let snap = handler.shared.snapshot.load();
    let (view, _) = snap.view_for(Some(handler.listener), req.src().ip());
    crate::resolve::resolve(&snap, view, &q.name().into(), q.query_type(), false).upstream.is_some()
}

/// Serves one UDP socket until `shutdown` turns true.
pub async fn serve(socket: UdpSocket, handler: DnsHandler, mut shutdown: watch::Receiver<bool>) {
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    let mut rx = RecvBatch::default();
    let mut tx = SendBatch::default();
    let shared = handler.shared.clone();
    // Made once: a new shutdown future per wake-up registers and drops a
    // watch notification each time.
    let stop = super::tcp::stopped(&mut shutdown);
    tokio::pin!(stop);
    // (view, rcode, source) of each fast-path answer of a batch, counted
    // once the batch is sent; only the first `tx.len` are read.
    let mut answered: [(Option<crate::snapshot::View>, &'static str, &'static str); BATCH] = [(None, "", ""); BATCH];
    loop {
        tokio::select! {
            r = socket.readable() => if let Err(e) = r {
                debug!(error = %e, "UDP socket not readable");
                continue;
            },
            _ = &mut stop => break,
        };
        // One batch, then back through `readable()`: tokio's budget lets
        // the other tasks of this worker run between batches. A short
        // batch means the socket is drained: it is reported to tokio as
        // WouldBlock so readiness is cleared now (tokio keeps any newer
        // arrival), instead of costing one more empty recvmmsg per wake-up.
        let mut got = 0;
        let r = socket.try_io(Interest::READABLE, || {
            got = rx.recv(fd)?;
            if got < BATCH { Err(std::io::ErrorKind::WouldBlock.into()) } else { Ok(got) }
        });
        let n = match r {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && got > 0 => got,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // ICMP errors surface here on some systems; keep serving.
                debug!(error = %e, "UDP receive failed");
                continue;
            }
        };
        let started = Instant::now();
        let snap = shared.snapshot.load();
        tx.clear();
        for i in 0..n {
            let (bytes, src) = rx.get(i);
            // Nothing can be answered to port 0 or an unspecified address, and
            // under 12 bytes there is no header to answer to.
            let Some(src) = src.filter(|s| bytes.len() >= 12 && s.port() != 0 && !s.ip().is_unspecified()) else { continue };
            if !shared.config.query_log
                && let Some(out) = tx.next_buf()
                && let Some(a) = super::fast_path::answer(&shared, &snap, handler.listener, src.ip(), bytes, out, started)
            {
                answered[tx.len] = (Some(a.view), rcode_label(a.rcode), a.source);
                tx.push(src);
                continue;
            }
            general(&handler, &socket, bytes, src);
        }
        send_all(&socket, fd, &mut tx);
        // A fast-path query's time is its batch's, receipt to responses sent.
        let took = started.elapsed().as_secs_f64();
        for (view, rcode, source) in &answered[..tx.len] {
            shared.metrics.query_duration.observe(took);
            snap.count_query(&shared.metrics, *view, rcode, source);
        }
    }
}

/// Sends the batch's responses; what the socket cannot take now is sent
/// by a task of its own once there is room.
fn send_all(socket: &Arc<UdpSocket>, fd: std::os::fd::RawFd, tx: &mut SendBatch) {
    let mut sent = 0;
    while sent < tx.len {
        match socket.try_io(Interest::WRITABLE, || tx.send(fd, sent)) {
            Ok(m) => sent += m.max(1),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let rest: Vec<(Vec<u8>, SocketAddr)> = (sent..tx.len).map(|i| (tx.get(i).0.to_vec(), tx.get(i).1)).collect();
                let socket = socket.clone();
                tokio::spawn(async move {
                    for (bytes, dst) in rest {
                        let _ = socket.send_to(&bytes, dst).await;
                    }
                });
                return;
            }
            Err(e) => {
                // This response cannot go (e.g. no route back); the rest can.
                debug!(dst = %tx.get(sent).1, error = %e, "failed to send response");
                sent += 1;
            }
        }
    }
}

/// The general path for one datagram: decoded by hickory-proto, answered
/// by the handler shared with TCP.
fn general(handler: &DnsHandler, socket: &Arc<UdpSocket>, bytes: &[u8], src: SocketAddr) {
    let req = match Request::from_bytes(bytes.to_vec(), src, Protocol::Udp) {
        Ok(r) => r,
        Err(e) => {
            debug!(%src, error = %e, "undecodable UDP message: FORMERR");
            let _ = socket.try_send_to(&super::tcp::formerr(bytes), src);
            return;
        }
    };
    // Never answer a response (reflection loops).
    if req.metadata.message_type != hickory_proto::op::MessageType::Query {
        return;
    }
    // A question that goes upstream does socket work before it first
    // waits: straight to a task, so a flood of them cannot slow the
    // local answers queued behind it on this socket.
    if goes_upstream(handler, &req) {
        tokio::spawn(respond(handler.clone(), socket.clone(), req));
        return;
    }
    let mut fut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(respond(handler.clone(), socket.clone(), req));
    // Local answers finish on the first poll; whatever would still wait
    // (a full send buffer) continues on its own task, which polls it
    // again with a real waker.
    if fut.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending() {
        tokio::spawn(fut);
    }
}
