//! DNS over UDP, served here rather than by hickory-server's UDP loop,
//! which spawns a task for every datagram and routes each response through
//! a channel back to the socket's task. Measured (docs/PERFORMANCE.md):
//! pzdns's own work per local answer is ~1.7 µs in-process, while the
//! server spent ~9.7 µs of CPU per query under load.
//!
//! Here each worker socket's task receives a datagram and first offers it
//! to the fast path (`fast_path`: plain queries answered from local data
//! or a fresh cache entry, written straight into this loop's buffer).
//! Anything else is decoded with hickory-proto and runs the same handler
//! as TCP: answered inline when it completes without waiting, or on a
//! task of its own when it must wait (an upstream question, a full send
//! buffer), so the socket never stalls behind it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Instant;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::debug;

use super::{DnsHandler, Sink};
use crate::metrics::rcode_label;

/// Largest datagram read (EDNS clients rarely send more than a few hundred bytes).
const RECV_BUFFER: usize = 4096;

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
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut out = Vec::with_capacity(usize::from(super::MAX_UDP_PAYLOAD));
    let shared = handler.shared.clone();
    loop {
        let (n, src) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors surface here on some systems; keep serving.
                    debug!(error = %e, "UDP receive failed");
                    continue;
                }
            },
            _ = super::tcp::stopped(&mut shutdown) => break,
        };
        // Nothing can be answered to port 0 or an unspecified address, and
        // under 12 bytes there is no header to answer to.
        if n < 12 || src.port() == 0 || src.ip().is_unspecified() {
            continue;
        }
        if !shared.config.query_log {
            let started = Instant::now();
            let snap = shared.snapshot.load();
            if let Some(a) = super::fast_path::answer(&shared, &snap, handler.listener, src.ip(), &buf[..n], &mut out) {
                match socket.try_send_to(&out[..a.len], src) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // A full send buffer: wait for room on a task of its own.
                        let (socket, bytes) = (socket.clone(), out[..a.len].to_vec());
                        tokio::spawn(async move { socket.send_to(&bytes, src).await });
                    }
                    Err(e) => debug!(%src, error = %e, "failed to send response"),
                }
                shared.metrics.query_duration.observe(started.elapsed().as_secs_f64());
                snap.count_query(&shared.metrics, Some(a.view), rcode_label(a.rcode), a.source);
                continue;
            }
        }
        let req = match Request::from_bytes(buf[..n].to_vec(), src, Protocol::Udp) {
            Ok(r) => r,
            Err(e) => {
                debug!(%src, error = %e, "undecodable UDP message: FORMERR");
                let _ = socket.try_send_to(&super::tcp::formerr(&buf[..n]), src);
                continue;
            }
        };
        // Never answer a response (reflection loops).
        if req.metadata.message_type != hickory_proto::op::MessageType::Query {
            continue;
        }
        // A question that goes upstream does socket work before it first
        // waits: straight to a task, so a flood of them cannot slow the
        // local answers queued behind it on this socket.
        if goes_upstream(&handler, &req) {
            tokio::spawn(respond(handler.clone(), socket.clone(), req));
            continue;
        }
        let mut fut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(respond(handler.clone(), socket.clone(), req));
        // Local answers finish on the first poll; whatever would still wait
        // (a full send buffer) continues on its own task, which polls it
        // again with a real waker.
        if fut.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending() {
            tokio::spawn(fut);
        }
    }
}
