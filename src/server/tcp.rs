//! DNS over TCP (RFC 7766), answered through the same answer path as UDP;
//! and the connections of the `tls` (DoT, RFC 7858: the same framing
//! inside TLS) and `https` (DoH, [`super::doh`]) listeners, which take the
//! same limits, counted per listener:
//!
//! - at most `max_connections` at once, and at most `max_per_source` from
//!   one source (fewer from a source in no VPC); one more is closed at
//!   once, so that no one source can take the slots of the others;
//! - a connection idle for `idle_timeout` is closed, and so is one that
//!   starts a message and does not finish it within the same time
//!   (slowloris);
//! - a response that cannot be written within `write_timeout` (the client
//!   does not read) closes the connection;
//! - up to [`MAX_IN_FLIGHT_PER_CONNECTION`] queries of one connection are
//!   answered concurrently, each as soon as it is ready (RFC 7766 §6.2.1.1
//!   allows answers out of order; the message IDs pair them);
//! - the responses ready when the writer wakes go out in one write (up to
//!   [`WRITE_BATCH`] bytes): one system call, and inside TLS one record;
//! - while [`MAX_QUEUED_OUTPUT`] bytes of responses wait to be written, no
//!   new query is read: a client that does not read cannot make pzdns
//!   hold more than that (and the responses of the queries in flight).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::debug;

use super::proxy::{self, Claim, Framing};
use super::tls::Certs;
use crate::answer::{Client, Transport};
use crate::config::ProxyProtocol;
use crate::metrics::Event;
use crate::snapshot::View;
use crate::state::{Shared, Started, ready_now};

/// Queries of one connection answered at once; more wait (back-pressure).
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 16;
/// Bytes of responses waiting to be written on one connection past which
/// no new query is read until the client reads.
pub const MAX_QUEUED_OUTPUT: usize = 64 * 1024;
/// Bytes read from a connection at a time (queries it pipelined).
pub const READ_BUFFER: usize = 4 * 1024;
/// A source in no VPC may hold this fraction of `max_per_source`.
pub const UNKNOWN_SOURCE_SHARE: usize = 4;

/// Limits for TCP (docs/REFERENCE.md#limits).
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_connections: usize,
    /// Connections from one source (see [`source_key`]) in a VPC; a
    /// source in no VPC gets a quarter of it, at least one.
    pub max_per_source: usize,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

impl TcpLimits {
    /// The limits of a configuration (they change with it on reload).
    pub fn of(cfg: &crate::config::ServerConfig) -> Self {
        TcpLimits {
            max_connections: cfg.tcp_max_connections,
            max_per_source: cfg.tcp_per_source(),
            idle_timeout: cfg.tcp_idle_timeout,
            write_timeout: cfg.tcp_write_timeout,
        }
    }

    /// How many connections a source with this view may hold.
    pub fn per_source(&self, view: View) -> usize {
        match view {
            View::Vpc { .. } => self.max_per_source.max(1),
            View::Unknown => (self.max_per_source / UNKNOWN_SOURCE_SHARE).max(1),
        }
    }
}

/// What connections are counted by: the address; for an IPv6 source in
/// no VPC its /64, which one host may hold whole. An IPv4-mapped address
/// counts as the IPv4 address.
pub fn source_key(ip: IpAddr, view: View) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if view == View::Unknown => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        other => other,
    }
}

/// Connections open per source key.
type Sources = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One connection counted against its source until dropped.
struct SourceSlot {
    sources: Sources,
    key: IpAddr,
}

impl SourceSlot {
    /// Counts one more connection for `key`, unless it has `limit` already.
    fn take(sources: &Sources, key: IpAddr, limit: usize) -> Option<SourceSlot> {
        let mut m = sources.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(SourceSlot { sources: sources.clone(), key })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut m = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// One connection counted as open until dropped.
struct OpenSlot(Arc<AtomicUsize>);

impl OpenSlot {
    fn take(open: &Arc<AtomicUsize>, limit: usize) -> Option<OpenSlot> {
        // Only the accept loop takes slots: no other taker can race it.
        if open.load(Ordering::Relaxed) >= limit {
            return None;
        }
        open.fetch_add(1, Ordering::Relaxed);
        Some(OpenSlot(open.clone()))
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a stream listener speaks.
#[derive(Clone)]
pub enum Stream {
    /// DNS over TCP.
    Tcp,
    /// DNS over TLS: TCP's framing inside TLS.
    Tls(Arc<Certs>),
    /// DNS over HTTPS.
    Https(Arc<Certs>),
}

impl Stream {
    fn transport(&self) -> Transport {
        match self {
            Stream::Tcp => Transport::Tcp,
            Stream::Tls(_) => Transport::Tls,
            Stream::Https(_) => Transport::Https,
        }
    }
}

/// Accepts connections on `listener` until `shutdown` turns true, then
/// waits (at most `grace`) for the connections' queries in flight.
pub async fn serve(
    listener: TcpListener,
    index: usize,
    kind: Stream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    // Connections open on this listener; a count, not a semaphore, since
    // the limit may change with the configuration.
    let open = Arc::new(AtomicUsize::new(0));
    let sources: Sources = Arc::default();
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
        let limits = TcpLimits::of(&shared.config.load());
        let Some(slot) = OpenSlot::take(&open, limits.max_connections.max(1)) else {
            shared.metrics.tcp_refused.inc();
            shared.metrics.events.note(Event::TcpConnectionLimit, || {
                format!("TCP connection from {src} closed at once: {} connections open (tcp.max_connections)", limits.max_connections)
            });
            drop(stream);
            continue;
        };
        let view = shared.snapshot.load().select_view(Some(index), src.ip()).0;
        let limit = limits.per_source(view);
        let Some(source_slot) = SourceSlot::take(&sources, source_key(src.ip(), view), limit) else {
            shared.metrics.tcp_refused.inc();
            shared.metrics.events.note(Event::TcpSourceLimit, || {
                let whose = if view == View::Unknown { "a source in no VPC" } else { "a source" };
                format!("TCP connection from {src} closed at once: {whose} may hold {limit} (tcp.max_connections_per_source)")
            });
            drop(stream);
            continue;
        };
        let (shared, stop, kind) = (shared.clone(), shutdown.clone(), kind.clone());
        conns.spawn(async move {
            let m = shared.metrics.clone();
            let transport = kind.transport();
            let open = match transport {
                Transport::Tcp => &m.tcp_connections,
                t => &m.stream.connections[t as usize],
            };
            open.inc();
            let mode = shared.snapshot.load().listener_proxy.get(index).copied().unwrap_or_default();
            let mut stream = stream;
            let _ = stream.set_nodelay(true);
            // A PROXY v2 header comes before TLS, as HAProxy and dnsdist send it.
            if let Some(proxy) = read_proxy_header(&mut stream, mode, limits.idle_timeout, &shared).await {
                let client = Client { listener: index, src, proxy, transport };
                match kind {
                    Stream::Tcp => {
                        let (rd, wr) = stream.into_split();
                        connection(rd, wr, client, shared, limits, stop).await;
                    }
                    Stream::Tls(certs) => {
                        if let Some(s) = super::tls::accept(&certs, stream, limits.idle_timeout, transport, &m).await {
                            let (rd, wr) = tokio::io::split(s);
                            connection(rd, wr, client, shared, limits, stop).await;
                        }
                    }
                    Stream::Https(certs) => {
                        if let Some(s) = super::tls::accept(&certs, stream, limits.idle_timeout, transport, &m).await {
                            super::doh::connection(s, client, shared, limits, stop).await;
                        }
                    }
                }
            }
            open.dec();
            drop(source_slot);
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

/// Responses of one connection not yet written.
#[derive(Debug, Default, Clone, Copy)]
struct Queued {
    bytes: usize,
    /// The writer gave up (a write timed out or failed): close.
    closed: bool,
}

/// Queues a response for the writer, which frames it (RFC 1035 §4.2.2).
/// `None`: a policy dropped the query; nothing goes back.
fn queue(tx: &mpsc::UnboundedSender<Vec<u8>>, queued: &watch::Sender<Queued>, msg: Option<Vec<u8>>) {
    let Some(msg) = msg else { return };
    queued.send_modify(|q| q.bytes += msg.len() + 2);
    // Fails only once the writer is gone, when the connection is closing.
    let _ = tx.send(msg);
}

/// Bytes of responses gathered into one write: what is queued when the
/// writer wakes goes out together, one system call and, inside TLS, one
/// record (16 KiB of plaintext at most) rather than one of each per
/// response.
pub const WRITE_BATCH: usize = 16 * 1024;

/// Writes queued responses, those queued together in one write, each write
/// within `timeout`; on a timeout or an error, marks the connection closed
/// and stops.
async fn write_responses<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: watch::Sender<Queued>,
    timeout: Duration,
    client: Client,
    shared: Arc<Shared>,
) {
    // Reused for every batch; empty until the first response.
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        let mut next = Some(first);
        while let Some(msg) = next {
            batch.extend_from_slice(&(msg.len() as u16).to_be_bytes());
            batch.extend_from_slice(&msg);
            next = if batch.len() < WRITE_BATCH { rx.try_recv().ok() } else { None };
        }
        // TLS buffers what is written until flushed (a no-op for TCP).
        let write = async {
            wr.write_all(&batch).await?;
            wr.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => queued.send_modify(|q| q.bytes -= batch.len()),
            Ok(Err(e)) => {
                debug!(src = %client.src, transport = client.transport.as_str(), error = %e, "write failed: closing");
                queued.send_modify(|q| q.closed = true);
                return;
            }
            Err(_) => {
                shared.metrics.events.note(Event::TcpWriteTimeout, || {
                    let t = client.transport.as_str();
                    format!("{t} connection from {} closed: a response was not taken within {timeout:?} (tcp.write_timeout)", client.src)
                });
                queued.send_modify(|q| q.closed = true);
                return;
            }
        }
        // A large batch (a transfer's messages) is not kept for the next.
        if batch.capacity() > WRITE_BATCH {
            batch = Vec::new();
        }
    }
    let _ = tokio::time::timeout(timeout, wr.shutdown()).await;
}

/// One connection's messages, framed as RFC 1035 §4.2.2 says, over TCP
/// or inside TLS.
async fn connection<R, W>(rd: R, wr: W, client: Client, shared: Arc<Shared>, limits: TcpLimits, mut stop: watch::Receiver<bool>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let idle = limits.idle_timeout;
    // Pipelined queries are read a buffer at a time, not a length and a
    // message at a time (two system calls each over TCP).
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    // The message being read; kept for the next one.
    let mut buf = Vec::new();
    // Unbounded in type only: the reader stops while MAX_QUEUED_OUTPUT
    // bytes wait, and at most MAX_IN_FLIGHT_PER_CONNECTION queries in
    // flight add theirs.
    let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let queued = watch::Sender::new(Queued::default());
    let writer = tokio::spawn(write_responses(wr, rx, queued.clone(), limits.write_timeout, client, shared.clone()));
    let mut state = queued.subscribe();
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    let mut queries = JoinSet::new();
    loop {
        // Back-pressure: while the client does not read, read nothing
        // more from it (the writer closes it if it never reads).
        let ready = tokio::select! {
            r = state.wait_for(|q| q.closed || q.bytes < MAX_QUEUED_OUTPUT) => r.map(|q| !q.closed).unwrap_or(false),
            _ = stopped(&mut stop) => false,
        };
        if !ready {
            break;
        }
        // Idle: waiting for the next message to start.
        let len = tokio::select! {
            r = tokio::time::timeout(idle, rd.read_u16()) => match r {
                Ok(Ok(n)) => n as usize,
                _ => break,
            },
            _ = stopped(&mut stop) => break,
            _ = state.wait_for(|q| q.closed) => break,
        };
        // Started: the whole message must follow within the same time.
        buf.clear();
        buf.resize(len, 0);
        match tokio::time::timeout(idle, rd.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        while queries.try_join_next().is_some() {}
        if let Ok(q) = crate::dns::query::Query::parse(&buf)
            && crate::transfer::is_signed_transfer(&q)
        {
            if !transfer(&shared, client, &buf, &q, &tx, &queued, &mut state, &mut stop).await {
                break;
            }
            continue;
        }
        match shared.answer_start(client, &buf) {
            Started::Done(bytes) => queue(&tx, &queued, bytes),
            Started::Drop => {}
            Started::Wait(w) => {
                let permit = tokio::select! {
                    p = in_flight.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = state.wait_for(|q| q.closed) => break,
                };
                let mut finish = Box::pin({
                    let shared = shared.clone();
                    async move { w.finish(&shared).await }
                });
                // What is answered at once needs no task.
                if let Some(bytes) = ready_now(&mut finish) {
                    queue(&tx, &queued, bytes);
                    continue;
                }
                let (tx, queued) = (tx.clone(), queued.clone());
                queries.spawn(async move {
                    let bytes = finish.await;
                    queue(&tx, &queued, bytes);
                    drop(permit);
                });
            }
        }
    }
    if state.borrow().closed {
        // The client does not read: nothing more will reach it.
        queries.abort_all();
    }
    // Let the queries already read finish, then close.
    while queries.join_next().await.is_some() {}
    drop(tx);
    let _ = writer.await;
}

/// Answers a signed AXFR or IXFR (`transfer::start`): its messages are
/// made one at a time, each once the output queued before it is under
/// [`MAX_QUEUED_OUTPUT`], so that a transfer of any size holds little and
/// a secondary that stops reading stops it. Whether the connection may go on.
#[allow(clippy::too_many_arguments)]
async fn transfer(
    shared: &Shared,
    client: Client,
    msg: &[u8],
    q: &crate::dns::query::Query<'_>,
    tx: &mpsc::UnboundedSender<Vec<u8>>,
    queued: &watch::Sender<Queued>,
    state: &mut watch::Receiver<Queued>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    use crate::transfer::{Start, start, tsig};
    let snap = shared.snapshot.load_full();
    let mut stream = match start(&snap, &shared.metrics, client.src, msg, q, true, tsig::now()) {
        Start::Reply { bytes, .. } => {
            queue(tx, queued, Some(bytes));
            return true;
        }
        Start::Stream(s) => s,
    };
    drop(snap);
    // The messages are made on the transfer thread, below the answering
    // threads' priority: this worker only writes them, and a query that
    // arrives meanwhile does not wait for a message to be made and signed.
    let metrics = shared.metrics.clone();
    let (made, mut ready_msgs) = mpsc::channel::<Vec<u8>>(TRANSFER_AHEAD);
    let make = async move {
        while let Some(m) = stream.next_message(tsig::now()) {
            if made.send(m).await.is_err() {
                // The connection is gone.
                break;
            }
        }
        stream.finish(&metrics);
    };
    match transfer_thread(shared.config.load().reload_priority) {
        Some(rt) => drop(rt.spawn(make)),
        // No thread could be made: here, a message at a time between queries.
        None => drop(tokio::spawn(make)),
    }
    let mut open = true;
    loop {
        let ready = tokio::select! {
            r = state.wait_for(|q| q.closed || q.bytes < MAX_QUEUED_OUTPUT) => r.map(|q| !q.closed).unwrap_or(false),
            _ = stopped(stop) => false,
        };
        if !ready {
            open = false;
            break;
        }
        let m = tokio::select! {
            m = ready_msgs.recv() => m,
            _ = stopped(stop) => {
                open = false;
                break;
            }
        };
        match m {
            Some(m) => queue(tx, queued, Some(m)),
            None => break,
        }
    }
    open
}

/// Messages a transfer makes ahead of the connection's writes.
const TRANSFER_AHEAD: usize = 2;

/// The thread that makes transfers' messages, at `reload.priority` as of
/// its first use (like the reload threads, it is not raised again), with
/// a runtime of its own; `None` if it cannot be made.
fn transfer_thread(priority: crate::config::ReloadPriority) -> Option<&'static tokio::runtime::Handle> {
    static THREAD: std::sync::OnceLock<Option<tokio::runtime::Handle>> = std::sync::OnceLock::new();
    THREAD
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread().build().ok()?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name("pzdns-transfer".into())
                .spawn(move || {
                    crate::state::yield_to_queries(priority);
                    rt.block_on(std::future::pending::<()>());
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_in_no_vpc_count_by_their_slash_64_and_get_a_quarter() {
        let vpc = View::Vpc { vpc: 0, az: 0 };
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(source_key(a, View::Unknown), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(source_key(a, vpc), a);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(source_key(mapped, View::Unknown), "192.0.2.7".parse::<IpAddr>().unwrap());
        let l = TcpLimits { max_connections: 1024, max_per_source: 128, idle_timeout: Duration::ZERO, write_timeout: Duration::ZERO };
        assert_eq!((l.per_source(vpc), l.per_source(View::Unknown)), (128, 32));
        let one = TcpLimits { max_per_source: 1, ..l };
        assert_eq!(one.per_source(View::Unknown), 1);
    }

    #[test]
    fn a_source_slot_is_given_back() {
        let s: Sources = Arc::default();
        let k: IpAddr = "192.0.2.1".parse().unwrap();
        let a = SourceSlot::take(&s, k, 2).unwrap();
        let b = SourceSlot::take(&s, k, 2).unwrap();
        assert!(SourceSlot::take(&s, k, 2).is_none());
        drop(a);
        let c = SourceSlot::take(&s, k, 2).unwrap();
        drop((b, c));
        assert!(s.lock().unwrap().is_empty(), "no entry left behind");
    }
}
