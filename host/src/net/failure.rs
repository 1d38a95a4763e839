//! Transport failures described for an operator: one sentence naming `host:port` and the
//! cause, and a stable class for metrics.
//!
//! The guest sees each failure as the error code `internal-error(sentence)` (wasi:http has
//! no variant that carries a certificate problem or a proxy's answer), so the sentence
//! reaches the reconnect log line and the exit message unchanged. The class stays on the
//! host, in the pipeline's [`FailureSlot`], for the `cause` label.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::{AlertDescription, CertificateError};
use wasmtime_wasi_http::Error as HttpError;

/// A stable class of failure: the `cause` label of `sse_ingest_reconnects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The host name did not resolve.
    Dns,
    /// No TCP connection (refused, unreachable).
    Connect,
    /// The TLS handshake failed (certificate, protocol, alert).
    Tls,
    /// Connecting, the response head or the next byte took too long.
    Timeout,
    /// An open connection was reset or closed mid-response.
    Reset,
    /// The proxy refused or broke the tunnel.
    Proxy,
    /// Too many redirects, or one without a usable `Location`.
    Redirect,
    /// The request (or a redirect) targets an origin the pipeline may not reach.
    Denied,
    /// The server broke HTTP.
    Protocol,
}

impl FailureClass {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Proxy => "proxy",
            Self::Redirect => "redirect",
            Self::Denied => "denied",
            Self::Protocol => "protocol",
        }
    }
}

/// One failed request or response, described for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{sentence}")]
pub struct Failure {
    /// For metrics.
    pub class: FailureClass,
    /// For logs and exit messages: names `host:port` and the cause.
    pub sentence: String,
}

impl Failure {
    /// A failure of `class` with this sentence.
    pub fn new(class: FailureClass, sentence: impl Into<String>) -> Self {
        Self {
            class,
            sentence: sentence.into(),
        }
    }

    /// The name lookup of `host` failed.
    pub fn dns(host: &str, error: &io::Error) -> Self {
        Self::new(
            FailureClass::Dns,
            format!("cannot resolve the host name `{host}`: {error}"),
        )
    }

    /// A TCP connection to `address` (`host:port`) failed.
    pub fn connect(address: &str, error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => Self::new(
                FailureClass::Connect,
                format!("{address} refused the connection"),
            ),
            io::ErrorKind::TimedOut => Self::new(
                FailureClass::Timeout,
                format!("connecting to {address} timed out"),
            ),
            _ => Self::reset_or(FailureClass::Connect, address, "cannot connect to", error),
        }
    }

    /// `what` (connecting, the response head, ...) to `address` took longer than `limit`.
    pub fn timeout(address: &str, what: &str, limit: Duration) -> Self {
        Self::new(
            FailureClass::Timeout,
            format!("{what} {address} timed out after {}", seconds(limit)),
        )
    }

    /// An I/O error on an open connection to `address`: a TLS verdict that came after the
    /// handshake (TLS 1.3 servers refuse a client certificate then), a reset, or other.
    pub fn io(address: &str, error: &io::Error) -> Self {
        if let Some(tls_error) = rustls_error(error) {
            let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
            return Self::new(
                FailureClass::Tls,
                format!(
                    "TLS with {address} failed: {}",
                    describe_tls(host, tls_error)
                ),
            );
        }
        Self::reset_or(FailureClass::Reset, address, "the connection to", error)
    }

    fn reset_or(class: FailureClass, address: &str, prefix: &str, error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Self::new(
                FailureClass::Reset,
                format!("the connection to {address} was reset"),
            ),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => Self::new(
                FailureClass::Reset,
                format!("{address} closed the connection"),
            ),
            _ if prefix == "the connection to" => {
                Self::new(class, format!("{prefix} {address} failed: {error}"))
            }
            _ => Self::new(class, format!("{prefix} {address}: {error}")),
        }
    }

    /// The TLS handshake with `address` failed; `host` is the name the certificate must carry.
    pub fn tls(address: &str, host: &str, error: &io::Error) -> Self {
        let Some(rustls_error) = rustls_error(error) else {
            // Not a TLS verdict: the peer went away or stalled during the handshake.
            let failure = Self::io(address, error);
            return Self::new(
                failure.class,
                format!("TLS handshake with {address} failed: {}", failure.sentence),
            );
        };
        let cause = describe_tls(host, rustls_error);
        Self::new(
            FailureClass::Tls,
            format!("TLS handshake with {address} failed: {cause}"),
        )
    }

    /// A hyper error while sending the request to, or reading the response of, `address`.
    pub fn http(address: &str, error: &hyper::Error) -> Self {
        let io_error =
            std::error::Error::source(error).and_then(|source| source.downcast_ref::<io::Error>());
        if io_error.is_none() && (error.is_incomplete_message() || error.is_closed()) {
            return Self::cut_short(address);
        }
        if io_error.is_none() && error.is_canceled() {
            // The connection went away while the request waited for it.
            return Self::new(
                FailureClass::Reset,
                format!("{address} closed the connection before answering"),
            );
        }
        if let Some(io_error) = io_error {
            return Self::io(address, io_error);
        }
        Self::new(
            FailureClass::Protocol,
            format!("{address} broke HTTP/1.1: {error}"),
        )
    }

    /// A hyper error while reading the response body: an early end there is a response cut
    /// short (a chunked body without its last chunk), not a refusal.
    pub fn body(address: &str, error: &hyper::Error) -> Self {
        let early_end = std::error::Error::source(error)
            .and_then(|source| source.downcast_ref::<io::Error>())
            .is_some_and(|e| e.kind() == io::ErrorKind::UnexpectedEof);
        if early_end || error.is_incomplete_message() {
            return Self::cut_short(address);
        }
        Self::http(address, error)
    }

    fn cut_short(address: &str) -> Self {
        Self::new(
            FailureClass::Reset,
            format!("{address} closed the connection in the middle of the response"),
        )
    }

    /// What the guest sees: `HttpRequestDenied` for a denied origin (the source stops), the
    /// sentence inside `InternalError` for everything else (the source retries).
    pub fn error_code(&self) -> HttpError {
        match self.class {
            FailureClass::Denied => HttpError::HttpRequestDenied,
            _ => HttpError::InternalError(Some(self.sentence.clone())),
        }
    }
}

/// The rustls verdict inside an I/O error, if that is what it carries.
fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// The certificate problem in words, with the flag that fixes it where there is one.
fn describe_tls(host: &str, error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(problem) => match problem {
            CertificateError::UnknownIssuer => {
                "the server's certificate is signed by an unknown certificate authority \
                 (trust a private one with --ca-file)"
                    .to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("the server's certificate is not valid for the name `{host}`")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet".to_string()
            }
            CertificateError::Revoked => "the server's certificate was revoked".to_string(),
            CertificateError::BadSignature => {
                "the server's certificate has a bad signature".to_string()
            }
            CertificateError::Other(other) if other.to_string() == "CaUsedAsEndEntity" => {
                "the server presents a CA certificate as its own (it needs a leaf certificate \
                 signed by that CA)"
                    .to_string()
            }
            other => format!("the server's certificate was refused: {other}"),
        },
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate (--client-cert and --client-key)".to_string()
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied),
        ) => format!("the server refused our client certificate ({alert:?})"),
        rustls::Error::AlertReceived(alert) => format!("the server sent the TLS alert {alert:?}"),
        other => other.to_string(),
    }
}

fn seconds(limit: Duration) -> String {
    let ms = limit.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// The last transport failure of one pipeline's client: written by the client (and the
/// response body), read by the source host when the guest reports a network error.
#[derive(Debug, Clone, Default)]
pub struct FailureSlot(Arc<Mutex<Option<Failure>>>);

impl FailureSlot {
    /// Records a failure, replacing the previous one.
    pub fn record(&self, failure: &Failure) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(failure.clone());
        }
    }

    /// Takes the last failure, leaving none.
    pub fn take(&self) -> Option<Failure> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_names_the_address() {
        let error = io::Error::from(io::ErrorKind::ConnectionRefused);
        let failure = Failure::connect("127.0.0.1:9", &error);
        assert_eq!(failure.class, FailureClass::Connect);
        assert_eq!(failure.sentence, "127.0.0.1:9 refused the connection");
    }

    #[test]
    fn an_unknown_issuer_suggests_the_ca_file_flag() {
        let error = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let failure = Failure::tls("stream.example.org:443", "stream.example.org", &error);
        assert_eq!(failure.class, FailureClass::Tls);
        assert!(
            failure
                .sentence
                .starts_with("TLS handshake with stream.example.org:443 failed:"),
            "{}",
            failure.sentence
        );
        assert!(failure.sentence.contains("unknown certificate authority"));
        assert!(failure.sentence.contains("--ca-file"));
    }

    #[test]
    fn a_name_mismatch_names_the_expected_host() {
        let error = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
        );
        let failure = Failure::tls("10.0.0.1:8443", "stream.example.org", &error);
        assert!(
            failure
                .sentence
                .contains("not valid for the name `stream.example.org`"),
            "{}",
            failure.sentence
        );
    }

    #[test]
    fn a_denied_origin_reaches_the_guest_as_request_denied() {
        let failure = Failure::new(FailureClass::Denied, "no");
        assert!(matches!(failure.error_code(), HttpError::HttpRequestDenied));
        let failure = Failure::new(FailureClass::Dns, "cannot resolve");
        assert!(matches!(
            failure.error_code(),
            HttpError::InternalError(Some(text)) if text == "cannot resolve"
        ));
    }

    #[test]
    fn the_slot_hands_out_a_failure_once() {
        let slot = FailureSlot::default();
        slot.record(&Failure::new(FailureClass::Reset, "reset"));
        assert_eq!(slot.take().map(|f| f.class), Some(FailureClass::Reset));
        assert_eq!(slot.take(), None);
    }
}
