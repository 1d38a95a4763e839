//! How a connection attempt ends, and a transport error in words: what the connection
//! (request and response checks) and the stream (the body) both report, kept apart from
//! both so that neither imports the other's.

use crate::bindings::sse_ingest::pipeline::source_host::DisconnectCause;
use crate::bindings::wasi::http::types::ErrorCode;

/// How a connection attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// The host asked the source to stop.
    Stopped,
    /// HTTP 204: the server says to stop reconnecting.
    NoContent,
    /// Reconnecting cannot help; the message is for an operator.
    Fatal(String),
    /// Try again later.
    Retry {
        cause: DisconnectCause,
        retry_after_ms: Option<u64>,
    },
}

/// A transport error in words. The host's client puts a sentence naming `host:port` and
/// the cause into `internal-error`; other codes (from another host) are named by variant.
pub fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::InternalError(Some(sentence)) => sentence.clone(),
        ErrorCode::DnsError(_) => "the host name could not be resolved".to_string(),
        ErrorCode::ConnectionRefused => "the connection was refused".to_string(),
        ErrorCode::ConnectionTerminated | ErrorCode::ConnectionReadTimeout => {
            "the connection ended or went silent".to_string()
        }
        ErrorCode::ConnectionTimeout => "connecting timed out".to_string(),
        ErrorCode::TlsCertificateError => "the server's TLS certificate was refused".to_string(),
        other => format!("{other:?}"),
    }
}
