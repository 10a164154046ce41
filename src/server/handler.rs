//! The request handler: header and EDNS rules of SPEC.md §3 "Protocol",
//! then view → resolve → (upstream) → response, then metrics and the query
//! log. It loads the current snapshot once and holds it for the whole
//! query, so a reload swapping in new data never changes an answer
//! half-way.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, info};

use crate::config::ServerConfig;
use crate::metrics::{Metrics, rcode_label};
use crate::reload::ReloadStatus;
use crate::resolve::{Source, resolve};
use crate::snapshot::{Snapshot, View};
use crate::upstream::{Forwarder, Lookup};

/// Largest UDP payload pzdns sends or advertises (the DNS flag day 2020
/// value): avoids IP fragmentation on any path.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// The EDNS version pzdns speaks (RFC 6891).
pub const EDNS_VERSION: u8 = 0;

/// State shared by every listener's handler, the admin server and reload.
pub struct Shared {
    /// The data in force; swapped whole on reload.
    pub snapshot: ArcSwap<Snapshot>,
    /// Upstream client and cache; they survive reloads.
    pub forwarder: Forwarder,
    pub metrics: Arc<Metrics>,
    /// The configuration the server started with (reload re-reads zones/).
    pub config: ServerConfig,
    pub status: Mutex<ReloadStatus>,
    /// Serialises reloads from the watch, SIGHUP and the admin API.
    pub reload_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    pub fn new(config: ServerConfig, snapshot: Snapshot, metrics: Arc<Metrics>) -> Arc<Self> {
        let forwarder = Forwarder::new(config.cache_max_entries, config.serve_stale, metrics.clone());
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            forwarder,
            metrics,
            config,
            status: Mutex::new(ReloadStatus::default()),
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }
}

/// One listener's handler: it knows its listener so that an inbound
/// endpoint (a listener bound to a VPC) answers as that VPC.
#[derive(Clone)]
pub struct DnsHandler {
    pub listener: usize,
    pub shared: Arc<Shared>,
}

/// What the metrics and the query log need to know about one query.
struct Outcome {
    view: Option<View>,
    source: &'static str,
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response_handle: R) -> ResponseInfo {
        let started = Instant::now();
        let snap = self.shared.snapshot.load_full();
        let (info, outcome) = answer(&snap, &self.shared.forwarder, self.listener, request, response_handle).await;
        let elapsed = started.elapsed();
        let m = &self.shared.metrics;
        let rcode = rcode_label(info.response_code);
        m.query_duration.observe(elapsed.as_secs_f64());
        if self.shared.config.query_log {
            let vpc = match outcome.view {
                Some(View::Vpc { vpc, .. }) => snap.vpc_labels.get(vpc as usize).cloned().unwrap_or_else(|| snap.unknown_label.clone()),
                _ => snap.unknown_label.clone(),
            };
            let q = request.queries.queries().first();
            info!(
                target: "pzdns::query",
                vpc = &*vpc,
                client = %request.src(),
                name = %q.map(|q| q.name().to_string()).unwrap_or_default(),
                qtype = %q.map(|q| q.query_type()).unwrap_or(RecordType::NULL),
                rcode,
                source = outcome.source,
                us = elapsed.as_micros() as u64,
            );
        }
        snap.count_query(m, outcome.view, rcode, outcome.source);
        info
    }
}

/// The response EDNS: echoed when the query had OPT, with our payload
/// size capped at what the client can take (and at least 512).
fn response_edns(req: &Edns) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
    e.set_version(EDNS_VERSION);
    e.set_dnssec_ok(req.flags().dnssec_ok);
    e
}

async fn answer<R: ResponseHandler>(
    snap: &Snapshot,
    forwarder: &Forwarder,
    listener: usize,
    request: &Request,
    mut response_handle: R,
) -> (ResponseInfo, Outcome) {
    let edns = request.edns.as_ref().map(response_edns);
    let meta = &request.metadata;

    // Every response echoes the question byte for byte; a compression
    // pointer in it would point into our response, not the query, and
    // corrupt it. No real client compresses its question: FORMERR, with
    // the question left out, before any other rule (found by fuzzing).
    if question_has_pointer(request.queries.as_bytes()) {
        let mut meta = Metadata::response_from_request(meta);
        meta.response_code = ResponseCode::FormErr;
        let Ok(none) = hickory_server::zone_handler::Queries::read(&mut hickory_proto::serialize::binary::BinDecoder::new(&[]), 0) else {
            return (
                ResponseInfo::from(Header { metadata: meta, counts: HeaderCounts::default() }),
                Outcome { view: None, source: "error" },
            );
        };
        let response = MessageResponseBuilder::new(&none, edns.as_ref()).build_no_records(meta);
        let info = send(request, response_handle.send_response(response).await);
        return (info, Outcome { view: None, source: "error" });
    }

    // Then the header rules: these need no data.
    let early = if meta.message_type != MessageType::Query {
        Some(ResponseCode::FormErr)
    } else if let Some(req_edns) = &request.edns
        && req_edns.version() > EDNS_VERSION
    {
        Some(ResponseCode::BADVERS)
    } else if meta.op_code != OpCode::Query {
        Some(ResponseCode::NotImp)
    } else if request.queries.len() != 1 {
        Some(ResponseCode::FormErr)
    } else {
        None
    };
    if let Some(rcode) = early {
        let info = send_error(request, rcode, edns.as_ref(), &mut response_handle).await;
        return (info, Outcome { view: None, source: "error" });
    }
    let query = &request.queries.queries()[0];
    let qtype = query.query_type();
    let (view, _) = snap.view_for(Some(listener), request.src().ip());
    // Only class IN has data here; CHAOS (version.bind) and the rest are
    // refused rather than answered, or forwarded, as if they were IN.
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) || query.query_class() != DNSClass::IN {
        let info = send_error(request, ResponseCode::Refused, edns.as_ref(), &mut response_handle).await;
        return (info, Outcome { view: Some(view), source: "refused" });
    }

    let qname = query.name().into();
    let res = resolve(snap, view, &qname, qtype, false);
    let mut source = res.source.as_str();

    let mut rmeta = Metadata::response_from_request(meta);
    rmeta.authoritative = res.authoritative;
    rmeta.recursion_available = res.source != Source::Refused;
    rmeta.response_code = res.rcode;
    if let Some(up) = &res.upstream {
        // SPEC.md §3 rules 3–5: the part that is not ours comes from the
        // upstreams (through the cache) and follows the local part.
        let (upstreams, route) = snap.upstreams_for(up.route);
        let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let got = forwarder.lookup(&up.name, up.qtype, dnssec_ok, upstreams, route, meta.recursion_desired).await;
        let local_first = res.source != Source::Upstream;
        let entry = match got {
            Lookup::Fresh(e, from_cache) => {
                if !local_first {
                    source = if from_cache { "cache" } else { "upstream" };
                }
                Some(e)
            }
            Lookup::Stale(e, error) => {
                debug!(name = %up.name, qtype = %up.qtype, %error, "serving stale");
                if !local_first {
                    source = "stale";
                }
                Some(e)
            }
            // RD=0 and not cached: what is known locally, nothing more.
            Lookup::NotCached => None,
            Lookup::Failed(error) => {
                debug!(name = %up.name, qtype = %up.qtype, %error, "upstream failed: SERVFAIL");
                rmeta.response_code = ResponseCode::ServFail;
                rmeta.authoritative = false;
                let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
                    rmeta,
                    std::iter::empty::<&Record>(),
                    std::iter::empty(),
                    std::iter::empty(),
                    std::iter::empty(),
                );
                let info = send(request, response_handle.send_response(response).await);
                return (info, Outcome { view: Some(view), source: "failure" });
            }
        };
        if let Some(e) = entry {
            let now = Instant::now();
            let (answers, authorities, additionals) = (e.aged(now, &e.answers), e.aged(now, &e.authorities), e.aged(now, &e.additionals));
            // RFC 6604: the rcode is that of the last link.
            rmeta.response_code = e.rcode;
            let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
                rmeta,
                res.answers.iter().map(|r| r.as_ref()).chain(answers.iter()),
                res.authority.iter().copied().chain(authorities.iter()),
                std::iter::empty(),
                additionals.iter(),
            );
            let info = send(request, response_handle.send_response(response).await);
            return (info, Outcome { view: Some(view), source });
        }
    }
    let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
        rmeta,
        res.answers.iter().map(|r| r.as_ref()),
        res.authority.iter().copied(),
        std::iter::empty(),
        std::iter::empty(),
    );
    let info = send(request, response_handle.send_response(response).await);
    (info, Outcome { view: Some(view), source })
}

/// Whether the raw question section uses name compression.
fn question_has_pointer(mut q: &[u8]) -> bool {
    while let Some(&len) = q.first() {
        if len & 0xc0 != 0 {
            return true;
        }
        if len == 0 {
            // End of a name; skip QTYPE and QCLASS, then the next question.
            q = q.get(5..).unwrap_or(&[]);
            continue;
        }
        q = q.get(1 + len as usize..).unwrap_or(&[]);
    }
    false
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    rcode: ResponseCode,
    edns: Option<&Edns>,
    response_handle: &mut R,
) -> ResponseInfo {
    // Extended rcodes (BADVERS) carry their high bits in the OPT record.
    let mut with_high;
    let edns = match edns {
        Some(x) if rcode.high() != 0 => {
            with_high = x.clone();
            with_high.set_rcode_high(rcode.high());
            Some(&with_high)
        }
        other => other,
    };
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.response_code = rcode;
    let response = MessageResponseBuilder::new(&request.queries, edns).build_no_records(meta);
    send(request, response_handle.send_response(response).await)
}

fn send(request: &Request, r: Result<ResponseInfo, hickory_server::net::NetError>) -> ResponseInfo {
    match r {
        Ok(info) => info,
        Err(error) => {
            debug!(%error, src = %request.src(), "failed to send response");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
        }
    }
}

/// The whole request path for one message, as the TCP server runs it:
/// bytes in, response bytes out (`None` where nothing is sent back: under
/// 12 bytes, or a response rather than a query). For fuzzing and tests.
pub async fn answer_raw(shared: &Arc<Shared>, listener: usize, bytes: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    if bytes.len() < 12 {
        return None;
    }
    let req = match Request::from_bytes(bytes.to_vec(), src, hickory_server::net::xfer::Protocol::Tcp) {
        Ok(r) => r,
        Err(_) => return Some(super::tcp::formerr(bytes)),
    };
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let h = DnsHandler { listener, shared: shared.clone() };
    let slot = Arc::new(Mutex::new(None));
    h.handle_request::<super::Sink, hickory_server::net::runtime::TokioTime>(&req, super::Sink::Capture(slot.clone())).await;
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}
