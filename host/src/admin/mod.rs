//! The admin HTTP API (`run --admin ADDR`): health, metrics, status, swaps.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /healthz` | `ok` while the process runs |
//! | `GET /metrics` | every pipeline's counters, Prometheus text format |
//! | `GET /pipelines` | name, running filter version and main counters of each pipeline |
//! | `POST /pipelines/{name}/filter?config=k%3Dv&label=…` | body: a filter component; validated, then swapped in between two batches |
//!
//! Built on axum (hyper underneath, already in the tree through wasi-http),
//! bound to the address the operator gives; there is no authentication, so
//! bind it to loopback or a private interface.

pub mod filter_watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::config::parse_key_value;
use crate::core::metrics::{CONTENT_TYPE, Exposition};
use crate::pipeline::filter_stage::prepare;
use crate::pipeline::{PipelineHandle, SwapRequest};

/// Largest filter component accepted over the API.
const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

/// The pipelines the API can reach, by name, and the process's metrics.
#[derive(Debug, Clone, Default)]
pub struct Pipelines(Arc<RwLock<BTreeMap<String, PipelineHandle>>>, Exposition);

impl Pipelines {
    /// Where every pipeline registers its metrics, so `/metrics` is one document.
    pub fn exposition(&self) -> &Exposition {
        &self.1
    }

    /// Makes a running pipeline reachable.
    pub fn add(&self, handle: PipelineHandle) {
        if let Ok(mut map) = self.0.write() {
            map.insert(handle.name.clone(), handle);
        }
    }

    fn get(&self, name: &str) -> Option<PipelineHandle> {
        self.0.read().ok().and_then(|map| map.get(name).cloned())
    }

    fn all(&self) -> Vec<PipelineHandle> {
        self.0
            .read()
            .map(|map| map.values().cloned().collect())
            .unwrap_or_default()
    }
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
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/pipelines", get(list))
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

async fn metrics(State(pipelines): State<Pipelines>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        pipelines.exposition().render(),
    )
        .into_response()
}

async fn list(State(pipelines): State<Pipelines>) -> Response {
    let list: Vec<_> = pipelines
        .all()
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "filter_version": *p.version.borrow(),
                "events_received": p.metrics.events_received.get(),
                "records_written": p.metrics.records_written.get(),
                "dead_letters": p.metrics.dead_letters.get(),
            })
        })
        .collect();
    axum::Json(json!({ "pipelines": list })).into_response()
}

async fn swap(
    State(pipelines): State<Pipelines>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let Some(pipeline) = pipelines.get(&name) else {
        return error(StatusCode::NOT_FOUND, format!("no pipeline named `{name}`"));
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
        &pipeline.engine,
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
