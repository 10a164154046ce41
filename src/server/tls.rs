//! TLS for the `tls` (DNS over TLS, RFC 7858) and `https` (DNS over
//! HTTPS, RFC 8484) listeners: the certificate and key from PEM files,
//! read again when they change, and the handshake. TLS 1.3 and 1.2
//! (rustls, ring). What runs over the session is `tcp`'s (DoT: the same
//! framing, limits and pipelining as TCP) or `doh`'s.
//!
//! A change of the files is noticed by polling their stamps (device,
//! inode, size, times) every [`POLL`]; it is read once the stamps have
//! held still for one more poll, so that a certificate and a key written
//! one after the other are read together. A file that does not read, or a
//! key that does not match the certificate, is rejected as bad data is:
//! the old certificate keeps serving, the problem is logged and counted
//! (`pzdns_tls_certificate_loads_total{result="failure"}`). At start the
//! same problem stops the server (exit 2).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tracing::{debug, error, info};

use crate::answer::Transport;
use crate::config::{ListenTransport, TlsFiles};
use crate::metrics::{Metrics, ResultLabels};

/// How often the certificate and key files are looked at.
pub const POLL: Duration = Duration::from_secs(1);

/// ALPN of DNS over TLS (RFC 7858 §3.2, IANA "dot").
pub const ALPN_DOT: &[u8] = b"dot";
/// ALPN of DNS over HTTPS: HTTP/2 first (RFC 8484 §5.2), then HTTP/1.1.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A certificate and key that cannot serve: which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {why}")]
pub struct CertError {
    pub file: String,
    pub why: String,
}

/// What identifies one version of a file without reading it.
type Stamp = Option<(u64, u64, u64, i64, i64, i64, i64)>;

fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

/// One listener's certificate and key, swapped whole when the files change.
pub struct Certs {
    pub files: TlsFiles,
    transport: ListenTransport,
    config: ArcSwap<ServerConfig>,
    /// The stamps of the files in force, and of the last poll.
    stamps: Mutex<((Stamp, Stamp), (Stamp, Stamp))>,
}

impl Certs {
    /// Reads the files now (start): the reason, naming the file, if they cannot serve.
    pub fn load(files: &TlsFiles, transport: ListenTransport) -> Result<Arc<Certs>, CertError> {
        let stamps = (stamp(&files.cert), stamp(&files.key));
        let config = server_config(files, transport)?;
        Ok(Arc::new(Certs { files: files.clone(), transport, config: ArcSwap::from(config), stamps: Mutex::new((stamps, stamps)) }))
    }

    /// A handshake acceptor with the certificate in force.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Looks at the files: once they changed and then held still for a
    /// poll, reads them; a good pair is put in force, a bad one reported
    /// (the old one keeps serving). Returns whether a new one is in force.
    pub fn poll(&self, metrics: &Metrics) -> bool {
        let now = (stamp(&self.files.cert), stamp(&self.files.key));
        {
            let mut st = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
            let (in_force, last) = *st;
            st.1 = now;
            // Unchanged, or still changing: wait for the next poll.
            if now == in_force || now != last {
                return false;
            }
            // Tried once at these stamps, good or bad: not again until they change.
            st.0 = now;
        }
        match server_config(&self.files, self.transport) {
            Ok(c) => {
                self.config.store(c);
                metrics.stream.certificate_loads.get_or_create(&ResultLabels { result: "success" }).inc();
                info!(cert = %self.files.cert.display(), key = %self.files.key.display(), "TLS certificate read again: new connections get it");
                true
            }
            Err(e) => {
                metrics.stream.certificate_loads.get_or_create(&ResultLabels { result: "failure" }).inc();
                error!("TLS certificate rejected, the old one keeps serving: {e}");
                false
            }
        }
    }
}

/// Polls `certs` every [`POLL`] until the task is dropped.
pub async fn watch(certs: Vec<Arc<Certs>>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for c in &certs {
            // Small files; stat and read off the answering threads.
            let (c, m) = (c.clone(), metrics.clone());
            let _ = tokio::task::spawn_blocking(move || c.poll(&m)).await;
        }
    }
}

/// The rustls configuration of a certificate chain and key read from PEM.
fn server_config(files: &TlsFiles, transport: ListenTransport) -> Result<Arc<ServerConfig>, CertError> {
    let err = |p: &Path, why: String| CertError { file: p.display().to_string(), why };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| err(&files.cert, format!("cannot read the certificate: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&files.cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(err(&files.cert, "holds no certificate (a PEM `BEGIN CERTIFICATE` block, the server's first)".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        err(
            &files.key,
            format!("no private key read ({e}); a PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block"),
        )
    })?;
    // ring rather than aws-lc-rs (which needs cmake and a C toolchain
    // more to build); rustls deprecates it for want of post-quantum key
    // exchange, which DNS clients do not ask of a resolver yet.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| err(&files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(&files.cert, format!("certificate and key {} do not serve together: {e}", files.key.display())))?;
    cfg.alpn_protocols = match transport {
        ListenTransport::Https => vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()],
        _ => vec![ALPN_DOT.to_vec()],
    };
    Ok(Arc::new(cfg))
}

/// The TLS handshake, within `limit`; a failure or a timeout is counted
/// and closes the connection.
pub async fn accept(
    certs: &Certs,
    stream: TcpStream,
    limit: Duration,
    transport: Transport,
    metrics: &Metrics,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(limit, certs.acceptor().accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        outcome => {
            metrics.stream.handshake_failures[transport as usize].inc();
            match outcome {
                Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
                _ => debug!("TLS handshake not finished within tcp.idle_timeout"),
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_bad_files_name_the_file() {
        let d = std::env::temp_dir().join(format!("pzdns-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let files = TlsFiles { cert: d.join("cert.pem"), key: d.join("key.pem") };
        let e = server_config(&files, ListenTransport::Tls).unwrap_err();
        assert!(e.file.ends_with("cert.pem") && e.why.contains("cannot read"), "{e}");
        std::fs::write(&files.cert, "not pem\n").unwrap();
        let e = server_config(&files, ListenTransport::Tls).unwrap_err();
        assert!(e.file.ends_with("cert.pem") && e.why.contains("holds no certificate"), "{e}");
        std::fs::remove_dir_all(&d).ok();
    }
}
