//! The YAML files (docs/REFERENCE.md#files), read from the tree of [`yaml::Node`]s.
//!
//! Every text field is the scalar exactly as written (`name: no` is the
//! name `no`); typed fields accept only their type. Readers never stop at
//! the first problem: each reports what is wrong with its own keys and
//! keeps going, and every unknown key is reported with a suggestion.

use std::path::Path;

use super::diagnostics::Diagnostics;
use super::yaml::{self, MapReader, Node, Spanned};

/// `pzdns.yaml`.
#[derive(Debug, Default)]
pub struct ServerFile {
    pub listen: Option<Spanned<Vec<ListenEntry>>>,
    pub upstreams: Option<Vec<Spanned<String>>>,
    pub forward_zones: Vec<ForwardZoneEntry>,
    pub zones_dir: Option<Spanned<String>>,
    /// `zones_max_bytes`: bytes one load may read in all.
    pub zones_max_bytes: Option<Spanned<String>>,
    pub unknown_clients: Option<Spanned<String>>,
    pub cache: Option<CacheEntry>,
    pub admin: Option<AdminEntry>,
    pub tcp: Option<TcpEntry>,
    /// `reload: { threads: N }`.
    pub reload_threads: Option<Spanned<i64>>,
    pub reload_priority: Option<Spanned<String>>,
    pub log_format: Option<Spanned<String>>,
    pub query_log: Option<Spanned<bool>>,
    /// One directory, or a list of them.
    pub allow_paths_outside: Vec<Spanned<String>>,
    pub trusted_forwarders: Option<Vec<Spanned<String>>>,
    pub client_subnet: Option<Spanned<String>>,
    pub nsid: Option<Spanned<String>>,
    pub dnstap: Option<DnstapEntry>,
    pub health_checks: Option<HealthChecksEntry>,
    /// `cookies: on | off | required`.
    pub cookies: Option<Spanned<String>>,
    pub cookie_secret_file: Option<Spanned<String>>,
    pub rate_limit: Option<RateLimitEntry>,
    pub transfers: Option<TransfersEntry>,
    pub resolver: Option<ResolverEntry>,
    /// `upstream_tls: { ca_file }`.
    pub upstream_tls_ca_file: Option<Spanned<String>>,
}

/// `health_checks:` of pzdns.yaml.
#[derive(Debug, Default)]
pub struct HealthChecksEntry {
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub failure_threshold: Option<Spanned<i64>>,
    pub success_threshold: Option<Spanned<i64>>,
    pub max_ttl: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
    pub max_targets: Option<Spanned<i64>>,
}

/// `rate_limit:` of pzdns.yaml (BIND's names).
#[derive(Debug, Default)]
pub struct RateLimitEntry {
    pub responses_per_second: Option<Spanned<i64>>,
    pub nxdomains_per_second: Option<Spanned<i64>>,
    pub errors_per_second: Option<Spanned<i64>>,
    pub slip: Option<Spanned<i64>>,
    pub window: Option<Spanned<i64>>,
    pub ipv4_prefix: Option<Spanned<i64>>,
    pub ipv6_prefix: Option<Spanned<i64>>,
    pub scope: Option<Spanned<String>>,
}

/// `transfers:` of pzdns.yaml (zone transfers to secondaries).
#[derive(Debug, Default)]
pub struct TransfersEntry {
    pub keys: Vec<TsigKeyEntry>,
    pub notify: Vec<Spanned<String>>,
    pub catalog: Option<Spanned<String>>,
}

/// One TSIG key of `transfers.keys`.
#[derive(Debug)]
pub struct TsigKeyEntry {
    pub name: Spanned<String>,
    pub algorithm: Option<Spanned<String>>,
    pub secret_file: Spanned<String>,
    pub vpc: Spanned<String>,
    /// Secondaries told of this view's changes, besides `transfers.notify`.
    pub notify: Vec<Spanned<String>>,
}

/// `resolver:` of pzdns.yaml.
#[derive(Debug, Default)]
pub struct ResolverEntry {
    pub mode: Option<Spanned<String>>,
    pub root_hints: Option<Spanned<String>>,
    pub dnssec: Option<Spanned<String>>,
    pub trust_anchors: Option<Spanned<String>>,
    pub negative_trust_anchors: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `dnstap:` of pzdns.yaml.
#[derive(Debug)]
pub struct DnstapEntry {
    /// Where the map starts, for problems of the whole entry.
    pub pos: super::Pos,
    pub socket: Option<Spanned<String>>,
    pub file: Option<Spanned<String>>,
    pub identity: Option<Spanned<String>>,
    pub version: Option<Spanned<String>>,
    pub messages: Option<Spanned<Vec<Spanned<String>>>>,
    pub queue: Option<Spanned<i64>>,
}

#[derive(Debug)]
pub struct ListenEntry {
    pub address: Spanned<String>,
    pub vpc: Option<Spanned<String>>,
    pub proxy_protocol: Option<Spanned<String>>,
    /// `udp+tcp` (default), `tls` or `https`.
    pub transport: Option<Spanned<String>>,
    pub tls: Option<TlsEntry>,
}

/// `tls: { cert, key }` of a listener.
#[derive(Debug)]
pub struct TlsEntry {
    pub pos: super::Pos,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct ForwardZoneEntry {
    pub domain: Spanned<String>,
    pub upstreams: Spanned<Vec<Spanned<String>>>,
    pub vpcs: Option<Vec<Spanned<String>>>,
    pub unknown_clients: Option<Spanned<bool>>,
}

#[derive(Debug, Default)]
pub struct CacheEntry {
    pub max_entries: Option<Spanned<i64>>,
    pub max_bytes: Option<Spanned<String>>,
    pub serve_stale: Option<Spanned<String>>,
}

#[derive(Debug, Default)]
pub struct TcpEntry {
    pub max_connections: Option<Spanned<i64>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_connections_per_source: Option<Spanned<i64>>,
    pub write_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default)]
pub struct AdminEntry {
    pub listen: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
}

/// `zones/vpcs.yaml`.
#[derive(Debug, Default)]
pub struct VpcsFile {
    pub vpcs: Vec<VpcEntry>,
}

#[derive(Debug)]
pub struct VpcEntry {
    pub id: Spanned<String>,
    pub region: Option<Spanned<String>>,
    pub cidrs: Spanned<Vec<Spanned<String>>>,
    pub vswitches: Vec<VswitchEntry>,
}

#[derive(Debug)]
pub struct VswitchEntry {
    pub id: Spanned<String>,
    pub zone: Spanned<String>,
    pub cidr: Spanned<String>,
}

/// One zone file, `zones/<zone>.yaml`. Records borrow their text from
/// the tree (a large zone has a million of them).
#[derive(Debug)]
pub struct ZoneFile<'a> {
    pub zone: Spanned<String>,
    pub vpcs: Spanned<Vec<Spanned<String>>>,
    pub recursive_proxy: Option<Spanned<bool>>,
    pub ttl: Option<Spanned<i64>>,
    pub records: Option<Spanned<Vec<RecordEntry<'a>>>>,
    pub master_file: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct RecordEntry<'a> {
    pub name: Spanned<&'a str>,
    pub rtype: Spanned<&'a str>,
    pub value: Spanned<Values<'a>>,
    pub ttl: Option<Spanned<i64>>,
    /// Routing (docs/REFERENCE.md, "Routing and health").
    pub weight: Option<Spanned<i64>>,
    pub answers: Option<Spanned<i64>>,
    pub failover: Option<Spanned<&'a str>>,
    pub health: Option<Spanned<&'a str>>,
}

/// `zones/endpoints.yaml`.
#[derive(Debug, Default)]
pub struct EndpointsFile {
    pub names: Option<NamesEntry>,
    pub ttl: Option<Spanned<i64>>,
    pub endpoints: Vec<EndpointEntry>,
}

#[derive(Debug, Default)]
pub struct NamesEntry {
    pub endpoint: Option<Spanned<String>>,
    pub zonal: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct EndpointEntry {
    pub id: Spanned<String>,
    pub service: Spanned<String>,
    pub region: Spanned<String>,
    pub vpc: Spanned<String>,
    pub status: Option<Spanned<String>>,
    pub zones: Spanned<Vec<EndpointZoneEntry>>,
    pub private_dns_names: Vec<Spanned<String>>,
    pub visible_to: Vec<Spanned<String>>,
}

#[derive(Debug)]
pub struct EndpointZoneEntry {
    pub zone: Spanned<String>,
    pub ip: Option<Spanned<String>>,
    pub ipv6: Option<Spanned<String>>,
    pub status: Option<Spanned<String>>,
    /// `tcp/PORT`, `http/PORT[/path]` or `dns/PORT`: checks this zone's addresses.
    pub health: Option<Spanned<String>>,
    /// This zone's weight in the endpoint domain's answers.
    pub weight: Option<Spanned<i64>>,
}

/// A record's `value`: one value, or a list of them (one record each).
#[derive(Debug)]
pub enum Values<'a> {
    One(&'a str),
    Many(Vec<Spanned<&'a str>>),
}

/// Reads each item of a list with `f`, keeping those that read.
fn each<'a, T>(items: &'a [Node<'a>], mut f: impl FnMut(&'a Node<'a>) -> Option<T>) -> Vec<T> {
    items.iter().filter_map(&mut f).collect()
}

impl ServerFile {
    /// `None` only when the top level is not a mapping; an empty file is
    /// all defaults.
    pub fn read(node: &Node, path: &Path, d: &mut Diagnostics) -> Option<Self> {
        if matches!(node, Node::Empty { .. }) {
            return Some(Self::default());
        }
        let mut m = MapReader::new(node, "pzdns.yaml", path, d)?;
        let listen = m.list("listen", d).map(|l| {
            let items = each(l.value, |n| {
                let mut e = MapReader::new(n, "a `listen` entry", path, d)?;
                let address = e.req_text("address", " (e.g. `address: 0.0.0.0:53`)", d);
                let vpc = e.text("vpc", d);
                let proxy_protocol = e.text("proxy_protocol", d);
                let transport = e.text("transport", d);
                let tls = e.get("tls").and_then(|n| {
                    let mut t = MapReader::new(n, "a listener's `tls`", path, d)?;
                    let out = TlsEntry { pos: n.pos(), cert: t.text("cert", d), key: t.text("key", d) };
                    t.finish(d);
                    Some(out)
                });
                e.finish(d);
                Some(ListenEntry { address: address?, vpc, proxy_protocol, transport, tls })
            });
            Spanned::new(items, l.pos)
        });
        let upstreams = m.texts("upstreams", d).map(|l| l.value);
        let forward_zones = m
            .list("forward_zones", d)
            .map(|l| {
                each(l.value, |n| {
                    let mut e = MapReader::new(n, "a `forward_zones` entry", path, d)?;
                    let domain = e.req_text("domain", "", d);
                    let upstreams = match e.require("upstreams", " (e.g. `upstreams: [10.1.1.53:53]`)", d) {
                        Some(n) => yaml::list(n, "upstreams", path, d)
                            .map(|l| Spanned::new(each(l.value, |x| yaml::text(x, "upstreams", path, d)), l.pos)),
                        None => None,
                    };
                    let vpcs = e.texts("vpcs", d).map(|v| v.value);
                    let unknown_clients = e.bool("unknown_clients", d);
                    e.finish(d);
                    Some(ForwardZoneEntry { domain: domain?, upstreams: upstreams?, vpcs, unknown_clients })
                })
            })
            .unwrap_or_default();
        let zones_dir = m.text("zones_dir", d);
        let zones_max_bytes = m.text("zones_max_bytes", d);
        let unknown_clients = m.text("unknown_clients", d);
        let cache = m.get("cache").and_then(|n| {
            let mut c = MapReader::new(n, "`cache`", path, d)?;
            let out = CacheEntry {
                max_entries: c.int("max_entries", d),
                max_bytes: c.text("max_bytes", d),
                serve_stale: c.text("serve_stale", d),
            };
            c.finish(d);
            Some(out)
        });
        let admin = m.get("admin").and_then(|n| {
            let mut a = MapReader::new(n, "`admin`", path, d)?;
            let out = AdminEntry { listen: a.text("listen", d), token_file: a.text("token_file", d) };
            a.finish(d);
            Some(out)
        });
        let tcp = m.get("tcp").and_then(|n| {
            let mut t = MapReader::new(n, "`tcp`", path, d)?;
            let out = TcpEntry {
                max_connections: t.int("max_connections", d),
                idle_timeout: t.text("idle_timeout", d),
                max_connections_per_source: t.int("max_connections_per_source", d),
                write_timeout: t.text("write_timeout", d),
            };
            t.finish(d);
            Some(out)
        });
        let (reload_threads, reload_priority) = m
            .get("reload")
            .and_then(|n| {
                let mut r = MapReader::new(n, "`reload`", path, d)?;
                let out = (r.int("threads", d), r.text("priority", d));
                r.finish(d);
                Some(out)
            })
            .unwrap_or_default();
        let log_format = m.text("log_format", d);
        let query_log = m.bool("query_log", d);
        let allow_paths_outside = match m.get("allow_paths_outside") {
            Some(Node::Seq { items, .. }) => each(items, |x| yaml::text(x, "allow_paths_outside", path, d)),
            Some(n) => yaml::text(n, "allow_paths_outside", path, d).into_iter().collect(),
            None => Vec::new(),
        };
        let trusted_forwarders = m.texts("trusted_forwarders", d).map(|l| l.value);
        let client_subnet = m.text("client_subnet", d);
        let nsid = m.text("nsid", d);
        let dnstap = m.get("dnstap").and_then(|n| {
            let mut t = MapReader::new(n, "`dnstap`", path, d)?;
            let out = DnstapEntry {
                pos: n.pos(),
                socket: t.text("socket", d),
                file: t.text("file", d),
                identity: t.text("identity", d),
                version: t.text("version", d),
                messages: t.texts("messages", d),
                queue: t.int("queue", d),
            };
            t.finish(d);
            Some(out)
        });
        let health_checks = m.get("health_checks").and_then(|n| {
            let mut h = MapReader::new(n, "`health_checks`", path, d)?;
            let out = HealthChecksEntry {
                interval: h.text("interval", d),
                timeout: h.text("timeout", d),
                failure_threshold: h.int("failure_threshold", d),
                success_threshold: h.int("success_threshold", d),
                max_ttl: h.text("max_ttl", d),
                concurrency: h.int("concurrency", d),
                max_targets: h.int("max_targets", d),
            };
            h.finish(d);
            Some(out)
        });
        let cookies = m.text("cookies", d);
        let cookie_secret_file = m.text("cookie_secret_file", d);
        let rate_limit = m.get("rate_limit").and_then(|n| {
            let mut r = MapReader::new(n, "`rate_limit`", path, d)?;
            let out = RateLimitEntry {
                responses_per_second: r.int("responses_per_second", d),
                nxdomains_per_second: r.int("nxdomains_per_second", d),
                errors_per_second: r.int("errors_per_second", d),
                slip: r.int("slip", d),
                window: r.int("window", d),
                ipv4_prefix: r.int("ipv4_prefix", d),
                ipv6_prefix: r.int("ipv6_prefix", d),
                scope: r.text("scope", d),
            };
            r.finish(d);
            Some(out)
        });
        let transfers = m.get("transfers").and_then(|n| {
            let mut t = MapReader::new(n, "`transfers`", path, d)?;
            let keys = t
                .list("keys", d)
                .map(|l| {
                    each(l.value, |n| {
                        let mut k = MapReader::new(n, "a `transfers.keys` entry", path, d)?;
                        let name = k.req_text("name", " (the TSIG key's name, e.g. `name: onprem-hz`)", d);
                        let algorithm = k.text("algorithm", d);
                        let secret_file = k.req_text("secret_file", " (a file holding the base64 secret, e.g. from `tsig-keygen`)", d);
                        let vpc = k.req_text("vpc", " (the VPC whose view the key stands for)", d);
                        let notify = k.texts("notify", d).map(|v| v.value).unwrap_or_default();
                        k.finish(d);
                        Some(TsigKeyEntry { name: name?, algorithm, secret_file: secret_file?, vpc: vpc?, notify })
                    })
                })
                .unwrap_or_default();
            let notify = t.texts("notify", d).map(|v| v.value).unwrap_or_default();
            let catalog = t.text("catalog", d);
            t.finish(d);
            Some(TransfersEntry { keys, notify, catalog })
        });
        let resolver = m.get("resolver").and_then(|n| {
            let mut r = MapReader::new(n, "`resolver`", path, d)?;
            let out = ResolverEntry {
                mode: r.text("mode", d),
                root_hints: r.text("root_hints", d),
                dnssec: r.text("dnssec", d),
                trust_anchors: r.text("trust_anchors", d),
                negative_trust_anchors: r.texts("negative_trust_anchors", d),
            };
            r.finish(d);
            Some(out)
        });
        let upstream_tls_ca_file = m.get("upstream_tls").and_then(|n| {
            let mut t = MapReader::new(n, "`upstream_tls`", path, d)?;
            let out = t.text("ca_file", d);
            t.finish(d);
            out
        });
        m.finish(d);
        Some(ServerFile {
            transfers,
            listen,
            upstreams,
            forward_zones,
            zones_dir,
            zones_max_bytes,
            unknown_clients,
            cache,
            admin,
            tcp,
            reload_threads,
            reload_priority,
            log_format,
            query_log,
            allow_paths_outside,
            trusted_forwarders,
            client_subnet,
            nsid,
            dnstap,
            health_checks,
            cookies,
            cookie_secret_file,
            rate_limit,
            resolver,
            upstream_tls_ca_file,
        })
    }
}

impl VpcsFile {
    pub fn read(node: &Node, path: &Path, d: &mut Diagnostics) -> Option<Self> {
        if matches!(node, Node::Empty { .. }) {
            return Some(Self::default());
        }
        let mut m = MapReader::new(node, "vpcs.yaml", path, d)?;
        let vpcs =
            m.list("vpcs", d)
                .map(|l| {
                    each(l.value, |n| {
                        let mut v = MapReader::new(n, "a VPC", path, d)?;
                        let id = v.req_text("id", " (e.g. `id: vpc-hz-prod`)", d);
                        let region = v.text("region", d);
                        let cidrs = match v.require("cidrs", " (e.g. `cidrs: [192.168.0.0/16]`)", d) {
                            Some(n) => yaml::list(n, "cidrs", path, d)
                                .map(|l| Spanned::new(each(l.value, |x| yaml::text(x, "cidrs", path, d)), l.pos)),
                            None => None,
                        };
                        let vswitches = v
                            .list("vswitches", d)
                            .map(|l| {
                                each(l.value, |n| {
                                    let mut s = MapReader::new(n, "a vSwitch", path, d)?;
                                    let id = s.req_text("id", "", d);
                                    let zone = s.req_text("zone", " (e.g. `zone: cn-hangzhou-b`)", d);
                                    let cidr = s.req_text("cidr", "", d);
                                    s.finish(d);
                                    Some(VswitchEntry { id: id?, zone: zone?, cidr: cidr? })
                                })
                            })
                            .unwrap_or_default();
                        v.finish(d);
                        Some(VpcEntry { id: id?, region, cidrs: cidrs?, vswitches })
                    })
                })
                .unwrap_or_default();
        m.finish(d);
        Some(VpcsFile { vpcs })
    }
}

impl<'a> ZoneFile<'a> {
    pub fn read(node: &'a Node<'a>, path: &'a Path, d: &mut Diagnostics) -> Option<Self> {
        if matches!(node, Node::Empty { .. }) {
            d.push(path, node.pos(), "the file is empty; a zone file needs at least `zone:` and `vpcs:`");
            return None;
        }
        let mut m = MapReader::new(node, "a zone file", path, d)?;
        let zone = m.req_text("zone", " (the zone's name, e.g. `zone: example.internal`)", d);
        let vpcs = m.req_list("vpcs", " (the VPCs that see this zone, e.g. `vpcs: [vpc-hz-prod]`)", d);
        let vpcs = vpcs.map(|l| Spanned::new(each(l.value, |x| yaml::text(x, "vpcs", path, d)), l.pos));
        let recursive_proxy = m.bool("recursive_proxy", d);
        let ttl = m.int("ttl", d);
        let records = m.list("records", d).map(|l| Spanned::new(each(l.value, |n| RecordEntry::read(n, path, d)), l.pos));
        let master_file = m.text("master_file", d);
        m.finish(d);
        Some(ZoneFile { zone: zone?, vpcs: vpcs?, recursive_proxy, ttl, records, master_file })
    }
}

impl<'a> RecordEntry<'a> {
    fn read(node: &'a Node<'a>, path: &'a Path, d: &mut Diagnostics) -> Option<Self> {
        let mut r = MapReader::new(node, "a record", path, d)?;
        let name = r.req_str("name", " (relative to the zone; `@` is the apex)", d);
        let rtype = r.req_str("type", " (e.g. `type: A`)", d);
        let value = match r.require("value", "", d) {
            Some(Node::Seq { items, pos }) => Some(Spanned::new(Values::Many(each(items, |x| yaml::str_of(x, "value", path, d))), *pos)),
            Some(n) => yaml::str_of(n, "value", path, d).map(|t| Spanned::new(Values::One(t.value), t.pos)),
            None => None,
        };
        let ttl = r.int("ttl", d);
        let weight = r.int("weight", d);
        let answers = r.int("answers", d);
        let failover = r.get("failover").and_then(|n| yaml::str_of(n, "failover", path, d));
        let health = r.get("health").and_then(|n| yaml::str_of(n, "health", path, d));
        r.finish(d);
        Some(RecordEntry { name: name?, rtype: rtype?, value: value?, ttl, weight, answers, failover, health })
    }
}

impl EndpointsFile {
    pub fn read(node: &Node, path: &Path, d: &mut Diagnostics) -> Option<Self> {
        if matches!(node, Node::Empty { .. }) {
            return Some(Self::default());
        }
        let mut m = MapReader::new(node, "endpoints.yaml", path, d)?;
        let names = m.get("names").and_then(|n| {
            let mut t = MapReader::new(n, "`names`", path, d)?;
            let out = NamesEntry { endpoint: t.text("endpoint", d), zonal: t.text("zonal", d) };
            t.finish(d);
            Some(out)
        });
        let ttl = m.int("ttl", d);
        let endpoints = m
            .list("endpoints", d)
            .map(|l| {
                each(l.value, |n| {
                    let mut e = MapReader::new(n, "an endpoint", path, d)?;
                    let id = e.req_text("id", " (e.g. `id: ep-bp191ac9cdad00430b3`)", d);
                    let service = e.req_text("service", "", d);
                    let region = e.req_text("region", "", d);
                    let vpc = e.req_text("vpc", "", d);
                    let status = e.text("status", d);
                    let zones = e.req_list("zones", " (each zone with its ip)", d).map(|l| {
                        Spanned::new(
                            each(l.value, |n| {
                                let mut z = MapReader::new(n, "an endpoint zone", path, d)?;
                                let zone = z.req_text("zone", " (e.g. `zone: cn-hangzhou-b`)", d);
                                let out = EndpointZoneEntry {
                                    zone: zone?,
                                    ip: z.text("ip", d),
                                    ipv6: z.text("ipv6", d),
                                    status: z.text("status", d),
                                    health: z.text("health", d),
                                    weight: z.int("weight", d),
                                };
                                z.finish(d);
                                Some(out)
                            }),
                            l.pos,
                        )
                    });
                    let private_dns_names = e.texts("private_dns_names", d).map(|v| v.value).unwrap_or_default();
                    let visible_to = e.texts("visible_to", d).map(|v| v.value).unwrap_or_default();
                    e.finish(d);
                    Some(EndpointEntry {
                        id: id?,
                        service: service?,
                        region: region?,
                        vpc: vpc?,
                        status,
                        zones: zones?,
                        private_dns_names,
                        visible_to,
                    })
                })
            })
            .unwrap_or_default();
        m.finish(d);
        Some(EndpointsFile { names, ttl, endpoints })
    }
}
