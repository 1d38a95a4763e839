//! Which failed writes mean "no room": a full disk (`ENOSPC`), a used-up quota (`EDQUOT`), or
//! a bounded output at its bound. Such a write is waited out, not failed: the disk may get
//! room again (an operator frees space, a log rotates), and a pipeline that exits on a full
//! disk loses its place for nothing.

/// Why there was no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// The file system is full (`ENOSPC`).
    DiskFull,
    /// The user's quota is used up (`EDQUOT`).
    QuotaExceeded,
    /// The dead-letter output reached `--dead-letter-max-bytes`.
    DeadLettersFull,
}

impl NoRoom {
    /// The kind of `error`, if it says there is no room.
    pub fn of_io(error: &std::io::Error) -> Option<Self> {
        match error.kind() {
            std::io::ErrorKind::StorageFull => Some(Self::DiskFull),
            std::io::ErrorKind::QuotaExceeded => Some(Self::QuotaExceeded),
            _ => None,
        }
    }

    /// The `reason` label of `sse_ingest_write_failures_total` and of the log lines.
    pub fn label(self) -> &'static str {
        match self {
            Self::DiskFull => "disk_full",
            Self::QuotaExceeded => "quota_exceeded",
            Self::DeadLettersFull => "dead_letters_full",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_and_edquot_are_no_room_and_other_errors_are_not() {
        let os = std::io::Error::from_raw_os_error;
        assert_eq!(NoRoom::of_io(&os(28)), Some(NoRoom::DiskFull));
        assert_eq!(NoRoom::of_io(&os(122)), Some(NoRoom::QuotaExceeded));
        assert_eq!(NoRoom::of_io(&os(13)), None, "EACCES is not about room");
        assert_eq!(NoRoom::of_io(&os(5)), None, "EIO is not about room");
    }
}
