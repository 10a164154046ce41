//! DNS over TLS to upstreams given as `ADDR:853#NAME` (RFC 7858): one
//! connection per upstream, kept open and reused, its questions
//! pipelined (each with an id no other question in flight on it has; the
//! replies are paired by id, in whatever order they come).
//!
//! The server's certificate must be valid for NAME and chain to a trusted
//! root: Mozilla's (webpki-roots), or only those of `upstream_tls.ca_file`.
//! Nothing falls back to clear text: an upstream whose handshake or
//! certificate fails is a transport failure like a timeout (the next
//! upstream of the list is tried as for any failure, and the upstream is
//! known down after repeated failures).
//!
//! A connection that the upstream closed (idle, restarted) is found out on
//! its next question, which is asked once more on a new connection; one
//! on which a question timed out is not used for new questions. One idle
//! for [`IDLE`] is closed by pzdns.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tracing::debug;

use crate::metrics::{Metrics, UpstreamTls};

/// A connection with no question in flight for this long is closed.
pub const IDLE: Duration = Duration::from_secs(20);

/// Which upstreams are asked over TLS, and how certificates are checked.
pub struct Settings {
    names: HashMap<SocketAddr, ServerName<'static>>,
    ca: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
    client: Arc<ClientConfig>,
}

impl Settings {
    /// From the configuration's `upstream_tls` names and CA certificates.
    pub fn new(names: &std::collections::BTreeMap<SocketAddr, String>, ca: Option<&[rustls_pki_types::CertificateDer<'static>]>) -> Self {
        let mut roots = RootCertStore::empty();
        match ca {
            Some(certs) => {
                // The configuration checked that they are PEM certificates;
                // one that is not a usable CA is left out.
                let (_, bad) = roots.add_parsable_certificates(certs.iter().cloned());
                if bad > 0 {
                    tracing::warn!(unusable = bad, "upstream_tls.ca_file: some certificates are not usable as trust anchors");
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        // ring, as for the listeners (server::tls says why).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| ClientConfig::builder().with_root_certificates(RootCertStore::empty()).with_no_client_auth());
        client.alpn_protocols = vec![b"dot".to_vec()];
        let names = names.iter().filter_map(|(a, n)| Some((*a, ServerName::try_from(n.clone()).ok()?))).collect();
        Settings { names, ca: ca.map(<[_]>::to_vec), client: Arc::new(client) }
    }

    /// Whether `other` asks the same upstreams the same way (then the
    /// connections open may go on).
    pub fn same_as(&self, other: &Settings) -> bool {
        self.names == other.names && self.ca == other.ca
    }

    /// The certificate name of `up`, if it is asked over TLS.
    pub fn name(&self, up: SocketAddr) -> Option<&ServerName<'static>> {
        self.names.get(&up)
    }

    /// The TLS client every connection is made with.
    pub fn client(&self) -> &Arc<ClientConfig> {
        &self.client
    }
}

/// Why a question over TLS failed.
#[derive(Debug)]
pub enum Failed {
    Timeout,
    Io(String),
}

/// One open connection: the writer's queue and the questions in flight.
struct Conn {
    name: ServerName<'static>,
    client: Arc<ClientConfig>,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Mutex<HashMap<u16, oneshot::Sender<Vec<u8>>>>>,
    closed: Arc<AtomicBool>,
}

impl Conn {
    fn usable(&self, name: &ServerName<'static>, client: &Arc<ClientConfig>) -> bool {
        !self.closed.load(Ordering::Relaxed) && self.name == *name && Arc::ptr_eq(&self.client, client)
    }
}

/// An upstream's connection, if one is open; locked while one is made.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>;

/// The connections, one per upstream address.
#[derive(Default)]
pub struct Pool {
    slots: Mutex<HashMap<SocketAddr, Slot>>,
}

impl Pool {
    /// Sends `query` (its id is replaced by one free on the connection)
    /// and waits for the reply with that id, until `deadline`. Returns
    /// the query as sent and the reply. A connection found closed is
    /// replaced once.
    pub async fn exchange(
        &self,
        up: SocketAddr,
        name: &ServerName<'static>,
        client: &Arc<ClientConfig>,
        mut query: Vec<u8>,
        deadline: Instant,
        metrics: &Metrics,
    ) -> Result<(Vec<u8>, Vec<u8>), Failed> {
        for retry in [true, false] {
            let (conn, fresh) = self.get(up, name, client, deadline, metrics).await?;
            let (tx, rx) = oneshot::channel();
            let id = {
                let mut p = conn.pending.lock().unwrap_or_else(|p| p.into_inner());
                let id = loop {
                    let id: u16 = rand::random();
                    if !p.contains_key(&id) {
                        break id;
                    }
                };
                p.insert(id, tx);
                id
            };
            query[..2].copy_from_slice(&id.to_be_bytes());
            let mut framed = Vec::with_capacity(query.len() + 2);
            framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
            framed.extend_from_slice(&query);
            if conn.tx.send(framed).is_err() {
                conn.closed.store(true, Ordering::Relaxed);
                if retry && !fresh {
                    continue;
                }
                return Err(Failed::Io("the TLS connection closed".into()));
            }
            match tokio::time::timeout_at(deadline.into(), rx).await {
                Ok(Ok(reply)) => return Ok((query, reply)),
                // The connection ended before the reply: the upstream closed it.
                Ok(Err(_)) if retry && !fresh => continue,
                Ok(Err(_)) => return Err(Failed::Io("the TLS connection closed before the reply".into())),
                Err(_) => {
                    conn.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                    // A connection that swallowed a question may be stuck:
                    // the next question opens another (this one still
                    // takes the replies of those already asked on it).
                    conn.closed.store(true, Ordering::Relaxed);
                    return Err(Failed::Timeout);
                }
            }
        }
        Err(Failed::Io("the TLS connection closed".into()))
    }

    /// The open connection to `up`, or a new one (true: just made).
    async fn get(
        &self,
        up: SocketAddr,
        name: &ServerName<'static>,
        client: &Arc<ClientConfig>,
        deadline: Instant,
        metrics: &Metrics,
    ) -> Result<(Arc<Conn>, bool), Failed> {
        let slot = self.slots.lock().unwrap_or_else(|p| p.into_inner()).entry(up).or_default().clone();
        // One connects; the others asking the same upstream meanwhile wait for it.
        let mut held = tokio::time::timeout_at(deadline.into(), slot.lock()).await.map_err(|_| Failed::Timeout)?;
        if let Some(c) = held.as_ref().filter(|c| c.usable(name, client)) {
            return Ok((c.clone(), false));
        }
        let connect = async {
            let tcp = TcpStream::connect(up).await.map_err(|e| Failed::Io(format!("TCP: {e}")))?;
            let _ = tcp.set_nodelay(true);
            TlsConnector::from(client.clone()).connect(name.clone(), tcp).await.map_err(|e| Failed::Io(format!("TLS: {e}")))
        };
        let opened = tokio::time::timeout_at(deadline.into(), connect).await.map_err(|_| Failed::Timeout).and_then(|r| r);
        let result = if opened.is_ok() { "opened" } else { "failed" };
        metrics.upstream_tls_connections.get_or_create(&UpstreamTls { upstream: up.to_string(), result }).inc();
        let stream = opened?;
        debug!(upstream = %up, "DNS over TLS connection open");
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn { name: name.clone(), client: client.clone(), tx, pending: Arc::default(), closed: Arc::default() });
        tokio::spawn(run(stream, rx, conn.pending.clone(), conn.closed.clone(), up));
        *held = Some(conn.clone());
        Ok((conn, true))
    }
}

/// Writes the queued questions and hands each reply to the question with
/// its id, until either side fails, or nothing is in flight for [`IDLE`].
async fn run(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    pending: Arc<Mutex<HashMap<u16, oneshot::Sender<Vec<u8>>>>>,
    closed: Arc<AtomicBool>,
    up: SocketAddr,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let in_flight = || !pending.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
    let writer = async {
        loop {
            // Idle: nothing in flight and nothing asked for IDLE.
            let framed = match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(_) if in_flight() => continue,
                Err(_) => return,
            };
            if wr.write_all(&framed).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        loop {
            let Ok(len) = rd.read_u16().await else { return };
            let mut buf = vec![0u8; len as usize];
            if rd.read_exact(&mut buf).await.is_err() || buf.len() < 2 {
                return;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            // A reply to a question given up on (timed out) has no taker.
            if let Some(tx) = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
                let _ = tx.send(buf);
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
    closed.store(true, Ordering::Relaxed);
    // Dropping the senders tells each question waiting that the connection ended.
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let mut wr = wr;
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    debug!(upstream = %up, "DNS over TLS connection closed");
}
