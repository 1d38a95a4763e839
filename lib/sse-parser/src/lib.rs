//! Incremental parser for `text/event-stream` (Server-Sent Events), following
//! WHATWG HTML §9.2.5 "Parsing an event stream" and §9.2.6 "Interpreting an
//! event stream" exactly.
//!
//! The parser is push-based: bytes arrive in arbitrary chunks through
//! [`Parser::feed`], and every dispatched event is handed to a callback as
//! [`Item::Event`]. The result never depends on how the stream is split into
//! chunks (a CR at the end of one chunk followed by an LF at the start of the
//! next is one line end; a BOM or a UTF-8 sequence may be split anywhere).
//!
//! # Performance
//!
//! Complete lines are parsed straight out of the caller's chunk; only a
//! trailing partial line is copied into an internal buffer. `data` values are
//! accumulated as raw bytes and decoded once per event. Comment lines and
//! lines whose field name cannot be `data`, `event`, `id` or `retry` are never
//! buffered, however long they are.
//!
//! # Bounded memory
//!
//! An event whose size exceeds [`ParserConfig::max_event_bytes`] is dropped,
//! see [`Item::Oversized`]. No internal buffer grows past that limit.
//!
//! # UTF-8
//!
//! §9.2.6 says "Streams must be decoded using the UTF-8 decode algorithm"
//! (Encoding Standard: invalid sequences become U+FFFD with maximal-subpart
//! semantics, the same as [`String::from_utf8_lossy`]). The parser works on
//! bytes and decodes each field value on its own; this is equivalent to
//! decoding the whole stream first because the bytes the parser looks at (CR,
//! LF, `:`, space, NUL) are ASCII, and an ASCII byte always ends an invalid
//! sequence, so no replacement character can span them.

#![no_std]

extern crate alloc;

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

/// One dispatched event (§9.2.6 "dispatch the event", steps 4–6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event type: the event type buffer, or `"message"` when it is empty.
    pub event_type: String,
    /// The data buffer with its trailing LF removed.
    pub data: String,
    /// The last event ID string at dispatch time (`lastEventId`); persists
    /// across events until an `id` field changes it.
    pub id: String,
    /// `Some(ms)` exactly when a valid `retry` line was processed since the
    /// previous dispatched event (the last such value). The spec only has a
    /// stream-wide reconnection time ([`Parser::retry_ms`]); this per-event
    /// view is a convention that lets consumers react when it changes.
    pub retry: Option<u64>,
}

/// What [`Parser::feed`] hands to its callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A dispatched event.
    Event(Event),
    /// An event grew beyond [`ParserConfig::max_event_bytes`] and was dropped.
    ///
    /// Emitted once, at the moment the limit is crossed. The parser then
    /// skips every line up to and including the next blank line and carries
    /// on normally. Fields processed before the limit was crossed keep their
    /// effect: an `id` seen earlier in the block becomes the last event ID
    /// string when the closing blank line arrives (as with a dispatch of an
    /// event with no data), a valid `retry` seen earlier has already set the
    /// reconnection time (and is reported on the next dispatched event).
    /// Lines after the crossing point, including `id` and `retry`, are not
    /// processed.
    Oversized {
        /// Bytes of the dropped event seen when the limit was crossed (data
        /// buffer plus the current line so far). A lower bound: the rest of
        /// the event is skipped without being counted.
        discarded_bytes: usize,
    },
    /// An `id` field longer than [`ParserConfig::max_id_bytes`] was read.
    ///
    /// The event it belongs to is still dispatched, but with an empty `id`:
    /// an id that cannot be kept cannot be resumed from or de-duplicated on.
    /// [`Parser::last_event_id`] stays the last id that fit, so a reconnect
    /// resumes from there (the server may then send the events after it
    /// again). Events without an `id` field that follow carry the empty id
    /// too, until an `id` that fits arrives.
    OversizedId {
        /// Length of the refused id value.
        id_bytes: usize,
    },
}

/// Parser settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserConfig {
    /// Upper bound on the size of one event: the data buffer (values plus
    /// their LFs) plus the line being read, for lines that affect the event
    /// (`data`, `event`, `id`, `retry`). Comments and ignored fields do not
    /// count. Default: 4 MiB.
    pub max_event_bytes: usize,
    /// Longest `id` value kept as the last event ID; a longer one is reported
    /// ([`Item::OversizedId`]) and not used. Default: [`DEFAULT_MAX_ID_BYTES`].
    pub max_id_bytes: usize,
}

/// The default longest id: 4 KiB. An id travels back to the server as the
/// `Last-Event-ID` request header (servers commonly refuse header lines past
/// 8 KiB), is kept in checkpoints (a DynamoDB item holds at most 400 KB) and,
/// for de-duplication, once per id run in memory. Real ids are far shorter:
/// Wikimedia's Kafka offsets are about 150 bytes.
pub const DEFAULT_MAX_ID_BYTES: usize = 4096;

impl Default for ParserConfig {
    fn default() -> Self {
        Self {
            max_event_bytes: 4 * 1024 * 1024,
            max_id_bytes: DEFAULT_MAX_ID_BYTES,
        }
    }
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Field names the parser acts on (§9.2.6 "process the field"). All are at
/// most [`MAX_FIELD_NAME`] bytes long.
const KNOWN_FIELDS: [&[u8]; 4] = [b"data", b"event", b"id", b"retry"];
const MAX_FIELD_NAME: usize = 5;

/// State of the partial line held between chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partial {
    /// No partial line: the next byte starts a new line.
    None,
    /// A few bytes that are a prefix of a known field name; kept in `line`.
    Undecided,
    /// A line for a known field; kept in `line`.
    Keep,
    /// A non-empty line that will be ignored (comment, unknown field, or a
    /// line of an oversized event); its bytes are dropped.
    Discard,
}

/// Incremental `text/event-stream` parser. See the crate docs.
#[derive(Debug, Clone)]
pub struct Parser {
    config: ParserConfig,

    // Per-connection state, reset by `finish`.
    /// The leading BOM has been dealt with (stripped or found absent).
    bom_done: bool,
    /// Bytes of a possible BOM matched so far, split across chunks.
    bom_matched: usize,
    /// The previous chunk ended in CR, which already ended a line; an LF at
    /// the start of the next chunk belongs to that line end.
    skip_lf: bool,
    partial: Partial,
    /// Bytes of the partial line (states `Undecided` and `Keep`).
    line: Vec<u8>,
    /// The data buffer, raw bytes.
    data: Vec<u8>,
    /// The event type buffer, raw bytes.
    event_type: Vec<u8>,
    /// Skipping the rest of an oversized event, up to the next blank line.
    skipping: bool,

    // State kept across connections.
    /// The last event ID buffer, raw bytes.
    id_buf: Vec<u8>,
    /// `id_buf` changed since it was last committed to `last_event_id`.
    id_dirty: bool,
    /// The last event ID string.
    last_event_id: String,
    /// The block being read set an id too long to keep (committed with it).
    id_oversized_pending: bool,
    /// The stream's current id is one too long to keep: events carry `""`.
    id_unusable: bool,
    /// The reconnection time.
    retry: Option<u64>,
    /// A valid `retry` processed since the previous dispatched event.
    pending_retry: Option<u64>,
    oversized: u64,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new(ParserConfig::default())
    }
}

impl Parser {
    /// A parser at the start of a stream, with empty last event ID and no
    /// reconnection time.
    pub fn new(config: ParserConfig) -> Self {
        Self {
            config,
            bom_done: false,
            bom_matched: 0,
            skip_lf: false,
            partial: Partial::None,
            line: Vec::new(),
            data: Vec::new(),
            event_type: Vec::new(),
            skipping: false,
            id_buf: Vec::new(),
            id_dirty: false,
            last_event_id: String::new(),
            id_oversized_pending: false,
            id_unusable: false,
            retry: None,
            pending_retry: None,
            oversized: 0,
        }
    }

    /// Parses the next chunk of the stream, calling `out` for every event
    /// dispatched (and every oversized event dropped) on the way. Lines are
    /// acted on as soon as their end is seen, including a CR at the very end
    /// of `chunk`. Empty chunks are no-ops.
    pub fn feed(&mut self, chunk: &[u8], out: &mut impl FnMut(Item)) {
        let mut input = chunk;
        if !self.bom_done {
            // §9.2.5: "One leading U+FEFF BYTE ORDER MARK character must be
            // ignored if any are present" (also the Encoding Standard's UTF-8
            // decode, which strips a leading EF BB BF). Only at stream start,
            // and the three bytes may arrive in separate chunks.
            let mut i = 0;
            while self.bom_matched < BOM.len() && i < input.len() {
                if input[i] != BOM[self.bom_matched] {
                    break;
                }
                self.bom_matched += 1;
                i += 1;
            }
            if self.bom_matched == BOM.len() {
                self.bom_done = true;
                input = &input[i..];
            } else if i == input.len() {
                // Still a possible BOM: wait for more bytes.
                return;
            } else {
                // Not a BOM: the bytes held back are ordinary input.
                self.bom_done = true;
                let held = self.bom_matched;
                input = &input[i..];
                self.feed_lines(&BOM[..held], out);
            }
        }
        self.feed_lines(input, out);
    }

    /// End of stream. A final CR has already ended its line when it was fed.
    /// §9.2.6: "Once the end of the file is reached, any pending data must be
    /// discarded. (If the file ends in the middle of an event, before the
    /// final empty line, the incomplete event is not dispatched.)" So the
    /// unterminated last line, the data and event type buffers, and an `id`
    /// of the unfinished block are dropped.
    ///
    /// Resets the per-connection state (BOM check, partial line, buffers) so
    /// the parser can be reused for the next connection; keeps
    /// [`last_event_id`](Self::last_event_id), [`retry_ms`](Self::retry_ms),
    /// a retry not yet reported on an event, and the oversized counter. The
    /// callback is currently never called; it is there so end-of-stream
    /// behaviour can evolve without an API change.
    pub fn finish(&mut self, out: &mut impl FnMut(Item)) {
        let _ = out;
        self.bom_done = false;
        self.bom_matched = 0;
        self.skip_lf = false;
        self.partial = Partial::None;
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.skipping = false;
        self.id_oversized_pending = false;
        if self.id_dirty {
            self.id_buf.clear();
            self.id_buf.extend_from_slice(self.last_event_id.as_bytes());
            self.id_dirty = false;
        }
    }

    /// The last event ID string (§9.2.6 dispatch step 1): the last event ID
    /// buffer as of the last blank line. An `id` line of a block that has not
    /// ended yet is not reflected here.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Restores the last event ID string and buffer (e.g. from a checkpoint).
    pub fn set_last_event_id(&mut self, id: &str) {
        id.clone_into(&mut self.last_event_id);
        self.id_buf.clear();
        self.id_buf.extend_from_slice(id.as_bytes());
        self.id_dirty = false;
        self.id_oversized_pending = false;
        self.id_unusable = false;
    }

    /// The reconnection time in milliseconds: the last valid `retry` value,
    /// `None` if the server never sent one.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry
    }

    /// How many events were dropped for exceeding `max_event_bytes`.
    pub fn oversized_events(&self) -> u64 {
        self.oversized
    }

    /// §9.2.5: "The stream must then be parsed by reading everything line by
    /// line, with a U+000D CARRIAGE RETURN U+000A LINE FEED (CRLF) character
    /// pair, a single U+000A LINE FEED (LF) character not preceded by a
    /// U+000D CARRIAGE RETURN (CR) character, and a single U+000D CARRIAGE
    /// RETURN (CR) character not followed by a U+000A LINE FEED (LF) character
    /// being the ways in which a line can end."
    ///
    /// A CR ends its line at once; an LF right after it (in this chunk or at
    /// the start of the next) is then skipped, so CRLF is one line end.
    fn feed_lines<F: FnMut(Item)>(&mut self, mut input: &[u8], out: &mut F) {
        if input.is_empty() {
            return;
        }
        if self.skip_lf {
            self.skip_lf = false;
            if input[0] == b'\n' {
                input = &input[1..];
            }
        }
        while let Some(i) = memchr::memchr2(b'\r', b'\n', input) {
            let terminator = input[i];
            if self.partial == Partial::None {
                self.process_line(&input[..i], out);
            } else {
                self.append_partial(&input[..i], out);
                self.end_partial_line(out);
            }
            input = &input[i + 1..];
            if terminator == b'\r' {
                match input.first() {
                    None => self.skip_lf = true,
                    Some(b'\n') => input = &input[1..],
                    Some(_) => {}
                }
            }
        }
        self.append_partial(input, out);
    }

    /// Adds bytes to the unterminated current line, buffering them only if
    /// the line can affect the event.
    fn append_partial<F: FnMut(Item)>(&mut self, bytes: &[u8], out: &mut F) {
        if bytes.is_empty() || self.partial == Partial::Discard {
            return;
        }
        if self.partial != Partial::Keep {
            // The line is not empty, so it is not a blank line. Decide from
            // its first bytes whether it can matter.
            let state = if self.skipping {
                Partial::Discard
            } else {
                classify(&self.line, bytes)
            };
            self.partial = state;
            if state == Partial::Discard {
                self.line.clear();
                return;
            }
        }
        let size = self.data.len() + self.line.len() + bytes.len();
        if size > self.config.max_event_bytes {
            self.line.clear();
            self.partial = Partial::Discard;
            self.oversize(size, out);
            return;
        }
        reserve_bounded(&mut self.line, bytes.len(), self.config.max_event_bytes);
        self.line.extend_from_slice(bytes);
    }

    /// The partial line just got its line end.
    fn end_partial_line<F: FnMut(Item)>(&mut self, out: &mut F) {
        match self.partial {
            // Non-empty and ignored: nothing to do.
            Partial::Discard | Partial::None => {}
            Partial::Undecided | Partial::Keep => {
                let line = core::mem::take(&mut self.line);
                self.process_line(&line, out);
                self.line = line;
                self.line.clear();
            }
        }
        self.partial = Partial::None;
    }

    /// §9.2.6: "the lines must be processed, in the order they are received,
    /// as follows".
    fn process_line<F: FnMut(Item)>(&mut self, line: &[u8], out: &mut F) {
        // §9.2.6: "If the line is empty (a blank line): Dispatch the event".
        if line.is_empty() {
            if self.skipping {
                // End of an oversized event: do what dispatch does for an
                // empty data buffer (steps 1 and 2), emit nothing.
                self.skipping = false;
                self.data.clear();
                self.event_type.clear();
                self.commit_last_event_id();
            } else {
                self.dispatch(out);
            }
            return;
        }
        if self.skipping {
            return;
        }
        // §9.2.6: "If the line starts with a U+003A COLON character (:):
        // Ignore the line."
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            // §9.2.6: "If the line contains a U+003A COLON character (:):
            // Collect the characters on the line before the first U+003A
            // COLON character (:), and let field be that string. Collect the
            // characters on the line after the first U+003A COLON character
            // (:), and let value be that string. If value starts with a
            // U+0020 SPACE character, remove it from value."
            Some(colon) => {
                let value = &line[colon + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                (&line[..colon], value)
            }
            // §9.2.6: "Otherwise, the string is not empty but does not
            // contain a U+003A COLON character (:): Process the field using
            // the steps described below, using the whole line as the field
            // name, and the empty string as the field value."
            None => (line, &b""[..]),
        };
        if !KNOWN_FIELDS.contains(&field) {
            // §9.2.6 "process the field": "Otherwise: The field is ignored."
            return;
        }
        let size = self.data.len() + line.len();
        if size > self.config.max_event_bytes {
            self.oversize(size, out);
            return;
        }
        let max = self.config.max_event_bytes;
        match field {
            // §9.2.6: "If the field name is "event": Set the event type buffer
            // to field value."
            b"event" => {
                self.event_type.clear();
                reserve_bounded(&mut self.event_type, value.len(), max);
                self.event_type.extend_from_slice(value);
            }
            // §9.2.6: "If the field name is "data": Append the field value to
            // the data buffer, then append a single U+000A LINE FEED (LF)
            // character to the data buffer."
            b"data" => {
                reserve_bounded(&mut self.data, value.len() + 1, max);
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            // §9.2.6: "If the field name is "id": If the field value does not
            // contain U+0000 NULL, then set the last event ID buffer to the
            // field value. Otherwise, ignore the field."
            b"id" if memchr::memchr(0, value).is_none() => {
                if value.len() > self.config.max_id_bytes {
                    // Not kept: the last id that fit stays the one to resume from.
                    self.id_oversized_pending = true;
                    out(Item::OversizedId {
                        id_bytes: value.len(),
                    });
                    return;
                }
                self.id_oversized_pending = false;
                self.id_buf.clear();
                reserve_bounded(&mut self.id_buf, value.len(), max);
                self.id_buf.extend_from_slice(value);
                self.id_dirty = true;
            }
            // §9.2.6: "If the field name is "retry": If the field value
            // consists of only ASCII digits, then interpret the field value
            // as an integer in base ten, and set the event stream's
            // reconnection time to that integer. Otherwise, ignore the
            // field." An empty value is not a number. A value too large for
            // u64 cannot be represented: the line is ignored.
            b"retry" => {
                if let Some(ms) = parse_retry(value) {
                    self.retry = Some(ms);
                    self.pending_retry = Some(ms);
                }
            }
            // An `id` containing NUL.
            _ => {}
        }
    }

    /// Drops the current event: it crossed `max_event_bytes`.
    fn oversize<F: FnMut(Item)>(&mut self, size: usize, out: &mut F) {
        self.skipping = true;
        self.data.clear();
        self.event_type.clear();
        self.oversized += 1;
        out(Item::Oversized {
            discarded_bytes: size,
        });
    }

    /// §9.2.6 dispatch step 1: "Set the last event ID string of the event
    /// source to the value of the last event ID buffer. The buffer does not
    /// get reset, so the last event ID string of the event source remains set
    /// to this value until the next time it is set by the server."
    fn commit_last_event_id(&mut self) {
        if self.id_oversized_pending {
            self.id_oversized_pending = false;
            self.id_unusable = true;
        } else if self.id_dirty {
            self.id_unusable = false;
        }
        if self.id_dirty {
            self.last_event_id = decode(&self.id_buf);
            self.id_dirty = false;
        }
    }

    /// §9.2.6 "dispatch the event".
    fn dispatch<F: FnMut(Item)>(&mut self, out: &mut F) {
        // Step 1.
        self.commit_last_event_id();
        // Step 2: "If the data buffer is an empty string, set the data buffer
        // and the event type buffer to the empty string and return."
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        // Step 3: "If the data buffer's last character is a U+000A LINE FEED
        // (LF) character, then remove the last character from the data
        // buffer." (Always true here: every data line appends an LF.)
        let mut data = &self.data[..];
        if let Some(stripped) = data.strip_suffix(b"\n") {
            data = stripped;
        }
        // Steps 4-6: type "message" unless the event type buffer is
        // non-empty; data; lastEventId is the last event ID string.
        let event_type = if self.event_type.is_empty() {
            String::from("message")
        } else {
            decode(&self.event_type)
        };
        let event = Event {
            event_type,
            data: decode(data),
            id: if self.id_unusable {
                String::new()
            } else {
                self.last_event_id.clone()
            },
            retry: self.pending_retry.take(),
        };
        // Step 7: "Set the data buffer and the event type buffer to the empty
        // string."
        self.data.clear();
        self.event_type.clear();
        out(Item::Event(event));
    }

    /// Capacity of all internal buffers, for memory-bound tests.
    #[cfg(test)]
    fn buffered_capacity(&self) -> usize {
        self.line.capacity()
            + self.data.capacity()
            + self.event_type.capacity()
            + self.id_buf.capacity()
    }
}

/// Decides, from the first bytes of a non-empty line (`held` already
/// buffered, followed by `more`), whether the line can matter: it can only if
/// it is not a comment and its field name is (or may still become) one of
/// [`KNOWN_FIELDS`].
fn classify(held: &[u8], more: &[u8]) -> Partial {
    let mut prefix = [0u8; MAX_FIELD_NAME + 1];
    let n = held.len().min(prefix.len());
    prefix[..n].copy_from_slice(&held[..n]);
    let m = more.len().min(prefix.len() - n);
    prefix[n..n + m].copy_from_slice(&more[..m]);
    let prefix = &prefix[..n + m];
    if prefix.first() == Some(&b':') {
        return Partial::Discard;
    }
    match memchr::memchr(b':', prefix) {
        Some(colon) if KNOWN_FIELDS.contains(&&prefix[..colon]) => Partial::Keep,
        Some(_) => Partial::Discard,
        None if KNOWN_FIELDS.iter().any(|f| f.starts_with(prefix)) => Partial::Undecided,
        None => Partial::Discard,
    }
}

/// `retry` value: one or more ASCII digits, fitting in a u64.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// §9.2.6: "Streams must be decoded using the UTF-8 decode algorithm":
/// U+FFFD for invalid sequences, maximal subparts (as `from_utf8_lossy`).
fn decode(bytes: &[u8]) -> String {
    // simdutf8 validates with the CPU's (or WebAssembly's) vector instructions; for valid
    // input it answers as `core::str::from_utf8` does, several times faster.
    match simdutf8::basic::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Reserves room for `additional` more bytes, growing geometrically but never
/// past `limit` (callers guarantee `len + additional <= limit` or accept a
/// capacity of exactly what is needed).
fn reserve_bounded(buf: &mut Vec<u8>, additional: usize, limit: usize) {
    let needed = buf.len() + additional;
    if needed <= buf.capacity() {
        return;
    }
    let target = buf.capacity().saturating_mul(2).max(needed).max(64);
    let target = target.min(limit.max(needed));
    buf.reserve_exact(target - buf.len());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
