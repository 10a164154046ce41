//! The whole request path: any bytes in, a well-formed response (or
//! nothing) out, from any of the fixture's views. No upstreams are
//! configured, so nothing leaves the process. Both the UDP fast path and
//! the general path.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use pzdns::config::ServerConfig;
use pzdns::metrics::Metrics;
use pzdns::server::Shared;
use pzdns::snapshot::Snapshot;

fn state() -> &'static (tokio::runtime::Runtime, Arc<Shared>) {
    static S: OnceLock<(tokio::runtime::Runtime, Arc<Shared>)> = OnceLock::new();
    S.get_or_init(|| {
        let mut cfg = ServerConfig::defaults();
        cfg.zones_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rules/zones");
        cfg.upstreams = Vec::new();
        let snap = Snapshot::load(&cfg, 1).expect("fixture loads");
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        (rt, Shared::new(cfg, snap, Arc::new(Metrics::new())))
    })
}

const SOURCES: [&str; 4] = ["127.1.0.5:53000", "127.2.0.5:53000", "127.130.0.5:53000", "127.0.0.1:53000"];

fuzz_target!(|data: &[u8]| {
    let (rt, shared) = state();
    let src: std::net::SocketAddr = SOURCES[data.len() % SOURCES.len()].parse().unwrap();
    // The UDP fast path: whatever it takes, it answers within the UDP
    // limit with a message that decodes.
    let mut out = Vec::new();
    let snap = shared.snapshot.load();
    if pzdns::server::fast_path::answer(shared, &snap, data.len() % 2, src.ip(), data, &mut out, std::time::Instant::now()).is_some() {
        assert!(out.len() <= 1232, "within the UDP limit");
        assert_eq!(out[..2], data[..2], "the id is echoed");
        hickory_proto::op::Message::from_vec(&out).expect("fast-path response decodes");
    }
    if let Some(resp) = rt.block_on(pzdns::server::handler::answer_raw(shared, 0, data, src)) {
        assert!(resp.len() >= 12, "a response has a header");
        assert_eq!(resp[..2], data[..2], "the id is echoed");
        assert_ne!(resp[2] & 0x80, 0, "QR is set");
        hickory_proto::op::Message::from_vec(&resp).expect("our response decodes");
    }
});
