//! One DescribeStreamSummary per stream per process.
//!
//! Every Kinesis sink needs its stream's summary (the record size limit, the ARN) before it
//! starts. DescribeStreamSummary is limited to 20 calls a second per account, so a fleet of
//! processes that each start hundreds of pipelines on a few streams would be throttled at
//! start if each pipeline asked. Here the first pipeline of a stream asks, the others
//! starting meanwhile wait for its answer, and later ones reuse it for [`FRESH_FOR`].
//!
//! A failed call is never remembered: the next start asks again (each pipeline's restart is
//! already delayed with jitter by `service::restart`, so a fleet does not retry in step).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use kinesis_producer::aws_sdk_kinesis::Client;
use kinesis_producer::{ProducerError, StreamSummary, describe_stream};
use tokio::sync::OnceCell;

/// How long a summary is reused before a new start asks again (a stream's record size limit
/// and ARN change only when it is re-created).
pub const FRESH_FOR: Duration = Duration::from_secs(600);

/// What names one stream: region, endpoint, stream name or ARN.
type Key = (Option<String>, Option<String>, String);

/// A summary being read, or read at an instant.
type Cell = Arc<OnceCell<(Instant, StreamSummary)>>;

static SUMMARIES: LazyLock<Mutex<HashMap<Key, Cell>>> = LazyLock::new(Mutex::default);

/// The summary of `stream` in `region` at `endpoint_url`, described through `client` unless
/// this process did so less than [`FRESH_FOR`] ago (or is doing so now).
pub async fn stream_summary(
    client: &Client,
    region: &Option<String>,
    endpoint_url: &Option<String>,
    stream: &str,
) -> Result<StreamSummary, ProducerError> {
    let key = (region.clone(), endpoint_url.clone(), stream.to_owned());
    let cell = {
        let mut summaries = SUMMARIES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let cell = summaries.entry(key).or_default();
        if cell
            .get()
            .is_some_and(|(read_at, _)| read_at.elapsed() >= FRESH_FOR)
        {
            *cell = Cell::default();
        }
        Arc::clone(cell)
    };
    let (_, summary) = cell
        .get_or_try_init(|| async {
            let summary = describe_stream(client, stream).await?;
            Ok::<_, ProducerError>((Instant::now(), summary))
        })
        .await?;
    Ok(summary.clone())
}
