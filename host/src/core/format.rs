//! The record format a pipeline writes.

/// `--format`: what a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The event's data as UTF-8 bytes.
    Raw,
    /// One JSON object: `{"event","id","data","source","received_at"}`.
    Envelope,
}
