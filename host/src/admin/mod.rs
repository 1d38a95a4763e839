//! The admin HTTP API (`run --admin ADDR`, or `[admin]` in a config file).
//!
//! | method and path | what |
//! |---|---|
//! | `GET /health` (alias `/healthz`) | `ok` while the process lives |
//! | `GET /ready` | 200 when every pipeline is connected or was stopped on purpose; else 503 (with each reason for a caller with the token) |
//! | `GET /metrics` | every pipeline's metrics, one OpenMetrics document |
//! | `GET /pipelines`, `GET /pipelines/{name}` | state, URL, filter and version, connection, last event age, counters |
//! | `POST /pipelines/{name}/filter?config=k%3Dv&label=…` | body: a filter component; validated, then swapped in between two batches |
//! | `POST /pipelines/{name}/pause`, `/resume` | stop reading (TCP pushes back), then go on: on the same connection if the server kept it, else reconnecting with `Last-Event-ID` |
//!
//! Built on axum, served by hyper on an accept loop of our own ([`serve`]): a request head
//! must arrive within 10 s and connections are capped. Who may call what is decided from
//! the request head, before any body is read ([`access`]): with a token, every endpoint
//! but `/health`, `/healthz` and `/ready` needs it (`/metrics` too unless `metrics_public`);
//! on loopback without a token, requests that a web page could make are refused; off
//! loopback, a token is needed unless the operator said `allow_unauthenticated`. Only a
//! swap has a body (up to 64 MiB, read once the token is checked, at most two swaps at a
//! time); every other route refuses one.

mod access;
pub mod filter_watch;
mod serve;
mod status;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, Path, RawQuery, Request, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};

use crate::config::{AdminSettings, Redactor, SHORT_TOKEN_BYTES, parse_key_value};
use crate::core::metrics::{CONTENT_TYPE, Exposition, Metrics};
use crate::pipeline::filter_stage::prepare;
use crate::pipeline::{PipelineHandle, SwapRequest};

use access::{Access, Caller, Route};
pub use serve::AdminTlsError;
use status::Entry;
pub use status::State;

/// Largest filter component accepted over the API.
const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

/// Swaps read and compiled at once (compiling runs on the shared blocking pool); more wait
/// their turn with their body unread.
const MAX_CONCURRENT_SWAPS: usize = 2;

/// How long a swap's body may take to arrive.
const SWAP_BODY_TIMEOUT: Duration = Duration::from_secs(120);

/// The pipelines the API can reach, by name, and the process's metrics.
#[derive(Debug, Clone, Default)]
pub struct Pipelines {
    entries: Arc<RwLock<BTreeMap<String, Entry>>>,
    exposition: Exposition,
    redactor: Redactor,
}

impl Pipelines {
    /// An empty registry; `redactor` cleans every answer.
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            ..Self::default()
        }
    }

    /// Where every pipeline registers its metrics, so `/metrics` is one document.
    pub fn exposition(&self) -> &Exposition {
        &self.exposition
    }

    /// A pipeline is starting (again): what it runs, and its metrics.
    pub fn starting(&self, name: &str, url: &str, filter: &str, metrics: &Arc<Metrics>) {
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(name.to_string(), Entry::starting(url, filter, metrics));
        }
    }

    /// Makes a running pipeline reachable (swaps) and marks it running.
    pub fn add(&self, handle: PipelineHandle) {
        if let Ok(mut entries) = self.entries.write()
            && let Some(entry) = entries.get_mut(&handle.name)
        {
            entry.state = State::Running;
            entry.handle = Some(handle);
        }
    }

    /// The pipeline no longer takes swaps.
    pub fn remove_handle(&self, name: &str) {
        if let Ok(mut entries) = self.entries.write()
            && let Some(entry) = entries.get_mut(name)
        {
            entry.handle = None;
        }
    }

    /// `text` with every secret the process knows replaced, for a log line.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// Records a change of state, with the reason when there is one.
    pub fn set_state(&self, name: &str, state: State, reason: Option<String>) {
        if let Ok(mut entries) = self.entries.write()
            && let Some(entry) = entries.get_mut(name)
        {
            entry.state = state;
            entry.reason = reason.map(|reason| self.redactor.redact(&reason));
        }
    }

    /// Each pipeline's name and metrics (for the periodic rate line).
    pub fn metrics(&self) -> Vec<(String, Arc<Metrics>)> {
        self.entries
            .read()
            .map(|entries| {
                entries
                    .iter()
                    .map(|(name, entry)| (name.clone(), Arc::clone(&entry.metrics)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn handle(&self, name: &str) -> Option<PipelineHandle> {
        self.entries
            .read()
            .ok()
            .and_then(|entries| entries.get(name).and_then(|entry| entry.handle.clone()))
    }

    fn status(&self, name: Option<&str>) -> Vec<serde_json::Value> {
        self.entries
            .read()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|(n, _)| name.is_none_or(|name| name == n.as_str()))
                    .map(|(n, entry)| entry.describe(n))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Why the process is not ready: each pipeline that is neither connected nor stopped
    /// on purpose, with its reason.
    fn not_ready(&self) -> BTreeMap<String, String> {
        self.entries
            .read()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|(n, entry)| entry.not_ready().map(|why| (n.clone(), why)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What the handlers share: the pipelines, who may call, and the swap queue.
#[derive(Debug, Clone)]
struct Api {
    pipelines: Pipelines,
    access: Arc<Access>,
    swaps: Arc<Semaphore>,
}

impl FromRef<Api> for Pipelines {
    fn from_ref(api: &Api) -> Self {
        api.pipelines.clone()
    }
}

/// Why the admin API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The address cannot be bound.
    #[error("cannot serve the admin API on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// The certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] AdminTlsError),
}

/// Binds `settings.address` now (so a bad address or certificate fails at start) and
/// serves until `stop`; none without an address.
pub async fn bind(
    settings: &AdminSettings,
    pipelines: Pipelines,
    stop: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, BindError> {
    let Some(address) = settings.address else {
        return Ok(None);
    };
    let tls = settings.tls.as_ref().map(serve::acceptor).transpose()?;
    let bind_error = |source| BindError::Bind { address, source };
    let listener = TcpListener::bind(address).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    if let Some(token) = &settings.token
        && token.expose().len() < SHORT_TOKEN_BYTES
    {
        tracing::warn!(
            bytes = token.expose().len(),
            "the admin token is shorter than {SHORT_TOKEN_BYTES} bytes: easy to guess; use a \
             long random one (e.g. `openssl rand -hex 32`)"
        );
    }
    let api = Api {
        pipelines,
        access: Arc::new(Access::new(settings, local)),
        swaps: Arc::new(Semaphore::new(MAX_CONCURRENT_SWAPS)),
    };
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/pipelines", get(list))
        .route("/pipelines/{name}", get(one))
        .route("/pipelines/{name}/pause", post(pause))
        .route("/pipelines/{name}/resume", post(resume))
        .route("/pipelines/{name}/filter", post(swap))
        .layer(middleware::from_fn_with_state(api.clone(), guard))
        .with_state(api);
    tracing::info!(
        address = %local,
        tls = tls.is_some(),
        token = settings.token.is_some(),
        "admin API listening"
    );
    Ok(Some(tokio::spawn(serve::serve(listener, app, tls, stop))))
}

/// Runs before every handler, on the request head alone: lets the caller in or refuses, and
/// refuses a body on every route but a swap, and a swap's body over the limit.
async fn guard(AxumState(api): AxumState<Api>, mut request: Request, next: Next) -> Response {
    let route = Route::of(request.method(), request.uri().path());
    let caller = match api.access.check(route, request.headers()) {
        Ok(caller) => caller,
        Err(refusal) => {
            let mut response = error(refusal.status, refusal.message.to_string());
            if refusal.status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            return response;
        }
    };
    let limit = if route == Route::Swap {
        MAX_COMPONENT_BYTES
    } else {
        0
    };
    if declared_body_over(request.headers(), limit) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            if limit == 0 {
                "this endpoint takes no body".to_string()
            } else {
                format!("a filter component may have at most {limit} bytes")
            },
        );
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Whether the head announces a body longer than `limit` (a chunked one counts as longer
/// than 0: only the swap reads a body, with its limit).
fn declared_body_over(headers: &HeaderMap, limit: usize) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().parse::<u64>().unwrap_or(u64::MAX));
    match length {
        Some(length) => length > limit as u64,
        None => limit == 0 && headers.contains_key(header::TRANSFER_ENCODING),
    }
}

async fn metrics(AxumState(pipelines): AxumState<Pipelines>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        pipelines.exposition().render(),
    )
        .into_response()
}

async fn list(AxumState(pipelines): AxumState<Pipelines>) -> Response {
    axum::Json(json!({ "pipelines": pipelines.status(None) })).into_response()
}

async fn one(AxumState(pipelines): AxumState<Pipelines>, Path(name): Path<String>) -> Response {
    match pipelines.status(Some(&name)).pop() {
        Some(status) => axum::Json(status).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`")),
    }
}

/// Ready or not; each reason only for a caller with the token (or where none is needed).
async fn ready(
    AxumState(pipelines): AxumState<Pipelines>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Response {
    let waiting = pipelines.not_ready();
    let details = caller == Caller::Trusted;
    if waiting.is_empty() {
        (StatusCode::OK, axum::Json(json!({ "ready": true }))).into_response()
    } else if details {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "not_ready": waiting })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false })),
        )
            .into_response()
    }
}

async fn pause(AxumState(pipelines): AxumState<Pipelines>, Path(name): Path<String>) -> Response {
    set_paused(&pipelines, &name, true)
}

async fn resume(AxumState(pipelines): AxumState<Pipelines>, Path(name): Path<String>) -> Response {
    set_paused(&pipelines, &name, false)
}

fn set_paused(pipelines: &Pipelines, name: &str, paused: bool) -> Response {
    let Some(pipeline) = pipelines.handle(name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no running pipeline named `{name}`"),
        );
    };
    pipeline.pause.send_replace(paused);
    let state = if paused {
        State::Paused
    } else {
        State::Running
    };
    pipelines.set_state(name, state, None);
    tracing::info!(pipeline = %name, paused, "pause set over the admin API");
    axum::Json(json!({ "pipeline": name, "paused": paused })).into_response()
}

/// A swap: the caller was let in from the head alone ([`guard`]); the body is read only
/// now, under the component limit, with at most [`MAX_CONCURRENT_SWAPS`] at once.
async fn swap(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let pipelines = &api.pipelines;
    let Some(pipeline) = pipelines.handle(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no running pipeline named `{name}`"),
        );
    };
    let mut config = Vec::new();
    let mut label = "a filter sent over the admin API".to_string();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "config" => match parse_key_value(&value) {
                Some(pair) => config.push(pair),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("config `{value}` is not key=value"),
                    );
                }
            },
            "label" => label = value.into_owned(),
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter `{other}`"),
                );
            }
        }
    }
    // The permit is held through the compile, which is what the cap is for.
    let Ok(_turn) = api.swaps.acquire().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the admin API is stopping".to_string(),
        );
    };
    let body = tokio::time::timeout(
        SWAP_BODY_TIMEOUT,
        axum::body::to_bytes(request.into_body(), MAX_COMPONENT_BYTES),
    )
    .await;
    let body = match body {
        Ok(Ok(body)) => body,
        Ok(Err(reason)) => {
            let too_long = reason.into_inner().is::<http_body_util::LengthLimitError>();
            return if too_long {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a filter component may have at most {MAX_COMPONENT_BYTES} bytes"),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    "the filter component was cut off".to_string(),
                )
            };
        }
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the filter component did not arrive within {SWAP_BODY_TIMEOUT:?}"),
            );
        }
    };
    let prepared = prepare(
        &pipeline.filters,
        label.clone(),
        Vec::from(body),
        config,
        &pipeline.context,
        pipeline.limits,
        &pipeline.probe,
    )
    .await;
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(reason) => {
            tracing::warn!(pipeline = %name, filter = %label, %reason, "filter swap refused");
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("swap refused, the running filter stays: {reason}"),
            );
        }
    };
    let (reply, version) = oneshot::channel();
    if pipeline
        .swaps
        .send(SwapRequest {
            filter: prepared,
            reply,
        })
        .await
        .is_err()
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline has stopped".to_string(),
        );
    }
    match version.await {
        Ok(version) => axum::Json(json!({ "pipeline": name, "version": version })).into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline stopped before the swap".to_string(),
        ),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}
