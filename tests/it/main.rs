//! Integration tests: one binary that talks to the real `pzdns` binary and
//! to the library, with real peers where a feature meets one.

mod support;

mod answer_writer;
mod check_cli;
mod conformance;
mod containment;
mod data_bounds;
mod floods;
mod forwarding;
mod fuzz_regressions;
mod interop;
mod isolation_props;
mod layers;
mod operations;
mod resolve_rules;
mod serve;
mod spec_rules;
mod tcp_limits;
mod upstream_faults;
