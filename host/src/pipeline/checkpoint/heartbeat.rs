//! The heartbeat of DynamoDB checkpoints: how an owner with nothing to write learns that it
//! was fenced.
//!
//! A write finds out that another process took the pipeline over (its condition fails), but
//! a quiet stream writes nothing, so without this an old owner would keep its SSE connection
//! open after a takeover, for as long as the stream stays quiet. So every
//! `--checkpoint-heartbeat-ms` (10 s by default) one task per process and table reads the
//! items of all the pipelines it checkpoints there, with strongly consistent `BatchGetItem`
//! calls of up to 100 keys, and tells each pipeline whose item another owner now holds; the
//! pipeline then stops with the same [`CheckpointError::Fenced`] as a refused write.
//!
//! The cost is bounded by batching: 1,000 pipelines are 10 requests per beat, 1 request per
//! second at the default interval (1,000 strongly consistent reads of items under 4 KiB: 100
//! read units per second). One task per process, rather than one per pipeline, is why the
//! registry below is a process-wide static: pipelines open their stores independently.
//!
//! A failed read is logged, counted for each pipeline it covered
//! (`sse_ingest_checkpoint_heartbeat_failures_total`) and tried at the next beat; only an
//! item that names another owner fences. A deleted item does not: the next write says so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::CheckpointError;
use crate::config::DynamoDbTable;
use crate::core::metrics::Counter;

/// Keys per `BatchGetItem` call: DynamoDB's limit.
const KEYS_PER_CALL: usize = 100;

/// Who holds a pipeline's item now, when it is not this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The item's `owner`.
    pub owner: String,
    /// The item's `version`.
    pub version: String,
}

/// One pipeline's place in the heartbeat; dropping it leaves.
#[derive(Debug)]
pub struct Watch {
    group: Arc<Group>,
    key: String,
    id: u64,
    taken: watch::Receiver<Option<Taken>>,
    pipeline: String,
    table: String,
}

impl Watch {
    /// What the pipeline waits on.
    pub fn fencing(&self) -> Fencing {
        Fencing {
            taken: self.taken.clone(),
            pipeline: self.pipeline.clone(),
            table: self.table.clone(),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(mut watched) = self.group.watched.lock()
            && watched
                .get(&self.key)
                .is_some_and(|entry| entry.id == self.id)
        {
            watched.remove(&self.key);
        }
    }
}

/// Resolves when the heartbeat finds the pipeline's item held by another owner.
#[derive(Debug)]
pub struct Fencing {
    taken: watch::Receiver<Option<Taken>>,
    pipeline: String,
    table: String,
}

impl Fencing {
    /// Waits until another owner holds the item, and says so as the error a refused write
    /// gives. Never resolves while this process holds it (or if the heartbeat is gone).
    pub async fn fenced(&mut self) -> CheckpointError {
        let taken = match self.taken.wait_for(Option::is_some).await {
            Ok(taken) => taken.clone(),
            Err(_) => None,
        };
        let Some(taken) = taken else {
            return std::future::pending().await;
        };
        CheckpointError::Fenced {
            pipeline: self.pipeline.clone(),
            table: self.table.clone(),
            owner: taken.owner,
            version: taken.version,
        }
    }
}

/// A watched item.
#[derive(Debug)]
struct Entry {
    id: u64,
    owner: String,
    taken: watch::Sender<Option<Taken>>,
    failures: Counter,
}

/// The pipelines of one table (reached one way) at one interval, and their task.
#[derive(Debug)]
struct Group {
    table: String,
    interval: Duration,
    client: Client,
    watched: Mutex<HashMap<String, Entry>>,
}

/// Every group of the process, with its task.
type Groups = Vec<(DynamoDbTable, Arc<Group>, JoinHandle<()>)>;

static GROUPS: Mutex<Groups> = Mutex::new(Vec::new());

/// Puts the item `key` (of `pipeline`, written by `owner`) in the heartbeat of `table`,
/// starting that table's task if it has none. Must be called within the runtime.
pub fn watch(
    table: &DynamoDbTable,
    client: &Client,
    pipeline: &str,
    key: &str,
    owner: &str,
    failures: Counter,
) -> Watch {
    static IDS: AtomicU64 = AtomicU64::new(0);
    let id = IDS.fetch_add(1, Ordering::Relaxed);
    let (sender, taken) = watch::channel(None);
    let entry = Entry {
        id,
        owner: owner.to_string(),
        taken: sender,
        failures,
    };
    let mut groups = GROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // A group whose task ended (its runtime is gone: tests start many) is started afresh.
    groups.retain(|(_, _, task)| !task.is_finished());
    let group = match groups.iter().find(|(spec, _, _)| spec == table) {
        Some((_, group, _)) => Arc::clone(group),
        None => {
            let group = Arc::new(Group {
                table: table.table.clone(),
                interval: table.heartbeat,
                client: client.clone(),
                watched: Mutex::new(HashMap::new()),
            });
            let task = tokio::spawn(beat(table.clone(), Arc::clone(&group)));
            groups.push((table.clone(), Arc::clone(&group), task));
            group
        }
    };
    if let Ok(mut watched) = group.watched.lock() {
        watched.insert(key.to_string(), entry);
    }
    Watch {
        group,
        key: key.to_string(),
        id,
        taken,
        pipeline: pipeline.to_string(),
        table: table.table.clone(),
    }
}

/// The task of one group: a beat every interval until no pipeline is left.
async fn beat(spec: DynamoDbTable, group: Arc<Group>) {
    let mut tick = tokio::time::interval(group.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let owners: Vec<(String, String)> = {
            // Under the registry's lock, so that a pipeline joining now finds a live group.
            let mut groups = GROUPS
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let watched = group
                .watched
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if watched.is_empty() {
                groups.retain(|(other, _, _)| *other != spec);
                return;
            }
            watched
                .iter()
                .map(|(key, entry)| (key.clone(), entry.owner.clone()))
                .collect()
        };
        for chunk in owners.chunks(KEYS_PER_CALL) {
            check(&group, chunk).await;
        }
    }
}

/// One strongly consistent `BatchGetItem` of `chunk` (keys and this process's owner id);
/// tells each pipeline whose item another owner holds.
async fn check(group: &Group, chunk: &[(String, String)]) {
    let keys = chunk
        .iter()
        .map(|(key, _)| HashMap::from([("pipeline".to_string(), AttributeValue::S(key.clone()))]))
        .collect();
    let request = KeysAndAttributes::builder()
        .set_keys(Some(keys))
        .consistent_read(true)
        .build();
    let request = match request {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(table = %group.table, %error, "cannot build the heartbeat's read");
            return;
        }
    };
    let answer = group
        .client
        .batch_get_item()
        .request_items(&group.table, request)
        .send()
        .await;
    let watched = group
        .watched
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let output = match answer {
        Ok(output) => output,
        Err(error) => {
            tracing::warn!(
                table = %group.table,
                pipelines = chunk.len(),
                error = %DisplayErrorContext(&error),
                "the checkpoint heartbeat could not read the table: trying again at the next beat"
            );
            for (key, _) in chunk {
                if let Some(entry) = watched.get(key) {
                    entry.failures.inc();
                }
            }
            return;
        }
    };
    let items = output
        .responses()
        .and_then(|responses| responses.get(&group.table))
        .map(Vec::as_slice)
        .unwrap_or_default();
    for item in items {
        let text = |name: &str| item.get(name).and_then(|value| value.as_s().ok());
        let Some(entry) = text("pipeline").and_then(|key| watched.get(key)) else {
            continue;
        };
        let Some(owner) = text("owner") else {
            continue;
        };
        if *owner != entry.owner && entry.taken.borrow().is_none() {
            let version = item
                .get("version")
                .and_then(|value| value.as_n().ok())
                .cloned()
                .unwrap_or_default();
            tracing::info!(table = %group.table, key = %text("pipeline").map(String::as_str).unwrap_or_default(), %owner, %version, "the heartbeat found the checkpoint held by another owner");
            let _ = entry.taken.send(Some(Taken {
                owner: owner.clone(),
                version,
            }));
        }
    }
    let unprocessed = output
        .unprocessed_keys()
        .and_then(|keys| keys.get(&group.table))
        .map_or(0, |keys| keys.keys().len());
    if unprocessed > 0 {
        tracing::debug!(table = %group.table, unprocessed, "the heartbeat reads the rest at the next beat");
    }
}
