//! The CLI's side of the admin API (`swap`, `status`, `health`): one place that knows the address
//! forms, the token and the timeouts.

use std::time::Duration;

use crate::cli::exit::Failure;
use crate::config::Secret;

/// A client of one process's admin API.
pub struct AdminClient {
    base: String,
    token: Option<Secret>,
    agent: ureq::Agent,
}

/// An answer: the status and the JSON body.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body, parsed.
    pub body: serde_json::Value,
}

impl AdminClient {
    /// `address` is `HOST:PORT` or `http://HOST:PORT`.
    pub fn new(address: &str, token: Option<Secret>) -> Self {
        let base = if address.starts_with("http://") {
            address.trim_end_matches('/').to_string()
        } else {
            format!("http://{address}")
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self { base, token, agent }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Answer, Failure> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {}", token.expose()));
        }
        self.answer(request.call())
    }

    /// `GET path` within `timeout`: the status and the body as text (a health probe, whose
    /// answer is not JSON and must not wait the minute the other calls may).
    pub fn probe(&self, path: &str, timeout: Duration) -> Result<(u16, String), Failure> {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.base))
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call()
            .map_err(|e| {
                Failure::failed(format!("cannot reach the admin API at {}: {e}", self.base))
            })?;
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Ok((response.status().as_u16(), text))
    }

    /// `POST path` with `body` of `content_type`.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Answer, Failure> {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type);
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {}", token.expose()));
        }
        self.answer(request.send(body))
    }

    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, Failure> {
        let mut response = response.map_err(|e| {
            Failure::failed(format!("cannot reach the admin API at {}: {e}", self.base))
        })?;
        let status = response.status().as_u16();
        let unreadable = |e: &dyn std::fmt::Display| {
            Failure::failed(format!(
                "the admin API answered {status} with an unreadable body: {e}"
            ))
        };
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| unreadable(&e))?;
        let body = serde_json::from_str(&text).map_err(|e| unreadable(&e))?;
        Ok(Answer { status, body })
    }
}
