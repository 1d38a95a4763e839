//! How large a batch can get, and the memory each component needs for it.
//!
//! Every event that `--max-event-bytes` admits must pass with the default settings. A
//! batch is bounded by bytes as well as by count (the source delivers a batch before an
//! event would take it past `--batch-max-bytes`; one larger event goes alone), so the
//! largest batch is known before anything runs, and the memory limits follow from it:
//! the source's is computed, a filter's (`--filter-memory-mib`) is checked at start.

/// Longest `id` kept as the last event ID, de-duplicated on and checkpointed. A longer
/// one is counted (`sse_ingest_oversized_ids_total`), its event is delivered with an empty
/// id, and a reconnect resumes from the last id that fit. 4 KiB: the id goes back to the
/// server as the `Last-Event-ID` header (servers commonly refuse header lines past 8 KiB),
/// and a DynamoDB checkpoint item holds at most 400 KB. Real ids are far shorter
/// (Wikimedia's Kafka offsets are about 150 bytes).
pub const MAX_ID_BYTES: u64 = 4096;

/// The default `--batch-max-bytes`: 4 MiB, eight times a batch of 512 one-KiB events, so
/// it only ever splits batches of large events.
pub const DEFAULT_BATCH_MAX_BYTES: u64 = 4 * MIB;

const MIB: u64 = 1024 * 1024;

/// What a filter needs besides its batches: its code's data, stack and allocator.
const FILTER_BASE_BYTES: u64 = 8 * MIB;

/// The largest batch in bytes (data, ids and types) that crosses a component boundary:
/// `--batch-max-bytes`, or one event at its largest (data and type within
/// `max_event_bytes`, an id within [`MAX_ID_BYTES`]) when that is more.
pub fn largest_batch_bytes(max_event_bytes: u64, batch_max_bytes: u64) -> u64 {
    batch_max_bytes.max(max_event_bytes.saturating_add(MAX_ID_BYTES))
}

/// The linear memory a filter needs for the largest batch: the batch itself as the host
/// lowers it, the records made of it (an envelope escapes the data, typically adding a
/// tenth to a quarter), and room for the allocator to place the next batch beside the
/// last one's freed blocks. Four times the batch plus a base keeps the built-in filters
/// inside their limit on every event the parser admits (see tests/large_events.rs).
pub fn filter_memory_needed(max_event_bytes: u64, batch_max_bytes: u64) -> u64 {
    FILTER_BASE_BYTES
        .saturating_add(largest_batch_bytes(max_event_bytes, batch_max_bytes).saturating_mul(4))
}

/// The source's memory limit: its runtime and connection buffers, the parser's buffers
/// (the partial line, the data, the decoded string: `max_event_bytes` each, with room),
/// and the batch being filled and the one being handed over.
pub fn source_memory_limit(max_event_bytes: u64, batch_max_bytes: u64) -> usize {
    let bytes = (64 * MIB)
        .saturating_add(max_event_bytes.saturating_mul(4))
        .saturating_add(largest_batch_bytes(max_event_bytes, batch_max_bytes).saturating_mul(2));
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// Whole MiB, rounded up, for messages.
pub fn mib_rounded_up(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_memory_holds_the_largest_default_batch() {
        let needed = filter_memory_needed(4 * MIB, DEFAULT_BATCH_MAX_BYTES);
        assert!(needed <= 64 * MIB, "{needed}");
    }

    #[test]
    fn one_event_larger_than_the_batch_bound_is_the_largest_batch() {
        assert_eq!(largest_batch_bytes(8 * MIB, MIB), 8 * MIB + MAX_ID_BYTES);
        assert_eq!(largest_batch_bytes(MIB, 8 * MIB), 8 * MIB);
    }

    #[test]
    fn the_source_limit_grows_with_the_largest_event() {
        assert!(source_memory_limit(64 * MIB, MIB) > source_memory_limit(4 * MIB, MIB));
        assert_eq!(mib_rounded_up(MIB + 1), 2);
    }
}
