//! For tests only (not a built-in): a filter that allocates memory without end,
//! to check that the host's memory limit stops it.
//!
//! `when=always` allocates in every `handle` call, the first (probe) batch
//! included; `when=data` (the default) allocates in a batch that has an event
//! whose data is exactly `memory-hog`, and otherwise passes events through like
//! `passthrough`. Every page allocated is written to, so the memory is really
//! used. When `memory.grow` is refused the allocator aborts, which is a trap.
//!
//! `when=flood` makes the host allocate instead: in every `handle` call it calls
//! `put-records` in a loop, each call naming one 8 MiB buffer `records` times (default 15),
//! so each call asks the host to copy `records` × 8 MiB while the filter itself holds 8 MiB.
//! The host must stop it: one call past the hostcall fuel, or the calls of one batch past
//! the output budget.

// The flood mode calls the raw import with aliased pointers, which no safe binding can do:
// it is the attack the host must withstand.
#![allow(unsafe_code)]

use std::hint::black_box;

use filter_sdk::{Config, Context, Event, Filter, Output};

/// Bytes allocated per step: one WebAssembly page.
const STEP: usize = 64 * 1024;

/// Passes events through until told to hog memory.
#[derive(Debug)]
struct MemoryHog {
    always: bool,
    /// Records per `put-records` call in `when=flood` mode.
    flood: Option<usize>,
}

/// `output-record` as the canonical ABI lays it out in memory on wasm32: `data` as pointer
/// and length, then the two `option<string>`s as a tag and, when the tag is 1, pointer and
/// length.
#[repr(C)]
struct RawRecord {
    data: *const u8,
    data_len: usize,
    key_tag: u8,
    key: *const u8,
    key_len: usize,
    stream_tag: u8,
    stream: *const u8,
    stream_len: usize,
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "sse-ingest:pipeline/kinesis@0.1.0")]
unsafe extern "C" {
    /// `put-records: func(records: list<output-record>)`, called with records that all
    /// point at one buffer (which the generated bindings cannot express).
    #[link_name = "put-records"]
    fn raw_put_records(records: *const RawRecord, len: usize);
}

#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_put_records(_records: *const RawRecord, _len: usize) {}

/// Calls `put-records` without end, each call naming one 8 MiB buffer `per_call` times.
fn flood(per_call: usize) -> ! {
    let buffer = vec![b'x'; 8 << 20];
    let records: Vec<RawRecord> = (0..per_call)
        .map(|_| RawRecord {
            data: buffer.as_ptr(),
            data_len: buffer.len(),
            key_tag: 0,
            key: std::ptr::null(),
            key_len: 0,
            stream_tag: 0,
            stream: std::ptr::null(),
            stream_len: 0,
        })
        .collect();
    loop {
        // SAFETY: `records` and `buffer` outlive the call and match the ABI's layout.
        unsafe { raw_put_records(records.as_ptr(), records.len()) };
    }
}

impl Filter for MemoryHog {
    fn new(_context: &Context, config: &Config) -> Result<Self, String> {
        config.reject_unknown(&["when", "records"])?;
        let when = config
            .one_of("when", &["data", "always", "flood"])
            .map_err(|e| format!("memory-hog filter: {e}"))?;
        Ok(Self {
            always: when == "always",
            flood: (when == "flood")
                .then(|| config.get("records").map_or(Ok(15), str::parse))
                .transpose()
                .map_err(|e| format!("memory-hog filter: `records`: {e}"))?,
        })
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), String> {
        if let Some(per_call) = self.flood {
            flood(per_call);
        }
        if self.always || events.iter().any(|event| event.data == "memory-hog") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut block = vec![0u8; STEP];
                // Touch every 4 KiB so no page stays untouched.
                for byte in block.iter_mut().step_by(4096) {
                    *byte = 1;
                }
                hoard.push(black_box(block));
                black_box(&hoard);
            }
        }
        for event in events {
            out.emit(event);
        }
        Ok(())
    }
}

filter_sdk::export_filter!(MemoryHog);
