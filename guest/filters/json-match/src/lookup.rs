//! Reads just the values that the predicates and the key point at, in one pass over the
//! document, instead of building a `serde_json::Value` of all of it.
//!
//! A Wikimedia event is 1 KiB of JSON of which a filter looks at one or two fields; building
//! the whole tree allocated every string and map of it and was most of json-match's cost.
//! Here the document is walked with serde_json's deserializer along a tree of the configured
//! pointers: members and elements off the tree are skipped (`IgnoredAny`, which still checks
//! that they are valid JSON), and only the values at the pointers are built.
//!
//! The outcome is the same as `Value::pointer` on the parsed document
//! ([RFC 6901](https://www.rfc-editor.org/rfc/rfc6901)), which the tests check: array
//! indexes as serde_json reads them, and of duplicate members the last one wins.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The configured pointers as a tree of reference tokens.
#[derive(Debug, Clone, Default)]
pub struct Pointers {
    root: Node,
    count: usize,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// The slot of the pointer that ends here, if one does.
    slot: Option<usize>,
    /// The slots of every pointer that ends here or below (cleared when a duplicate member
    /// replaces this one).
    below: Vec<usize>,
    children: Vec<Child>,
}

/// One reference token of a pointer and what lies below it.
#[derive(Debug, Clone)]
struct Child {
    token: String,
    /// The token as an array index, read once when the pointer is added.
    index: Option<usize>,
    node: Node,
}

impl Node {
    fn child(&self, token: &str) -> Option<&Node> {
        self.children
            .iter()
            .find_map(|child| (child.token == token).then_some(&child.node))
    }

    fn element(&self, index: usize) -> Option<&Node> {
        self.children
            .iter()
            .find_map(|child| (child.index == Some(index)).then_some(&child.node))
    }
}

impl Pointers {
    /// Adds a pointer (already checked to start with `/` and escape `~` correctly) and
    /// returns its slot in [`Pointers::lookup`]'s answer; a pointer added twice (a predicate
    /// and the key on one field) has one slot.
    pub fn add(&mut self, pointer: &str) -> usize {
        let tokens: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|token| token.replace("~1", "/").replace("~0", "~"))
            .collect();
        let existing = tokens
            .iter()
            .try_fold(&self.root, |node, token| node.child(token))
            .and_then(|node| node.slot);
        if let Some(slot) = existing {
            return slot;
        }
        let slot = self.count;
        self.count += 1;
        let mut node = &mut self.root;
        node.below.push(slot);
        for token in tokens {
            let at = match node.children.iter().position(|child| child.token == token) {
                Some(at) => at,
                None => {
                    node.children.push(Child {
                        index: array_index(&token),
                        token,
                        node: Node::default(),
                    });
                    node.children.len() - 1
                }
            };
            node = &mut node.children[at].node;
            node.below.push(slot);
        }
        node.slot = Some(slot);
        slot
    }

    /// The value at each pointer (by slot), or `None` where the pointer finds nothing;
    /// `Err` when `data` is not one valid JSON document.
    pub fn lookup(&self, data: &str) -> Result<Vec<Option<Value>>, serde_json::Error> {
        let mut found = vec![None; self.count];
        let mut deserializer = serde_json::Deserializer::from_str(data);
        Walk {
            node: &self.root,
            found: &mut found,
        }
        .deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(found)
    }
}

/// Walks one value along `node`.
struct Walk<'a> {
    node: &'a Node,
    found: &'a mut [Option<Value>],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        for &slot in &self.node.below {
            self.found[slot] = None;
        }
        match self.node.slot {
            // A pointer ends here: build this value; pointers below it are read from it.
            Some(slot) => {
                let value = <Value as serde::Deserialize>::deserialize(deserializer)?;
                fill_below(self.node, &value, self.found);
                self.found[slot] = Some(value);
                Ok(())
            }
            None => deserializer.deserialize_any(self),
        }
    }
}

/// Fills the slots below `node` from `value`, the value at `node`, already built.
fn fill_below(node: &Node, value: &Value, found: &mut [Option<Value>]) {
    for child in &node.children {
        let Some(inner) = step(value, child) else {
            continue;
        };
        if let Some(slot) = child.node.slot {
            found[slot] = Some(inner.clone());
        }
        fill_below(&child.node, inner, found);
    }
}

/// One reference token applied to a value, as `Value::pointer` applies it.
fn step<'v>(value: &'v Value, child: &Child) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(&child.token),
        Value::Array(items) => child.index.and_then(|index| items.get(index)),
        _ => None,
    }
}

/// An array index as serde_json's `Value::pointer` reads it: digits, no `+`, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(child) = map.next_key_seed(Member { node: self.node })? {
            match child {
                Some(node) => map.next_value_seed(Walk {
                    node,
                    found: &mut *self.found,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for index in 0usize.. {
            let more = match self.node.element(index) {
                Some(node) => seq
                    .next_element_seed(Walk {
                        node,
                        found: &mut *self.found,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                break;
            }
        }
        Ok(())
    }

    // A scalar where the pointers go deeper: they find nothing.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A member name, looked up among the node's children without keeping it.
struct Member<'a> {
    node: &'a Node,
}

impl<'de, 'a> DeserializeSeed<'de> for Member<'a> {
    type Value = Option<&'a Node>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'a> Visitor<'_> for Member<'a> {
    type Value = Option<&'a Node>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.node.child(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pointer's value as `Value::pointer` finds it.
    fn expected(data: &str, pointers: &[&str]) -> Vec<Option<Value>> {
        let document: Value = serde_json::from_str(data).expect("JSON");
        pointers
            .iter()
            .map(|p| document.pointer(p).cloned())
            .collect()
    }

    fn looked_up(data: &str, pointers: &[&str]) -> Vec<Option<Value>> {
        let mut tree = Pointers::default();
        let slots: Vec<usize> = pointers.iter().map(|pointer| tree.add(pointer)).collect();
        let found = tree.lookup(data).expect("JSON");
        slots.into_iter().map(|slot| found[slot].clone()).collect()
    }

    #[test]
    fn a_pointer_added_twice_has_one_slot_and_is_found() {
        let mut tree = Pointers::default();
        let first = tree.add("/wiki");
        let other = tree.add("/meta/domain");
        assert_eq!(tree.add("/wiki"), first);
        assert_ne!(first, other);
        let found = tree
            .lookup(r#"{"wiki":"enwiki","meta":{"domain":"en"}}"#)
            .expect("JSON");
        assert_eq!(found.len(), 2);
        assert_eq!(found[first], Some(Value::from("enwiki")));
        assert_eq!(found[other], Some(Value::from("en")));
    }

    #[test]
    fn finds_what_value_pointer_finds_in_every_fixture_event() {
        let fixture =
            include_str!("../../../../tests/fixtures/wikimedia-recentchange-sample.ndjson");
        let pointers = [
            "/meta/domain",
            "/meta",
            "/wiki",
            "/length/new",
            "/length/old",
            "/bot",
            "/namespace",
            "/log_params/0",
            "/missing",
            "/meta/domain/deeper",
            "/title",
        ];
        let mut found = 0;
        for line in fixture.lines() {
            let answer = looked_up(line, &pointers);
            assert_eq!(answer, expected(line, &pointers), "{line}");
            found += answer.iter().filter(|v| v.is_some()).count();
        }
        assert!(found > 500, "the pointers found only {found} values");
    }

    #[test]
    fn arrays_escapes_nesting_and_duplicates_match_value_pointer() {
        let cases = [
            r#"{"a":[10,{"b":[1,2,3]},30]}"#,
            r#"{"a/b":1,"m~n":2,"":3}"#,
            r#"{"a":{"b":1},"a":{"c":2}}"#,
            r#"{"a":{"b":1},"a":5}"#,
            r#"[1,[2,3]]"#,
            r#""text""#,
            r#"{"a":null}"#,
            r#"{"01":1,"a":["x","y"]}"#,
        ];
        let pointers = [
            "/a", "/a/1/b/2", "/a/0", "/a/01", "/a/+1", "/a/b", "/a/c", "/a~1b", "/m~0n", "/",
            "/1/0", "/0", "/01", "/a/1", "/a",
        ];
        for data in cases {
            assert_eq!(
                looked_up(data, &pointers),
                expected(data, &pointers),
                "{data}"
            );
        }
    }

    #[test]
    fn data_that_is_not_one_json_document_is_an_error() {
        let mut tree = Pointers::default();
        tree.add("/a");
        for data in [r#"{"a":1"#, r#"{"a":1} {}"#, "not json", r#"{"b":[1,}"#, ""] {
            assert!(tree.lookup(data).is_err(), "{data}");
        }
    }
}
