//! Record values in YAML: master-file presentation syntax, except that a
//! domain name inside a value is always absolute, with or without its final
//! dot, as in the PrivateZone console (SPEC.md §2).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, RecordType};

/// The record types a zone may hold (SPEC.md §2), plus SOA at the apex.
pub const SUPPORTED_TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::PTR,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::NS,
    RecordType::SOA,
];

/// Parses a record type name, case-insensitively, limited to [`SUPPORTED_TYPES`].
pub fn parse_type(s: &str) -> Result<RecordType, String> {
    let upper = s.trim().to_ascii_uppercase();
    match RecordType::from_str(&upper) {
        Ok(t) if SUPPORTED_TYPES.contains(&t) => Ok(t),
        _ => Err(format!("unsupported record type `{s}`; use one of A, AAAA, CNAME, MX, TXT, PTR, SRV, CAA, NS (SOA at the apex)")),
    }
}

/// Parses a domain name given by a user, checking label and name lengths.
/// Non-ASCII names are converted to their IDNA (punycode) form.
pub fn parse_name(s: &str) -> Result<Name, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty domain name".into());
    }
    if t.contains(char::is_whitespace) {
        return Err(format!("`{t}` is not a domain name: it contains white space"));
    }
    if t.contains("..") {
        return Err(format!("`{t}` is not a domain name: it has an empty label (`..`)"));
    }
    let parsed = if t.is_ascii() { Name::from_ascii(t) } else { Name::from_utf8(t) };
    match parsed {
        Ok(n) => {
            for label in n.iter() {
                if label.len() > 63 {
                    return Err(format!("label `{}` is {} bytes; labels are at most 63", String::from_utf8_lossy(label), label.len()));
                }
            }
            if n.len() > 255 {
                return Err(format!("`{t}` is {} bytes long; names are at most 255", n.len()));
            }
            Ok(n)
        }
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("label") && msg.contains("exceed") || msg.contains("too long") {
                Err(format!("`{t}` is not a valid domain name: {msg} (labels are at most 63 bytes, names at most 255)"))
            } else {
                Err(format!("`{t}` is not a valid domain name: {msg}"))
            }
        }
    }
}

/// A name inside a record value: always absolute.
pub fn parse_absolute_name(s: &str) -> Result<Name, String> {
    let t = s.trim();
    if t == "@" {
        return Err("`@` is not allowed in a value: write the full name (values are always absolute)".into());
    }
    if t == "." {
        return Ok(Name::root());
    }
    let mut n = parse_name(t)?;
    n.set_fqdn(true);
    Ok(n)
}

fn parse_u16(field: &str, s: &str) -> Result<u16, String> {
    s.parse::<u16>().map_err(|_| format!("{field} `{s}` is not a number from 0 to 65535"))
}

/// Parses one value of type `rtype`.
pub fn parse_value(rtype: RecordType, text: &str) -> Result<RData, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("empty {rtype} value"));
    }
    let fields: Vec<&str> = t.split_whitespace().collect();
    let want = |n: usize, shape: &str| -> Result<(), String> {
        if fields.len() == n { Ok(()) } else { Err(format!("{rtype} value `{t}` must be `{shape}`")) }
    };
    match rtype {
        RecordType::A => {
            Ipv4Addr::from_str(t).map(|ip| RData::A(A(ip))).map_err(|_| format!("`{t}` is not an IPv4 address (write it like 192.0.2.1)"))
        }
        RecordType::AAAA => Ipv6Addr::from_str(t)
            .map(|ip| RData::AAAA(AAAA(ip)))
            .map_err(|_| format!("`{t}` is not an IPv6 address (write it like 2001:db8::1)")),
        RecordType::CNAME => {
            want(1, "target.name")?;
            parse_absolute_name(t).map(|n| RData::CNAME(CNAME(n)))
        }
        RecordType::NS => {
            want(1, "nameserver.name")?;
            parse_absolute_name(t).map(|n| RData::NS(NS(n)))
        }
        RecordType::PTR => {
            want(1, "target.name")?;
            parse_absolute_name(t).map(|n| RData::PTR(PTR(n)))
        }
        RecordType::MX => {
            want(2, "PREFERENCE exchange.name")?;
            Ok(RData::MX(MX::new(parse_u16("MX preference", fields[0])?, parse_absolute_name(fields[1])?)))
        }
        RecordType::SRV => {
            want(4, "PRIORITY WEIGHT PORT target.name")?;
            Ok(RData::SRV(SRV::new(
                parse_u16("SRV priority", fields[0])?,
                parse_u16("SRV weight", fields[1])?,
                parse_u16("SRV port", fields[2])?,
                parse_absolute_name(fields[3])?,
            )))
        }
        RecordType::TXT => parse_txt(t),
        RecordType::CAA => RData::try_from_str(RecordType::CAA, t)
            .map_err(|e| format!("CAA value `{t}` must be `FLAGS TAG \"VALUE\"` (e.g. 0 issue \"letsencrypt.org\"): {e}")),
        RecordType::SOA => {
            want(7, "mname rname SERIAL REFRESH RETRY EXPIRE MINIMUM")?;
            match RData::try_from_str(RecordType::SOA, t) {
                Ok(RData::SOA(mut soa)) => {
                    soa.mname.set_fqdn(true);
                    soa.rname.set_fqdn(true);
                    Ok(RData::SOA(soa))
                }
                Ok(_) => Err("not an SOA value".into()),
                Err(e) => Err(format!("SOA value `{t}`: {e}")),
            }
        }
        other => Err(format!("unsupported record type {other}")),
    }
}

/// TXT: a value that starts with `"` is a list of quoted character-strings;
/// anything else is one string, split into 255-byte pieces as RFC 1035 needs.
fn parse_txt(t: &str) -> Result<RData, String> {
    if t.starts_with('"') {
        return RData::try_from_str(RecordType::TXT, t).map_err(|e| format!("TXT value {t}: {e}"));
    }
    let mut parts = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        let mut cut = rest.len().min(255);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        parts.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    Ok(RData::TXT(TXT::new(parts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_values_are_absolute() {
        let r = parse_value(RecordType::CNAME, "popunify-vpc.cn-hangzhou.aliyuncs.com").unwrap();
        assert_eq!(r.to_string(), "popunify-vpc.cn-hangzhou.aliyuncs.com.");
        let r = parse_value(RecordType::MX, "10 mx1.example.com.").unwrap();
        assert_eq!(r.to_string(), "10 mx1.example.com.");
        let r = parse_value(RecordType::SRV, "10 60 5060 sip.example.com").unwrap();
        assert_eq!(r.to_string(), "10 60 5060 sip.example.com.");
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        assert!(parse_value(RecordType::A, "10.0.0.256").unwrap_err().contains("IPv4"));
        assert!(parse_value(RecordType::AAAA, "10.0.0.1").unwrap_err().contains("IPv6"));
        assert!(parse_value(RecordType::MX, "mx1.example.com").unwrap_err().contains("PREFERENCE"));
        assert!(parse_value(RecordType::SRV, "1 2 70000 x.example").unwrap_err().contains("port"));
        assert!(parse_type("AAA").unwrap_err().contains("unsupported"));
        assert_eq!(parse_type("aaaa").unwrap(), RecordType::AAAA);
        let long = "a".repeat(64);
        assert!(parse_name(&format!("{long}.example.com")).is_err());
    }

    #[test]
    fn txt_plain_and_quoted() {
        let r = parse_value(RecordType::TXT, "v=spf1 include:x -all").unwrap();
        match r {
            RData::TXT(t) => assert_eq!(t.txt_data.len(), 1),
            _ => panic!(),
        }
        let r = parse_value(RecordType::TXT, "\"a b\" \"c\"").unwrap();
        match r {
            RData::TXT(t) => assert_eq!(t.txt_data.len(), 2),
            _ => panic!(),
        }
        let r = parse_value(RecordType::CAA, "0 issue \"letsencrypt.org\"").unwrap();
        assert_eq!(r.record_type(), RecordType::CAA);
    }
}
