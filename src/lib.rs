//! pzdns: a DNS server for private zones bound to VPCs.
//!
//! Data flows one way, and so do the modules' dependencies: each module
//! uses only those before it in this order (docs/ARCHITECTURE.md keeps the
//! list; `tests/it/layers.rs` checks every `crate::` path against it):
//! ```text
//! dns ─► dnssec ─► metrics ─► abuse ─► config ─► snapshot ─► resolve ─► loader ─► dnstap
//!     ─► upstream ─► transfer ─► answer ─► record ─► state ─► health ─► server ─► reload ─► explain ─► admin ─► app ─► cli
//! ```
//! `dns` reads and writes the wire format, `abuse` makes and checks DNS cookies and limits response rates, `config` reads and checks
//! files, `snapshot` holds the indexes a query reads, `resolve` applies
//! the answering rules, `loader` builds a checked snapshot, `upstream`
//! forwards and caches, `answer` turns a query into response bytes,
//! `record` counts and logs what was answered, `state` is what the listeners share, `health` checks the health-checked addresses, `server` owns the sockets, `app`
//! runs start-up and shutdown, `cli` is the command line.
//! docs/ARCHITECTURE.md has the whole picture.

pub mod abuse;
pub mod admin;
pub mod answer;
pub mod app;
pub mod cli;
pub mod config;
pub mod dns;
pub mod dnssec;
pub mod dnstap;
pub mod explain;
pub mod health;
pub mod loader;
pub mod metrics;
pub mod record;
pub mod reload;
pub mod resolve;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod transfer;
pub mod upstream;
