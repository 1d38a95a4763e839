//! The file sink: newline-delimited records laid out like Firehose's S3 keys.
//!
//! `DIR/PIPELINE/YYYY/MM/DD/HH/PIPELINE-YYYY-MM-DD-HH-MM-SS-mmm-SEQ.ndjson`
//! (UTC). The date folders and the time-then-sequence file names make a plain
//! sort of the paths give delivery order. A file is written as
//! `….ndjson.inprogress` and renamed when it is rolled (by size, age, or a new
//! hour) or the sink closes, so a reader that only takes `.ndjson` files never
//! sees a half-written one. After a crash, `open` repairs leftover
//! `.inprogress` files: it cuts a torn last line and renames them.
//!
//! A file is rolled by age even when nothing more is written: the pipeline calls
//! [`FileSink::roll_if_due`] at [`FileSink::roll_deadline`], so a record of a quiet stream is
//! in a finished file within `--file-roll-interval-ms` (plus the time to finish it).
//!
//! Each batch is one `write` of whole lines; it is acknowledged once the
//! kernel has it (which survives the process being killed), and files are
//! `fsync`ed when they are finished. A write that fails (a full disk) is cut back to the
//! last whole line before the error is returned, so the batch can be written again once
//! there is room, and no reader ever sees part of it. A rolled file is synced and renamed on the
//! blocking pool while writing goes on into the next one (syncing 64 MiB held up
//! the stream for as long as the disk took); finishes happen one at a time, in
//! order, so files still become visible in delivery order, and closing waits for them.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::macros::format_description;

use super::{SinkError, encode_lines};
use crate::core::private_files;
use crate::core::record::Record;

const IN_PROGRESS: &str = "inprogress";

/// When files are rolled (`--file-roll-bytes`, `--file-roll-interval-ms`), after Firehose's
/// buffering hints: by size or by age, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRoll {
    /// Roll a file once it holds this many bytes.
    pub max_bytes: u64,
    /// Roll a file once it is this old, written to or not.
    pub max_age: Duration,
}

impl Default for FileRoll {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_age: Duration::from_secs(60),
        }
    }
}

/// How the file sink lays out and rolls files.
#[derive(Debug, Clone)]
pub struct FileSinkOptions {
    /// The sink's directory.
    pub dir: PathBuf,
    /// The prefix folder and file name start (the pipeline's name).
    pub prefix: String,
    /// Roll a file once it holds this many bytes. Default: 64 MiB.
    pub max_file_bytes: u64,
    /// Roll a file once it is this old. Default: 60 s.
    pub max_file_age: Duration,
    /// Only the process's user may read: directories 0700, files 0600 (dead letters).
    /// Default: the umask decides, as for any file a program writes.
    pub private: bool,
    /// At most this many bytes in all the files under `DIR/PREFIX` (dead letters, which are
    /// never dropped to make room: a write past it fails with [`SinkError::Full`] until
    /// files are moved away). Default: none.
    pub max_total_bytes: Option<u64>,
}

impl FileSinkOptions {
    /// Defaults for a pipeline writing under `dir`.
    pub fn new(dir: &Path, pipeline: &str) -> Self {
        let roll = FileRoll::default();
        Self {
            dir: dir.to_path_buf(),
            prefix: pipeline.to_string(),
            max_file_bytes: roll.max_bytes,
            max_file_age: roll.max_age,
            private: false,
            max_total_bytes: None,
        }
    }

    /// These options, rolling files as `roll` says.
    pub fn rolling(self, roll: FileRoll) -> Self {
        Self {
            max_file_bytes: roll.max_bytes,
            max_file_age: roll.max_age,
            ..self
        }
    }
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    path: PathBuf,
    bytes: u64,
    /// When it is rolled by age or by the end of its hour, whichever comes first.
    roll_at: Instant,
    hour: (i32, u8, u8, u8),
}

/// See the module docs.
#[derive(Debug)]
pub struct FileSink {
    options: FileSinkOptions,
    current: Option<OpenFile>,
    sequence: u64,
    buffer: Vec<u8>,
    /// The outcome of the rolled file being synced and renamed in the background.
    finishing: Option<mpsc::Receiver<Result<(), SinkError>>>,
    /// Bytes under `DIR/PREFIX`, kept with [`FileSinkOptions::max_total_bytes`]; `None` until
    /// measured, and again after the bound was hit (files may have been moved away since).
    used: Option<u64>,
}

impl FileSink {
    /// Opens the sink, repairing files a crashed run left in progress.
    pub fn open(options: FileSinkOptions) -> Result<Self, SinkError> {
        let root = options.dir.join(&options.prefix);
        create_dir(&root, options.private).map_err(|source| SinkError::File {
            action: "create",
            path: root.clone(),
            source,
        })?;
        recover_in_progress(&root)?;
        Ok(Self {
            options,
            current: None,
            sequence: 0,
            buffer: Vec::new(),
            finishing: None,
            used: None,
        })
    }

    /// Appends the records as whole lines; returns once the kernel has them. On an error
    /// nothing of the batch stays in the file, so it may be written again.
    pub fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        self.check_finished()?;
        encode_lines(records, &mut self.buffer);
        self.check_bound()?;
        let now = OffsetDateTime::now_utc();
        if self.should_roll(now) {
            self.roll()?;
        }
        if self.current.is_none() {
            self.current = Some(self.create_file(now)?);
        }
        let Some(open) = self.current.as_mut() else {
            return Ok(());
        };
        if let Err(source) = open.file.write_all(&self.buffer) {
            // A partial write (the disk filled up mid-batch) is cut back to the last whole
            // line, so the batch can be written again without a torn or repeated record.
            return Err(match open.file.set_len(open.bytes) {
                Ok(()) => SinkError::File {
                    action: "write",
                    path: open.path.clone(),
                    source,
                },
                Err(cut) => SinkError::File {
                    action: "cut back a partial write to",
                    path: open.path.clone(),
                    source: std::io::Error::new(cut.kind(), format!("{cut} (after: {source})")),
                },
            });
        }
        open.bytes += self.buffer.len() as u64;
        if let Some(used) = self.used.as_mut() {
            *used += self.buffer.len() as u64;
        }
        Ok(())
    }

    /// When the current file is due to be rolled by age (or the end of its hour), if one
    /// is open: the pipeline calls [`roll_if_due`](Self::roll_if_due) then, so a quiet
    /// stream's records are finished without waiting for another write.
    pub fn roll_deadline(&self) -> Option<Instant> {
        self.current.as_ref().map(|open| open.roll_at)
    }

    /// Rolls the current file if it is due; returns the next deadline.
    pub fn roll_if_due(&mut self) -> Result<Option<Instant>, SinkError> {
        self.check_finished()?;
        if self.should_roll(OffsetDateTime::now_utc()) {
            self.roll()?;
        }
        Ok(self.roll_deadline())
    }

    /// With a bound on the total size, refuses a batch that would pass it ([`SinkError::Full`])
    /// and finishes the open file, so that whoever makes room can move every file away;
    /// unless nothing is stored (one batch larger than the bound goes alone, so it cannot
    /// wait forever).
    fn check_bound(&mut self) -> Result<(), SinkError> {
        let Some(max) = self.options.max_total_bytes else {
            return Ok(());
        };
        let root = self.options.dir.join(&self.options.prefix);
        let used = self.used.unwrap_or_else(|| size_of_files(&root));
        let adding = self.buffer.len() as u64;
        if used > 0 && used.saturating_add(adding) > max {
            // Measured again on the next try: an operator may have moved files away. The
            // open file is finished, so that every file can be.
            self.used = None;
            self.roll()?;
            return Err(SinkError::Full {
                path: root,
                used,
                adding,
                max,
            });
        }
        self.used = Some(used);
        Ok(())
    }

    /// Finishes the current file (and waits for a rolled one still being finished).
    pub fn close(&mut self) -> Result<(), SinkError> {
        self.finish_current()
    }

    /// Hands the current file to the blocking pool to be synced and renamed, after the
    /// previous one (so files become visible in order). Outside a runtime it finishes here.
    fn roll(&mut self) -> Result<(), SinkError> {
        self.wait_finished()?;
        let Some(open) = self.current.take() else {
            return Ok(());
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return finish(open);
        }
        let (done, outcome) = mpsc::channel();
        tokio::task::spawn_blocking(move || {
            let _ = done.send(finish(open));
        });
        self.finishing = Some(outcome);
        Ok(())
    }

    /// The error of a background finish that has failed, if any (without waiting).
    fn check_finished(&mut self) -> Result<(), SinkError> {
        match self.finishing.as_ref().map(mpsc::Receiver::try_recv) {
            Some(Ok(outcome)) => {
                self.finishing = None;
                outcome
            }
            Some(Err(mpsc::TryRecvError::Disconnected)) => {
                self.finishing = None;
                Ok(())
            }
            Some(Err(mpsc::TryRecvError::Empty)) | None => Ok(()),
        }
    }

    /// Waits for a background finish.
    fn wait_finished(&mut self) -> Result<(), SinkError> {
        match self.finishing.take() {
            // A finish whose task is gone (the runtime shut down) left its file in progress:
            // the next open repairs it.
            Some(outcome) => outcome.recv().unwrap_or(Ok(())),
            None => Ok(()),
        }
    }

    fn should_roll(&self, now: OffsetDateTime) -> bool {
        self.current.as_ref().is_some_and(|open| {
            open.bytes >= self.options.max_file_bytes
                || Instant::now() >= open.roll_at
                || open.hour != hour_of(now)
        })
    }

    fn create_file(&mut self, now: OffsetDateTime) -> Result<OpenFile, SinkError> {
        let (year, month, day, hour) = hour_of(now);
        let dir = self
            .options
            .dir
            .join(&self.options.prefix)
            .join(format!("{year:04}"))
            .join(format!("{month:02}"))
            .join(format!("{day:02}"))
            .join(format!("{hour:02}"));
        create_dir(&dir, self.options.private).map_err(|source| SinkError::File {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        let stamp = now
            .format(format_description!(
                "[year]-[month]-[day]-[hour]-[minute]-[second]-[subsecond digits:3]"
            ))
            .unwrap_or_default();
        self.sequence += 1;
        let name = format!(
            "{}-{stamp}-{:06}.ndjson.{IN_PROGRESS}",
            self.options.prefix, self.sequence
        );
        let path = dir.join(name);
        // Exclusively: a link planted under this name is refused, never written through.
        let file = if self.options.private {
            private_files::create_new(&path)
        } else {
            OpenOptions::new().create_new(true).append(true).open(&path)
        };
        let file = file.map_err(|source| SinkError::File {
            action: "create",
            path: path.clone(),
            source,
        })?;
        // The end of the hour by the wall clock, as a point on the monotonic one.
        let into_hour = Duration::from_secs(u64::from(now.minute()) * 60 + u64::from(now.second()))
            + Duration::from_nanos(u64::from(now.nanosecond()));
        let hour_left = Duration::from_secs(3600).saturating_sub(into_hour);
        let opened = Instant::now();
        Ok(OpenFile {
            file,
            path,
            bytes: 0,
            roll_at: opened + self.options.max_file_age.min(hour_left),
            hour: (year, month, day, hour),
        })
    }

    /// Finishes the current file here, after any rolled one.
    fn finish_current(&mut self) -> Result<(), SinkError> {
        self.wait_finished()?;
        match self.current.take() {
            Some(open) => finish(open),
            None => Ok(()),
        }
    }
}

/// Syncs a written file and renames it to its final name.
fn finish(open: OpenFile) -> Result<(), SinkError> {
    open.file.sync_all().map_err(|source| SinkError::File {
        action: "sync",
        path: open.path.clone(),
        source,
    })?;
    drop(open.file);
    let finished = open.path.with_extension("");
    fs::rename(&open.path, &finished).map_err(|source| SinkError::File {
        action: "rename",
        path: open.path.clone(),
        source,
    })
}

impl Drop for FileSink {
    fn drop(&mut self) {
        if let Err(error) = self.finish_current() {
            tracing::error!(%error, "could not finish the last file");
        }
    }
}

/// `dir` and its missing parents; private ones 0700 (see [`FileSinkOptions::private`]).
fn create_dir(dir: &Path, private: bool) -> std::io::Result<()> {
    if private {
        private_files::create_dir(dir)
    } else {
        fs::create_dir_all(dir)
    }
}

/// Bytes in the regular files under `root` (links are not followed; a file removed while
/// it is measured counts as gone).
fn size_of_files(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}

fn hour_of(now: OffsetDateTime) -> (i32, u8, u8, u8) {
    (now.year(), now.month() as u8, now.day(), now.hour())
}

/// Cuts a torn last line from each `.inprogress` file and renames it.
fn recover_in_progress(root: &Path) -> Result<(), SinkError> {
    for entry in walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
    {
        let path = entry.path();
        // A link is not ours to repair (walkdir does not follow links).
        if !entry.file_type().is_file()
            || path.extension().and_then(|e| e.to_str()) != Some(IN_PROGRESS)
        {
            continue;
        }
        let io = |action, source| SinkError::File {
            action,
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io("open", e))?;
        let mut content = Vec::new();
        file.read_to_end(&mut content).map_err(|e| io("read", e))?;
        let keep = content
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if keep < content.len() {
            tracing::warn!(
                path = %path.display(),
                torn_bytes = content.len() - keep,
                "cut a torn last record left by an interrupted run"
            );
            file.set_len(keep as u64).map_err(|e| io("truncate", e))?;
            file.seek(SeekFrom::End(0)).map_err(|e| io("seek", e))?;
        }
        file.sync_all().map_err(|e| io("sync", e))?;
        drop(file);
        if keep == 0 {
            fs::remove_file(path).map_err(|e| io("remove", e))?;
        } else {
            fs::rename(path, path.with_extension("")).map_err(|e| io("rename", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(text: &str) -> Record {
        Record {
            data: Bytes::copy_from_slice(text.as_bytes()),
            partition_key: None,
            stream: None,
        }
    }

    fn finished_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| e.path().to_path_buf())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn records_are_lines_in_a_finished_file_after_close() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let mut sink = FileSink::open(FileSinkOptions::new(dir.path(), "p"))?;
        sink.write(&[record("a"), record("b")])?;
        sink.write(&[record("c")])?;
        sink.close()?;
        let files = finished_files(dir.path());
        assert_eq!(files.len(), 1);
        assert!(files[0].to_string_lossy().ends_with(".ndjson"));
        assert_eq!(fs::read_to_string(&files[0])?, "a\nb\nc\n");
        Ok(())
    }

    #[test]
    fn a_private_sink_writes_0600_files_in_0700_directories()
    -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: &Path| -> std::io::Result<u32> {
            Ok(fs::metadata(path)?.permissions().mode() & 0o777)
        };
        let dir = tempfile::tempdir()?;
        let options = FileSinkOptions {
            private: true,
            ..FileSinkOptions::new(dir.path(), "p")
        };
        let mut sink = FileSink::open(options)?;
        sink.write(&[record("secret data")])?;
        sink.close()?;
        let files = finished_files(dir.path());
        assert_eq!(files.len(), 1);
        assert_eq!(mode(&files[0])?, 0o600);
        let mut folder = files[0].parent();
        while let Some(path) = folder.filter(|path| *path != dir.path()) {
            assert_eq!(mode(path)?, 0o700, "{}", path.display());
            folder = path.parent();
        }
        Ok(())
    }

    /// Writes records `000` to `029` into files of at most 4 bytes (one record each), closes
    /// the sink, and returns the files under `root`, sorted.
    fn thirty_records_in_tiny_files(root: &Path) -> Result<Vec<PathBuf>, SinkError> {
        let mut options = FileSinkOptions::new(root, "p");
        options.max_file_bytes = 4;
        let mut sink = FileSink::open(options)?;
        for i in 0..30 {
            sink.write(&[record(&format!("{i:03}"))])?;
        }
        sink.close()?;
        Ok(finished_files(root))
    }

    /// Every file is finished, and their contents in path order are the thirty records.
    fn assert_finished_in_order(files: &[PathBuf]) -> Result<(), Box<dyn std::error::Error>> {
        assert!(files.len() >= 15, "expected many rolled files: {files:?}");
        assert!(
            files
                .iter()
                .all(|f| f.extension().is_some_and(|e| e == "ndjson")),
            "a file is still in progress after close: {files:?}"
        );
        let mut all = String::new();
        for file in files {
            all.push_str(&fs::read_to_string(file)?);
        }
        let expected: String = (0..30).map(|i| format!("{i:03}\n")).collect();
        assert_eq!(all, expected);
        Ok(())
    }

    #[test]
    fn sorting_paths_gives_delivery_order_across_rolled_files()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert_finished_in_order(&thirty_records_in_tiny_files(dir.path())?)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn rolled_files_finish_in_the_background_and_close_waits_for_them()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().to_path_buf();
        // As in a pipeline: the sink is written on the blocking pool, so rolled files are
        // finished in the background.
        let files =
            tokio::task::spawn_blocking(move || thirty_records_in_tiny_files(&root)).await??;
        assert_finished_in_order(&files)
    }

    #[test]
    fn an_idle_file_is_rolled_at_its_deadline_without_another_write()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let options = FileSinkOptions::new(dir.path(), "p").rolling(FileRoll {
            max_bytes: 1024,
            max_age: Duration::from_millis(50),
        });
        let mut sink = FileSink::open(options)?;
        assert_eq!(sink.roll_deadline(), None, "no file, no deadline");
        sink.write(&[record("a")])?;
        let deadline = sink
            .roll_deadline()
            .ok_or("a deadline once a file is open")?;
        assert!(deadline <= Instant::now() + Duration::from_millis(50));
        assert_eq!(sink.roll_if_due()?, Some(deadline), "not due yet");
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        assert_eq!(sink.roll_if_due()?, None, "rolled: no file open");
        let files = finished_files(dir.path());
        assert_eq!(files.len(), 1);
        assert!(files[0].to_string_lossy().ends_with(".ndjson"), "{files:?}");
        assert_eq!(fs::read_to_string(&files[0])?, "a\n");
        Ok(())
    }

    #[test]
    fn a_bounded_sink_refuses_what_would_pass_its_bound_until_files_are_moved_away()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let options = FileSinkOptions {
            max_total_bytes: Some(8),
            ..FileSinkOptions::new(dir.path(), "p")
        };
        let mut sink = FileSink::open(options)?;
        // One batch larger than the bound goes alone into an empty output.
        sink.write(&[record("0123456789")])?;
        let refused = sink.write(&[record("a")]);
        assert!(
            matches!(
                refused,
                Err(SinkError::Full {
                    used: 11,
                    adding: 2,
                    max: 8,
                    ..
                })
            ),
            "{refused:?}"
        );
        sink.close()?;
        for file in finished_files(dir.path()) {
            fs::remove_file(file)?;
        }
        sink.write(&[record("a")])?;
        sink.write(&[record("b")])?;
        sink.close()?;
        let all: String = finished_files(dir.path())
            .iter()
            .map(fs::read_to_string)
            .collect::<Result<_, _>>()?;
        assert_eq!(all, "a\nb\n");
        Ok(())
    }

    #[test]
    fn a_torn_last_line_is_cut_when_the_sink_reopens() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let torn = dir
            .path()
            .join("p/2026/01/01/00/p-x-000001.ndjson.inprogress");
        fs::create_dir_all(torn.parent().ok_or("no parent")?)?;
        fs::write(&torn, "whole\nto")?;
        let _sink = FileSink::open(FileSinkOptions::new(dir.path(), "p"))?;
        let repaired = torn.with_extension("");
        assert_eq!(fs::read_to_string(repaired)?, "whole\n");
        assert!(!torn.exists());
        Ok(())
    }
}
