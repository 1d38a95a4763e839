//! Which shard a record will land on, for aggregation (`aggregate.rs`).
//!
//! Kinesis puts a record on the open shard whose hash-key range holds the MD5 of its
//! partition key, read as a 128-bit big-endian integer (or its explicit hash key). An
//! aggregated record lands where its own key (the first user record's) says, so only user
//! records predicted for the same shard may share one: then every user record is on the
//! shard its key maps to, and a key's records stay on one shard, in order.
//!
//! The map comes from ListShards (open shards only). It is read again when a put answers
//! with a record on another shard than predicted: the stream was resharded. No periodic
//! refresh: a resharding that moves no record's shard needs none, and one that does is seen
//! at the next put. Until a map is known (or while it is being read again) the stream's
//! records wait; when ListShards fails they go plain, one user record a Kinesis record,
//! until a later attempt succeeds.

use std::sync::Arc;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::DisplayErrorContext;
use md5::{Digest, Md5};

use crate::record::Entry;

/// The open shards of a stream and their hash-key ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardMap {
    /// `(starting hash key, ending hash key, shard id)`, sorted, not overlapping.
    ranges: Vec<(u128, u128, Arc<str>)>,
}

impl ShardMap {
    pub(crate) fn from_ranges(mut ranges: Vec<(u128, u128, Arc<str>)>) -> Self {
        ranges.sort_by_key(|r| r.0);
        Self { ranges }
    }

    /// How many shards.
    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    /// The index of the shard `e` will land on, if the map covers its hash key.
    pub(crate) fn shard_of(&self, e: &Entry) -> Option<usize> {
        let hash = match e.explicit_hash_key_ref() {
            // Checked when the record was accepted: a decimal below 2^128.
            Some(h) => h.parse::<u128>().ok()?,
            None => hash_key(&e.key),
        };
        let after = self.ranges.partition_point(|r| r.0 <= hash);
        let i = after.checked_sub(1)?;
        (hash <= self.ranges[i].1).then_some(i)
    }

    /// The id of shard `i` (an index from [`shard_of`](Self::shard_of)).
    pub(crate) fn shard_id(&self, i: usize) -> Arc<str> {
        Arc::clone(&self.ranges[i].2)
    }
}

/// A partition key's hash key: its MD5 as a big-endian 128-bit integer, as Kinesis computes it.
pub(crate) fn hash_key(key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(key.as_bytes()).into())
}

/// Reads the open shards of `target` (a stream name, or an ARN) with ListShards, every page.
///
/// # Errors
/// The failure as a sentence (the SDK's error with its context, or a malformed answer).
pub(crate) async fn list_open_shards(client: &Client, target: &str) -> Result<ShardMap, String> {
    let mut ranges = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // A page after the first is named by its token alone: ListShards refuses a stream
        // name beside a token.
        let call = client.list_shards();
        let call = match next_token.take() {
            Some(token) => call.next_token(token),
            None if target.starts_with("arn:") => call.stream_arn(target),
            None => call.stream_name(target),
        };
        let page = call
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?;
        for shard in page.shards() {
            let range = shard.sequence_number_range();
            if range.is_some_and(|r| r.ending_sequence_number().is_some()) {
                continue; // closed by a resharding: takes no records
            }
            let Some(hashes) = shard.hash_key_range() else {
                return Err(format!("shard {} has no hash key range", shard.shard_id()));
            };
            let parse = |text: &str| {
                text.parse::<u128>().map_err(|_| {
                    format!(
                        "shard {} has a malformed hash key {text:?}",
                        shard.shard_id()
                    )
                })
            };
            let start = parse(hashes.starting_hash_key())?;
            let end = parse(hashes.ending_hash_key())?;
            ranges.push((start, end, Arc::from(shard.shard_id())));
        }
        match page.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
            _ => break,
        }
    }
    if ranges.is_empty() {
        return Err(format!("ListShards found no open shard in {target}"));
    }
    Ok(ShardMap::from_ranges(ranges))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ProducerRecord;
    use crate::record::TicketShared;
    use tokio::time::Instant;

    fn entry(key: &str, explicit_hash_key: Option<&str>) -> Entry {
        let mut record = ProducerRecord::new(&b"x"[..], key);
        record.explicit_hash_key = explicit_hash_key.map(str::to_owned);
        let (ticket, _handle) = TicketShared::new(1);
        Entry::prepare(record, 1 << 20, &ticket, Instant::now()).unwrap()
    }

    #[test]
    fn a_key_hashes_to_its_md5_as_a_big_endian_integer() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661.
        assert_eq!(hash_key("a"), 0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661);
    }

    #[test]
    fn a_record_falls_into_the_range_that_holds_its_hash_key() {
        let half = u128::MAX / 2;
        let map = ShardMap::from_ranges(vec![
            (half + 1, u128::MAX, "upper".into()),
            (0, half, "lower".into()),
        ]);
        assert_eq!(map.len(), 2);
        // MD5("a") starts with 0x0c: the lower half.
        assert_eq!(
            map.shard_of(&entry("a", None)).map(|i| map.shard_id(i)),
            Some("lower".into())
        );
        let top = u128::MAX.to_string();
        assert_eq!(
            map.shard_of(&entry("a", Some(&top)))
                .map(|i| map.shard_id(i)),
            Some("upper".into())
        );
        assert_eq!(map.shard_of(&entry("a", Some("0"))), Some(0));
    }

    #[test]
    fn a_hash_key_in_no_range_has_no_shard() {
        let map = ShardMap::from_ranges(vec![(10, 20, "only".into())]);
        assert_eq!(map.shard_of(&entry("a", Some("5"))), None);
        assert_eq!(map.shard_of(&entry("a", Some("21"))), None);
        assert_eq!(map.shard_of(&entry("a", Some("20"))), Some(0));
    }
}
