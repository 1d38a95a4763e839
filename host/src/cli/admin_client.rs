//! The CLI's side of the admin API (`swap`, `status`, `health`): one place that knows the address
//! forms, the token and the timeouts.
//!
//! It speaks through hyper's HTTP/1 client connection, the one `net` already uses for the
//! source, on a runtime of its own: a command makes a call or two, so each call opens one
//! connection, sends one request and reads the whole answer, all within one deadline. No
//! second HTTP client in the binary for this.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::cli::exit::Failure;
use crate::config::Secret;

/// How long a call of `swap` or `status` may take (a swap compiles and probes the filter).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A client of one process's admin API.
#[derive(Debug)]
pub struct AdminClient {
    base: String,
    token: Option<Secret>,
}

/// An answer: the status and the JSON body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body, parsed.
    pub body: serde_json::Value,
}

/// Why a call got no answer; the caller words it for the operator.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("`{0}` is not an http://HOST:PORT address")]
    Address(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl AdminClient {
    /// `address` is `HOST:PORT` or `http://HOST:PORT`.
    pub fn new(address: &str, token: Option<Secret>) -> Self {
        let base = if address.starts_with("http://") {
            address.trim_end_matches('/').to_string()
        } else {
            format!("http://{address}")
        };
        Self { base, token }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Answer, Failure> {
        let (status, body) = self.call(Method::GET, path, None, CALL_TIMEOUT)?;
        answer(status, &body)
    }

    /// `GET path` within `timeout`: the status and the body as text (a health probe, whose
    /// answer is not JSON and must not wait the minute the other calls may).
    pub fn probe(&self, path: &str, timeout: Duration) -> Result<(u16, String), Failure> {
        let (status, body) = self.call(Method::GET, path, None, timeout)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// `POST path` with `body` of `content_type`.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Answer, Failure> {
        let content = Some((content_type, Bytes::copy_from_slice(body)));
        let (status, body) = self.call(Method::POST, path, content, CALL_TIMEOUT)?;
        answer(status, &body)
    }

    /// One request on a connection of its own: the status and the whole body.
    fn call(
        &self,
        method: Method,
        path: &str,
        content: Option<(&str, Bytes)>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), Failure> {
        let unreachable = |e: CallError| {
            Failure::failed(format!("cannot reach the admin API at {}: {e}", self.base))
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unreachable(e.into()))?;
        let exchange = self.exchange(method, path, content);
        runtime
            .block_on(async {
                tokio::time::timeout(timeout, exchange)
                    .await
                    .unwrap_or(Err(CallError::Timeout(timeout)))
            })
            .map_err(unreachable)
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        content: Option<(&str, Bytes)>,
    ) -> Result<(u16, Bytes), CallError> {
        let url = format!("{}{path}", self.base);
        let uri: Uri = url
            .parse()
            .map_err(|_| CallError::Address(self.base.clone()))?;
        let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
            return Err(CallError::Address(self.base.clone()));
        };
        let stream =
            tokio::net::TcpStream::connect(format!("{host}:{}", uri.port_u16().unwrap_or(80)))
                .await?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // The connection is driven beside the request; it ends with the runtime.
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(HOST, authority.as_str());
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        let body = match content {
            Some((content_type, bytes)) => {
                request = request.header(CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let response = sender.send_request(request.body(Full::new(body))?).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// A JSON answer, or a failure saying the body was not JSON.
fn answer(status: u16, body: &[u8]) -> Result<Answer, Failure> {
    let body = serde_json::from_slice(body).map_err(|e| {
        Failure::failed(format!(
            "the admin API answered {status} with an unreadable body: {e}"
        ))
    })?;
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_a_host_is_refused_before_connecting() {
        let client = AdminClient::new("http://", None);
        let failure = client.get("/health").unwrap_err();
        assert!(
            failure
                .message
                .contains("is not an http://HOST:PORT address"),
            "{}",
            failure.message
        );
    }
}
