//! Write sse-ingest filter components in Rust.
//!
//! A filter is one type implementing [`Filter`]: it is built once from the
//! pipeline's context and its `key=value` configuration, then handles batches of
//! events and pushes output records. [`export_filter!`] turns it into a
//! component of the `filter` world (`wit/pipeline.wit`).
//!
//! ```text
//! use filter_sdk::{Context, Config, Event, Filter, Output};
//!
//! struct OnlyEdits;
//!
//! impl Filter for OnlyEdits {
//!     fn new(_context: &Context, _config: &Config) -> Result<Self, String> {
//!         Ok(OnlyEdits)
//!     }
//!     fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), String> {
//!         for event in events.iter().filter(|e| e.data.contains("\"type\":\"edit\"")) {
//!             out.push(out.format(event));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! filter_sdk::export_filter!(OnlyEdits);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` and pass the
//! `.wasm` to `sse-ingest run --filter FILE.wasm`.

mod drops;
mod envelope;
#[doc(hidden)]
pub mod runtime;

pub use drops::DropCounter;
pub use envelope::{envelope, rfc3339_millis};

/// Generated bindings of the `filter` world; most filters never touch them.
// Generated code: the canonical ABI glue is `unsafe` by nature.
#[allow(unsafe_code, clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "filter",
        path: "../../wit",
        default_bindings_module: "filter_sdk::bindings",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
    });
}

pub use bindings::sse_ingest::pipeline::filter_types::{
    KeyStrategy, OutputFormat, PipelineContext as Context,
};
pub use bindings::sse_ingest::pipeline::kinesis::OutputRecord;
pub use bindings::sse_ingest::pipeline::log::log;
pub use bindings::sse_ingest::pipeline::types::{Event, Level};

/// A filter: built from its configuration, then called once per batch.
pub trait Filter: 'static {
    /// Builds the filter. An error refuses it with that message (at start, or
    /// for a live swap, where the running filter then stays).
    fn new(context: &Context, config: &Config) -> Result<Self, String>
    where
        Self: Sized;

    /// Handles one batch, pushing records to `out`. An error fails the whole
    /// batch; the pipeline's failure policy decides what happens to it.
    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), String>;
}

/// The filter's `key=value` configuration, in the order given.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    /// Wraps configuration pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, in order (a key may repeat).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `key`, which must be one of `choices`; the first choice is the default
    /// when `key` is absent. Anything else is refused with the choices in the message.
    pub fn one_of<'c>(&self, key: &str, choices: &[&'c str]) -> Result<&'c str, String> {
        let Some(value) = self.get(key) else {
            return choices
                .first()
                .copied()
                .ok_or_else(|| format!("`{key}` has no choices"));
        };
        choices
            .iter()
            .copied()
            .find(|choice| *choice == value)
            .ok_or_else(|| format!("`{key}={value}`: use one of {}", choices.join(", ")))
    }

    /// Fails with a clear message on any key not in `known`.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), String> {
        match self
            .pairs
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            Some((k, _)) => Err(format!(
                "unknown filter configuration key `{k}` (known: {})",
                known.join(", ")
            )),
            None => Ok(()),
        }
    }
}

/// Where a filter puts its records during [`Filter::handle`]. They reach the
/// host in one call after the batch, in push order.
#[derive(Debug)]
pub struct Output {
    context: Context,
    records: Vec<OutputRecord>,
}

impl Output {
    pub(crate) fn new(context: Context) -> Self {
        Self {
            context,
            records: Vec::new(),
        }
    }

    /// Pushes the event in the pipeline's format, keyed by the pipeline's
    /// `--partition-key` strategy: what most filters do with an event they keep.
    pub fn emit(&mut self, event: &Event) {
        let data = self.format(event);
        self.push_for(event, data);
    }

    /// Pushes `data` derived from `event`, keyed by the pipeline's strategy applied to `event`.
    pub fn push_for(&mut self, event: &Event, data: Vec<u8>) {
        let partition_key = self.key_for(event);
        self.push_record(OutputRecord {
            data,
            partition_key,
            stream: None,
        });
    }

    /// The pipeline's partition key for `event`; `None` lets the host choose
    /// (a random key, or the constant).
    pub fn key_for(&self, event: &Event) -> Option<String> {
        let key = match &self.context.partition_key {
            KeyStrategy::Constant(key) => key.clone(),
            KeyStrategy::EventType => event.event_type.clone(),
            KeyStrategy::EventId => event.id.clone(),
            KeyStrategy::JsonPointer(pointer) => {
                let data: serde_json::Value = serde_json::from_str(&event.data).ok()?;
                match data.pointer(pointer)? {
                    serde_json::Value::String(text) => text.clone(),
                    serde_json::Value::Null
                    | serde_json::Value::Array(_)
                    | serde_json::Value::Object(_) => return None,
                    other => other.to_string(),
                }
            }
            KeyStrategy::Random => return None,
        };
        (!key.is_empty()).then_some(key)
    }

    /// Pushes a record for the pipeline's stream. Without an event to derive
    /// a key from, the host keys it (constant strategy: the constant; any
    /// other: a random key). Prefer [`Output::emit`] or [`Output::push_for`].
    pub fn push(&mut self, data: Vec<u8>) {
        self.push_record(OutputRecord {
            data,
            partition_key: None,
            stream: None,
        });
    }

    /// Pushes a record with its own partition key.
    pub fn push_keyed(&mut self, data: Vec<u8>, partition_key: String) {
        self.push_record(OutputRecord {
            data,
            partition_key: Some(partition_key),
            stream: None,
        });
    }

    /// Pushes a fully specified record.
    pub fn push_record(&mut self, record: OutputRecord) {
        self.records.push(record);
    }

    /// The event in the pipeline's configured format (`raw` or `envelope`).
    pub fn format(&self, event: &Event) -> Vec<u8> {
        match self.context.format {
            OutputFormat::Raw => event.data.as_bytes().to_vec(),
            OutputFormat::Envelope => envelope(event, &self.context.source_url),
        }
    }

    /// The pipeline this filter runs in.
    pub fn context(&self) -> &Context {
        &self.context
    }

    pub(crate) fn take(&mut self) -> Vec<OutputRecord> {
        std::mem::take(&mut self.records)
    }
}

/// Exports a [`Filter`] type as the component's `filter` world.
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        #[doc(hidden)]
        #[derive(Debug)]
        pub struct __SseIngestFilterExport;

        impl $crate::bindings::Guest for __SseIngestFilterExport {
            fn init(
                context: $crate::Context,
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::runtime::init::<$filter>(context, config)
            }

            fn handle(
                events: ::std::vec::Vec<$crate::Event>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::runtime::handle(&events)
            }
        }

        #[allow(unsafe_code)]
        mod __sse_ingest_filter_export {
            use super::__SseIngestFilterExport;
            $crate::bindings::export_bindings!(__SseIngestFilterExport with_types_in $crate::bindings);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Config;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn one_of_defaults_to_the_first_choice() {
        assert_eq!(config(&[]).one_of("when", &["data", "always"]), Ok("data"));
    }

    #[test]
    fn one_of_takes_the_last_value_given() {
        let config = config(&[("when", "data"), ("when", "always")]);
        assert_eq!(config.one_of("when", &["data", "always"]), Ok("always"));
    }

    #[test]
    fn one_of_refuses_anything_else_and_names_the_choices() {
        let refused = config(&[("when", "sometimes")]).one_of("when", &["data", "always"]);
        assert_eq!(
            refused,
            Err("`when=sometimes`: use one of data, always".to_owned())
        );
    }

    #[test]
    fn reject_unknown_names_the_stray_key_and_the_known_ones() {
        let refused = config(&[("when", "data"), ("colour", "red")]).reject_unknown(&["when"]);
        assert_eq!(
            refused,
            Err("unknown filter configuration key `colour` (known: when)".to_owned())
        );
    }
}
