//! When to reconnect: exponential backoff with jitter, shaped by the server.
//!
//! Defaults live in the host's configuration; the rules applied here are:
//! - the base delay is the server's `retry:` value when it sent one (HTML
//!   §9.2.6), else the configured initial delay, never below the floor (a
//!   server's `retry: 0` must not become a tight loop);
//! - each failed attempt doubles it, up to the cap, and "equal jitter" picks a
//!   delay between half and all of it so that many clients do not reconnect in
//!   lockstep;
//! - `Retry-After` on 429/503 is a lower bound;
//! - a connection that stayed up for `reset-after-ms` resets the attempt count.

use crate::bindings::sse_ingest::pipeline::source_host::SourceConfig;
use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::io::poll::{Pollable, poll};

/// A `Retry-After` longer than this is treated as this (one hour).
const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

/// Reconnect state of one pipeline.
#[derive(Debug)]
pub struct Backoff {
    initial_ms: u64,
    min_ms: u64,
    max_ms: u64,
    reset_after_ms: u64,
    attempt: u32,
}

impl Backoff {
    /// Takes the policy from the pipeline's configuration.
    pub fn new(config: &SourceConfig) -> Self {
        Self {
            initial_ms: config.initial_delay_ms,
            min_ms: config.min_delay_ms,
            max_ms: config.max_delay_ms.max(config.min_delay_ms),
            reset_after_ms: config.reset_after_ms,
            attempt: 0,
        }
    }

    /// A connection that lasted long enough counts as healthy: start over.
    pub fn note_connection_lasted(&mut self, lasted_ms: u64) {
        if lasted_ms >= self.reset_after_ms {
            self.attempt = 0;
        }
    }

    /// The next attempt's number and the delay before it; `random` picks the jitter (the
    /// caller passes `wasi:random`, tests pass what they like).
    pub fn next_delay(
        &mut self,
        server_retry_ms: Option<u64>,
        retry_after_ms: Option<u64>,
        random: u64,
    ) -> (u32, u64) {
        self.attempt = self.attempt.saturating_add(1);
        let base = server_retry_ms.unwrap_or(self.initial_ms).max(self.min_ms);
        let doublings = (self.attempt - 1).min(20);
        let ceiling = base
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms)
            .max(self.min_ms);
        let half = ceiling / 2;
        let jitter = if half == 0 { 0 } else { random % (half + 1) };
        let mut delay = (ceiling - half + jitter).max(self.min_ms);
        if let Some(after) = retry_after_ms {
            delay = delay.max(after.min(MAX_RETRY_AFTER_MS));
        }
        (self.attempt, delay)
    }
}

/// A random number for the jitter.
pub fn random() -> u64 {
    crate::bindings::wasi::random::random::get_random_u64()
}

/// Monotonic milliseconds, for measuring how long a connection lasted.
pub fn now_ms() -> u64 {
    monotonic_clock::now() / 1_000_000
}

/// Waits `delay_ms`; returns `true` if the host asked to stop meanwhile.
pub fn sleep_unless_stopped(delay_ms: u64, stop: &Pollable) -> bool {
    let timer = monotonic_clock::subscribe_duration(delay_ms.saturating_mul(1_000_000));
    let ready = poll(&[&timer, stop]);
    ready.contains(&1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(initial_ms: u64, min_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            initial_ms,
            min_ms,
            max_ms,
            reset_after_ms: 30_000,
            attempt: 0,
        }
    }

    /// The delays of `n` attempts with the largest jitter.
    fn ceilings(b: &mut Backoff, n: usize, server_retry_ms: Option<u64>) -> Vec<u64> {
        (0..n)
            .map(|_| b.next_delay(server_retry_ms, None, u64::MAX - 1).1)
            .collect()
    }

    #[test]
    fn each_failed_attempt_doubles_the_delay_up_to_the_cap() {
        let mut b = backoff(1_000, 100, 30_000);
        let delays: Vec<u64> = ceilings(&mut b, 7, None);
        for (delay, ceiling) in delays
            .iter()
            .zip([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000])
        {
            assert!((ceiling / 2..=ceiling).contains(delay), "{delays:?}");
        }
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_ceiling() {
        let mut low = backoff(1_000, 100, 30_000);
        let mut high = backoff(1_000, 100, 30_000);
        assert_eq!(low.next_delay(None, None, 0), (1, 500));
        assert_eq!(high.next_delay(None, None, 500), (1, 1_000));
    }

    #[test]
    fn a_servers_retry_zero_never_goes_below_the_floor() {
        let mut b = backoff(1_000, 100, 30_000);
        let (_, delay) = b.next_delay(Some(0), None, 0);
        assert_eq!(delay, 100);
    }

    #[test]
    fn retry_after_is_a_lower_bound_capped_at_an_hour() {
        let mut b = backoff(1_000, 100, 30_000);
        assert_eq!(b.next_delay(None, Some(120_000), 0).1, 120_000);
        assert_eq!(b.next_delay(None, Some(u64::MAX), 0).1, MAX_RETRY_AFTER_MS);
    }

    #[test]
    fn a_healthy_connection_resets_the_attempts() {
        let mut b = backoff(1_000, 100, 30_000);
        ceilings(&mut b, 5, None);
        b.note_connection_lasted(29_999);
        assert_eq!(b.next_delay(None, None, 0).0, 6);
        b.note_connection_lasted(30_000);
        assert_eq!(b.next_delay(None, None, 0), (1, 500));
    }
}
