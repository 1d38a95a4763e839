//! Checkpoints: per pipeline, the last event id whose records the sink has
//! acknowledged, and the stream it belongs to. A restart of the same stream sends it as
//! `Last-Event-ID`; a checkpoint of another stream is never sent ([`Resume::decide`]).
//!
//! Written atomically (temporary file, then rename), so a crash leaves either
//! the old or the new checkpoint, never a torn one. A write follows an
//! acknowledged batch, at most one per `--checkpoint-interval-ms` (1 s by default; the
//! pipeline writes a pending one on its next tick), so a `kill -9` repeats at most the
//! records acknowledged in that interval. Writing after every batch cost a file create and
//! a rename per batch: with a thousand quiet pipelines, most of the process's CPU. Like the file sink's data, these
//! writes reach the kernel, which survives the process; `fsync` happens at
//! shutdown (`flush`), not per batch.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::ResumePolicy;

/// On disk, `{"last_event_id": ..., "stream": {"url": ..., "headers": [...]}}`. Files
/// written before checkpoints knew their stream hold only the id; they still load.
#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    last_event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream: Option<StreamIdentity>,
}

/// What identifies the stream a checkpoint belongs to: the URL and the request headers
/// that select content. Credentials never go in (any header whose name mentions auth,
/// token, secret, password, key, cookie or session), nor the User-Agent, which says who
/// asks, not what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamIdentity {
    /// The configured URL.
    pub url: String,
    /// Content-selecting headers, names in lower case, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

impl StreamIdentity {
    /// The identity of the stream `url` with `headers`.
    pub fn of(url: &str, headers: &[(String, String)]) -> Self {
        const PRIVATE: [&str; 7] = [
            "auth", "token", "secret", "password", "key", "cookie", "session",
        ];
        let mut selecting: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .filter(|(name, _)| {
                name != "user-agent" && !PRIVATE.iter().any(|word| name.contains(word))
            })
            .collect();
        selecting.sort();
        Self {
            url: url.to_string(),
            headers: selecting,
        }
    }
}

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last event id whose records were all acknowledged.
    pub last_event_id: String,
    /// The stream it belongs to; `None` in files from before checkpoints knew.
    pub stream: Option<StreamIdentity>,
}

/// What a start does with what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Send this id as `Last-Event-ID`.
    From(String),
    /// Start from the live edge; the reason is logged when there is one.
    LiveEdge(Option<String>),
    /// Do not start (`--resume require` and a checkpoint of another stream).
    Refuse(String),
}

impl Resume {
    /// Decides, by `policy`, whether `found` is resumed for the stream `current`.
    pub fn decide(
        policy: ResumePolicy,
        found: Option<Checkpoint>,
        current: &StreamIdentity,
    ) -> Self {
        let Some(found) = found else {
            return Self::LiveEdge(None);
        };
        if policy == ResumePolicy::Never {
            return Self::LiveEdge(Some("--resume never".to_string()));
        }
        match &found.stream {
            Some(stream) if stream != current => {
                let why = if stream.url == current.url {
                    format!(
                        "the checkpoint belongs to {} with other request headers",
                        stream.url
                    )
                } else {
                    format!(
                        "the checkpoint belongs to {}, not to {}",
                        stream.url, current.url
                    )
                };
                match policy {
                    ResumePolicy::Require => Self::Refuse(format!(
                        "{why} (--resume require); use another --name or --state-dir, or \
                         --resume auto to start this stream from its live edge"
                    )),
                    _ => Self::LiveEdge(Some(why)),
                }
            }
            _ => Self::From(found.last_event_id),
        }
    }
}

/// Errors reading or writing a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("cannot {action} checkpoint {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The checkpoint file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The file is not a checkpoint.
    #[error("checkpoint {path} is corrupt ({reason}); move it away to start from the live edge")]
    Corrupt {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// One pipeline's checkpoint file.
#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    stream: StreamIdentity,
    pending: Option<String>,
    written: Option<String>,
    last_write: Option<Instant>,
    min_interval: Duration,
}

impl Checkpoints {
    /// The checkpoint of `pipeline` under `state_dir`, written for `stream`.
    pub fn open(
        state_dir: &Path,
        pipeline: &str,
        stream: StreamIdentity,
        min_interval: Duration,
    ) -> Result<Self, CheckpointError> {
        let dir = state_dir.join("pipelines").join(pipeline);
        fs::create_dir_all(&dir).map_err(|source| CheckpointError::Io {
            action: "create the directory of",
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            path: dir.join("checkpoint.json"),
            stream,
            pending: None,
            written: None,
            last_write: None,
            min_interval,
        })
    }

    /// The stored checkpoint, if any (one with an empty id counts as none).
    pub fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
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
        Ok(Some(Checkpoint {
            last_event_id: on_disk.last_event_id,
            stream: on_disk.stream,
        })
        .filter(|checkpoint| !checkpoint.last_event_id.is_empty()))
    }

    /// Notes that everything up to `last_event_id` is acknowledged; returns whether the
    /// interval since the last write has passed, so the caller writes it now
    /// ([`Checkpoints::write_pending`], on a blocking thread) rather than on the next tick.
    pub fn acknowledge(&mut self, last_event_id: &str) -> bool {
        // An id may legitimately become "" again (an empty `id:` field resets it).
        if self.pending.as_deref().or(self.written.as_deref()) == Some(last_event_id) {
            return false;
        }
        self.pending = Some(last_event_id.to_string());
        self.last_write
            .is_none_or(|t| t.elapsed() >= self.min_interval)
    }

    /// Whether an acknowledged id waits to be written.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
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
            stream: Some(self.stream.clone()),
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

    fn stream(url: &str) -> StreamIdentity {
        StreamIdentity::of(url, &[])
    }

    #[test]
    fn an_acknowledged_id_survives_a_reopen_with_its_stream()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let a = stream("https://a.example/s");
        let mut checkpoints = Checkpoints::open(dir.path(), "p", a.clone(), Duration::ZERO)?;
        assert_eq!(checkpoints.load()?, None);
        assert!(
            checkpoints.acknowledge("42"),
            "the first write is due at once"
        );
        checkpoints.write_pending()?;
        assert!(
            checkpoints.acknowledge("43"),
            "with no interval, every write is due"
        );
        checkpoints.flush()?;
        assert_eq!(
            Checkpoints::open(dir.path(), "p", a.clone(), Duration::ZERO)?.load()?,
            Some(Checkpoint {
                last_event_id: "43".to_string(),
                stream: Some(a),
            })
        );
        Ok(())
    }

    #[test]
    fn within_the_interval_an_acknowledged_id_waits_for_the_tick()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let a = stream("https://a.example/s");
        let mut checkpoints = Checkpoints::open(dir.path(), "p", a, Duration::from_secs(3600))?;
        assert!(checkpoints.acknowledge("1"));
        checkpoints.write_pending()?;
        assert!(!checkpoints.acknowledge("2"), "the interval has not passed");
        assert!(checkpoints.has_pending());
        assert_eq!(
            checkpoints.load()?.map(|c| c.last_event_id),
            Some("1".to_string())
        );
        checkpoints.write_pending()?;
        assert!(!checkpoints.has_pending());
        assert_eq!(
            checkpoints.load()?.map(|c| c.last_event_id),
            Some("2".to_string())
        );
        Ok(())
    }

    #[test]
    fn an_old_checkpoint_without_its_stream_still_resumes() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let checkpoints = Checkpoints::open(
            dir.path(),
            "p",
            stream("https://a.example/s"),
            Duration::ZERO,
        )?;
        fs::write(
            dir.path().join("pipelines/p/checkpoint.json"),
            r#"{"last_event_id":"7"}"#,
        )?;
        let found = checkpoints.load()?;
        assert_eq!(
            Resume::decide(ResumePolicy::Auto, found, &stream("https://b.example/s")),
            Resume::From("7".to_string())
        );
        Ok(())
    }

    #[test]
    fn a_checkpoint_of_another_stream_is_not_resumed() {
        let found = Some(Checkpoint {
            last_event_id: "7".to_string(),
            stream: Some(stream("https://a.example/s")),
        });
        let b = stream("https://b.example/s");
        let Resume::LiveEdge(Some(why)) = Resume::decide(ResumePolicy::Auto, found.clone(), &b)
        else {
            panic!("auto starts from the live edge");
        };
        assert!(why.contains("https://a.example/s") && why.contains("https://b.example/s"));
        assert!(matches!(
            Resume::decide(ResumePolicy::Require, found.clone(), &b),
            Resume::Refuse(_)
        ));
        assert_eq!(
            Resume::decide(ResumePolicy::Never, found, &stream("https://a.example/s")),
            Resume::LiveEdge(Some("--resume never".to_string()))
        );
    }

    #[test]
    fn credentials_and_the_user_agent_are_not_part_of_a_streams_identity() {
        let headers = [
            ("Authorization".to_string(), "Bearer 1".to_string()),
            ("X-Api-Key".to_string(), "k".to_string()),
            ("User-Agent".to_string(), "me".to_string()),
            ("Accept-Language".to_string(), "en".to_string()),
        ];
        let identity = StreamIdentity::of("https://a.example/s", &headers);
        assert_eq!(
            identity.headers,
            vec![("accept-language".to_string(), "en".to_string())]
        );
        let other_token = [("Authorization".to_string(), "Bearer 2".to_string())];
        assert_eq!(
            StreamIdentity::of("https://a.example/s", &other_token),
            StreamIdentity::of("https://a.example/s", &[])
        );
    }

    #[test]
    fn a_corrupt_checkpoint_is_a_clear_error() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let checkpoints = Checkpoints::open(
            dir.path(),
            "p",
            stream("https://a.example/s"),
            Duration::ZERO,
        )?;
        fs::write(dir.path().join("pipelines/p/checkpoint.json"), "{not json")?;
        let error = checkpoints.load().err().ok_or("expected an error")?;
        assert!(error.to_string().contains("corrupt"), "{error}");
        Ok(())
    }
}
