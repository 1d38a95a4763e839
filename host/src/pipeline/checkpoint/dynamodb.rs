//! Checkpoints in DynamoDB (`--checkpoint-store dynamodb:TABLE`): one item per pipeline,
//! keyed by the string attribute `pipeline` (`NAMESPACE/NAME` with `--checkpoint-namespace`,
//! so deployments that share a table never meet), so a pipeline can move to another
//! machine and go on where it was.
//!
//! The item holds the stream (`stream`, JSON of [`StreamIdentity`]), the last acknowledged
//! event id (`last_event_id`, absent while there is none), the writer (`owner`,
//! `host/pid/random`: unique per incarnation, so a restarted pod with the same pid is another
//! owner), `updated_at` and a `version` number. Every write is conditional on the version this
//! process last saw and raises it by one. Starting a pipeline takes it over: read the item
//! (strongly consistent), then write it back under this owner, which moves the version on.
//! A previous owner that is still alive (a replica that lost the pipeline, a process that
//! hung and came back) is fenced at its next write, or by the heartbeat
//! ([`super::heartbeat`]) when it has nothing to write: the pipeline stops there with
//! [`CheckpointError::Fenced`]. It never overwrites a newer checkpoint, and nothing is lost:
//! what it wrote after its last checkpoint, the new owner reads again from the server with
//! `Last-Event-ID`.
//!
//! An answer can be lost after DynamoDB applied the write (a 500, a timeout); the SDK then
//! sends the write again, and its condition fails against this process's own new version.
//! So a failed condition is judged by the stored item: DynamoDB returns it with the failure
//! (`ReturnValuesOnConditionCheckFailure=ALL_OLD`); where a service does not, a strongly
//! consistent read fetches it. This owner's own write of this checkpoint is success; this
//! owner's own older write is adopted and written over; anyone else's is a fence.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::heartbeat::{self, Fencing, Watch};
use super::{Checkpoint, CheckpointError, CheckpointStore, StoreFuture, StreamIdentity, StreamKey};
use crate::config::DynamoDbTable;
use crate::core::metrics::Metrics;

/// Reads and conditional writes a claim tries while the previous owner keeps writing
/// (each of its writes lands between one read and write at most once per checkpoint tick).
const CLAIM_ATTEMPTS: u32 = 20;

/// Writes a save tries when a failed condition shows this owner's own older version (a
/// write whose answer was lost and which was not retried): each adopts that version.
const OWN_VERSION_ATTEMPTS: u32 = 3;

/// One pipeline's item in the checkpoint table.
#[derive(Debug)]
pub struct DynamoDbStore {
    client: Client,
    spec: DynamoDbTable,
    table: String,
    pipeline: String,
    /// The item's key: the pipeline's name, after `NAMESPACE/` when there is one.
    key: String,
    owner: String,
    /// The item's version as this process last wrote or read it; `None` before the item
    /// exists.
    version: Option<u64>,
    metrics: Arc<Metrics>,
    /// This pipeline in the process's heartbeat, from a successful claim on.
    watch: Option<Watch>,
}

/// The item as read.
struct Stored {
    checkpoint: Checkpoint,
    owner: String,
    version: u64,
}

impl DynamoDbStore {
    /// The checkpoint of `pipeline` in `table`, written by this process.
    pub async fn open(
        table: &DynamoDbTable,
        pipeline: &str,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, CheckpointError> {
        let config =
            crate::net::aws::shared_config(&table.region, &table.endpoint_url, &table.http)
                .await
                .map_err(|error| CheckpointError::DynamoDb {
                    action: "set up the client for",
                    pipeline: pipeline.to_string(),
                    table: table.table.clone(),
                    reason: error.to_string(),
                    transient: false,
                })?;
        Ok(Self {
            client: Client::new(&config),
            spec: table.clone(),
            table: table.table.clone(),
            pipeline: pipeline.to_string(),
            key: item_key(table.namespace.as_deref(), pipeline),
            owner: owner().to_string(),
            version: None,
            metrics: Arc::clone(metrics),
            watch: None,
        })
    }

    async fn read(&self) -> Result<Option<Stored>, CheckpointError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pipeline", AttributeValue::S(self.key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.failed("read", &error))?;
        output.item.map(|item| self.parse(&item)).transpose()
    }

    fn parse(&self, item: &HashMap<String, AttributeValue>) -> Result<Stored, CheckpointError> {
        let text = |name: &str| item.get(name).and_then(|value| value.as_s().ok());
        let corrupt = |reason: String| CheckpointError::Corrupt {
            location: format!("item `{}` of DynamoDB table `{}`", self.key, self.table),
            reason,
            remedy: "delete the item to start from the live edge",
        };
        let version = item
            .get("version")
            .and_then(|value| value.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| corrupt("no numeric `version`".to_string()))?;
        let stream = text("stream")
            .map(|json| serde_json::from_str::<StreamIdentity>(json))
            .transpose()
            .map_err(|error| corrupt(format!("`stream`: {error}")))?;
        Ok(Stored {
            checkpoint: Checkpoint {
                last_event_id: text("last_event_id").cloned().unwrap_or_default(),
                stream,
            },
            owner: text("owner").cloned().unwrap_or_default(),
            version,
        })
    }

    /// Writes `checkpoint` (or just the ownership) as the next version, on condition that
    /// the item is still at the version this process saw. A failed condition is judged by
    /// the stored item (see the module docs).
    async fn put(&mut self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let mut attempt = 1;
        loop {
            let next = self.version.map_or(1, |version| version + 1);
            let error = match self.put_once(checkpoint, next).await {
                Ok(()) => {
                    self.version = Some(next);
                    return Ok(());
                }
                Err(error) => error,
            };
            let returned = match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => failed.item(),
                _ => return Err(self.failed("write", &error)),
            };
            // The item as the failed condition saw it: returned with the failure where the
            // service does so, else read (strongly consistent, so it includes the write
            // whose answer was lost).
            let stored = match returned {
                Some(item) => Some(self.parse(item)?),
                None => self.read().await?,
            };
            let stored = match stored {
                Some(stored) if stored.owner == self.owner => stored,
                other => return Err(self.fenced(other)),
            };
            // Only this process writes under its owner id, so its own version is safe to adopt.
            self.version = Some(stored.version);
            if stored.version == next && stored.checkpoint == *checkpoint {
                self.metrics.checkpoint_ambiguous_writes.inc();
                tracing::info!(
                    pipeline = %self.pipeline,
                    table = %self.table,
                    version = next,
                    via = if returned.is_some() { "returned item" } else { "consistent read" },
                    "a checkpoint write's answer was lost, but the table holds it: written"
                );
                return Ok(());
            }
            if attempt >= OWN_VERSION_ATTEMPTS {
                return Err(CheckpointError::DynamoDb {
                    action: "write",
                    pipeline: self.pipeline.clone(),
                    table: self.table.clone(),
                    reason: format!(
                        "the item stays at this owner's older version {} after {attempt} tries",
                        stored.version
                    ),
                    transient: true,
                });
            }
            tracing::info!(
                pipeline = %self.pipeline,
                table = %self.table,
                version = stored.version,
                "the table holds an older write of this owner whose answer was lost: writing over it"
            );
            attempt += 1;
        }
    }

    /// One conditional PutItem of `checkpoint` as version `next`.
    async fn put_once(
        &self,
        checkpoint: &Checkpoint,
        next: u64,
    ) -> Result<(), SdkError<PutItemError, HttpResponse>> {
        let mut item = HashMap::from([
            ("pipeline".to_string(), AttributeValue::S(self.key.clone())),
            ("owner".to_string(), AttributeValue::S(self.owner.clone())),
            ("version".to_string(), AttributeValue::N(next.to_string())),
            ("updated_at".to_string(), AttributeValue::S(now())),
        ]);
        if !checkpoint.last_event_id.is_empty() {
            item.insert(
                "last_event_id".to_string(),
                AttributeValue::S(checkpoint.last_event_id.clone()),
            );
        }
        if let Some(stream) = &checkpoint.stream
            && let Ok(json) = serde_json::to_string(stream)
        {
            item.insert("stream".to_string(), AttributeValue::S(json));
        }
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let request = match self.version {
            Some(seen) => request
                .condition_expression("#version = :seen")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":seen", AttributeValue::N(seen.to_string())),
            None => request.condition_expression("attribute_not_exists(pipeline)"),
        };
        request.send().await.map(|_| ())
    }

    /// The table's key of URL digests (`super::stream_key`): the item `#stream-key` (after
    /// `NAMESPACE/`; no pipeline name has a `#`), read strongly consistent, or created on
    /// condition that it is absent, so replicas starting at once agree on one.
    async fn table_stream_key(&self) -> Result<StreamKey, CheckpointError> {
        let item_key = match self.spec.namespace.as_deref() {
            Some(namespace) => format!("{namespace}/#stream-key"),
            None => "#stream-key".to_string(),
        };
        let corrupt = || CheckpointError::Corrupt {
            location: format!("item `{item_key}` of DynamoDB table `{}`", self.table),
            reason: "no `stream_key` of 64 hex digits".to_string(),
            remedy: "delete the item (every checkpoint then starts from the live edge once)",
        };
        for _ in 0..2 {
            let output = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pipeline", AttributeValue::S(item_key.clone()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|error| self.failed("read the stream key for", &error))?;
            if let Some(item) = output.item {
                return item
                    .get("stream_key")
                    .and_then(|value| value.as_s().ok())
                    .and_then(|text| StreamKey::from_hex(text))
                    .ok_or_else(corrupt);
            }
            let key = StreamKey::random();
            let created = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pipeline", AttributeValue::S(item_key.clone()))
                .item("stream_key", AttributeValue::S(key.to_hex()))
                .condition_expression("attribute_not_exists(pipeline)")
                .send()
                .await;
            match created {
                Ok(_) => return Ok(key),
                Err(error)
                    if matches!(
                        error.as_service_error(),
                        Some(PutItemError::ConditionalCheckFailedException(_))
                    ) => {} // another replica was first: read its key
                Err(error) => return Err(self.failed("create the stream key for", &error)),
            }
        }
        Err(corrupt())
    }

    /// The error of a write that another owner's newer version refused, naming that owner.
    fn fenced(&self, stored: Option<Stored>) -> CheckpointError {
        let (owner, version) = match stored {
            Some(stored) => (stored.owner, stored.version.to_string()),
            None => (
                "nobody (the item was deleted)".to_string(),
                "none".to_string(),
            ),
        };
        CheckpointError::Fenced {
            pipeline: self.pipeline.clone(),
            table: self.table.clone(),
            owner,
            version,
        }
    }

    fn failed<E>(&self, action: &'static str, error: &SdkError<E, HttpResponse>) -> CheckpointError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        if error.code() == Some("ResourceNotFoundException") {
            return CheckpointError::NoTable {
                table: self.table.clone(),
                pipeline: self.pipeline.clone(),
            };
        }
        // The same rule as for Kinesis: a 5xx, throttling or no answer passes.
        let transient = kinesis_producer::is_transient(error);
        CheckpointError::DynamoDb {
            action,
            pipeline: self.pipeline.clone(),
            table: self.table.clone(),
            reason: DisplayErrorContext(error).to_string(),
            transient,
        }
    }
}

impl CheckpointStore for DynamoDbStore {
    fn stream_key(&mut self) -> StoreFuture<'_, StreamKey> {
        Box::pin(self.table_stream_key())
    }

    fn claim(&mut self) -> StoreFuture<'_, Option<Checkpoint>> {
        Box::pin(async move {
            let mut attempt = 1;
            loop {
                let stored = self.read().await?;
                self.version = stored.as_ref().map(|stored| stored.version);
                let previous_owner = stored.as_ref().map(|stored| stored.owner.clone());
                let checkpoint = stored.map(|stored| stored.checkpoint);
                // Writing it back under this owner moves the version on: a previous owner
                // still running is refused at its next write, or by its heartbeat.
                let claimed = checkpoint.clone().unwrap_or(Checkpoint {
                    last_event_id: String::new(),
                    stream: None,
                });
                match self.put(&claimed).await {
                    Ok(()) => {
                        if let Some(previous_owner) = previous_owner {
                            tracing::info!(
                                pipeline = %self.pipeline,
                                table = %self.table,
                                %previous_owner,
                                version = self.version.unwrap_or_default(),
                                "taking over the checkpoint"
                            );
                        }
                        self.watch = Some(heartbeat::watch(
                            &self.spec,
                            &self.client,
                            &self.pipeline,
                            &self.key,
                            &self.owner,
                            self.metrics.checkpoint_heartbeat_failures.clone(),
                        ));
                        return Ok(checkpoint);
                    }
                    // The previous owner wrote between this read and this write: its newer
                    // checkpoint is the one to resume from, so read again.
                    Err(CheckpointError::Fenced { .. }) if attempt < CLAIM_ATTEMPTS => {
                        tracing::debug!(pipeline = %self.pipeline, attempt, "the previous owner wrote during the claim: reading again");
                        attempt += 1;
                    }
                    Err(error) => return Err(error),
                }
            }
        })
    }

    fn save<'a>(&'a mut self, checkpoint: &'a Checkpoint, _sync: bool) -> StoreFuture<'a, ()> {
        // A successful PutItem is durable in DynamoDB already.
        Box::pin(self.put(checkpoint))
    }

    fn fencing(&self) -> Option<Fencing> {
        self.watch.as_ref().map(Watch::fencing)
    }
}

/// The item key of `pipeline`: `NAMESPACE/NAME`, or the name alone without a namespace.
pub fn item_key(namespace: Option<&str>, pipeline: &str) -> String {
    match namespace {
        Some(namespace) => format!("{namespace}/{pipeline}"),
        None => pipeline.to_string(),
    }
}

/// This process as a checkpoint's writer: `host/pid/random`. The random part tells apart
/// two incarnations with the same host name and pid (a restarted container is pid 1
/// again), whose writes must not pass for each other's.
pub fn owner() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| {
        format!(
            "{}/{}/{:08x}",
            gethostname::gethostname().to_string_lossy(),
            std::process::id(),
            rand::random::<u32>()
        )
    })
}

/// The time of a write, RFC 3339 in UTC (for people reading the table).
fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    //! The path where DynamoDB returns the stored item with a failed condition
    //! (`ReturnValuesOnConditionCheckFailure=ALL_OLD`). dynalite, which the integration tests
    //! use (tests/scale_out.rs covers the consistent-read path against it), never returns
    //! it, so a fake DynamoDB on 127.0.0.1 answers here instead: every PutItem with a failed
    //! condition and the item, every other request (a read, which this path must not need)
    //! with an error.

    use std::sync::atomic::{AtomicU64, Ordering};

    use super::super::fake_dynamodb;
    use super::*;
    use crate::core::metrics::Exposition;

    /// A fake DynamoDB that refuses every PutItem, returning `item` (DynamoDB JSON);
    /// returns its endpoint and the count of other requests (reads) it had.
    async fn refusing_with(item: String) -> (String, Arc<AtomicU64>) {
        let reads = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&reads);
        let endpoint = fake_dynamodb::serve(move |operation, _| {
            if operation == "PutItem" {
                fake_dynamodb::error(
                    "400 Bad Request",
                    "ConditionalCheckFailedException",
                    &format!(r#""Item":{item}"#),
                )
            } else {
                counted.fetch_add(1, Ordering::SeqCst);
                fake_dynamodb::error("400 Bad Request", "ValidationException", "")
            }
        })
        .await;
        (endpoint, reads)
    }

    /// The store of pipeline `p` through `endpoint`, having last seen `version`.
    fn store_at(endpoint: &str, version: u64) -> DynamoDbStore {
        let spec = DynamoDbTable {
            table: "t".to_string(),
            region: Some("us-east-1".to_string()),
            endpoint_url: Some(endpoint.to_string()),
            http: kinesis_producer::HttpSettings::default(),
            namespace: None,
            heartbeat: std::time::Duration::from_secs(10),
        };
        DynamoDbStore {
            client: fake_dynamodb::client(endpoint),
            spec,
            table: "t".to_string(),
            pipeline: "p".to_string(),
            key: "p".to_string(),
            owner: owner().to_string(),
            version: Some(version),
            metrics: Metrics::register(&Exposition::default(), "p"),
            watch: None,
        }
    }

    fn item(owner: &str, version: u64, last_event_id: &str) -> String {
        format!(
            r#"{{"pipeline":{{"S":"p"}},"owner":{{"S":"{owner}"}},"version":{{"N":"{version}"}},"last_event_id":{{"S":"{last_event_id}"}}}}"#
        )
    }

    fn checkpoint(last_event_id: &str) -> Checkpoint {
        Checkpoint {
            last_event_id: last_event_id.to_string(),
            stream: None,
        }
    }

    #[tokio::test]
    async fn a_refused_write_whose_returned_item_is_this_writers_own_is_success() {
        let (endpoint, reads) = refusing_with(item(owner(), 8, "42")).await;
        let mut store = store_at(&endpoint, 7);
        store.save(&checkpoint("42"), false).await.unwrap();
        assert_eq!(store.version, Some(8));
        assert_eq!(store.metrics.checkpoint_ambiguous_writes.get(), 1);
        assert_eq!(reads.load(Ordering::SeqCst), 0, "it read the item again");
    }

    #[tokio::test]
    async fn a_refused_write_whose_returned_item_is_another_owners_is_fenced_naming_it() {
        let (endpoint, reads) = refusing_with(item("elsewhere/1/0000abcd", 9, "50")).await;
        let mut store = store_at(&endpoint, 7);
        let error = store.save(&checkpoint("42"), false).await.unwrap_err();
        let CheckpointError::Fenced { owner, version, .. } = error else {
            panic!("not fenced: {error}");
        };
        assert_eq!(
            (owner.as_str(), version.as_str()),
            ("elsewhere/1/0000abcd", "9")
        );
        assert_eq!(store.metrics.checkpoint_ambiguous_writes.get(), 0);
        assert_eq!(reads.load(Ordering::SeqCst), 0, "it read the item again");
    }

    #[test]
    fn an_owner_id_names_the_host_the_pid_and_a_random_part() {
        let parts: Vec<&str> = owner().rsplitn(3, '/').collect();
        assert_eq!(parts.len(), 3, "{}", owner());
        assert_eq!(parts[1], std::process::id().to_string());
        assert!(u32::from_str_radix(parts[0], 16).is_ok(), "{}", owner());
    }

    #[test]
    fn a_namespace_prefixes_the_item_key() {
        assert_eq!(item_key(Some("blue"), "wiki"), "blue/wiki");
        assert_eq!(item_key(None, "wiki"), "wiki");
    }
}
