//! Counting events a filter drops on purpose, so that drops are visible without a log line
//! per event.

use crate::{Level, log};

/// Counts the events a filter drops for one reason and logs one warning per batch that
/// dropped any, with the running total.
#[derive(Debug, Clone)]
pub struct DropCounter {
    filter: &'static str,
    why: &'static str,
    total: u64,
}

impl DropCounter {
    /// `why` completes "dropped N event(s) of this batch …", e.g. "whose data is not JSON".
    pub const fn new(filter: &'static str, why: &'static str) -> Self {
        Self {
            filter,
            why,
            total: 0,
        }
    }

    /// Adds a finished batch's drops and, if there were any, logs the warning.
    pub fn batch_done(&mut self, dropped: u64) {
        if let Some(warning) = self.count(dropped) {
            log(Level::Warn, &warning);
        }
    }

    /// Adds a finished batch's drops; returns the warning for it if there were any (the
    /// total includes this batch).
    pub fn count(&mut self, dropped: u64) -> Option<String> {
        if dropped == 0 {
            return None;
        }
        self.total += dropped;
        Some(format!(
            "{}: dropped {dropped} event(s) of this batch {} ({} since start)",
            self.filter, self.why, self.total
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::DropCounter;

    #[test]
    fn each_batch_with_drops_gets_one_warning_with_the_running_total() {
        let mut drops = DropCounter::new("json-match", "whose data is not JSON");
        assert_eq!(
            drops.count(3).as_deref(),
            Some(
                "json-match: dropped 3 event(s) of this batch whose data is not JSON (3 since start)"
            )
        );
        assert_eq!(drops.count(0), None);
        assert_eq!(
            drops.count(9).as_deref(),
            Some(
                "json-match: dropped 9 event(s) of this batch whose data is not JSON (12 since start)"
            )
        );
    }
}
