//! Blocking I/O (file-sink writes, fsync and rename, stdout, checkpoints, dead letters) off
//! the async workers.
//!
//! Those calls are short when the disk and the reader are fast, but a slow disk or a full
//! stdout pipe would hold a worker thread, and with it the tasks queued on that worker (the
//! source, the admin API, the acknowledgements). [`offload`] runs them through tokio's
//! `block_in_place`, which first hands the worker's other tasks to a new worker. Unlike
//! `spawn_blocking` it needs no `'static` closure, so the sinks keep their borrowed state.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work`, which may block, without stalling the runtime's other tasks. Outside a
/// multi-threaded tokio runtime (unit tests, start-up) it simply runs it.
pub fn offload<T>(work: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn other_tasks_run_while_offloaded_work_blocks_the_only_worker() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let answered = runtime.block_on(async {
            // Both tasks on the one worker: the second is queued behind the first, which
            // blocks until the second has run.
            tokio::spawn(async {
                let (tx, rx) = std::sync::mpsc::channel();
                tokio::spawn(async move {
                    let _ = tx.send(());
                });
                offload(|| rx.recv_timeout(Duration::from_secs(20)))
            })
            .await
        });
        assert!(matches!(answered, Ok(Ok(()))), "the other task never ran");
    }

    #[test]
    fn outside_a_runtime_the_work_just_runs() {
        assert_eq!(offload(|| 42), 42);
    }
}
