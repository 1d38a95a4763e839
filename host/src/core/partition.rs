//! `--partition-key`: how records get their Kinesis partition key.
//!
//! The filter applies the strategy to the event a record came from (the SDK's
//! `Output::emit` / `push_for`); a record that still has no key (a filter
//! pushed bare bytes, the pointer was missing, or the strategy is `random`)
//! gets one here: the constant for `const:`, else a random key.

use std::fmt;
use std::str::FromStr;

/// A partition-key strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStrategy {
    /// `const:VALUE`: every record gets VALUE (the seed's behaviour was `const:0`: one hot shard).
    Constant(String),
    /// `type`: the SSE event type.
    EventType,
    /// `id`: the SSE event id (the default: spreads load, and a replayed event lands on the same shard).
    EventId,
    /// `json:/POINTER`: a field of the event's JSON data, e.g. `json:/meta/domain`.
    JsonPointer(String),
    /// `random`: a random key per record.
    Random,
}

impl FromStr for KeyStrategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "type" => Self::EventType,
            "id" => Self::EventId,
            "random" => Self::Random,
            _ => match text.split_once(':') {
                Some(("const", value)) if !value.is_empty() => Self::Constant(value.to_string()),
                Some(("json", pointer)) if pointer.starts_with('/') => {
                    Self::JsonPointer(pointer.to_string())
                }
                _ => {
                    return Err(format!(
                        "`{text}` is not a partition-key strategy: use const:VALUE, type, id, json:/POINTER or random"
                    ));
                }
            },
        })
    }
}

impl fmt::Display for KeyStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Constant(value) => write!(f, "const:{value}"),
            Self::EventType => f.write_str("type"),
            Self::EventId => f.write_str("id"),
            Self::JsonPointer(pointer) => write!(f, "json:{pointer}"),
            Self::Random => f.write_str("random"),
        }
    }
}

impl KeyStrategy {
    /// The key of a record that came out of the filter without one.
    pub fn fallback_key(&self) -> String {
        match self {
            Self::Constant(value) => value.clone(),
            _ => format!("{:032x}", rand::random::<u128>()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_strategy_parses_and_prints_back() {
        for text in ["const:0", "type", "id", "json:/meta/domain", "random"] {
            let strategy: KeyStrategy = text.parse().expect("parses");
            assert_eq!(strategy.to_string(), text);
        }
    }

    #[test]
    fn malformed_strategies_are_refused() {
        for text in ["const:", "json:meta", "hash", ""] {
            assert!(text.parse::<KeyStrategy>().is_err(), "{text}");
        }
    }

    #[test]
    fn fallback_keys_are_the_constant_or_random() {
        assert_eq!(KeyStrategy::Constant("0".into()).fallback_key(), "0");
        let a = KeyStrategy::EventId.fallback_key();
        let b = KeyStrategy::EventId.fallback_key();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
