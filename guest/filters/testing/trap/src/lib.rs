//! For tests only (not a built-in): a filter that traps, to check that the host
//! survives a misbehaving component.
//!
//! `when=always` traps in every `handle` call, the first (probe) batch
//! included; `when=data` (the default) traps in a batch that has an event
//! whose data is exactly `trap`, and otherwise passes events through like
//! `passthrough`. The trap is a panic, which a guest build (`panic = "abort"`)
//! turns into a WebAssembly `unreachable`. `when=error` does not trap: in a batch
//! with an event whose data is exactly `fail` it first pushes every event of the
//! batch, then returns an error, so that a test can check that a failed batch's
//! records go nowhere.

use filter_sdk::{Config, Context, Event, Filter, Output};

/// Passes events through until told to trap.
#[derive(Debug)]
struct Trap {
    always: bool,
    error_after_push: bool,
}

impl Filter for Trap {
    fn new(_context: &Context, config: &Config) -> Result<Self, String> {
        config.reject_unknown(&["when"])?;
        let when = config
            .one_of("when", &["data", "always", "error"])
            .map_err(|e| format!("trap filter: {e}"))?;
        Ok(Self {
            always: when == "always",
            error_after_push: when == "error",
        })
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), String> {
        if self.error_after_push {
            for event in events {
                out.emit(event);
            }
            if events.iter().any(|event| event.data == "fail") {
                return Err("trap filter: failing after pushing, as configured".to_string());
            }
            return Ok(());
        }
        if self.always || events.iter().any(|event| event.data == "trap") {
            panic!("trap filter: trapping as configured");
        }
        for event in events {
            out.emit(event);
        }
        Ok(())
    }
}

filter_sdk::export_filter!(Trap);
