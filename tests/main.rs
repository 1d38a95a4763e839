//! The integration tests: the real binary against real servers on 127.0.0.1 (an SSE server,
//! proxies, kinesalite, dynalite), one module a concern.
//!
//! One test binary, not one a file: the support code compiles once, and the suite links
//! once instead of ten times (a fresh build's disk and time).

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

#[path = "../lib/kinesis-producer/tests/support/mod.rs"]
#[allow(unused_imports)]
mod kinesis_support;

mod admin;
mod bad_input;
mod conformance_end_to_end;
mod container;
mod docs;
mod end_to_end;
mod files;
mod filters;
mod kinesis_aggregation;
mod kinesis_end_to_end;
mod kinesis_fleet;
mod large_events;
mod layering;
mod logging;
mod network;
mod polyglot;
mod recovery;
mod resilience;
mod sandbox;
mod scale_out;
mod secrets;
mod service;
