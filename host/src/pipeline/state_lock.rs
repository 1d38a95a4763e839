//! One owner per pipeline state: an exclusive advisory lock on the pipeline's state
//! directory and on its file-sink output, taken first thing at start.
//!
//! Two processes running the same pipeline would write the same checkpoint, and the second
//! one's start-up recovery in the sink directory would rename the first one's live
//! `.inprogress` file. The lock is `flock(2)` through `File::try_lock`: the kernel releases
//! it when the process ends, however it ends, so a `kill -9` leaves nothing stale behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The name of the lock file in each locked directory.
pub const LOCK_FILE: &str = ".sse-ingest.lock";

/// Locks held for as long as this value lives.
#[derive(Debug)]
pub struct StateLock {
    _held: Vec<File>,
}

/// A lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another sse-ingest process is running pipeline `{pipeline}` on {} (it holds {}); stop \
         it first, or give this one another --name or directory",
        dir.display(),
        lock.display()
    )]
    Held {
        /// The pipeline's name.
        pipeline: String,
        /// The directory it owns.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

impl StateLock {
    /// Locks `dirs` (each created if missing) for `pipeline`, or fails on the first one
    /// another process holds.
    pub fn acquire(pipeline: &str, dirs: &[PathBuf]) -> Result<Self, LockError> {
        let mut held = Vec::with_capacity(dirs.len());
        for dir in dirs {
            held.push(lock(pipeline, dir)?);
        }
        Ok(Self { _held: held })
    }
}

fn lock(pipeline: &str, dir: &Path) -> Result<File, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(LockError::Held {
            pipeline: pipeline.to_string(),
            dir: dir.to_path_buf(),
            lock: path,
        }),
        Err(TryLockError::Error(source)) => Err(io(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dirs = [dir.path().join("pipelines/p")];
        let first = StateLock::acquire("p", &dirs).expect("the first lock");
        let error = StateLock::acquire("p", &dirs).expect_err("held");
        let text = error.to_string();
        assert!(text.contains("pipeline `p`"), "{text}");
        assert!(text.contains(&dirs[0].display().to_string()), "{text}");
        drop(first);
        assert!(StateLock::acquire("p", &dirs).is_ok());
    }
}
