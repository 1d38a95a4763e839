//! The default filter: keeps every event it receives and writes it in the
//! pipeline's format (`raw` or `envelope`), with the pipeline's partition key.

use filter_sdk::{Config, Context, Event, Filter, Output};

/// Keeps everything.
struct Passthrough;

impl Filter for Passthrough {
    fn new(_context: &Context, config: &Config) -> Result<Self, String> {
        config.reject_unknown(&[])?;
        Ok(Passthrough)
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), String> {
        for event in events {
            out.emit(event);
        }
        Ok(())
    }
}

filter_sdk::export_filter!(Passthrough);
