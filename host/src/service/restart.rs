//! What the service does with a pipeline that failed: restart it in the process after a
//! transient failure, let it go quietly when another owner took it over, or leave it
//! `failed` for an operator.
//!
//! Restarting in the process, rather than letting a supervisor replace the whole process,
//! keeps every other pipeline's connection open, and a DynamoDB, Kinesis or DNS hiccup at
//! start heals on its own. What retrying cannot fix (bad configuration, a fatal HTTP status,
//! a missing stream or table, access denied) stays `failed`, visible in `/pipelines` and
//! `/ready`, without a restart loop.

use std::time::Duration;

use rand::Rng as _;

use super::PipelineFailure;
use crate::pipeline::PipelineError;
use crate::pipeline::checkpoint::CheckpointError;
use crate::sink::SinkError;
use crate::wasm::source::SourceError;

/// The first restart's delay (before jitter); each further one doubles it.
pub const FIRST_DELAY: Duration = Duration::from_millis(500);
/// The longest delay between two restarts (before jitter).
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// A run that lasted this long was healthy: the next failure starts the delays afresh.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What becomes of a pipeline that did not end well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Start it again after a delay: what failed may pass.
    Restart,
    /// Another process took its checkpoint over: end quietly, without writing.
    HandedOver,
    /// It needs an operator.
    Fail,
}

/// Sorts a failure.
pub fn disposition(failure: &PipelineFailure) -> Disposition {
    let PipelineFailure::Run(error) = failure else {
        // Its state is locked by another process, or its filter cannot be loaded.
        return Disposition::Fail;
    };
    match error {
        PipelineError::Checkpoint(CheckpointError::Fenced { .. }) => Disposition::HandedOver,
        PipelineError::Checkpoint(error) if error.is_transient() => Disposition::Restart,
        PipelineError::Sink(SinkError::Kinesis(error)) if error.is_transient() => {
            Disposition::Restart
        }
        // A trap of the source (an instance that hit a limit or a bug): a new instance
        // resumes from the last acknowledged event.
        PipelineError::Source(SourceError::Component(_)) => Disposition::Restart,
        _ => Disposition::Fail,
    }
}

/// The delay before restart number `attempt` (1 for the first): half to all of
/// `min(MAX_DELAY, FIRST_DELAY * 2^(attempt-1))`, so that pipelines that failed together
/// (one DynamoDB outage) do not all come back at the same instant.
pub fn delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    let full = FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY);
    let half = full / 2;
    let span = u64::try_from((full - half).as_millis()).unwrap_or(u64::MAX);
    half + Duration::from_millis(rand::rng().random_range(0..=span))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamodb(transient: bool) -> PipelineFailure {
        PipelineFailure::Run(PipelineError::Checkpoint(CheckpointError::DynamoDb {
            action: "read",
            pipeline: "p".into(),
            table: "t".into(),
            reason: "HTTP 500".into(),
            transient,
        }))
    }

    #[test]
    fn passing_aws_failures_restart_and_refusals_fail() {
        assert_eq!(disposition(&dynamodb(true)), Disposition::Restart);
        assert_eq!(disposition(&dynamodb(false)), Disposition::Fail);
        let describe = |transient| {
            PipelineFailure::Run(PipelineError::Sink(SinkError::Kinesis(
                kinesis_producer::ProducerError::Describe {
                    stream: "s".into(),
                    message: "connection refused".into(),
                    transient,
                },
            )))
        };
        assert_eq!(disposition(&describe(true)), Disposition::Restart);
        assert_eq!(disposition(&describe(false)), Disposition::Fail);
        let missing = PipelineFailure::Run(PipelineError::Sink(SinkError::Kinesis(
            kinesis_producer::ProducerError::StreamNotFound {
                stream: "s".into(),
                message: "no such stream".into(),
            },
        )));
        assert_eq!(disposition(&missing), Disposition::Fail);
    }

    #[test]
    fn a_fence_hands_over_and_a_fatal_status_fails() {
        let fenced = PipelineFailure::Run(PipelineError::Checkpoint(CheckpointError::Fenced {
            pipeline: "p".into(),
            table: "t".into(),
            owner: "other/1".into(),
            version: "7".into(),
        }));
        assert_eq!(disposition(&fenced), Disposition::HandedOver);
        let fatal = PipelineFailure::Run(PipelineError::Source(SourceError::Stream(
            "the server answered HTTP 404".into(),
        )));
        assert_eq!(disposition(&fatal), Disposition::Fail);
        let trap = PipelineFailure::Run(PipelineError::Source(SourceError::Component(
            anyhow::anyhow!("wasm trap: out of bounds memory access"),
        )));
        assert_eq!(disposition(&trap), Disposition::Restart);
        assert_eq!(
            disposition(&PipelineFailure::Filter(
                crate::service::ComponentsError::FilterFile("no such file".into())
            )),
            Disposition::Fail
        );
    }

    #[test]
    fn delays_double_up_to_the_cap_with_jitter() {
        for _ in 0..100 {
            let first = delay(1);
            assert!(
                first >= FIRST_DELAY / 2 && first <= FIRST_DELAY,
                "{first:?}"
            );
            let third = delay(3);
            assert!(
                third >= FIRST_DELAY * 2 && third <= FIRST_DELAY * 4,
                "{third:?}"
            );
            let late = delay(50);
            assert!(late >= MAX_DELAY / 2 && late <= MAX_DELAY, "{late:?}");
        }
    }
}
