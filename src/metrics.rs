//! Prometheus metrics (docs/REFERENCE.md#metrics), served on the admin port's `/metrics`.
//!
//! Label values are bounded: VPC ids come from `vpcs.yaml` (plus `unknown`),
//! rcodes and sources from fixed lists, upstreams from the config. A query
//! name is never a label.
//!
//! A leaf: it takes plain numbers and enums, never the snapshot or the
//! server's types, so every module may count.

use std::fmt::Write;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `pzdns_queries_total{vpc, rcode, source}`: queries answered.
pub const QUERIES: &str = "pzdns_queries";
/// `pzdns_query_duration_seconds`: time from decoded query to response sent.
pub const QUERY_DURATION: &str = "pzdns_query_duration_seconds";
/// `pzdns_upstream_requests_total{upstream, outcome}`: questions sent upstream.
pub const UPSTREAM_REQUESTS: &str = "pzdns_upstream_requests";
/// `pzdns_cache_entries`: answers held in the cache.
pub const CACHE_ENTRIES: &str = "pzdns_cache_entries";
/// `pzdns_cache_bytes`: what the cached answers take in memory (`cache.max_bytes` bounds it).
pub const CACHE_BYTES: &str = "pzdns_cache_bytes";
/// `pzdns_cache_hits_total`, `pzdns_cache_misses_total`, `pzdns_cache_stale_served_total`.
pub const CACHE_HITS: &str = "pzdns_cache_hits";
pub const CACHE_MISSES: &str = "pzdns_cache_misses";
pub const CACHE_STALE: &str = "pzdns_cache_stale_served";
/// `pzdns_upstream_coalesced_total`: questions that joined one already in flight.
pub const COALESCED: &str = "pzdns_upstream_coalesced";
/// `pzdns_upstream_rejected_replies_total`: replies dropped (wrong id or question, garbage).
pub const REJECTED_REPLIES: &str = "pzdns_upstream_rejected_replies";
/// `pzdns_zones`, `pzdns_records`, `pzdns_vpcs`, `pzdns_endpoints`: the data in force.
pub const ZONES: &str = "pzdns_zones";
pub const RECORDS: &str = "pzdns_records";
pub const VPCS: &str = "pzdns_vpcs";
pub const ENDPOINTS: &str = "pzdns_endpoints";
/// `pzdns_reloads_total{result="success"|"failure"}`.
pub const RELOADS: &str = "pzdns_reloads";
/// `pzdns_data_generation`: the generation of the data in force (1 at start).
pub const GENERATION: &str = "pzdns_data_generation";
/// `pzdns_last_reload_success_timestamp_seconds`.
pub const LAST_RELOAD_SUCCESS: &str = "pzdns_last_reload_success_timestamp_seconds";
/// `pzdns_last_reload_failure_timestamp_seconds` (0: none since start).
pub const LAST_RELOAD_FAILURE: &str = "pzdns_last_reload_failure_timestamp_seconds";
/// `pzdns_last_reload_succeeded`: 1 when the last reload attempt loaded, 0 when it failed.
pub const LAST_RELOAD_OK: &str = "pzdns_last_reload_succeeded";
/// `pzdns_authority_queries_total{outcome}` ([`AuthorityLabels`]).
pub const AUTHORITY_QUERIES: &str = "pzdns_authority_queries";
/// `pzdns_authority_queries_per_resolution`: a histogram.
pub const AUTHORITY_QUERIES_PER_RESOLUTION: &str = "pzdns_authority_queries_per_resolution";
/// `pzdns_upstream_in_flight`: questions waiting on an upstream now.
pub const UPSTREAM_IN_FLIGHT: &str = "pzdns_upstream_in_flight";
/// `pzdns_upstream_waiters`: clients waiting on upstream questions now.
pub const UPSTREAM_WAITERS: &str = "pzdns_upstream_waiters";
/// `pzdns_upstream_overloaded_total`: questions answered at once (stale, else SERVFAIL): too many
/// upstream questions in flight, or clients waiting on them.
pub const UPSTREAM_OVERLOADED: &str = "pzdns_upstream_overloaded";
/// `pzdns_upstream_shed_total{reason}`: of those, why: `in_flight`, `waiters`, `question_waiters`
/// (the bounds in all), `client`, `vpc`, `zone` (a share of upstream work spent).
pub const UPSTREAM_SHED: &str = "pzdns_upstream_shed";
/// `pzdns_health_checks_total{result}`: health checks run (SPEC §10), `ok` or `failed`.
pub const HEALTH_CHECKS: &str = "pzdns_health_checks";
/// `pzdns_health_transitions_total{to}`: targets that became `healthy` or `unhealthy`.
pub const HEALTH_TRANSITIONS: &str = "pzdns_health_transitions";
/// `pzdns_health_target_state{target}`: 1 healthy, 0 unhealthy, -1 not yet decided.
pub const HEALTH_TARGET_STATE: &str = "pzdns_health_target_state";
/// `pzdns_tcp_connections`: TCP connections open now.
pub const TCP_CONNECTIONS: &str = "pzdns_tcp_connections";
/// `pzdns_tcp_connections_refused_total`: connections closed at once, over `tcp.max_connections`.
pub const TCP_REFUSED: &str = "pzdns_tcp_connections_refused";
/// `pzdns_stream_queries_total{transport}`: queries over TCP, TLS and HTTPS
/// (UDP's are the rest of `pzdns_queries_total`, and cost no counter more).
pub const STREAM_QUERIES: &str = "pzdns_stream_queries";
/// `pzdns_tls_connections{transport}`: DNS over TLS and over HTTPS connections open now.
pub const TLS_CONNECTIONS: &str = "pzdns_tls_connections";
/// `pzdns_tls_handshake_failures_total{transport}`: handshakes that failed or timed out.
pub const TLS_HANDSHAKE_FAILURES: &str = "pzdns_tls_handshake_failures";
/// `pzdns_tls_certificate_loads_total{result}`: certificates read again after a change.
pub const TLS_CERTIFICATE_LOADS: &str = "pzdns_tls_certificate_loads";
/// `pzdns_data_commit_info{commit, dirty}`: 1 for the git commit of the zones
/// directory in force (absent when it is not a git checkout); `dirty` is
/// `true` when files under it differ from the commit, `unknown` without git.
pub const DATA_COMMIT: &str = "pzdns_data_commit_info";
/// `pzdns_events_total{event}`: what clients (and upstreams) can make
/// happen at will, each one counted; the log gets a line per interval.
pub const EVENTS: &str = "pzdns_events";
/// `pzdns_policy_hits_total{policy, rule_set, action}`: response-policy rules that matched.
pub const POLICY_HITS: &str = "pzdns_policy_hits";
/// `pzdns_transfers_total{vpc, zone, kind, result}`: zone transfers to secondaries.
pub const TRANSFERS: &str = "pzdns_transfers";
/// `pzdns_zone_serial{vpc, zone}`: the SOA serial of each zone (and catalog) a view's secondaries may copy.
pub const ZONE_SERIAL: &str = "pzdns_zone_serial";
/// `pzdns_notifies_total{vpc, result}`: NOTIFY messages sent, acknowledged, given up on.
pub const NOTIFIES: &str = "pzdns_notifies";
/// `pzdns_build_info{version, commit, rustc}`: always 1.
pub const BUILD_INFO: &str = "pzdns_build_info";
/// `pzdns_upstream_duration_seconds{upstream}`: time from a question sent
/// to an upstream to its reply (or to giving up on it).
pub const UPSTREAM_DURATION: &str = "pzdns_upstream_duration_seconds";
/// The outcomes `pzdns_upstream_requests_total` is counted by.
pub const UPSTREAM_OUTCOMES: [&str; 7] = ["ok", "timeout", "servfail", "refused", "rcode", "referral", "error"];
/// `pzdns_upstream_unwanted_replies_total{upstream}`: replies from an upstream's address that were
/// not for the question asked (another id or question, undecodable).
pub const UPSTREAM_UNWANTED: &str = "pzdns_upstream_unwanted_replies";
/// `pzdns_dnssec_answers_total{status}`: answers with upstream data, by
/// the validation status of that data (`secure`, `insecure`, `bogus`,
/// `unchecked`: validation off, or CD=1 and not secure).
pub const DNSSEC_ANSWERS: &str = "pzdns_dnssec_answers";
/// `pzdns_upstream_tcp_retries_total{upstream,reason}`: questions asked again over TCP.
pub const UPSTREAM_TCP: &str = "pzdns_upstream_tcp_retries";
/// `pzdns_upstream_tls_connections_total{upstream,result}`: connections to
/// upstreams over TLS, `opened` or `failed` (refused, handshake, certificate).
pub const UPSTREAM_TLS_CONNECTIONS: &str = "pzdns_upstream_tls_connections";
/// The reasons `pzdns_upstream_tcp_retries_total` is counted by: TC=1, a
/// reply over the UDP buffer, one that differs only in case (0x20), or an
/// upstream whose UDP replies are distrusted (a flood of unwanted ones).
pub const UPSTREAM_TCP_REASONS: [&str; 4] = ["truncated", "oversized", "case", "distrusted"];
/// VPCs whose usual query series exist from the start (see `Metrics::queries_known`).
pub const PRECREATED_VPCS: usize = 1000;
/// The commit pzdns was built from (`unknown` when it was built outside git).
pub const COMMIT: &str = env!("PZDNS_COMMIT");
/// The compiler that built it.
pub const RUSTC: &str = env!("PZDNS_RUSTC");
/// `pzdns_dnstap_written_total`, `pzdns_dnstap_dropped_total{reason}`, `pzdns_dnstap_connected`.
/// `pzdns_rrl_total{action}`: responses response rate limiting held back.
pub const RRL: &str = "pzdns_rrl";
/// `pzdns_cookies_total{result}`: queries that carried a DNS COOKIE option, by what it was.
pub const COOKIES: &str = "pzdns_cookies";
/// What RRL did with a response over the limit.
pub const RRL_ACTIONS: [&str; 2] = ["dropped", "slipped"];
/// What a query's COOKIE turned out to be (`badcookie`: answered BADCOOKIE).
pub const COOKIE_RESULTS: [&str; 5] = ["client_only", "valid", "invalid", "malformed", "badcookie"];
pub const DNSTAP_WRITTEN: &str = "pzdns_dnstap_written";
pub const DNSTAP_DROPPED: &str = "pzdns_dnstap_dropped";
pub const DNSTAP_CONNECTED: &str = "pzdns_dnstap_connected";

/// A VPC id as a label value, shared rather than copied per query.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct VpcLabel(pub Arc<str>);

impl EncodeLabelValue for VpcLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    pub vpc: VpcLabel,
    pub rcode: &'static str,
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShedLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: &'static str,
}

/// Connections and queries of the stream transports, each child held so
/// that counting is one atomic add, no label lookup.
pub struct StreamMetrics {
    /// Queries by `Transport` (the UDP slot is never counted).
    pub queries: [Counter; 4],
    /// TLS and HTTPS connections open, by `Transport` (UDP and TCP unused).
    pub connections: [Gauge; 4],
    pub handshake_failures: [Counter; 4],
    pub certificate_loads: Family<ResultLabels, Counter>,
}

/// The transport labels, in `answer::Transport` order.
pub const TRANSPORTS: [&str; 4] = ["udp", "tcp", "tls", "https"];

impl StreamMetrics {
    fn registered(registry: &mut Registry) -> Self {
        let queries: Family<TransportLabels, Counter> = Family::default();
        let connections: Family<TransportLabels, Gauge> = Family::default();
        let failures: Family<TransportLabels, Counter> = Family::default();
        let loads: Family<ResultLabels, Counter> = Family::default();
        let q = TRANSPORTS.map(|t| queries.get_or_create(&TransportLabels { transport: t }).clone());
        let c = TRANSPORTS.map(|t| connections.get_or_create(&TransportLabels { transport: t }).clone());
        let f = TRANSPORTS.map(|t| failures.get_or_create(&TransportLabels { transport: t }).clone());
        // Only the encrypted transports have connections or handshakes of
        // their own (TCP's are `pzdns_tcp_connections`), only streams these queries.
        for t in ["udp", "tcp"] {
            connections.remove(&TransportLabels { transport: t });
            failures.remove(&TransportLabels { transport: t });
        }
        queries.remove(&TransportLabels { transport: "udp" });
        for result in ["success", "failure"] {
            let _ = loads.get_or_create(&ResultLabels { result });
        }
        registry.register(STREAM_QUERIES, "Queries over TCP, TLS (DoT) and HTTPS (DoH), by transport", queries);
        registry.register(TLS_CONNECTIONS, "DNS over TLS and DNS over HTTPS connections open, by transport", connections);
        registry.register(TLS_HANDSHAKE_FAILURES, "TLS handshakes that failed or did not finish within tcp.idle_timeout", failures);
        registry.register(
            TLS_CERTIFICATE_LOADS,
            "TLS certificates and keys read again after their files changed, by result (a failure keeps the old one serving)",
            loads.clone(),
        );
        StreamMetrics { queries: q, connections: c, handshake_failures: f, certificate_loads: loads }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: &'static str,
}

/// The amplification defenses' counters, created with their families so
/// that the query path increments an atomic and looks nothing up.
#[derive(Clone, Debug, Default)]
pub struct AbuseCounters {
    /// By [`RRL_ACTIONS`].
    pub rrl: [Counter; 2],
    /// By [`COOKIE_RESULTS`].
    pub cookies: [Counter; 5],
}

/// Indices into [`AbuseCounters::cookies`].
pub mod cookie_result {
    pub const CLIENT_ONLY: usize = 0;
    pub const VALID: usize = 1;
    pub const INVALID: usize = 2;
    pub const MALFORMED: usize = 3;
    pub const BADCOOKIE: usize = 4;
}

/// `true`, `false` or `unknown`: whether the zones checkout has local
/// changes, as the commit metric and the log say it.
pub fn dirty_label(dirty: Option<bool>) -> &'static str {
    match dirty {
        Some(true) => "true",
        Some(false) => "false",
        None => "unknown",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitLabels {
    pub commit: String,
    pub dirty: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
    pub rule_set: String,
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransferLabels {
    pub vpc: String,
    pub zone: String,
    /// `axfr` or `ixfr`.
    pub kind: &'static str,
    /// `started` (AXFR), `incremental` or `full` (IXFR), then `complete` or `aborted`;
    /// or `current` (IXFR: nothing newer), `not_found`, `refused`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ZoneLabels {
    pub vpc: String,
    pub zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    pub vpc: String,
    /// `sent`, `acknowledged`, `failed` (no answer after every retry).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// dnstap's messages written and dropped, and whether a collector is
/// connected (all at 0 while dnstap is off).
#[derive(Debug, Clone, Default)]
pub struct DnstapMetrics {
    pub written: Counter,
    /// The queue was full: the writer falls behind.
    pub dropped_queue_full: Counter,
    /// Taken from the queue while no collector was connected, or in a
    /// write that failed.
    pub dropped_no_collector: Counter,
    pub connected: Gauge,
}

impl DnstapMetrics {
    /// Registered in `registry`, every series present from the start.
    fn registered(registry: &mut Registry) -> Self {
        let dropped: Family<ReasonLabels, Counter> = Family::default();
        let m = DnstapMetrics {
            written: Counter::default(),
            dropped_queue_full: dropped.get_or_create_owned(&ReasonLabels { reason: "queue_full" }),
            dropped_no_collector: dropped.get_or_create_owned(&ReasonLabels { reason: "no_collector" }),
            connected: Gauge::default(),
        };
        registry.register(DNSTAP_WRITTEN, "dnstap messages written to the collector or file", m.written.clone());
        registry.register(DNSTAP_DROPPED, "dnstap messages dropped: queue_full (the writer falls behind), no_collector", dropped);
        registry.register(DNSTAP_CONNECTED, "1 while a dnstap collector is connected", m.connected.clone());
        m
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub commit: &'static str,
    pub rustc: &'static str,
}

/// The `status` labels of [`DNSSEC_ANSWERS`].
pub const DNSSEC_STATUSES: [&str; 3] = ["secure", "insecure", "bogus"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnssecLabels {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthCheckLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthTransitionLabels {
    pub to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthTargetLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamOnly {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamTcp {
    pub upstream: String,
    /// One of [`UPSTREAM_TCP_REASONS`].
    pub reason: &'static str,
}

/// `pzdns_authority_queries_total{outcome}`: the outcome is one of
/// `answer`, `referral`, `lame` (a reply that is neither), `rcode`
/// (SERVFAIL, REFUSED, ...), `timeout`, `error`. Not labelled by server:
/// recursion meets any number of them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthorityLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamTls {
    pub upstream: String,
    /// `opened` or `failed`.
    pub result: &'static str,
}

fn upstream_histogram() -> Histogram {
    // From a quarter millisecond to past the per-attempt timeout.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// Where an answer came from: a label of `pzdns_queries_total` and of
/// the query log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Zone,
    Endpoint,
    Upstream,
    Cache,
    Stale,
    Refused,
    Failure,
    /// Header rules (FORMERR, NOTIMP, BADVERS): no data was read.
    Error,
    /// A response policy rule decided the answer.
    Policy,
}

impl Source {
    pub const ALL: [Source; 9] = [
        Source::Zone,
        Source::Endpoint,
        Source::Upstream,
        Source::Cache,
        Source::Stale,
        Source::Refused,
        Source::Failure,
        Source::Error,
        Source::Policy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Zone => "zone",
            Source::Endpoint => "endpoint",
            Source::Upstream => "upstream",
            Source::Cache => "cache",
            Source::Stale => "stale",
            Source::Refused => "refused",
            Source::Failure => "failure",
            Source::Error => "error",
            Source::Policy => "policy",
        }
    }
}

/// The rcodes `pzdns_queries_total` is counted by, as dig prints them,
/// and `DROPPED` for a query a policy dropped (no response was sent).
const RCODES: [&str; 9] = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "OTHER", "DROPPED"];

/// Not an rcode (they are 12 bits): the "rcode" of a query answered with
/// nothing (a policy's `drop`), for metrics and the query log.
pub const RCODE_DROPPED: u16 = 0xffff;

/// The column of a 12-bit rcode (or [`RCODE_DROPPED`]) in [`RCODES`].
fn rcode_index(rc: u16) -> usize {
    match rc {
        0..=5 => rc as usize,
        16 => 6,
        RCODE_DROPPED => 8,
        _ => 7,
    }
}

/// The rcode as dig prints it, for labels and logs.
pub fn rcode_label(rc: u16) -> &'static str {
    RCODES[rcode_index(rc)]
}

type CounterRow = [std::sync::OnceLock<Counter>; RCODES.len() * Source::ALL.len()];

/// Handles on `pzdns_queries_total`'s series, one row per VPC of a
/// snapshot (plus one for clients in no VPC), each filled on first use:
/// counting a query is then one atomic add instead of a lock and a hash
/// of the label set in the metric family.
#[derive(Debug, Default)]
pub struct QueryCounters {
    rows: Box<[std::sync::OnceLock<Box<CounterRow>>]>,
}

impl QueryCounters {
    /// For `vpcs` VPCs; row `vpcs` is clients in no VPC.
    pub fn new(vpcs: usize) -> Self {
        QueryCounters { rows: (0..=vpcs).map(|_| std::sync::OnceLock::new()).collect() }
    }

    /// Counts one query; `row` is the VPC index (or the VPC count for
    /// none), `vpc` its label.
    pub fn inc(&self, metrics: &Metrics, row: usize, vpc: &Arc<str>, rcode: u16, source: Source) {
        let r = rcode_index(rcode);
        let labels = || QueryLabels { vpc: VpcLabel(vpc.clone()), rcode: RCODES[r], source: source.as_str() };
        let Some(slot) = self.rows.get(row) else {
            metrics.queries.get_or_create(&labels()).inc();
            return;
        };
        let row = slot.get_or_init(|| Box::new(std::array::from_fn(|_| std::sync::OnceLock::new())));
        row[r * Source::ALL.len() + source as usize].get_or_init(|| metrics.queries.get_or_create(&labels()).clone()).inc();
    }
}

/// The data in force, as `set_data` records it.
#[derive(Debug, Clone, Copy, Default)]
pub struct DataCounts {
    pub zones: usize,
    pub records: usize,
    pub vpcs: usize,
    pub endpoints: usize,
    pub generation: u64,
}

/// What a client, or an upstream, can make happen as often as it likes.
/// Each is counted in `pzdns_events_total{event}`; the log gets at most
/// one line per kind per [`LOG_INTERVAL`] (the first one in full, then a
/// count), so that a flood of bad packets never becomes a flood of log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// Answered FORMERR, NOTIMP or BADVERS: the query does not decode or
    /// is not one pzdns answers.
    BadQuery,
    /// Dropped unanswered: under 12 bytes, or a response (QR=1).
    Dropped,
    /// An OPT whose options do not fill its RDATA (answered, options ignored).
    MalformedOption,
    /// Answered REFUSED: a source in no VPC, AXFR/IXFR, a class other than IN.
    Refused,
    /// A TCP connection closed at once: `tcp.max_connections` reached.
    TcpConnectionLimit,
    /// A TCP connection closed at once: its source has all it may have.
    TcpSourceLimit,
    /// A TCP connection closed: a write did not complete in `tcp.write_timeout`.
    TcpWriteTimeout,
    /// An upstream attempt failed: timeout, I/O error, or an rcode other
    /// than NOERROR and NXDOMAIN.
    UpstreamFailure,
    /// Answered SERVFAIL at once: too many upstream questions in flight,
    /// or too many clients waiting on them.
    Overloaded,
    /// A stale answer served (RFC 8767): the upstreams failed.
    StaleServed,
    /// An upstream sent `upstream::UNWANTED_THRESHOLD` unwanted
    /// replies in a window (someone may be spoofing it): its UDP replies
    /// are distrusted for a while.
    UnwantedReplies,
    /// A query answered SERVFAIL.
    ServFail,
    /// A signed query whose TSIG did not verify (BADKEY, BADSIG, BADTIME).
    TsigRejected,
    /// An upstream answer failed DNSSEC validation (bogus): the log line
    /// names the zone and the reason.
    DnssecBogus,
}

impl Event {
    pub const ALL: [Event; 14] = [
        Event::BadQuery,
        Event::Dropped,
        Event::MalformedOption,
        Event::Refused,
        Event::TcpConnectionLimit,
        Event::TcpSourceLimit,
        Event::TcpWriteTimeout,
        Event::UpstreamFailure,
        Event::Overloaded,
        Event::StaleServed,
        Event::UnwantedReplies,
        Event::ServFail,
        Event::TsigRejected,
        Event::DnssecBogus,
    ];

    /// The `event` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::BadQuery => "bad_query",
            Event::Dropped => "dropped",
            Event::MalformedOption => "malformed_option",
            Event::Refused => "refused",
            Event::TcpConnectionLimit => "tcp_connection_limit",
            Event::TcpSourceLimit => "tcp_source_limit",
            Event::TcpWriteTimeout => "tcp_write_timeout",
            Event::UpstreamFailure => "upstream_failure",
            Event::Overloaded => "overloaded",
            Event::StaleServed => "stale_served",
            Event::UnwantedReplies => "unwanted_replies",
            Event::ServFail => "servfail",
            Event::TsigRejected => "tsig_rejected",
            Event::DnssecBogus => "dnssec_bogus",
        }
    }

    /// Server-side limits and upstream trouble are warnings; a client's
    /// bad packet is information.
    fn is_warning(self) -> bool {
        matches!(
            self,
            Event::TcpConnectionLimit
                | Event::TcpSourceLimit
                | Event::UpstreamFailure
                | Event::Overloaded
                | Event::StaleServed
                | Event::UnwantedReplies
                | Event::ServFail
                | Event::TsigRejected
                | Event::DnssecBogus
        )
    }
}

/// Log lines per event kind: at most one per interval.
pub const LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Milliseconds since the first call, for the log intervals.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}

/// The counter and the log state of one event kind.
#[derive(Debug, Default)]
struct EventSlot {
    counter: Counter,
    /// No line before this (ms, [`now_ms`]).
    next_line_ms: std::sync::atomic::AtomicU64,
    /// Events since the last line.
    unlogged: std::sync::atomic::AtomicU64,
}

/// Counts [`Event`]s and logs them at a bounded rate.
#[derive(Debug)]
pub struct Events {
    slots: [EventSlot; Event::ALL.len()],
}

impl Default for Events {
    fn default() -> Self {
        Events { slots: std::array::from_fn(|_| EventSlot::default()) }
    }
}

impl Events {
    /// Events counted in `family`, one series per kind (all present from the start).
    fn registered(family: &Family<EventLabels, Counter>) -> Self {
        Events {
            slots: std::array::from_fn(|i| EventSlot {
                counter: family.get_or_create_owned(&EventLabels { event: Event::ALL[i].as_str() }),
                ..EventSlot::default()
            }),
        }
    }

    /// Counts one `event`. Logs it, with `detail()` (who, what), if no
    /// line of its kind was logged in the last [`LOG_INTERVAL`]; then the
    /// line also says how many came since the last line.
    pub fn note(&self, event: Event, detail: impl FnOnce() -> String) {
        use std::sync::atomic::Ordering::Relaxed;
        let slot = &self.slots[event as usize];
        slot.counter.inc();
        let now = now_ms();
        let next = slot.next_line_ms.load(Relaxed);
        if now < next || slot.next_line_ms.compare_exchange(next, now + LOG_INTERVAL.as_millis() as u64, Relaxed, Relaxed).is_err() {
            slot.unlogged.fetch_add(1, Relaxed);
            return;
        }
        let before = slot.unlogged.swap(0, Relaxed);
        let detail = detail();
        let what = event.as_str();
        if event.is_warning() {
            tracing::warn!(target: "pzdns::events", event = what, unlogged_before = before, "{detail} (more are counted, not logged, for {LOG_INTERVAL:?})");
        } else {
            tracing::info!(target: "pzdns::events", event = what, unlogged_before = before, "{detail} (more are counted, not logged, for {LOG_INTERVAL:?})");
        }
    }

    /// Logs, for each kind with events since its last line and whose
    /// interval is over, how many there were. Run every second or so.
    pub fn flush(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = now_ms();
        for (event, slot) in Event::ALL.iter().zip(&self.slots) {
            let next = slot.next_line_ms.load(Relaxed);
            if now < next || slot.unlogged.load(Relaxed) == 0 {
                continue;
            }
            if slot.next_line_ms.compare_exchange(next, now + LOG_INTERVAL.as_millis() as u64, Relaxed, Relaxed).is_err() {
                continue;
            }
            let n = slot.unlogged.swap(0, Relaxed);
            let what = event.as_str();
            if event.is_warning() {
                tracing::warn!(target: "pzdns::events", event = what, count = n, "{n} more {what} events since the last line");
            } else {
                tracing::info!(target: "pzdns::events", event = what, count = n, "{n} more {what} events since the last line");
            }
        }
    }

    /// How many `event`s were counted.
    /// Counts an event without a line of its own (another line tells it).
    pub fn count_only(&self, event: Event) {
        self.slots[event as usize].counter.inc();
    }

    pub fn count(&self, event: Event) -> u64 {
        self.slots[event as usize].counter.get()
    }
}

/// Failed upstream attempts, logged at WARN per upstream: the first at
/// once, then one line per [`LOG_INTERVAL`] with the counts by outcome,
/// however many questions failed.
#[derive(Debug, Default)]
pub struct UpstreamLog {
    tallies: std::sync::Mutex<std::collections::HashMap<std::net::SocketAddr, Tally>>,
}

#[derive(Debug, Default)]
struct Tally {
    next_line_ms: u64,
    by_outcome: [u64; UPSTREAM_OUTCOMES.len()],
    last: String,
}

impl UpstreamLog {
    /// A failed attempt at `up`, with `outcome` one of [`UPSTREAM_OUTCOMES`].
    pub fn note(&self, up: std::net::SocketAddr, outcome: &'static str, detail: impl FnOnce() -> String) {
        let i = UPSTREAM_OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(UPSTREAM_OUTCOMES.len() - 1);
        let now = now_ms();
        let mut map = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let t = map.entry(up).or_default();
        if now >= t.next_line_ms && t.by_outcome.iter().all(|n| *n == 0) {
            t.next_line_ms = now + LOG_INTERVAL.as_millis() as u64;
            drop(map);
            tracing::warn!(target: "pzdns::upstream", upstream = %up, outcome, "upstream attempt failed: {} (more are counted per upstream, one line per {LOG_INTERVAL:?})", detail());
            return;
        }
        t.by_outcome[i] += 1;
        t.last = detail();
    }

    /// Writes the line of every upstream whose interval is over.
    pub fn flush(&self) {
        let now = now_ms();
        let mut map = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|up, t| {
            let n: u64 = t.by_outcome.iter().sum();
            if n == 0 {
                // Quiet for an interval: forgotten, so the next failure is logged at once.
                return now < t.next_line_ms;
            }
            if now < t.next_line_ms {
                return true;
            }
            let counts: Vec<String> =
                UPSTREAM_OUTCOMES.iter().zip(t.by_outcome).filter(|(_, n)| *n > 0).map(|(o, n)| format!("{o} {n}")).collect();
            tracing::warn!(target: "pzdns::upstream", upstream = %up, failed = n, "upstream {up}: {n} more failed attempts ({}); last: {}", counts.join(", "), t.last);
            *t = Tally { next_line_ms: now + LOG_INTERVAL.as_millis() as u64, ..Tally::default() };
            true
        });
    }
}

pub struct Metrics {
    registry: Registry,
    pub upstream_log: UpstreamLog,
    /// Claims about the client (PROXY v2, ECS) not believed: untrusted source.
    pub claims_ignored: Counter,
    /// Packets dropped on a `proxy_protocol: required` listener: no valid header.
    pub proxy_dropped: Counter,
    pub events: Events,
    pub queries: Family<QueryLabels, Counter>,
    pub query_duration: Histogram,
    pub upstream_requests: Family<UpstreamLabels, Counter>,
    pub upstream_duration: Family<UpstreamOnly, Histogram, fn() -> Histogram>,
    pub upstream_unwanted: Family<UpstreamOnly, Counter>,
    pub dnssec_answers: Family<DnssecLabels, Counter>,
    /// Its counters for `secure`, `insecure`, `bogus`, made at start so
    /// that counting an answer is one atomic add ([`Metrics::count_dnssec`]).
    dnssec_by_status: [Counter; 3],
    pub upstream_tcp: Family<UpstreamTcp, Counter>,
    pub upstream_tls_connections: Family<UpstreamTls, Counter>,
    pub cache_entries: Gauge,
    pub cache_bytes: Gauge,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_stale: Counter,
    pub coalesced: Counter,
    pub rejected_replies: Counter,
    pub zones: Gauge,
    pub records: Gauge,
    pub vpcs: Gauge,
    pub endpoints: Gauge,
    pub reloads: Family<ResultLabels, Counter>,
    pub generation: Gauge,
    pub last_reload_success: Gauge,
    pub last_reload_failure: Gauge,
    pub last_reload_ok: Gauge,
    pub tcp_connections: Gauge,
    pub tcp_refused: Counter,
    pub stream: StreamMetrics,
    pub data_commit: Family<CommitLabels, Gauge>,
    pub upstream_in_flight: Gauge,
    pub upstream_waiters: Gauge,
    pub upstream_overloaded: Counter,
    pub upstream_shed: Family<ShedLabels, Counter>,
    pub policy_hits: Family<PolicyLabels, Counter>,
    /// Recursive mode: queries sent to authorities, by outcome ([`AuthorityLabels`]).
    pub authority_queries: Family<AuthorityLabels, Counter>,
    /// Recursive mode: authority queries one resolution took (a client's
    /// question that missed the cache, its CNAME links and glueless NS names included).
    pub authority_queries_per_resolution: Histogram,
    pub dnstap: DnstapMetrics,
    pub health_checks: Family<HealthCheckLabels, Counter>,
    pub health_transitions: Family<HealthTransitionLabels, Counter>,
    pub health_target_state: Family<HealthTargetLabels, Gauge>,
    pub abuse: AbuseCounters,
    pub transfers: Family<TransferLabels, Counter>,
    pub zone_serial: Family<ZoneLabels, Gauge>,
    pub notifies: Family<NotifyLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Counts an answer with upstream data by its validation status, as
    /// an index into [`DNSSEC_STATUSES`] (one atomic add on a cache hit).
    pub fn count_dnssec(&self, status: usize) {
        if let Some(c) = self.dnssec_by_status.get(status) {
            c.inc();
        }
    }

    pub fn new() -> Self {
        let mut registry = Registry::default();
        let event_family: Family<EventLabels, Counter> = Family::default();
        let dnssec_answers: Family<DnssecLabels, Counter> = Family::default();
        let dnssec_by_status = DNSSEC_STATUSES.map(|status| dnssec_answers.get_or_create_owned(&DnssecLabels { status }));
        let m = Metrics {
            queries: Family::default(),
            // 25 µs to ~6.5 s: local answers sit in the first buckets,
            // upstream ones (an attempt may take 1.2 s, SERVFAIL 2.4 s) in the later.
            query_duration: Histogram::new(exponential_buckets(0.000_025, 2.0, 19)),
            upstream_requests: Family::default(),
            upstream_duration: Family::new_with_constructor(upstream_histogram),
            upstream_unwanted: Family::default(),
            dnssec_answers,
            dnssec_by_status,
            upstream_tcp: Family::default(),
            upstream_tls_connections: Family::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_stale: Counter::default(),
            coalesced: Counter::default(),
            rejected_replies: Counter::default(),
            zones: Gauge::default(),
            records: Gauge::default(),
            vpcs: Gauge::default(),
            endpoints: Gauge::default(),
            reloads: Family::default(),
            generation: Gauge::default(),
            last_reload_success: Gauge::default(),
            last_reload_failure: Gauge::default(),
            last_reload_ok: Gauge::default(),
            tcp_connections: Gauge::default(),
            tcp_refused: Counter::default(),
            stream: StreamMetrics::registered(&mut registry),
            data_commit: Family::default(),
            upstream_in_flight: Gauge::default(),
            upstream_waiters: Gauge::default(),
            upstream_overloaded: Counter::default(),
            upstream_shed: Family::default(),
            policy_hits: Family::default(),
            health_checks: Family::default(),
            health_transitions: Family::default(),
            health_target_state: Family::default(),
            authority_queries: Family::default(),
            // 1 (a cached delegation) to past the bound on one resolution's work.
            authority_queries_per_resolution: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            events: Events::registered(&event_family),
            upstream_log: UpstreamLog::default(),
            registry: Registry::default(),
            claims_ignored: Counter::default(),
            proxy_dropped: Counter::default(),
            dnstap: DnstapMetrics::registered(&mut registry),
            abuse: AbuseCounters::default(),
            transfers: Family::default(),
            zone_serial: Family::default(),
            notifies: Family::default(),
        };
        let rrl: Family<ActionLabels, Counter> = Family::default();
        let cookies: Family<ResultLabels, Counter> = Family::default();
        let mut m = m;
        for (c, action) in m.abuse.rrl.iter_mut().zip(RRL_ACTIONS) {
            *c = rrl.get_or_create(&ActionLabels { action }).clone();
        }
        for (c, result) in m.abuse.cookies.iter_mut().zip(COOKIE_RESULTS) {
            *c = cookies.get_or_create(&ResultLabels { result }).clone();
        }
        registry.register(RRL, "UDP responses over the response rate limit: dropped, or slipped (sent TC=1 or BADCOOKIE, empty)", rrl);
        registry.register(COOKIES, "Queries with a DNS COOKIE option, by what it was (client_only: no server cookie yet)", cookies);
        registry.register(
            "pzdns_client_claims_ignored",
            "Claims about the client (PROXY v2 source, EDNS Client Subnet) ignored: the sender is not a trusted forwarder",
            m.claims_ignored.clone(),
        );
        registry.register(
            "pzdns_proxy_dropped",
            "Packets dropped on a proxy_protocol: required listener for want of a valid PROXY v2 header",
            m.proxy_dropped.clone(),
        );
        registry.register(QUERIES, "Queries answered, by VPC, rcode and answer source", m.queries.clone());
        registry.register(QUERY_DURATION, "Time from decoded query to response sent", m.query_duration.clone());
        registry.register(UPSTREAM_REQUESTS, "Questions sent to upstreams, by upstream and outcome", m.upstream_requests.clone());
        registry.register(UPSTREAM_DURATION, "Time an upstream took to answer (or to be given up on)", m.upstream_duration.clone());
        registry.register(
            UPSTREAM_UNWANTED,
            "Replies from an upstream's address not for the question asked (another id or question, undecodable)",
            m.upstream_unwanted.clone(),
        );
        registry.register(DNSSEC_ANSWERS, "Answers with upstream data, by its DNSSEC validation status", m.dnssec_answers.clone());
        registry.register(UPSTREAM_TCP, "Upstream questions asked again over TCP, by reason", m.upstream_tcp.clone());
        registry.register(
            UPSTREAM_TLS_CONNECTIONS,
            "Connections to upstreams over TLS: opened, or failed (refused, handshake, certificate)",
            m.upstream_tls_connections.clone(),
        );
        registry.register(CACHE_ENTRIES, "Answers held in the cache", m.cache_entries.clone());
        registry.register(CACHE_BYTES, "Bytes the cached answers take in memory, keys and overhead included", m.cache_bytes.clone());
        registry.register(CACHE_HITS, "Questions answered from a fresh cache entry", m.cache_hits.clone());
        registry.register(CACHE_MISSES, "Questions that had to go upstream", m.cache_misses.clone());
        registry.register(CACHE_STALE, "Stale answers served because upstreams failed (RFC 8767)", m.cache_stale.clone());
        registry.register(COALESCED, "Questions that joined an identical one already in flight", m.coalesced.clone());
        registry.register(REJECTED_REPLIES, "Upstream replies dropped: wrong id or question, or undecodable", m.rejected_replies.clone());
        registry.register(ZONES, "Zones loaded (zone files)", m.zones.clone());
        registry.register(RECORDS, "Records loaded, endpoint records included", m.records.clone());
        registry.register(VPCS, "VPCs loaded", m.vpcs.clone());
        registry.register(ENDPOINTS, "Endpoints in endpoints.yaml", m.endpoints.clone());
        registry.register(RELOADS, "Reloads, by result", m.reloads.clone());
        registry.register(GENERATION, "Generation of the data in force", m.generation.clone());
        registry.register(LAST_RELOAD_SUCCESS, "Unix time of the last successful load", m.last_reload_success.clone());
        registry.register(LAST_RELOAD_FAILURE, "Unix time of the last failed load (0: none since start)", m.last_reload_failure.clone());
        registry.register(LAST_RELOAD_OK, "1 when the last load attempt succeeded, 0 when it failed", m.last_reload_ok.clone());
        // Both results exist from the start, so that an alert on an
        // increase fires on the first failure too.
        for result in ["success", "failure"] {
            let _ = m.reloads.get_or_create(&ResultLabels { result });
        }
        registry.register(
            AUTHORITY_QUERIES,
            "Recursive mode: queries sent to authoritative servers, by outcome",
            m.authority_queries.clone(),
        );
        registry.register(
            AUTHORITY_QUERIES_PER_RESOLUTION,
            "Recursive mode: authority queries per resolution from the root (one per question that missed the cache)",
            m.authority_queries_per_resolution.clone(),
        );
        registry.register(TCP_CONNECTIONS, "TCP connections open", m.tcp_connections.clone());
        registry.register(TCP_REFUSED, "TCP connections closed at once: over tcp.max_connections", m.tcp_refused.clone());
        registry.register(UPSTREAM_IN_FLIGHT, "Questions waiting on an upstream", m.upstream_in_flight.clone());
        registry.register(
            UPSTREAM_WAITERS,
            "Clients waiting on upstream questions (updated when /metrics is read)",
            m.upstream_waiters.clone(),
        );
        registry.register(
            UPSTREAM_OVERLOADED,
            "Questions answered at once (stale or SERVFAIL): too many questions in flight or clients waiting",
            m.upstream_overloaded.clone(),
        );
        registry.register(
            UPSTREAM_SHED,
            "Of the overloaded questions, why: a bound in all, or a client's, VPC's or domain's share",
            m.upstream_shed.clone(),
        );
        registry.register(
            EVENTS,
            "Events a client or an upstream can cause at will, counted (the log has a line per interval)",
            event_family,
        );
        for result in ["ok", "failed"] {
            let _ = m.health_checks.get_or_create(&HealthCheckLabels { result });
        }
        for to in ["healthy", "unhealthy"] {
            let _ = m.health_transitions.get_or_create(&HealthTransitionLabels { to });
        }
        registry.register(HEALTH_CHECKS, "Health checks run, by result", m.health_checks.clone());
        registry.register(
            HEALTH_TRANSITIONS,
            "Health-checked targets that changed state, by the state they entered",
            m.health_transitions.clone(),
        );
        registry.register(
            HEALTH_TARGET_STATE,
            "Each health-checked target: 1 healthy, 0 unhealthy, -1 not yet decided",
            m.health_target_state.clone(),
        );
        registry.register(POLICY_HITS, "Response policy rules that matched, by policy, rule set and action", m.policy_hits.clone());
        registry.register(TRANSFERS, "Zone transfers to secondaries, by view, zone, kind and result", m.transfers.clone());
        registry.register(ZONE_SERIAL, "SOA serial of each zone a view's secondaries may copy, catalogs included", m.zone_serial.clone());
        registry.register(NOTIFIES, "NOTIFY messages to secondaries, by view and result", m.notifies.clone());
        registry.register(DATA_COMMIT, "Git commit of the zones directory in force", m.data_commit.clone());
        let build: Family<BuildLabels, Gauge> = Family::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION"), commit: COMMIT, rustc: RUSTC }).set(1);
        registry.register(BUILD_INFO, "pzdns build information", build);
        registry.register_collector(Box::new(process::Process));
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The Prometheus text format 0.0.4, for scrapers that do not ask for
    /// OpenMetrics (see [`openmetrics_to_text`]).
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }

    /// Creates the `pzdns_queries_total` series a VPC's queries usually
    /// land in, at 0, so that a rate or an alert on them (SERVFAIL from
    /// upstream failures, say) works before the first such answer. Past
    /// [`PRECREATED_VPCS`] VPCs, series appear on first use.
    pub fn queries_known(&self, vpcs: &[Arc<str>], unknown: &Arc<str>) {
        const USUAL: [(u16, Source); 11] = [
            (0, Source::Zone),
            (3, Source::Zone),
            (0, Source::Endpoint),
            (0, Source::Upstream),
            (3, Source::Upstream),
            (0, Source::Cache),
            (3, Source::Cache),
            (0, Source::Stale),
            (2, Source::Failure),
            (5, Source::Refused),
            (1, Source::Error),
        ];
        for vpc in vpcs.iter().take(PRECREATED_VPCS).chain(std::iter::once(unknown)) {
            for (rc, source) in USUAL {
                let _ = self.queries.get_or_create(&QueryLabels {
                    vpc: VpcLabel(vpc.clone()),
                    rcode: rcode_label(rc),
                    source: source.as_str(),
                });
            }
        }
    }

    /// Creates the series of upstreams the data in force routes to, at 0,
    /// so that a rate or an alert on them works before their first
    /// question.
    pub fn upstreams_known(&self, upstreams: Vec<std::net::SocketAddr>) {
        for up in upstreams {
            let upstream = up.to_string();
            for outcome in UPSTREAM_OUTCOMES {
                let _ = self.upstream_requests.get_or_create(&UpstreamLabels { upstream: upstream.clone(), outcome });
            }
            for reason in UPSTREAM_TCP_REASONS {
                let _ = self.upstream_tcp.get_or_create(&UpstreamTcp { upstream: upstream.clone(), reason });
            }
            let _ = self.upstream_unwanted.get_or_create(&UpstreamOnly { upstream: upstream.clone() });
            let _ = self.upstream_duration.get_or_create(&UpstreamOnly { upstream });
        }
    }

    /// Records a failed load.
    pub fn set_reload_failed(&self) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.last_reload_failure.set(now);
        self.last_reload_ok.set(0);
    }

    /// Records the git commit in force (one series at a time), and whether
    /// the checkout has local changes (None: not known).
    pub fn set_commit(&self, commit: Option<&str>, dirty: Option<bool>) {
        self.data_commit.clear();
        if let Some(c) = commit {
            self.data_commit.get_or_create(&CommitLabels { commit: c.to_string(), dirty: dirty_label(dirty) }).set(1);
        }
    }

    /// Records the data now in force.
    pub fn set_data(&self, d: DataCounts) {
        self.zones.set(d.zones as i64);
        self.records.set(d.records as i64);
        self.vpcs.set(d.vpcs as i64);
        self.endpoints.set(d.endpoints as i64);
        self.generation.set(d.generation as i64);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.last_reload_success.set(now);
        self.last_reload_ok.set(1);
    }
}

/// OpenMetrics text to Prometheus text format 0.0.4: a counter's family
/// is named with its `_total` suffix, `# UNIT` and `# EOF` lines go, and
/// info and unknown types become gauge and untyped. Samples are the same.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    // `# HELP` comes before `# TYPE`: the counters are known first.
    let counters: std::collections::HashSet<&str> =
        om.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            match kind {
                "counter" => out.push_str(&format!("# TYPE {name}_total counter\n")),
                "info" => out.push_str(&format!("# TYPE {name} gauge\n")),
                "unknown" => out.push_str(&format!("# TYPE {name} untyped\n")),
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if counters.contains(name) {
                out.push_str(&format!("# HELP {name}_total{}\n", &rest[name.len()..]));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Process metrics as Prometheus client libraries name them (CPU, memory,
/// descriptors, threads, start time), read from /proc on each scrape.
mod process {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    #[derive(Debug)]
    pub struct Process;

    /// What /proc says of this process; `None` where it cannot be read.
    #[derive(Debug, Default)]
    pub struct Stat {
        pub cpu_seconds: f64,
        pub rss_bytes: i64,
        pub virtual_bytes: i64,
        pub threads: i64,
        pub start_time: f64,
        pub open_fds: i64,
        pub max_fds: i64,
    }

    pub fn read() -> Option<Stat> {
        // SAFETY: sysconf only returns a value.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        let (ticks, page) = (ticks.max(1) as f64, page.max(1));
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command, which is in parentheses and may hold spaces.
        let f: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
        let num = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<f64>().ok()))
            .unwrap_or(0.0);
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit only writes the struct passed.
        let max_fds = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 { lim.rlim_cur as i64 } else { 0 };
        Some(Stat {
            cpu_seconds: (num(14) + num(15)) / ticks,
            virtual_bytes: num(23) as i64,
            rss_bytes: num(24) as i64 * page,
            threads: num(20) as i64,
            start_time: boot + num(22) / ticks,
            open_fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count() as i64).unwrap_or(0),
            max_fds,
        })
    }

    impl Collector for Process {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let Some(s) = read() else { return Ok(()) };
            let c = ConstCounter::new(s.cpu_seconds);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?)?;
            let gauges: [(&str, &str, i64); 5] = [
                ("process_resident_memory_bytes", "Resident memory size in bytes", s.rss_bytes),
                ("process_virtual_memory_bytes", "Virtual memory size in bytes", s.virtual_bytes),
                ("process_open_fds", "Number of open file descriptors", s.open_fds),
                ("process_max_fds", "Maximum number of open file descriptors", s.max_fds),
                ("process_threads", "Number of OS threads in the process", s.threads),
            ];
            for (name, help, v) in gauges {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
            let g = ConstGauge::new(s.start_time);
            g.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                None,
                g.metric_type(),
            )?)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_names_counters_with_total_and_has_no_eof() {
        let m = Metrics::new();
        m.cache_hits.inc();
        let text = m.encode_text();
        assert!(text.contains("# TYPE pzdns_cache_hits_total counter\n"), "{text}");
        assert!(text.contains("# HELP pzdns_cache_hits_total "), "{text}");
        assert!(text.contains("pzdns_cache_hits_total 1\n"), "{text}");
        assert!(text.contains("# TYPE pzdns_build_info gauge\n") || text.contains("# TYPE pzdns_build_info_info gauge\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }

    #[test]
    fn every_event_has_its_slot_and_series() {
        for (i, e) in Event::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i, "{e:?}: Event::ALL is in declaration order");
        }
        let m = Metrics::new();
        m.events.note(Event::MalformedOption, String::new);
        let text = m.encode();
        assert!(text.contains("pzdns_events_total{event=\"malformed_option\"} 1"), "{text}");
        assert!(text.contains("pzdns_events_total{event=\"tcp_write_timeout\"} 0"), "{text}");
    }

    #[test]
    fn every_event_is_counted_and_few_are_detailed() {
        let e = Events::default();
        let mut detailed = 0;
        for _ in 0..10_000 {
            e.note(Event::Dropped, || {
                detailed += 1;
                String::new()
            });
        }
        e.flush();
        assert_eq!(e.count(Event::Dropped), 10_000);
        assert_eq!(detailed, 1, "one line in the interval, with its detail");
    }
}
