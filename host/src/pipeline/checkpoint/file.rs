//! The default checkpoint store: `STATE_DIR/pipelines/NAME/checkpoint.json`.
//!
//! Written atomically (temporary file, then rename), so a crash leaves either the old or the
//! new checkpoint, never a torn one. The file is 0600 in a 0700 directory, and the temporary
//! file is created exclusively, so a link planted in its place is refused
//! (`core::private_files`). Like the file sink's data, these writes reach the
//! kernel, which survives the process; `fsync` happens at shutdown, not per write. One
//! process owns the directory through the state lock (`state_lock.rs`), so claiming needs
//! nothing more than reading.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Checkpoint, CheckpointError, CheckpointStore, StoreFuture, StreamIdentity, StreamKey};
use crate::core::blocking::offload;
use crate::core::private_files;

/// On disk, `{"last_event_id": ..., "stream": {"url": ..., "headers": [...]}}`. Files
/// written before checkpoints knew their stream hold only the id; they still load.
#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    last_event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream: Option<StreamIdentity>,
}

/// One pipeline's checkpoint file.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// The checkpoint of `pipeline` under `state_dir` (its directory is created).
    pub fn open(state_dir: &Path, pipeline: &str) -> Result<Self, CheckpointError> {
        let dir = state_dir.join("pipelines").join(pipeline);
        private_files::create_dir(&dir).map_err(|source| CheckpointError::Io {
            action: "create the directory of",
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            path: dir.join("checkpoint.json"),
        })
    }
}

impl CheckpointStore for FileStore {
    fn claim(&mut self) -> StoreFuture<'_, Option<Checkpoint>> {
        let path = self.path.clone();
        Box::pin(offload(move || read(&path)))
    }

    fn save<'a>(&'a mut self, checkpoint: &'a Checkpoint, sync: bool) -> StoreFuture<'a, ()> {
        let path = self.path.clone();
        let body = serde_json::to_vec(&OnDisk {
            last_event_id: checkpoint.last_event_id.clone(),
            stream: checkpoint.stream.clone(),
        })
        .unwrap_or_default();
        Box::pin(offload(move || replace(&path, &body, sync)))
    }

    fn stream_key(&mut self) -> StoreFuture<'_, StreamKey> {
        // `STATE_DIR/pipelines/NAME/checkpoint.json`: the key is the state directory's.
        let state_dir = self
            .path
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Box::pin(offload(move || super::stream_key::of_state_dir(&state_dir)))
    }
}

fn read(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Io {
                action: "read",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let on_disk: OnDisk = serde_json::from_str(&text).map_err(|e| CheckpointError::Corrupt {
        location: path.display().to_string(),
        reason: e.to_string(),
        remedy: "move it away to start from the live edge",
    })?;
    Ok(Some(Checkpoint {
        last_event_id: on_disk.last_event_id,
        stream: on_disk.stream,
    }))
}

fn replace(path: &Path, body: &[u8], sync: bool) -> Result<(), CheckpointError> {
    let io = |action, source| CheckpointError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let temporary = path.with_extension("json.tmp");
    private_files::replace(path, &temporary, body, sync).map_err(|e| io("replace", e))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::ResumePolicy;
    use crate::pipeline::checkpoint::{Checkpoints, Resume};

    fn stream(url: &str) -> StreamIdentity {
        let parsed = url::Url::parse(url).expect("a URL");
        StreamIdentity::of(&parsed, url, &[], &StreamKey::random())
    }

    fn checkpoints(
        dir: &Path,
        stream: StreamIdentity,
        interval: Duration,
    ) -> Result<Checkpoints, CheckpointError> {
        Ok(Checkpoints::new(
            Box::new(FileStore::open(dir, "p")?),
            stream,
            interval,
        ))
    }

    #[tokio::test]
    async fn a_checkpoint_is_0600_in_a_0700_directory_and_a_planted_link_is_refused()
    -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: &Path| -> std::io::Result<u32> {
            Ok(fs::metadata(path)?.permissions().mode() & 0o777)
        };
        let dir = tempfile::tempdir()?;
        let mut store = FileStore::open(dir.path(), "p")?;
        let own = dir.path().join("pipelines/p");
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious")?;
        std::os::unix::fs::symlink(&victim, own.join("checkpoint.json.tmp"))?;
        let checkpoint = Checkpoint {
            last_event_id: "42".to_string(),
            stream: Some(stream("https://a.example/s")),
        };
        assert!(store.save(&checkpoint, false).await.is_err());
        assert_eq!(fs::read_to_string(&victim)?, "precious");

        fs::remove_file(own.join("checkpoint.json.tmp"))?;
        store.save(&checkpoint, true).await?;
        assert_eq!(mode(&own)?, 0o700);
        assert_eq!(mode(&own.join("checkpoint.json"))?, 0o600);
        assert_eq!(store.claim().await?, Some(checkpoint));
        Ok(())
    }

    #[tokio::test]
    async fn an_acknowledged_id_survives_a_reopen_with_its_stream()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let a = stream("https://a.example/s");
        let mut checkpoints = checkpoints(dir.path(), a.clone(), Duration::ZERO)?;
        assert_eq!(checkpoints.claim().await?, None);
        assert!(
            checkpoints.acknowledge("42"),
            "the first write is due at once"
        );
        checkpoints.write_pending().await?;
        assert!(
            checkpoints.acknowledge("43"),
            "with no interval, every write is due"
        );
        checkpoints.flush().await?;
        assert_eq!(
            FileStore::open(dir.path(), "p")?.claim().await?,
            Some(Checkpoint {
                last_event_id: "43".to_string(),
                stream: Some(a),
            })
        );
        Ok(())
    }

    #[tokio::test]
    async fn within_the_interval_an_acknowledged_id_waits_for_the_tick()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let a = stream("https://a.example/s");
        let mut checkpoints = checkpoints(dir.path(), a.clone(), Duration::from_secs(3600))?;
        let stored = async || -> Result<Option<String>, CheckpointError> {
            Ok(FileStore::open(dir.path(), "p")?
                .claim()
                .await?
                .map(|c| c.last_event_id))
        };
        assert!(checkpoints.acknowledge("1"));
        checkpoints.write_pending().await?;
        assert!(!checkpoints.acknowledge("2"), "the interval has not passed");
        assert!(checkpoints.has_pending());
        assert_eq!(stored().await?, Some("1".to_string()));
        checkpoints.write_pending().await?;
        assert!(!checkpoints.has_pending());
        assert_eq!(stored().await?, Some("2".to_string()));
        Ok(())
    }

    #[tokio::test]
    async fn an_old_checkpoint_without_its_stream_still_resumes()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut checkpoints =
            checkpoints(dir.path(), stream("https://a.example/s"), Duration::ZERO)?;
        fs::write(
            dir.path().join("pipelines/p/checkpoint.json"),
            r#"{"last_event_id":"7"}"#,
        )?;
        let found = checkpoints.claim().await?;
        assert_eq!(
            Resume::decide(ResumePolicy::Auto, found, &stream("https://b.example/s")),
            Resume::From("7".to_string())
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_corrupt_checkpoint_is_a_clear_error() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut checkpoints =
            checkpoints(dir.path(), stream("https://a.example/s"), Duration::ZERO)?;
        fs::write(dir.path().join("pipelines/p/checkpoint.json"), "{not json")?;
        let error = checkpoints.claim().await.err().ok_or("expected an error")?;
        assert!(error.to_string().contains("is corrupt"), "{error}");
        Ok(())
    }
}
