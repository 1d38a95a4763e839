//! The Kinesis sink: records go to the `kinesis-producer` crate, which
//! batches, retries and orders them; a batch is acknowledged when every one
//! of its records is, or has been dead-lettered with its reason.

use kinesis_producer::{BatchTicket, Producer, ProducerConfig, ProducerRecord};

use super::{CloseBound, Closed, SinkError};
use crate::core::partition::KeyStrategy;
use crate::core::record::Record;

/// How the Kinesis sink is set up (from `--sink kinesis:NAME` and friends).
#[derive(Debug, Clone)]
pub struct KinesisOptions {
    /// `--region`; else the standard AWS chain decides.
    pub region: Option<String>,
    /// `--endpoint-url`, e.g. a local Kinesis server.
    pub endpoint_url: Option<String>,
    /// Trust and proxies of the AWS clients (the same as the SSE connection's).
    pub http: kinesis_producer::HttpSettings,
    /// The stream and every producer setting (`--ordered`, `--max-in-flight`, `--linger-ms`,
    /// `--record-deadline-ms`, request and buffer limits, timeouts), already validated.
    pub producer: ProducerConfig,
}

/// The Kinesis client of `options`, on the process's shared AWS settings.
async fn shared_client(
    options: &KinesisOptions,
) -> Result<kinesis_producer::aws_sdk_kinesis::Client, SinkError> {
    let config =
        crate::net::aws::shared_config(&options.region, &options.endpoint_url, &options.http)
            .await
            .map_err(SinkError::KinesisClient)?;
    Ok(kinesis_producer::aws_sdk_kinesis::Client::new(&config))
}

/// Starts a Kinesis sink's shutdown deadline from outside the pipeline's task.
#[derive(Debug, Clone)]
pub struct ShutdownClock(Producer);

impl ShutdownClock {
    /// Everything must be acknowledged or dead-lettered by `deadline`.
    pub fn stop_by(&self, deadline: tokio::time::Instant) {
        self.0.drain_by(deadline);
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct KinesisSink {
    producer: Producer,
    keys: KeyStrategy,
}

impl KinesisSink {
    /// Connects (DescribeStreamSummary: a missing stream fails here, clearly).
    /// The stream is described once per process ([`super::stream_summaries`]).
    pub async fn open(options: &KinesisOptions, keys: KeyStrategy) -> Result<Self, SinkError> {
        let client = shared_client(options).await?;
        let summary = super::stream_summaries::stream_summary(
            &client,
            &options.region,
            &options.endpoint_url,
            &options.producer.stream,
        )
        .await
        .map_err(SinkError::Kinesis)?;
        let producer = Producer::with_summary(client, options.producer.clone(), summary)
            .map_err(SinkError::Kinesis)?;
        let summary = producer.stream_summary();
        tracing::info!(
            stream = %summary.stream_name,
            shards = summary.open_shard_count,
            max_record_bytes = producer.max_record_bytes(),
            ordered = options.producer.ordered,
            aggregate = options.producer.aggregate,
            "Kinesis stream ready"
        );
        Ok(Self { producer, keys })
    }

    /// Queues the records (waiting while the producer's buffer is full: the
    /// backpressure) and returns the ticket that resolves on acknowledgement.
    pub async fn submit(&mut self, records: &[Record]) -> Result<BatchTicket, SinkError> {
        let records = records
            .iter()
            .map(|record| ProducerRecord {
                data: record.data.clone(),
                partition_key: record
                    .partition_key
                    .clone()
                    .unwrap_or_else(|| self.keys.fallback_key()),
                stream: record.stream.clone(),
                explicit_hash_key: None,
            })
            .collect();
        self.producer
            .submit(records)
            .await
            .map_err(SinkError::Kinesis)
    }

    /// Starts the shutdown clock: buffered records go out without lingering, and at
    /// `deadline` whatever is not acknowledged is dead-lettered, including the rest of a
    /// `submit` that is still waiting for buffer space. Callable from another task while
    /// the pipeline is blocked in [`submit`](Self::submit).
    pub fn shutdown_clock(&self) -> ShutdownClock {
        ShutdownClock(self.producer.clone())
    }

    /// Delivers everything buffered within `bound`; what is left becomes dead letters
    /// through the tickets. Says how many records were left undelivered, and whether the
    /// drain stalled.
    pub async fn close(&mut self, bound: CloseBound) -> Result<Closed, SinkError> {
        let producer = self.producer.clone();
        let report = match bound {
            CloseBound::Timeout(timeout) => producer.close(timeout).await,
            CloseBound::WhileProgressing { stall } => {
                tracing::info!(
                    buffered_records = producer.stats().buffered_records(),
                    stall_ms = stall.as_millis() as u64,
                    "draining into Kinesis while records are acknowledged"
                );
                producer.drain_while_progressing(stall).await
            }
        }
        .map_err(SinkError::Kinesis)?;
        if let Some(stall) = report.stalled {
            tracing::warn!(
                undelivered = report.undelivered.len(),
                stall_ms = stall.as_millis() as u64,
                "the drain into Kinesis stalled: no record was acknowledged for the stall bound; the rest are dead letters"
            );
        }
        tracing::info!(
            records_acked = report.records_acked,
            dead_lettered = report.dead_lettered,
            undelivered = report.undelivered.len(),
            "Kinesis producer closed"
        );
        Ok(Closed {
            undelivered: report.undelivered.len(),
            stalled: report.stalled,
        })
    }

    /// Reads the producer's counters whenever called (for the metrics endpoint).
    pub fn stats_reader(
        &self,
    ) -> impl Fn() -> crate::core::metrics::KinesisReading + Send + Sync + 'static {
        let producer = self.producer.clone();
        move || {
            let stats = producer.stats();
            (stats.snapshot(), stats.request_latency())
        }
    }
}
