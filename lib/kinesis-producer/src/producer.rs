//! The public handle.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::client::CONNECT_TIMEOUT;
use crate::config::DEFAULT_MAX_RECORD_BYTES;
use crate::dispatcher::{Command, Dispatcher, GiveUp, Settings, Shared};
use crate::record::{Entry, TicketShared};
use crate::{
    BatchTicket, DeadLetter, ProducerConfig, ProducerError, ProducerRecord, ProducerStats,
};

/// What DescribeStreamSummary said about the default stream when the producer started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// The stream's name.
    pub stream_name: String,
    /// The stream's ARN.
    pub stream_arn: String,
    /// `ACTIVE`, `UPDATING`, `CREATING` or `DELETING`.
    pub status: String,
    /// Open shards (each takes 1000 records/s and 1 MiB/s).
    pub open_shard_count: i32,
    /// The stream's record size limit, when it reports one.
    pub max_record_size_in_kib: Option<i32>,
}

/// What [`Producer::close`] could and could not do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseReport {
    /// Records acknowledged over the producer's life.
    pub records_acked: u64,
    /// Records dead-lettered over the producer's life, including `undelivered`.
    pub dead_lettered: u64,
    /// Records still unacknowledged when the close timeout passed (or the drain stalled).
    /// Each is also in the outcome of the ticket of the call that submitted it.
    pub undelivered: Vec<DeadLetter>,
    /// Set by [`Producer::drain_while_progressing`] when it gave up because no record was
    /// settled for this long (the stall bound), not because a deadline passed.
    pub stalled: Option<Duration>,
}

/// Puts records into Kinesis with PutRecords, batching, retrying and ordering them, and
/// pushing back on the caller when its buffer is full. See the crate documentation.
///
/// Cheap to clone: clones share one buffer and one background task. The task ends after
/// [`close`](Self::close), or once every clone is dropped and everything accepted has been
/// settled (dropping the handles does not drop records).
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Command>,
    /// Held by the one `submit` call that is waiting for buffer space, so that callers are
    /// admitted in arrival order and a large call is not starved by small ones.
    admission: Mutex<()>,
    max_record_bytes: usize,
    buffer_max_records: u64,
    buffer_max_bytes: u64,
    record_deadline: Duration,
    summary: StreamSummary,
}

impl Producer {
    /// Checks the configuration, reads the default stream's DescribeStreamSummary once (it is
    /// rate-limited: never per record), and starts the background task on the current Tokio
    /// runtime.
    ///
    /// `client` is used as given for DescribeStreamSummary. For PutRecords the producer uses a
    /// copy with the SDK's retries turned off (a retried whole request after a lost
    /// acknowledgement writes every record again; the producer retries only what failed, per
    /// record) and with `attempt_timeout` / `operation_timeout` from `config`.
    ///
    /// # Errors
    /// [`ProducerError::StreamNotFound`] when the stream does not exist,
    /// [`ProducerError::Describe`] when it cannot be described, and
    /// [`ProducerError::InvalidConfig`].
    pub async fn new(client: Client, config: ProducerConfig) -> Result<Self, ProducerError> {
        config.validate(config.max_record_bytes.unwrap_or(DEFAULT_MAX_RECORD_BYTES))?;
        let summary = describe_stream(&client, &config.stream).await?;
        Self::with_summary(client, config, summary)
    }

    /// As [`new`](Self::new), with the default stream's summary read before by
    /// [`describe_stream`]: a process that starts many producers on one stream describes it
    /// once (DescribeStreamSummary is limited to 20 calls a second per account), and hands
    /// each producer the same summary.
    ///
    /// # Errors
    /// [`ProducerError::InvalidConfig`]. Must be called inside a Tokio runtime.
    pub fn with_summary(
        client: Client,
        config: ProducerConfig,
        summary: StreamSummary,
    ) -> Result<Self, ProducerError> {
        let max_record_bytes = config
            .max_record_bytes
            .or_else(|| {
                summary
                    .max_record_size_in_kib
                    .and_then(|kib| usize::try_from(kib).ok())
                    .map(|kib| kib * 1024)
            })
            .unwrap_or(DEFAULT_MAX_RECORD_BYTES);
        config.validate(max_record_bytes)?;
        if !matches!(summary.status.as_str(), "ACTIVE" | "UPDATING") {
            warn!(stream = %config.stream, status = %summary.status, "the stream is not active yet: PutRecords fails until it is");
        }
        info!(
            stream = %summary.stream_name,
            shards = summary.open_shard_count,
            max_record_bytes,
            ordered = config.ordered,
            aggregate = config.aggregate,
            max_in_flight = config.max_in_flight,
            "Kinesis producer started"
        );

        let connect_timeout = client
            .config()
            .timeout_config()
            .and_then(TimeoutConfig::connect_timeout)
            .unwrap_or(CONNECT_TIMEOUT);
        let put_client = Client::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(connect_timeout)
                        .operation_attempt_timeout(config.attempt_timeout)
                        .operation_timeout(config.operation_timeout)
                        .build(),
                )
                .build(),
        );

        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let settings = Settings {
            default_stream: config.stream.clone(),
            max_records_per_request: config.max_records_per_request,
            max_request_bytes: config.max_request_bytes.max(max_record_bytes),
            linger: config.linger,
            max_in_flight: config.max_in_flight,
            ordered: config.ordered,
            retry_base: config.retry_base,
            retry_cap: config.retry_cap,
            record_deadline: config.record_deadline,
            aggregate: config.aggregate,
            max_record_bytes,
        };
        tokio::spawn(Dispatcher::new(put_client, Arc::clone(&shared), settings, rx).run());
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                tx,
                admission: Mutex::new(()),
                max_record_bytes,
                buffer_max_records: config.buffer_max_records as u64,
                buffer_max_bytes: config.buffer_max_bytes as u64,
                record_deadline: config.record_deadline,
                summary,
            }),
        })
    }

    /// Accepts `records` into the buffer and returns a ticket that resolves when every one of
    /// them is acknowledged or dead-lettered.
    ///
    /// Waits while the buffer is full (`buffer_max_records` / `buffer_max_bytes`): this wait
    /// is the backpressure that makes the pipeline stop reading its source. Records are
    /// accepted in order, possibly in several steps as space frees up, and calls are admitted
    /// in the order they arrive. Records that can never be delivered (too large, empty
    /// partition key, malformed explicit hash key) are dead-lettered at once and take no
    /// space.
    ///
    /// Cancelling the returned future while it waits keeps the records accepted so far
    /// (they are still delivered) and drops the rest.
    ///
    /// # Errors
    /// [`ProducerError::Closed`] after [`close`](Self::close) (records of a call that was
    /// waiting for space when the producer was closed are dead-lettered instead), and
    /// [`ProducerError::Stopped`] if the runtime shut the background task down.
    pub async fn submit(&self, records: Vec<ProducerRecord>) -> Result<BatchTicket, ProducerError> {
        let inner = &*self.inner;
        let shared = &*inner.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(ProducerError::Closed);
        }
        let stats = &shared.stats;
        ProducerStats::add(&stats.records_submitted, records.len() as u64);
        let (ticket, handle) = TicketShared::new(records.len());
        if records.is_empty() {
            return Ok(handle);
        }
        let deadline = Instant::now() + inner.record_deadline;
        let mut entries = Vec::with_capacity(records.len());
        let mut dead = Vec::new();
        let mut bytes = 0u64;
        for r in records {
            match Entry::prepare(r, inner.max_record_bytes, &ticket, deadline) {
                Ok(e) => {
                    bytes += e.size as u64;
                    entries.push(e);
                }
                Err(dl) => {
                    warn!(reason = %dl.reason, "dead-lettering a record that cannot be sent");
                    dead.push(dl);
                }
            }
        }
        if !dead.is_empty() {
            ProducerStats::add(&stats.dead_lettered, dead.len() as u64);
            ticket.settle(0, dead);
        }
        if !entries.is_empty() {
            self.admit(entries, bytes).await?;
        }
        Ok(handle)
    }

    /// Moves entries into the buffer as space allows, and hands them to the background task.
    async fn admit(&self, entries: Vec<Entry>, total_bytes: u64) -> Result<(), ProducerError> {
        let inner = &*self.inner;
        let shared = &*inner.shared;
        let stats = &shared.stats;
        let _turn = inner.admission.lock().await;
        let mut entries = entries.into_iter().peekable();
        let mut first = Some(total_bytes);
        // The deadline counts from acceptance: entries that waited for space get a new one.
        let mut waited = false;
        while entries.peek().is_some() {
            let drain_deadline = shared.drain_deadline();
            let refusal = if shared.closed.load(Ordering::Acquire) {
                Some("the producer was closed before the record was accepted")
            } else if drain_deadline.is_some_and(|d| d <= Instant::now()) {
                Some("the shutdown timeout passed before the record was accepted")
            } else {
                None
            };
            if let Some(reason) = refusal {
                let mut refused = shared
                    .refused
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for e in entries.by_ref() {
                    ProducerStats::add(&stats.dead_lettered, 1);
                    let (ticket, dl) = e.into_dead_letter(reason.into());
                    refused.push(dl.clone());
                    ticket.settle(0, vec![dl]);
                }
                break;
            }
            // Only this task adds to the counters, and the background task only subtracts:
            // the free space read here can only grow until it is taken below.
            let free_records = inner
                .buffer_max_records
                .saturating_sub(stats.buffered_records());
            let free_bytes = inner
                .buffer_max_bytes
                .saturating_sub(stats.buffered_bytes());
            let (chunk, bytes) = match first.take() {
                // The usual case: the whole call fits, no need to copy the entries.
                Some(total) if entries.len() as u64 <= free_records && total <= free_bytes => {
                    (entries.by_ref().collect::<Vec<_>>(), total)
                }
                _ => {
                    let mut chunk = Vec::new();
                    let mut bytes = 0u64;
                    while (chunk.len() as u64) < free_records {
                        match entries.next_if(|e| bytes + e.size as u64 <= free_bytes) {
                            Some(e) => {
                                bytes += e.size as u64;
                                chunk.push(e);
                            }
                            None => break,
                        }
                    }
                    (chunk, bytes)
                }
            };
            if chunk.is_empty() {
                // Woken by every release of space, by close and drain, and at the drain
                // deadline.
                match drain_deadline {
                    Some(deadline) => {
                        tokio::select! {
                            () = shared.space.notified() => {}
                            () = tokio::time::sleep_until(deadline) => {}
                        }
                    }
                    None => shared.space.notified().await,
                }
                waited = true;
                continue;
            }
            self.enqueue(chunk, bytes, waited)?;
        }
        Ok(())
    }

    fn enqueue(
        &self,
        mut chunk: Vec<Entry>,
        bytes: u64,
        waited: bool,
    ) -> Result<(), ProducerError> {
        let inner = &*self.inner;
        let stats = &inner.shared.stats;
        if waited {
            let deadline = Instant::now() + inner.record_deadline;
            for e in &mut chunk {
                e.deadline = deadline;
            }
        }
        let records = chunk.len() as u64;
        let r = stats.buffered_records.fetch_add(records, Ordering::Relaxed) + records;
        let b = stats.buffered_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        stats.buffered_records_peak.fetch_max(r, Ordering::Relaxed);
        stats.buffered_bytes_peak.fetch_max(b, Ordering::Relaxed);
        inner
            .tx
            .send(Command::Enqueue(chunk))
            .map_err(|_| ProducerError::Stopped)
    }

    /// Starts a shutdown that ends at `deadline`: from now on buffered records are sent
    /// without lingering; at `deadline` whatever is not acknowledged is dead-lettered (into
    /// the tickets, and into the [`CloseReport`] of a later [`close`](Self::close)), a
    /// `submit` still waiting for space dead-letters the rest of its records, and records
    /// submitted after it are dead-lettered at once. Until then `submit` works as usual, so
    /// a caller can hand over what it still holds. A second call can only bring the deadline
    /// closer.
    ///
    /// This is what a caller that must stop by a deadline uses while other tasks may still
    /// be blocked in `submit` (a full buffer in front of a stream that refuses everything
    /// would otherwise hold them until their records' own deadlines).
    pub fn drain_by(&self, deadline: Instant) {
        let shared = &*self.inner.shared;
        {
            let mut current = shared
                .drain_deadline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *current = Some(current.map_or(deadline, |d| d.min(deadline)));
        }
        // The call waiting for space (if any) must re-read the deadline.
        shared.space.notify_one();
        // The task may already be gone (closed); then there is nothing left to drain.
        let _ = self.inner.tx.send(Command::Drain { deadline });
    }

    /// Stops accepting records, sends everything buffered without lingering, keeps retrying
    /// until `timeout`, then dead-letters what is left (also into the tickets) and reports it.
    /// Affects every clone of this handle.
    ///
    /// # Errors
    /// [`ProducerError::Closed`] if it was already closed, [`ProducerError::Stopped`] if the
    /// background task is gone.
    pub async fn close(self, timeout: Duration) -> Result<CloseReport, ProducerError> {
        let mut deadline = Instant::now() + timeout;
        if let Some(drain) = self.inner.shared.drain_deadline() {
            deadline = deadline.min(drain);
        }
        self.finish(GiveUp::At(deadline)).await
    }

    /// Stops accepting records and delivers everything buffered for as long as Kinesis keeps
    /// taking it: it gives up only when no record was acknowledged (or dead-lettered for a
    /// reason of its own) for `stall`, then dead-letters what is left (also into the tickets)
    /// and reports it with [`CloseReport::stalled`] set. A throttled stream is slow, not
    /// stalled, so keep `stall` well above the retry backoff cap (`retry_cap`, 5 s by
    /// default), under which a record waits between two attempts. A deadline from
    /// [`drain_by`](Self::drain_by), before or during the drain, still ends it. Affects every
    /// clone of this handle.
    ///
    /// This is the end of a finite stream: the work is done when everything is delivered,
    /// however long that takes, and a sink that stopped answering must not hold the caller
    /// forever.
    ///
    /// # Errors
    /// As [`close`](Self::close).
    pub async fn drain_while_progressing(
        self,
        stall: Duration,
    ) -> Result<CloseReport, ProducerError> {
        self.finish(GiveUp::AfterStall(stall)).await
    }

    async fn finish(self, until: GiveUp) -> Result<CloseReport, ProducerError> {
        let inner = &*self.inner;
        if inner.shared.closed.swap(true, Ordering::AcqRel) {
            return Err(ProducerError::Closed);
        }
        // A call waiting for space wakes up, sees the flag and dead-letters the rest; one
        // that is enqueueing finishes first, so nothing is enqueued after `Close`.
        inner.shared.space.notify_one();
        let _turn = inner.admission.lock().await;
        let (reply, report) = oneshot::channel();
        inner
            .tx
            .send(Command::Close { until, reply })
            .map_err(|_| ProducerError::Stopped)?;
        report.await.map_err(|_| ProducerError::Stopped)
    }

    /// Live counters.
    pub fn stats(&self) -> &ProducerStats {
        &self.inner.shared.stats
    }

    /// The default stream as described when the producer started.
    pub fn stream_summary(&self) -> &StreamSummary {
        &self.inner.summary
    }

    /// The record size limit in force (data + partition key bytes).
    pub fn max_record_bytes(&self) -> usize {
        self.inner.max_record_bytes
    }
}

/// One DescribeStreamSummary of `stream` (a name or an ARN), its failure classed as
/// [`ProducerError::StreamNotFound`] or [`ProducerError::Describe`] (transient or not).
///
/// # Errors
/// As [`Producer::new`].
pub async fn describe_stream(
    client: &Client,
    stream: &str,
) -> Result<StreamSummary, ProducerError> {
    let call = client.describe_stream_summary();
    let call = if stream.starts_with("arn:") {
        call.stream_arn(stream)
    } else {
        call.stream_name(stream)
    };
    match call.send().await {
        Ok(out) => {
            let Some(d) = out.stream_description_summary() else {
                return Err(ProducerError::Describe {
                    stream: stream.to_owned(),
                    message: "the response has no StreamDescriptionSummary".into(),
                    transient: false,
                });
            };
            Ok(StreamSummary {
                stream_name: d.stream_name().to_owned(),
                stream_arn: d.stream_arn().to_owned(),
                status: d.stream_status().as_str().to_owned(),
                open_shard_count: d.open_shard_count(),
                max_record_size_in_kib: d.max_record_size_in_kib(),
            })
        }
        Err(SdkError::ServiceError(ctx)) if ctx.err().is_resource_not_found_exception() => {
            Err(ProducerError::StreamNotFound {
                stream: stream.to_owned(),
                message: ctx
                    .err()
                    .message()
                    .unwrap_or("ResourceNotFoundException")
                    .to_owned(),
            })
        }
        Err(e) => Err(ProducerError::Describe {
            stream: stream.to_owned(),
            message: DisplayErrorContext(&e).to_string(),
            transient: crate::is_transient(&e),
        }),
    }
}
