//! Dead letters: what cannot be delivered is written here with the reason,
//! like Firehose's error prefix, and the pipeline keeps running.
//!
//! `DIR/PIPELINE/YYYY/MM/DD/HH/….ndjson` (the file sink's layout), one JSON
//! object per line: `{"reason", "pipeline", "at", "kind", ...}` where `kind`
//! is `event` (a batch a filter failed on: the events, so nothing is lost)
//! or `record` (a record the sink refused: its bytes in base64).
//!
//! They hold the stream's data, so only the process's user may read them: files 0600 in
//! 0700 directories. The pipeline's dead-letter directory is locked at start like the file
//! sink's (`state_lock`), since opening it repairs `.inprogress` files.

use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::json;

use crate::core::metrics::Metrics;
use crate::core::record::Record;
use crate::sink::{FileSink, FileSinkOptions, SinkError};
use crate::wasm::source::Event;

/// The dead-letter output of one pipeline.
#[derive(Debug)]
pub struct DeadLetters {
    pipeline: String,
    sink: FileSink,
}

impl DeadLetters {
    /// Opens (and repairs, after a crash) the dead-letter files under `dir`.
    pub fn open(dir: &Path, pipeline: &str) -> Result<Self, SinkError> {
        let options = FileSinkOptions {
            private: true,
            ..FileSinkOptions::new(dir, pipeline)
        };
        Ok(Self {
            pipeline: pipeline.to_string(),
            sink: FileSink::open(options)?,
        })
    }

    /// Writes the events of a batch that could not be handled.
    pub fn write_events(
        &mut self,
        events: &[Event],
        reason: &str,
        metrics: &Metrics,
    ) -> Result<(), SinkError> {
        let at = now_rfc3339();
        let lines: Vec<Record> = events
            .iter()
            .map(|event| {
                line(json!({
                    "kind": "event",
                    "reason": reason,
                    "pipeline": self.pipeline,
                    "at": at,
                    "event": {
                        "event": event.event_type,
                        "id": event.id,
                        "data": event.data,
                        "received_at_ms": event.received_at_ms,
                    },
                }))
            })
            .collect();
        self.sink.write(&lines)?;
        metrics.dead_letters.add(lines.len() as u64);
        Ok(())
    }

    /// Writes records the sink refused for good, each with its reason.
    pub fn write_records(
        &mut self,
        letters: &[(Record, String)],
        metrics: &Metrics,
    ) -> Result<(), SinkError> {
        let at = now_rfc3339();
        let lines: Vec<Record> = letters
            .iter()
            .map(|(record, reason)| {
                line(json!({
                    "kind": "record",
                    "reason": reason,
                    "pipeline": self.pipeline,
                    "at": at,
                    "partition_key": record.partition_key,
                    "stream": record.stream,
                    "data_base64": base64::engine::general_purpose::STANDARD.encode(&record.data),
                }))
            })
            .collect();
        self.sink.write(&lines)?;
        metrics.dead_letters.add(lines.len() as u64);
        Ok(())
    }

    /// Finishes the current file.
    pub fn close(&mut self) -> Result<(), SinkError> {
        self.sink.close()
    }
}

fn line(value: serde_json::Value) -> Record {
    Record {
        data: Bytes::from(serde_json::to_vec(&value).unwrap_or_default()),
        partition_key: None,
        stream: None,
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
