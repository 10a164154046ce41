//! The state the whole-answer-path targets (`request`, `ecs`) answer from:
//! the rules fixture, no upstreams, 127.0.0.53 a trusted forwarder whose
//! PROXY v2 and ECS claims are believed. Included by each with `#[path]`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use pzdns::config::ServerConfig;
use pzdns::metrics::Metrics;
use pzdns::state::Shared;

pub fn state() -> &'static (tokio::runtime::Runtime, Arc<Shared>) {
    static S: OnceLock<(tokio::runtime::Runtime, Arc<Shared>)> = OnceLock::new();
    S.get_or_init(|| {
        let mut cfg = ServerConfig::defaults();
        cfg.zones_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rules/zones");
        cfg.upstreams = Vec::new();
        cfg.trusted_forwarders = vec!["127.0.0.53/32".parse().unwrap()];
        cfg.client_subnet = pzdns::config::ClientSubnet::Trusted;
        let snap = pzdns::loader::load(&cfg, 1).expect("fixture loads");
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        (rt, Shared::new(cfg, snap, Arc::new(Metrics::new())))
    })
}
