//! Spreading a config file's pipelines over replicas (`run --config FILE --shard I/N`).
//!
//! An SSE connection is one ordered flow, so one stream is never split: scale comes from
//! running different pipelines on different replicas. Each pipeline goes to exactly one
//! shard by rendezvous (highest-random-weight) hashing of its name: every shard scores the
//! name, the highest score wins. It needs no coordination and no table (each replica
//! computes the same answer from the same file), and when the count changes from N to N+1
//! only the pipelines the new shard now wins move (about 1 in N+1), all to it; the rest stay
//! where their connections and checkpoints are.

use sha2::{Digest as _, Sha256};

/// One replica's share: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// From 0 to `count - 1`.
    pub index: u32,
    /// How many shards there are (at least 1).
    pub count: u32,
}

/// The most shards a file may be spread over (a bound on the work of each assignment).
pub const MAX_SHARDS: u32 = 10_000;

impl Shard {
    /// Checks `index < count <= MAX_SHARDS`.
    pub fn new(index: u32, count: u32) -> Result<Self, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "the shard count {count} is out of range: 1 to {MAX_SHARDS}"
            ));
        }
        if index >= count {
            return Err(format!(
                "shard {index} does not exist among {count} (they are numbered 0 to {})",
                count - 1
            ));
        }
        Ok(Self { index, count })
    }

    /// `INDEX/COUNT`, e.g. `0/2`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}`: expected INDEX/COUNT, e.g. 0/2"))?;
        let number = |part: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{text}`: expected INDEX/COUNT, e.g. 0/2"))
        };
        Self::new(number(index)?, number(count)?)
    }

    /// The shard of a Kubernetes StatefulSet pod, whose name (its hostname) ends in `-ORDINAL`.
    pub fn from_hostname(hostname: &str, count: u32) -> Result<Self, String> {
        let ordinal = hostname
            .rsplit_once('-')
            .and_then(|(_, ordinal)| ordinal.parse::<u32>().ok())
            .ok_or_else(|| {
                format!(
                    "the hostname `{hostname}` does not end in `-ORDINAL` as a StatefulSet \
                     pod's name does (e.g. sse-ingest-2)"
                )
            })?;
        Self::new(ordinal, count)
    }

    /// Whether the pipeline `name` runs on this shard.
    pub fn owns(&self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard (of `count`) that runs the pipeline `name`: the one with the highest weight.
pub fn shard_of(name: &str, count: u32) -> u32 {
    (0..count.max(1))
        .max_by_key(|&shard| (weight(name, shard), std::cmp::Reverse(shard)))
        .unwrap_or(0)
}

/// The weight of `name` on `shard`: the first 8 bytes of SHA-256(name, 0, shard). A
/// cryptographic hash because it is stable across versions and platforms (a replica built
/// later must agree with one built today) and spreads names that differ in one character.
fn weight(name: &str, shard: u32) -> u64 {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([0])
        .chain_update(shard.to_be_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("stream-{i}")).collect()
    }

    #[test]
    fn every_pipeline_runs_on_exactly_one_shard() {
        let count = 3;
        for name in names(200) {
            let owners = (0..count)
                .filter(|&index| Shard { index, count }.owns(&name))
                .count();
            assert_eq!(owners, 1, "{name}");
        }
    }

    #[test]
    fn pipelines_spread_over_the_shards() {
        let mut per_shard = [0usize; 4];
        for name in names(400) {
            per_shard[shard_of(&name, 4) as usize] += 1;
        }
        assert!(
            per_shard.iter().all(|&n| (60..=140).contains(&n)),
            "{per_shard:?}"
        );
    }

    #[test]
    fn adding_a_shard_moves_only_pipelines_to_the_new_one() {
        let names = names(500);
        let moved: Vec<(u32, u32)> = names
            .iter()
            .map(|name| (shard_of(name, 4), shard_of(name, 5)))
            .filter(|(before, after)| before != after)
            .collect();
        assert!(moved.iter().all(|&(_, after)| after == 4), "{moved:?}");
        // About a fifth must move to the new shard; far fewer or far more is a bad hash.
        assert!((60..=140).contains(&moved.len()), "{} moved", moved.len());
    }

    #[test]
    fn the_assignment_is_stable_across_builds() {
        // Pinned: a replica built later must agree with one built today.
        let assignment: Vec<u32> = names(8).iter().map(|name| shard_of(name, 3)).collect();
        assert_eq!(assignment, PINNED_ASSIGNMENT);
    }
    const PINNED_ASSIGNMENT: [u32; 8] = [1, 1, 2, 1, 1, 1, 1, 1];

    #[test]
    fn shard_texts_and_hostnames_are_parsed_or_refused_clearly() {
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        assert!(Shard::parse("3/3").is_err_and(|e| e.contains("numbered 0 to 2")));
        assert!(Shard::parse("0/0").is_err_and(|e| e.contains("out of range")));
        assert!(Shard::parse("one/3").is_err_and(|e| e.contains("INDEX/COUNT")));
        assert_eq!(
            Shard::from_hostname("sse-ingest-2", 3),
            Ok(Shard { index: 2, count: 3 })
        );
        assert!(Shard::from_hostname("sse-ingest-7", 3).is_err());
        assert!(Shard::from_hostname("laptop", 3).is_err_and(|e| e.contains("laptop")));
    }
}
