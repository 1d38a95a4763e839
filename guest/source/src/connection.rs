//! One connection attempt: request, response checks, then the body.

use crate::bindings::sse_ingest::pipeline::source_host::{
    ConnectionEvent, DisconnectCause, SourceConfig, report,
};
use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{ErrorCode, IncomingResponse};
use crate::bindings::wasi::io::poll::{Pollable, poll};
use crate::bindings::wasi::io::streams::StreamError;
use crate::outcome::{Outcome, describe};
use crate::request::{self, Target};
use crate::response::{self, Rules, Verdict};
use crate::stream;
use sse_parser::Parser;

/// How much of an error response's body goes into the message.
const BODY_START_BYTES: usize = 256;
/// How long to wait for that body before giving up on it.
const BODY_START_WAIT_NS: u64 = 2_000_000_000;

/// Connects once and streams until the connection ends.
pub fn connect_and_stream(
    config: &SourceConfig,
    target: &Target,
    parser: &mut Parser,
    stop: &Pollable,
) -> Outcome {
    let request = match request::build(config, target, parser.last_event_id()) {
        Ok(request) => request,
        Err(message) => return Outcome::Fatal(message),
    };
    let pending = match outgoing_handler::handle(request, None) {
        Ok(pending) => pending,
        Err(code) => return transport_failure(config, &code),
    };
    let response = loop {
        if let Some(result) = pending.get() {
            break result;
        }
        let ready = pending.subscribe();
        if poll(&[&ready, stop]).contains(&1) {
            return Outcome::Stopped;
        }
    };
    let response = match response {
        Ok(Ok(response)) => response,
        Ok(Err(code)) => return transport_failure(config, &code),
        Err(()) => return Outcome::Fatal("the HTTP response was taken twice".to_string()),
    };
    drop(pending);

    if let Some(outcome) = check_response(config, &response) {
        return outcome;
    }
    report(&ConnectionEvent::Connected);
    stream::pump(config, response, parser, stop)
}

/// Turns a transport error into an outcome: a denied request is a
/// configuration error, anything else is worth another try.
fn transport_failure(config: &SourceConfig, code: &ErrorCode) -> Outcome {
    if matches!(code, ErrorCode::HttpRequestDenied) {
        return Outcome::Fatal(format!(
            "the host refused the request to {}: only the pipeline's configured origin may be reached",
            config.url
        ));
    }
    Outcome::Retry {
        cause: DisconnectCause::Network(describe(code)),
        retry_after_ms: None,
    }
}

/// Checks status and content type ([`response::classify`]). `None` means "stream it".
fn check_response(config: &SourceConfig, response: &IncomingResponse) -> Option<Outcome> {
    let status = response.status();
    let content_type = header(response, "content-type");
    let rules = Rules {
        reconnect: config.reconnect,
        fatal_statuses: &config.fatal_statuses,
        fatal_content_type: config.fatal_content_type,
    };
    Some(
        match response::classify(status, content_type.as_deref(), rules) {
            Verdict::Stream => return None,
            Verdict::NoContent => Outcome::NoContent,
            Verdict::FatalStatus(status) => Outcome::Fatal(format!(
                "the server answered HTTP {status}{}",
                body_start(response)
            )),
            Verdict::FatalContentType(shown) => Outcome::Fatal(format!(
                "the server answered with content type `{shown}`, not text/event-stream{}",
                body_start(response)
            )),
            Verdict::RetryStatus {
                status,
                honour_retry_after,
            } => Outcome::Retry {
                cause: DisconnectCause::HttpStatus(status),
                retry_after_ms: header(response, "retry-after")
                    .filter(|_| honour_retry_after)
                    .and_then(|value| {
                        response::retry_after_ms(&value, std::time::SystemTime::now())
                    }),
            },
            Verdict::RetryContentType(shown) => Outcome::Retry {
                cause: DisconnectCause::ContentType(shown),
                retry_after_ms: None,
            },
        },
    )
}

/// The first value of a response header, as text.
fn header(response: &IncomingResponse, name: &str) -> Option<String> {
    let headers = response.headers();
    let values = headers.get(name);
    values
        .first()
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// `": <first bytes of the body>"` for an error message, or `""`.
fn body_start(response: &IncomingResponse) -> String {
    let Ok(body) = response.consume() else {
        return String::new();
    };
    let Ok(input) = body.stream() else {
        return String::new();
    };
    let deadline = monotonic_clock::now().saturating_add(BODY_START_WAIT_NS);
    let mut collected = Vec::new();
    while collected.len() < BODY_START_BYTES {
        match input.read((BODY_START_BYTES - collected.len()) as u64) {
            Ok(bytes) if bytes.is_empty() => {
                let now = monotonic_clock::now();
                if now >= deadline {
                    break;
                }
                let readable = input.subscribe();
                let timer = monotonic_clock::subscribe_instant(deadline);
                poll(&[&readable, &timer]);
            }
            Ok(bytes) => collected.extend_from_slice(&bytes),
            Err(StreamError::Closed | StreamError::LastOperationFailed(_)) => break,
        }
    }
    let text = String::from_utf8_lossy(&collected);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}
