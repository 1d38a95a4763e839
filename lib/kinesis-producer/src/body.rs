//! The PutRecords request body, written by the producer instead of the SDK's serialiser.
//!
//! Why: building a `PutRecordsRequestEntry` per record (a key copy each) and letting the
//! SDK serialise them into a buffer that grows by reallocation (a copy and fresh pages for
//! every request of up to 5 MiB) cost about as much CPU as everything the producer itself
//! does. Here the body is written once, at its final size, straight from the buffered
//! entries, and handed to the SDK just before signing. The SDK still does everything
//! else: endpoint resolution, SigV4 (which hashes this body), timeouts, the HTTP exchange
//! and parsing the response. See `benches/` for the figures.
//!
//! The format is the AWS JSON 1.1 protocol's, as the Kinesis API reference gives it for
//! PutRecords: `{"Records":[{"Data":BASE64,"PartitionKey":STRING[,"ExplicitHashKey":STRING]}
//! ,...],"StreamName"|"StreamARN":STRING}`.

use bytes::Bytes;

use crate::record::Entry;

/// Bytes of the fixed parts around one record: `{"Data":"","PartitionKey":},`.
const PER_RECORD_OVERHEAD: usize = 32;

/// One Kinesis record of a request: an entry as it is, or an aggregate of entries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WireRecord<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) key: &'a str,
    pub(crate) explicit_hash_key: Option<&'a str>,
}

impl<'a> From<&'a Entry> for WireRecord<'a> {
    fn from(e: &'a Entry) -> Self {
        Self {
            data: &e.data,
            key: &e.key,
            explicit_hash_key: e.explicit_hash_key_ref(),
        }
    }
}

/// The body of a PutRecords request for `entries` to `target` (a stream name, or an ARN).
pub(crate) fn put_records_body<'a>(
    entries: impl Iterator<Item = WireRecord<'a>> + Clone,
    target: &str,
) -> Bytes {
    let capacity = 64
        + target.len()
        + entries
            .clone()
            .map(|e| {
                base64_len(e.data.len())
                    + e.key.len()
                    + PER_RECORD_OVERHEAD
                    + e.explicit_hash_key.map_or(0, |h| h.len() + 24)
            })
            .sum::<usize>();
    let mut body = Vec::with_capacity(capacity);
    body.extend_from_slice(b"{\"Records\":[");
    for (i, e) in entries.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"Data\":\"");
        base64_simd::STANDARD.encode_append(e.data, &mut body);
        body.extend_from_slice(b"\",\"PartitionKey\":");
        json_string(&mut body, e.key);
        if let Some(hash_key) = e.explicit_hash_key {
            body.extend_from_slice(b",\"ExplicitHashKey\":");
            json_string(&mut body, hash_key);
        }
        body.push(b'}');
    }
    body.extend_from_slice(if target.starts_with("arn:") {
        b"],\"StreamARN\":"
    } else {
        b"],\"StreamName\":"
    });
    json_string(&mut body, target);
    body.push(b'}');
    Bytes::from(body)
}

/// Padded base64 length of `n` bytes.
fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Appends `text` as a JSON string (quoted and escaped by serde_json, RFC 8259 §7).
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a `str` into a `Vec` cannot fail: serde_json errors only come from the
    // writer, and a `Vec` never refuses bytes.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::time::Instant;

    use super::*;
    use crate::ProducerRecord;
    use crate::record::TicketShared;

    fn entry(data: &'static [u8], key: &str, explicit_hash_key: Option<&str>) -> Entry {
        let mut record = ProducerRecord::new(Bytes::from_static(data), key.to_owned());
        record.explicit_hash_key = explicit_hash_key.map(str::to_owned);
        let (ticket, _handle): (Arc<TicketShared>, _) = TicketShared::new(1);
        Entry::prepare(record, 1 << 20, &ticket, Instant::now()).unwrap()
    }

    fn parse(body: &Bytes) -> serde_json::Value {
        serde_json::from_slice(body).expect("the body is JSON")
    }

    #[test]
    fn body_lists_every_record_in_order_with_base64_data() {
        let entries = [
            entry(b"hello", "k1", None),
            entry(b"\x00\xffbin", "k2", None),
        ];
        let body = put_records_body(entries.iter().map(WireRecord::from), "events");
        assert_eq!(
            parse(&body),
            serde_json::json!({
                "Records": [
                    {"Data": "aGVsbG8=", "PartitionKey": "k1"},
                    {"Data": "AP9iaW4=", "PartitionKey": "k2"},
                ],
                "StreamName": "events",
            })
        );
    }

    #[test]
    fn keys_and_stream_names_are_escaped() {
        let entries = [entry(b"x", "quote\" back\\slash\nnewline é", None)];
        let body = put_records_body(entries.iter().map(WireRecord::from), "we\"ird");
        let value = parse(&body);
        assert_eq!(
            value["Records"][0]["PartitionKey"],
            "quote\" back\\slash\nnewline é"
        );
        assert_eq!(value["StreamName"], "we\"ird");
    }

    #[test]
    fn an_arn_target_is_sent_as_stream_arn_and_explicit_hash_keys_are_kept() {
        let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/events";
        let entries = [entry(b"x", "k", Some("42"))];
        let value = parse(&put_records_body(entries.iter().map(WireRecord::from), arn));
        assert_eq!(value["StreamARN"], arn);
        assert!(value.get("StreamName").is_none());
        assert_eq!(value["Records"][0]["ExplicitHashKey"], "42");
    }

    #[test]
    fn a_kib_record_takes_about_1_4_kb_of_body() {
        let entries: Vec<Entry> = (0..500)
            .map(|_| entry(&[7u8; 1024], "partition-key-1", None))
            .collect();
        let body = put_records_body(entries.iter().map(WireRecord::from), "events");
        // Base64 of 1 KiB is 1368 bytes; with the key and the JSON around it, ~1.4 KB a record.
        assert!(
            body.len() > 500 * 1368 && body.len() < 500 * 1450,
            "{}",
            body.len()
        );
    }
}
