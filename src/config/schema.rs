//! A serde mirror of the YAML files of SPEC.md §2. Every struct denies unknown
//! keys, and every value that validation can complain about is [`Spanned`] so
//! the complaint carries its line and column.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::yaml::Spanned;

/// `pzdns.yaml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub listen: Option<Vec<ListenEntry>>,
    pub upstreams: Option<Vec<Spanned<Scalar>>>,
    #[serde(default)]
    pub forward_zones: Vec<ForwardZoneEntry>,
    pub zones_dir: Option<Spanned<String>>,
    pub unknown_clients: Option<Spanned<String>>,
    pub cache: Option<CacheEntry>,
    pub admin: Option<AdminEntry>,
    pub tcp: Option<TcpEntry>,
    pub log_format: Option<Spanned<String>>,
    pub query_log: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenEntry {
    pub address: Spanned<String>,
    pub vpc: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardZoneEntry {
    pub domain: Spanned<String>,
    pub upstreams: Spanned<Vec<Spanned<Scalar>>>,
    pub vpcs: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheEntry {
    pub max_entries: Option<Spanned<u64>>,
    pub serve_stale: Option<Spanned<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpEntry {
    pub max_connections: Option<Spanned<u64>>,
    pub idle_timeout: Option<Spanned<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminEntry {
    pub listen: Option<Spanned<String>>,
}

/// `zones/vpcs.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcsFile {
    #[serde(default)]
    pub vpcs: Vec<VpcEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcEntry {
    pub id: Spanned<String>,
    pub region: Option<Spanned<String>>,
    pub cidrs: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub vswitches: Vec<VswitchEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VswitchEntry {
    pub id: Spanned<String>,
    pub zone: Spanned<String>,
    pub cidr: Spanned<String>,
}

/// One zone file, `zones/<zone>.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneFile {
    pub zone: Spanned<String>,
    pub vpcs: Spanned<Vec<Spanned<String>>>,
    pub recursive_proxy: Option<Spanned<bool>>,
    pub ttl: Option<Spanned<i64>>,
    pub records: Option<Spanned<Vec<RecordEntry>>>,
    pub master_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordEntry {
    pub name: Spanned<Scalar>,
    #[serde(rename = "type")]
    pub rtype: Spanned<String>,
    pub value: Spanned<Values>,
    pub ttl: Option<Spanned<i64>>,
}

/// `zones/endpoints.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointsFile {
    pub names: Option<NamesEntry>,
    pub ttl: Option<Spanned<i64>>,
    #[serde(default)]
    pub endpoints: Vec<EndpointEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesEntry {
    pub endpoint: Option<Spanned<String>>,
    pub zonal: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointEntry {
    pub id: Spanned<String>,
    pub service: Spanned<String>,
    pub region: Spanned<String>,
    pub vpc: Spanned<String>,
    pub status: Option<Spanned<String>>,
    pub zones: Spanned<Vec<EndpointZoneEntry>>,
    #[serde(default)]
    pub private_dns_names: Vec<Spanned<String>>,
    #[serde(default)]
    pub visible_to: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointZoneEntry {
    pub zone: Spanned<String>,
    pub ip: Option<Spanned<String>>,
    pub ipv6: Option<Spanned<String>>,
    pub status: Option<Spanned<String>>,
}

/// A scalar read as its text whatever YAML thinks its type is: `1h`, `60`
/// and `10.0.0.1:53` are all just text to the validator, which then says
/// exactly what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor).map(Scalar)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a single value (text or number)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A record's `value`: one value, or a list of them (one record each).
#[derive(Debug)]
pub enum Values {
    One(String),
    Many(Vec<Spanned<Scalar>>),
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Values;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Values, E> {
                Ok(Values::One(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Values, E> {
                Ok(Values::One(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Values, E> {
                Ok(Values::One(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Values, E> {
                Ok(Values::One(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Values, E> {
                Ok(Values::One(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Values, E> {
                Ok(Values::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Values, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(v) = seq.next_element::<Spanned<Scalar>>()? {
                    out.push(v);
                }
                Ok(Values::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}
