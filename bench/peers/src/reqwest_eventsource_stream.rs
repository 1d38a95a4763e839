//! reqwest + `eventsource-stream`: `reqwest-eventsource-stream URL OUT` writes each event's
//! data as a line of OUT and prints the number of events.

use std::io::Write as _;

use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (url, out) = (args.next().ok_or("URL")?, args.next().ok_or("OUT")?);
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(out)?);
    let mut stream = reqwest::get(&url).await?.bytes_stream().eventsource();
    let mut events = 0u64;
    while let Some(event) = stream.next().await {
        let event = event?;
        out.write_all(event.data.as_bytes())?;
        out.write_all(b"\n")?;
        events += 1;
    }
    out.flush()?;
    println!("{events}");
    Ok(())
}
