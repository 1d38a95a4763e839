//! What flows between the stages of a pipeline.

use bytes::Bytes;

/// One output record, as a filter emitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's bytes (shared, so sinks and retries never copy them).
    pub data: Bytes,
    /// The filter's partition key, if it chose one.
    pub partition_key: Option<String>,
    /// The filter's target stream, if not the pipeline's.
    pub stream: Option<String>,
}
