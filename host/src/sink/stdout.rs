//! Records on standard output, one per line (logs go to stderr).

use std::io::Write as _;

use super::{SinkError, encode_lines};
use crate::core::record::Record;

/// Writes each batch with one `write_all` and flushes it.
#[derive(Debug, Default)]
pub struct StdoutSink {
    buffer: Vec<u8>,
}

impl StdoutSink {
    /// A sink on this process's stdout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes and flushes. A reader that went away (a finished `head`) is
    /// [`SinkError::ReaderGone`]: the run ends, and this batch is not acknowledged.
    pub fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        encode_lines(records, &mut self.buffer);
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buffer).map_err(stdout_error)?;
        out.flush().map_err(stdout_error)
    }

    /// Flushes stdout.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        std::io::stdout().lock().flush().map_err(stdout_error)
    }
}

fn stdout_error(error: std::io::Error) -> SinkError {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        SinkError::ReaderGone
    } else {
        SinkError::Stdout(error)
    }
}
