//! Parser throughput, native (the workload is in `shared/workload.rs`; the same inside the
//! sandbox: `cargo bench -p sse-ingest --bench guest_parser`).
//!
//! Run: `cargo bench -p sse-parser --bench parse`

#[path = "shared/workload.rs"]
mod workload;

fn main() {
    workload::run(100);
}
