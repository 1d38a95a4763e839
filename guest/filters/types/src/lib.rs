//! Keeps the events whose SSE event type (the `event:` field; `message` when
//! there is none) is in a list, and writes them in the pipeline's format (`raw`
//! or `envelope`) with the pipeline's partition key.
//!
//! # Configuration
//!
//! | key | meaning |
//! |---|---|
//! | `types=a,b` | event types to keep, comma-separated; may repeat |
//! | `type=a` | one event type to keep; may repeat |
//!
//! At least one type is required. Every `types=` and `type=` value adds to the
//! list. Names are trimmed of surrounding whitespace; an empty name (as in
//! `types=a,,b`) and any other key are errors.
//!
//! ```text
//! sse-ingest run --filter types --filter-config types=edit,log
//! ```

use filter_sdk::{Config, ConfigError, Event, Filter, FilterError, Output, Pipeline};

/// Keeps events of the configured types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Types {
    types: Vec<String>,
}

impl Types {
    /// Parses the configuration (see the crate documentation).
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        config.reject_unknown(&["types", "type"])?;
        let mut types: Vec<String> = Vec::new();
        for (key, value) in config.iter() {
            let names: Vec<&str> = if key == "types" {
                value.split(',').collect()
            } else {
                vec![value]
            };
            for name in names {
                let name = name.trim();
                if name.is_empty() {
                    return Err(filter_sdk::invalid(
                        key,
                        &format!("types filter: empty event type in `{key}={value}`"),
                    ));
                }
                if !types.iter().any(|t| t == name) {
                    types.push(name.to_string());
                }
            }
        }
        if types.is_empty() {
            return Err(ConfigError::MissingKey("types".to_string()));
        }
        Ok(Self { types })
    }

    /// The event types kept, in configuration order, without duplicates.
    pub fn types(&self) -> &[String] {
        &self.types
    }

    /// Whether `event` is kept.
    pub fn keeps(&self, event: &Event) -> bool {
        self.types.contains(&event.event_type)
    }
}

impl Filter for Types {
    fn new(_pipeline: &Pipeline, config: &Config) -> Result<Self, ConfigError> {
        Self::from_config(config)
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), FilterError> {
        for (index, event) in events.iter().enumerate() {
            if self.keeps(event) {
                out.keep(index);
            }
        }
        Ok(())
    }
}

filter_sdk::export_filter!(Types);

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture's events, as the live stream frames them (`event: message`).
    fn fixture_events() -> Vec<Event> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../tests/fixtures/wikimedia-recentchange-sample.ndjson"
        );
        let text = std::fs::read_to_string(path).expect("the fixture is readable");
        text.lines()
            .enumerate()
            .map(|(i, line)| Event {
                event_type: "message".to_string(),
                data: line.to_string(),
                id: format!("[{{\"topic\":\"eqiad.mediawiki.recentchange\",\"offset\":{i}}}]"),
                received_at_ms: 1_690_617_099_000,
            })
            .collect()
    }

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_text(pairs)
    }

    fn typed(event_type: &str, event: &Event) -> Event {
        Event {
            event_type: event_type.to_string(),
            ..event.clone()
        }
    }

    #[test]
    fn message_events_are_kept_when_message_is_listed() {
        let filter = Types::from_config(&config(&[("types", "message")])).expect("valid");
        let events = fixture_events();
        assert_eq!(events.len(), 100);
        assert!(events.iter().all(|e| filter.keeps(e)));
    }

    #[test]
    fn events_of_unlisted_types_are_dropped() {
        let filter = Types::from_config(&config(&[("types", "edit,log")])).expect("valid");
        assert!(fixture_events().iter().all(|e| !filter.keeps(e)));
    }

    #[test]
    fn only_the_listed_types_are_kept_from_a_mixed_batch() {
        let filter = Types::from_config(&config(&[("types", "edit, log")])).expect("valid");
        let events = fixture_events();
        let mixed = [
            typed("edit", &events[0]),
            typed("message", &events[1]),
            typed("log", &events[2]),
            typed("categorize", &events[3]),
        ];
        let kept: Vec<&str> = mixed
            .iter()
            .filter(|e| filter.keeps(e))
            .map(|e| e.event_type.as_str())
            .collect();
        assert_eq!(kept, ["edit", "log"]);
    }

    #[test]
    fn repeated_type_and_types_keys_add_up_without_duplicates() {
        let filter = Types::from_config(&config(&[
            ("type", "edit"),
            ("types", "log,edit"),
            ("type", "new"),
        ]))
        .expect("valid");
        assert_eq!(filter.types(), ["edit", "log", "new"]);
    }

    #[test]
    fn type_names_are_matched_exactly() {
        let filter = Types::from_config(&config(&[("types", "Message")])).expect("valid");
        assert!(!filter.keeps(&fixture_events()[0]));
    }

    #[test]
    fn a_configuration_without_types_is_refused() {
        let err = Types::from_config(&config(&[])).expect_err("refused");
        assert!(
            matches!(&err, ConfigError::MissingKey(key) if key == "types"),
            "{err:?}"
        );
    }

    #[test]
    fn an_empty_type_name_is_refused() {
        let err = Types::from_config(&config(&[("types", "edit,,log")])).expect_err("refused");
        assert!(format!("{err:?}").contains("`types=edit,,log`"), "{err:?}");
    }

    #[test]
    fn an_unknown_configuration_key_is_refused() {
        let err =
            Types::from_config(&config(&[("types", "edit"), ("typ", "log")])).expect_err("refused");
        assert!(
            matches!(&err, ConfigError::UnknownKey(key) if key == "typ"),
            "{err:?}"
        );
    }
}
