//! The response body as the guest reads it: the idle timeout, and failures in words.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::Error as HttpError;

use super::failure::{Failure, FailureClass, FailureSlot};

/// hyper's response body with a between-bytes deadline: no frame for `idle` fails the
/// stream (the source then reconnects), so a silent connection never stalls the pipeline.
pub struct ResponseBody {
    incoming: hyper::body::Incoming,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    address: String,
    failures: FailureSlot,
}

impl ResponseBody {
    /// Wraps `incoming` from `address`; failures are recorded in `failures`.
    pub fn new(
        incoming: hyper::body::Incoming,
        idle: Duration,
        address: String,
        failures: FailureSlot,
    ) -> Self {
        Self {
            incoming,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            address,
            failures,
        }
    }

    fn fail(&self, failure: &Failure) -> HttpError {
        self.failures.record(failure);
        failure.error_code()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                let failure = Failure::body(&this.address, &error);
                Poll::Ready(Some(Err(this.fail(&failure))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                let failure = Failure::new(
                    FailureClass::Timeout,
                    format!(
                        "no byte from {} for {} ms (--idle-timeout-ms)",
                        this.address,
                        this.idle.as_millis()
                    ),
                );
                Poll::Ready(Some(Err(this.fail(&failure))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
