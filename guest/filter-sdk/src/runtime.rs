//! The state behind [`crate::export_filter!`]: one filter per instance.
//!
//! A component instance is single-threaded, so a thread-local cell is the
//! whole of the synchronisation needed.

use std::cell::RefCell;

use crate::bindings::sse_ingest::filter::types::ConfigEntry;
use crate::{Config, ConfigError, Event, Filter, FilterError, Output, Pipeline, WitOutput};

thread_local! {
    static RUNNING: RefCell<Option<Box<dyn Filter>>> = const { RefCell::new(None) };
}

/// Builds the filter from its configuration and keeps it for `handle`.
pub fn configure<F: Filter>(
    pipeline: Pipeline,
    config: Vec<ConfigEntry>,
) -> Result<(), ConfigError> {
    let filter = F::new(&pipeline, &Config::new(config))?;
    RUNNING.with(|cell| *cell.borrow_mut() = Some(Box::new(filter)));
    Ok(())
}

/// Runs the filter over one batch and returns its outputs. A batch the filter fails on
/// returns none of them, so nothing of it reaches the host.
pub fn handle(events: &[Event]) -> Result<Vec<WitOutput>, FilterError> {
    RUNNING.with(|cell| {
        let mut guard = cell.borrow_mut();
        let filter = guard
            .as_mut()
            .ok_or_else(|| FilterError::Batch("filter called before configure".to_string()))?;
        let mut out = Output::default();
        filter.handle(events, &mut out)?;
        Ok(out.take())
    })
}
