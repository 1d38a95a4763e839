//! The host side of the `source` world: one source component per pipeline.
//!
//! The component talks HTTP only through wasmtime-wasi-http with the
//! pipeline's `net::OutboundClient` (allowed origins, timeouts, TLS, proxies,
//! redirects); it hands batches over with `deliver`, which
//! waits while the pipeline's bounded queue is full — that wait is what makes
//! the guest stop reading and TCP push back on the server.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::config::PipelineConfig;
use crate::core::metrics::Metrics;
use crate::net::{FailureClass, OutboundClient, OutboundPolicy, ProxyRoutes};

/// Generated bindings of the `source` world (documented in `wit/pipeline.wit`).
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "source",
        imports: { default: async | trappable },
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
        },
    });
}

pub use bindings::sse_ingest::pipeline::source_host::{
    ConnectionEvent, DisconnectCause, SourceConfig,
};
pub use bindings::sse_ingest::pipeline::source_types::Finish;
pub use bindings::sse_ingest::pipeline::types::{Event, Level};
use bindings::{Source, SourcePre};

/// A batch as the source delivered it.
#[derive(Debug)]
pub struct SourceBatch {
    /// Events, in stream order, after the `types` filter.
    pub events: Vec<Event>,
    /// The stream's last-event-ID string after these events.
    pub last_event_id: String,
    /// Which connection of this run the events came on (from 1): a new one means the
    /// request resumed with `Last-Event-ID`, and replays are possible.
    pub connection: u64,
}

/// The store data of a source instance.
struct SourceState {
    pipeline: String,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    client: OutboundClient,
    limits: StoreLimits,
    batches: mpsc::Sender<SourceBatch>,
    stop: watch::Receiver<bool>,
    /// While true, `deliver` waits: the source stops reading and TCP pushes back.
    pause: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    /// Connections announced so far (`report(connected)`).
    connections: u64,
}

impl WasiView for SourceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for SourceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.client,
        }
    }
}

/// How the pipeline steers a running source.
#[derive(Debug, Clone)]
pub struct SourceControl {
    /// True: stop reading, finish what was read.
    pub stop: watch::Receiver<bool>,
    /// True: hold the next batch (and so stop reading) until false again.
    pub pause: watch::Receiver<bool>,
}

/// A pollable that becomes ready when the host asks the source to stop.
struct StopSignal(watch::Receiver<bool>);

#[wasmtime_wasi::async_trait]
impl Pollable for StopSignal {
    async fn ready(&mut self) {
        // A dropped sender means the host is gone: that is a stop too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

impl bindings::sse_ingest::pipeline::source_host::Host for SourceState {
    async fn deliver(&mut self, events: Vec<Event>, last_event_id: String) -> wasmtime::Result<()> {
        if *self.pause.borrow() {
            tracing::info!(pipeline = %self.pipeline, "paused: reading stops until resumed");
            let (mut pause, mut stop) = (self.pause.clone(), self.stop.clone());
            // A stop while paused drains what was read, like any stop.
            tokio::select! {
                _ = pause.wait_for(|paused| !*paused) => {}
                _ = stop.wait_for(|stop| *stop) => {}
            }
            tracing::info!(pipeline = %self.pipeline, "resumed");
        }
        self.metrics.events_received.add(events.len() as u64);
        self.metrics
            .bytes_received
            .add(events.iter().map(|event| event.data.len() as u64).sum());
        let batch = SourceBatch {
            events,
            last_event_id,
            connection: self.connections,
        };
        if self.batches.send(batch).await.is_err() {
            wasmtime::bail!("the pipeline stopped accepting events");
        }
        Ok(())
    }

    async fn report(&mut self, happening: ConnectionEvent) -> wasmtime::Result<()> {
        match happening {
            ConnectionEvent::Connected => {
                self.connections += 1;
                self.metrics.connections.inc();
                self.metrics.connected.set(1);
                tracing::info!(pipeline = %self.pipeline, "connected");
            }
            ConnectionEvent::Reconnecting(info) => {
                // The client recorded the class of a transport failure; the guest only
                // passes its sentence along.
                let failure = self.client.failures().take();
                let cause = match (&info.cause, &failure) {
                    (DisconnectCause::Network(_), Some(failure)) => failure.class.label(),
                    _ => cause_label(&info.cause),
                };
                self.metrics.reconnects.inc_label(cause);
                self.metrics.connected.set(0);
                if let Ok(mut last) = self.metrics.last_disconnect.lock() {
                    *last = cause_detail(&info.cause);
                }
                tracing::warn!(
                    pipeline = %self.pipeline,
                    cause,
                    detail = %cause_detail(&info.cause),
                    attempt = info.attempt,
                    delay_ms = info.delay_ms,
                    "reconnecting"
                );
            }
        }
        Ok(())
    }

    async fn stop_requested(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        let signal = self.table.push(StopSignal(self.stop.clone()))?;
        subscribe(&mut self.table, signal)
    }

    async fn oversized_event(&mut self, discarded_bytes: u64) -> wasmtime::Result<()> {
        self.metrics.oversized_events.inc();
        tracing::warn!(pipeline = %self.pipeline, discarded_bytes, "dropped an oversized event");
        Ok(())
    }

    async fn oversized_id(&mut self, id_bytes: u64) -> wasmtime::Result<()> {
        self.metrics.oversized_ids.inc();
        tracing::warn!(
            pipeline = %self.pipeline,
            id_bytes,
            max_id_bytes = crate::config::sizing::MAX_ID_BYTES,
            "an event's id is too long to keep: delivered without it; a reconnect resumes from the last id that fit"
        );
        Ok(())
    }
}

impl bindings::sse_ingest::pipeline::log::Host for SourceState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        log_from_guest(&self.pipeline, "source", level, &message);
        Ok(())
    }
}

impl bindings::sse_ingest::pipeline::types::Host for SourceState {}
impl bindings::sse_ingest::pipeline::source_types::Host for SourceState {}

/// Writes a guest's log line with the host's logger.
pub fn log_from_guest(pipeline: &str, component: &str, level: Level, message: &str) {
    match level {
        Level::Trace => tracing::trace!(pipeline, component, "{message}"),
        Level::Debug => tracing::debug!(pipeline, component, "{message}"),
        Level::Info => tracing::info!(pipeline, component, "{message}"),
        Level::Warn => tracing::warn!(pipeline, component, "{message}"),
        Level::Error => tracing::error!(pipeline, component, "{message}"),
    }
}

/// A stable metric label for a disconnect cause the guest reported; transport failures
/// get their class from the client's `net::failure::FailureSlot` instead (`dns`, `connect`,
/// `tls`, `timeout`, `reset`, `proxy`, `redirect`, `protocol`).
pub fn cause_label(cause: &DisconnectCause) -> &'static str {
    match cause {
        DisconnectCause::EndOfStream => "end_of_stream",
        DisconnectCause::Network(_) => "protocol",
        DisconnectCause::HttpStatus(_) => "status",
        DisconnectCause::ContentType(_) => "content_type",
    }
}

fn cause_detail(cause: &DisconnectCause) -> String {
    match cause {
        DisconnectCause::EndOfStream => "the server closed the stream".to_string(),
        DisconnectCause::Network(reason) => reason.clone(),
        DisconnectCause::HttpStatus(status) => format!("HTTP {status}"),
        DisconnectCause::ContentType(found) => format!("content type {found}"),
    }
}

/// The source component, linked and ready to instantiate per pipeline.
#[derive(Clone)]
pub struct SourceComponent {
    pre: SourcePre<SourceState>,
}

impl std::fmt::Debug for SourceComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceComponent").finish_non_exhaustive()
    }
}

/// How a source run ended.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The component returned an error meant for the operator.
    #[error("{0}")]
    Stream(String),
    /// The component trapped or could not be instantiated.
    #[error("the source component failed: {0:#}")]
    Component(anyhow::Error),
}

impl SourceComponent {
    /// Links the component against wasi (empty capabilities), wasi-http and our interfaces.
    pub fn new(
        engine: &Engine,
        component: &wasmtime::component::Component,
    ) -> anyhow::Result<Self> {
        let mut linker: Linker<SourceState> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)?;
        bindings::sse_ingest::pipeline::source_host::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(anyhow::Error::from)?;
        bindings::sse_ingest::pipeline::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)?;
        let pre = SourcePre::new(pre).map_err(anyhow::Error::from)?;
        Ok(Self { pre })
    }

    /// Runs the source until the stream ends, it is stopped, or it fails.
    pub async fn run(
        &self,
        config: &PipelineConfig,
        last_event_id: Option<String>,
        batches: mpsc::Sender<SourceBatch>,
        control: SourceControl,
        metrics: Arc<Metrics>,
    ) -> Result<Finish, SourceError> {
        let SourceControl { stop, pause } = control;
        let memory_limit = crate::config::sizing::source_memory_limit(
            config.max_event_bytes,
            config.batch_max_bytes,
        );
        let network = &config.network;
        let client = OutboundClient::new(
            &config.name,
            OutboundPolicy::new(
                &config.url,
                &network.allowed_origins,
                config.connect_timeout,
                config.idle_timeout,
            ),
            std::sync::Arc::clone(&network.tls),
            ProxyRoutes::new(&network.proxy),
        )
        .dropping_on_cross_origin(cross_origin_drops(config))
        .observe_statuses({
            let metrics = Arc::clone(&metrics);
            Arc::new(move |status| metrics.http_statuses.inc_label(&status.to_string()))
        });
        let state = SourceState {
            pipeline: config.name.clone(),
            wasi: WasiCtx::builder().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            client: client.clone(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .trap_on_grow_failure(true)
                .build(),
            batches,
            stop,
            pause,
            metrics,
            connections: 0,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        // The source is trusted to loop (it streams forever); at every epoch
        // tick it yields so that it never holds a worker thread for long.
        store.epoch_deadline_async_yield_and_update(1);
        let source: Source = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| SourceError::Component(e.into()))?;
        let guest_config = guest_config(config, last_event_id);
        match source.call_run(&mut store, &guest_config).await {
            Ok(Ok(finish)) => Ok(finish),
            Ok(Err(message)) => {
                // A denied request is the guest's to stop on, but the client knows which
                // origin it was and how to allow it.
                let message = match client.failures().take() {
                    Some(failure) if failure.class == FailureClass::Denied => failure.sentence,
                    _ => message,
                };
                Err(SourceError::Stream(message))
            }
            Err(trap) => Err(SourceError::Component(trap.into())),
        }
    }
}

fn guest_config(config: &PipelineConfig, last_event_id: Option<String>) -> SourceConfig {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let policy = &config.reconnect;
    SourceConfig {
        url: config.url.to_string(),
        headers: request_headers(config),
        types: config.types.clone(),
        last_event_id,
        max_event_bytes: config.max_event_bytes,
        batch_max_events: config.batch_max_events,
        batch_max_bytes: config.batch_max_bytes,
        max_id_bytes: crate::config::sizing::MAX_ID_BYTES,
        reconnect: policy.enabled,
        initial_delay_ms: ms(policy.initial_delay),
        min_delay_ms: ms(policy.min_delay),
        max_delay_ms: ms(policy.max_delay),
        reset_after_ms: ms(policy.reset_after),
        fatal_statuses: policy.fatal_statuses.clone(),
        fatal_content_type: policy.fatal_content_type,
    }
}

/// The user's headers that a redirect to another origin drops: all but `User-Agent` (which
/// says who asks, and is no credential), none with `--keep-headers-on-redirect`.
fn cross_origin_drops(config: &PipelineConfig) -> Vec<http::HeaderName> {
    if config.network.keep_headers_on_redirect {
        return Vec::new();
    }
    config
        .headers
        .iter()
        .filter_map(|(name, _)| http::HeaderName::from_bytes(name.as_bytes()).ok())
        .filter(|name| *name != http::header::USER_AGENT)
        .collect()
}

/// The user's headers, with `User-Agent` first unless the user set one with `--header`.
fn request_headers(config: &PipelineConfig) -> Vec<(String, String)> {
    let mut headers = Vec::with_capacity(config.headers.len() + 1);
    if !config
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("user-agent"))
    {
        headers.push(("User-Agent".to_string(), config.network.user_agent.clone()));
    }
    headers.extend(config.headers.iter().cloned());
    headers
}
