//! A filter's configuration: the operator's `key=value` pairs, typed by the host.

use crate::bindings::sse_ingest::filter::types::ConfigEntry;
use crate::{ConfigError, ConfigValue, InvalidValue};

/// The filter's configuration, in the order given (a key may repeat).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Each pair with its value spelled as the operator wrote it.
    pairs: Vec<(String, String, ConfigValue)>,
}

/// The operator's spelling of a typed value (the host types a value only when it prints
/// back exactly as written, so this is what was given).
fn spelled(value: &ConfigValue) -> String {
    match value {
        ConfigValue::Text(text) => text.clone(),
        ConfigValue::Integer(integer) => integer.to_string(),
        ConfigValue::Number(number) => number.to_string(),
        ConfigValue::Boolean(flag) => flag.to_string(),
    }
}

impl Config {
    /// Wraps the entries `configure` was given.
    pub fn new(entries: Vec<ConfigEntry>) -> Self {
        Self {
            pairs: entries
                .into_iter()
                .map(|entry| (entry.key, spelled(&entry.value), entry.value))
                .collect(),
        }
    }

    /// Builds a configuration of text values (for a filter's own tests).
    pub fn from_text(pairs: &[(&str, &str)]) -> Self {
        Self {
            pairs: pairs
                .iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        (*v).to_owned(),
                        ConfigValue::Text((*v).to_owned()),
                    )
                })
                .collect(),
        }
    }

    /// The last value given for `key`, as the operator spelled it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.last(key).map(|(_, text, _)| text.as_str())
    }

    /// The last typed value given for `key`.
    pub fn value(&self, key: &str) -> Option<&ConfigValue> {
        self.last(key).map(|(_, _, value)| value)
    }

    fn last(&self, key: &str) -> Option<&(String, String, ConfigValue)> {
        self.pairs.iter().rev().find(|(k, _, _)| k == key)
    }

    /// Every pair, in order, with values as spelled.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v, _)| (k.as_str(), v.as_str()))
    }

    /// `key` as a boolean (`true`/`false`), or `None` when absent.
    pub fn flag(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(ConfigValue::Boolean(flag)) => Ok(Some(*flag)),
            Some(_) => Err(invalid(key, "use true or false")),
        }
    }

    /// `key` as a whole number, or `None` when absent.
    pub fn integer(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(ConfigValue::Integer(integer)) => Ok(Some(*integer)),
            Some(_) => Err(invalid(key, "use a whole number")),
        }
    }

    /// The value of `key`, which must be one of `choices`; the first choice is the default
    /// when `key` is absent. Anything else is refused with the choices in the message.
    pub fn one_of<'c>(&self, key: &str, choices: &[&'c str]) -> Result<&'c str, ConfigError> {
        let Some(value) = self.get(key) else {
            return choices
                .first()
                .copied()
                .ok_or_else(|| invalid(key, "has no choices"));
        };
        choices
            .iter()
            .copied()
            .find(|choice| *choice == value)
            .ok_or_else(|| invalid(key, &format!("use one of {}", choices.join(", "))))
    }

    /// Fails on the first key not in `known`.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), ConfigError> {
        match self
            .pairs
            .iter()
            .find(|(k, _, _)| !known.contains(&k.as_str()))
        {
            Some((k, _, _)) => Err(ConfigError::UnknownKey(k.clone())),
            None => Ok(()),
        }
    }
}

/// A key whose value the filter cannot use.
pub fn invalid(key: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue(InvalidValue {
        key: key.to_owned(),
        reason: reason.to_owned(),
    })
}

/// The operator's sentence for a refusal (the host words it the same way).
pub fn describe(error: &ConfigError) -> String {
    match error {
        ConfigError::UnknownKey(key) => format!("unknown configuration key `{key}`"),
        ConfigError::MissingKey(key) => format!("missing configuration key `{key}`"),
        ConfigError::InvalidValue(invalid) if invalid.key.is_empty() => invalid.reason.clone(),
        ConfigError::InvalidValue(invalid) => format!("`{}`: {}", invalid.key, invalid.reason),
    }
}

/// A configuration refused with a message that names no single key: `?` on a
/// `Result<_, String>` in [`crate::Filter::new`].
impl From<String> for ConfigError {
    fn from(reason: String) -> Self {
        ConfigError::InvalidValue(InvalidValue {
            key: String::new(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, ConfigValue)]) -> Config {
        Config::new(
            pairs
                .iter()
                .map(|(k, v)| ConfigEntry {
                    key: (*k).to_owned(),
                    value: v.clone(),
                })
                .collect(),
        )
    }

    fn text(value: &str) -> ConfigValue {
        ConfigValue::Text(value.to_owned())
    }

    fn reason(error: ConfigError) -> String {
        match error {
            ConfigError::UnknownKey(key) => format!("unknown {key}"),
            ConfigError::MissingKey(key) => format!("missing {key}"),
            ConfigError::InvalidValue(invalid) => format!("{}: {}", invalid.key, invalid.reason),
        }
    }

    #[test]
    fn one_of_defaults_to_the_first_choice() {
        assert_eq!(
            config(&[]).one_of("when", &["data", "always"]).ok(),
            Some("data")
        );
    }

    #[test]
    fn one_of_takes_the_last_value_given() {
        let config = config(&[("when", text("data")), ("when", text("always"))]);
        assert_eq!(
            config.one_of("when", &["data", "always"]).ok(),
            Some("always")
        );
    }

    #[test]
    fn one_of_refuses_anything_else_and_names_the_choices() {
        let refused = config(&[("when", text("sometimes"))]).one_of("when", &["data", "always"]);
        assert_eq!(
            reason(refused.unwrap_err()),
            "when: use one of data, always"
        );
    }

    #[test]
    fn reject_unknown_names_the_stray_key() {
        let refused =
            config(&[("when", text("data")), ("colour", text("red"))]).reject_unknown(&["when"]);
        assert_eq!(reason(refused.unwrap_err()), "unknown colour");
    }

    #[test]
    fn typed_values_read_back_as_spelled_and_as_their_type() {
        let config = config(&[
            ("bots", ConfigValue::Boolean(true)),
            ("limit", ConfigValue::Integer(5)),
            ("name", text("x")),
        ]);
        assert_eq!(config.get("bots"), Some("true"));
        assert_eq!(config.flag("bots").ok(), Some(Some(true)));
        assert_eq!(config.integer("limit").ok(), Some(Some(5)));
        assert_eq!(config.get("limit"), Some("5"));
        assert_eq!(
            reason(config.flag("name").unwrap_err()),
            "name: use true or false"
        );
        assert_eq!(config.integer("absent").ok(), Some(None));
    }
}
