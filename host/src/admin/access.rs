//! Who may call what, decided from the request head alone, before any body is read.
//!
//! - With a token: every endpoint but `/health`, `/healthz` and `/ready` needs
//!   `Authorization: Bearer TOKEN` (the scheme in any case); `/metrics` too, unless
//!   `metrics_public`. `/ready` without the token says ready or not, nothing more.
//! - Without a token, on loopback: anyone on the machine may call, but not a web page
//!   through a browser. A `Host` other than the bound address or `localhost` (DNS
//!   rebinding), a request with `Origin` or `Sec-Fetch-Site: cross-site` (a page's
//!   request), and a swap without `Content-Type: application/wasm` (a CORS "simple"
//!   request, which needs no preflight) are refused.
//! - Without a token, off loopback: only with `allow_unauthenticated`, which the
//!   configuration checks at start; then everything is open, as the operator chose.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, Method, StatusCode, header};
use subtle::ConstantTimeEq as _;

use crate::config::{AdminSettings, Secret};

/// What a request asks for, as far as access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// `/health`, `/healthz`: open to all.
    Health,
    /// `/ready`: open, with details only for a caller with the token.
    Ready,
    /// `/metrics`: open when `metrics_public`.
    Metrics,
    /// `POST /pipelines/{name}/filter`: the one route with a body.
    Swap,
    /// Everything else.
    Other,
}

impl Route {
    /// The route of `method path` (unknown paths are `Other`, so they need the token too
    /// and answer 401 rather than telling what exists).
    pub fn of(method: &Method, path: &str) -> Self {
        match path {
            "/health" | "/healthz" => Self::Health,
            "/ready" => Self::Ready,
            "/metrics" => Self::Metrics,
            _ if *method == Method::POST
                && path.starts_with("/pipelines/")
                && path.ends_with("/filter") =>
            {
                Self::Swap
            }
            _ => Self::Other,
        }
    }
}

/// Who is calling, once let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Caller {
    /// Has the token, or no token is needed here.
    Trusted,
    /// Without the token, on an endpoint that is open to all.
    Anonymous,
}

/// Why a request is refused: its status and what to tell the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
}

/// The access policy of one listening API.
#[derive(Debug, Clone)]
pub(super) struct Access {
    token: Option<Secret>,
    metrics_public: bool,
    /// Loopback without a token: the bound address, which `Host` must name.
    local_only: Option<SocketAddr>,
}

impl Access {
    /// The policy of `settings` for an API bound to `bound`.
    pub fn new(settings: &AdminSettings, bound: SocketAddr) -> Self {
        Self {
            token: settings.token.clone(),
            metrics_public: settings.metrics_public,
            local_only: (settings.token.is_none() && bound.ip().is_loopback()).then_some(bound),
        }
    }

    /// Lets the request in (saying as whom) or refuses it, from its head alone.
    pub fn check(&self, route: Route, headers: &HeaderMap) -> Result<Caller, Refusal> {
        if let Some(bound) = self.local_only {
            return local_only(bound, route, headers).map(|()| Caller::Trusted);
        }
        let Some(token) = &self.token else {
            // Off loopback with `allow_unauthenticated`: the operator's choice.
            return Ok(Caller::Trusted);
        };
        if bearer_matches(headers, token) {
            return Ok(Caller::Trusted);
        }
        match route {
            Route::Health | Route::Ready => Ok(Caller::Anonymous),
            Route::Metrics if self.metrics_public => Ok(Caller::Anonymous),
            Route::Metrics | Route::Swap | Route::Other => Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "this endpoint needs `Authorization: Bearer TOKEN` (the admin token)",
            }),
        }
    }
}

/// `Authorization: Bearer TOKEN` with the right token; the scheme in any case, the token
/// compared in constant time.
fn bearer_matches(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, given)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && bool::from(
            given
                .trim_start()
                .as_bytes()
                .ct_eq(token.expose().as_bytes()),
        )
}

/// The checks of a loopback API without a token: see the module docs.
fn local_only(bound: SocketAddr, route: Route, headers: &HeaderMap) -> Result<(), Refusal> {
    let forbidden = |message| Refusal {
        status: StatusCode::FORBIDDEN,
        message,
    };
    if let Some(host) = headers.get(header::HOST)
        && !host
            .to_str()
            .is_ok_and(|host| names_bound_address(host, bound))
    {
        return Err(forbidden(
            "the Host header names neither this API's address nor localhost",
        ));
    }
    if headers.contains_key(header::ORIGIN) {
        return Err(forbidden(
            "a request from a web page (with `Origin`) is refused: set a token to call this API from elsewhere",
        ));
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return Err(forbidden("a cross-site request is refused"));
    }
    if route == Route::Swap && !is_wasm(headers) {
        return Err(Refusal {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "a swap's body must be sent as `Content-Type: application/wasm`",
        });
    }
    Ok(())
}

/// `Content-Type: application/wasm` (parameters and case aside).
fn is_wasm(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/wasm"))
}

/// Whether `host` (a `Host` header: a name or address, then maybe `:port`) names `bound`:
/// its IP address or `localhost`, and its port when one is given.
fn names_bound_address(host: &str, bound: SocketAddr) -> bool {
    let (name, port) = split_host(host);
    let port_matches = port.is_none_or(|port| port.parse::<u16>() == Ok(bound.port()));
    let name_matches = name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip == bound.ip());
    port_matches && name_matches
}

/// `host[:port]` or `[v6][:port]` into name and port.
fn split_host(host: &str) -> (&str, Option<&str>) {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((name, after)) => (name, after.strip_prefix(':')),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, axum::http::HeaderValue::from_static(value));
        }
        map
    }

    fn loopback_without_token() -> Access {
        let bound: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        Access::new(&AdminSettings::default(), bound)
    }

    fn with_token(metrics_public: bool) -> Access {
        let settings = AdminSettings {
            token: Some(Secret::from("a-token-of-twenty-bytes")),
            metrics_public,
            ..AdminSettings::default()
        };
        let bound: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        Access::new(&settings, bound)
    }

    #[test]
    fn a_rebinding_swap_is_refused_on_loopback_without_a_token() {
        let access = loopback_without_token();
        let rebinding = headers(&[
            ("host", "evil.example:9090"),
            ("origin", "http://evil.example:9090"),
            ("content-type", "text/plain"),
        ]);
        let refusal = access.check(Route::Swap, &rebinding);
        assert_eq!(refusal.map_err(|r| r.status), Err(StatusCode::FORBIDDEN));
    }

    #[test]
    fn each_browser_sign_alone_is_refused_on_loopback_without_a_token() {
        let access = loopback_without_token();
        let wasm = ("content-type", "application/wasm");
        for (what, sent, status) in [
            (
                "foreign host",
                headers(&[("host", "evil.example"), wasm]),
                StatusCode::FORBIDDEN,
            ),
            (
                "wrong port",
                headers(&[("host", "127.0.0.1:80"), wasm]),
                StatusCode::FORBIDDEN,
            ),
            (
                "origin",
                headers(&[("host", "127.0.0.1:9090"), ("origin", "null"), wasm]),
                StatusCode::FORBIDDEN,
            ),
            (
                "cross-site",
                headers(&[
                    ("host", "localhost:9090"),
                    ("sec-fetch-site", "cross-site"),
                    wasm,
                ]),
                StatusCode::FORBIDDEN,
            ),
            (
                "text body",
                headers(&[("host", "localhost:9090"), ("content-type", "text/plain")]),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
        ] {
            assert_eq!(
                access.check(Route::Swap, &sent).map_err(|r| r.status),
                Err(status),
                "{what}"
            );
        }
    }

    #[test]
    fn a_local_tool_is_let_in_on_loopback_without_a_token() {
        let access = loopback_without_token();
        for host in ["127.0.0.1:9090", "127.0.0.1", "LocalHost:9090", "localhost"] {
            let sent = headers(&[("host", host), ("content-type", "Application/Wasm; x=1")]);
            assert_eq!(
                access.check(Route::Swap, &sent),
                Ok(Caller::Trusted),
                "{host}"
            );
        }
        assert_eq!(
            access.check(Route::Other, &HeaderMap::new()),
            Ok(Caller::Trusted)
        );
    }

    #[test]
    fn with_a_token_only_health_and_ready_are_open() {
        let access = with_token(false);
        let none = HeaderMap::new();
        assert_eq!(access.check(Route::Health, &none), Ok(Caller::Anonymous));
        assert_eq!(access.check(Route::Ready, &none), Ok(Caller::Anonymous));
        for route in [Route::Metrics, Route::Swap, Route::Other] {
            assert_eq!(
                access.check(route, &none).map_err(|r| r.status),
                Err(StatusCode::UNAUTHORIZED),
                "{route:?}"
            );
        }
        assert_eq!(
            with_token(true).check(Route::Metrics, &none),
            Ok(Caller::Anonymous)
        );
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case_and_the_token_exactly() {
        let access = with_token(false);
        for (value, expected) in [
            ("Bearer a-token-of-twenty-bytes", true),
            ("bearer a-token-of-twenty-bytes", true),
            ("BEARER  a-token-of-twenty-bytes", true),
            ("Bearer a-token-of-twenty-byte", false),
            ("Bearer a-token-of-twenty-bytesX", false),
            ("Basic a-token-of-twenty-bytes", false),
            ("a-token-of-twenty-bytes", false),
        ] {
            let mut sent = HeaderMap::new();
            sent.insert(
                header::AUTHORIZATION,
                axum::http::HeaderValue::from_str(value).unwrap(),
            );
            assert_eq!(
                access.check(Route::Other, &sent).is_ok(),
                expected,
                "{value}"
            );
        }
    }

    #[test]
    fn host_headers_are_split_into_name_and_port() {
        assert_eq!(split_host("[::1]:9090"), ("::1", Some("9090")));
        assert_eq!(split_host("[::1]"), ("::1", None));
        assert_eq!(split_host("127.0.0.1:1"), ("127.0.0.1", Some("1")));
        assert_eq!(split_host("localhost"), ("localhost", None));
        let v6: SocketAddr = "[::1]:9090".parse().unwrap();
        assert!(names_bound_address("[::1]:9090", v6));
        assert!(!names_bound_address("[::2]:9090", v6));
    }
}
