//! Numbered event streams: event `n` has id `n` and data `{"n":n}`, so a test can tell
//! from the records alone what was lost, repeated or reordered, and a server can resume
//! after a `Last-Event-ID`.

use std::time::Duration;

use super::sse_server::{Request, Step};

/// Event `n` as an SSE frame.
pub fn frame(n: u64) -> String {
    format!("id: {n}\ndata: {{\"n\":{n}}}\n\n")
}

/// Events `0..count`, one chunk each, `pause` apart: a stream that lasts.
pub fn paced_frames(count: u64, pause: Duration) -> Vec<Step> {
    (0..count)
        .flat_map(|n| [Step::Bytes(frame(n).into_bytes()), Step::Pause(pause)])
        .collect()
}

/// Where a resumed stream starts: after the `Last-Event-ID`, if any.
pub fn resume_point(request: &Request) -> u64 {
    request
        .header("last-event-id")
        .and_then(|id| id.parse::<u64>().ok())
        .map_or(0, |n| n + 1)
}

/// The `n` of each record line (a torn or foreign line fails the test).
pub fn numbers(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("torn or corrupt record {line:?}: {e}"));
            value["n"].as_u64().unwrap()
        })
        .collect()
}
