//! PROXY protocol v2 (HAProxy's spec), as dnsdist (`useProxyProtocol`),
//! kdig (`+proxy`) and HAProxy send it: a header before the DNS message
//! (UDP) or at the start of the connection (TCP) that names the client a
//! forwarder speaks for. The header is parsed by the `ppp` crate; whether
//! its claim is believed is rule 1's business (`Snapshot::select_identity`).

use std::net::{IpAddr, SocketAddr};

use ppp::v2::{Addresses, Command, Header, ParseError};

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A PROXY command for this client.
    Client(SocketAddr),
    /// A LOCAL command (a health check): the sender speaks for itself.
    Local,
}

/// What precedes the DNS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing<'a> {
    /// No header: the packet is a DNS message.
    Bare,
    /// A header, and the message after it.
    Proxied(Claim, &'a [u8]),
    /// The PROXY v2 signature, then something that is not a valid header.
    Malformed,
    /// The start of a header, to be completed (TCP only).
    Incomplete,
}

/// Length of the signature and fixed part of a v2 header.
pub const HEADER_MIN: usize = 16;

/// Splits a PROXY v2 header off the front of `packet`.
pub fn split(packet: &[u8]) -> Framing<'_> {
    match Header::try_from(packet) {
        Ok(h) => {
            let rest = &packet[h.len()..];
            let claim = match (h.command, h.addresses) {
                (Command::Local, _) => Claim::Local,
                (Command::Proxy, Addresses::IPv4(a)) => Claim::Client(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
                (Command::Proxy, Addresses::IPv6(a)) => Claim::Client(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
                // A PROXY command without an IP client (AF_UNSPEC, AF_UNIX)
                // names nobody: as LOCAL, the sender speaks for itself.
                (Command::Proxy, _) => Claim::Local,
            };
            Framing::Proxied(claim, rest)
        }
        Err(ParseError::Prefix) => Framing::Bare,
        Err(ParseError::Incomplete(_) | ParseError::Partial(..)) => Framing::Incomplete,
        Err(_) => Framing::Malformed,
    }
}

/// The full length of the header that starts `first` (its first 16
/// bytes), for a stream reader.
pub fn header_len(first: &[u8; HEADER_MIN]) -> usize {
    HEADER_MIN + u16::from_be_bytes([first[14], first[15]]) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cmd: u8, fam: u8, addrs: &[u8]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
        h.extend_from_slice(addrs);
        h
    }

    #[test]
    fn headers_are_split_off() {
        let v4 = [127, 1, 0, 5, 127, 0, 0, 1, 0x30, 0x39, 0, 53];
        let mut p = header(1, 0x12, &v4);
        p.extend_from_slice(b"DNS");
        assert_eq!(split(&p), Framing::Proxied(Claim::Client("127.1.0.5:12345".parse().unwrap()), b"DNS"));
        let local = header(0, 0, &[]);
        assert_eq!(split(&local), Framing::Proxied(Claim::Local, b""));
        assert_eq!(split(b"\x12\x34\x01\x00"), Framing::Bare, "a DNS message");
        assert_eq!(split(&p[..10]), Framing::Incomplete);
        assert_eq!(split(&p[..20]), Framing::Incomplete);
        let mut bad = p.clone();
        bad[12] = 0x31; // version 3
        assert_eq!(split(&bad), Framing::Malformed);
        assert_eq!(header_len(p[..16].try_into().unwrap()), 16 + 12);
    }
}
