//! The SSE parser's throughput inside the sandbox, compiled exactly as the source component
//! compiles it (`wasm32-wasip2`, the `guest` profile). A WASI command: it builds the same
//! Wikimedia-shaped stream as the native bench (`cargo bench -p sse-parser --bench parse`),
//! parses it in 64 KiB chunks as the source reads them, and prints one line per stream.
//!
//! Run: `cargo bench -p sse-ingest --bench guest_parser` (which runs this in wasmtime with
//! the product's engine settings).

use std::time::Instant;

use sse_parser::{Item, Parser, ParserConfig};

const ROUNDS: usize = 5;

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
    let large: String = (0..50)
        .map(|n| format!("id: {n}\ndata: {large_data}\n\n"))
        .collect();
    for (name, input, events) in [
        ("1 KiB events", small.as_bytes(), 50_000),
        ("1 MiB events", large.as_bytes(), 50),
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
