//! Sinks: where records end up. `submit` hands a batch over and returns an
//! [`Ack`] that resolves once the records are as durable as that sink makes
//! them (the file and stdout sinks: at once, after the write; Kinesis: when
//! PutRecords acknowledged every record or it was dead-lettered). The
//! checkpoint waits for acks, in order, never for submissions.

mod file;
mod kinesis;
mod one_line;
mod stdout;
mod stream_summaries;

pub use file::{FileRoll, FileSink, FileSinkOptions};
pub use kinesis::{KinesisOptions, KinesisSink, ShutdownClock};
pub use stdout::StdoutSink;

use std::path::Path;
use std::time::{Duration, Instant};

use kinesis_producer::{BatchOutcome, BatchTicket};

use crate::core::blocking::{Offloaded, offload};
use crate::core::record::Record;
use crate::core::room::NoRoom;

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
    /// A bounded output (dead letters, `--dead-letter-max-bytes`) is full. Its records are
    /// never dropped to make room: the pipeline waits until files are moved away.
    #[error(
        "{path} holds {used} bytes and {adding} more would pass its bound of {max} \
         (--dead-letter-max-bytes): move finished files away (or raise the bound) to go on"
    )]
    Full {
        /// The bounded directory.
        path: std::path::PathBuf,
        /// Bytes it holds.
        used: u64,
        /// Bytes of the refused write.
        adding: u64,
        /// The bound.
        max: u64,
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

impl SinkError {
    /// Whether the write failed for want of room (a full disk, a quota, a full bound): the
    /// pipeline waits and writes the same records again instead of failing.
    pub fn no_room(&self) -> Option<NoRoom> {
        match self {
            Self::File { source, .. } => NoRoom::of_io(source),
            Self::Full { .. } => Some(NoRoom::DeadLettersFull),
            _ => None,
        }
    }

    /// The file or directory a file error is about.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::File { path, .. } | Self::Full { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// A batch the sink did not take: why, and its records, none of them acknowledged, so the
/// caller may submit them again.
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub error: SinkError,
    /// The records, as they were handed over.
    pub records: Vec<Record>,
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
    /// Newline-delimited files (written on the blocking pool), and when the open file is due
    /// to be rolled by age.
    File(Offloaded<FileSink>, Option<Instant>),
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
        roll: FileRoll,
    ) -> Result<Self, SinkError> {
        Ok(match spec {
            SinkSpec::File(dir) => {
                let options = FileSinkOptions::new(dir, pipeline).rolling(roll);
                Sink::File(
                    Offloaded::new(offload(move || FileSink::open(options)).await?),
                    None,
                )
            }
            SinkSpec::Stdout => Sink::Stdout(Offloaded::new(StdoutSink::new())),
            SinkSpec::Discard => Sink::Discard,
            SinkSpec::Kinesis(options) => {
                Sink::Kinesis(KinesisSink::open(options, keys.clone()).await?)
            }
        })
    }

    /// Hands records over in order; the ack resolves once they are durable.
    /// May wait while the sink's buffer is full (backpressure). A refused batch comes back
    /// whole, unacknowledged.
    pub async fn submit(&mut self, records: Vec<Record>) -> Result<Ack, Refused> {
        let count = records.len();
        let (outcome, records) = match self {
            Sink::File(sink, roll_at) => {
                let (outcome, records) = sink
                    .run(move |sink| {
                        let outcome = sink.write(&records).map(|()| sink.roll_deadline());
                        (outcome, records)
                    })
                    .await;
                (
                    outcome.map(|deadline| {
                        *roll_at = deadline;
                        Ack::Written(count)
                    }),
                    records,
                )
            }
            Sink::Stdout(sink) => {
                sink.run(move |sink| (sink.write(&records).map(|()| Ack::Written(count)), records))
                    .await
            }
            Sink::Discard => (Ok(Ack::Written(count)), records),
            Sink::Kinesis(sink) => (sink.submit(&records).await.map(Ack::Pending), records),
        };
        outcome.map_err(|error| Refused { error, records })
    }

    /// When the sink wants [`roll_if_due`](Self::roll_if_due) called (the file sink's open
    /// file reaches its age), if ever.
    pub fn roll_deadline(&self) -> Option<Instant> {
        match self {
            Sink::File(_, roll_at) => *roll_at,
            Sink::Stdout(_) | Sink::Discard | Sink::Kinesis(_) => None,
        }
    }

    /// Rolls the file sink's open file if it is due, so that a quiet stream's records are
    /// in a finished file within the roll interval.
    pub async fn roll_if_due(&mut self) -> Result<(), SinkError> {
        if let Sink::File(sink, roll_at) = self {
            *roll_at = sink.run(FileSink::roll_if_due).await?;
        }
        Ok(())
    }

    /// For sinks that may hold records back (Kinesis), the handle that starts the shutdown
    /// deadline while the pipeline may be blocked in [`submit`](Self::submit). The others
    /// write synchronously and never hold anything back.
    pub fn shutdown_clock(&self) -> Option<ShutdownClock> {
        match self {
            Sink::Kinesis(sink) => Some(sink.shutdown_clock()),
            Sink::File(..) | Sink::Stdout(_) | Sink::Discard => None,
        }
    }

    /// Delivers what is buffered (Kinesis: within `bound`) and closes. Says how many
    /// records were left undelivered (then dead-lettered through their acks).
    pub async fn close(&mut self, bound: CloseBound) -> Result<Closed, SinkError> {
        match self {
            Sink::File(sink, _) => sink.run(FileSink::close).await.map(|()| Closed::default()),
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
