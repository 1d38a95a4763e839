//! For tests only (not a built-in): a filter that allocates memory without end,
//! to check that the host's memory limit stops it.
//!
//! `when=always` allocates in every `handle` call, the first (probe) batch
//! included; `when=data` (the default) allocates in a batch that has an event
//! whose data is exactly `memory-hog`, and otherwise passes events through like
//! `passthrough`. Every page allocated is written to, so the memory is really
//! used. When `memory.grow` is refused the allocator aborts, which is a trap.
//!
//! Two modes make the host allocate instead, each over an 8 MiB buffer the filter holds once:
//!
//! - `when=flood` calls `routing.send` without end, each call naming the buffer: the calls
//!   of one batch must be stopped by the output budget.
//! - `when=flood-return records=N` (default 15) returns N records that all name the buffer,
//!   so lifting the answer asks the host for N × 8 MiB: the hostcall fuel must stop it.

// Both modes pass aliased pointers, which no safe binding can do: it is the attack the host
// must withstand.
#![allow(unsafe_code)]

use std::hint::black_box;

use filter_sdk::{
    Config, ConfigError, Event, Filter, FilterError, Output, OwnRecord, Pipeline, WitOutput,
};

/// Bytes allocated per step: one WebAssembly page.
const STEP: usize = 64 * 1024;

/// Passes events through until told to hog memory.
#[derive(Debug)]
struct MemoryHog {
    always: bool,
    mode: Flood,
}

/// How the filter floods the host, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flood {
    None,
    Send,
    Return(usize),
}

/// The buffer the floods name.
const BUFFER: usize = 8 << 20;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "sse-ingest:filter/routing@0.2.0")]
unsafe extern "C" {
    /// `send: func(stream: string, record: own-record) -> result<_, route-error>` in the
    /// canonical ABI's flat form: the string, the record's fields, then a return area.
    #[link_name = "send"]
    fn raw_send(
        stream: *const u8,
        stream_len: usize,
        event: u32,
        data: *const u8,
        data_len: usize,
        key_tag: u32,
        key: *const u8,
        key_len: usize,
        ret: *mut u8,
    );
}

#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
unsafe fn raw_send(
    _stream: *const u8,
    _stream_len: usize,
    _event: u32,
    _data: *const u8,
    _data_len: usize,
    _key_tag: u32,
    _key: *const u8,
    _key_len: usize,
    _ret: *mut u8,
) {
}

/// Sends the buffer to a stream without end (the host must trap the call).
fn flood_by_send() -> ! {
    let buffer = vec![b'x'; BUFFER];
    let stream = b"side";
    let mut ret = [0u8; 16];
    loop {
        // SAFETY: every pointer outlives the call and the return area is large enough.
        unsafe {
            raw_send(
                stream.as_ptr(),
                stream.len(),
                0,
                buffer.as_ptr(),
                buffer.len(),
                0,
                std::ptr::null(),
                0,
                ret.as_mut_ptr(),
            );
        }
    }
}

/// `records` outputs that all name one buffer: the answer is `records` × 8 MiB to lift.
fn flood_by_return(records: usize) -> Vec<WitOutput> {
    let mut buffer = std::mem::ManuallyDrop::new(vec![b'x'; BUFFER]);
    let (pointer, length) = (buffer.as_mut_ptr(), buffer.len());
    (0..records)
        .map(|_| {
            // SAFETY: none, on purpose: the vectors alias one allocation. The host must stop
            // the lift before the guest frees them (after a trap the instance is discarded).
            let data = unsafe { Vec::from_raw_parts(pointer, length, length) };
            WitOutput::Record(OwnRecord {
                event: 0,
                data,
                partition_key: None,
            })
        })
        .collect()
}

impl Filter for MemoryHog {
    fn new(_pipeline: &Pipeline, config: &Config) -> Result<Self, ConfigError> {
        config.reject_unknown(&["when", "records"])?;
        let when = config.one_of("when", &["data", "always", "flood", "flood-return"])?;
        let records = config.integer("records")?.unwrap_or(15);
        Ok(Self {
            always: when == "always",
            mode: match when {
                "flood" => Flood::Send,
                "flood-return" => Flood::Return(usize::try_from(records).unwrap_or(15)),
                _ => Flood::None,
            },
        })
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), FilterError> {
        match self.mode {
            Flood::Send => flood_by_send(),
            Flood::Return(records) => {
                for output in flood_by_return(records) {
                    out.push(output);
                }
                return Ok(());
            }
            Flood::None => {}
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
        for index in 0..events.len() {
            out.keep(index);
        }
        Ok(())
    }
}

filter_sdk::export_filter!(MemoryHog);
