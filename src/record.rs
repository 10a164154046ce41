//! Recording an answered query, whatever transport it came by and however
//! long it waited: metrics, the query log (one line per query) and
//! dnstap's client messages. The answer path hands over what it answered
//! ([`Answered`]); nothing here decides an answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tracing::info;

use crate::answer::{Answered, Client, Transport};
use crate::dns::query::Query;
use crate::dnstap::{Dnstap, Protocol};
use crate::metrics::{Event, Metrics, Source, rcode_label};
use crate::snapshot::{Snapshot, View};

/// Where answered queries are recorded.
pub struct Recorder {
    pub metrics: Arc<Metrics>,
    /// `query_log` of the configuration in force, read once per query.
    query_log: AtomicBool,
    /// dnstap output, when configured (set once at start).
    pub dnstap: OnceLock<Arc<Dnstap>>,
    /// The address each listener got (port 0 resolved), set once bound.
    pub listeners: OnceLock<Vec<SocketAddr>>,
    /// The listeners as configured (a restart changes them), until bound.
    configured: Vec<SocketAddr>,
}

impl Recorder {
    pub fn new(metrics: Arc<Metrics>, query_log: bool, configured: Vec<SocketAddr>) -> Recorder {
        Recorder { metrics, query_log: AtomicBool::new(query_log), dnstap: OnceLock::new(), listeners: OnceLock::new(), configured }
    }

    /// Whether each answered query is logged (`query_log`).
    pub fn query_log(&self) -> bool {
        self.query_log.load(Ordering::Relaxed)
    }

    /// `query_log` of a configuration reloaded.
    pub fn set_query_log(&self, on: bool) {
        self.query_log.store(on, Ordering::Relaxed);
    }

    /// Whether a query waiting on an upstream must be kept for recording
    /// (the query log, dnstap).
    pub fn keeps_query(&self) -> bool {
        self.query_log() || self.dnstap.get().is_some()
    }

    /// The address of listener `i`: as bound, else as configured.
    fn listener_addr(&self, i: usize) -> SocketAddr {
        match self.listeners.get().and_then(|l| l.get(i)) {
            Some(a) => *a,
            None => self.configured.get(i).copied().unwrap_or(crate::config::DEFAULT_LISTEN),
        }
    }

    /// Counts one answered query and, with `query_log`, logs it; with
    /// dnstap, hands its messages over.
    pub fn record(&self, snap: &Snapshot, client: &Client, query: &[u8], response: Option<&[u8]>, a: &Answered, took: Duration) {
        self.metrics.query_duration.observe(took.as_secs_f64());
        if client.transport.is_stream() {
            self.metrics.stream.queries[client.transport as usize].inc();
        }
        // Nothing sent (a policy's drop): no rcode went out either.
        let a = &Answered { rcode: if response.is_none() { crate::metrics::RCODE_DROPPED } else { a.rcode }, ..*a };
        let response = response.unwrap_or_default();
        snap.count_query(&self.metrics, a.view, a.rcode, a.source);
        if self.query_log() {
            log_query(snap, client, self.listener_addr(client.listener), query, response.len(), a, took);
        }
        if let Some(tap) = self.dnstap.get() {
            let protocol = match client.transport {
                Transport::Udp => Protocol::Udp,
                Transport::Tcp => Protocol::Tcp,
                Transport::Tls => Protocol::Dot,
                Transport::Https => Protocol::Doh,
            };
            let rule_set = a.policy.map(|p| snap.policy.set_of(p.rule).label);
            let policy = a.policy.zip(rule_set).map(|(p, set)| dnstap_policy(snap, p, set));
            tap.client(protocol, client.src, self.listener_addr(client.listener), query, response, took, policy);
        }
        match a.source {
            Source::Error => self.metrics.events.note(Event::BadQuery, || {
                format!("{} query from {} answered {}", client.transport.as_str(), client.src, rcode_label(a.rcode))
            }),
            Source::Refused => self.metrics.events.note(Event::Refused, || {
                let why = if a.view == Some(View::Unknown) { "a source in no VPC" } else { "a transfer or a class other than IN" };
                format!("{} query from {} REFUSED: {why}", client.transport.as_str(), client.src)
            }),
            Source::Stale => self
                .metrics
                .events
                .note(Event::StaleServed, || format!("served a stale answer to {} (RFC 8767): the upstreams failed", client.src)),
            Source::Failure => self.metrics.events.note(Event::ServFail, || {
                format!("answered SERVFAIL to {}: an upstream failure or a CNAME chain that cannot end", client.src)
            }),
            _ => {}
        }
    }

    /// Counts a packet dropped unanswered (see [`Event`]); malformed EDNS
    /// options are noted by the answer path, which reads them anyway.
    pub fn note_received(&self, client: &Client, msg: &[u8], dropped: bool) {
        if dropped {
            self.metrics.events.note(Event::Dropped, || {
                let why = if msg.len() < crate::dns::HEADER_LEN { "shorter than a DNS header" } else { "a response (QR=1)" };
                format!("{} message of {} bytes from {} dropped: {why}", client.transport.as_str(), msg.len(), client.src)
            });
        }
    }
}

/// A policy hit as dnstap's `Policy` (type, the rule set as the rule,
/// action, what matched).
fn dnstap_policy<'a>(snap: &Snapshot, p: crate::answer::PolicyMark, set: &'a str) -> crate::dnstap::proto::Policy<'a> {
    use crate::config::policy::ActionKind as A;
    let action = match p.action {
        A::NxDomain => Some(1),
        A::NoData => Some(2),
        A::Allow | A::Alert => Some(3),
        A::Drop => Some(4),
        A::TcpOnly if p.applied => Some(5),
        A::TcpOnly => Some(3),
        A::Override => Some(6),
        A::Refused => None,
    };
    let matched = match snap.policy.rule(p.rule).trigger {
        crate::snapshot::policy::TriggerKind::ResponseIp => 3,
        _ => 1,
    };
    crate::dnstap::proto::Policy { kind: "RPZ", rule: set.as_bytes(), action, matched }
}

fn log_query(snap: &Snapshot, client: &Client, listener: SocketAddr, query: &[u8], size: usize, a: &Answered, took: Duration) {
    let vpc = match a.view {
        Some(View::Vpc { vpc, .. }) => snap.vpc_labels.get(vpc as usize).unwrap_or(&snap.unknown_label),
        _ => &snap.unknown_label,
    };
    let parsed = Query::parse(query).ok();
    let (name, qtype) = match parsed.as_ref().and_then(|q| q.one()) {
        Some((_, qname, qtype, _)) => {
            (Name::read(&mut BinDecoder::new(qname)).map(|n| n.to_string()).unwrap_or_default(), RecordType::from(qtype))
        }
        None => (String::new(), RecordType::NULL),
    };
    // The header as sent, even where the rest did not parse.
    let word = |i: usize| query.get(i..i + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    info!(
        target: "pzdns::query",
        vpc = &**vpc,
        client = %client.src,
        // The client a trusted forwarder spoke for, when it picked the view.
        for_client = a.claimed.map(|c| c.to_string()).unwrap_or_default(),
        protocol = client.transport.as_str(),
        listener = %listener,
        id = word(0),
        // Text (quoted in text logs): both may hold a space.
        flags = HeaderFlags(word(2)).to_string().as_str(),
        edns = EdnsText(parsed.and_then(|q| q.edns).map(|e| (e.payload, e.dnssec_ok))).to_string().as_str(),
        name = %name,
        qtype = %qtype,
        rcode = rcode_label(a.rcode),
        source = a.source.as_str(),
        // The response-policy rule that decided (or alerted): `rule set=action`.
        policy = a.policy.map(|p| format!("{}={}", snap.policy.set_of(p.rule).label, p.action.as_str())).unwrap_or_default(),
        size = size,
        us = took.as_micros() as u64,
    );
}

/// A query's header flags as dig prints them (`rd cd`), or `-`.
struct HeaderFlags(u16);

impl std::fmt::Display for HeaderFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const FLAGS: [(u16, &str); 7] =
            [(0x8000, "qr"), (0x0400, "aa"), (0x0200, "tc"), (0x0100, "rd"), (0x0080, "ra"), (0x0020, "ad"), (0x0010, "cd")];
        let mut first = true;
        for (bit, name) in FLAGS {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first { f.write_str("-") } else { Ok(()) }
    }
}

/// A query's EDNS: the UDP payload it offers and `do` when it sets DO, or
/// `-` without EDNS.
struct EdnsText(Option<(u16, bool)>);

impl std::fmt::Display for EdnsText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("-"),
            Some((payload, false)) => write!(f, "{payload}"),
            Some((payload, true)) => write!(f, "{payload} do"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_edns_as_text() {
        assert_eq!(HeaderFlags(0x0130).to_string(), "rd ad cd");
        assert_eq!(HeaderFlags(0x0100).to_string(), "rd");
        assert_eq!(HeaderFlags(0).to_string(), "-");
        assert_eq!(EdnsText(None).to_string(), "-");
        assert_eq!(EdnsText(Some((1232, true))).to_string(), "1232 do");
        assert_eq!(EdnsText(Some((4096, false))).to_string(), "4096");
    }
}
