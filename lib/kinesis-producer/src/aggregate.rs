//! KPL-compatible aggregation: many user records in one Kinesis record.
//!
//! Why: Kinesis bills and throttles per record (1,000 records/s a shard, and a PUT payload
//! unit of 25 KiB per record however small it is). Events of 1 KiB packed 25 to a record
//! cost a 25th of the records, units and requests. The format is the Kinesis Producer
//! Library's, so every consumer that de-aggregates for the KPL (the KCL, Firehose, Lambda
//! with the aggregation library) reads these records as the user records they hold:
//!
//! ```text
//! F3 89 9A C2 | protobuf AggregatedRecord | MD5 of the protobuf bytes (16 bytes)
//! ```
//!
//! The message is declared here with prost's derive rather than generated from the KPL's
//! `.proto` with protoc: it is three small messages, and a build script needing protoc
//! would be one more tool on every machine. prost (the protobuf crate the Rust ecosystem
//! uses, tokio's) writes the wire format; md-5 (RustCrypto's) the checksum. `required`
//! matters: the KPL's schema is proto2 with a required `partition_key_index`, so index 0
//! must be written, where proto3 would leave it out.
//!
//! A group of one record is sent as that record, plain, as the KPL does: a record too large
//! to share a Kinesis record (or alone on its shard in a request) costs nothing extra, and
//! de-aggregators pass plain records through unchanged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;
use prost::encoding::encoded_len_varint;
use tokio::time::Instant;

use crate::record::Entry;
use crate::shards::ShardMap;

/// The first four bytes of every aggregated record.
pub(crate) const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// The MD5 at the end.
const DIGEST_LEN: usize = 16;

/// The KPL's `AggregatedRecord` (its `tags` are never written, so not declared).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub(crate) partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub(crate) explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) records: Vec<UserRecord>,
}

/// The KPL's `Record`: one user record, its keys as indexes into the tables.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct UserRecord {
    #[prost(uint64, required, tag = "1")]
    pub(crate) partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub(crate) explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "bytes", required, tag = "3")]
    pub(crate) data: Bytes,
}

/// The aggregated record of `entries` (two or more; their order is kept): magic, message,
/// MD5. The Kinesis record's own partition key is the first entry's.
pub(crate) fn encode(entries: &[Entry]) -> Bytes {
    let mut message = AggregatedRecord::default();
    let mut keys: HashMap<&str, u64> = HashMap::new();
    let mut hash_keys: HashMap<&str, u64> = HashMap::new();
    for e in entries {
        let partition_key_index = *keys.entry(e.key.as_str()).or_insert_with(|| {
            message.partition_key_table.push(e.key.clone());
            message.partition_key_table.len() as u64 - 1
        });
        let explicit_hash_key_index = e.explicit_hash_key_ref().map(|h| {
            *hash_keys.entry(h).or_insert_with(|| {
                message.explicit_hash_key_table.push(h.to_owned());
                message.explicit_hash_key_table.len() as u64 - 1
            })
        });
        message.records.push(UserRecord {
            partition_key_index,
            explicit_hash_key_index,
            data: e.data.clone(),
        });
    }
    let len = message.encoded_len();
    let mut out = Vec::with_capacity(MAGIC.len() + len + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    // Encoding into a Vec cannot run out of room: it grows.
    let _ = message.encode(&mut out);
    let digest = Md5::digest(&out[MAGIC.len()..]);
    out.extend_from_slice(&digest);
    Bytes::from(out)
}

/// The size of an aggregate as it grows, without encoding it: what Kinesis counts (data +
/// the first record's partition key), so that it can be bounded by the record limit.
#[derive(Debug, Default)]
struct Sizer {
    keys: HashMap<String, u64>,
    hash_keys: HashMap<String, u64>,
    /// The protobuf message's length.
    message: usize,
    first_key: usize,
    records: usize,
    /// The first record's size when sent alone (plain).
    alone: usize,
}

impl Sizer {
    /// What this group costs as one Kinesis record.
    fn size(&self) -> usize {
        match self.records {
            0 => 0,
            1 => self.alone,
            _ => self.aggregated(self.message),
        }
    }

    fn aggregated(&self, message: usize) -> usize {
        MAGIC.len() + message + DIGEST_LEN + self.first_key
    }

    /// The aggregated size with `e` added, and the message length that gives.
    fn size_with(&self, e: &Entry) -> (usize, usize) {
        let mut message = self.message;
        let key_index = match self.keys.get(&e.key) {
            Some(&i) => i,
            None => {
                message += field_len(e.key.len());
                self.keys.len() as u64
            }
        };
        let mut record = 1 + encoded_len_varint(key_index) + field_len(e.data.len());
        if let Some(h) = e.explicit_hash_key_ref() {
            let index = match self.hash_keys.get(h) {
                Some(&i) => i,
                None => {
                    message += field_len(h.len());
                    self.hash_keys.len() as u64
                }
            };
            record += 1 + encoded_len_varint(index);
        }
        message += field_len(record);
        (self.aggregated(message), message)
    }

    fn add(&mut self, e: &Entry, message: usize) {
        if self.records == 0 {
            self.first_key = e.key.len();
            self.alone = e.size;
        }
        let next = self.keys.len() as u64;
        self.keys.entry(e.key.clone()).or_insert(next);
        if let Some(h) = e.explicit_hash_key_ref() {
            let next = self.hash_keys.len() as u64;
            self.hash_keys.entry(h.to_owned()).or_insert(next);
        }
        self.message = message;
        self.records += 1;
    }
}

/// A length-delimited field of `len` bytes: tag, length, bytes.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// One Kinesis record of a request: `records` consecutive entries of the request.
#[derive(Debug)]
pub(crate) struct Wire {
    pub(crate) records: usize,
    /// The aggregated data, when `records` is two or more; else the entry goes plain.
    pub(crate) aggregate: Option<Bytes>,
    /// Data + partition key bytes, as Kinesis counts them.
    pub(crate) size: usize,
    /// The shard the shard map predicted (the answer's shard should be this one).
    pub(crate) shard: Option<Arc<str>>,
}

/// What one request holds: its entries, grouped in order into its Kinesis records.
#[derive(Debug, Default)]
pub(crate) struct Packed {
    pub(crate) entries: Vec<Entry>,
    pub(crate) wires: Vec<Wire>,
}

/// The bounds a packed request keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Kinesis records per request.
    pub(crate) records: usize,
    /// Their bytes per request.
    pub(crate) request_bytes: usize,
    /// Bytes of one Kinesis record (data + partition key).
    pub(crate) record_bytes: usize,
}

struct Group {
    shard: Option<usize>,
    sizer: Sizer,
    entries: Vec<Entry>,
}

/// Takes records from the front of `ready` into one request, aggregating those predicted
/// for the same shard. Records whose deadline passed are returned apart, to be
/// dead-lettered. `ready_bytes` is kept in step with `ready`.
pub(crate) fn pack(
    ready: &mut VecDeque<Entry>,
    ready_bytes: &mut usize,
    map: &ShardMap,
    limits: Limits,
    now: Instant,
) -> (Packed, Vec<Entry>) {
    let mut groups: Vec<Group> = Vec::new();
    // The group still open for each shard (a full one is closed and a new one opened).
    let mut open: HashMap<usize, usize> = HashMap::new();
    let mut total = 0usize;
    let mut expired = Vec::new();
    while let Some(front) = ready.front() {
        if front.deadline <= now {
            if let Some(e) = ready.pop_front() {
                *ready_bytes -= e.size;
                expired.push(e);
            }
            continue;
        }
        let shard = map.shard_of(front);
        if let Some(&g) = shard.and_then(|s| open.get(&s)) {
            let group = &groups[g];
            let (size, message) = group.sizer.size_with(front);
            if size <= limits.record_bytes {
                let grown = size.saturating_sub(group.sizer.size());
                if total + grown > limits.request_bytes {
                    break;
                }
                let Some(e) = ready.pop_front() else { break };
                *ready_bytes -= e.size;
                total += grown;
                let group = &mut groups[g];
                group.sizer.add(&e, message);
                group.entries.push(e);
                continue;
            }
            // Full: later records of this shard start a new aggregate.
            if let Some(s) = shard {
                open.remove(&s);
            }
        }
        if groups.len() >= limits.records
            || (!groups.is_empty() && total + front.size > limits.request_bytes)
        {
            break;
        }
        let Some(e) = ready.pop_front() else { break };
        *ready_bytes -= e.size;
        total += e.size;
        let mut sizer = Sizer::default();
        let (_, message) = sizer.size_with(&e);
        sizer.add(&e, message);
        if let Some(s) = shard {
            open.insert(s, groups.len());
        }
        groups.push(Group {
            shard,
            sizer,
            entries: vec![e],
        });
    }
    let mut packed = Packed {
        entries: Vec::with_capacity(groups.iter().map(|g| g.entries.len()).sum()),
        wires: Vec::with_capacity(groups.len()),
    };
    for g in groups {
        let aggregate = (g.entries.len() > 1).then(|| encode(&g.entries));
        packed.wires.push(Wire {
            records: g.entries.len(),
            size: match &aggregate {
                Some(data) => data.len() + g.sizer.first_key,
                None => g.sizer.alone,
            },
            aggregate,
            shard: g.shard.map(|s| map.shard_id(s)),
        });
        packed.entries.extend(g.entries);
    }
    (packed, expired)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ProducerRecord;
    use crate::record::TicketShared;

    fn entry(data: &[u8], key: &str, explicit_hash_key: Option<&str>) -> Entry {
        let mut record = ProducerRecord::new(data.to_vec(), key);
        record.explicit_hash_key = explicit_hash_key.map(str::to_owned);
        let (ticket, _handle) = TicketShared::new(1);
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        Entry::prepare(record, 1 << 20, &ticket, deadline).unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn two_records_encode_to_the_kpl_bytes() {
        let bytes = encode(&[entry(b"x", "a", None), entry(b"yz", "b", None)]);
        // Written out by hand from the KPL's aggregation-format.md: keys "a" and "b" in the
        // table (field 1), then two records (field 3), each with its key index (field 1,
        // 0 included: it is required) and its data (field 3); then the MD5 of the message.
        let message = "0a01610a01621a0508001a01781a0608011a02797a";
        assert_eq!(
            hex(&bytes),
            format!("f3899ac2{message}6fe1bc1407aabc41e3e0c88f3f668baf")
        );
    }

    #[test]
    fn a_repeated_key_is_written_once_and_explicit_hash_keys_get_their_own_table() {
        let entries = [
            entry(b"1", "k", Some("7")),
            entry(b"2", "k", None),
            entry(b"3", "k", Some("7")),
        ];
        let bytes = encode(&entries);
        let message = &bytes[4..bytes.len() - 16];
        let decoded = AggregatedRecord::decode(message).unwrap();
        assert_eq!(decoded.partition_key_table, vec!["k"]);
        assert_eq!(decoded.explicit_hash_key_table, vec!["7"]);
        let indexes: Vec<(u64, Option<u64>)> = decoded
            .records
            .iter()
            .map(|r| (r.partition_key_index, r.explicit_hash_key_index))
            .collect();
        assert_eq!(indexes, vec![(0, Some(0)), (0, None), (0, Some(0))]);
        assert_eq!(&bytes[bytes.len() - 16..], Md5::digest(message).as_slice());
    }

    #[test]
    fn the_sizer_predicts_the_encoded_size_exactly() {
        let entries = [
            entry(&[1u8; 300], "first", None),
            entry(&[2u8; 5], "second", Some("12345")),
            entry(&[3u8; 200], "first", Some("12345")),
            entry(&[4u8; 70_000], "third", None),
        ];
        let mut sizer = Sizer::default();
        for (n, e) in entries.iter().enumerate() {
            let (size, message) = sizer.size_with(e);
            sizer.add(e, message);
            if n > 0 {
                let encoded = encode(&entries[..=n]);
                assert_eq!(
                    size,
                    encoded.len() + "first".len(),
                    "after {} records",
                    n + 1
                );
                assert_eq!(sizer.size(), size);
            } else {
                assert_eq!(sizer.size(), e.size, "one record goes plain");
            }
        }
    }

    fn one_shard() -> ShardMap {
        ShardMap::from_ranges(vec![(0, u128::MAX, "shardId-000000000000".into())])
    }

    fn limits(record_bytes: usize) -> Limits {
        Limits {
            records: 500,
            request_bytes: 5 << 20,
            record_bytes,
        }
    }

    fn ready(entries: Vec<Entry>) -> (VecDeque<Entry>, usize) {
        let bytes = entries.iter().map(|e| e.size).sum();
        (entries.into(), bytes)
    }

    #[test]
    fn records_of_one_shard_fill_aggregates_up_to_the_record_limit() {
        let (mut queue, mut bytes) = ready(
            (0..10)
                .map(|n| entry(&[n; 100], &format!("key-{n}"), None))
                .collect(),
        );
        let (packed, expired) = pack(
            &mut queue,
            &mut bytes,
            &one_shard(),
            limits(450),
            Instant::now(),
        );
        assert!(expired.is_empty() && queue.is_empty() && bytes == 0);
        assert_eq!(packed.entries.len(), 10);
        let per_wire: Vec<usize> = packed.wires.iter().map(|w| w.records).collect();
        // Each record (100 bytes, its own 5-byte key) adds 113 bytes of message, with 25 around
        // them (magic, MD5, the first key): three make 364 bytes, four 477.
        assert_eq!(per_wire, vec![3, 3, 3, 1]);
        for w in &packed.wires {
            assert!(w.size <= 450, "{}", w.size);
            assert_eq!(w.aggregate.is_some(), w.records > 1);
        }
        // Order is kept within and across the aggregates.
        let keys: Vec<&str> = packed.entries.iter().map(|e| e.key.as_str()).collect();
        let expected: Vec<String> = (0..10).map(|n| format!("key-{n}")).collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn a_record_too_large_to_share_goes_alone_and_plain() {
        let (mut queue, mut bytes) = ready(vec![
            entry(&[1u8; 10], "a", None),
            entry(&[2u8; 990], "b", None),
            entry(&[3u8; 10], "c", None),
        ]);
        let (packed, _) = pack(
            &mut queue,
            &mut bytes,
            &one_shard(),
            limits(1000),
            Instant::now(),
        );
        let per_wire: Vec<(usize, bool)> = packed
            .wires
            .iter()
            .map(|w| (w.records, w.aggregate.is_some()))
            .collect();
        // "b" (991 bytes) fits the limit alone, not beside "a": it closes a's group and
        // starts its own, which "c" cannot join either.
        assert_eq!(per_wire, vec![(1, false), (1, false), (1, false)]);
        assert_eq!(packed.wires[1].size, 991);
    }

    #[test]
    fn records_are_grouped_by_their_predicted_shard() {
        let map = ShardMap::from_ranges(vec![
            (0, u128::MAX / 2, "shardId-0".into()),
            (u128::MAX / 2 + 1, u128::MAX, "shardId-1".into()),
        ]);
        let entries: Vec<Entry> = (0..40)
            .map(|n| entry(format!("{n}").as_bytes(), &format!("key-{n}"), None))
            .collect();
        let expected: Vec<Option<usize>> = entries.iter().map(|e| map.shard_of(e)).collect();
        let (mut queue, mut bytes) = ready(entries);
        let (packed, _) = pack(
            &mut queue,
            &mut bytes,
            &map,
            limits(1 << 20),
            Instant::now(),
        );
        assert_eq!(packed.wires.len(), 2, "one aggregate per shard");
        let mut at = 0;
        for w in &packed.wires {
            for e in &packed.entries[at..at + w.records] {
                let shard = map.shard_of(e).map(|s| map.shard_id(s));
                assert_eq!(shard, w.shard);
            }
            at += w.records;
        }
        assert!(expected.contains(&Some(0)) && expected.contains(&Some(1)));
    }

    #[test]
    fn a_request_keeps_to_its_byte_bound() {
        let (mut queue, mut bytes) = ready(
            (0..20)
                .map(|n| entry(&[n; 1000], &format!("k{n}"), None))
                .collect(),
        );
        let limits = Limits {
            records: 500,
            request_bytes: 5_000,
            record_bytes: 1 << 20,
        };
        let (packed, _) = pack(&mut queue, &mut bytes, &one_shard(), limits, Instant::now());
        assert_eq!(packed.wires.len(), 1);
        assert!(packed.wires[0].size <= 5_000, "{}", packed.wires[0].size);
        assert_eq!(packed.entries.len() + queue.len(), 20);
        assert_eq!(bytes, queue.iter().map(|e| e.size).sum::<usize>());
    }
}
