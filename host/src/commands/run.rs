//! `sse-ingest run`: one pipeline from flags.

use std::sync::Arc;

use tokio::sync::watch;

use crate::cli::RunArgs;
use crate::components;
use crate::config::{FilterSpec, PipelineConfig};
use crate::engine;
use crate::exit::{self, Failure};
use crate::filter::FilterComponent;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineEnd};
use crate::source::SourceComponent;

/// Runs the pipeline the flags describe; returns the exit code.
pub fn execute(args: RunArgs) -> Result<u8, Failure> {
    let config = PipelineConfig::from_run_args(&args).map_err(Failure::usage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run(config))
}

async fn run(config: PipelineConfig) -> Result<u8, Failure> {
    let engine = engine::new_engine(Some(&config.cache_dir))
        .map_err(|e| Failure::failed(format!("{e:#}")))?;
    let source = engine::compile(&engine, components::SOURCE, "the built-in source")
        .and_then(|c| SourceComponent::new(&engine, &c))
        .map_err(|e| Failure::failed(format!("{e:#}")))?;
    let filter_bytes = match &config.filter {
        FilterSpec::Builtin(name) => components::builtin_filter(name)
            .ok_or_else(|| {
                Failure::usage(format!(
                    "unknown filter `{name}` (built-in: {}; or give a .wasm file)",
                    components::builtin_filter_names().join(", ")
                ))
            })?
            .to_vec(),
        FilterSpec::File(path) => std::fs::read(path)
            .map_err(|e| Failure::usage(format!("cannot read filter {}: {e}", path.display())))?,
    };
    let filter_name = match &config.filter {
        FilterSpec::Builtin(name) => format!("built-in filter `{name}`"),
        FilterSpec::File(path) => format!("filter {}", path.display()),
    };
    let filter = engine::compile(&engine, &filter_bytes, &filter_name)
        .map_err(Failure::usage)
        .and_then(|c| {
            FilterComponent::new(&engine, &c)
                .map_err(|e| Failure::usage(format!("{filter_name}: {e}")))
        })?;

    let metrics = Metrics::new(&config.name);
    let pipeline = Pipeline {
        config,
        source,
        filter,
        metrics: Arc::clone(&metrics),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(stop_on_signal(stop_tx));

    tracing::info!(pipeline = %pipeline.config.name, url = %pipeline.config.url, "starting");
    let result = pipeline.run(stop_rx).await;
    tracing::info!(
        pipeline = %pipeline.config.name,
        events_received = metrics.events_received.get(),
        records_written = metrics.records_written.get(),
        oversized_events = metrics.oversized_events.get(),
        connections = metrics.connections.get(),
        duplicates_dropped = metrics.duplicates_dropped.get(),
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
