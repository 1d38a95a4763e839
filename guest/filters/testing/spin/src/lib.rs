//! For tests only (not a built-in): a filter that never returns, to check that
//! the host interrupts a component stuck in a loop.
//!
//! `when=always` spins in every `handle` call, the first (probe) batch
//! included; `when=data` (the default) spins in a batch that has an event
//! whose data is exactly `spin`, and otherwise passes events through like
//! `passthrough`.

use std::hint::black_box;

use filter_sdk::{Config, ConfigError, Event, Filter, FilterError, Output, Pipeline};

/// Passes events through until told to spin.
#[derive(Debug)]
struct Spin {
    always: bool,
}

impl Filter for Spin {
    fn new(_pipeline: &Pipeline, config: &Config) -> Result<Self, ConfigError> {
        config.reject_unknown(&["when"])?;
        let when = config.one_of("when", &["data", "always"])?;
        Ok(Self {
            always: when == "always",
        })
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), FilterError> {
        if self.always || events.iter().any(|event| event.data == "spin") {
            // `black_box` keeps the optimiser from proving anything about the
            // counter, so the loop stays a real busy loop.
            let mut turns = 0u64;
            loop {
                turns = black_box(turns.wrapping_add(1));
            }
        }
        for index in 0..events.len() {
            out.keep(index);
        }
        Ok(())
    }
}

filter_sdk::export_filter!(Spin);
