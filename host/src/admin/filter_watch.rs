//! `run --watch`: swap the filter in whenever its file changes.
//!
//! Watches the file's folder (an editor or a build writes a new file and
//! renames it over the old one, which a watch on the file itself would
//! lose), waits for writes to settle, then prepares and swaps exactly like
//! the admin API does. A file that fails validation is logged and the
//! running filter stays.

use std::path::PathBuf;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, oneshot};

use crate::pipeline::filter_stage::prepare;
use crate::pipeline::{PipelineHandle, SwapRequest};

/// How long the file must be quiet before it is read.
const SETTLE: Duration = Duration::from_millis(150);

/// Watches `path` and swaps it into `pipeline` on every change, until the pipeline stops.
pub fn spawn(
    path: PathBuf,
    config: Vec<(String, String)>,
    pipeline: PipelineHandle,
) -> notify::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let file_name = path.file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let touches_file = event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == file_name);
            if touches_file && (event.kind.is_create() || event.kind.is_modify()) {
                let _ = tx.send(());
            }
        }
    })?;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    watcher.watch(&folder, RecursiveMode::NonRecursive)?;
    tracing::info!(pipeline = %pipeline.name, filter = %path.display(), "watching the filter file");
    tokio::spawn(async move {
        let _watcher = watcher; // lives as long as this task
        while rx.recv().await.is_some() {
            // Let a burst of writes settle.
            while let Ok(Some(())) = tokio::time::timeout(SETTLE, rx.recv()).await {}
            swap_from_file(&path, &config, &pipeline).await;
            if pipeline.swaps.is_closed() {
                break;
            }
        }
    });
    Ok(())
}

async fn swap_from_file(
    path: &std::path::Path,
    config: &[(String, String)],
    pipeline: &PipelineHandle,
) {
    let label = path.display().to_string();
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(filter = %label, %error, "watched filter cannot be read; the running filter stays");
            return;
        }
    };
    let prepared = prepare(
        &pipeline.filters,
        label.clone(),
        bytes,
        config.to_vec(),
        &pipeline.context,
        pipeline.limits,
        &pipeline.probe,
    )
    .await;
    match prepared {
        Ok(filter) => {
            let (reply, version) = oneshot::channel();
            if pipeline
                .swaps
                .send(SwapRequest { filter, reply })
                .await
                .is_ok()
                && let Ok(version) = version.await
            {
                tracing::info!(pipeline = %pipeline.name, filter = %label, version, "watched filter swapped in");
            }
        }
        Err(reason) => {
            tracing::warn!(pipeline = %pipeline.name, filter = %label, %reason, "watched filter refused; the running filter stays");
        }
    }
}
