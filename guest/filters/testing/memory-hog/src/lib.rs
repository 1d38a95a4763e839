//! For tests only (not a built-in): a filter that allocates memory without end,
//! to check that the host's memory limit stops it.
//!
//! `when=always` allocates in every `handle` call, the first (probe) batch
//! included; `when=data` (the default) allocates in a batch that has an event
//! whose data is exactly `memory-hog`, and otherwise passes events through like
//! `passthrough`. Every page allocated is written to, so the memory is really
//! used. When `memory.grow` is refused the allocator aborts, which is a trap.

use std::hint::black_box;

use filter_sdk::{Config, Context, Event, Filter, Output};

/// Bytes allocated per step: one WebAssembly page.
const STEP: usize = 64 * 1024;

/// Passes events through until told to hog memory.
#[derive(Debug)]
struct MemoryHog {
    always: bool,
}

impl Filter for MemoryHog {
    fn new(_context: &Context, config: &Config) -> Result<Self, String> {
        config.reject_unknown(&["when"])?;
        let when = config
            .one_of("when", &["data", "always"])
            .map_err(|e| format!("memory-hog filter: {e}"))?;
        Ok(Self {
            always: when == "always",
        })
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), String> {
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
