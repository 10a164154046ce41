//! DNS over HTTPS (RFC 8484) on an `https` listener: `/dns-query`, GET
//! with `?dns=` (base64url, no padding) and POST of
//! `application/dns-message`, over HTTP/2 or HTTP/1.1 as ALPN chose,
//! answered through the one answer path as a stream transport (never
//! truncated). The limits are TCP's (`tcp::serve` admits the connection):
//!
//! - a connection with no request in flight for `tcp.idle_timeout` is
//!   closed, and so is one whose request head does not come within it;
//!   a POST body must arrive within it too (else 408);
//! - a response that cannot be written within `tcp.write_timeout` closes
//!   the connection;
//! - HTTP/2 answers up to [`tcp::MAX_IN_FLIGHT_PER_CONNECTION`] streams
//!   at once; HTTP/1.1 answers its requests in turn;
//! - the request head is bounded ([`MAX_HEAD`]) and a body over 65535
//!   bytes is refused (413).
//!
//! The response carries `Cache-Control: max-age` of its smallest TTL in
//! the answer and authority sections (RFC 8484 §5.1); 400 for a message
//! that is not a DNS query, 415 for another media type, 405 for another
//! method, 404 for another path. A query that a response policy drops
//! gets 503 and no body (HTTP has no silence to give).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use super::tcp::{MAX_IN_FLIGHT_PER_CONNECTION, TcpLimits, stopped};
use super::tls::ALPN_H2;
use crate::answer::Client;
use crate::metrics::Event;
use crate::state::{Shared, Started};

/// The one path served (RFC 8484 §4.1's example, what every client uses).
pub const PATH: &str = "/dns-query";
/// The media type of a DNS message (RFC 8484 §6).
pub const MEDIA_TYPE: &str = "application/dns-message";
/// Largest DNS message (and so POST body).
pub const MAX_MESSAGE: usize = 65_535;
/// Bytes of a request head (HTTP/1.1 buffer, HTTP/2 header list): a GET's
/// `?dns=` holds a query of some hundreds of bytes.
pub const MAX_HEAD: usize = 16 * 1024;

/// Most bytes of a too-large body read (and dropped) before the 413.
pub const DRAIN_MAX: usize = 1 << 20;

/// How long an idle connection is given to close gracefully (HTTP/2's
/// GOAWAY exchange) before it is dropped.
pub const IDLE_CLOSE: Duration = Duration::from_secs(1);

/// What the requests of one connection share: for the idle watch.
struct Conn {
    client: Client,
    shared: Arc<Shared>,
    idle: Duration,
    born: Instant,
    /// Requests being answered.
    active: AtomicUsize,
    /// Milliseconds from `born` to the last request's start or end.
    last: AtomicU64,
}

impl Conn {
    fn touch(&self) {
        self.last.store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When the connection will have been idle for `idle`, if nothing
    /// happens before; `None` while a request is in flight.
    fn idle_at(&self) -> Option<Instant> {
        (self.active.load(Ordering::Relaxed) == 0).then(|| self.born + Duration::from_millis(self.last.load(Ordering::Relaxed)) + self.idle)
    }
}

/// A request counted in flight until dropped.
struct Busy<'a>(&'a Conn);

impl<'a> Busy<'a> {
    fn new(c: &'a Conn) -> Self {
        c.active.fetch_add(1, Ordering::Relaxed);
        c.touch();
        Busy(c)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one DoH connection until the client closes it, it is idle for
/// `idle_timeout`, a write times out, or the server stops (then the
/// requests in flight are answered first).
pub async fn connection(s: TlsStream<TcpStream>, client: Client, shared: Arc<Shared>, limits: TcpLimits, mut stop: watch::Receiver<bool>) {
    let h2 = s.get_ref().1.alpn_protocol() == Some(ALPN_H2);
    let conn = Arc::new(Conn {
        client,
        shared: shared.clone(),
        idle: limits.idle_timeout,
        born: Instant::now(),
        active: AtomicUsize::new(0),
        last: AtomicU64::new(0),
    });
    let io = TokioIo::new(WriteTimeout { io: s, limit: limits.write_timeout, deadline: None, client, shared: shared.clone() });
    let svc = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req| {
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(handle(&conn, req).await) }
        })
    };
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1().timer(TokioTimer::new()).header_read_timeout(limits.idle_timeout).max_buf_size(MAX_HEAD);
    b.http2().timer(TokioTimer::new()).max_concurrent_streams(MAX_IN_FLIGHT_PER_CONNECTION as u32).max_header_list_size(MAX_HEAD as u32);
    // ALPN decided; without it (a client that offers none), HTTP/1.1.
    let b = if h2 { b.http2_only() } else { b.http1_only() };
    let served = b.serve_connection(io, svc);
    tokio::pin!(served);
    // Once closing: the time left for a graceful close (GOAWAY, the
    // requests in flight answered), after which the connection is dropped.
    let mut closing: Option<Instant> = None;
    loop {
        let wake = conn.idle_at().unwrap_or_else(|| Instant::now() + limits.idle_timeout);
        tokio::select! {
            _ = served.as_mut() => break,
            _ = tokio::time::sleep_until(wake), if closing.is_none() => {
                if conn.idle_at().is_some_and(|at| at <= Instant::now()) {
                    served.as_mut().graceful_shutdown();
                    // Nothing in flight: a client that does not close at once is not waited for long.
                    closing = Some(Instant::now() + IDLE_CLOSE);
                }
            }
            _ = stopped(&mut stop), if closing.is_none() => {
                served.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + limits.write_timeout + limits.idle_timeout);
            }
            _ = tokio::time::sleep_until(closing.unwrap_or_else(Instant::now)), if closing.is_some() => break,
        }
    }
}

type Reply = Response<Full<Bytes>>;

fn status(code: StatusCode, why: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(why.as_bytes())));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// One request: hyper's body on a connection, any body in the tests.
async fn handle<B: Body<Data = Bytes> + Unpin>(conn: &Conn, req: Request<B>) -> Reply {
    let _busy = Busy::new(conn);
    if req.uri().path() != PATH {
        return status(StatusCode::NOT_FOUND, "DNS queries are served at /dns-query\n");
    }
    let msg = match *req.method() {
        Method::GET => match req.uri().query().and_then(dns_param) {
            Some(v) => match decode_base64url(v) {
                Some(m) => m,
                None => return status(StatusCode::BAD_REQUEST, "the dns parameter is not base64url (RFC 4648 §5, no padding)\n"),
            },
            None => return status(StatusCode::BAD_REQUEST, "GET needs ?dns= with the query in base64url\n"),
        },
        Method::POST => {
            let media = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !media.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case(MEDIA_TYPE)) {
                return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "POST a body of Content-Type: application/dns-message\n");
            }
            let too_large = || status(StatusCode::PAYLOAD_TOO_LARGE, "a DNS message is at most 65535 bytes\n");
            let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let mut body = req.into_body();
            if declared.is_some_and(|n| n > MAX_MESSAGE as u64) {
                drain(&mut body, conn.idle).await;
                return too_large();
            }
            let mut got = Vec::new();
            let read = async {
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else { return Err(StatusCode::BAD_REQUEST) };
                    if let Some(data) = frame.data_ref() {
                        if got.len() + data.len() > MAX_MESSAGE {
                            return Err(StatusCode::PAYLOAD_TOO_LARGE);
                        }
                        got.extend_from_slice(data);
                    }
                }
                Ok(())
            };
            match tokio::time::timeout(conn.idle, read).await {
                Ok(Ok(())) => got,
                Ok(Err(StatusCode::PAYLOAD_TOO_LARGE)) => {
                    drain(&mut body, conn.idle).await;
                    return too_large();
                }
                Ok(Err(_)) => return status(StatusCode::BAD_REQUEST, "the body did not arrive whole\n"),
                Err(_) => return status(StatusCode::REQUEST_TIMEOUT, "the body did not arrive within tcp.idle_timeout\n"),
            }
        }
        _ => {
            let mut r = status(StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n");
            r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
            return r;
        }
    };
    let shared = &conn.shared;
    let bytes = match shared.answer_start(conn.client, &msg) {
        Started::Done(b) => b,
        Started::Drop => return status(StatusCode::BAD_REQUEST, "not a DNS query (under 12 bytes, or QR=1)\n"),
        // Boxed: the upstream exchange's state would otherwise be part of
        // every request's task, copied when hyper spawns it.
        Started::Wait(w) => Box::pin(w.finish(shared)).await,
    };
    let Some(bytes) = bytes else {
        return status(StatusCode::SERVICE_UNAVAILABLE, "");
    };
    let max_age = min_ttl(&bytes).unwrap_or(0);
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(MEDIA_TYPE));
    if let Ok(v) = header::HeaderValue::from_str(&format!("max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    r
}

/// Reads and drops the rest of a body that is too large (at most
/// [`DRAIN_MAX`] bytes, within `limit`), so that the client, still
/// sending, reads the 413 rather than a reset.
async fn drain<B: Body<Data = Bytes> + Unpin>(body: &mut B, limit: Duration) {
    let work = async {
        let mut seen = 0usize;
        while seen < DRAIN_MAX {
            match body.frame().await {
                Some(Ok(f)) => seen += f.data_ref().map_or(0, |d| d.len()),
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(limit, work).await;
}

/// The value of `dns=` in a query string.
fn dns_param(query: &str) -> Option<&str> {
    query.split('&').find_map(|kv| kv.strip_prefix("dns="))
}

/// base64url without padding (RFC 8484 §4.1); padding a client adds
/// anyway (`=` or `%3D`) is taken off first.
fn decode_base64url(v: &str) -> Option<Vec<u8>> {
    let mut v = v;
    loop {
        v = match (v.strip_suffix('='), v.strip_suffix("%3D").or_else(|| v.strip_suffix("%3d"))) {
            (Some(t), _) | (None, Some(t)) => t,
            (None, None) => break,
        };
    }
    if v.len() > MAX_MESSAGE.div_ceil(3) * 4 {
        return None;
    }
    data_encoding::BASE64URL_NOPAD.decode(v.as_bytes()).ok()
}

/// The smallest TTL of the answer and authority sections of a response
/// pzdns wrote; `None` when they hold no record.
fn min_ttl(msg: &[u8]) -> Option<u32> {
    let count = |i: usize| msg.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize);
    let (qd, an, ns) = (count(4)?, count(6)?, count(8)?);
    let mut at = crate::dns::HEADER_LEN;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    let mut min: Option<u32> = None;
    for _ in 0..an + ns {
        at = skip_name(msg, at)?;
        let fixed = msg.get(at..at + 10)?;
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        // RFC 2181 §8: a TTL with the top bit set is 0.
        let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
        min = Some(min.map_or(ttl, |m| m.min(ttl)));
        at += 10 + u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
    }
    min
}

/// The offset after the name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let b = *msg.get(at)?;
        match b & 0xC0 {
            0xC0 => return Some(at + 2),
            0 if b == 0 => return Some(at + 1),
            0 => at += 1 + b as usize,
            _ => return None,
        }
    }
}

/// The connection's stream, with a bound on how long a write may wait
/// for the client to read (`tcp.write_timeout`): past it, the write fails
/// and the connection closes.
struct WriteTimeout<S> {
    io: S,
    limit: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    client: Client,
    shared: Arc<Shared>,
}

impl<S> WriteTimeout<S> {
    /// After a write that did not progress: pending until the limit, then an error.
    fn waited<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let limit = self.limit;
        let d = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if d.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let src = self.client.src;
        self.shared.metrics.events.note(Event::TcpWriteTimeout, || {
            format!("https connection from {src} closed: a response was not taken within {limit:?} (tcp.write_timeout)")
        });
        Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.waited(cx),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(r) => {
                self.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.waited(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection of a client in `vpc-a` to a server of the rules fixture.
    fn conn() -> Conn {
        let mut cfg = crate::config::ServerConfig::defaults();
        cfg.zones_dir = "tests/fixtures/rules/zones".into();
        cfg.upstreams.clear();
        let snap = crate::loader::load(&cfg, 1).expect("the rules fixture loads");
        let shared = Shared::new(cfg, snap, Arc::new(crate::metrics::Metrics::new()));
        let client =
            Client { listener: 0, src: "127.1.0.5:5300".parse().unwrap(), proxy: None, transport: crate::answer::Transport::Https };
        let idle = Duration::from_secs(5);
        Conn { client, shared, idle, born: Instant::now(), active: AtomicUsize::new(0), last: AtomicU64::new(0) }
    }

    #[tokio::test]
    async fn a_request_is_answered_by_a_future_that_holds_no_upstream_exchange() {
        let conn = conn();
        // www.example.test A, id 7.
        let mut q = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
        let req = Request::post(PATH).header(header::CONTENT_TYPE, MEDIA_TYPE).body(Full::new(Bytes::from(q))).unwrap();
        let answer = handle(&conn, req);
        // hyper spawns this future for every HTTP/2 stream, and tokio
        // copies it whole: what only a forwarded query needs is boxed.
        let size = std::mem::size_of_val(&answer);
        assert!(size <= 1024, "a DoH request's future is {size} bytes");
        let r = answer.await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], MEDIA_TYPE);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!((&body[..2], body[3] & 0x0F), (&[0, 7][..], 0), "id 7, NOERROR");
        assert!(u16::from_be_bytes([body[6], body[7]]) >= 1, "an answer");
    }

    #[test]
    fn the_dns_parameter_decodes_with_or_without_padding() {
        assert_eq!(dns_param("ct=x&dns=AAEAAA"), Some("AAEAAA"));
        assert_eq!(dns_param("dn=x"), None);
        assert_eq!(decode_base64url("AAEAAA").unwrap(), [0, 1, 0, 0]);
        assert_eq!(decode_base64url("AAE").unwrap(), [0, 1]);
        assert_eq!(decode_base64url("AAE=").unwrap(), [0, 1]);
        assert_eq!(decode_base64url("AAE%3D").unwrap(), [0, 1]);
        assert!(decode_base64url("AA+/").is_none(), "base64, not base64url");
    }

    #[test]
    fn max_age_is_the_smallest_ttl_of_answer_and_authority() {
        // Header: 1 question, 2 answers, 1 authority, 1 additional.
        let mut m = vec![0, 1, 0x81, 0x80, 0, 1, 0, 2, 0, 1, 0, 1];
        m.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        let rr = |m: &mut Vec<u8>, ttl: u32| {
            m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&[0, 4, 10, 0, 0, 1]);
        };
        rr(&mut m, 300);
        rr(&mut m, 60);
        rr(&mut m, 120);
        rr(&mut m, 5); // additional: not counted
        assert_eq!(min_ttl(&m), Some(60));
        let mut none = m[..12].to_vec();
        none[6..12].fill(0);
        none.extend_from_slice(&m[12..19]);
        assert_eq!(min_ttl(&none), None);
    }
}
