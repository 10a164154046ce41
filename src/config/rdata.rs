//! Record values in YAML: master-file presentation syntax (read by
//! [`presentation`], as in master files), except that a domain name inside
//! a value is always absolute, with or without its final dot, as in the
//! PrivateZone console (docs/REFERENCE.md#records-in-yaml).

use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, RecordType};

use super::presentation;

/// The types written by name in YAML (any other type that is not refused
/// is written `TYPEnnn` with an RFC 3597 `\# len hex` value).
pub const NAMED_TYPES: &str = "A, AAAA, CNAME, MX, TXT, PTR, SRV, CAA, NS, HTTPS, SVCB, TLSA, SSHFP, NAPTR, HINFO (SOA at the apex)";

/// Parses a record type: a mnemonic (any case) or `TYPEnnn`. Types pzdns
/// does not give their meaning (DNAME, DNSSEC types, meta types) are
/// refused with the reason.
pub fn parse_type(s: &str) -> Result<RecordType, String> {
    // The usual spellings, without the general reader's uppercase copy.
    match s.trim() {
        "A" => return Ok(RecordType::A),
        "AAAA" => return Ok(RecordType::AAAA),
        "CNAME" => return Ok(RecordType::CNAME),
        "TXT" => return Ok(RecordType::TXT),
        _ => {}
    }
    let t = presentation::parse_type(s.trim())
        .ok_or_else(|| format!("unsupported record type `{s}`; use one of {NAMED_TYPES}, or TYPEnnn (RFC 3597)"))?;
    match presentation::refused_type(t) {
        Some(why) => Err(why),
        None => Ok(t),
    }
}

/// A user's name text, IDNA-converted to its ASCII form when it is not
/// ASCII; white space is refused.
fn ascii_form(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty domain name".into());
    }
    if t.contains(char::is_whitespace) {
        return Err(format!("`{t}` is not a domain name: it contains white space"));
    }
    if t.is_ascii() {
        return Ok(t.to_string());
    }
    Name::from_utf8(t).map(|n| n.to_ascii()).map_err(|e| format!("`{t}` is not a valid domain name: {e}"))
}

/// A name relative to `origin` (a record's `name`): `\DDD`, `\.` and any
/// byte as in master files; non-ASCII names become their IDNA form.
pub fn parse_relative_name(s: &str, origin: &Name) -> Result<Name, String> {
    presentation::parse_name(&ascii_form(s)?, Some(origin))
}

/// A name inside a record value or a zone name: always absolute.
pub fn parse_absolute_name(s: &str) -> Result<Name, String> {
    presentation::parse_name(&ascii_form(s)?, None)
}

/// Parses one value of type `rtype`.
pub fn parse_value(rtype: RecordType, text: &str) -> Result<RData, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("empty {} value", presentation::type_name(rtype)));
    }
    if rtype == RecordType::TXT && !t.starts_with('"') {
        return Ok(plain_txt(t));
    }
    // An address of digits and dots is one token to the lexer, which the
    // general reader hands to the same parser; a bad one goes that way, to
    // be reported as it reports it.
    if rtype == RecordType::A
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && let Ok(ip) = t.parse::<Ipv4Addr>()
    {
        return Ok(RData::A(ip.into()));
    }
    let toks = presentation::lex_value(t)?;
    presentation::rdata(rtype, &toks, None).map_err(|(_, e)| e)
}

/// TXT: a value that does not start with `"` is one string, exactly as
/// written, split into 255-byte pieces as RFC 1035 needs.
fn plain_txt(t: &str) -> RData {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut rest = t.as_bytes();
    while !rest.is_empty() {
        let mut cut = rest.len().min(255);
        // Cut on a character boundary.
        while cut < rest.len() && (rest[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    RData::TXT(TXT::from_bytes(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn names_in_values_are_absolute() {
        let r = parse_value(RecordType::CNAME, "popunify-vpc.cn-hangzhou.aliyuncs.com").unwrap();
        assert_eq!(r.to_string(), "popunify-vpc.cn-hangzhou.aliyuncs.com.");
        let r = parse_value(RecordType::MX, "10 mx1.example.com.").unwrap();
        assert_eq!(r.to_string(), "10 mx1.example.com.");
        let r = parse_value(RecordType::SRV, "10 60 5060 sip.example.com").unwrap();
        assert_eq!(r.to_string(), "10 60 5060 sip.example.com.");
        let o = Name::from_str("z.test.").unwrap();
        assert_eq!(parse_relative_name("www", &o).unwrap().to_string(), "www.z.test.");
        assert_eq!(parse_relative_name("bücher", &o).unwrap().to_ascii(), "xn--bcher-kva.z.test.");
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        assert!(parse_value(RecordType::A, "10.0.0.256").unwrap_err().contains("IPv4"));
        assert!(parse_value(RecordType::AAAA, "10.0.0.1").unwrap_err().contains("IPv6"));
        assert!(parse_value(RecordType::MX, "mx1.example.com").unwrap_err().contains("PREFERENCE"));
        assert!(parse_value(RecordType::SRV, "1 2 70000 x.example").unwrap_err().contains("port"));
        assert!(parse_type("AAA").unwrap_err().contains("unsupported"));
        assert!(parse_type("DNAME").unwrap_err().contains("DNAME redirection"));
        assert!(parse_type("rrsig").unwrap_err().contains("DNSSEC"));
        assert_eq!(parse_type("aaaa").unwrap(), RecordType::AAAA);
        assert_eq!(parse_type("TYPE65280").unwrap(), RecordType::Unknown(65280));
        let long = "a".repeat(64);
        assert!(parse_absolute_name(&format!("{long}.example.com")).is_err());
    }

    #[test]
    fn addresses_as_the_general_reader() {
        let general =
            |t: &str| presentation::lex_value(t).and_then(|toks| presentation::rdata(RecordType::A, &toks, None).map_err(|(_, e)| e));
        for t in
            ["10.0.0.1", "0.0.0.0", "255.255.255.255", "256.0.0.1", "10.0.0", "010.0.0.1", "1.2.3.4.", "..", "1", "10.0.0.01", " 10.0.0.2 "]
        {
            assert_eq!(parse_value(RecordType::A, t), general(t.trim()), "{t}");
        }
    }

    proptest::proptest! {
        #[test]
        fn addresses_random(t in "[0-9.]{1,18}") {
            let general = presentation::lex_value(&t).and_then(|toks| presentation::rdata(RecordType::A, &toks, None).map_err(|(_, e)| e));
            proptest::prop_assert_eq!(parse_value(RecordType::A, &t), general);
        }
    }

    #[test]
    fn txt_plain_and_quoted() {
        let r = parse_value(RecordType::TXT, "v=spf1 include:x -all; more").unwrap();
        match r {
            RData::TXT(t) => assert_eq!(t.txt_data.len(), 1),
            _ => panic!(),
        }
        let r = parse_value(RecordType::TXT, "\"a b\" \"c\" \"\\065\"").unwrap();
        match r {
            RData::TXT(t) => {
                assert_eq!(t.txt_data.iter().map(|s| s.to_vec()).collect::<Vec<_>>(), [b"a b".to_vec(), b"c".to_vec(), b"A".to_vec()])
            }
            _ => panic!(),
        }
        let r = parse_value(RecordType::CAA, "0 issue \"letsencrypt.org\"").unwrap();
        assert_eq!(r.record_type(), RecordType::CAA);
        let long = "é".repeat(200);
        match parse_value(RecordType::TXT, &long).unwrap() {
            RData::TXT(t) => assert!(t.txt_data.iter().all(|s| std::str::from_utf8(s).is_ok())),
            _ => panic!(),
        }
    }
}
