//! The one-line live summary `run` keeps at the bottom of an interactive terminal:
//! pipelines, connections, events and their rate, records written, dead letters.
//!
//! Log lines go to the same stderr, so the log writer ([`Stderr`]) clears the summary before
//! a log line and draws it again after: the summary always stays last and whole. Off when
//! stderr is not a terminal, and with `run --quiet`.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::Duration;

use crate::admin::Pipelines;

/// The summary now, when it is on.
static LINE: Mutex<Option<String>> = Mutex::new(None);

/// ANSI: back to the start of the line and clear it.
const CLEAR: &str = "\r\x1b[2K";

/// Whether the live line should be shown: an interactive stderr and no `--quiet`.
pub fn wanted(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// Redraws the summary every second from the pipelines' metrics, until the task is aborted
/// (then call [`clear`]).
pub fn spawn(pipelines: Pipelines) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            let all = pipelines.metrics();
            let events: u64 = all.iter().map(|(_, m)| m.events_received.get()).sum();
            let written: u64 = all.iter().map(|(_, m)| m.records_written.get()).sum();
            let dead: u64 = all.iter().map(|(_, m)| m.dead_letters.get()).sum();
            let connected = all.iter().filter(|(_, m)| m.connected.get() == 1).count();
            // The service samples each pipeline's rate every second.
            let rate: f64 = all
                .iter()
                .filter_map(|(_, m)| m.events_per_second.lock().ok().map(|rate| *rate))
                .sum();
            show(summary(all.len(), connected, events, rate, written, dead));
        }
    })
}

/// The summary's text.
fn summary(
    pipelines: usize,
    connected: usize,
    events: u64,
    rate: f64,
    written: u64,
    dead: u64,
) -> String {
    let plural = if pipelines == 1 { "" } else { "s" };
    format!(
        "sse-ingest: {pipelines} pipeline{plural}, {connected} connected · {events} events \
         ({rate:.0}/s) · {written} written · {dead} dead letters"
    )
}

/// A log line as written under a live summary: the summary cleared, the log line, the
/// summary drawn again.
fn framed(log: &[u8], line: Option<&str>) -> Vec<u8> {
    match line {
        Some(line) => [CLEAR.as_bytes(), log, line.as_bytes()].concat(),
        None => log.to_vec(),
    }
}

fn show(line: String) {
    let mut stderr = std::io::stderr().lock();
    if let Ok(mut current) = LINE.lock() {
        let _ = write!(stderr, "{CLEAR}{line}");
        let _ = stderr.flush();
        *current = Some(line);
    }
}

/// Removes the summary for good (at exit).
pub fn clear() {
    // Stderr first, then the line: the order every writer here takes them in.
    let mut stderr = std::io::stderr().lock();
    if let Ok(mut current) = LINE.lock()
        && current.take().is_some()
    {
        let _ = write!(stderr, "{CLEAR}");
    }
}

/// Stderr for log lines: clears the summary first and draws it again after.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut stderr = std::io::stderr().lock();
        let line = LINE.lock().ok().and_then(|line| line.clone());
        stderr.write_all(&framed(buf, line.as_deref()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_clears_the_summary_and_draws_it_again_after() {
        let out = framed(b"INFO connected\n", Some("sse-ingest: 1 pipeline"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\r\x1b[2KINFO connected\nsse-ingest: 1 pipeline"
        );
        assert_eq!(framed(b"INFO x\n", None), b"INFO x\n");
    }

    #[test]
    fn the_summary_counts_pipelines_connections_events_and_rate() {
        assert_eq!(
            summary(3, 2, 1200, 41.6, 1190, 1),
            "sse-ingest: 3 pipelines, 2 connected · 1200 events (42/s) · 1190 written · 1 dead letters"
        );
        assert!(summary(1, 1, 0, 0.0, 0, 0).starts_with("sse-ingest: 1 pipeline, "));
    }
}
