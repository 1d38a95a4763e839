//! Records in, outcomes out.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::ProducerError;

/// Kinesis's limit on partition keys, in characters (counted as UTF-16 code units, as the
/// service and the local servers count them).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// One record to put into Kinesis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The payload, passed to the SDK without a copy.
    pub data: Bytes,
    /// Chooses the shard (through MD5) unless `explicit_hash_key` is set. Longer than 256
    /// characters: replaced by the hex SHA-256 of its UTF-8 bytes (64 characters), so the
    /// same long key always lands on the same shard. Empty: the record is dead-lettered
    /// (Kinesis rejects empty keys, and replacing them with a constant would pile every such
    /// record onto one shard).
    pub partition_key: String,
    /// The stream (name or ARN); `None` = the producer's default stream.
    pub stream: Option<String>,
    /// A decimal 128-bit hash key that chooses the shard instead of the partition key.
    pub explicit_hash_key: Option<String>,
}

impl ProducerRecord {
    /// A record for the default stream.
    pub fn new(data: impl Into<Bytes>, partition_key: impl Into<String>) -> Self {
        Self {
            data: data.into(),
            partition_key: partition_key.into(),
            stream: None,
            explicit_hash_key: None,
        }
    }
}

/// A record the producer gave up on, with the reason. It is never dropped silently: it comes
/// back in the [`BatchOutcome`] of the `submit` call that passed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The record as it was submitted (with its original partition key, even when a hash of
    /// it was sent).
    pub record: ProducerRecord,
    /// Why, e.g. `record of 2097152 bytes exceeds the 1048576-byte limit`, `deadline passed
    /// after 7 attempts: ProvisionedThroughputExceededException: ...`, `stream not found: ...`.
    pub reason: String,
}

/// How every record of one `submit` call ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Records that Kinesis acknowledged.
    pub acked: usize,
    /// Records given up on. `acked + dead_letters.len()` is the number of records submitted.
    pub dead_letters: Vec<DeadLetter>,
}

/// Resolves when every record of one `submit` call is acknowledged or dead-lettered.
///
/// Dropping it does not cancel anything: the records are still delivered.
#[derive(Debug)]
pub struct BatchTicket {
    records: usize,
    rx: oneshot::Receiver<BatchOutcome>,
}

impl BatchTicket {
    /// The number of records the call submitted.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether the call submitted no records (the ticket is then already resolved).
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

impl Future for BatchTicket {
    type Output = Result<BatchOutcome, ProducerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.map_err(|_| ProducerError::Stopped))
    }
}

/// The shared end of a ticket: counts what is still open and collects dead letters.
#[derive(Debug)]
pub(crate) struct TicketShared {
    state: Mutex<TicketState>,
}

#[derive(Debug)]
struct TicketState {
    remaining: usize,
    outcome: BatchOutcome,
    tx: Option<oneshot::Sender<BatchOutcome>>,
}

impl TicketShared {
    pub(crate) fn new(records: usize) -> (Arc<Self>, BatchTicket) {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Self {
            state: Mutex::new(TicketState {
                remaining: records,
                outcome: BatchOutcome::default(),
                tx: Some(tx),
            }),
        });
        if records == 0 {
            shared.settle(0, Vec::new());
        }
        (shared, BatchTicket { records, rx })
    }

    /// Records `acked` acknowledgements and some dead letters; resolves the ticket when
    /// nothing is left open.
    pub(crate) fn settle(&self, acked: usize, dead: Vec<DeadLetter>) {
        // A panic while holding this lock cannot leave the counts half-updated in a way that
        // matters more than losing the outcome, so a poisoned lock is used as it is.
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let settled = acked + dead.len();
        st.remaining = st.remaining.saturating_sub(settled);
        st.outcome.acked += acked;
        st.outcome.dead_letters.extend(dead);
        if st.remaining == 0
            && let Some(tx) = st.tx.take()
        {
            // The caller may have dropped the ticket: nobody to tell.
            let _ = tx.send(std::mem::take(&mut st.outcome));
        }
    }
}

/// A record inside the producer, from admission to acknowledgement or dead letter.
///
/// Kept small (about 100 bytes): entries are moved between queues several times, and at a
/// million records a second every byte moved counts. What most records lack is boxed.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) data: Bytes,
    /// The key sent to Kinesis.
    pub(crate) key: String,
    /// Data + key bytes, as Kinesis counts them.
    pub(crate) size: usize,
    /// Acceptance into the buffer + `record_deadline`.
    pub(crate) deadline: Instant,
    pub(crate) attempts: u32,
    pub(crate) extra: Option<Box<Extra>>,
    pub(crate) ticket: Arc<TicketShared>,
}

/// The rarely set parts of an entry.
#[derive(Debug, Default)]
pub(crate) struct Extra {
    /// The submitted key when `key` is its hash.
    original_key: Option<String>,
    stream: Option<String>,
    explicit_hash_key: Option<String>,
    last_error: Option<Arc<str>>,
}

impl Entry {
    /// Turns a submitted record into an entry, or tells why it can never be delivered.
    /// `deadline` is the deadline if the record is accepted at once; it is set again if it
    /// had to wait for buffer space.
    // The `Ok` side (an entry) is as large as the `Err` side; each is moved once.
    #[allow(clippy::result_large_err)]
    pub(crate) fn prepare(
        record: ProducerRecord,
        max_record_bytes: usize,
        ticket: &Arc<TicketShared>,
        deadline: Instant,
    ) -> Result<Entry, DeadLetter> {
        let invalid = |record: ProducerRecord, reason: String| DeadLetter { record, reason };
        if record.partition_key.is_empty() {
            return Err(invalid(
                record,
                "invalid record: the partition key is empty (Kinesis requires 1 to 256 characters)"
                    .into(),
            ));
        }
        if let Some(ehk) = &record.explicit_hash_key
            && !valid_explicit_hash_key(ehk)
        {
            let reason = format!(
                "invalid record: explicit hash key {ehk:?} is not a decimal integer from 0 to 2^128-1"
            );
            return Err(invalid(record, reason));
        }
        if record.stream.as_deref() == Some("") {
            return Err(invalid(
                record,
                "invalid record: the stream name is empty".into(),
            ));
        }
        let hashed = effective_partition_key(&record.partition_key);
        let key_len = hashed
            .as_ref()
            .map_or(record.partition_key.len(), String::len);
        let size = record.data.len() + key_len;
        if size > max_record_bytes {
            let reason =
                format!("record of {size} bytes exceeds the {max_record_bytes}-byte limit");
            return Err(invalid(record, reason));
        }
        let (key, original_key) = match hashed {
            Some(h) => (h, Some(record.partition_key)),
            None => (record.partition_key, None),
        };
        let extra = (original_key.is_some()
            || record.stream.is_some()
            || record.explicit_hash_key.is_some())
        .then(|| {
            Box::new(Extra {
                original_key,
                stream: record.stream,
                explicit_hash_key: record.explicit_hash_key,
                last_error: None,
            })
        });
        Ok(Entry {
            data: record.data,
            key,
            size,
            deadline,
            attempts: 0,
            extra,
            ticket: Arc::clone(ticket),
        })
    }

    pub(crate) fn stream(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|x| x.stream.as_deref())
    }

    pub(crate) fn explicit_hash_key_ref(&self) -> Option<&str> {
        self.extra
            .as_ref()
            .and_then(|x| x.explicit_hash_key.as_deref())
    }

    pub(crate) fn set_last_error(&mut self, error: Arc<str>) {
        self.extra.get_or_insert_default().last_error = Some(error);
    }

    /// The record as it was submitted, for a dead letter.
    pub(crate) fn into_dead_letter(self, reason: String) -> (Arc<TicketShared>, DeadLetter) {
        let extra = self.extra.map(|x| *x).unwrap_or_default();
        let record = ProducerRecord {
            data: self.data,
            partition_key: extra.original_key.unwrap_or(self.key),
            stream: extra.stream,
            explicit_hash_key: extra.explicit_hash_key,
        };
        (self.ticket, DeadLetter { record, reason })
    }

    /// "after N attempts: last error", for dead-letter reasons.
    pub(crate) fn history(&self) -> String {
        match self.extra.as_ref().and_then(|x| x.last_error.as_ref()) {
            Some(e) => format!("after {} attempts: {e}", self.attempts),
            None => format!("after {} attempts", self.attempts),
        }
    }
}

/// The key to send for `key`, when it is not `key` itself: the hex SHA-256 of keys longer
/// than Kinesis allows.
pub(crate) fn effective_partition_key(key: &str) -> Option<String> {
    // A key of at most 256 bytes has at most 256 UTF-16 code units: no need to count.
    if key.len() <= MAX_PARTITION_KEY_CHARS || key.encode_utf16().count() <= MAX_PARTITION_KEY_CHARS
    {
        return None;
    }
    Some(hex_sha256(key.as_bytes()))
}

/// Lower-case hex SHA-256.
pub fn hex_sha256(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// What Kinesis accepts: `0` or a decimal without leading zeros, below 2^128.
fn valid_explicit_hash_key(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.parse::<u128>().is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_up_to_256_characters_are_kept_and_longer_ones_hashed() {
        assert_eq!(effective_partition_key(&"k".repeat(256)), None);
        // 256 characters of two bytes each: 512 bytes, still within the limit.
        assert_eq!(effective_partition_key(&"é".repeat(256)), None);
        let long = "é".repeat(257);
        let hashed = effective_partition_key(&long).unwrap();
        assert_eq!(hashed.len(), 64);
        assert_eq!(hashed, hex_sha256(long.as_bytes()));
        // Characters outside the BMP count twice, as UTF-16 does.
        assert!(effective_partition_key(&"😀".repeat(129)).is_some());
        assert!(effective_partition_key(&"😀".repeat(128)).is_none());
    }

    #[test]
    fn entries_stay_small_because_they_are_moved_between_queues() {
        assert!(
            std::mem::size_of::<Entry>() <= 112,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn hex_sha256_matches_a_known_digest() {
        assert_eq!(
            hex_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn explicit_hash_keys_are_checked_like_kinesis_does() {
        assert!(valid_explicit_hash_key("0"));
        assert!(valid_explicit_hash_key(&u128::MAX.to_string()));
        assert!(!valid_explicit_hash_key(
            "340282366920938463463374607431768211456"
        ));
        assert!(!valid_explicit_hash_key("01"));
        assert!(!valid_explicit_hash_key("-1"));
        assert!(!valid_explicit_hash_key(""));
    }

    #[test]
    fn invalid_records_become_dead_letters_with_their_original_fields() {
        let (ticket, _rx) = TicketShared::new(3);
        let now = Instant::now();
        let empty = ProducerRecord::new(Bytes::from_static(b"x"), "");
        let dl = Entry::prepare(empty.clone(), 100, &ticket, now).unwrap_err();
        assert_eq!(dl.record, empty);
        assert!(
            dl.reason.contains("partition key is empty"),
            "{}",
            dl.reason
        );

        let big = ProducerRecord::new(vec![0u8; 98], "abc");
        let dl = Entry::prepare(big, 100, &ticket, now).unwrap_err();
        assert_eq!(dl.reason, "record of 101 bytes exceeds the 100-byte limit");
        // Exactly at the limit is fine.
        let fits = ProducerRecord::new(vec![0u8; 97], "abc");
        assert_eq!(Entry::prepare(fits, 100, &ticket, now).unwrap().size, 100);
    }

    #[test]
    fn a_hashed_key_is_restored_in_the_dead_letter() {
        let (ticket, _rx) = TicketShared::new(1);
        let long = "x".repeat(300);
        let e = Entry::prepare(
            ProducerRecord::new(vec![1u8], long.clone()),
            1000,
            &ticket,
            Instant::now(),
        )
        .unwrap();
        assert_eq!(e.key.len(), 64);
        assert_eq!(e.size, 65);
        let (_, dl) = e.into_dead_letter("test".into());
        assert_eq!(dl.record.partition_key, long);
    }

    #[tokio::test]
    async fn a_ticket_resolves_when_the_last_record_settles() {
        let (shared, ticket) = TicketShared::new(3);
        shared.settle(2, Vec::new());
        let dl = DeadLetter {
            record: ProducerRecord::new(vec![], "k"),
            reason: "r".into(),
        };
        shared.settle(0, vec![dl.clone()]);
        let outcome = ticket.await.unwrap();
        assert_eq!(
            outcome,
            BatchOutcome {
                acked: 2,
                dead_letters: vec![dl]
            }
        );
        let (_, empty) = TicketShared::new(0);
        assert_eq!(empty.await.unwrap(), BatchOutcome::default());
    }
}
