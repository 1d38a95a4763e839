//! The SSE parser's throughput inside the sandbox, compiled exactly as the source component
//! compiles it (`wasm32-wasip2`, the `guest` profile, WebAssembly SIMD). A WASI command that
//! runs the native bench's workload (`lib/sse-parser/benches/shared/workload.rs`).
//!
//! Run: `cargo bench -p sse-ingest --bench guest_parser` (which runs this in wasmtime with
//! the product's engine settings).

#[path = "../../../lib/sse-parser/benches/shared/workload.rs"]
mod workload;

fn main() {
    // Fewer large events than natively: the stream is built in the guest's memory.
    workload::run(50);
}
