//! Integration tests: one binary that talks to the real `pzdns` binary and
//! to the library, with real peers where a feature meets one.

mod support;

mod alerts;
mod answer_writer;
mod check_cli;
mod check_problems;
mod client_abuse;
mod conformance;
mod containment;
mod corpus;
mod data_bounds;
mod data_fidelity;
mod dnstap;
mod ede_nsid;
mod floods;
mod forwarding;
mod fuzz_regressions;
mod identity;
mod incremental;
mod interop;
mod isolation_props;
mod layers;
mod limits;
mod master_files;
mod memory_bounds;
mod negative_ttl;
mod operations;
mod operator;
mod policy;
mod port_ownership;
mod query_log;
mod reader_replay;
mod readme;
mod record_types;
mod resolve_rules;
mod serve;
mod serve_stale;
mod spec_rules;
mod special_files;
mod tcp_limits;
mod toolbox;
mod upstream_faults;
mod upstream_health;
mod upstream_spoofing;
