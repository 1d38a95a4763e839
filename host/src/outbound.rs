//! Outbound HTTP policy for the source component: one origin, bounded timeouts.
//!
//! This is the `send_request` seam of wasmtime-wasi-http: a request to any
//! other scheme, host or port is answered with `HttpRequestDenied` before a
//! connection is opened, and every request gets the pipeline's timeouts
//! instead of the crate's 600-second defaults (a guest may ask for shorter
//! ones, never longer).

use std::time::Duration;

use http_body_util::BodyExt;
use url::Url;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// The origin a pipeline may reach and the timeouts it runs with.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    scheme: String,
    host: String,
    port: u16,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
}

impl OutboundPolicy {
    /// Allows exactly the origin of `url`.
    pub fn for_origin(url: &Url, connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            scheme: url.scheme().to_string(),
            host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
            port: url.port_or_known_default().unwrap_or(0),
            connect_timeout,
            // The response head must arrive as promptly as a connection.
            first_byte_timeout: connect_timeout,
            idle_timeout,
        }
    }

    /// Whether a request URI targets the allowed origin.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or_default();
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(default_port);
        scheme == self.scheme && host == self.host && port == self.port
    }

    /// The pipeline's timeouts, tightened by whatever the guest asked for.
    pub fn options(&self, requested: Option<RequestOptions>) -> RequestOptions {
        let tighter =
            |ours: Duration, theirs: Option<Duration>| Some(theirs.map_or(ours, |t| t.min(ours)));
        let requested = requested.unwrap_or_default();
        RequestOptions {
            connect_timeout: tighter(self.connect_timeout, requested.connect_timeout),
            first_byte_timeout: tighter(self.first_byte_timeout, requested.first_byte_timeout),
            between_bytes_timeout: tighter(self.idle_timeout, requested.between_bytes_timeout),
        }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _request_body_result: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        if !self.allows(request.uri()) {
            tracing::warn!(uri = %request.uri(), allowed_host = %self.host, "outbound request denied: not the pipeline's origin");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let options = self.options(options);
        Box::new(async move {
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(url: &str) -> OutboundPolicy {
        let url = Url::parse(url).expect("test URL");
        OutboundPolicy::for_origin(&url, Duration::from_secs(5), Duration::from_secs(30))
    }

    #[test]
    fn the_configured_origin_is_allowed() {
        let p = policy("https://stream.example.org/v2/stream");
        assert!(p.allows(&"https://stream.example.org/other?x=1".parse().expect("uri")));
        assert!(p.allows(&"https://STREAM.example.org:443/".parse().expect("uri")));
    }

    #[test]
    fn another_host_port_or_scheme_is_denied() {
        let p = policy("http://127.0.0.1:8080/events");
        assert!(!p.allows(&"http://127.0.0.1:8081/events".parse().expect("uri")));
        assert!(!p.allows(&"https://127.0.0.1:8080/events".parse().expect("uri")));
        assert!(
            !p.allows(
                &"http://169.254.169.254/latest/meta-data"
                    .parse()
                    .expect("uri")
            )
        );
    }

    #[test]
    fn timeouts_never_exceed_the_pipelines() {
        let p = policy("http://127.0.0.1:8080/");
        let asked = RequestOptions {
            connect_timeout: Some(Duration::from_secs(600)),
            first_byte_timeout: Some(Duration::from_secs(1)),
            between_bytes_timeout: None,
        };
        let got = p.options(Some(asked));
        assert_eq!(got.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(got.first_byte_timeout, Some(Duration::from_secs(1)));
        assert_eq!(got.between_bytes_timeout, Some(Duration::from_secs(30)));
    }
}
