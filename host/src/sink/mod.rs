//! Sinks: where records end up. A sink's `write` returns only once the
//! records are as durable as that sink makes them; that return is the
//! acknowledgement the checkpoint waits for.

mod file;
mod stdout;

pub use file::{FileSink, FileSinkOptions};
pub use stdout::StdoutSink;

use crate::config::SinkSpec;
use crate::record::Record;

/// A sink failure; the pipeline stops with it (records are never dropped silently).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("file sink: cannot {action} {path}: {source}")]
    File {
        action: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("stdout sink: {0}")]
    Stdout(std::io::Error),
}

/// The configured sink.
#[derive(Debug)]
pub enum Sink {
    File(FileSink),
    Stdout(StdoutSink),
}

impl Sink {
    /// Opens the sink a pipeline was configured with.
    pub fn open(spec: &SinkSpec, pipeline: &str) -> Result<Self, SinkError> {
        Ok(match spec {
            SinkSpec::File(dir) => Sink::File(FileSink::open(FileSinkOptions::new(dir, pipeline))?),
            SinkSpec::Stdout => Sink::Stdout(StdoutSink::new()),
        })
    }

    /// Writes records in order; returns once they are acknowledged.
    pub async fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        match self {
            Sink::File(sink) => sink.write(records),
            Sink::Stdout(sink) => sink.write(records),
        }
    }

    /// Flushes and closes (the file sink finishes its current file).
    pub async fn close(&mut self) -> Result<(), SinkError> {
        match self {
            Sink::File(sink) => sink.close(),
            Sink::Stdout(sink) => sink.flush(),
        }
    }
}

/// Appends records as newline-delimited lines to `buffer`.
fn encode_lines(records: &[Record], buffer: &mut Vec<u8>) {
    buffer.clear();
    let size: usize = records.iter().map(|r| r.data.len() + 1).sum();
    buffer.reserve(size);
    for record in records {
        buffer.extend_from_slice(&record.data);
        buffer.push(b'\n');
    }
}
