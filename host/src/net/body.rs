//! The response body as the guest reads it: the idle timeout, and failures in words.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::Error as HttpError;

use super::failure::{Failure, FailureClass, FailureSlot};

/// hyper's connection future, driven by whoever reads the body.
pub type ConnectionDriver = Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

/// hyper's response body with a between-bytes deadline: no frame for `idle` fails the
/// stream (the source then reconnects), so a silent connection never stalls the pipeline.
///
/// It also drives the connection itself, in the reader's task. hyper's HTTP/1 connection
/// hands the body one chunk at a time (at most 8 KiB of a close-delimited body) and waits
/// for it to be taken; run as a task of its own, every chunk was a hand-off between two
/// tasks, often two threads, and a read that came a moment too early found nothing, so the
/// source flushed batches of 7 or 8 events. Driven here, a read finds the next chunk as long
/// as the socket has bytes, batches fill on a fast stream, and nothing is read from the
/// socket while nobody reads the body, which is exactly TCP backpressure.
pub struct ResponseBody {
    incoming: hyper::body::Incoming,
    connection: Option<ConnectionDriver>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    address: String,
    failures: FailureSlot,
}

impl ResponseBody {
    /// Wraps `incoming` from `address`; failures are recorded in `failures`.
    pub fn new(
        incoming: hyper::body::Incoming,
        connection: Option<ConnectionDriver>,
        idle: Duration,
        address: String,
        failures: FailureSlot,
    ) -> Self {
        Self {
            incoming,
            connection,
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
        // Take a chunk already handed over; else let the connection read the socket and
        // hand over the next one (it needs the body to have asked first), and look again.
        let mut polled = Pin::new(&mut this.incoming).poll_frame(cx);
        if let (true, Some(connection)) = (polled.is_pending(), this.connection.as_mut()) {
            if let Poll::Ready(ended) = connection.as_mut().poll(cx) {
                this.connection = None;
                if let Err(error) = ended {
                    let failure = Failure::body(&this.address, &error);
                    return Poll::Ready(Some(Err(this.fail(&failure))));
                }
            }
            polled = Pin::new(&mut this.incoming).poll_frame(cx);
        }
        match polled {
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
