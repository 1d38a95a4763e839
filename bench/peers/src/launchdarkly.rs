//! LaunchDarkly's `eventsource-client`: `launchdarkly URL OUT` writes each event's data as a
//! line of OUT, without reconnecting, and prints the number of events.

use std::io::Write as _;

use eventsource_client::{self as es, Client as _};
use futures::StreamExt as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (url, out) = (args.next().ok_or("URL")?, args.next().ok_or("OUT")?);
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(out)?);
    let transport = launchdarkly_sdk_transport::HyperTransport::builder().build_http()?;
    let client = es::ClientBuilder::for_url(&url)?
        .reconnect(es::ReconnectOptions::reconnect(false).build())
        .build_with_transport(transport);
    let mut stream = client.stream();
    let mut events = 0u64;
    while let Some(item) = stream.next().await {
        match item {
            Ok(es::SSE::Event(event)) => {
                out.write_all(event.data.as_bytes())?;
                out.write_all(b"\n")?;
                events += 1;
            }
            Ok(_) => {}
            Err(es::Error::Eof) => break,
            Err(error) => return Err(format!("{error:?}").into()),
        }
    }
    out.flush()?;
    println!("{events}");
    Ok(())
}
