//! Files only the process's user may read: checkpoints (they name the stream) and dead
//! letters (they hold the data). Directories are 0700, files 0600, and a file is created
//! exclusively (`O_CREAT | O_EXCL`, which does not follow a symbolic link), so a link
//! planted where a file is about to be created is refused instead of written through.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Mode of private directories.
pub const DIR_MODE: u32 = 0o700;

/// Mode of private files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents, 0700 each) and makes `dir` itself 0700, which an
/// older release may have left open.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let metadata = fs::symlink_metadata(dir)?;
    if !metadata.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory (a symbolic link?); refusing to use it",
            dir.display()
        )));
    }
    if metadata.permissions().mode() & 0o777 != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// A new file at `path`, 0600, for appending; fails if anything (a link too) is there.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Replaces `path` with `body` atomically: a new temporary file beside it (0600, created
/// exclusively), written, synced when `sync`, then renamed over `path`. A temporary file a
/// crash left behind is removed first; a symbolic link in its place is refused.
pub fn replace(path: &Path, temporary: &Path, body: &[u8], sync: bool) -> io::Result<()> {
    let mut file = match create_new(temporary) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            let leftover = fs::symlink_metadata(temporary)?;
            if !leftover.file_type().is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} is not a regular file (a symbolic link?); refusing to write through it",
                        temporary.display()
                    ),
                ));
            }
            fs::remove_file(temporary)?;
            create_new(temporary)?
        }
        Err(error) => return Err(error),
    };
    let written = file
        .write_all(body)
        .and_then(|()| if sync { file.sync_all() } else { Ok(()) });
    drop(file);
    if let Err(error) = written {
        // A full disk: give back what the partial file took (the next try creates it anew).
        let _ = fs::remove_file(temporary);
        return Err(error);
    }
    fs::rename(temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_replaced_file_is_0600_in_a_0700_directory_even_one_made_open_before() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pipelines").join("p");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let path = dir.join("checkpoint.json");
        replace(&path, &dir.join("checkpoint.json.tmp"), b"{}", false).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"{}");
    }

    #[test]
    fn a_link_planted_as_the_temporary_file_is_refused_and_its_target_untouched() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("victim");
        fs::write(&target, "precious").unwrap();
        let temporary = root.path().join("checkpoint.json.tmp");
        std::os::unix::fs::symlink(&target, &temporary).unwrap();
        let error = replace(
            &root.path().join("checkpoint.json"),
            &temporary,
            b"{}",
            false,
        )
        .expect_err("a planted link is refused");
        assert!(error.to_string().contains("refusing"), "{error}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert!(!root.path().join("checkpoint.json").exists());
    }

    #[test]
    fn a_temporary_file_left_by_a_crash_is_replaced() {
        let root = tempfile::tempdir().unwrap();
        let temporary = root.path().join("c.tmp");
        fs::write(&temporary, "torn").unwrap();
        replace(&root.path().join("c"), &temporary, b"whole", false).unwrap();
        assert_eq!(fs::read_to_string(root.path().join("c")).unwrap(), "whole");
    }

    #[test]
    fn create_new_refuses_a_planted_link() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("victim");
        fs::write(&target, "precious").unwrap();
        let path = root.path().join("letters.ndjson");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(create_new(&path).is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    }
}
