//! `pzdns explain` (and the admin `/explain`): how a query would be answered
//! from a VPC, in words — the view, the zone or rule, the records, and
//! where it would be forwarded. Offline: no packet is sent.

use std::fmt::Write;
use std::net::IpAddr;

use hickory_proto::rr::{Name, RecordType};

use crate::config::zones_dir::ZoneOrigin;
use crate::resolve::{Route, Step, resolve};
use crate::snapshot::{Claims, Snapshot, View, ViewReason};

/// Who is asking: a VPC by id, a source address, or a client a forwarder
/// speaks for (PROXY v2 or ECS).
#[derive(Debug, Clone)]
pub enum Asker {
    Vpc(String),
    From(IpAddr),
    Via { client: IpAddr, forwarder: IpAddr },
}

/// A record type by name (`A`, `txt`) or in RFC 3597 form (`TYPE65`).
pub fn parse_type(s: &str) -> Option<RecordType> {
    let upper = s.to_ascii_uppercase();
    match upper.strip_prefix("TYPE").map(str::parse::<u16>) {
        Some(Ok(n)) => Some(RecordType::from(n)),
        _ => std::str::FromStr::from_str(&upper).ok(),
    }
}

/// Explains `name`/`qtype` from `asker`; `Err` when the VPC id is unknown.
pub fn explain(snap: &Snapshot, asker: &Asker, name: &Name, qtype: RecordType) -> Result<String, String> {
    let mut out = String::new();
    let (view, reason) = match asker {
        Asker::Vpc(id) => match snap.vpc_index(id) {
            Some(v) => (View::Vpc { vpc: v, az: crate::snapshot::zone::NO_AZ }, ViewReason::Named),
            None => {
                let known: Vec<&str> = snap.vpcs.iter().map(|v| v.id.as_str()).collect();
                return Err(format!("unknown VPC `{id}`; known VPCs: {}", known.join(", ")));
            }
        },
        Asker::From(ip) => snap.select_view(None, *ip),
        Asker::Via { client, forwarder } => {
            let id = snap.select_identity(None, *forwarder, Claims { proxy: Some(*client), subnet: None });
            (id.view, id.reason)
        }
    };
    let _ = writeln!(out, "query:    {name} {qtype}");
    match (view, &reason) {
        (View::Vpc { vpc, az }, r) => {
            let v = &snap.vpcs[vpc as usize];
            let why = match (r, asker) {
                (ViewReason::SourceCidr, Asker::From(ip)) => {
                    let cidr = v.cidrs.iter().filter(|c| c.contains(ip)).max_by_key(|c| c.prefix_len());
                    format!("source {ip} is in {}", cidr.map(|c| c.to_string()).unwrap_or_default())
                }
                (ViewReason::ProxyClaim, Asker::Via { client, forwarder }) => {
                    let cidr = v.cidrs.iter().filter(|c| c.contains(client)).max_by_key(|c| c.prefix_len());
                    format!(
                        "client {client}, claimed by trusted forwarder {forwarder} (PROXY v2 or ECS), is in {}",
                        cidr.map(|c| c.to_string()).unwrap_or_default()
                    )
                }
                (ViewReason::SourceCidr, Asker::Via { client, forwarder }) => {
                    format!("{forwarder} is not in trusted_forwarders: its claim for {client} is ignored; its own address is in this VPC")
                }
                _ => "named with --vpc".to_string(),
            };
            let _ = write!(out, "view:     {} ({why})", v.id);
            if az != crate::snapshot::zone::NO_AZ {
                let _ = write!(out, ", vSwitch zone {}", snap.azs[az as usize]);
            }
            out.push('\n');
        }
        (View::Unknown, _) => {
            let policy = match snap.unknown_clients {
                crate::config::UnknownClients::Refuse => "refuse",
                crate::config::UnknownClients::Forward => "forward (forwarding only, no private data)",
            };
            if let Asker::Via { client, forwarder } = asker {
                let why = if reason == ViewReason::ProxyClaim {
                    format!("client {client}, claimed by trusted forwarder {forwarder}, maps to no VPC")
                } else {
                    format!("{forwarder} is not in trusted_forwarders: its claim for {client} is ignored, and it maps to no VPC")
                };
                let _ = writeln!(out, "view:     none ({why}; unknown_clients: {policy})");
            } else {
                let _ = writeln!(out, "view:     none (the source maps to no VPC; unknown_clients: {policy})");
            }
        }
    }
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        let _ = writeln!(out, "answer:   rcode REFUSED: zone transfers are not served (Extended DNS Error 21)");
        return Ok(out);
    }
    let res = resolve(snap, view, name, qtype, true);
    for step in &res.steps {
        let line = match step {
            Step::Zone { name, zone } => {
                let z = &snap.zones[*zone as usize];
                let what = match &z.kind {
                    ZoneOrigin::File => format!(
                        "zone {} ({}, recursive_proxy: {})",
                        z.origin,
                        z.path.display(),
                        if z.recursive_proxy { "on" } else { "off" }
                    ),
                    ZoneOrigin::Endpoint(id) => format!("endpoint name {} (endpoint {id}, {})", z.origin, z.path.display()),
                };
                format!("{name} → {what}")
            }
            Step::NoZone { name } => format!("{name} is in no zone visible to this view"),
            Step::Answer { name, rtype, count, wildcard } => match wildcard {
                Some(w) => {
                    format!("{name}: {count} {rtype} record(s) synthesised from wildcard {w}")
                }
                None => format!("{name}: {count} {rtype} record(s)"),
            },
            Step::Cname { from, to, wildcard } => match wildcard {
                Some(w) => format!("{from} is a CNAME (from wildcard {w}) → follow {to}"),
                None => format!("{from} is a CNAME → follow {to}"),
            },
            Step::NoData { name, .. } => format!("{name} exists but has no {qtype} record: NOERROR, empty answer, SOA in authority"),
            Step::NxDomain { name, .. } => {
                format!("{name} does not exist and the zone is not a recursive proxy: NXDOMAIN, SOA in authority")
            }
            Step::ProxyMissing { name, .. } => {
                format!("{name} does not exist; recursive_proxy is on: ask the public authority")
            }
            Step::Upstream { name, qtype, route } => {
                let to = match route {
                    Route::ForwardZone(i) => {
                        let fz = &snap.forward_zones[*i as usize];
                        format!("forward zone {} → {}", fz.domain, join_addrs(&fz.upstreams))
                    }
                    Route::Default => format!("upstreams {}", join_addrs(&snap.upstreams)),
                };
                format!("forward {name} {qtype} upstream via {to} (cached), and append its answer")
            }
            Step::Loop { name } => format!("CNAME loop back to {name}: SERVFAIL"),
            Step::TooLong => format!("more than {} CNAME links: SERVFAIL", crate::resolve::MAX_CNAME_LINKS),
            Step::Refused => "unknown_clients: refuse → REFUSED".to_string(),
        };
        let _ = writeln!(out, "step:     {line}");
    }
    let _ = writeln!(
        out,
        "answer:   rcode {}{}, AA={}, source {}",
        rcode_name(res.rcode),
        if res.upstream.is_some() { " (before the upstream part; the upstream's rcode then applies)" } else { "" },
        // Only an answer wholly from local data is authoritative.
        u8::from(res.authoritative && res.upstream.is_none()),
        // An answer with an upstream part is upstream's, as the query log and metrics count it.
        if res.upstream.is_some() { "upstream" } else { res.source.as_str() }
    );
    if !res.answers.is_empty() {
        out.push_str("ANSWER:\n");
        for r in &res.answers {
            let _ = writeln!(out, "  {r}");
        }
    }
    if let Some(u) = &res.upstream {
        let _ = writeln!(out, "  (+ the upstream answer for {} {})", u.name, u.qtype);
    }
    if !res.authority.is_empty() {
        out.push_str("AUTHORITY:\n");
        for r in &res.authority {
            let _ = writeln!(out, "  {r}");
        }
    }
    Ok(out)
}

fn join_addrs(a: &[std::net::SocketAddr]) -> String {
    if a.is_empty() {
        return "(none configured: SERVFAIL)".into();
    }
    a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

/// The rcode mnemonic dig prints (NOERROR, NXDOMAIN, ...).
pub fn rcode_name(rc: hickory_proto::op::ResponseCode) -> String {
    use hickory_proto::op::ResponseCode as R;
    match rc {
        R::NoError => "NOERROR".into(),
        R::FormErr => "FORMERR".into(),
        R::ServFail => "SERVFAIL".into(),
        R::NXDomain => "NXDOMAIN".into(),
        R::NotImp => "NOTIMP".into(),
        R::Refused => "REFUSED".into(),
        other => format!("{}", u16::from(other)),
    }
}
