//! An sse-ingest filter, against the contract `sse-ingest:filter@0.2.0` (`wit/filter/filter.wit`
//! documents every item of it). Build it with `./build.sh`; check it with `./test.sh`.

use filter_sdk::{Config, ConfigError, Event, Filter, FilterError, Output, Pipeline};

/// The filter's state, built once from its configuration.
struct MyFilter;

impl Filter for MyFilter {
    fn new(_pipeline: &Pipeline, config: &Config) -> Result<Self, ConfigError> {
        // List the `--filter-config` keys this filter reads: any other is refused, so a
        // typo is an error at start or swap time.
        config.reject_unknown(&[])?;
        Ok(MyFilter)
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), FilterError> {
        for (index, _event) in events.iter().enumerate() {
            // Decide here what to write for the event: keep it as it is (`out.keep(index)`:
            // the host writes it in the pipeline's format and keys it), write bytes of your
            // own (`out.record(index, bytes)`), or nothing, to filter it out.
            out.keep(index);
        }
        Ok(())
    }
}

filter_sdk::export_filter!(MyFilter);
