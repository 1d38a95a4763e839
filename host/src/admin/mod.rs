//! The admin HTTP API (`run --admin ADDR`, or `[admin]` in a config file).
//!
//! | method and path | what |
//! |---|---|
//! | `GET /health` (alias `/healthz`) | `ok` while the process lives |
//! | `GET /ready` | 200 when every pipeline is connected or was stopped on purpose; else 503 with each reason |
//! | `GET /metrics` | every pipeline's metrics, one OpenMetrics document |
//! | `GET /pipelines`, `GET /pipelines/{name}` | state, URL, filter and version, connection, last event age, counters |
//! | `POST /pipelines/{name}/filter?config=k%3Dv&label=…` | body: a filter component; validated, then swapped in between two batches |
//! | `POST /pipelines/{name}/pause`, `/resume` | stop reading (TCP pushes back), then go on: on the same connection if the server kept it, else reconnecting with `Last-Event-ID` |
//!
//! Built on axum (hyper underneath, already in the tree through wasi-http). With a token
//! set, mutating endpoints need `Authorization: Bearer TOKEN`; a non-loopback address
//! needs a token unless the operator said `allow_unauthenticated`.

pub mod filter_watch;
mod status;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::config::{Redactor, parse_key_value};
use crate::core::metrics::{CONTENT_TYPE, Exposition, Metrics};
use crate::pipeline::filter_stage::prepare;
use crate::pipeline::{PipelineHandle, SwapRequest};

use status::Entry;
pub use status::State;

/// Largest filter component accepted over the API.
const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

/// The pipelines the API can reach, by name, and the process's metrics.
#[derive(Debug, Clone, Default)]
pub struct Pipelines {
    entries: Arc<RwLock<BTreeMap<String, Entry>>>,
    exposition: Exposition,
    token: Option<String>,
    redactor: Redactor,
}

impl Pipelines {
    /// An empty registry; `token` guards the mutating endpoints, `redactor` every answer.
    pub fn new(token: Option<String>, redactor: Redactor) -> Self {
        Self {
            token,
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

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
    }
}

/// Compares without stopping at the first difference, so timing tells nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Binds the address now (so a bad address fails at start) and serves until `stop`.
pub async fn bind(
    addr: SocketAddr,
    pipelines: Pipelines,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "admin API listening");
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
        .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
        .with_state(pipelines);
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "admin API stopped");
        }
    }))
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

async fn ready(AxumState(pipelines): AxumState<Pipelines>) -> Response {
    let waiting = pipelines.not_ready();
    if waiting.is_empty() {
        (StatusCode::OK, axum::Json(json!({ "ready": true }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "not_ready": waiting })),
        )
            .into_response()
    }
}

async fn pause(
    AxumState(pipelines): AxumState<Pipelines>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    set_paused(&pipelines, &name, &headers, true)
}

async fn resume(
    AxumState(pipelines): AxumState<Pipelines>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    set_paused(&pipelines, &name, &headers, false)
}

fn set_paused(pipelines: &Pipelines, name: &str, headers: &HeaderMap, paused: bool) -> Response {
    if !pipelines.authorized(headers) {
        return unauthorized();
    }
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

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "this endpoint needs `Authorization: Bearer TOKEN` (the admin token)".to_string(),
    )
}

async fn swap(
    AxumState(pipelines): AxumState<Pipelines>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !pipelines.authorized(&headers) {
        return unauthorized();
    }
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
    let prepared = prepare(
        &pipeline.filters,
        label.clone(),
        body.to_vec(),
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
