//! Dead letters: what cannot be delivered is written here with the reason,
//! like Firehose's error prefix, and the pipeline keeps running.
//!
//! `DIR/PIPELINE/YYYY/MM/DD/HH/….ndjson` (the file sink's layout), one JSON
//! object per line: `{"reason", "pipeline", "at", "kind", ...}` where `kind`
//! is `event` (a batch a filter failed on, or one event it failed alone: the events, so
//! nothing is lost) or `record` (a record the stream rule or the sink refused: its bytes
//! in base64, and its `event` when the filter's contract names it).
//!
//! They are bounded (`--dead-letter-max-bytes`, all files of the pipeline's directory,
//! measured at start): a write past the bound fails with [`SinkError::Full`], and the
//! pipeline waits for room (`pipeline::room`) as for a full disk. Dead letters are data, so
//! none is ever dropped to make room. Their files roll like the file sink's.
//!
//! They hold the stream's data, so only the process's user may read them: files 0600 in
//! 0700 directories. The pipeline's dead-letter directory is locked at start like the file
//! sink's (`state_lock`), since opening it repairs `.inprogress` files.

use std::path::Path;
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::json;

use crate::core::metrics::Metrics;
use crate::core::record::Record;
use crate::sink::{FileRoll, FileSink, FileSinkOptions, SinkError};
use crate::wasm::source::Event;

/// The dead-letter output of one pipeline.
#[derive(Debug)]
pub struct DeadLetters {
    pipeline: String,
    sink: FileSink,
}

impl DeadLetters {
    /// Opens (and repairs, after a crash) the dead-letter files under `dir`, rolled as
    /// `roll` says and holding at most `max_bytes`.
    pub fn open(
        dir: &Path,
        pipeline: &str,
        roll: FileRoll,
        max_bytes: u64,
    ) -> Result<Self, SinkError> {
        let options = FileSinkOptions {
            private: true,
            max_total_bytes: Some(max_bytes),
            ..FileSinkOptions::new(dir, pipeline).rolling(roll)
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
                    "event": event_json(event),
                }))
            })
            .collect();
        self.sink.write(&lines)?;
        metrics.dead_letters.add(lines.len() as u64);
        Ok(())
    }

    /// Writes records that cannot be written, each with its reason and, when known, the
    /// event it was made from (so the event itself is never lost).
    pub fn write_records(
        &mut self,
        letters: &[(Record, String, Option<Event>)],
        metrics: &Metrics,
    ) -> Result<(), SinkError> {
        let at = now_rfc3339();
        let lines: Vec<Record> = letters
            .iter()
            .map(|(record, reason, event)| {
                let mut letter = json!({
                    "kind": "record",
                    "reason": reason,
                    "pipeline": self.pipeline,
                    "at": at,
                    "partition_key": record.partition_key,
                    "stream": record.stream,
                    "data_base64": base64::engine::general_purpose::STANDARD.encode(&record.data),
                });
                if let Some(event) = event {
                    letter["event"] = event_json(event);
                }
                line(letter)
            })
            .collect();
        self.sink.write(&lines)?;
        metrics.dead_letters.add(lines.len() as u64);
        Ok(())
    }

    /// When the open file is due to be rolled by age, if one is open.
    pub fn roll_deadline(&self) -> Option<Instant> {
        self.sink.roll_deadline()
    }

    /// Rolls the open file if it is due; returns the next deadline.
    pub fn roll_if_due(&mut self) -> Result<Option<Instant>, SinkError> {
        self.sink.roll_if_due()
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

/// An event as dead letters hold it.
fn event_json(event: &Event) -> serde_json::Value {
    json!({
        "event": event.event_type,
        "id": event.id,
        "data": event.data,
        "received_at_ms": event.received_at_ms,
    })
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
