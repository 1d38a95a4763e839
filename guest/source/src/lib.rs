//! The source component: owns one pipeline's SSE connection.
//!
//! It opens the stream through `wasi:http/outgoing-handler` (the host decides
//! which origin may be reached and with which timeouts), parses the body with
//! [`sse_parser`], drops event types the pipeline does not want, and hands
//! batches to the host. When the stream ends or fails it reconnects with
//! `Last-Event-ID`, following [`reconnect::Backoff`].

// Generated code: the canonical ABI glue is `unsafe` by nature.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        world: "source",
        path: "../../wit",
        generate_all,
    });
}

mod connection;
mod outcome;
mod reconnect;
mod request;
mod response;
mod stream;

use bindings::sse_ingest::pipeline::log::log;
use bindings::sse_ingest::pipeline::source_host::{
    ConnectionEvent, DisconnectCause, ReconnectInfo, SourceConfig, report,
};
use bindings::sse_ingest::pipeline::source_types::Finish;
use bindings::sse_ingest::pipeline::types::Level;
use connection::connect_and_stream;
use outcome::Outcome;
use reconnect::Backoff;
use sse_parser::{Parser, ParserConfig};

struct Source;

impl bindings::Guest for Source {
    fn run(config: SourceConfig) -> Result<Finish, String> {
        run(&config)
    }
}

#[allow(unsafe_code)]
mod export {
    use super::{Source, bindings};
    bindings::export!(Source with_types_in bindings);
}

/// Connects, streams and reconnects until the stream is done or fails for good.
fn run(config: &SourceConfig) -> Result<Finish, String> {
    let target = request::Target::parse(&config.url)?;
    let mut parser = Parser::new(ParserConfig {
        max_event_bytes: usize::try_from(config.max_event_bytes).unwrap_or(usize::MAX),
        max_id_bytes: usize::try_from(config.max_id_bytes).unwrap_or(usize::MAX),
    });
    if let Some(id) = &config.last_event_id {
        parser.set_last_event_id(id);
    }
    let stop = bindings::sse_ingest::pipeline::source_host::stop_requested();
    let mut backoff = Backoff::new(config);

    loop {
        let started = reconnect::now_ms();
        let outcome = connect_and_stream(config, &target, &mut parser, &stop);
        let cause = match outcome {
            Outcome::Stopped => return Ok(Finish::StopRequested),
            Outcome::NoContent => return Ok(Finish::NoContent),
            Outcome::Fatal(message) => return Err(message),
            Outcome::Retry {
                cause,
                retry_after_ms,
            } => {
                if !config.reconnect {
                    return match cause {
                        DisconnectCause::EndOfStream => Ok(Finish::EndOfStream),
                        other => Err(describe(&other)),
                    };
                }
                backoff.note_connection_lasted(reconnect::now_ms().saturating_sub(started));
                (cause, retry_after_ms)
            }
        };
        let (cause, retry_after_ms) = cause;
        let (attempt, delay_ms) =
            backoff.next_delay(parser.retry_ms(), retry_after_ms, reconnect::random());
        report(&ConnectionEvent::Reconnecting(ReconnectInfo {
            cause: cause.clone(),
            attempt,
            delay_ms,
        }));
        if reconnect::sleep_unless_stopped(delay_ms, &stop) {
            return Ok(Finish::StopRequested);
        }
    }
}

/// A one-line operator message for a cause that ends a `--once` run.
fn describe(cause: &DisconnectCause) -> String {
    match cause {
        DisconnectCause::EndOfStream => "the stream ended".to_string(),
        DisconnectCause::Network(reason) => format!("network error: {reason}"),
        DisconnectCause::HttpStatus(status) => format!("the server answered HTTP {status}"),
        DisconnectCause::ContentType(found) => {
            format!("the server answered with content type `{found}`, not text/event-stream")
        }
    }
}

/// Logs through the host.
fn say(level: Level, message: &str) {
    log(level, message);
}
