//! The parser benchmark's workload, shared by the native bench (`benches/parse.rs`) and the
//! one inside the sandbox (`guest/parser-bench`), so both measure the same thing: a
//! Wikimedia-shaped stream (`event`, a long JSON `id`, ~1 KiB of JSON `data`) and large
//! events, fed in 64 KiB chunks as the source component reads them. Prints a line per stream.

use std::time::Instant;

use sse_parser::{Item, Parser, ParserConfig};

const ROUNDS: usize = 5;

/// Parses 50,000 events of 1 KiB and `large_events` events of 1 MiB, best of 5 each.
pub fn run(large_events: usize) {
    let data = format!(
        "{{\"wiki\":\"enwiki\",\"comment\":\"{}\"}}",
        "x".repeat(1000)
    );
    let small: String = (0..50_000)
        .map(|n| {
            format!(
                "event: message\nid: [{{\"topic\":\"eqiad.mediawiki.recentchange\",\"partition\":0,\"offset\":{n}}}]\ndata: {data}\n\n"
            )
        })
        .collect();
    let large_data = "y".repeat(1024 * 1024);
    let large: String = (0..large_events)
        .map(|n| format!("id: {n}\ndata: {large_data}\n\n"))
        .collect();
    for (name, input, events) in [
        ("1 KiB events", small.as_bytes(), 50_000),
        ("1 MiB events", large.as_bytes(), large_events),
    ] {
        let mut best = f64::MAX;
        for _ in 0..ROUNDS {
            let mut parser = Parser::new(ParserConfig::default());
            let mut count = 0usize;
            let mut bytes = 0usize;
            let started = Instant::now();
            for chunk in input.chunks(64 * 1024) {
                parser.feed(chunk, &mut |item| {
                    if let Item::Event(event) = item {
                        count += 1;
                        bytes += event.data.len();
                    }
                });
            }
            parser.finish(&mut |_| {});
            best = best.min(started.elapsed().as_secs_f64());
            if count != events || bytes == 0 {
                eprintln!("{name}: parsed {count} events, expected {events}");
                std::process::exit(1);
            }
        }
        println!(
            "{name}: {:.0} MB/s, {:.0} events/s (best of {ROUNDS}, {} MB in 64 KiB chunks)",
            input.len() as f64 / best / 1e6,
            events as f64 / best,
            input.len() / 1_000_000
        );
    }
}
