//! The key of a checkpoint's URL digest. A checkpoint must tell `?wiki=en` from `?wiki=de`
//! and `?token=A` from `?token=B` exactly, yet hold no credential: it keeps the URL as it is
//! shown (credentials hidden) beside an HMAC-SHA256 of the URL as requested.
//!
//! Why keyed: the shown URL gives away everything but the hidden values, so a plain hash of
//! a short or guessable token could be found by trying candidates against a checkpoint
//! that went somewhere (a ticket, a backup of the item). With a random key kept apart from
//! the checkpoints, the digest alone tells nothing. The key lives where every process that
//! may resume the checkpoint finds it, and nowhere else: for the file store
//! `STATE_DIR/stream-key` (0600, beside the 0700 `pipelines/`), for DynamoDB an item of the
//! checkpoint table itself (`#stream-key`, after `NAMESPACE/`), so a pipeline that moves to
//! another replica still recognises its stream. Created once, by whoever comes first;
//! never replaced (a new key would make every checkpoint look like another stream's).

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::CheckpointError;
use crate::core::private_files;

/// Bytes of a key.
const KEY_BYTES: usize = 32;

/// How a digest is written down: the algorithm, then lower-case hex.
const DIGEST_PREFIX: &str = "hmac-sha256:";

/// A random key that URL digests are made with.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamKey([u8; KEY_BYTES]);

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey([redacted])")
    }
}

impl StreamKey {
    /// A new random key.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The key as stored (hex).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A key as stored; `None` when `text` is not 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() != KEY_BYTES * 2 || !text.is_ascii() {
            return None;
        }
        let mut key = [0u8; KEY_BYTES];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(key))
    }

    /// `hmac-sha256:HEX` of `text` under this key (RFC 2104).
    pub fn digest(&self, text: &str) -> String {
        const BLOCK: usize = 64;
        let mut inner = Sha256::new();
        let mut outer = Sha256::new();
        let mut padded = [0u8; BLOCK];
        padded[..KEY_BYTES].copy_from_slice(&self.0);
        inner.update(padded.map(|b| b ^ 0x36));
        outer.update(padded.map(|b| b ^ 0x5c));
        inner.update(text.as_bytes());
        outer.update(inner.finalize());
        format!("{DIGEST_PREFIX}{}", hex(&outer.finalize()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of the file store under `state_dir`, created (0600) when there is none. Two
/// pipelines starting at once agree: the key is written to a temporary file of its own and
/// linked into place, which fails when another was first (whose key is then read).
pub fn of_state_dir(state_dir: &Path) -> Result<StreamKey, CheckpointError> {
    let path = state_dir.join("stream-key");
    let io = |action: &'static str, source: io::Error| CheckpointError::Io {
        action,
        path: path.clone(),
        source,
    };
    if let Some(key) = read(&path).map_err(|e| io("read the stream key of", e))? {
        return Ok(key);
    }
    private_files::create_dir(state_dir).map_err(|e| io("create the directory of", e))?;
    let temporary = state_dir.join(format!(
        "stream-key.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let key = StreamKey::random();
    let written = private_files::create_new(&temporary).and_then(|mut file| {
        file.write_all(key.to_hex().as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| fs::hard_link(&temporary, &path));
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(key),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => read(&path)
            .map_err(|e| io("read the stream key of", e))?
            .ok_or_else(|| corrupt(&path)),
        Err(error) => Err(io("create the stream key of", error)),
    }
}

fn read(path: &Path) -> io::Result<Option<StreamKey>> {
    match fs::read_to_string(path) {
        Ok(text) => StreamKey::from_hex(&text)
            .map(Some)
            .ok_or_else(|| io::Error::other("it is not 64 hex digits")),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

fn corrupt(path: &Path) -> CheckpointError {
    CheckpointError::Corrupt {
        location: path.display().to_string(),
        reason: "not a stream key".to_string(),
        remedy: "move it away (every checkpoint then starts from the live edge once)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_hmac_sha256_as_rfc_4231_gives_it() {
        // Computed independently: python3 -c 'import hmac;
        // print(hmac.new(bytes(range(32)), b"abc", "sha256").hexdigest())'
        let key = StreamKey(std::array::from_fn(|i| i as u8));
        assert_eq!(
            key.digest("abc"),
            "hmac-sha256:f0133729c4163dede81e21cd47839256da58171238c8a0d874397c73b14e1e47"
        );
    }

    #[test]
    fn a_state_dir_keeps_one_key_private_and_the_same_across_opens() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = of_state_dir(dir.path()).unwrap();
        let again = of_state_dir(dir.path()).unwrap();
        assert_eq!(first, again);
        let mode = fs::metadata(dir.path().join("stream-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_ne!(
            first,
            of_state_dir(tempfile::tempdir().unwrap().path()).unwrap()
        );
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
    }
}
