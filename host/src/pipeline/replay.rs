//! Dropping events a server replays, and only those.
//!
//! A replay can only happen where the client asked to resume: after a reconnect (the
//! request carried `Last-Event-ID`) or after a restart from a checkpoint. So the window
//! drops nothing within one connection's steady flow, where ids may legitimately repeat
//! (`id:` only sets the id to resume from: a ring of offsets, a per-partition counter, a
//! timestamp in seconds are all valid SSE). After a reconnect it is in a *replay phase*:
//! an event whose id was delivered before is a replay and is dropped, and the first event
//! that is not one ends the phase.
//!
//! Ids are counted per *run*: an event without an `id:` field carries the previous id (HTML
//! §9.2.6), so consecutive events with the same id are one run and share a verdict. An id
//! that occurred in more than one run among the last `capacity` is ambiguous (the stream
//! reuses ids): it ends the replay phase instead of being dropped, so such streams may see
//! duplicates after a reconnect but never lose an event. Events without any id are never
//! dropped. See docs/architecture.md#replays.
//!
//! The window is bounded twice: by runs (`--dedupe-window`) and by bytes
//! ([`WINDOW_MAX_BYTES`]). Ids are at most 4 KiB, so the run bound alone would let a window
//! of a million long ids hold gigabytes; the byte bound forgets the oldest runs first, which
//! only shortens how far back a replay is recognised (a duplicate becomes possible, a loss
//! never).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Why an event was dropped, for the `duplicates_dropped_total{cause}` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCause {
    /// Replayed after a reconnect.
    Reconnect,
    /// Replayed after a restart from a checkpoint.
    Restart,
}

impl ReplayCause {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Reconnect => "reconnect",
            Self::Restart => "restart",
        }
    }
}

/// The most memory a window's ids may take, counted as [`run_cost`]: 16 MiB holds the
/// default 10,000 runs of ids up to about 1.6 KB each, and any window of short ids.
pub const WINDOW_MAX_BYTES: usize = 16 << 20;

/// What one remembered run costs: its id's bytes plus the queue slot, the map entry and the
/// shared allocation's counts (about 64 bytes on a 64-bit target), so that a window of
/// one-byte ids is bounded too.
fn run_cost(id: &str) -> usize {
    id.len() + 64
}

/// The last `capacity` runs of ids (no more than `max_bytes` of them), oldest first, and
/// whether a replay may be under way.
#[derive(Debug)]
pub struct ReplayWindow {
    capacity: usize,
    max_bytes: usize,
    /// What the runs in `order` cost, by [`run_cost`].
    bytes: usize,
    /// One allocation an id run, shared by `order`, `runs` and `previous`: this runs for
    /// every event.
    order: VecDeque<Arc<str>>,
    runs: HashMap<Arc<str>, u32>,
    previous: Option<(Arc<str>, bool)>,
    /// The connection the last event came on (the source counts them from 1).
    connection: u64,
    /// Set after a reconnect or a restart until the first event that is not a replay.
    replaying: Option<ReplayCause>,
}

impl ReplayWindow {
    /// A window of `capacity` id runs; 0 turns de-duplication off.
    pub fn new(capacity: usize) -> Self {
        Self::bounded(capacity, WINDOW_MAX_BYTES)
    }

    /// A window of at most `capacity` runs that together cost at most `max_bytes`.
    pub fn bounded(capacity: usize, max_bytes: usize) -> Self {
        Self {
            capacity,
            max_bytes,
            bytes: 0,
            // Grown as ids come, not reserved: a thousand quiet pipelines would otherwise
            // hold a megabyte each of empty window.
            order: VecDeque::new(),
            runs: HashMap::new(),
            previous: None,
            connection: 0,
            replaying: None,
        }
    }

    /// A window that starts after a restart from a checkpoint whose last delivered event had
    /// `id`: the server may send that event again, and it is then dropped.
    pub fn resuming_after(capacity: usize, id: &str) -> Self {
        let mut window = Self::new(capacity);
        if capacity > 0 && !id.is_empty() {
            window.remember(id);
            window.replaying = Some(ReplayCause::Restart);
        }
        window
    }

    /// Whether the event with this id (the stream's last-event-ID at dispatch), which
    /// arrived on `connection`, is a replay to drop, and why. Call once per event, in
    /// stream order.
    pub fn check(&mut self, connection: u64, id: &str) -> Option<ReplayCause> {
        if connection != self.connection {
            // The first connection of a restart keeps the checkpoint's replay phase.
            if self.connection != 0 {
                self.replaying = Some(ReplayCause::Reconnect);
            }
            self.connection = connection;
            self.previous = None;
        }
        if self.capacity == 0 || id.is_empty() {
            self.previous = None;
            self.replaying = None;
            return None;
        }
        if let Some((previous_id, dropped)) = &self.previous
            && **previous_id == *id
        {
            return if *dropped { self.replaying } else { None };
        }
        let replay = match self.replaying {
            Some(cause) if self.runs.get(id) == Some(&1) => Some(cause),
            _ => None,
        };
        let id = if replay.is_none() {
            self.replaying = None;
            self.remember(id)
        } else {
            Arc::from(id)
        };
        self.previous = Some((id, replay.is_some()));
        replay
    }

    /// Adds a run of `id` and returns the id as the window holds it.
    fn remember(&mut self, id: &str) -> Arc<str> {
        let cost = run_cost(id);
        while !self.order.is_empty()
            && (self.order.len() >= self.capacity || self.bytes + cost > self.max_bytes)
        {
            self.forget_oldest();
        }
        let id: Arc<str> = Arc::from(id);
        if cost <= self.max_bytes {
            self.bytes += cost;
            self.order.push_back(Arc::clone(&id));
            *self.runs.entry(Arc::clone(&id)).or_insert(0) += 1;
        }
        id
    }

    fn forget_oldest(&mut self) {
        let Some(oldest) = self.order.pop_front() else {
            return;
        };
        self.bytes -= run_cost(&oldest);
        if let Some(count) = self.runs.get_mut(&oldest) {
            *count -= 1;
            if *count == 0 {
                self.runs.remove(&oldest);
            }
        }
    }

    /// What the remembered runs cost, by [`run_cost`] (never above the byte bound).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `ids` on `connection` and returns which were dropped.
    fn feed(window: &mut ReplayWindow, connection: u64, ids: &[&str]) -> Vec<bool> {
        ids.iter()
            .map(|id| window.check(connection, id).is_some())
            .collect()
    }

    #[test]
    fn ids_repeating_within_one_connection_are_never_dropped() {
        let mut window = ReplayWindow::new(10);
        assert_eq!(
            feed(&mut window, 1, &["1", "2", "1", "2", "1"]),
            vec![false; 5]
        );
    }

    #[test]
    fn after_a_reconnect_what_was_delivered_is_dropped_until_something_new_arrives() {
        let mut window = ReplayWindow::new(10);
        feed(&mut window, 1, &["1", "2", "3"]);
        assert_eq!(
            feed(&mut window, 2, &["2", "3", "4", "2"]),
            vec![true, true, false, false],
            "the replay phase ends at 4; a later 2 is data"
        );
        assert_eq!(window.check(3, "4"), Some(ReplayCause::Reconnect));
    }

    #[test]
    fn events_carrying_a_dropped_id_share_its_verdict() {
        let mut window = ReplayWindow::new(10);
        feed(&mut window, 1, &["a", "a", "b"]);
        assert_eq!(
            feed(&mut window, 2, &["a", "a", "b", "c", "c"]),
            vec![true, true, true, false, false]
        );
    }

    #[test]
    fn an_id_seen_in_two_runs_is_ambiguous_and_ends_the_replay_phase() {
        let mut window = ReplayWindow::new(10);
        feed(&mut window, 1, &["1", "2", "1", "3"]);
        assert_eq!(
            feed(&mut window, 2, &["1", "3"]),
            vec![false, false],
            "a duplicate is possible, a loss is not"
        );
    }

    #[test]
    fn after_a_restart_the_checkpointed_event_is_dropped_and_nothing_else() {
        let mut window = ReplayWindow::resuming_after(10, "41");
        assert_eq!(window.check(1, "41"), Some(ReplayCause::Restart));
        assert_eq!(feed(&mut window, 1, &["42", "41"]), vec![false, false]);
    }

    #[test]
    fn the_window_forgets_the_oldest_run() {
        let mut window = ReplayWindow::new(2);
        feed(&mut window, 1, &["1", "2", "3"]);
        assert_eq!(feed(&mut window, 2, &["1"]), vec![false], "1 fell out");
        assert_eq!(feed(&mut window, 3, &["3"]), vec![true]);
    }

    #[test]
    fn the_window_is_bounded_in_bytes_as_well_as_in_runs() {
        let long = |n: u32| format!("{n:0>4000}");
        let mut window = ReplayWindow::bounded(1_000, 3 * run_cost(&long(0)));
        for n in 0..100 {
            window.check(1, &long(n));
            assert!(window.bytes() <= 3 * run_cost(&long(0)));
        }
        assert_eq!(
            window.bytes(),
            3 * run_cost(&long(0)),
            "the last three are kept"
        );
        assert_eq!(window.check(2, &long(99)), Some(ReplayCause::Reconnect));
        assert_eq!(
            window.check(3, &long(96)),
            None,
            "96 fell out: data, not a replay"
        );
    }

    #[test]
    fn the_default_byte_bound_holds_ten_thousand_of_the_longest_ids() {
        let mut window = ReplayWindow::new(10_000);
        for n in 0..10_000u32 {
            window.check(1, &format!("{n:0>4096}"));
        }
        assert!(window.bytes() <= WINDOW_MAX_BYTES);
        assert!(window.bytes() > WINDOW_MAX_BYTES - run_cost(&"x".repeat(4096)));
    }

    #[test]
    fn a_zero_window_or_an_empty_id_never_drops() {
        let mut off = ReplayWindow::new(0);
        assert_eq!(feed(&mut off, 1, &["1"]), vec![false]);
        assert_eq!(feed(&mut off, 2, &["1"]), vec![false]);
        let mut window = ReplayWindow::new(4);
        feed(&mut window, 1, &["", "x"]);
        assert_eq!(feed(&mut window, 2, &["", "x"]), vec![false, false]);
    }
}
