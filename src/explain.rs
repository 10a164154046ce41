//! `pzdns explain` (and the admin `/explain`): how a query would be answered
//! from a VPC, in words — the view, the zone or rule, the records, and
//! where it would be forwarded. Offline: no packet is sent.

use std::fmt::Write;
use std::net::IpAddr;

use hickory_proto::rr::{Name, RecordType};

use crate::config::zones_dir::ZoneOrigin;
use crate::resolve::{Route, Step, WalkOpts, resolve, resolve_opts};
use crate::snapshot::policy::{PolicyAction, TriggerKind};
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

/// What the running server holds of an upstream part of the answer
/// (`name`, `qtype`, the route's id), in lines of words: the admin
/// `/explain` gives the cached answers and their validation status;
/// `pzdns explain`, offline, nothing.
pub type UpstreamNote<'a> = &'a dyn Fn(&Name, RecordType, u64) -> Vec<String>;

/// Explains `name`/`qtype` from `asker`; `Err` when the VPC id is unknown.
pub fn explain(snap: &Snapshot, asker: &Asker, name: &Name, qtype: RecordType) -> Result<String, String> {
    explain_with(snap, asker, name, qtype, &|_, _, _| Vec::new())
}

/// A cached upstream answer in words: DO, rcode, records, time left and
/// what validation found (AD, or SERVFAIL with its EDE unless CD=1).
pub fn cached_answer(dnssec_ok: bool, e: &crate::upstream::Entry, now: std::time::Instant, validating: bool) -> String {
    let left = i64::from(e.ttl) - i64::from(e.age(now));
    let time = if left > 0 { format!("expires in {left}s") } else { format!("stale for {}s", -left) };
    let rcode = rcode_name(crate::answer::response_code(u16::from(e.rcode)));
    if e.failure.is_some() {
        return format!("cached for DO={}: a failure ({rcode}), {time}", u8::from(dnssec_ok));
    }
    let status = match e.dnssec() {
        crate::dnssec::Status::Secure => "DNSSEC secure: AD=1 to a client that sets DO or AD".to_string(),
        crate::dnssec::Status::Insecure => "DNSSEC insecure (no chain of trust to it, or a negative trust anchor): AD=0".to_string(),
        crate::dnssec::Status::Bogus(b) => {
            // The text names the status itself ("DNSSEC bogus: ...").
            format!("{} (Extended DNS Error {}): SERVFAIL, the data only with CD=1", b.text(), b.ede())
        }
        crate::dnssec::Status::Unchecked if validating => "not validated (asked with CD=1 before validation was on)".to_string(),
        crate::dnssec::Status::Unchecked => "not validated (resolver.dnssec: off)".to_string(),
    };
    format!("cached for DO={}: {rcode}, {} answer record(s), {time}; {status}", u8::from(dnssec_ok), e.answers().len())
}

/// [`explain`], with what the running server holds of each upstream part.
pub fn explain_with(snap: &Snapshot, asker: &Asker, name: &Name, qtype: RecordType, note: UpstreamNote<'_>) -> Result<String, String> {
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
        let _ = writeln!(
            out,
            "answer:   rcode REFUSED: unsigned zone transfers are not served (Extended DNS Error 21); one signed with a `transfers.keys` key is answered in that key's view"
        );
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
            Step::Routing { name, rtype, records } => format!(
                "{name} {rtype} is routed: unhealthy records leave the answer (all are answered when all are), failover answers the primaries while one is healthy, weights choose among the rest\n{}",
                records.iter().map(|r| format!("            {r}")).collect::<Vec<_>>().join("\n")
            ),
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
            Step::Upstream { name, qtype, route: Route::Default } if snap.root_hints.is_some() => {
                format!("resolve {name} {qtype} from the root servers (resolver.mode: recursive; cached), and append its answer")
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
            Step::Policy { name, rule, skip } => policy_line(snap, name, *rule, *skip),
            Step::PolicyIp { rule } => {
                let set = snap.policy.set_of(*rule);
                format!(
                    "an address of the answer matches response-IP rule at {} (rule set `{}`): {}",
                    snap.policy.origin(*rule),
                    set.label,
                    action_words(snap, *rule)
                )
            }
        };
        let _ = writeln!(out, "step:     {line}");
        if let Step::Upstream { name, qtype, route } = step {
            for l in note(name, *qtype, snap.upstreams_for(*route).1) {
                let _ = writeln!(out, "          {l}");
            }
        }
    }
    match res.policy_end {
        Some(crate::resolve::PolicyEnd::Drop) => {
            let _ = writeln!(out, "answer:   no reply: the policy drops the query (the client times out)");
        }
        Some(crate::resolve::PolicyEnd::Truncate) => {
            let _ = writeln!(out, "answer:   over UDP, TC=1 and no records (the client retries over TCP, where it is answered normally)");
        }
        _ => {}
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
    if res.steps.iter().any(|s| matches!(s, Step::Policy { .. } | Step::PolicyIp { .. })) {
        let without = resolve_opts(snap, view, name, qtype, false, WalkOpts { tcp: false, policy: false });
        let _ = writeln!(
            out,
            "without the policy: rcode {}{}",
            rcode_name(without.rcode),
            match &without.upstream {
                Some(u) => format!(", {} {} forwarded upstream", u.name, u.qtype),
                None => String::new(),
            }
        );
        for r in &without.answers {
            let _ = writeln!(out, "  {r}");
        }
    }
    Ok(out)
}

/// A policy rule's match, in words: the rule, its file and line, its rule set and policy.
fn policy_line(snap: &Snapshot, name: &Name, rule: u32, skip: usize) -> String {
    let set = snap.policy.set_of(rule);
    let trigger = if skip == 0 {
        format!("{name}")
    } else {
        let mut n = name.clone();
        for _ in 0..skip {
            n = n.base_name();
        }
        match snap.policy.rule(rule).trigger {
            TriggerKind::Domain => format!("{n} (and the names below it)"),
            _ => format!("*.{n}"),
        }
    };
    format!(
        "{name} matches policy `{}` rule `{trigger}` at {} (rule set `{}`): {}",
        snap.policy.names[set.policy as usize],
        snap.policy.origin(rule),
        set.label,
        action_words(snap, rule)
    )
}

/// What a rule's action does, in words.
fn action_words(snap: &Snapshot, rule: u32) -> String {
    let set = snap.policy.set_of(rule);
    let ede = if set.ede != 0 { format!(" (Extended DNS Error {} with the rule set's name)", set.ede) } else { String::new() };
    match snap.policy.rule(rule).action {
        PolicyAction::NxDomain => format!("NXDOMAIN{ede}"),
        PolicyAction::NoData => format!("NODATA: NOERROR, no records{ede}"),
        PolicyAction::Refused => format!("REFUSED{ede}"),
        PolicyAction::Drop => "drop: no reply at all".to_string(),
        PolicyAction::TcpOnly => "tcp-only: TC=1 over UDP, answered normally over TCP".to_string(),
        PolicyAction::Alert => "alert: answered normally, the hit logged and counted".to_string(),
        PolicyAction::Allow => "allow (passthru): answered normally, no later policy rule applies".to_string(),
        PolicyAction::Records(_) => "override with local data".to_string(),
        PolicyAction::Cname(i) => {
            let t = snap.policy.data[i as usize][0].view().records(&Name::root()).first().map(|r| r.data.to_string()).unwrap_or_default();
            format!("override with a CNAME to {t}, which is then resolved")
        }
    }
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
