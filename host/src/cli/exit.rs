//! Exit codes, one meaning each, so that supervisors and scripts can act on them.

use std::fmt::Display;

/// Everything asked for was done (for `--once`: the stream ended and every record was written).
pub const OK: u8 = 0;
/// The pipeline failed: a fatal HTTP status, a sink that cannot write, a broken component.
pub const FAILURE: u8 = 1;
/// The command line or configuration is wrong; nothing was started.
pub const USAGE: u8 = 2;
/// The server answered 204 No Content: per the SSE spec, "do not reconnect".
pub const SERVER_SAID_STOP: u8 = 3;
/// Another process took the pipeline's checkpoint over (`--checkpoint-store dynamodb:…`):
/// this one stopped without writing, and nothing failed. A supervisor should not start it
/// again here: the new owner runs it.
pub const HANDED_OVER: u8 = 4;
/// The reader of stdout went away (`--sink stdout | head`): 128 + SIGPIPE, the status of a
/// Unix tool killed by SIGPIPE, so that `set -o pipefail` scripts see what `yes | head` gives.
pub const READER_GONE: u8 = 141;

/// An error on its way out of `main`: a message for the operator and an exit code.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// One line for stderr.
    pub message: String,
}

impl Failure {
    /// A usage or configuration error (exit code 2).
    pub fn usage(message: impl Display) -> Self {
        Self {
            code: USAGE,
            message: message.to_string(),
        }
    }

    /// A runtime failure (exit code 1).
    pub fn failed(message: impl Display) -> Self {
        Self {
            code: FAILURE,
            message: message.to_string(),
        }
    }
}
