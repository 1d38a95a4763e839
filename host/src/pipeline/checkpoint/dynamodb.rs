//! Checkpoints in DynamoDB (`--checkpoint-store dynamodb:TABLE`): one item per pipeline,
//! keyed by the string attribute `pipeline`, so a pipeline can move to another machine and
//! go on where it was.
//!
//! The item holds the stream (`stream`, JSON of [`StreamIdentity`]), the last acknowledged
//! event id (`last_event_id`, absent while there is none), the writer (`owner`, `host/pid`),
//! `updated_at` and a `version` number. Every write is conditional on the version this
//! process last saw and raises it by one. Starting a pipeline takes it over: read the item
//! (strongly consistent), then write it back under this owner, which moves the version on.
//! A previous owner that is still alive (a replica that lost the pipeline, a process that
//! hung and came back) is fenced at its next write: the condition fails, and the pipeline
//! stops there with [`CheckpointError::Fenced`]. It never overwrites a newer checkpoint, and
//! nothing is lost: what it wrote after its last checkpoint, the new owner reads again from
//! the server with `Last-Event-ID`.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use super::{Checkpoint, CheckpointError, CheckpointStore, StoreFuture, StreamIdentity};
use crate::config::DynamoDbTable;

/// Reads and conditional writes a claim tries while the previous owner keeps writing
/// (each of its writes lands between one read and write at most once per checkpoint tick).
const CLAIM_ATTEMPTS: u32 = 20;

/// One pipeline's item in the checkpoint table.
#[derive(Debug)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
    pipeline: String,
    owner: String,
    /// The item's version as this process last wrote or read it; `None` before the item
    /// exists.
    version: Option<u64>,
}

/// The item as read.
struct Stored {
    checkpoint: Checkpoint,
    owner: String,
    version: u64,
}

impl DynamoDbStore {
    /// The checkpoint of `pipeline` in `table`, written by this process.
    pub async fn open(table: &DynamoDbTable, pipeline: &str) -> Result<Self, CheckpointError> {
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
            table: table.table.clone(),
            pipeline: pipeline.to_string(),
            owner: owner(),
            version: None,
        })
    }

    async fn read(&self) -> Result<Option<Stored>, CheckpointError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pipeline", AttributeValue::S(self.pipeline.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.failed("read", &error))?;
        output.item.map(|item| self.parse(&item)).transpose()
    }

    fn parse(&self, item: &HashMap<String, AttributeValue>) -> Result<Stored, CheckpointError> {
        let text = |name: &str| item.get(name).and_then(|value| value.as_s().ok());
        let corrupt = |reason: String| CheckpointError::Corrupt {
            location: format!(
                "item `{}` of DynamoDB table `{}`",
                self.pipeline, self.table
            ),
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
    /// the item is still at the version this process saw.
    async fn put(&mut self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let next = self.version.map_or(1, |version| version + 1);
        let mut item = HashMap::from([
            (
                "pipeline".to_string(),
                AttributeValue::S(self.pipeline.clone()),
            ),
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
            .set_item(Some(item));
        let request = match self.version {
            Some(seen) => request
                .condition_expression("#version = :seen")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":seen", AttributeValue::N(seen.to_string())),
            None => request.condition_expression("attribute_not_exists(pipeline)"),
        };
        match request.send().await {
            Ok(_) => {
                self.version = Some(next);
                Ok(())
            }
            Err(error) if error.code() == Some("ConditionalCheckFailedException") => {
                Err(self.fenced().await)
            }
            Err(error) => Err(self.failed("write", &error)),
        }
    }

    /// The error of a write that another owner's newer version refused, naming that owner.
    async fn fenced(&self) -> CheckpointError {
        let (owner, version) = match self.read().await {
            Ok(Some(stored)) => (stored.owner, stored.version.to_string()),
            Ok(None) => (
                "nobody (the item was deleted)".to_string(),
                "none".to_string(),
            ),
            Err(error) => (
                format!("an owner this process cannot read ({error})"),
                "unknown".to_string(),
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
    fn claim(&mut self) -> StoreFuture<'_, Option<Checkpoint>> {
        Box::pin(async move {
            let mut attempt = 1;
            loop {
                let stored = self.read().await?;
                self.version = stored.as_ref().map(|stored| stored.version);
                let previous_owner = stored.as_ref().map(|stored| stored.owner.clone());
                let checkpoint = stored.map(|stored| stored.checkpoint);
                // Writing it back under this owner moves the version on: a previous owner
                // still running is refused at its next write.
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
}

/// This process as a checkpoint's writer: `host/pid`.
fn owner() -> String {
    format!(
        "{}/{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    )
}

/// The time of a write, RFC 3339 in UTC (for people reading the table).
fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
