//! Blocking I/O (file-sink writes, fsync and rename, stdout, checkpoints, dead letters) off
//! the async workers.
//!
//! Those calls are short when the disk and the reader are fast, but a slow disk or a full
//! stdout pipe would hold a worker thread, and with it the tasks queued on that worker (the
//! source, the admin API, the acknowledgements). They run on tokio's blocking pool
//! (`spawn_blocking`, bounded by the runtime's `max_blocking_threads`), and the task waits
//! for them without holding its worker.
//!
//! `block_in_place` did this before without `'static` closures, but it hands the worker's
//! core to another thread on every call: with a thousand pipelines that was most of the
//! CPU, and hundreds of threads, each with its own allocator heap. State a job works on is
//! therefore owned ([`Offloaded`]) and lent to the job.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::runtime::Handle;

/// Runs `work`, which may block, on the blocking pool and waits for it. Outside a tokio
/// runtime (start-up, unit tests) it simply runs it. A panic in `work` is resumed here.
pub async fn offload<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    if Handle::try_current().is_err() {
        return work();
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// State that blocking jobs work on (a file sink, the dead letters): owned
/// here and lent to each job in turn.
#[derive(Debug)]
pub struct Offloaded<S>(Arc<Mutex<S>>);

impl<S: Send + 'static> Offloaded<S> {
    /// Takes ownership of `state`.
    pub fn new(state: S) -> Self {
        Self(Arc::new(Mutex::new(state)))
    }

    /// Runs `work` on the state on the blocking pool (see [`offload`]).
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut S) -> T + Send + 'static,
    ) -> T {
        let state = Arc::clone(&self.0);
        offload(move || work(&mut state.lock().unwrap_or_else(PoisonError::into_inner))).await
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
                offload(move || rx.recv_timeout(Duration::from_secs(20))).await
            })
            .await
        });
        assert!(matches!(answered, Ok(Ok(()))), "the other task never ran");
    }

    #[test]
    fn outside_a_runtime_the_work_just_runs() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        // The future is polled by a runtime, but created outside: still fine.
        assert_eq!(runtime.block_on(offload(|| 42)), 42);
    }

    #[test]
    fn offloaded_state_is_lent_to_each_job_in_turn() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let state = Offloaded::new(Vec::new());
        let lines = runtime.block_on(async {
            for n in 0..3 {
                state.run(move |lines: &mut Vec<u32>| lines.push(n)).await;
            }
            state.run(|lines| lines.clone()).await
        });
        assert_eq!(lines, vec![0, 1, 2]);
    }
}
