//! The producer's throughput and CPU cost per record, with mimalloc as the global allocator
//! (it keeps freed memory for reuse across threads, where glibc's malloc maps and faults in
//! the large request buffers again and again). See `common/mod.rs`.

mod common;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    common::main("mimalloc");
}
