//! The host's HTTP client for the source component: the `send_request` seam of
//! wasmtime-wasi-http, implemented by the host itself.
//!
//! wasmtime-wasi-http's built-in sender trusts only a bundled root list, knows no proxy and
//! reports failures as bare error codes. This one keeps the origin allow-list and the
//! pipeline's timeouts, and adds what real networks need: the system's trust store plus
//! private CAs and a client certificate ([`super::tls`]), proxies from flags or the
//! environment ([`super::proxy`]), redirects within the allow-list, and a sentence for every
//! failure ([`super::failure`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, COOKIE, HOST, LOCATION, PROXY_AUTHORIZATION};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use super::body::{ConnectionDriver, ResponseBody};
use super::connect::{self, Io};
use super::failure::{Failure, FailureClass, FailureSlot};
use super::policy::{Origin, OutboundPolicy};
use super::proxy::{Proxy, ProxyRoutes};
use super::shown::shown_uri;

/// Redirects followed for one request; one more is a failure (a loop, most likely).
pub const MAX_REDIRECTS: usize = 10;

/// How long a failed request waits for its connection to say why.
const CONNECTION_VERDICT: Duration = Duration::from_secs(1);

/// Used only if the policy had no timeout for a step (it always has).
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(30);

type Connection = http1::Connection<TokioIo<Box<dyn Io>>, WasiBody>;
type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type ResponseFuture =
    Box<dyn Future<Output = Result<(Response<WasiBody>, IoFuture), HttpError>> + Send>;

/// Told the status of every response (redirect hops included), for metrics.
pub type StatusObserver = Arc<dyn Fn(u16) + Send + Sync>;

/// One pipeline's outbound HTTP client.
#[derive(Clone)]
pub struct OutboundClient {
    pipeline: Arc<str>,
    policy: Arc<OutboundPolicy>,
    tls: Arc<ClientConfig>,
    proxies: ProxyRoutes,
    failures: FailureSlot,
    statuses: Option<StatusObserver>,
    /// Headers dropped on a redirect to another origin, besides the credentials.
    cross_origin_drops: Arc<[HeaderName]>,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundClient")
            .field("pipeline", &self.pipeline)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl OutboundClient {
    /// A client for `pipeline` that may reach what `policy` allows.
    pub fn new(
        pipeline: &str,
        policy: OutboundPolicy,
        tls: Arc<ClientConfig>,
        proxies: ProxyRoutes,
    ) -> Self {
        Self {
            pipeline: pipeline.into(),
            policy: Arc::new(policy),
            tls,
            proxies,
            failures: FailureSlot::default(),
            statuses: None,
            cross_origin_drops: Arc::new([]),
        }
    }

    /// Drops `names` too (the user's `--header`s) when a redirect leads to another origin:
    /// an API key sent with `--header` is meant for the origin it was configured for.
    pub fn dropping_on_cross_origin(mut self, names: Vec<HeaderName>) -> Self {
        self.cross_origin_drops = names.into();
        self
    }

    /// Reports the status of every response to `observer`.
    pub fn observe_statuses(mut self, observer: StatusObserver) -> Self {
        self.statuses = Some(observer);
        self
    }

    /// Where this client records its failures, for the source host to classify them.
    pub fn failures(&self) -> &FailureSlot {
        &self.failures
    }

    /// Sends `request`, following redirects, and returns the final response.
    async fn send(
        &self,
        request: Request<WasiBody>,
        options: RequestOptions,
    ) -> Result<(Response<WasiBody>, IoFuture), Failure> {
        let connect_timeout = options.connect_timeout.unwrap_or(FALLBACK_TIMEOUT);
        let first_byte_timeout = options.first_byte_timeout.unwrap_or(FALLBACK_TIMEOUT);
        let idle_timeout = options.between_bytes_timeout.unwrap_or(FALLBACK_TIMEOUT);
        let (mut parts, body) = request.into_parts();
        // Only a request without a body can be sent again to another location.
        let follows_redirects = parts.method == Method::GET || parts.method == Method::HEAD;
        let first_uri = parts.uri.clone();
        let mut body = Some(body);
        let mut hops = 0;
        loop {
            let origin = self.allowed_origin(&parts.uri, hops)?;
            let address = origin.address();
            let proxy = self.proxies.for_target(&parts.uri);
            let stream = connect::open(&origin, proxy.as_ref(), &self.tls, connect_timeout).await?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|error| Failure::http(&address, &error))?;
            let body = body.take().unwrap_or_else(empty_body);
            let outgoing = outgoing_request(&parts, body, proxy.as_ref(), &origin)?;
            let (response, connection) =
                exchange(sender, connection, outgoing, first_byte_timeout, &address)
                    .await
                    .map_err(|failure| self.explain_early_close(&origin, failure))?;
            if let Some(observe) = &self.statuses {
                observe(response.status().as_u16());
            }

            let next = if follows_redirects {
                redirect_target(&parts.uri, &response)?
            } else {
                None
            };
            let Some(next) = next else {
                let failures = self.failures.clone();
                let connection = connection.map(|driver| driver as ConnectionDriver);
                let response = response.map(|incoming| {
                    ResponseBody::new(incoming, connection, idle_timeout, address, failures)
                        .boxed_unsync()
                });
                // The body drives the connection (see `ResponseBody`): no task of its own.
                return Ok((response, Box::new(async { Ok(()) })));
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(Failure::new(
                    FailureClass::Redirect,
                    format!(
                        "more than {MAX_REDIRECTS} redirects starting at {} (last to {}): a redirect loop?",
                        shown_uri(&first_uri),
                        shown_uri(&next)
                    ),
                ));
            }
            tracing::info!(
                pipeline = %self.pipeline,
                status = response.status().as_u16(),
                from = %shown_uri(&parts.uri),
                to = %shown_uri(&next),
                hop = hops,
                "following a redirect"
            );
            follow(&mut parts, next, &self.cross_origin_drops);
        }
    }

    /// Under TLS 1.3 a server checks the client certificate after the handshake, and one
    /// that refuses it may just close the connection (its alert can be lost on the way):
    /// when no client certificate is configured, say that this may be why.
    fn explain_early_close(&self, origin: &Origin, failure: Failure) -> Failure {
        let may_want_a_certificate = origin.is_https()
            && failure.class == FailureClass::Reset
            && !self.tls.client_auth_cert_resolver.has_certs();
        if !may_want_a_certificate {
            return failure;
        }
        Failure::new(
            failure.class,
            format!(
                "{} (a server that requires a client certificate closes like this: give \
                 --client-cert and --client-key)",
                failure.sentence
            ),
        )
    }

    /// The origin of `uri` if the policy allows it; a failure that names it otherwise.
    fn allowed_origin(&self, uri: &Uri, hops: usize) -> Result<Origin, Failure> {
        match Origin::of_uri(uri) {
            Some(origin) if self.policy.allows(uri) => Ok(origin),
            Some(origin) if hops > 0 => Err(Failure::new(
                FailureClass::Denied,
                format!(
                    "the server redirected to {}, but {origin} is not an origin this pipeline may reach (allow it with --allow-origin {origin})",
                    shown_uri(uri)
                ),
            )),
            _ => Err(Failure::new(
                FailureClass::Denied,
                format!(
                    "the request to {} is outside the origins this pipeline may reach",
                    shown_uri(uri)
                ),
            )),
        }
    }
}

impl WasiHttpHooks for OutboundClient {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _request_body_result: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let client = self.clone();
        let options = self.policy.options(options);
        Box::new(async move {
            client.send(request, options).await.map_err(|failure| {
                client.failures.record(&failure);
                failure.error_code()
            })
        })
    }
}

fn empty_body() -> WasiBody {
    Empty::new()
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync()
}

/// The request as it goes on the wire: absolute-form through a proxy to an http target
/// (RFC 9112 §3.2.2), origin-form otherwise; `Proxy-Authorization` for such a proxy.
fn outgoing_request(
    parts: &http::request::Parts,
    body: WasiBody,
    proxy: Option<&Proxy>,
    origin: &Origin,
) -> Result<Request<WasiBody>, Failure> {
    let via_proxy = proxy.filter(|_| !origin.is_https());
    let uri = match via_proxy {
        Some(_) => parts.uri.clone(),
        None => {
            let path = parts
                .uri
                .path_and_query()
                .map_or("/", http::uri::PathAndQuery::as_str);
            Uri::builder()
                .path_and_query(path)
                .build()
                .map_err(|error| {
                    Failure::new(
                        FailureClass::Protocol,
                        format!(
                            "the request path of {} is not valid: {error}",
                            shown_uri(&parts.uri)
                        ),
                    )
                })?
        }
    };
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = parts.headers.clone();
    if let Some(authorization) = via_proxy.and_then(|p| p.authorization.clone()) {
        request
            .headers_mut()
            .insert(PROXY_AUTHORIZATION, authorization);
    }
    Ok(request)
}

/// Sends the request and waits (at most `limit`) for the response head while driving the
/// connection.
async fn exchange(
    mut sender: http1::SendRequest<WasiBody>,
    connection: Connection,
    request: Request<WasiBody>,
    limit: Duration,
    address: &str,
) -> Result<(Response<Incoming>, Option<Pin<Box<Connection>>>), Failure> {
    let mut connection = Box::pin(connection);
    let mut connection_ended = false;
    let wait = async {
        let mut send = std::pin::pin!(sender.send_request(request));
        tokio::select! {
            response = &mut send => match response {
                Ok(response) => Ok(response),
                Err(send_error) => {
                    // The connection usually knows why the exchange failed (a TLS alert
                    // after the handshake, a reset), while the request only learns that it
                    // was cancelled: prefer the connection's error.
                    connection_ended = true;
                    match tokio::time::timeout(CONNECTION_VERDICT, connection.as_mut()).await {
                        Ok(Err(connection_error)) => Err(connection_error),
                        _ => Err(send_error),
                    }
                }
            },
            ended = connection.as_mut() => {
                connection_ended = true;
                match ended {
                    Err(connection_error) => Err(connection_error),
                    Ok(()) => send.await,
                }
            }
        }
    };
    let response = tokio::time::timeout(limit, wait)
        .await
        .map_err(|_| Failure::timeout(address, "waiting for the response head of", limit))?
        .map_err(|error| Failure::http(address, &error))?;
    Ok((response, (!connection_ended).then_some(connection)))
}

/// Where a redirect points, resolved against the URI it answered; `None` when the response
/// is not a redirect the client follows.
fn redirect_target(current: &Uri, response: &Response<Incoming>) -> Result<Option<Uri>, Failure> {
    let status = response.status();
    let followed = [
        StatusCode::MOVED_PERMANENTLY,
        StatusCode::FOUND,
        StatusCode::SEE_OTHER,
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
    ];
    if !followed.contains(&status) {
        return Ok(None);
    }
    let Some(location) = response.headers().get(LOCATION) else {
        // Nothing to follow: the source sees the status itself.
        return Ok(None);
    };
    let unusable = |reason: String| {
        Failure::new(
            FailureClass::Redirect,
            format!(
                "{} answered HTTP {} with an unusable Location: {reason}",
                shown_uri(current),
                status.as_u16()
            ),
        )
    };
    let location = location
        .to_str()
        .map_err(|_| unusable("not ASCII".to_string()))?;
    let base =
        url::Url::parse(&current.to_string()).map_err(|error| unusable(error.to_string()))?;
    let mut next = base
        .join(location)
        .map_err(|error| unusable(format!("`{location}`: {error}")))?;
    // A fragment is never sent.
    next.set_fragment(None);
    next.as_str()
        .parse::<Uri>()
        .map(Some)
        .map_err(|error| unusable(format!("`{location}`: {error}")))
}

/// Points the request at `next`: a new `Host`, and credentials (and `drops`, the user's
/// headers) kept only within the origin (as Fetch does with credentials on a cross-origin
/// redirect).
fn follow(parts: &mut http::request::Parts, next: Uri, drops: &[HeaderName]) {
    if Origin::of_uri(&parts.uri) != Origin::of_uri(&next) {
        for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION]
            .iter()
            .chain(drops)
        {
            parts.headers.remove(name);
        }
    }
    if let Some(host) = next
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(HOST, host);
    }
    parts.uri = next;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = Request::get(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request").into_parts().0
    }

    #[test]
    fn a_same_origin_redirect_keeps_the_credentials() {
        let mut p = parts(
            "https://a.example/one",
            &[("authorization", "Bearer t"), ("host", "a.example")],
        );
        follow(&mut p, "https://a.example/two".parse().expect("uri"), &[]);
        assert_eq!(
            p.headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
            Some(&b"Bearer t"[..])
        );
        assert_eq!(p.uri.path(), "/two");
    }

    #[test]
    fn a_cross_origin_redirect_drops_credentials_and_moves_the_host_header() {
        let mut p = parts(
            "https://a.example/one",
            &[
                ("authorization", "Bearer t"),
                ("cookie", "c=1"),
                ("host", "a.example"),
                ("last-event-id", "42"),
            ],
        );
        follow(
            &mut p,
            "https://b.example:8443/two".parse().expect("uri"),
            &[],
        );
        assert!(p.headers.get(AUTHORIZATION).is_none());
        assert!(p.headers.get(COOKIE).is_none());
        assert_eq!(
            p.headers.get(HOST).map(|v| v.as_bytes()),
            Some(&b"b.example:8443"[..])
        );
        assert_eq!(
            p.headers.get("last-event-id").map(|v| v.as_bytes()),
            Some(&b"42"[..])
        );
    }

    #[test]
    fn a_cross_origin_redirect_drops_the_given_headers_and_a_same_origin_one_keeps_them() {
        let api_key = HeaderName::from_static("x-api-key");
        let mut p = parts("https://a.example/one", &[("x-api-key", "k")]);
        follow(
            &mut p,
            "https://a.example/two".parse().expect("uri"),
            std::slice::from_ref(&api_key),
        );
        assert!(p.headers.contains_key(&api_key), "same origin keeps it");
        follow(
            &mut p,
            "https://b.example/two".parse().expect("uri"),
            std::slice::from_ref(&api_key),
        );
        assert!(!p.headers.contains_key(&api_key), "another origin drops it");
    }

    fn proxy_with_credentials() -> Proxy {
        Proxy {
            scheme: "http".into(),
            host: "127.0.0.1".into(),
            port: 3128,
            authorization: Some(HeaderValue::from_static("Basic dTpw")),
        }
    }

    #[test]
    fn a_request_through_a_proxy_to_http_is_absolute_form_with_proxy_credentials() {
        let p = parts("http://stream.example/events?x=1", &[]);
        let origin = Origin::of_uri(&p.uri).expect("origin");
        let proxy = proxy_with_credentials();
        let request = outgoing_request(&p, empty_body(), Some(&proxy), &origin).expect("request");
        assert_eq!(
            request.uri().to_string(),
            "http://stream.example/events?x=1"
        );
        assert!(request.headers().contains_key(PROXY_AUTHORIZATION));
        let direct = outgoing_request(&p, empty_body(), None, &origin).expect("request");
        assert_eq!(direct.uri().to_string(), "/events?x=1");
        assert!(!direct.headers().contains_key(PROXY_AUTHORIZATION));
    }

    #[test]
    fn a_tunnelled_https_request_is_origin_form_without_proxy_credentials() {
        let p = parts("https://stream.example/events", &[]);
        let origin = Origin::of_uri(&p.uri).expect("origin");
        let proxy = proxy_with_credentials();
        let request = outgoing_request(&p, empty_body(), Some(&proxy), &origin).expect("request");
        assert_eq!(request.uri().to_string(), "/events");
        assert!(!request.headers().contains_key(PROXY_AUTHORIZATION));
    }
}
