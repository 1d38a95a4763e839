//! Keeps the events whose data, parsed as JSON, matches every configured
//! predicate, and writes them in the pipeline's format (`raw` or `envelope`),
//! optionally with a partition key taken from the data.
//!
//! # Configuration
//!
//! | key | meaning |
//! |---|---|
//! | `where=PREDICATE` | one predicate; may repeat, all must hold (AND) |
//! | `key=/json/pointer` | partition key from the data |
//! | `stream=NAME` | write the kept records to the Kinesis stream `NAME` instead of the pipeline's; the operator must allow it with `--allow-stream NAME`, or each record is a dead letter |
//!
//! A predicate is a [JSON pointer](https://www.rfc-editor.org/rfc/rfc6901)
//! (`/meta/domain`; `~1` stands for `/` and `~0` for `~` in a member name)
//! followed by an operator:
//!
//! | predicate | holds when the value at the pointer… |
//! |---|---|
//! | `/wiki=enwiki` | equals the text (see below) |
//! | `/bot!=true` | does not equal the text, **or is missing** |
//! | `/type in edit,new` | equals one of the comma-separated texts |
//! | `/meta/domain exists` | is present (even when it is `null`) |
//! | `/length/new>1000` | is a number greater than 1000; also `>=`, `<`, `<=` |
//!
//! Equality compares a JSON string with the text as it is, a number
//! numerically (`/namespace=0` holds for `0` and `0.0`), `true`, `false` and
//! `null` with those words; an array or an object equals nothing. The
//! ordering operators need a number after them and hold only for numbers.
//! Spaces around the operator and the texts are ignored (`/type in edit, new`),
//! so a pointer cannot contain a space or any of `= ! < >`, and a text cannot
//! start or end with a space. A malformed predicate refuses the filter with a
//! message that quotes it.
//!
//! `key=` takes the partition key from the value at the pointer: a string as
//! it is, a number or a boolean as its JSON text. When the value is missing,
//! empty, `null`, an array or an object, the record gets the pipeline's
//! partition key.
//!
//! Without any `where=` every event passes, data unchanged (JSON or not). With
//! predicates, an event whose data is not JSON is dropped and counted; the
//! filter logs one warning per batch that had any. Any other key is an error.
//!
//! ```text
//! sse-ingest run --filter json-match \
//!   --filter-config 'where=/wiki=enwiki' --filter-config 'where=/bot!=true' \
//!   --filter-config 'where=/length/new>1000' --filter-config key=/meta/domain
//! ```

mod lookup;

use std::cmp::Ordering;
use std::str::FromStr;

use filter_sdk::{Config, ConfigError, DropCounter, Event, Filter, FilterError, Output, Pipeline};
use serde_json::{Number, Value};

use lookup::Pointers;

/// Keeps the events whose JSON data matches every predicate.
#[derive(Debug, Clone)]
pub struct JsonMatch {
    predicates: Vec<Predicate>,
    /// The slot of the `key=` pointer in `pointers`' answer.
    key: Option<usize>,
    /// Every pointer of the predicates and the key, read in one pass per event.
    pointers: Pointers,
    stream: Option<String>,
    not_json: DropCounter,
}

/// What happens to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Written, with this partition key (`None`: the pipeline's).
    Keep { partition_key: Option<String> },
    /// Did not match.
    Drop,
    /// Dropped because predicates were configured and the data is not JSON.
    NotJson,
}

impl JsonMatch {
    /// Parses the configuration (see the crate documentation).
    pub fn from_config(config: &Config) -> Result<Self, String> {
        config
            .reject_unknown(&["where", "key", "stream"])
            .map_err(|e| {
                format!(
                    "json-match filter: {}",
                    filter_sdk::describe_config_error(&e)
                )
            })?;
        let stream = match config.get("stream") {
            None => None,
            Some(name) if is_stream_name(name) => Some(name.to_string()),
            Some(name) => {
                return Err(format!(
                    "json-match filter: invalid `stream={name}`: a Kinesis stream name is 1 to \
                     128 letters, digits, `_`, `.` or `-`"
                ));
            }
        };
        let mut pointers = Pointers::default();
        let predicates = config
            .iter()
            .filter(|(key, _)| *key == "where")
            .map(|(_, value)| Predicate::parse(value, &mut pointers))
            .collect::<Result<Vec<_>, _>>()?;
        let key = match config.get("key") {
            None => None,
            Some(pointer) => {
                check_pointer(pointer)
                    .map_err(|why| format!("json-match filter: invalid `key={pointer}`: {why}"))?;
                Some(pointers.add(pointer))
            }
        };
        Ok(Self {
            predicates,
            key,
            pointers,
            stream,
            not_json: not_json_counter(),
        })
    }

    /// Decides what happens to an event with this data.
    pub fn decide(&self, data: &str) -> Decision {
        if self.predicates.is_empty() && self.key.is_none() {
            return Decision::Keep {
                partition_key: None,
            };
        }
        let found = match self.pointers.lookup(data) {
            Ok(found) => found,
            Err(_) if self.predicates.is_empty() => {
                return Decision::Keep {
                    partition_key: None,
                };
            }
            Err(_) => return Decision::NotJson,
        };
        if self
            .predicates
            .iter()
            .all(|p| p.holds(found[p.slot].as_ref()))
        {
            Decision::Keep {
                partition_key: self.partition_key(&found),
            }
        } else {
            Decision::Drop
        }
    }

    fn partition_key(&self, found: &[Option<Value>]) -> Option<String> {
        match found[self.key?].as_ref()? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// Counts the events dropped because their data is not JSON (only with predicates).
fn not_json_counter() -> DropCounter {
    DropCounter::new("json-match", "whose data is not JSON")
}

impl Filter for JsonMatch {
    fn new(_pipeline: &Pipeline, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self::from_config(config)?)
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), FilterError> {
        let mut not_json = 0u64;
        for (index, event) in events.iter().enumerate() {
            match self.decide(&event.data) {
                Decision::Keep { partition_key } => match (&self.stream, partition_key) {
                    // A refused stream is dead-lettered by the host with its event.
                    (Some(stream), key) => {
                        let _refused = out.forward(stream, index, key);
                    }
                    (None, Some(key)) => out.keep_keyed(index, key),
                    (None, None) => out.keep(index),
                },
                Decision::Drop => {}
                Decision::NotJson => not_json += 1,
            }
        }
        self.not_json.batch_done(not_json);
        Ok(())
    }
}

filter_sdk::export_filter!(JsonMatch);

/// Kinesis' rule for stream names.
fn is_stream_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// One `where=` predicate.
#[derive(Debug, Clone)]
struct Predicate {
    /// The slot of its pointer in the lookup's answer.
    slot: usize,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Equals(Literal),
    NotEquals(Literal),
    In(Vec<Literal>),
    Exists,
    Compare(Comparison, Number),
}

#[derive(Debug, Clone, Copy)]
enum Comparison {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

impl Comparison {
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Greater => ordering.is_gt(),
            Comparison::GreaterOrEqual => ordering.is_ge(),
            Comparison::Less => ordering.is_lt(),
            Comparison::LessOrEqual => ordering.is_le(),
        }
    }
}

/// A text from a predicate, with its numeric reading when it has one.
#[derive(Debug, Clone)]
struct Literal {
    text: String,
    number: Option<Number>,
}

impl Literal {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            number: Number::from_str(text).ok(),
        }
    }

    fn equals(&self, value: &Value) -> bool {
        match value {
            Value::String(s) => *s == self.text,
            Value::Number(n) => self
                .number
                .as_ref()
                .is_some_and(|m| compare_numbers(n, m) == Some(Ordering::Equal)),
            Value::Bool(true) => self.text == "true",
            Value::Bool(false) => self.text == "false",
            Value::Null => self.text == "null",
            Value::Array(_) | Value::Object(_) => false,
        }
    }
}

const OPERATORS: &str = "`=`, `!=`, `<`, `<=`, `>`, `>=`, `in a,b` or `exists`";

impl Predicate {
    /// Parses a predicate and adds its pointer to `pointers`.
    fn parse(source: &str, pointers: &mut Pointers) -> Result<Self, String> {
        let invalid =
            |why: String| format!("json-match filter: invalid predicate `{source}`: {why}");
        let text = source.trim();
        if !text.starts_with('/') {
            return Err(invalid(
                "it must start with a JSON pointer such as `/wiki`".to_string(),
            ));
        }
        let end = text
            .find(|c: char| matches!(c, '=' | '!' | '<' | '>') || c.is_whitespace())
            .unwrap_or(text.len());
        let (pointer, rest) = text.split_at(end);
        check_pointer(pointer).map_err(invalid)?;
        let rest = rest.trim_start();
        let test = if let Some(value) = rest.strip_prefix("!=") {
            Test::NotEquals(Literal::new(value.trim()))
        } else if let Some(value) = rest.strip_prefix('=') {
            Test::Equals(Literal::new(value.trim()))
        } else if let Some((comparison, value)) = [
            (">=", Comparison::GreaterOrEqual),
            ("<=", Comparison::LessOrEqual),
            (">", Comparison::Greater),
            ("<", Comparison::Less),
        ]
        .iter()
        .find_map(|(op, comparison)| Some((*comparison, rest.strip_prefix(op)?.trim())))
        {
            let number = Number::from_str(value).map_err(|_| {
                invalid(format!(
                    "`{value}` is not a number (`<`, `<=`, `>`, `>=` compare numbers)"
                ))
            })?;
            Test::Compare(comparison, number)
        } else if rest == "exists" {
            Test::Exists
        } else if let Some(list) = rest
            .strip_prefix("in")
            .filter(|list| list.is_empty() || list.starts_with(char::is_whitespace))
        {
            let items: Vec<&str> = list.split(',').map(str::trim).collect();
            if items.iter().any(|item| item.is_empty()) {
                return Err(invalid(
                    "`in` needs a comma-separated list of values without empty items".to_string(),
                ));
            }
            Test::In(items.into_iter().map(Literal::new).collect())
        } else if rest.is_empty() {
            return Err(invalid(format!(
                "no operator after the pointer; use {OPERATORS}"
            )));
        } else {
            return Err(invalid(format!(
                "unknown operator at `{rest}`; use {OPERATORS}"
            )));
        };
        Ok(Self {
            slot: pointers.add(pointer),
            test,
        })
    }

    /// Whether it holds for the value found at its pointer (`None`: missing).
    fn holds(&self, value: Option<&Value>) -> bool {
        match &self.test {
            Test::Exists => value.is_some(),
            Test::Equals(literal) => value.is_some_and(|v| literal.equals(v)),
            Test::NotEquals(literal) => !value.is_some_and(|v| literal.equals(v)),
            Test::In(literals) => value.is_some_and(|v| literals.iter().any(|l| l.equals(v))),
            Test::Compare(comparison, bound) => value
                .and_then(Value::as_number)
                .and_then(|n| compare_numbers(n, bound))
                .is_some_and(|ordering| comparison.accepts(ordering)),
        }
    }
}

/// Checks that `pointer` is a non-empty JSON pointer with valid `~` escapes.
fn check_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.starts_with('/') {
        return Err(format!(
            "`{pointer}` is not a JSON pointer (it must start with `/`, as in `/meta/domain`)"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "`{pointer}` has a `~` not followed by 0 or 1 (write `~0` for `~`, `~1` for `/`)"
            ));
        }
    }
    Ok(())
}

/// Compares two JSON numbers: exactly when both are integers, else as `f64`.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    fn integer(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data of the fixture's 100 recentchange events (all enwiki edits).
    fn fixture() -> Vec<String> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../tests/fixtures/wikimedia-recentchange-sample.ndjson"
        );
        let text = std::fs::read_to_string(path).expect("the fixture is readable");
        text.lines().map(str::to_string).collect()
    }

    fn filter(pairs: &[(&str, &str)]) -> JsonMatch {
        JsonMatch::from_config(&config(pairs)).expect("a valid configuration")
    }

    fn refusal(pairs: &[(&str, &str)]) -> String {
        JsonMatch::from_config(&config(pairs)).expect_err("an invalid configuration")
    }

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_text(pairs)
    }

    fn kept(filter: &JsonMatch, data: &[String]) -> usize {
        data.iter()
            .filter(|d| matches!(filter.decide(d), Decision::Keep { .. }))
            .count()
    }

    /// The fixture event at `index`, changed by `edit`.
    fn edited(index: usize, edit: impl FnOnce(&mut Value)) -> String {
        let mut value: Value = serde_json::from_str(&fixture()[index]).expect("JSON");
        edit(&mut value);
        value.to_string()
    }

    const KEEP: Decision = Decision::Keep {
        partition_key: None,
    };

    #[test]
    fn every_event_passes_when_no_predicate_is_given_even_if_it_is_not_json() {
        let filter = filter(&[]);
        assert_eq!(kept(&filter, &fixture()), 100);
        assert_eq!(filter.decide("not json"), KEEP);
    }

    #[test]
    fn equality_compares_a_json_string_with_the_text() {
        let data = fixture();
        assert_eq!(kept(&filter(&[("where", "/wiki=enwiki")]), &data), 100);
        assert_eq!(kept(&filter(&[("where", "/wiki=dewiki")]), &data), 0);
        assert_eq!(kept(&filter(&[("where", "/title=Higher")]), &data), 1);
    }

    #[test]
    fn equality_compares_numbers_numerically() {
        let data = fixture();
        assert_eq!(kept(&filter(&[("where", "/namespace=0")]), &data), 86);
        assert_eq!(kept(&filter(&[("where", "/namespace=0.0")]), &data), 86);
        assert_eq!(kept(&filter(&[("where", "/namespace=2e0")]), &data), 8);
        assert_eq!(kept(&filter(&[("where", "/id=1659529639")]), &data), 1);
    }

    #[test]
    fn equality_compares_booleans_and_null_literally() {
        let data = fixture();
        assert_eq!(kept(&filter(&[("where", "/bot=true")]), &data), 2);
        assert_eq!(kept(&filter(&[("where", "/minor=true")]), &data), 7);
        assert_eq!(kept(&filter(&[("where", "/bot=1")]), &data), 0);
        let null_user = edited(0, |v| v["user"] = Value::Null);
        assert_eq!(filter(&[("where", "/user=null")]).decide(&null_user), KEEP);
    }

    #[test]
    fn inequality_keeps_other_values_and_events_without_the_field() {
        let data = fixture();
        let not_bot = filter(&[("where", "/bot!=true")]);
        assert_eq!(kept(&not_bot, &data), 98);
        let no_bot_field = edited(4, |v| {
            v.as_object_mut().map(|o| o.remove("bot"));
        });
        assert_eq!(not_bot.decide(&no_bot_field), KEEP);
    }

    #[test]
    fn in_matches_any_of_the_listed_values() {
        let data = fixture();
        assert_eq!(kept(&filter(&[("where", "/type in edit,new")]), &data), 100);
        assert_eq!(kept(&filter(&[("where", "/type in new, log")]), &data), 0);
        assert_eq!(kept(&filter(&[("where", "/namespace in 2,4")]), &data), 10);
    }

    #[test]
    fn exists_holds_for_present_paths_even_when_null() {
        let data = fixture();
        assert_eq!(
            kept(&filter(&[("where", "/meta/domain exists")]), &data),
            100
        );
        assert_eq!(kept(&filter(&[("where", "/log_type exists")]), &data), 0);
        let null_comment = edited(0, |v| v["comment"] = Value::Null);
        let exists = filter(&[("where", "/comment exists")]);
        assert_eq!(exists.decide(&null_comment), KEEP);
    }

    #[test]
    fn ordering_operators_compare_numbers() {
        let data = fixture();
        assert_eq!(kept(&filter(&[("where", "/length/new>1000")]), &data), 98);
        assert_eq!(kept(&filter(&[("where", "/length/new>=2000")]), &data), 94);
        assert_eq!(kept(&filter(&[("where", "/length/new<2000")]), &data), 6);
        assert_eq!(kept(&filter(&[("where", "/length/new<=2000")]), &data), 8);
        assert_eq!(kept(&filter(&[("where", "/length/new > 1e3")]), &data), 98);
    }

    #[test]
    fn ordering_operators_never_hold_for_strings_or_missing_values() {
        let data = fixture();
        assert_eq!(kept(&filter(&[("where", "/wiki>0")]), &data), 0);
        assert_eq!(kept(&filter(&[("where", "/length/older<0")]), &data), 0);
    }

    #[test]
    fn all_predicates_must_hold() {
        let filter = filter(&[
            ("where", "/wiki=enwiki"),
            ("where", "/bot!=true"),
            ("where", "/length/new>1000"),
            ("where", "/namespace=0"),
        ]);
        assert_eq!(kept(&filter, &fixture()), 84);
    }

    #[test]
    fn values_may_contain_operator_characters_and_pointers_may_escape_slashes() {
        let data = fixture();
        let schema = filter(&[("where", "/$schema=/mediawiki/recentchange/1.0.0")]);
        assert_eq!(kept(&schema, &data), 100);
        let slashed = edited(0, |v| v["a/b~c"] = Value::from("x=y"));
        assert_eq!(filter(&[("where", "/a~1b~0c=x=y")]).decide(&slashed), KEEP);
    }

    #[test]
    fn events_that_do_not_match_are_dropped() {
        let filter = filter(&[("where", "/bot=true")]);
        assert_eq!(filter.decide(&fixture()[0]), Decision::Drop);
    }

    #[test]
    fn data_that_is_not_json_is_dropped_as_not_json_when_predicates_are_given() {
        let filter = filter(&[("where", "/wiki=enwiki")]);
        assert_eq!(filter.decide("trap"), Decision::NotJson);
        assert_eq!(filter.decide(""), Decision::NotJson);
        let truncated = &fixture()[0][..50];
        assert_eq!(filter.decide(truncated), Decision::NotJson);
    }

    #[test]
    fn the_not_json_warning_gives_the_batch_count_and_the_total() {
        assert_eq!(
            not_json_counter().count(3).as_deref(),
            Some(
                "json-match: dropped 3 event(s) of this batch whose data is not JSON (3 since start)"
            )
        );
    }

    #[test]
    fn the_partition_key_comes_from_the_key_pointer() {
        let filter = filter(&[("where", "/bot=true"), ("key", "/meta/domain")]);
        assert_eq!(
            filter.decide(&fixture()[4]),
            Decision::Keep {
                partition_key: Some("en.wikipedia.org".to_string())
            }
        );
    }

    #[test]
    fn a_predicate_and_the_key_may_use_the_same_pointer() {
        let filter = filter(&[("where", "/wiki=enwiki"), ("key", "/wiki")]);
        assert_eq!(
            filter.decide(r#"{"wiki":"enwiki","n":1}"#),
            Decision::Keep {
                partition_key: Some("enwiki".to_string())
            }
        );
        assert_eq!(filter.decide(r#"{"wiki":"dewiki"}"#), Decision::Drop);
    }

    #[test]
    fn numbers_and_booleans_become_keys_as_their_json_text() {
        let data = fixture();
        let by_namespace = filter(&[("key", "/namespace")]);
        assert_eq!(
            by_namespace.decide(&data[0]),
            Decision::Keep {
                partition_key: Some("0".to_string())
            }
        );
        let by_bot = filter(&[("key", "/bot")]);
        assert_eq!(
            by_bot.decide(&data[4]),
            Decision::Keep {
                partition_key: Some("true".to_string())
            }
        );
    }

    #[test]
    fn a_missing_empty_or_structured_key_value_leaves_the_pipeline_key() {
        let data = fixture();
        assert_eq!(filter(&[("key", "/log_type")]).decide(&data[0]), KEEP);
        assert_eq!(filter(&[("key", "/comment")]).decide(&data[1]), KEEP);
        assert_eq!(filter(&[("key", "/meta")]).decide(&data[0]), KEEP);
    }

    #[test]
    fn with_only_a_key_data_that_is_not_json_passes_with_the_pipeline_key() {
        assert_eq!(filter(&[("key", "/wiki")]).decide("plain text"), KEEP);
    }

    #[test]
    fn a_predicate_without_a_pointer_is_refused_with_its_text() {
        let err = refusal(&[("where", "wiki=enwiki")]);
        assert!(err.contains("`wiki=enwiki`"), "{err}");
        assert!(err.contains("JSON pointer"), "{err}");
    }

    #[test]
    fn a_predicate_without_an_operator_is_refused_with_its_text() {
        let err = refusal(&[("where", "/wiki")]);
        assert!(err.contains("`/wiki`"), "{err}");
        assert!(err.contains("no operator"), "{err}");
        let err = refusal(&[("where", "/wiki contains en")]);
        assert!(err.contains("unknown operator at `contains en`"), "{err}");
    }

    #[test]
    fn an_ordering_predicate_without_a_number_is_refused_with_its_text() {
        let err = refusal(&[("where", "/length/new>big")]);
        assert!(err.contains("`/length/new>big`"), "{err}");
        assert!(err.contains("`big` is not a number"), "{err}");
    }

    #[test]
    fn an_in_predicate_with_an_empty_item_is_refused() {
        let err = refusal(&[("where", "/type in edit,,new")]);
        assert!(err.contains("`/type in edit,,new`"), "{err}");
        let err = refusal(&[("where", "/type in")]);
        assert!(err.contains("`/type in`"), "{err}");
    }

    #[test]
    fn a_bad_pointer_escape_is_refused() {
        let err = refusal(&[("where", "/a~2b=c")]);
        assert!(err.contains("`~0` for `~`"), "{err}");
        let err = refusal(&[("key", "meta/domain")]);
        assert!(err.contains("`key=meta/domain`"), "{err}");
    }

    #[test]
    fn a_stream_must_be_a_kinesis_stream_name() {
        assert!(filter(&[("stream", "enwiki-edits")]).stream.is_some());
        let err = refusal(&[("stream", "bad/name")]);
        assert!(err.contains("`stream=bad/name`"), "{err}");
    }

    #[test]
    fn an_unknown_configuration_key_is_refused() {
        let err = refusal(&[("wher", "/wiki=enwiki")]);
        assert!(err.contains("`wher`"), "{err}");
    }
}
