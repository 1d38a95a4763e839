//! Checkpoints: per pipeline, the last event id whose records the sink has
//! acknowledged, and the stream it belongs to. A restart of the same stream sends it as
//! `Last-Event-ID`; a checkpoint of another stream is never sent ([`Resume::decide`]).
//!
//! Where they are kept is a [`CheckpointStore`]: a file in the state directory
//! ([`file::FileStore`], the default) or an item in a DynamoDB table
//! ([`dynamodb::DynamoDbStore`], `--checkpoint-store dynamodb:TABLE`), which outlives the
//! machine, so a pipeline can move to another replica and go on where it was.
//!
//! A write follows an acknowledged batch, at most one per `--checkpoint-interval-ms` (1 s by
//! default; the pipeline writes a pending one on its next tick), so a `kill -9` or a
//! takeover repeats at most the records acknowledged in that interval. Writing after every
//! batch cost a file create and a rename per batch: with a thousand quiet pipelines, most of
//! the process's CPU.

pub mod dynamodb;
#[cfg(test)]
mod fake_dynamodb;
pub mod file;
pub mod heartbeat;
pub mod stream_key;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{CheckpointStoreSpec, ResumePolicy};
use crate::core::metrics::Metrics;
use heartbeat::Fencing;
pub use stream_key::StreamKey;

/// What identifies the stream a checkpoint belongs to: the URL and the request headers
/// that select content. Credentials never go in (any header whose name mentions auth,
/// token, secret, password, key, cookie or session), nor the User-Agent, which says who
/// asks, not what. The URL is kept as it is shown (no userinfo, credential query values
/// hidden) beside a keyed digest of the URL as requested ([`stream_key`]), which tells
/// streams apart exactly without holding their credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamIdentity {
    /// The configured URL as shown; in checkpoints from before digests, the URL itself.
    pub url: String,
    /// `hmac-sha256:HEX` of the requested URL; `None` in checkpoints from before digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_digest: Option<String>,
    /// Content-selecting headers, names in lower case, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

impl StreamIdentity {
    /// The identity of the stream at `url` (as requested: no userinfo), shown as `shown`,
    /// with `headers`; its digest made with `key`.
    pub fn of(url: &url::Url, shown: &str, headers: &[(String, String)], key: &StreamKey) -> Self {
        Self {
            url: shown.to_string(),
            url_digest: Some(key.digest(url.as_str())),
            ..Self::without_digest(shown, headers)
        }
    }

    /// An identity from before digests: `url` as it was stored.
    fn without_digest(url: &str, headers: &[(String, String)]) -> Self {
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
            url_digest: None,
            headers: selecting,
        }
    }

    /// A stored identity in today's form: one from before digests held the configured URL
    /// itself (userinfo and tokens included). It gets its digest and its shown form here,
    /// so it still resumes, and the next write stores no credential. A URL that does not
    /// parse stays as it is (and matches no stream).
    pub fn upgraded(self, key: &StreamKey) -> Self {
        if self.url_digest.is_some() {
            return self;
        }
        let Ok(mut url) = url::Url::parse(&self.url) else {
            return self;
        };
        // As `--url` is requested: without userinfo, which is a header now.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Self {
            url: crate::net::shown_url(&url),
            url_digest: Some(key.digest(url.as_str())),
            headers: self.headers,
        }
    }

    /// Whether `self` and `other` are one stream: by digest where both have one.
    pub fn same_stream(&self, other: &Self) -> bool {
        let urls = match (&self.url_digest, &other.url_digest) {
            (Some(a), Some(b)) => a == b,
            _ => self.url == other.url,
        };
        urls && self.headers == other.headers
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
            Some(stream) if !stream.same_stream(current) => {
                let why = if stream.url == current.url && stream.headers != current.headers {
                    format!(
                        "the checkpoint belongs to {} with other request headers",
                        stream.url
                    )
                } else if stream.url == current.url {
                    format!(
                        "the checkpoint belongs to {} with other values where the URL shows \
                         [redacted]",
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

/// Where a pipeline's checkpoint is kept. Both stores write whole checkpoints atomically:
/// a crash leaves the old or the new one, never a torn one.
pub trait CheckpointStore: Send + std::fmt::Debug {
    /// Reads the stored checkpoint, if any, and makes this process its writer: a store that
    /// others can reach (DynamoDB) fences the previous writer, whose next write fails.
    fn claim(&mut self) -> StoreFuture<'_, Option<Checkpoint>>;

    /// Replaces the stored checkpoint; `sync` asks for it to be on disk when this returns
    /// (at shutdown), where the store makes a difference.
    fn save<'a>(&'a mut self, checkpoint: &'a Checkpoint, sync: bool) -> StoreFuture<'a, ()>;

    /// After a claim, what tells this writer that another took the checkpoint over while it
    /// had nothing to write ([`heartbeat`]); `None` where no other writer can reach it.
    fn fencing(&self) -> Option<Fencing> {
        None
    }

    /// The key of URL digests for the checkpoints of this store ([`stream_key`]), created
    /// when there is none.
    fn stream_key(&mut self) -> StoreFuture<'_, StreamKey>;
}

/// What a [`CheckpointStore`] call returns: boxed, because a store is chosen at run time and
/// a write happens at most once a second, so the box costs nothing measurable.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CheckpointError>> + Send + 'a>>;

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
    /// What is stored is not a checkpoint.
    #[error("checkpoint {location} is corrupt ({reason}); {remedy}")]
    Corrupt {
        /// The file, or the table and item.
        location: String,
        /// What is wrong with it.
        reason: String,
        /// What the operator can do.
        remedy: &'static str,
    },
    /// The DynamoDB table does not exist (or this process may not see it).
    #[error(
        "the checkpoint table `{table}` does not exist in DynamoDB (pipeline `{pipeline}`); \
         create it with a string partition key `pipeline`, or fix --checkpoint-store"
    )]
    NoTable {
        /// The table named by `--checkpoint-store dynamodb:TABLE`.
        table: String,
        /// The pipeline whose checkpoint it should hold.
        pipeline: String,
    },
    /// Another process took the pipeline over: its checkpoint has moved on, and this
    /// process must neither overwrite it nor keep running the pipeline.
    #[error(
        "another owner took pipeline `{pipeline}`: its checkpoint in DynamoDB table `{table}` \
         is now written by {owner} (version {version}); stopping it here without writing, \
         the new owner goes on from its own checkpoint"
    )]
    Fenced {
        /// The pipeline.
        pipeline: String,
        /// The table.
        table: String,
        /// Who holds it now (`host/pid/random`), as far as the table says.
        owner: String,
        /// The item's version now.
        version: String,
    },
    /// A DynamoDB call failed.
    #[error("cannot {action} the checkpoint of `{pipeline}` in DynamoDB table `{table}`: {reason}")]
    DynamoDb {
        /// What was being done.
        action: &'static str,
        /// The pipeline.
        pipeline: String,
        /// The table.
        table: String,
        /// What the SDK said.
        reason: String,
        /// Whether trying again later may work (a timeout, throttling, a server error).
        transient: bool,
    },
}

impl CheckpointError {
    /// Whether a file checkpoint found no room (a full disk, a quota): it stays pending and
    /// is written on a later tick, never claiming a position it could not store.
    pub fn no_room(&self) -> Option<crate::core::room::NoRoom> {
        match self {
            Self::Io { source, .. } => crate::core::room::NoRoom::of_io(source),
            _ => None,
        }
    }

    /// Whether the write may succeed on a later try: the checkpoint stays pending and the
    /// pipeline goes on (the next tick tries again) instead of stopping.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::DynamoDb {
                transient: true,
                ..
            }
        )
    }
}

/// The store `spec` names for `pipeline`, counting into its `metrics`.
pub async fn open_store(
    spec: &CheckpointStoreSpec,
    state_dir: &Path,
    pipeline: &str,
    metrics: &Arc<Metrics>,
) -> Result<Box<dyn CheckpointStore>, CheckpointError> {
    Ok(match spec {
        CheckpointStoreSpec::File => Box::new(file::FileStore::open(state_dir, pipeline)?),
        CheckpointStoreSpec::DynamoDb(table) => {
            Box::new(dynamodb::DynamoDbStore::open(table, pipeline, metrics).await?)
        }
    })
}

/// One pipeline's checkpoints: what was acknowledged and not yet written, and when to write.
#[derive(Debug)]
pub struct Checkpoints {
    store: Box<dyn CheckpointStore>,
    stream: StreamIdentity,
    pending: Option<String>,
    written: Option<String>,
    last_write: Option<Instant>,
    min_interval: Duration,
}

impl Checkpoints {
    /// Checkpoints of `stream` in `store`, written at most once per `min_interval`.
    pub fn new(
        store: Box<dyn CheckpointStore>,
        stream: StreamIdentity,
        min_interval: Duration,
    ) -> Self {
        Self {
            store,
            stream,
            pending: None,
            written: None,
            last_write: None,
            min_interval,
        }
    }

    /// The stored checkpoint, if any (one with an empty id counts as none); from now on this
    /// process is its writer ([`CheckpointStore::claim`]).
    pub async fn claim(&mut self) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(self
            .store
            .claim()
            .await?
            .filter(|checkpoint| !checkpoint.last_event_id.is_empty()))
    }

    /// What resolves when another writer took the checkpoint over; pending forever for a
    /// store no other writer reaches, or before [`Checkpoints::claim`].
    pub fn fencing(&self) -> Option<Fencing> {
        self.store.fencing()
    }

    /// Notes that everything up to `last_event_id` is acknowledged; returns whether the
    /// interval since the last write has passed, so the caller writes it now
    /// ([`Checkpoints::write_pending`]) rather than on the next tick.
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

    /// Writes a pending checkpoint, if any (called on the pipeline's tick). After a
    /// transient failure it stays pending for the next try.
    pub async fn write_pending(&mut self) -> Result<(), CheckpointError> {
        self.write(false).await
    }

    /// Writes a pending checkpoint and makes it durable (at shutdown).
    pub async fn flush(&mut self) -> Result<(), CheckpointError> {
        self.write(true).await
    }

    async fn write(&mut self, sync: bool) -> Result<(), CheckpointError> {
        let Some(id) = self.pending.take() else {
            return Ok(());
        };
        let checkpoint = Checkpoint {
            last_event_id: id,
            stream: Some(self.stream.clone()),
        };
        if let Err(error) = self.store.save(&checkpoint, sync).await {
            if error.is_transient() || error.no_room().is_some() {
                self.pending = Some(checkpoint.last_event_id);
            }
            return Err(error);
        }
        self.last_write = Some(Instant::now());
        self.written = Some(checkpoint.last_event_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(url: &str) -> StreamIdentity {
        identity(url, &[])
    }

    fn key() -> StreamKey {
        StreamKey::from_hex(&"ab".repeat(32)).expect("a key")
    }

    fn identity(url: &str, headers: &[(String, String)]) -> StreamIdentity {
        let url = url::Url::parse(url).expect("a URL");
        StreamIdentity::of(&url, &crate::net::shown_url(&url), headers, &key())
    }

    #[test]
    fn an_identity_holds_no_credential_yet_tells_query_values_apart() {
        let secret = identity("https://a.example/s?access_token=TOPSECRET&wiki=en", &[]);
        let json = serde_json::to_string(&secret).unwrap();
        assert!(!json.contains("TOPSECRET"), "{json}");
        assert!(json.contains("access_token=[redacted]"), "{json}");
        let other_token = identity("https://a.example/s?access_token=OTHER&wiki=en", &[]);
        assert!(!secret.same_stream(&other_token));
        let en = stream("https://a.example/s?wiki=en");
        let de = stream("https://a.example/s?wiki=de");
        assert!(!en.same_stream(&de));
        assert!(en.same_stream(&stream("https://a.example/s?wiki=en")));
    }

    #[test]
    fn a_checkpoint_from_before_digests_still_resumes_and_is_upgraded() {
        let old = StreamIdentity::without_digest(
            "https://alice:pa55w0rd@a.example/s?access_token=TOPSECRET",
            &[],
        );
        let upgraded = old.upgraded(&key());
        let json = serde_json::to_string(&upgraded).unwrap();
        assert!(
            !json.contains("TOPSECRET") && !json.contains("pa55w0rd"),
            "{json}"
        );
        let current = identity("https://a.example/s?access_token=TOPSECRET", &[]);
        let found = Some(Checkpoint {
            last_event_id: "7".to_string(),
            stream: Some(upgraded),
        });
        assert_eq!(
            Resume::decide(ResumePolicy::Require, found, &current),
            Resume::From("7".to_string())
        );
        let other = StreamIdentity::without_digest("https://a.example/s?wiki=de", &[]);
        assert!(
            !other
                .upgraded(&key())
                .same_stream(&stream("https://a.example/s?wiki=en"))
        );
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
        let found = identity("https://a.example/s", &headers);
        assert_eq!(
            found.headers,
            vec![("accept-language".to_string(), "en".to_string())]
        );
        let other_token = [("Authorization".to_string(), "Bearer 2".to_string())];
        assert_eq!(
            identity("https://a.example/s", &other_token),
            identity("https://a.example/s", &[])
        );
    }
}
