//! Parser throughput on a Wikimedia-shaped stream (`event`, a long JSON `id`,
//! ~1 KiB of JSON `data`) and on large events, fed in 64 KiB chunks like the
//! source component reads them.
//!
//! Run: `cargo bench -p sse-parser --bench parse`

use std::time::Instant;

use sse_parser::{Item, Parser, ParserConfig};

fn main() {
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
    let large: String = (0..100)
        .map(|n| format!("id: {n}\ndata: {large_data}\n\n"))
        .collect();
    for (name, input, events) in [
        ("1 KiB events", small.as_bytes(), 50_000),
        ("1 MiB events", large.as_bytes(), 100),
    ] {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let mut parser = Parser::new(ParserConfig::default());
            let mut count = 0usize;
            let started = Instant::now();
            for chunk in input.chunks(64 * 1024) {
                parser.feed(chunk, &mut |item| {
                    if let Item::Event(_) = item {
                        count += 1;
                    }
                });
            }
            parser.finish(&mut |_| {});
            best = best.min(started.elapsed().as_secs_f64());
            assert_eq!(count, events);
        }
        println!(
            "{name}: {:.0} MB/s, {:.0} events/s (best of 5, {} MB in 64 KiB chunks)",
            input.len() as f64 / best / 1e6,
            events as f64 / best,
            input.len() / 1_000_000
        );
    }
}
