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

#[cfg(test)]
mod tests {
    //! Against a fake DynamoDB (dynalite would do for the reads, but not for choosing, key by
    //! key, who holds an item, nor for counting the calls and their keys).

    use std::time::Instant;

    use super::super::fake_dynamodb;
    use super::*;

    const ME: &str = "me/1/00000001";

    fn table_at(endpoint: &str) -> DynamoDbTable {
        DynamoDbTable {
            table: "t".to_string(),
            region: Some("us-east-1".to_string()),
            endpoint_url: Some(endpoint.to_string()),
            http: kinesis_producer::HttpSettings::default(),
            namespace: None,
            heartbeat: Duration::from_millis(100),
        }
    }

    /// Waits (at most 30 s) until `done`.
    async fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn one_beat_reads_150_pipelines_in_two_consistent_calls_and_fences_only_the_taken_one() {
        let calls = Arc::new(Mutex::new(Vec::<(usize, bool)>::new()));
        let seen = Arc::clone(&calls);
        let endpoint = fake_dynamodb::serve(move |operation, request| {
            if operation != "BatchGetItem" {
                return fake_dynamodb::error("400 Bad Request", "ValidationException", "");
            }
            let asked = &request["RequestItems"]["t"];
            let keys: Vec<&str> = asked["Keys"]
                .as_array()
                .map(|keys| {
                    keys.iter()
                        .filter_map(|key| key["pipeline"]["S"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            if let Ok(mut calls) = seen.lock() {
                calls.push((keys.len(), asked["ConsistentRead"] == true));
            }
            let items: Vec<String> = keys
                .iter()
                .map(|key| {
                    let owner = if *key == "p7" { "elsewhere/2/0000abcd" } else { ME };
                    format!(
                        r#"{{"pipeline":{{"S":"{key}"}},"owner":{{"S":"{owner}"}},"version":{{"N":"5"}}}}"#
                    )
                })
                .collect();
            (
                "200 OK",
                format!(r#"{{"Responses":{{"t":[{}]}}}}"#, items.join(",")),
            )
        })
        .await;
        let (table, client) = (table_at(&endpoint), fake_dynamodb::client(&endpoint));
        let watches: Vec<Watch> = (0..150)
            .map(|n| {
                let key = format!("p{n}");
                watch(&table, &client, &key, &key, ME, Counter::default())
            })
            .collect();
        let error = tokio::time::timeout(Duration::from_secs(30), watches[7].fencing().fenced())
            .await
            .expect("fenced within 30 s");
        let CheckpointError::Fenced {
            pipeline,
            owner,
            version,
            ..
        } = error
        else {
            panic!("not fenced: {error}");
        };
        assert_eq!(
            (pipeline.as_str(), owner.as_str(), version.as_str()),
            ("p7", "elsewhere/2/0000abcd", "5")
        );
        // p7 may be in either call of the beat: the second may still be on its way.
        wait_until("both calls of the first beat", || {
            calls.lock().unwrap().len() >= 2
        })
        .await;
        let calls = calls.lock().unwrap().clone();
        assert!(
            calls
                .iter()
                .all(|&(keys, consistent)| keys <= 100 && consistent),
            "{calls:?}"
        );
        assert_eq!(calls[0].0 + calls[1].0, 150, "{calls:?}");
        for (n, watched) in watches.iter().enumerate() {
            assert_eq!(watched.taken.borrow().is_some(), n == 7, "p{n}");
        }
    }

    #[tokio::test]
    async fn a_failed_read_is_counted_for_each_pipeline_it_covered_and_fences_none() {
        let endpoint = fake_dynamodb::serve(|_, _| {
            fake_dynamodb::error("400 Bad Request", "ValidationException", "")
        })
        .await;
        let (table, client) = (table_at(&endpoint), fake_dynamodb::client(&endpoint));
        let (a, b) = (Counter::default(), Counter::default());
        let watches = [
            watch(&table, &client, "a", "a", ME, a.clone()),
            watch(&table, &client, "b", "b", ME, b.clone()),
        ];
        wait_until("two failed beats counted for both", || {
            a.get() >= 2 && b.get() >= 2
        })
        .await;
        assert!(watches.iter().all(|w| w.taken.borrow().is_none()));
    }

    #[tokio::test]
    async fn the_tables_task_ends_when_its_last_pipeline_leaves() {
        let endpoint =
            fake_dynamodb::serve(|_, _| ("200 OK", r#"{"Responses":{}}"#.to_string())).await;
        let (table, client) = (table_at(&endpoint), fake_dynamodb::client(&endpoint));
        let running = || {
            GROUPS
                .lock()
                .unwrap()
                .iter()
                .any(|(spec, _, task)| *spec == table && !task.is_finished())
        };
        let watched = watch(&table, &client, "a", "a", ME, Counter::default());
        assert!(running());
        drop(watched);
        wait_until("the task gone", || !running()).await;
    }
}
