//! Sinks: where records end up. `submit` hands a batch over and returns an
//! [`Ack`] that resolves once the records are as durable as that sink makes
//! them (the file and stdout sinks: at once, after the write; Kinesis: when
//! PutRecords acknowledged every record or it was dead-lettered). The
//! checkpoint waits for acks, in order, never for submissions.

mod file;
mod kinesis;
mod one_line;
mod stdout;

pub use file::{FileSink, FileSinkOptions};
pub use kinesis::{KinesisOptions, KinesisSink, ShutdownClock};
pub use stdout::StdoutSink;

use std::time::Duration;

use kinesis_producer::{BatchOutcome, BatchTicket};

use crate::core::blocking::{Offloaded, offload};
use crate::core::record::Record;

/// Where records go.
#[derive(Debug, Clone)]
pub enum SinkSpec {
    /// Newline-delimited files under a directory (the embedded default).
    File(std::path::PathBuf),
    /// Newline-delimited records on standard output.
    Stdout,
    /// Nowhere: every record is acknowledged at once and kept nowhere. For measuring what
    /// the pipeline itself costs (`BENCHMARKS.md`) and for dry runs of a filter on a live
    /// stream; the checkpoint moves as with any sink.
    Discard,
    /// A Kinesis data stream.
    Kinesis(Box<KinesisOptions>),
}

/// A sink failure; the pipeline stops with it (records are never dropped silently).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A file could not be created, written, synced or renamed.
    #[error("file sink: cannot {action} {path}: {source}")]
    File {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Standard output could not be written (other than its reader going away).
    #[error("stdout sink: {0}")]
    Stdout(std::io::Error),
    /// The reader of stdout went away (e.g. `| head` finished): not a failure of ours.
    #[error("stdout sink: the reader closed the pipe")]
    ReaderGone,
    /// The producer failed (a missing stream, a closed producer).
    #[error("kinesis sink: {0}")]
    Kinesis(kinesis_producer::ProducerError),
    /// The AWS client could not be set up (proxy, trust store).
    #[error("kinesis sink: {0}")]
    KinesisClient(kinesis_producer::ClientError),
}

/// The acknowledgement of one submitted batch.
#[derive(Debug)]
pub enum Ack {
    /// Already durable: this many records were written.
    Written(usize),
    /// Resolves when the producer has settled every record.
    Pending(BatchTicket),
}

impl Ack {
    /// Waits for the outcome: records acknowledged, and dead letters with their reasons.
    pub async fn settled(self) -> Result<BatchOutcome, SinkError> {
        match self {
            Ack::Written(count) => Ok(BatchOutcome {
                acked: count,
                dead_letters: Vec::new(),
            }),
            Ack::Pending(ticket) => ticket.await.map_err(SinkError::Kinesis),
        }
    }
}

/// The configured sink.
#[derive(Debug)]
pub enum Sink {
    /// Newline-delimited files (written on the blocking pool).
    File(Offloaded<FileSink>),
    /// Newline-delimited records on stdout (written on the blocking pool).
    Stdout(Offloaded<StdoutSink>),
    /// Acknowledges everything at once.
    Discard,
    /// A Kinesis data stream.
    Kinesis(KinesisSink),
}

impl Sink {
    /// Opens the sink a pipeline was configured with.
    pub async fn open(
        spec: &SinkSpec,
        pipeline: &str,
        keys: &crate::core::partition::KeyStrategy,
    ) -> Result<Self, SinkError> {
        Ok(match spec {
            SinkSpec::File(dir) => {
                let options = FileSinkOptions::new(dir, pipeline);
                Sink::File(Offloaded::new(
                    offload(move || FileSink::open(options)).await?,
                ))
            }
            SinkSpec::Stdout => Sink::Stdout(Offloaded::new(StdoutSink::new())),
            SinkSpec::Discard => Sink::Discard,
            SinkSpec::Kinesis(options) => {
                Sink::Kinesis(KinesisSink::open(options, keys.clone()).await?)
            }
        })
    }

    /// Hands records over in order; the ack resolves once they are durable.
    /// May wait while the sink's buffer is full (backpressure).
    pub async fn submit(&mut self, records: Vec<Record>) -> Result<Ack, SinkError> {
        let count = records.len();
        match self {
            Sink::File(sink) => sink
                .run(move |sink| sink.write(&records))
                .await
                .map(|()| Ack::Written(count)),
            Sink::Stdout(sink) => sink
                .run(move |sink| sink.write(&records))
                .await
                .map(|()| Ack::Written(count)),
            Sink::Discard => Ok(Ack::Written(count)),
            Sink::Kinesis(sink) => sink.submit(&records).await.map(Ack::Pending),
        }
    }

    /// For sinks that may hold records back (Kinesis), the handle that starts the shutdown
    /// deadline while the pipeline may be blocked in [`submit`](Self::submit). The others
    /// write synchronously and never hold anything back.
    pub fn shutdown_clock(&self) -> Option<ShutdownClock> {
        match self {
            Sink::Kinesis(sink) => Some(sink.shutdown_clock()),
            Sink::File(_) | Sink::Stdout(_) | Sink::Discard => None,
        }
    }

    /// Delivers what is buffered (Kinesis: within `bound`) and closes. Says how many
    /// records were left undelivered (then dead-lettered through their acks).
    pub async fn close(&mut self, bound: CloseBound) -> Result<Closed, SinkError> {
        match self {
            Sink::File(sink) => sink.run(FileSink::close).await.map(|()| Closed::default()),
            Sink::Stdout(sink) => sink
                .run(StdoutSink::flush)
                .await
                .map(|()| Closed::default()),
            Sink::Discard => Ok(Closed::default()),
            Sink::Kinesis(sink) => sink.close(bound).await,
        }
    }
}

/// How long closing a sink may take to deliver what it holds (only Kinesis holds records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseBound {
    /// A stop on a signal or a reload: an operator waits, so the close ends within this,
    /// counted from the stop request (`--shutdown-timeout-ms`).
    Timeout(Duration),
    /// The end of a stream: the work is done when everything is delivered, so the close
    /// goes on while records are acknowledged, and gives up after this long without one
    /// (`--drain-stall-timeout-ms`).
    WhileProgressing {
        /// The longest time without an acknowledged record.
        stall: Duration,
    },
}

/// What a close left undone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Closed {
    /// Records left undelivered (they are dead letters).
    pub undelivered: usize,
    /// The close gave up because nothing was acknowledged for this long.
    pub stalled: Option<Duration>,
}

/// Appends records as newline-delimited lines to `buffer`.
fn encode_lines(records: &[Record], buffer: &mut Vec<u8>) {
    buffer.clear();
    let size: usize = records.iter().map(|r| r.data.len() + 1).sum();
    buffer.reserve(size);
    for record in records {
        buffer.extend_from_slice(&one_line::one_line(&record.data));
        buffer.push(b'\n');
    }
}
