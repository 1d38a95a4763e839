//! `sse-ingest run`: one pipeline from flags.

use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use crate::admin::{self, Pipelines};
use crate::cli::RunArgs;
use crate::cli::exit::{self, Failure};
use crate::config::{FilterSpec, PipelineConfig};
use crate::core::metrics::Metrics;
use crate::pipeline::state_lock::{LockError, StateLock};
use crate::pipeline::{InitialFilter, Pipeline, PipelineEnd, PipelineError};
use crate::sink::{SinkError, SinkSpec};
use crate::wasm::components;
use crate::wasm::engine;
use crate::wasm::filter::FilterComponent;
use crate::wasm::filter::FilterError;
use crate::wasm::source::SourceComponent;

/// Runs the pipeline the flags describe; returns the exit code.
pub fn execute(mut args: RunArgs) -> Result<u8, Failure> {
    if let Some(path) = args.properties.clone() {
        crate::cli::seed::SeedProperties::load(&path)
            .map_err(Failure::usage)?
            .apply(&mut args);
    }
    let config = crate::cli::run_config::pipeline_config(&args).map_err(Failure::usage)?;
    // Before compiling or connecting anything: one process per pipeline state.
    let _lock = lock_state(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run(config))
}

/// Locks the pipeline's state directory and its file-sink directory; a second process on
/// them is a usage error (exit 2) naming the directory and the pipeline.
fn lock_state(config: &PipelineConfig) -> Result<StateLock, Failure> {
    let mut dirs = vec![config.state_dir.join("pipelines").join(&config.name)];
    if let SinkSpec::File(dir) = &config.sink {
        dirs.push(dir.join(&config.name));
    }
    StateLock::acquire(&config.name, &dirs).map_err(|error| match error {
        LockError::Held { .. } => Failure::usage(error),
        LockError::Io { .. } => Failure::failed(error),
    })
}

async fn run(config: PipelineConfig) -> Result<u8, Failure> {
    let engine = engine::new_engine(Some(&config.cache_dir))
        .map_err(|e| Failure::failed(format!("{e:#}")))?;
    let source = engine::compile(&engine, components::SOURCE, "the built-in source")
        .and_then(|c| SourceComponent::new(&engine, &c))
        .map_err(|e| Failure::failed(format!("{e:#}")))?;
    let filter_bytes = components::load_filter(&config.filter).map_err(Failure::usage)?;
    let filter_name = config.filter.label();
    let filter = engine::compile(&engine, &filter_bytes, &filter_name)
        .map_err(Failure::usage)
        .and_then(|c| {
            FilterComponent::new(&engine, &c)
                .map_err(|e| Failure::usage(format!("{filter_name}: {e}")))
        })?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let pipelines = Pipelines::default();
    let metrics = Metrics::register(pipelines.exposition(), &config.name);
    if let Some(addr) = config.admin {
        admin::bind(addr, pipelines.clone(), stop_rx.clone())
            .await
            .map_err(|e| Failure::usage(format!("cannot serve the admin API on {addr}: {e}")))?;
    }
    let watch_file = match (&config.filter, config.watch) {
        (FilterSpec::File(path), true) => Some((path.clone(), config.filter_config.clone())),
        _ => None,
    };
    let name = config.name.clone();
    let url = config.url.clone();
    let pipeline = Pipeline {
        config,
        engine: engine.clone(),
        source,
        filter: InitialFilter {
            label: filter_name,
            component: filter,
        },
        metrics: Arc::clone(&metrics),
    };
    tokio::spawn(stop_on_signal(stop_tx));
    let (ready_tx, ready_rx) = oneshot::channel::<crate::pipeline::PipelineHandle>();
    tokio::spawn(async move {
        if let Ok(handle) = ready_rx.await {
            if let Some((path, filter_config)) = watch_file
                && let Err(error) =
                    crate::admin::filter_watch::spawn(path, filter_config, handle.clone())
            {
                tracing::error!(%error, "cannot watch the filter file");
            }
            pipelines.add(handle);
        }
    });

    tracing::info!(pipeline = %name, %url, "starting");
    let result = pipeline.run(stop_rx, ready_tx).await;
    tracing::info!(
        pipeline = %name,
        events_received = metrics.events_received.get(),
        records_written = metrics.records_written.get(),
        oversized_events = metrics.oversized_events.get(),
        connections = metrics.connections.get(),
        duplicates_dropped = metrics.duplicates_dropped.get_label("reconnect")
            + metrics.duplicates_dropped.get_label("restart"),
        dead_letters = metrics.dead_letters.get(),
        filter_swaps = metrics.filter_swaps.get(),
        filter_rollbacks = metrics.filter_rollbacks.get(),
        "finished"
    );
    match result {
        Ok(PipelineEnd::EndOfStream | PipelineEnd::Stopped) => Ok(exit::OK),
        Ok(PipelineEnd::NoContent) => Err(Failure {
            code: exit::SERVER_SAID_STOP,
            message:
                "the server answered 204 No Content, which means \"stop reconnecting\"; stopped"
                    .to_string(),
        }),
        // A filter that refuses its configuration at start is a configuration error.
        Err(error @ PipelineError::Filter(FilterError::Init(_))) => Err(Failure::usage(error)),
        Err(error @ PipelineError::Resume(_)) => Err(Failure::usage(error)),
        // The reader of stdout is done with us: stop quietly, like any Unix tool.
        Err(PipelineError::Sink(SinkError::ReaderGone)) => Ok(exit::READER_GONE),
        Err(error) => Err(Failure::failed(error)),
    }
}

/// Turns SIGINT or SIGTERM into a stop request: read no more, write what was read.
async fn stop_on_signal(stop: watch::Sender<bool>) {
    let terminate = async {
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("stop requested: finishing what was received");
    let _ = stop.send(true);
}
