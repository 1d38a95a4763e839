//! Reading the body: parse as bytes arrive, deliver in batches.
//!
//! A batch goes to the host when it is full or when no more bytes are
//! immediately available, so latency stays low on a slow stream and host calls
//! stay few on a fast one. The stop pollable is checked after every chunk, so
//! a stream that never pauses still stops promptly.

use crate::bindings::sse_ingest::pipeline::source_host::{
    DisconnectCause, SourceConfig, deliver, oversized_event, oversized_id,
};
use crate::bindings::sse_ingest::pipeline::types::{Event, Level};
use crate::bindings::wasi::clocks::wall_clock;
use crate::bindings::wasi::http::types::{IncomingResponse, http_error_code};
use crate::bindings::wasi::io::poll::{Pollable, poll};
use crate::bindings::wasi::io::streams::StreamError;
use crate::outcome::{Outcome, describe};
use sse_parser::{Item, Parser};

/// Bytes asked for per read: large reads keep host calls and copies few.
const READ_CHUNK: u64 = 64 * 1024;

/// Events parsed but not yet delivered, and the id the host last heard of.
struct Batch<'a> {
    config: &'a SourceConfig,
    events: Vec<Event>,
    /// Data, id and type bytes of `events`: a batch is bounded by bytes as well as by
    /// count, so that large events never add up past the memory the components are given.
    bytes: u64,
    /// The id to resume from after the events queued so far: the last non-empty event id
    /// (an event whose id was too long to keep carries none; the parser's last event ID
    /// then stays the last one that fit, as this does).
    resume_id: String,
    delivered_id: String,
}

impl Batch<'_> {
    /// Queues an event unless the pipeline's `types` filter drops it. A batch that the
    /// event would take past `batch-max-bytes` is delivered first, so a batch is at most
    /// that many bytes, or one larger event alone.
    fn push(&mut self, event: sse_parser::Event, received_at_ms: u64) {
        if !self.config.types.is_empty() && !self.config.types.contains(&event.event_type) {
            return;
        }
        let size = (event.data.len() + event.id.len() + event.event_type.len()) as u64;
        if !self.events.is_empty() && self.bytes + size > self.config.batch_max_bytes {
            self.flush_queued();
        }
        self.bytes += size;
        if !event.id.is_empty() {
            self.resume_id.clone_from(&event.id);
        }
        self.events.push(Event {
            event_type: event.event_type,
            data: event.data,
            id: event.id,
            received_at_ms,
        });
        if self.events.len() >= self.config.batch_max_events as usize
            || self.bytes >= self.config.batch_max_bytes
        {
            self.flush_queued();
        }
    }

    /// Delivers what is queued, with the id to resume from after it.
    fn flush_queued(&mut self) {
        let resume_id = self.resume_id.clone();
        self.flush(&resume_id);
    }

    /// Delivers what is queued; with nothing queued, tells the host only when
    /// the last event id moved (so its checkpoint follows filtered-out events).
    fn flush(&mut self, last_event_id: &str) {
        if self.events.is_empty() && self.delivered_id == last_event_id {
            return;
        }
        deliver(&self.events, last_event_id);
        self.events.clear();
        self.bytes = 0;
        if self.delivered_id != last_event_id {
            self.delivered_id = last_event_id.to_string();
        }
        if self.resume_id != last_event_id {
            self.resume_id = last_event_id.to_string();
        }
    }
}

/// Streams the response body through the parser until it ends or the host says stop.
pub fn pump(
    config: &SourceConfig,
    response: IncomingResponse,
    parser: &mut Parser,
    stop: &Pollable,
) -> Outcome {
    let Ok(body) = response.consume() else {
        return network("the response body was already consumed");
    };
    let Ok(input) = body.stream() else {
        return network("the response body stream was already taken");
    };
    let readable = input.subscribe();
    let mut batch = Batch {
        config,
        events: Vec::with_capacity(config.batch_max_events as usize),
        bytes: 0,
        resume_id: parser.last_event_id().to_string(),
        delivered_id: parser.last_event_id().to_string(),
    };
    let outcome = loop {
        match input.read(READ_CHUNK) {
            Ok(bytes) if bytes.is_empty() => {
                batch.flush(parser.last_event_id());
                if poll(&[&readable, stop]).contains(&1) {
                    break Outcome::Stopped;
                }
            }
            Ok(bytes) => {
                let now = wall_clock_ms();
                parser.feed(&bytes, &mut |item| handle(&mut batch, item, now));
                if stop.ready() {
                    break Outcome::Stopped;
                }
            }
            Err(StreamError::Closed) => {
                break Outcome::Retry {
                    cause: DisconnectCause::EndOfStream,
                    retry_after_ms: None,
                };
            }
            Err(StreamError::LastOperationFailed(error)) => {
                // wasmtime-wasi-http hands body errors over as its own error type, which
                // `http-error-code` does not recognise; its text for `internal-error` (the
                // host client's sentence) starts with this prefix.
                let reason = match http_error_code(&error) {
                    Some(code) => describe(&code),
                    None => {
                        let text = error.to_debug_string();
                        match text.strip_prefix("internal error: ") {
                            Some(sentence) => sentence.to_string(),
                            None => text,
                        }
                    }
                };
                break network(&reason);
            }
        }
    };
    // End of stream or not, an event without its blank line is incomplete
    // (HTML §9.2.6: "discard" at end of file); `finish` drops it.
    let now = wall_clock_ms();
    parser.finish(&mut |item| handle(&mut batch, item, now));
    batch.flush(parser.last_event_id());
    outcome
}

fn handle(batch: &mut Batch<'_>, item: Item, received_at_ms: u64) {
    match item {
        Item::Event(event) => batch.push(event, received_at_ms),
        Item::OversizedId { id_bytes } => {
            crate::say(
                Level::Warn,
                &format!(
                    "an id of {id_bytes} bytes is longer than max-id-bytes ({}): its event is delivered without it, and a reconnect resumes from the last id that fit",
                    batch.config.max_id_bytes
                ),
            );
            oversized_id(id_bytes as u64);
        }
        Item::Oversized { discarded_bytes } => {
            crate::say(
                Level::Warn,
                &format!(
                    "dropped an event larger than max-event-bytes ({} bytes): {discarded_bytes} bytes discarded",
                    batch.config.max_event_bytes
                ),
            );
            oversized_event(discarded_bytes as u64);
        }
    }
}

fn network(reason: &str) -> Outcome {
    Outcome::Retry {
        cause: DisconnectCause::Network(reason.to_string()),
        retry_after_ms: None,
    }
}

fn wall_clock_ms() -> u64 {
    let now = wall_clock::now();
    now.seconds
        .saturating_mul(1000)
        .saturating_add(u64::from(now.nanoseconds / 1_000_000))
}
