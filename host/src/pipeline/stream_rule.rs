//! Which streams a filter's records may go to.
//!
//! A filter may name a Kinesis stream per record (`output-record.stream`). Left unchecked,
//! that would let a filter write to any stream the credentials reach, and the producer
//! would keep a queue for every name. So the operator lists the streams (`--allow-stream`),
//! and every sink applies the same rule before a record reaches it: a record for the
//! pipeline's own stream or an allowed one goes on; any other is a dead letter with the
//! reason. The file and stdout sinks write one output, so a record naming any stream is a
//! dead letter there (and `--allow-stream` is refused with them at start).

use crate::core::record::Record;
use crate::sink::SinkSpec;

/// The rule for one pipeline.
#[derive(Debug, Clone)]
pub struct StreamRule {
    /// The Kinesis sink's stream; `None` for the file and stdout sinks.
    own: Option<String>,
    /// `--allow-stream`.
    allowed: Vec<String>,
    /// How dead letters name the sink.
    sink: &'static str,
}

impl StreamRule {
    /// The rule for `sink` with the streams the operator allowed.
    pub fn new(sink: &SinkSpec, allowed: &[String]) -> Self {
        let (own, sink) = match sink {
            SinkSpec::Kinesis(options) => (Some(options.producer.stream.clone()), "kinesis"),
            SinkSpec::File(_) => (None, "file"),
            SinkSpec::Stdout => (None, "stdout"),
            SinkSpec::Discard => (None, "discard"),
        };
        Self {
            own,
            allowed: allowed.to_vec(),
            sink,
        }
    }

    /// Splits records into those the sink takes (in order) and dead letters with reasons.
    /// Each record travels with `T` (the index of its event, where known), which a dead
    /// letter keeps.
    pub fn split<T>(&self, records: Vec<(Record, T)>) -> (Vec<Record>, Vec<(Record, T, String)>) {
        let mut kept = Vec::with_capacity(records.len());
        let mut refused = Vec::new();
        for (record, origin) in records {
            match self.refusal(record.stream.as_deref()) {
                None => kept.push(record),
                Some(reason) => refused.push((record, origin, reason)),
            }
        }
        (kept, refused)
    }

    fn refusal(&self, stream: Option<&str>) -> Option<String> {
        let stream = stream?;
        if self.own.as_deref() == Some(stream) {
            return None;
        }
        if self.own.is_none() {
            return Some(format!(
                "the filter sent this record to stream `{stream}`, but the {} sink writes one \
                 output and has no streams",
                self.sink
            ));
        }
        if self.allowed.iter().any(|allowed| allowed == stream) {
            return None;
        }
        Some(format!(
            "the filter sent this record to stream `{stream}`, which this pipeline may not \
             write to (allow it with --allow-stream {stream})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stream: Option<&str>) -> Record {
        Record {
            data: bytes::Bytes::from_static(b"x"),
            partition_key: None,
            stream: stream.map(str::to_string),
        }
    }

    fn kinesis(stream: &str) -> SinkSpec {
        SinkSpec::Kinesis(Box::new(crate::sink::KinesisOptions {
            region: None,
            endpoint_url: None,
            http: kinesis_producer::HttpSettings::default(),
            producer: kinesis_producer::ProducerConfig::new(stream),
        }))
    }

    #[test]
    fn kinesis_takes_its_own_and_allowed_streams_and_dead_letters_the_rest() {
        let rule = StreamRule::new(&kinesis("main"), &["side".to_string()]);
        let (kept, refused) = rule.split(vec![
            (record(None), 0),
            (record(Some("main")), 1),
            (record(Some("side")), 2),
            (record(Some("elsewhere")), 3),
        ]);
        assert_eq!(kept.len(), 3);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].1, 3, "the refused record keeps its event");
        assert!(
            refused[0].2.contains("--allow-stream elsewhere"),
            "{}",
            refused[0].2
        );
    }

    #[test]
    fn file_and_stdout_sinks_dead_letter_any_named_stream() {
        for sink in [SinkSpec::File("out".into()), SinkSpec::Stdout] {
            let rule = StreamRule::new(&sink, &[]);
            let (kept, refused) = rule.split(vec![(record(None), ()), (record(Some("side")), ())]);
            assert_eq!(kept, vec![record(None)]);
            assert!(refused[0].2.contains("has no streams"), "{}", refused[0].2);
        }
    }
}
