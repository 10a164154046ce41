//! DNS over UDP, served by pzdns's own loop: each worker socket's task
//! receives datagrams in batches (`udp_mmsg`: recvmmsg/sendmmsg) and
//! answers each through the one answer path (`answer`) into the batch's
//! send buffer. A question that must wait on an upstream goes to a task of
//! its own with its half-written response, so the socket never stalls
//! behind it (docs/PERFORMANCE.md has what each step bought). Every
//! response passes response rate limiting (`Shared::rate_limit`) first.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::debug;

use super::proxy::{Claim, Framing};
use super::udp_mmsg::{BATCH, RecvBatch, SendBatch};
use crate::answer::{Answered, Client, Ctx, Outcome, Pending, Transport, answer};
use crate::config::ProxyProtocol;
use crate::state::{Shared, Waiting};

/// Serves one UDP socket until `shutdown` turns true.
pub async fn serve(socket: UdpSocket, listener: usize, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    let mut rx = RecvBatch::default();
    let mut tx = SendBatch::default();
    // Made once: a new shutdown future per wake-up registers and drops a
    // watch notification each time.
    let stop = super::tcp::stopped(&mut shutdown);
    tokio::pin!(stop);
    // Each answer of a batch, recorded once the batch is sent; only the
    // first `tx.len` are read.
    let none = Answered { rcode: 0, view: None, source: crate::metrics::Source::Error, claimed: None, policy: None, valid_cookie: false };
    let nobody = Client { listener, src: (std::net::Ipv4Addr::UNSPECIFIED, 0).into(), proxy: None, transport: Transport::Udp };
    // (answer, client, datagram, where its DNS message starts)
    let mut answered: [(Answered, Client, usize, usize); BATCH] = [(none, nobody, 0, 0); BATCH];
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
        let ctx = Ctx { snap: &snap, cache: &shared.forwarder.cache, metrics: &shared.metrics, now: started };
        tx.clear();
        // The listener's PROXY mode, once per batch (a reload may change it).
        let mode = snap.listener_proxy.get(listener).copied().unwrap_or_default();
        for i in 0..n {
            let (bytes, src) = rx.get(i);
            // Nothing can be answered to port 0 or an unspecified address.
            let Some(src) = src.filter(|s| s.port() != 0 && !s.ip().is_unspecified()) else { continue };
            let whole = bytes.len();
            let Some((bytes, proxy)) = unwrap_proxy(mode, bytes, &shared) else { continue };
            let at = whole - bytes.len();
            let client = Client { listener, src, proxy, transport: Transport::Udp };
            let Some(out) = tx.next_buf() else { break };
            let outcome = answer(&ctx, &client, bytes, out);
            shared.recorder.note_received(&client, bytes, matches!(outcome, Outcome::Drop));
            match outcome {
                // A policy's drop: recorded, nothing sent.
                Outcome::Silent(a) => shared.recorder.record(&snap, &client, bytes, None, &a, started.elapsed()),
                Outcome::Done(a) if shared.rate_limit(&snap, &client, &a, out, started) => {
                    answered[tx.len] = (a, client, i, at);
                    tx.push(src);
                }
                // Held back by response rate limiting: recorded, nothing sent.
                Outcome::Done(a) => shared.recorder.record(&snap, &client, bytes, None, &a, started.elapsed()),
                Outcome::Drop => {}
                Outcome::Wait(p) => wait_upstream(&shared, &socket, p, client, src, bytes),
            }
        }
        send_all(&socket, fd, &mut tx);
        // A query's time is its batch's, receipt to responses sent.
        let took = started.elapsed();
        for (j, (a, client, i, at)) in answered[..tx.len].iter().enumerate() {
            shared.recorder.record(&snap, client, &rx.get(*i).0[*at..], Some(tx.get(j).0), a, took);
        }
    }
}

/// The DNS message of a datagram and the client its PROXY v2 header
/// names, by the listener's mode; `None` drops the datagram (counted):
/// a malformed header, or none where one is required.
fn unwrap_proxy<'a>(mode: ProxyProtocol, bytes: &'a [u8], shared: &Shared) -> Option<(&'a [u8], Option<std::net::IpAddr>)> {
    if mode == ProxyProtocol::Off {
        return Some((bytes, None));
    }
    match super::proxy::split(bytes) {
        Framing::Proxied(Claim::Client(c), rest) => Some((rest, Some(c.ip()))),
        Framing::Proxied(Claim::Local, rest) => Some((rest, None)),
        Framing::Bare if mode == ProxyProtocol::Optional => Some((bytes, None)),
        Framing::Bare | Framing::Malformed | Framing::Incomplete => {
            shared.metrics.proxy_dropped.inc();
            None
        }
    }
}

/// Completes a question that waits on an upstream. It is polled once
/// here: what is answered at once (a stale answer while the upstreams are
/// known down, SERVFAIL over a bound or a share) needs no task, so that a
/// flood can never queue more tasks than the waiter bounds allow; the
/// rest goes on on a task of its own, already counted as a waiter. Either
/// way it is recorded against the snapshot the answer began on.
fn wait_upstream(shared: &Arc<Shared>, socket: &Arc<UdpSocket>, p: Box<Pending>, client: Client, dst: SocketAddr, query: &[u8]) {
    let waiting = Waiting::new(p, client, query, Instant::now(), &shared.recorder);
    let mut finish = Box::pin({
        let shared = shared.clone();
        async move { waiting.finish(&shared).await }
    });
    let send_now = |bytes: Option<Vec<u8>>| {
        if let Some(bytes) = bytes
            && let Err(e) = socket.try_send_to(&bytes, dst)
        {
            debug!(%dst, error = %e, "failed to send response");
        }
    };
    if let Some(bytes) = crate::state::ready_now(&mut finish) {
        send_now(bytes);
        return;
    }
    let (shared, socket) = (shared.clone(), socket.clone());
    tokio::spawn(async move {
        // Sent and recorded (dnstap included) before the drain counts it done.
        shared
            .waiting_on(async {
                if let Some(bytes) = finish.await
                    && let Err(e) = socket.send_to(&bytes, dst).await
                {
                    debug!(%dst, error = %e, "failed to send response");
                }
            })
            .await;
    });
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
