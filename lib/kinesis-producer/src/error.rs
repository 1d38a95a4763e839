//! The producer's error type.

/// Why the producer could not start, accept records, or close.
///
/// Problems with individual records are never errors of this type: they come back as
/// [`DeadLetter`](crate::DeadLetter)s in the [`BatchOutcome`](crate::BatchOutcome) of the
/// call that submitted them, and the producer keeps running.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// DescribeStreamSummary answered ResourceNotFoundException for the default stream.
    #[error("Kinesis stream {stream:?} not found (DescribeStreamSummary: {message})")]
    StreamNotFound {
        /// The stream name or ARN as configured.
        stream: String,
        /// The service's message.
        message: String,
    },
    /// DescribeStreamSummary failed for another reason (credentials, network, permissions).
    #[error("cannot describe Kinesis stream {stream:?}: {message}")]
    Describe {
        /// The stream name or ARN as configured.
        stream: String,
        /// The error with its chain of causes.
        message: String,
    },
    /// A [`ProducerConfig`](crate::ProducerConfig) value is out of range.
    #[error("invalid producer configuration: {0}")]
    InvalidConfig(String),
    /// [`Producer::close`](crate::Producer::close) was called (on this handle or a clone).
    #[error("the producer is closed")]
    Closed,
    /// The background task that sends requests is gone, which only happens when the Tokio
    /// runtime that started it shuts down; what it still held was not delivered.
    #[error("the producer's background task stopped (was its Tokio runtime shut down?)")]
    Stopped,
}
