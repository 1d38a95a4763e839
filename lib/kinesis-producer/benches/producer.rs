//! The producer's throughput and CPU cost per record, with the system allocator. See
//! `common/mod.rs`.

mod common;

fn main() {
    common::main("system");
}
