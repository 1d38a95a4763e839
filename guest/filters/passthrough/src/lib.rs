//! The default filter: keeps every event it receives and writes it in the
//! pipeline's format (`raw` or `envelope`), with the pipeline's partition key.

use filter_sdk::{Config, ConfigError, Event, Filter, FilterError, Output, Pipeline};

/// Keeps everything.
struct Passthrough;

impl Filter for Passthrough {
    fn new(_pipeline: &Pipeline, config: &Config) -> Result<Self, ConfigError> {
        config.reject_unknown(&[])?;
        Ok(Passthrough)
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), FilterError> {
        for index in 0..events.len() {
            out.keep(index);
        }
        Ok(())
    }
}

filter_sdk::export_filter!(Passthrough);
