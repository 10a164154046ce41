//! dnstap (docs/REFERENCE.md#dnstap): client and forwarder messages in
//! Frame Streams, to a collector's Unix socket or to a file.
//!
//! ```text
//! query path ─► encode into a pooled buffer ─► bounded queue (try_send; full: drop, count)
//!                                                   │
//!                        writer thread ◄────────────┘ batches ─► socket (reconnects) or file
//! ```
//! The query path never blocks and does no I/O: it encodes the messages
//! (a copy of the wire bytes and a few varints) and hands them over, or
//! counts them dropped. The writer is woken once per batch of messages or
//! by a timer, so that most hand-overs are an atomic operation, not a
//! wake-up (with the writer on the same core, a context switch).
//!
//! It takes its settings from `config` (plain data), counts in `metrics`,
//! and otherwise addresses, bytes and times, never the server's types.

pub mod fstrm;
pub mod proto;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use crate::config::dnstap::{Kinds, Output, Settings};
use crate::metrics::{DnstapMetrics, Metrics};
pub use proto::{Kind, Protocol};
use proto::{Msg, append_frame};

/// Bytes the queue may hold whatever its length: large TCP responses
/// fill it before its count does.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;
/// The writer writes at least this often when messages trickle in.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Reconnection backoff to the collector: from the first to the last.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A write to the collector that makes no progress this long gives the
/// connection up (the collector is stuck): reconnect.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time the collector has to answer READY with ACCEPT, and STOP with FINISH.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one warning per this long about an unreachable collector.
pub const COMPLAINT_INTERVAL: Duration = Duration::from_secs(60);
/// Bytes written per system call, at most.
const BATCH_BYTES: usize = 64 << 10;
/// Buffers kept for reuse, and the largest kept.
const POOL: usize = 256;
const POOLED_CAPACITY: usize = 16 << 10;
/// The wake-up of the writer, at most once per this many hand-overs.
const NOTIFY_EVERY: u32 = 256;

/// `k` as the settings name it (`Kinds::NAMES`).
fn kinds_of(k: Kind) -> Kinds {
    Kinds::nth(match k {
        Kind::ClientQuery => 0,
        Kind::ClientResponse => 1,
        Kind::ForwarderQuery => 2,
        Kind::ForwarderResponse => 3,
        Kind::ResolverQuery => 4,
        Kind::ResolverResponse => 5,
    })
}

/// One hand-over: whole frames, and how many.
struct Item {
    buf: Vec<u8>,
    frames: u32,
}

/// What the query path and the writer share.
struct Inner {
    metrics: DnstapMetrics,
    queued_bytes: AtomicUsize,
    handed_over: AtomicU32,
    stopping: AtomicBool,
    pool: Mutex<Vec<Vec<u8>>>,
}

impl Inner {
    /// Keeps `buf` for reuse if it is not too large and the pool is free.
    fn recycle(&self, mut buf: Vec<u8>) {
        if buf.capacity() > POOLED_CAPACITY {
            return;
        }
        if let Ok(mut p) = self.pool.try_lock()
            && p.len() < POOL
        {
            buf.clear();
            p.push(buf);
        }
    }
}

/// The dnstap output: the query path's handle on the queue.
pub struct Dnstap {
    tx: SyncSender<Item>,
    inner: Arc<Inner>,
    writer: std::thread::Thread,
    /// Receives once the writer has written STOP (or given up).
    done: Mutex<Option<Receiver<()>>>,
    identity: Box<[u8]>,
    version: Box<[u8]>,
    kinds: Kinds,
    notify_every: u32,
    output: Output,
}

impl std::fmt::Debug for Dnstap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnstap").field("output", &self.output).field("kinds", &self.kinds).finish_non_exhaustive()
    }
}

/// Why dnstap cannot start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the dnstap file {}: {source}; check that its directory exists and is writable, or change dnstap.file", path.display())]
pub struct StartError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl Dnstap {
    /// Starts the writer thread. A file is opened now (an existing one is
    /// kept as `FILE.1`); a socket is connected by the writer, which keeps
    /// trying while the collector is away.
    pub fn start(s: &Settings, metrics: &Metrics) -> Result<Arc<Dnstap>, StartError> {
        let file = match &s.output {
            Output::File(p) => Some(open_file(p).map_err(|source| StartError { path: p.clone(), source })?),
            Output::Socket(_) => None,
        };
        let queue = s.queue.max(1);
        let (tx, rx) = std::sync::mpsc::sync_channel(queue);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        let inner = Arc::new(Inner {
            metrics: metrics.dnstap.clone(),
            queued_bytes: AtomicUsize::new(0),
            handed_over: AtomicU32::new(0),
            stopping: AtomicBool::new(false),
            pool: Mutex::new(Vec::new()),
        });
        let w = Writer { rx, inner: inner.clone(), complaints: Complaints::default() };
        let output = s.output.clone();
        let handle = std::thread::Builder::new()
            .name("pzdns-dnstap".into())
            .spawn(move || {
                let mut w = w;
                match (output, file) {
                    (Output::File(p), Some(f)) => w.write_file(&p, f),
                    (Output::Socket(p), _) => w.write_socket(&p),
                    (Output::File(_), None) => {}
                }
                let _ = done_tx.send(());
            })
            .map_err(|source| StartError { path: PathBuf::from("(writer thread)"), source })?;
        let notify_every = ((queue / 4) as u32).clamp(1, NOTIFY_EVERY);
        Ok(Arc::new(Dnstap {
            tx,
            inner,
            writer: handle.thread().clone(),
            done: Mutex::new(Some(done_rx)),
            identity: s.identity.as_bytes().into(),
            version: s.version.as_bytes().into(),
            kinds: s.kinds,
            notify_every,
            output: s.output.clone(),
        }))
    }

    /// Whether messages of `k` are written.
    pub fn wants(&self, k: Kind) -> bool {
        self.kinds.has(kinds_of(k))
    }

    /// CLIENT_QUERY and CLIENT_RESPONSE of one answered query: `client`
    /// asked `server` (the listener); the response went `took` after the
    /// query came.
    #[allow(clippy::too_many_arguments)]
    pub fn client(
        &self,
        protocol: Protocol,
        client: SocketAddr,
        server: SocketAddr,
        query: &[u8],
        response: &[u8],
        took: Duration,
        policy: Option<proto::Policy<'_>>,
    ) {
        let (cq, cr) = (self.wants(Kind::ClientQuery), self.wants(Kind::ClientResponse));
        if !cq && !cr {
            return;
        }
        let now = SystemTime::now();
        let asked = now.checked_sub(took).unwrap_or(now);
        let mut m = Msg {
            kind: Kind::ClientQuery,
            protocol,
            query_addr: client,
            response_addr: server,
            query_time: Some(asked),
            query_message: Some(query),
            response_time: None,
            response_message: None,
            policy: None,
        };
        let mut buf = self.buffer();
        if cq {
            append_frame(&mut buf, &self.identity, &self.version, &m);
        }
        if cr {
            m.kind = Kind::ClientResponse;
            m.query_message = None;
            m.response_time = Some(now);
            m.response_message = Some(response);
            m.policy = policy;
            append_frame(&mut buf, &self.identity, &self.version, &m);
        }
        self.hand_over(buf, cq as u32 + cr as u32);
    }

    /// FORWARDER_QUERY: pzdns (`local`) sent `query` to `upstream` now.
    /// Returns the time it was sent, for the response.
    pub fn forwarder_query(&self, protocol: Protocol, local: SocketAddr, upstream: SocketAddr, query: &[u8]) -> SystemTime {
        self.outgoing_query(Kind::ForwarderQuery, protocol, local, upstream, query)
    }

    /// FORWARDER_RESPONSE: `upstream` answered the query sent at `asked`.
    pub fn forwarder_response(&self, protocol: Protocol, local: SocketAddr, upstream: SocketAddr, asked: SystemTime, response: &[u8]) {
        self.outgoing_response(Kind::ForwarderResponse, protocol, local, upstream, asked, response)
    }

    /// RESOLVER_QUERY: in recursive mode, pzdns (`local`) sent `query` to
    /// the authoritative server `server` now. Returns the time it was sent.
    pub fn resolver_query(&self, protocol: Protocol, local: SocketAddr, server: SocketAddr, query: &[u8]) -> SystemTime {
        self.outgoing_query(Kind::ResolverQuery, protocol, local, server, query)
    }

    /// RESOLVER_RESPONSE: `server` answered the query sent at `asked`.
    pub fn resolver_response(&self, protocol: Protocol, local: SocketAddr, server: SocketAddr, asked: SystemTime, response: &[u8]) {
        self.outgoing_response(Kind::ResolverResponse, protocol, local, server, asked, response)
    }

    fn outgoing_query(&self, kind: Kind, protocol: Protocol, local: SocketAddr, upstream: SocketAddr, query: &[u8]) -> SystemTime {
        let now = SystemTime::now();
        if self.wants(kind) {
            let m = Msg {
                kind,
                protocol,
                query_addr: local,
                response_addr: upstream,
                query_time: Some(now),
                query_message: Some(query),
                response_time: None,
                response_message: None,
                policy: None,
            };
            let mut buf = self.buffer();
            append_frame(&mut buf, &self.identity, &self.version, &m);
            self.hand_over(buf, 1);
        }
        now
    }

    fn outgoing_response(
        &self,
        kind: Kind,
        protocol: Protocol,
        local: SocketAddr,
        upstream: SocketAddr,
        asked: SystemTime,
        response: &[u8],
    ) {
        if !self.wants(kind) {
            return;
        }
        let m = Msg {
            kind,
            protocol,
            query_addr: local,
            response_addr: upstream,
            query_time: Some(asked),
            query_message: None,
            response_time: Some(SystemTime::now()),
            response_message: Some(response),
            policy: None,
        };
        let mut buf = self.buffer();
        append_frame(&mut buf, &self.identity, &self.version, &m);
        self.hand_over(buf, 1);
    }

    /// A buffer from the pool (never waits for it), else a new one.
    fn buffer(&self) -> Vec<u8> {
        self.inner.pool.try_lock().ok().and_then(|mut p| p.pop()).unwrap_or_else(|| Vec::with_capacity(1024))
    }

    /// Queues `buf` for the writer, or counts its frames dropped.
    fn hand_over(&self, buf: Vec<u8>, frames: u32) {
        let len = buf.len();
        if self.inner.queued_bytes.load(Ordering::Relaxed) + len > MAX_QUEUED_BYTES {
            self.inner.metrics.dropped_queue_full.inc_by(frames as u64);
            self.inner.recycle(buf);
            return;
        }
        self.inner.queued_bytes.fetch_add(len, Ordering::Relaxed);
        match self.tx.try_send(Item { buf, frames }) {
            Ok(()) => {
                if self.inner.handed_over.fetch_add(1, Ordering::Relaxed).is_multiple_of(self.notify_every) {
                    self.writer.unpark();
                }
            }
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => {
                self.inner.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                self.inner.metrics.dropped_queue_full.inc_by(frames as u64);
                self.inner.recycle(item.buf);
            }
        }
    }

    /// Writes what is queued and ends the stream (STOP; FINISH awaited on
    /// a socket), waiting at most `wait`. Messages handed over later are
    /// not written.
    pub fn shutdown(&self, wait: Duration) -> bool {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.writer.unpark();
        let rx = self.done.lock().unwrap_or_else(|p| p.into_inner()).take();
        rx.is_some_and(|rx| rx.recv_timeout(wait).is_ok())
    }
}

/// Opens `path` for a new stream; an existing regular file is kept as
/// `path.1` (a Frame Streams file holds one stream: appending would hide
/// the new one from readers).
fn open_file(path: &Path) -> io::Result<std::fs::File> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(path, old)?;
    }
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(path)
}

/// Warnings about the output, at most one per [`COMPLAINT_INTERVAL`].
#[derive(Default)]
struct Complaints {
    last: Option<Instant>,
    /// A warning was logged since the last connection (the next one is
    /// worth a line).
    warned: bool,
    unlogged: u64,
}

impl Complaints {
    fn warn(&mut self, what: impl FnOnce() -> String) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < COMPLAINT_INTERVAL) {
            self.unlogged += 1;
            return;
        }
        let before = std::mem::take(&mut self.unlogged);
        warn!(target: "pzdns::dnstap", unlogged_before = before, "{} (messages are dropped meanwhile and counted in pzdns_dnstap_dropped_total; the next warning in {COMPLAINT_INTERVAL:?} at the earliest)", what());
        self.last = Some(now);
        self.warned = true;
    }
}

/// Why a stream ended.
enum Ended {
    /// Stopping, and everything queued is written.
    Stopped,
    Failed(io::Error),
}

struct Writer {
    rx: Receiver<Item>,
    inner: Arc<Inner>,
    complaints: Complaints,
}

impl Writer {
    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// The next hand-over, if any; `Err` once stopping with nothing left
    /// (or every sender is gone).
    fn next(&self) -> Result<Option<Item>, ()> {
        match self.rx.try_recv() {
            Ok(item) => {
                self.inner.queued_bytes.fetch_sub(item.buf.len(), Ordering::Relaxed);
                Ok(Some(item))
            }
            Err(TryRecvError::Empty) if self.stopping() => Err(()),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(()),
        }
    }

    /// Writes hand-overs to `w` in batches until stopping (and drained) or
    /// a write fails; a failed batch is counted dropped.
    fn stream(&mut self, w: &mut impl Write) -> Ended {
        let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
        let mut frames = 0u64;
        loop {
            // Some(true): more may be waiting; Some(false): idle; None: done.
            let more = match self.next() {
                Ok(Some(item)) => {
                    batch.extend_from_slice(&item.buf);
                    frames += item.frames as u64;
                    self.inner.recycle(item.buf);
                    if batch.len() < BATCH_BYTES {
                        continue;
                    }
                    Some(true)
                }
                Ok(None) => Some(false),
                Err(()) => None,
            };
            if !batch.is_empty() {
                if let Err(e) = w.write_all(&batch).and_then(|()| w.flush()) {
                    self.inner.metrics.dropped_no_collector.inc_by(frames);
                    return Ended::Failed(e);
                }
                self.inner.metrics.written.inc_by(frames);
                batch.clear();
                frames = 0;
            }
            match more {
                None => return Ended::Stopped,
                Some(false) => std::thread::park_timeout(FLUSH_INTERVAL),
                Some(true) => {}
            }
        }
    }

    /// Drops (and counts) what is handed over for `d`; `true` when
    /// stopping.
    fn drop_for(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            loop {
                match self.next() {
                    Ok(Some(item)) => {
                        self.inner.metrics.dropped_no_collector.inc_by(item.frames as u64);
                        self.inner.recycle(item.buf);
                    }
                    Ok(None) => break,
                    Err(()) => return true,
                }
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            std::thread::park_timeout((until - now).min(FLUSH_INTERVAL));
        }
    }

    fn write_file(&mut self, path: &Path, file: std::fs::File) {
        let mut f = file;
        let ended = match fstrm::write_control(&mut f, fstrm::START) {
            Ok(()) => self.stream(&mut f),
            Err(e) => Ended::Failed(e),
        };
        match ended {
            Ended::Stopped => {
                if let Err(e) = fstrm::write_control(&mut f, fstrm::STOP).and_then(|()| f.sync_data()) {
                    warn!(target: "pzdns::dnstap", path = %path.display(), error = %e, "cannot end the dnstap file");
                }
            }
            Ended::Failed(e) => {
                // The stream is cut mid-frame: nothing more can go into it.
                self.complaints.warn(|| format!("cannot write the dnstap file {}: {e}; dnstap is off until restart", path.display()));
                while !self.drop_for(MAX_BACKOFF) {}
            }
        }
    }

    fn write_socket(&mut self, path: &Path) {
        let mut backoff = MIN_BACKOFF;
        while !self.stopping() {
            match handshake(path) {
                Ok(mut s) => {
                    self.inner.metrics.connected.set(1);
                    if std::mem::take(&mut self.complaints.warned) || self.complaints.last.is_none() {
                        info!(target: "pzdns::dnstap", socket = %path.display(), "dnstap: connected to the collector");
                    }
                    backoff = MIN_BACKOFF;
                    let ended = self.stream(&mut s);
                    self.inner.metrics.connected.set(0);
                    match ended {
                        Ended::Stopped => {
                            // The collector answers STOP with FINISH; it may not.
                            let _ = fstrm::write_control(&mut s, fstrm::STOP).and_then(|()| fstrm::read_control(&mut s));
                            return;
                        }
                        Ended::Failed(e) => {
                            self.complaints.warn(|| format!("dnstap: lost the collector at {}: {e}; reconnecting", path.display()))
                        }
                    }
                }
                Err(e) => self.complaints.warn(|| format!("dnstap: cannot reach a collector at {}: {e}; retrying", path.display())),
            }
            if self.drop_for(backoff) {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        // Stopping came between two waits: what is still queued is dropped,
        // and counted like the rest.
        while !self.drop_for(Duration::ZERO) {}
    }
}

/// Connects to a collector and opens a bidirectional stream: READY,
/// ACCEPT naming our content type, START.
fn handshake(path: &Path) -> io::Result<UnixStream> {
    let mut s = UnixStream::connect(path)?;
    s.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    fstrm::write_control(&mut s, fstrm::READY)?;
    let accept = fstrm::read_control(&mut s)?;
    if accept.kind != fstrm::ACCEPT || !accept.takes_ours {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the collector did not accept {}", String::from_utf8_lossy(fstrm::CONTENT_TYPE)),
        ));
    }
    fstrm::write_control(&mut s, fstrm::START)?;
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(output: Output, queue: usize) -> Settings {
        Settings { output, identity: "id".into(), version: String::new(), kinds: Kinds::ALL, queue }
    }

    fn data_frames(mut b: &[u8]) -> (Vec<u32>, usize) {
        // (control types, data frames) of a unidirectional stream.
        let mut controls = Vec::new();
        let mut data = 0;
        while b.len() >= 4 {
            let n = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            if n == 0 {
                let len = u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize;
                controls.push(u32::from_be_bytes(b[8..12].try_into().unwrap()));
                b = &b[8 + len..];
            } else {
                data += 1;
                b = &b[4 + n..];
            }
        }
        (controls, data)
    }

    #[test]
    fn a_file_holds_start_the_frames_and_stop() {
        let dir = std::env::temp_dir().join(format!("pzdns-dnstap-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.fstrm");
        std::fs::write(&path, b"old").unwrap();
        let m = Metrics::new();
        let t = Dnstap::start(&settings(Output::File(path.clone()), 100), &m).unwrap();
        let (a, b): (SocketAddr, SocketAddr) = ("127.0.0.2:4000".parse().unwrap(), "127.0.0.1:53".parse().unwrap());
        for _ in 0..10 {
            t.client(Protocol::Udp, a, b, b"query", b"response", Duration::from_micros(50), None);
        }
        let sent = t.forwarder_query(Protocol::Udp, b, a, b"q");
        t.forwarder_response(Protocol::Udp, b, a, sent, b"r");
        assert!(t.shutdown(Duration::from_secs(5)), "the writer ends the stream");
        let (controls, data) = data_frames(&std::fs::read(&path).unwrap());
        assert_eq!(controls, [fstrm::START, fstrm::STOP]);
        assert_eq!(data, 22);
        assert_eq!(m.dnstap.written.get(), 22);
        assert_eq!(std::fs::read(dir.join("t.fstrm.1")).unwrap(), b"old", "the previous file is kept");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        // No collector: the writer drops what it takes, the queue what it cannot hold.
        let path = std::env::temp_dir().join(format!("pzdns-dnstap-none-{}.sock", std::process::id()));
        let m = Metrics::new();
        let mut s = settings(Output::Socket(path), 4);
        s.kinds = Kinds::NONE.with(kinds_of(Kind::ForwarderQuery));
        let t = Dnstap::start(&s, &m).unwrap();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let started = Instant::now();
        for _ in 0..1000 {
            t.forwarder_query(Protocol::Udp, a, a, b"q");
            t.forwarder_response(Protocol::Udp, a, a, SystemTime::now(), b"r");
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(t.shutdown(Duration::from_secs(5)));
        let d = &m.dnstap;
        assert_eq!(d.dropped_queue_full.get() + d.dropped_no_collector.get(), 1000, "every message dropped is counted, once");
        assert!(d.dropped_queue_full.get() > 0);
        assert_eq!(d.written.get(), 0);
    }
}
