//! Routing of a record set (SPEC §10): weights, failover roles and health
//! checks, as read from zone files and endpoints.yaml, and the
//! `health_checks:` settings of pzdns.yaml.

use std::net::IpAddr;
use std::time::Duration;

/// How a target is checked: `tcp/PORT` (a connection is accepted),
/// `http/PORT[/path]` (the status is 2xx or 3xx), `dns/PORT` (any reply).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CheckKind {
    Tcp,
    Http(String),
    Dns,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Check {
    pub kind: CheckKind,
    pub port: u16,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            CheckKind::Tcp => write!(f, "tcp/{}", self.port),
            CheckKind::Http(path) => write!(f, "http/{}{path}", self.port),
            CheckKind::Dns => write!(f, "dns/{}", self.port),
        }
    }
}

/// What is checked: an address, the way `check` says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub ip: IpAddr,
    pub check: Check,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip {
            IpAddr::V4(a) => write!(f, "{a} {}", self.check),
            IpAddr::V6(a) => write!(f, "[{a}] {}", self.check),
        }
    }
}

/// Reads `tcp/5432`, `http/8080/healthz`, `http/80` (path `/`), `dns/53`.
pub fn parse_check(text: &str) -> Result<Check, String> {
    let hint = "write `tcp/PORT`, `http/PORT/path` or `dns/PORT`, e.g. `tcp/5432`";
    let t = text.trim();
    let (kind, rest) = t.split_once('/').ok_or_else(|| format!("health `{text}`: {hint}"))?;
    let (port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("health `{text}`: `{port}` is not a port from 1 to 65535; {hint}")),
    };
    let kind = match kind.to_ascii_lowercase().as_str() {
        "tcp" | "dns" if !path.is_empty() => return Err(format!("health `{text}`: only an http check takes a path; {hint}")),
        "tcp" => CheckKind::Tcp,
        "dns" => CheckKind::Dns,
        "http" => {
            let path = if path.is_empty() { "/" } else { path };
            if path.bytes().any(|b| b.is_ascii_control() || b == b' ') || path.len() > 1024 {
                return Err(format!("health `{text}`: the path must be at most 1024 characters without spaces or control characters"));
            }
            CheckKind::Http(path.to_string())
        }
        other => return Err(format!("health `{text}`: unknown check `{other}`; {hint}")),
    };
    Ok(Check { kind, port })
}

/// A record's role in failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    Primary,
    Secondary,
}

/// The routing of one record, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDef {
    pub weight: Option<u32>,
    /// Records per answer, for a weighted set (default 1).
    pub answers: Option<u8>,
    pub failover: Option<Failover>,
    pub health: Option<Check>,
}

/// Largest `weight:`.
pub const MAX_WEIGHT: u32 = 65_535;
/// Largest `answers:`.
pub const MAX_ANSWERS: u8 = 32;

/// `health_checks:` of pzdns.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    /// The longest TTL an answer with health-checked records carries
    /// (default: the interval, at least 1 s).
    pub max_ttl: Option<u32>,
    /// Checks running at once, at most.
    pub concurrency: usize,
    /// Distinct targets, at most (fixed at start).
    pub max_targets: usize,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            failure_threshold: 3,
            success_threshold: 2,
            max_ttl: None,
            concurrency: 64,
            max_targets: 4096,
        }
    }
}

impl HealthSettings {
    /// The TTL cap of answers with health-checked records.
    pub fn ttl_cap(&self) -> u32 {
        self.max_ttl.unwrap_or_else(|| (self.interval.as_secs() as u32).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_as_written() {
        assert_eq!(parse_check("tcp/5432").unwrap(), Check { kind: CheckKind::Tcp, port: 5432 });
        assert_eq!(parse_check("http/8080/healthz").unwrap(), Check { kind: CheckKind::Http("/healthz".into()), port: 8080 });
        assert_eq!(parse_check("http/80").unwrap().to_string(), "http/80/");
        assert_eq!(parse_check("dns/53").unwrap().to_string(), "dns/53");
        for bad in ["tcp", "tcp/0", "tcp/70000", "udp/53", "tcp/53/x", "http/80/a b", "/53"] {
            assert!(parse_check(bad).is_err(), "{bad}");
        }
    }
}
