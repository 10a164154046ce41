//! Inputs the fuzzers (fuzz/) once crashed on, replayed through the same
//! entry points, with the same checks, on every `cargo test`.

use std::path::{Path, PathBuf};

use pzdns::answer::{Client, Transport};
use pzdns::config::ServerConfig;

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn request_inputs_get_well_formed_responses() {
    let mut cfg = ServerConfig::defaults();
    cfg.zones_dir = Path::new(crate::support::RULES_ZONES).into();
    cfg.upstreams = Vec::new();
    let shared = crate::support::rules_shared(cfg);
    let inputs = files("tests/fixtures/regressions/request");
    assert!(!inputs.is_empty());
    for f in inputs {
        let data = std::fs::read(&f).unwrap();
        for (src, transport) in [("127.1.0.5:53000", Transport::Tcp), ("127.0.0.1:53000", Transport::Udp)] {
            let client = Client { listener: 0, src: src.parse().unwrap(), proxy: None, transport };
            if let Some(resp) = shared.answer_bytes(client, &data).await {
                assert_eq!(resp[..2], data[..2], "{}", f.display());
                hickory_proto::op::Message::from_vec(&resp).unwrap_or_else(|e| panic!("{}: response does not decode: {e}", f.display()));
            }
        }
    }
}
