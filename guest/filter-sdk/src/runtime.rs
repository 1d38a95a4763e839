//! The state behind [`crate::export_filter!`]: one filter per instance.
//!
//! A component instance is single-threaded, so a thread-local cell is the
//! whole of the synchronisation needed.

use std::cell::RefCell;

use crate::bindings::sse_ingest::pipeline::kinesis::put_records;
use crate::{Config, Context, Event, Filter, Output};

struct Running {
    filter: Box<dyn Filter>,
    output: Output,
}

thread_local! {
    static RUNNING: RefCell<Option<Running>> = const { RefCell::new(None) };
}

/// Builds the filter from its configuration and keeps it for `handle`.
pub fn init<F: Filter>(context: Context, config: Vec<(String, String)>) -> Result<(), String> {
    let filter = F::new(&context, &Config::new(config))?;
    RUNNING.with(|cell| {
        *cell.borrow_mut() = Some(Running {
            filter: Box::new(filter),
            output: Output::new(context),
        });
    });
    Ok(())
}

/// Runs the filter over one batch and hands its records to the host in one call. A batch
/// the filter fails on hands over nothing: what it pushed before failing is discarded
/// here, so it can never leak into the next batch, whatever the host does with the
/// instance.
pub fn handle(events: &[Event]) -> Result<(), String> {
    RUNNING.with(|cell| {
        let mut guard = cell.borrow_mut();
        let running = guard
            .as_mut()
            .ok_or_else(|| "filter called before init".to_string())?;
        let handled = running.filter.handle(events, &mut running.output);
        let records = running.output.take();
        handled?;
        if !records.is_empty() {
            put_records(&records);
        }
        Ok(())
    })
}
