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
        /// Whether a later try may succeed (throttling, a 5xx, no answer): see
        /// [`is_transient`](crate::is_transient).
        transient: bool,
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

impl ProducerError {
    /// Whether starting again later may get past this: only a describe call that met
    /// throttling, a server error or no answer at all. A missing stream, a bad
    /// configuration or a closed producer stay as they are.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Describe {
                transient: true,
                ..
            }
        )
    }
}
