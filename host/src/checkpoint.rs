//! Checkpoints: per pipeline, the last event id whose records the sink has
//! acknowledged. A restart sends it as `Last-Event-ID`.
//!
//! Written atomically (temporary file, then rename), so a crash leaves either
//! the old or the new checkpoint, never a torn one. A write follows every
//! acknowledged batch, at most one per `min_interval` (20 ms; the pipeline
//! writes a pending one on its next tick), so a `kill -9` repeats at most the
//! records acknowledged in that interval. Like the file sink's data, these
//! writes reach the kernel, which survives the process; `fsync` happens at
//! shutdown (`flush`), not per batch.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    last_event_id: String,
}

/// Errors reading or writing a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot {action} checkpoint {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {path} is corrupt ({reason}); move it away to start from the live edge")]
    Corrupt { path: PathBuf, reason: String },
}

/// One pipeline's checkpoint file.
#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    pending: Option<String>,
    written: Option<String>,
    last_write: Option<Instant>,
    min_interval: Duration,
}

impl Checkpoints {
    /// The checkpoint of `pipeline` under `state_dir`.
    pub fn open(state_dir: &Path, pipeline: &str) -> Result<Self, CheckpointError> {
        let dir = state_dir.join("pipelines").join(pipeline);
        fs::create_dir_all(&dir).map_err(|source| CheckpointError::Io {
            action: "create the directory of",
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            path: dir.join("checkpoint.json"),
            pending: None,
            written: None,
            last_write: None,
            min_interval: Duration::from_millis(20),
        })
    }

    /// The stored last event id, if any.
    pub fn load(&self) -> Result<Option<String>, CheckpointError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    action: "read",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let on_disk: OnDisk =
            serde_json::from_str(&text).map_err(|e| CheckpointError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Some(on_disk.last_event_id).filter(|id| !id.is_empty()))
    }

    /// Notes that everything up to `last_event_id` is acknowledged; writes it
    /// if the last write is old enough.
    pub fn acknowledge(&mut self, last_event_id: &str) -> Result<(), CheckpointError> {
        // An id may legitimately become "" again (an empty `id:` field resets it).
        if self.pending.as_deref().or(self.written.as_deref()) == Some(last_event_id) {
            return Ok(());
        }
        self.pending = Some(last_event_id.to_string());
        if self
            .last_write
            .is_none_or(|t| t.elapsed() >= self.min_interval)
        {
            self.write(false)?;
        }
        Ok(())
    }

    /// Writes a pending checkpoint, if any (called on the pipeline's tick).
    pub fn write_pending(&mut self) -> Result<(), CheckpointError> {
        self.write(false)
    }

    /// Writes a pending checkpoint and syncs it to disk (at shutdown).
    pub fn flush(&mut self) -> Result<(), CheckpointError> {
        self.write(true)
    }

    fn write(&mut self, sync: bool) -> Result<(), CheckpointError> {
        let Some(id) = self.pending.take() else {
            return Ok(());
        };
        let io = |action, source| CheckpointError::Io {
            action,
            path: self.path.clone(),
            source,
        };
        let temporary = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(&OnDisk {
            last_event_id: id.clone(),
        })
        .unwrap_or_default();
        let mut file = fs::File::create(&temporary).map_err(|e| io("create", e))?;
        file.write_all(&body).map_err(|e| io("write", e))?;
        if sync {
            file.sync_all().map_err(|e| io("sync", e))?;
        }
        drop(file);
        fs::rename(&temporary, &self.path).map_err(|e| io("replace", e))?;
        self.last_write = Some(Instant::now());
        self.written = Some(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acknowledged_id_survives_a_reopen() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut checkpoints = Checkpoints::open(dir.path(), "p")?;
        assert_eq!(checkpoints.load()?, None);
        checkpoints.acknowledge("42")?;
        checkpoints.acknowledge("43")?;
        checkpoints.flush()?;
        assert_eq!(
            Checkpoints::open(dir.path(), "p")?.load()?,
            Some("43".to_string())
        );
        Ok(())
    }

    #[test]
    fn a_corrupt_checkpoint_is_a_clear_error() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let checkpoints = Checkpoints::open(dir.path(), "p")?;
        fs::write(dir.path().join("pipelines/p/checkpoint.json"), "{not json")?;
        let error = checkpoints.load().err().ok_or("expected an error")?;
        assert!(error.to_string().contains("corrupt"), "{error}");
        Ok(())
    }
}
