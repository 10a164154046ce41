//! pzdns: a DNS server for private zones bound to VPCs.
//!
//! Data flows one way:
//! ```text
//! files ─► config (strict serde mirror, every problem with path:line:col)
//!       ─► snapshot (immutable indexes: CIDR→VPC, apex→zone per VPC, nodes)
//!       ─► resolve (SPEC.md §3 as a pure function) ◄─ query
//!       ─► response
//! ```
//! `config` reads and checks files, `snapshot` builds what a query reads,
//! `resolve` answers, `explain` puts an answer into words, `server` puts
//! it on the wire with hickory-server, `cli` is the command line.

pub mod admin;
pub mod cli;
pub mod config;
pub mod explain;
pub mod metrics;
pub mod reload;
pub mod resolve;
pub mod server;
pub mod snapshot;
pub mod upstream;
pub mod wire;
