//! Dropping events a server replays: a bounded window of recent event ids.
//!
//! After a reconnect (or a restart from a checkpoint) a server may send
//! events again that were already delivered. An event whose id was *set* by
//! an earlier event within the window is such a replay. An event without an
//! `id:` field of its own carries the previous id (HTML §9.2.6), so it shares
//! the verdict of the event that set that id. This works for streams whose
//! events carry their own ids (Wikimedia's do); in streams without ids nothing
//! is ever dropped.

use std::collections::{HashSet, VecDeque};

/// The last `capacity` distinct ids, oldest first.
#[derive(Debug)]
pub struct ReplayWindow {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashSet<String>,
    previous: Option<(String, bool)>,
}

impl ReplayWindow {
    /// A window of `capacity` ids; 0 turns de-duplication off.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::with_capacity(capacity.min(65_536)),
            seen: HashSet::with_capacity(capacity.min(65_536)),
            previous: None,
        }
    }

    /// Whether the event with this id (the stream's last-event-ID at dispatch)
    /// is a replay to drop. Call once per event, in stream order.
    pub fn is_replay(&mut self, id: &str) -> bool {
        if self.capacity == 0 || id.is_empty() {
            self.previous = None;
            return false;
        }
        if let Some((previous_id, verdict)) = &self.previous
            && previous_id == id
        {
            return *verdict;
        }
        let replay = self.seen.contains(id);
        if !replay {
            if self.order.len() == self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                self.seen.remove(&oldest);
            }
            self.order.push_back(id.to_string());
            self.seen.insert(id.to_string());
        }
        self.previous = Some((id.to_string(), replay));
        replay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_id_is_dropped_once_seen() {
        let mut window = ReplayWindow::new(10);
        assert!(!window.is_replay("1"));
        assert!(!window.is_replay("2"));
        assert!(window.is_replay("1"));
        assert!(window.is_replay("2"));
        assert!(!window.is_replay("3"));
    }

    #[test]
    fn events_without_their_own_id_share_the_verdict_of_the_id_setter() {
        let mut window = ReplayWindow::new(10);
        assert!(!window.is_replay("a"));
        assert!(
            !window.is_replay("a"),
            "a second event carrying id `a` is new"
        );
        assert!(!window.is_replay("b"));
        assert!(window.is_replay("a"), "`a` again after `b` is a replay");
        assert!(window.is_replay("a"), "and so are the events carrying it");
    }

    #[test]
    fn the_window_forgets_the_oldest_id() {
        let mut window = ReplayWindow::new(2);
        for id in ["1", "2", "3"] {
            assert!(!window.is_replay(id));
        }
        assert!(!window.is_replay("1"), "1 fell out of a window of 2");
        assert!(window.is_replay("3"));
    }

    #[test]
    fn a_zero_window_or_an_empty_id_never_drops() {
        let mut off = ReplayWindow::new(0);
        assert!(!off.is_replay("1"));
        assert!(!off.is_replay("1"));
        let mut window = ReplayWindow::new(4);
        assert!(!window.is_replay(""));
        assert!(!window.is_replay(""));
    }
}
