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

use filter_sdk::{Config, ConfigError, Event, EventFailure, Filter, FilterError, Output, Pipeline};

/// Passes events through until told to trap.
#[derive(Debug)]
struct Trap {
    always: bool,
    error_after_push: bool,
    fail_events: bool,
}

impl Filter for Trap {
    fn new(_pipeline: &Pipeline, config: &Config) -> Result<Self, ConfigError> {
        config.reject_unknown(&["when"])?;
        let when = config.one_of("when", &["data", "always", "error", "event"])?;
        Ok(Self {
            always: when == "always",
            error_after_push: when == "error",
            fail_events: when == "event",
        })
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), FilterError> {
        if self.fail_events {
            for (index, event) in events.iter().enumerate() {
                if event.data == "fail" {
                    return Err(FilterError::Event(EventFailure {
                        event: index as u32,
                        reason: format!("trap filter: failing event {:?}, as configured", event.id),
                    }));
                }
                out.keep(index);
            }
            return Ok(());
        }
        if self.error_after_push {
            for index in 0..events.len() {
                out.keep(index);
            }
            if events.iter().any(|event| event.data == "fail") {
                return Err(FilterError::Batch(
                    "trap filter: failing after pushing, as configured".to_string(),
                ));
            }
            return Ok(());
        }
        if self.always || events.iter().any(|event| event.data == "trap") {
            panic!("trap filter: trapping as configured");
        }
        for index in 0..events.len() {
            out.keep(index);
        }
        Ok(())
    }
}

filter_sdk::export_filter!(Trap);
