//! How a `--filter-config KEY=VALUE` value is typed for a 0.2 filter's `configure`.
//!
//! Command lines and config files give text; the contract gives a filter typed values so
//! that every language reads `bots=true` or `limit=5` the same way. The rule types a value
//! only when it prints back exactly as written, so the operator's spelling is never lost
//! (`007` and `1.50` stay text).

use crate::wasm::filter::v02::WitConfigValue as ConfigValue;

/// The typed form of `text`: a boolean, an integer, a number, or else text.
pub(super) fn typed_value(text: &str) -> ConfigValue {
    match text {
        "true" => return ConfigValue::Boolean(true),
        "false" => return ConfigValue::Boolean(false),
        _ => {}
    }
    if let Ok(integer) = text.parse::<i64>()
        && integer.to_string() == text
    {
        return ConfigValue::Integer(integer);
    }
    if let Ok(number) = text.parse::<f64>()
        && number.is_finite()
        && text.contains('.')
        && number.to_string() == text
    {
        return ConfigValue::Number(number);
    }
    ConfigValue::Text(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spelled(value: &ConfigValue) -> String {
        match value {
            ConfigValue::Text(text) => format!("text {text}"),
            ConfigValue::Integer(integer) => format!("integer {integer}"),
            ConfigValue::Number(number) => format!("number {number}"),
            ConfigValue::Boolean(flag) => format!("boolean {flag}"),
        }
    }

    #[test]
    fn values_are_typed_only_when_they_print_back_as_written() {
        for (text, typed) in [
            ("true", "boolean true"),
            ("false", "boolean false"),
            ("True", "text True"),
            ("42", "integer 42"),
            ("-7", "integer -7"),
            ("007", "text 007"),
            ("+5", "text +5"),
            ("0.5", "number 0.5"),
            ("1.50", "text 1.50"),
            ("1e3", "text 1e3"),
            ("NaN", "text NaN"),
            ("enwiki,dewiki", "text enwiki,dewiki"),
            ("", "text "),
            ("99999999999999999999", "text 99999999999999999999"),
        ] {
            assert_eq!(spelled(&typed_value(text)), typed, "{text:?}");
        }
    }
}
