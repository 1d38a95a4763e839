//! Building the SSE request: where it goes and which headers it carries.

use crate::bindings::sse_ingest::pipeline::source_host::SourceConfig;
use crate::bindings::wasi::http::types::{Fields, Method, OutgoingRequest, Scheme};

/// The parts of the configured URL that `wasi:http` wants separately.
#[derive(Debug)]
pub struct Target {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

impl Target {
    /// Splits an absolute `http`/`https` URL. The host has validated it already;
    /// this only takes it apart (a fragment is never sent).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not an absolute URL"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(format!(
                    "unsupported URL scheme `{other}` (use http or https)"
                ));
            }
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let path_with_query = match path.chars().next() {
            None => "/".to_string(),
            Some('?') => format!("/{path}"),
            Some(_) => path.to_string(),
        };
        Ok(Self {
            scheme,
            authority: authority.to_string(),
            path_with_query,
        })
    }
}

/// Builds the GET request with the SSE headers (HTML §9.2.4: `Accept:
/// text/event-stream`, no caching, and `Last-Event-ID` when an id is known).
/// A user header replaces a default header of the same name.
pub fn build(
    config: &SourceConfig,
    target: &Target,
    last_event_id: &str,
) -> Result<OutgoingRequest, String> {
    let mut headers: Vec<(String, Vec<u8>)> = Vec::with_capacity(config.headers.len() + 3);
    for (name, value) in [
        ("accept", "text/event-stream"),
        ("cache-control", "no-cache"),
    ] {
        if !config
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            headers.push((name.to_string(), value.as_bytes().to_vec()));
        }
    }
    for (name, value) in &config.headers {
        headers.push((name.clone(), value.as_bytes().to_vec()));
    }
    if !last_event_id.is_empty() {
        headers.push((
            "last-event-id".to_string(),
            last_event_id.as_bytes().to_vec(),
        ));
    }
    let fields = Fields::from_list(&headers)
        .map_err(|error| format!("a request header is not valid HTTP: {error:?}"))?;
    let request = OutgoingRequest::new(fields);
    let set = [
        request.set_method(&Method::Get),
        request.set_scheme(Some(&target.scheme)),
        request.set_authority(Some(&target.authority)),
        request.set_path_with_query(Some(&target.path_with_query)),
    ];
    if set.iter().any(Result::is_err) {
        return Err(format!(
            "the URL's authority `{}` or path `{}` is not valid for an HTTP request",
            target.authority, target.path_with_query
        ));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, String) {
        let target = Target::parse(url).expect("a valid URL");
        (target.authority, target.path_with_query)
    }

    #[test]
    fn a_url_splits_into_authority_and_path_without_the_fragment() {
        assert_eq!(
            parts("https://stream.example.org:8443/v2/stream?since=now#top"),
            (
                "stream.example.org:8443".into(),
                "/v2/stream?since=now".into()
            )
        );
        assert!(matches!(
            Target::parse("HTTPS://h/").map(|t| t.scheme),
            Ok(Scheme::Https)
        ));
    }

    #[test]
    fn an_empty_path_is_the_root_and_a_bare_query_gets_one() {
        assert_eq!(parts("http://h:8080"), ("h:8080".into(), "/".into()));
        assert_eq!(parts("http://h?x=1"), ("h".into(), "/?x=1".into()));
    }

    #[test]
    fn other_schemes_relative_urls_and_missing_hosts_are_refused() {
        for url in ["ftp://h/x", "/v2/stream", "http:///x"] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
    }
}
