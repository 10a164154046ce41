//! The whole answer path: any bytes in, a well-formed response (or
//! nothing) out, from any of the fixture's views, over UDP and TCP. No
//! upstreams are configured, so nothing leaves the process. One source is
//! a trusted forwarder (PROXY v2 and ECS believed): the bytes may start
//! with a PROXY v2 header, split off as the UDP loop does.
#![no_main]

#[path = "fixture.rs"]
mod fixture;

use fixture::state;
use libfuzzer_sys::fuzz_target;
use pzdns::answer::{Client, Transport};

const SOURCES: [&str; 5] = ["127.1.0.5:53000", "127.2.0.5:53000", "127.130.0.5:53000", "127.0.0.1:53000", "127.0.0.53:53000"];

fuzz_target!(|data: &[u8]| {
    let (rt, shared) = state();
    let src: std::net::SocketAddr = SOURCES[data.len() % SOURCES.len()].parse().unwrap();
    let (data, proxy) = match pzdns::server::proxy::split(data) {
        pzdns::server::proxy::Framing::Proxied(pzdns::server::proxy::Claim::Client(c), rest) => (rest, Some(c.ip())),
        pzdns::server::proxy::Framing::Proxied(_, rest) => (rest, None),
        _ => (data, None),
    };
    for transport in [Transport::Udp, Transport::Tcp] {
        let client = Client { listener: data.len() % 2, src, proxy, transport };
        if let Some(resp) = rt.block_on(shared.answer_bytes(client, data)) {
            if transport == Transport::Udp {
                assert!(resp.len() <= 1232, "within the UDP limit");
            }
            assert!(resp.len() >= 12, "a response has a header");
            assert_eq!(resp[..2], data[..2], "the id is echoed");
            assert_ne!(resp[2] & 0x80, 0, "QR is set");
            assert_eq!(data[2] & 0x80, 0, "a response is never answered");
            let mut d = hickory_proto::serialize::binary::BinDecoder::new(&resp);
            <hickory_proto::op::Message as hickory_proto::serialize::binary::BinDecodable>::read(&mut d).expect("our response decodes");
            assert!(d.is_empty(), "no bytes after the last record");
        }
    }
});
