//! Where a pipeline's source may go, and how long it may wait.
//!
//! The allow-list is the only way out of the sandbox: the configured URL's origin plus the
//! origins given with `--allow-origin` (for redirects). A request (or a redirect) to any
//! other scheme, host or port is refused before a connection is opened. Every request gets
//! the pipeline's timeouts instead of wasmtime-wasi-http's 600-second defaults; a guest may
//! ask for shorter ones, never longer.

use std::fmt;
use std::time::Duration;

use url::Url;
use wasmtime_wasi_http::RequestOptions;

/// A scheme, host and port (RFC 6454), compared case-insensitively with default ports
/// filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an http(s) URL; `None` for other schemes or a URL without a host.
    pub fn of_url(url: &Url) -> Option<Self> {
        Self::from_parts(url.scheme(), url.host_str()?, url.port())
    }

    /// The origin of a request URI.
    pub fn of_uri(uri: &http::Uri) -> Option<Self> {
        Self::from_parts(uri.scheme_str()?, uri.host()?, uri.port_u16())
    }

    fn from_parts(scheme: &str, host: &str, port: Option<u16>) -> Option<Self> {
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        if host.is_empty() {
            return None;
        }
        Some(Self {
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(default_port),
            scheme,
        })
    }

    /// Whether this origin is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// The host as written in a URL (IPv6 literals keep their brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host without IPv6 brackets: for name lookup and the TLS server name.
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The port, default filled in.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, as failures name it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The origins a pipeline may reach and the timeouts it runs with.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    origins: Vec<Origin>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
}

impl OutboundPolicy {
    /// Allows the origin of `url` and each of `also`.
    pub fn new(
        url: &Url,
        also: &[Origin],
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        let origins = Origin::of_url(url)
            .into_iter()
            .chain(also.iter().cloned())
            .collect();
        Self {
            origins,
            connect_timeout,
            // The response head must arrive as promptly as a connection.
            first_byte_timeout: connect_timeout,
            idle_timeout,
        }
    }

    /// Allows exactly the origin of `url`.
    #[cfg(test)]
    pub fn for_origin(url: &Url, connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Self::new(url, &[], connect_timeout, idle_timeout)
    }

    /// Whether a request URI targets an allowed origin.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        Origin::of_uri(uri).is_some_and(|origin| self.origins.contains(&origin))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(url: &str) -> OutboundPolicy {
        let url = Url::parse(url).expect("test URL");
        OutboundPolicy::for_origin(&url, Duration::from_secs(5), Duration::from_secs(30))
    }

    fn uri(text: &str) -> http::Uri {
        text.parse().expect("test URI")
    }

    #[test]
    fn the_configured_origin_is_allowed() {
        let p = policy("https://stream.example.org/v2/stream");
        assert!(p.allows(&uri("https://stream.example.org/other?x=1")));
        assert!(p.allows(&uri("https://STREAM.example.org:443/")));
    }

    #[test]
    fn another_host_port_or_scheme_is_denied() {
        let p = policy("http://127.0.0.1:8080/events");
        assert!(!p.allows(&uri("http://127.0.0.1:8081/events")));
        assert!(!p.allows(&uri("https://127.0.0.1:8080/events")));
        assert!(!p.allows(&uri("http://169.254.169.254/latest/meta-data")));
    }

    #[test]
    fn an_allowed_extra_origin_is_reachable_and_nothing_else() {
        let url = Url::parse("http://127.0.0.1:8080/events").expect("url");
        let extra =
            Origin::of_url(&Url::parse("https://cdn.example.org").expect("url")).expect("origin");
        let p = OutboundPolicy::new(
            &url,
            &[extra],
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        assert!(p.allows(&uri("https://cdn.example.org:443/moved")));
        assert!(!p.allows(&uri("http://cdn.example.org/moved")));
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

    #[test]
    fn ipv6_hosts_lose_their_brackets_for_lookup() {
        let origin =
            Origin::of_url(&Url::parse("https://[::1]:8443/").expect("url")).expect("origin");
        assert_eq!(origin.bare_host(), "::1");
        assert_eq!(origin.address(), "[::1]:8443");
    }
}
