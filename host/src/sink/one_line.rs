//! One record, one line, in the file and stdout sinks.
//!
//! SSE data may span lines (`data: a` then `data: b` is the data `a\nb`), and a filter may
//! emit any bytes. A newline-delimited file where one record can become two lines would
//! silently split records for every reader (Firehose, `jq`, `wc -l`). So a record that holds
//! a line break (LF or CR) is rewritten to one line, so that it still means what it meant:
//!
//! - valid JSON (pretty-printed JSON is common in SSE data) is written compactly: the
//!   whitespace between its tokens is dropped, nothing else changes (number text, key order
//!   and string escapes stay exactly as the server sent them; JSON strings cannot hold a raw
//!   line break, so every break is between tokens);
//! - anything else is written as one JSON string (`"a\nb"`), which any JSON reader turns
//!   back into the exact text.
//!
//! Records without a line break, the common case, are written as they are, byte for byte.

use std::borrow::Cow;

/// The record's bytes as one line (without the line's own end).
pub fn one_line(data: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr2(b'\n', b'\r', data).is_none() {
        return Cow::Borrowed(data);
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok() {
        return Cow::Owned(compact_json(data));
    }
    let text = String::from_utf8_lossy(data);
    match serde_json::to_vec(&*text) {
        Ok(quoted) => Cow::Owned(quoted),
        // Serialising a string cannot fail; if it did, escaping the breaks keeps one line.
        Err(_) => Cow::Owned(text.replace('\r', "\\r").replace('\n', "\\n").into_bytes()),
    }
}

/// Valid JSON without the whitespace between its tokens.
fn compact_json(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            out.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'"' => {
                in_string = true;
                out.push(byte);
            }
            _ => out.push(byte),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_without_a_line_break_is_written_as_it_is() {
        let data = b"plain text, \"quotes\" and \\ backslashes";
        assert!(matches!(one_line(data), Cow::Borrowed(_)));
    }

    #[test]
    fn multi_line_json_is_compacted_without_changing_its_tokens() {
        let data = b"{\n  \"a\": 1.50,\n  \"b\": \"x y\\n\\\"z\\\"\",\r\n  \"big\": 12345678901234567890\n}";
        let line = one_line(data);
        assert_eq!(
            &*line,
            b"{\"a\":1.50,\"b\":\"x y\\n\\\"z\\\"\",\"big\":12345678901234567890}".as_slice()
        );
    }

    #[test]
    fn multi_line_text_becomes_a_json_string_of_the_same_text() {
        let line = one_line(b"a\nb\r\nc");
        assert_eq!(&*line, b"\"a\\nb\\r\\nc\"".as_slice());
        let back: String = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, "a\nb\r\nc");
    }

    #[test]
    fn json_that_is_only_almost_valid_is_quoted_not_compacted() {
        let line = one_line(b"{\"a\":\n1,}");
        let back: String = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, "{\"a\":\n1,}");
    }
}
