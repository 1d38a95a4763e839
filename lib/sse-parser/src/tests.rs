use super::*;
use alloc::string::ToString;
use alloc::vec;

fn ev(event_type: &str, data: &str, id: &str) -> Item {
    Item::Event(Event {
        event_type: event_type.to_string(),
        data: data.to_string(),
        id: id.to_string(),
        retry: None,
    })
}

fn msg(data: &str) -> Item {
    ev("message", data, "")
}

fn feed_chunks_with(parser: &mut Parser, chunks: &[&[u8]]) -> Vec<Item> {
    let mut items = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut |item| items.push(item));
    }
    parser.finish(&mut |item| items.push(item));
    items
}

fn parse_chunks(chunks: &[&[u8]]) -> Vec<Item> {
    feed_chunks_with(&mut Parser::default(), chunks)
}

fn parse(input: &[u8]) -> Vec<Item> {
    parse_chunks(&[input])
}

/// Parses `input` whole, one byte at a time, and at every single split
/// point, checking all give the same result; returns it.
fn parse_all_splits(input: &[u8]) -> Vec<Item> {
    let whole = parse(input);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(parse_chunks(&bytes), whole, "byte by byte");
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(parse_chunks(&[a, b]), whole, "split at {i}");
    }
    whole
}

fn small(max_event_bytes: usize) -> Parser {
    Parser::new(ParserConfig {
        max_event_bytes,
        ..ParserConfig::default()
    })
}

#[test]
fn default_max_event_bytes_is_four_mebibytes() {
    assert_eq!(ParserConfig::default().max_event_bytes, 4 * 1024 * 1024);
}

#[test]
fn data_line_then_blank_line_dispatches_a_message() {
    assert_eq!(parse_all_splits(b"data: hello\n\n"), vec![msg("hello")]);
}

#[test]
fn lf_crlf_and_cr_all_end_lines() {
    assert_eq!(
        parse_all_splits(b"data: a\ndata: b\r\ndata: c\rdata: d\n\r\n"),
        vec![msg("a\nb\nc\nd")]
    );
}

#[test]
fn crlf_split_across_chunks_is_one_line_end() {
    assert_eq!(
        parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]),
        vec![msg("a\nb")]
    );
}

#[test]
fn cr_at_chunk_end_dispatches_without_waiting_for_the_next_chunk() {
    let mut parser = Parser::default();
    let mut items = Vec::new();
    parser.feed(b"data: a\r\r", &mut |i| items.push(i));
    assert_eq!(items, vec![msg("a")]);
}

#[test]
fn empty_chunk_between_cr_and_lf_keeps_them_one_line_end() {
    assert_eq!(
        parse_chunks(&[b"data: a\r", b"", b"", b"\ndata: b\n\n"]),
        vec![msg("a\nb")]
    );
}

#[test]
fn lf_then_cr_are_two_line_ends() {
    assert_eq!(
        parse_all_splits(b"data: a\n\rdata: b\n\n"),
        vec![msg("a"), msg("b")]
    );
}

#[test]
fn lone_cr_at_end_of_stream_ends_the_line() {
    assert_eq!(parse_all_splits(b"data: a\r\r"), vec![msg("a")]);
}

#[test]
fn incomplete_event_at_end_of_stream_is_discarded() {
    assert_eq!(parse_all_splits(b"data: a\n\ndata: b\n"), vec![msg("a")]);
    assert_eq!(parse_all_splits(b"data: a\n\ndata: b"), vec![msg("a")]);
}

#[test]
fn comment_lines_are_ignored() {
    assert_eq!(
        parse_all_splits(b": hi\ndata: a\n:\n: data: b\n\n"),
        vec![msg("a")]
    );
}

#[test]
fn blank_line_with_empty_data_buffer_dispatches_nothing_and_resets_type() {
    assert_eq!(parse_all_splits(b"event: x\n\ndata: a\n\n"), vec![msg("a")]);
}

#[test]
fn data_line_with_empty_value_dispatches_an_empty_message() {
    assert_eq!(parse_all_splits(b"data\n\n"), vec![msg("")]);
    assert_eq!(parse_all_splits(b"data:\n\n"), vec![msg("")]);
    assert_eq!(parse_all_splits(b"data\ndata\n\n"), vec![msg("\n")]);
}

#[test]
fn only_one_leading_space_is_removed_from_the_value() {
    assert_eq!(
        parse_all_splits(b"event:  t\ndata:  a \ndata:\tb\ndata:c\n\n"),
        vec![ev(" t", " a \n\tb\nc", "")]
    );
}

#[test]
fn value_is_everything_after_the_first_colon() {
    assert_eq!(parse_all_splits(b"data: a:b: c\n\n"), vec![msg("a:b: c")]);
}

#[test]
fn line_without_colon_is_a_field_name_with_empty_value() {
    assert_eq!(
        parse_all_splits(b"event: x\nevent\ndata\n\n"),
        vec![msg("")]
    );
}

#[test]
fn field_names_are_case_sensitive_and_exact() {
    assert_eq!(
        parse_all_splits(b"Data: x\n data: x\ndata : x\ndatax: x\ndat: x\ndata: y\n\n"),
        vec![msg("y")]
    );
}

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(
        parse_all_splits(b"foo: bar\nretryx: 5\nidentity: 3\ndata: a\n\n"),
        vec![msg("a")]
    );
}

#[test]
fn event_field_sets_the_type_and_last_one_wins() {
    assert_eq!(
        parse_all_splits(b"event: a\nevent: b\ndata: x\n\ndata: y\n\n"),
        vec![ev("b", "x", ""), msg("y")]
    );
}

#[test]
fn empty_event_type_means_message() {
    assert_eq!(
        parse_all_splits(b"event: a\nevent:\ndata: x\n\n"),
        vec![msg("x")]
    );
}

#[test]
fn id_persists_across_events_until_changed() {
    assert_eq!(
        parse_all_splits(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n"),
        vec![ev("message", "a", "1"), ev("message", "b", "1"), msg("c")]
    );
}

#[test]
fn id_containing_nul_is_ignored() {
    let mut parser = Parser::default();
    let items = feed_chunks_with(&mut parser, &[b"id: 1\nid: 2\0x\ndata: a\n\n"]);
    assert_eq!(items, vec![ev("message", "a", "1")]);
    assert_eq!(parser.last_event_id(), "1");
}

#[test]
fn id_only_block_sets_last_event_id_without_an_event() {
    let mut parser = Parser::default();
    let items = feed_chunks_with(&mut parser, &[b"id: 42\n\n"]);
    assert!(items.is_empty());
    assert_eq!(parser.last_event_id(), "42");
}

#[test]
fn last_event_id_is_committed_only_at_the_blank_line() {
    let mut parser = Parser::default();
    parser.feed(b"id: 1\n\nid: 2\ndata: x\n", &mut |_| {});
    assert_eq!(parser.last_event_id(), "1");
    parser.finish(&mut |_| {});
    assert_eq!(parser.last_event_id(), "1");
}

#[test]
fn unfinished_block_id_does_not_leak_into_the_next_connection() {
    let mut parser = Parser::default();
    feed_chunks_with(&mut parser, &[b"id: 1\n\nid: 2\ndata: x\n"]);
    let items = feed_chunks_with(&mut parser, &[b"data: y\n\n"]);
    assert_eq!(items, vec![ev("message", "y", "1")]);
}

#[test]
fn set_last_event_id_restores_a_checkpoint() {
    let mut parser = Parser::default();
    parser.set_last_event_id("abc");
    assert_eq!(parser.last_event_id(), "abc");
    let items = feed_chunks_with(&mut parser, &[b"data: x\n\n"]);
    assert_eq!(items, vec![ev("message", "x", "abc")]);
}

#[test]
fn retry_with_ascii_digits_sets_reconnection_time_and_is_reported_once() {
    let mut parser = Parser::default();
    let items = feed_chunks_with(&mut parser, &[b"retry: 1500\ndata: a\n\ndata: b\n\n"]);
    let mut first = Event {
        event_type: "message".to_string(),
        data: "a".to_string(),
        id: String::new(),
        retry: Some(1500),
    };
    assert_eq!(items[0], Item::Event(first.clone()));
    first.data = "b".to_string();
    first.retry = None;
    assert_eq!(items[1], Item::Event(first));
    assert_eq!(parser.retry_ms(), Some(1500));
}

#[test]
fn malformed_retry_values_are_ignored() {
    let mut parser = Parser::default();
    feed_chunks_with(
        &mut parser,
        &[b"retry: 7\n\nretry\nretry:\nretry: \nretry: +5\nretry: -1\nretry: 1 \nretry: 1.5\nretry:  5\n\n"],
    );
    assert_eq!(parser.retry_ms(), Some(7));
}

#[test]
fn retry_overflowing_u64_is_ignored_without_panicking() {
    let mut parser = Parser::default();
    feed_chunks_with(
        &mut parser,
        &[b"retry: 18446744073709551615\n\nretry: 18446744073709551616\n\n"],
    );
    assert_eq!(parser.retry_ms(), Some(u64::MAX));
}

#[test]
fn retry_in_earlier_block_is_reported_on_the_next_event() {
    let items = parse(b"retry: 5\n\ndata: a\n\n");
    assert!(matches!(
        &items[..],
        [Item::Event(Event { retry: Some(5), .. })]
    ));
}

#[test]
fn bom_is_stripped_at_stream_start() {
    assert_eq!(parse_all_splits(b"\xEF\xBB\xBFdata: a\n\n"), vec![msg("a")]);
}

#[test]
fn bom_split_over_chunks_is_stripped() {
    assert_eq!(
        parse_chunks(&[b"\xEF", b"", b"\xBB", b"\xBF", b"data: a\n\n"]),
        vec![msg("a")]
    );
}

#[test]
fn bom_is_only_stripped_once() {
    // The second BOM becomes part of the first field name: "\u{FEFF}data".
    assert_eq!(
        parse_all_splits(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n"),
        vec![msg("b")]
    );
}

#[test]
fn partial_bom_is_ordinary_input() {
    // EF BB then 'x': not a BOM; the bytes decode to one U+FFFD in a field
    // name, so the first line is ignored.
    assert_eq!(
        parse_all_splits(b"\xEF\xBBdata: a\n\ndata: b\n\n"),
        vec![msg("b")]
    );
    assert_eq!(parse_all_splits(b"\xEF\xBB"), vec![]);
}

#[test]
fn bom_in_the_middle_of_the_stream_is_kept() {
    assert_eq!(
        parse_all_splits(b"data: \xEF\xBB\xBFa\n\n"),
        vec![msg("\u{FEFF}a")]
    );
}

#[test]
fn bom_is_stripped_again_after_finish() {
    let mut parser = Parser::default();
    feed_chunks_with(&mut parser, &[b"\xEF\xBB\xBFdata: a\n\n"]);
    let items = feed_chunks_with(&mut parser, &[b"\xEF\xBB", b"\xBFdata: b\n\n"]);
    assert_eq!(items, vec![msg("b")]);
}

#[test]
fn invalid_utf8_becomes_replacement_characters() {
    assert_eq!(
        parse_all_splits(b"data: a\xE2\x82\ndata: \xF0\x9F\x98A\xED\xA0\x80\n\n"),
        vec![msg("a\u{FFFD}\n\u{FFFD}A\u{FFFD}\u{FFFD}\u{FFFD}")]
    );
}

#[test]
fn multibyte_characters_split_across_chunks_decode_correctly() {
    assert_eq!(
        parse_all_splits("event: é\nid: ☃\ndata: a😀b\n\n".as_bytes()),
        vec![ev("é", "a😀b", "☃")]
    );
}

#[test]
fn nul_is_kept_in_data_and_event_type() {
    assert_eq!(
        parse_all_splits(b"event: a\0b\ndata: \0\n\n"),
        vec![ev("a\0b", "\0", "")]
    );
}

#[test]
fn finish_resets_partial_line_and_buffers() {
    let mut parser = Parser::default();
    feed_chunks_with(&mut parser, &[b"event: t\ndata: a\ndata: par"]);
    let items = feed_chunks_with(&mut parser, &[b"tial\n\ndata: b\n\n"]);
    // "tial" is an unknown field of the new connection.
    assert_eq!(items, vec![msg("b")]);
}

#[test]
fn finish_forgets_a_cr_from_the_previous_connection() {
    let mut parser = Parser::default();
    feed_chunks_with(&mut parser, &[b"data: a\r"]);
    let items = feed_chunks_with(&mut parser, &[b"\ndata: b\n\n"]);
    assert_eq!(items, vec![msg("b")]);
}

#[test]
fn oversized_event_is_dropped_and_the_next_event_is_delivered() {
    let mut parser = small(16);
    let items = feed_chunks_with(
        &mut parser,
        &[b"data: 0123456789\ndata: 0123456789\ndata: more\n\ndata: ok\n\n"],
    );
    assert_eq!(items.len(), 2);
    assert!(matches!(items[0], Item::Oversized { discarded_bytes } if discarded_bytes > 16));
    assert_eq!(items[1], msg("ok"));
    assert_eq!(parser.oversized_events(), 1);
}

#[test]
fn oversized_event_is_detected_the_same_way_at_every_split() {
    let input = b"data: 0123456789\ndata: 0123456789\nid: x\n\ndata: ok\n\n";
    let reference = feed_chunks_with(&mut small(16), &[input]);
    assert_eq!(reference.len(), 2);
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        let items = feed_chunks_with(&mut small(16), &[a, b]);
        assert_eq!(items.len(), 2, "split at {i}");
        assert!(matches!(items[0], Item::Oversized { .. }), "split at {i}");
        assert_eq!(items[1], msg("ok"), "split at {i}");
    }
}

#[test]
fn single_over_long_line_is_oversized() {
    let mut parser = small(16);
    let items = feed_chunks_with(
        &mut parser,
        &[b"data: 01234567890123456789\n\ndata: ok\n\n"],
    );
    assert!(matches!(items[0], Item::Oversized { .. }));
    assert_eq!(items[1], msg("ok"));
}

#[test]
fn oversized_is_emitted_only_once_per_event() {
    let mut parser = small(8);
    let mut items = Vec::new();
    for _ in 0..100 {
        parser.feed(b"data: 0123456789\n", &mut |i| items.push(i));
    }
    parser.feed(b"\ndata: ok\n\n", &mut |i| items.push(i));
    assert_eq!(items.len(), 2);
    assert_eq!(parser.oversized_events(), 1);
    assert_eq!(items[1], msg("ok"));
}

#[test]
fn fields_before_the_overflow_keep_their_effect() {
    let mut parser = small(16);
    let items = feed_chunks_with(
        &mut parser,
        &[b"id: 7\nretry: 30\ndata: 0123456789abcdef\nid: 8\n\ndata: ok\n\n"],
    );
    assert_eq!(parser.last_event_id(), "7");
    assert_eq!(parser.retry_ms(), Some(30));
    assert_eq!(
        items[1],
        Item::Event(Event {
            event_type: "message".to_string(),
            data: "ok".to_string(),
            id: "7".to_string(),
            retry: Some(30),
        })
    );
}

#[test]
fn huge_line_without_newline_fed_in_many_chunks_does_not_grow_memory() {
    let limit = 1024;
    let mut parser = small(limit);
    let mut items = Vec::new();
    parser.feed(b"data: ", &mut |i| items.push(i));
    let chunk = [b'x'; 100];
    for _ in 0..10_000 {
        parser.feed(&chunk, &mut |i| items.push(i));
        assert!(parser.buffered_capacity() <= 2 * limit);
    }
    assert_eq!(items.len(), 1);
    parser.feed(b"\n\ndata: ok\n\n", &mut |i| items.push(i));
    assert_eq!(items[1], msg("ok"));
    assert!(parser.buffered_capacity() <= 2 * limit);
}

#[test]
fn many_data_lines_do_not_grow_the_data_buffer_past_the_limit() {
    let limit = 1000;
    let mut parser = small(limit);
    let mut count = 0;
    for _ in 0..1000 {
        parser.feed(b"data: 0123456789\n", &mut |_| count += 1);
        assert!(parser.buffered_capacity() <= limit + 64);
    }
    assert_eq!(count, 1);
}

#[test]
fn huge_comment_and_unknown_field_lines_are_not_buffered_nor_oversized() {
    let limit = 64;
    let mut parser = small(limit);
    let mut items = Vec::new();
    parser.feed(b"data: a\n:", &mut |i| items.push(i));
    for _ in 0..1000 {
        parser.feed(&[b'c'; 100], &mut |i| items.push(i));
    }
    parser.feed(b"\nunknownfield", &mut |i| items.push(i));
    for _ in 0..1000 {
        parser.feed(&[b'u'; 100], &mut |i| items.push(i));
    }
    parser.feed(b"\n\n", &mut |i| items.push(i));
    assert_eq!(items, vec![msg("a")]);
    assert_eq!(parser.oversized_events(), 0);
    assert!(parser.buffered_capacity() <= 2 * limit);
}

#[test]
fn oversized_event_cut_off_by_end_of_stream_does_not_swallow_the_next_connection() {
    let mut parser = small(8);
    let first = feed_chunks_with(&mut parser, &[b"data: 0123456789\n"]);
    assert_eq!(first.len(), 1);
    let second = feed_chunks_with(&mut parser, &[b"data: ok\n\n"]);
    assert_eq!(second, vec![msg("ok")]);
}

#[test]
fn buffers_are_reused_across_events() {
    let mut parser = Parser::default();
    parser.feed(b"event: tick\ndata: 0123456789\n\n", &mut |_| {});
    let capacity = parser.buffered_capacity();
    for _ in 0..1000 {
        parser.feed(b"event: tick\ndata: 0123456789\n\n", &mut |_| {});
    }
    assert_eq!(parser.buffered_capacity(), capacity);
}

#[test]
fn one_byte_chunks_of_a_long_line_are_linear() {
    // 200k one-byte feeds of one line; quadratic rescanning would time out.
    let mut parser = Parser::default();
    let mut items = Vec::new();
    parser.feed(b"data: ", &mut |i| items.push(i));
    for _ in 0..200_000 {
        parser.feed(b"y", &mut |i| items.push(i));
    }
    parser.feed(b"\n\n", &mut |i| items.push(i));
    assert!(matches!(&items[..], [Item::Event(e)] if e.data.len() == 200_000));
}

fn ids_up_to(max_id_bytes: usize) -> Parser {
    Parser::new(ParserConfig {
        max_id_bytes,
        ..ParserConfig::default()
    })
}

fn feed_all(parser: &mut Parser, input: &[u8]) -> Vec<Item> {
    let mut items = Vec::new();
    parser.feed(input, &mut |item| items.push(item));
    items
}

fn event_ids(items: &[Item]) -> Vec<&str> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Event(event) => Some(event.id.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn default_max_id_bytes_is_four_kibibytes() {
    assert_eq!(ParserConfig::default().max_id_bytes, 4096);
}

#[test]
fn an_event_with_a_too_long_id_is_delivered_without_it_and_the_last_fitting_id_stays() {
    let mut parser = ids_up_to(8);
    let items = feed_all(
        &mut parser,
        b"id: 1\ndata: a\n\nid: 123456789\ndata: b\n\ndata: c\n\nid: 3\ndata: d\n\n",
    );
    assert_eq!(
        items
            .iter()
            .filter(|item| matches!(item, Item::OversizedId { id_bytes: 9 }))
            .count(),
        1,
        "{items:?}"
    );
    // b has the refused id, c follows it without an id field: neither can be resumed from.
    assert_eq!(event_ids(&items), vec!["1", "", "", "3"]);
    assert_eq!(parser.last_event_id(), "3");
}

#[test]
fn a_reconnect_after_a_too_long_id_resumes_from_the_last_id_that_fit() {
    let mut parser = ids_up_to(8);
    let items = feed_all(
        &mut parser,
        b"id: 7\ndata: a\n\nid: far-too-long\ndata: b\n\n",
    );
    assert_eq!(event_ids(&items), vec!["7", ""]);
    assert_eq!(parser.last_event_id(), "7");
}

#[test]
fn an_id_of_exactly_the_limit_is_kept() {
    let mut parser = ids_up_to(8);
    let items = feed_all(&mut parser, b"id: 12345678\ndata: a\n\n");
    assert_eq!(event_ids(&items), vec!["12345678"]);
    assert_eq!(parser.last_event_id(), "12345678");
}

#[test]
fn a_mebibyte_id_is_refused_whole_at_every_split() {
    let mut input = b"id: ".to_vec();
    input.extend(core::iter::repeat_n(b'x', 1 << 20));
    input.extend_from_slice(b"\ndata: a\n\nid: 2\ndata: b\n\n");
    let mut parser = Parser::default();
    let items = feed_all(&mut parser, &input);
    assert_eq!(event_ids(&items), vec!["", "2"]);
    for split in [3, 1000, 1 << 19, input.len() - 3] {
        let mut parser = Parser::default();
        let mut items = Vec::new();
        parser.feed(&input[..split], &mut |item| items.push(item));
        parser.feed(&input[split..], &mut |item| items.push(item));
        assert_eq!(event_ids(&items), vec!["", "2"], "split at {split}");
    }
}
