//! A process that starts many pipelines on a few Kinesis streams describes each stream once:
//! DescribeStreamSummary is limited to 20 calls a second per account, and a fleet that asked
//! once per pipeline would be throttled at every start.

use crate::kinesis_support;
use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use kinesis_support::{Kinesalite, create_stream, read_stream};
use support::outage::OutageGateway;
use support::sse_server::{Response, SseServer, Step};
use support::{run_with_limit, sse_ingest, stderr_of};

const LIMIT: Duration = Duration::from_secs(300);

/// The config file: every pipeline reads the same five events once, into stream `i % 3`.
fn fleet_config(dir: &Path, pipelines: usize, url: &str, endpoint: &str) -> std::path::PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    let mut text = format!(
        "state_dir = {:?}\ncache_dir = {:?}\n\n[defaults]\nonce = true\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n",
        dir.join("state").display().to_string(),
        cache.display().to_string(),
    );
    for n in 0..pipelines {
        text.push_str(&format!(
            "\n[[pipeline]]\nname = \"p{n}\"\nurl = \"{url}\"\nsink = \"kinesis:fleet-{}\"\n",
            n % 3
        ));
    }
    let file = dir.join("sse-ingest.toml");
    std::fs::write(&file, text).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_pipelines_on_three_streams_describe_each_stream_once() {
    const PIPELINES: usize = 200;
    const EVENTS: usize = 5;
    let kinesalite = Kinesalite::start();
    for stream in ["fleet-0", "fleet-1", "fleet-2"] {
        create_stream(&kinesalite.client(), stream, 1).await;
    }
    let target: SocketAddr = kinesalite
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let gateway = OutageGateway::up(target);
    let events: String = (0..EVENTS)
        .map(|n| format!("id: {n}\ndata: {{\"n\":{n}}}\n\n"))
        .collect();
    let server = SseServer::always(Response::stream(vec![Step::Bytes(events.into_bytes())]));
    let dir = tempfile::tempdir().unwrap();
    let file = fleet_config(
        dir.path(),
        PIPELINES,
        &server.url("/s"),
        &gateway.endpoint(),
    );
    let mut command = sse_ingest();
    command.args(["run", "--config"]).arg(&file);
    support::local_aws_credentials(&mut command);
    let output = tokio::task::spawn_blocking(move || run_with_limit(&mut command, LIMIT))
        .await
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");

    // Every pipeline wrote its events: the streams hold them all.
    for (stream, pipelines) in [("fleet-0", 67), ("fleet-1", 67), ("fleet-2", 66)] {
        let stored = read_stream(&kinesalite.client(), stream).await;
        assert_eq!(stored.len(), pipelines * EVENTS, "{stream}");
    }
    assert_eq!(
        gateway.describe_calls(),
        3,
        "one DescribeStreamSummary per stream, not one per pipeline"
    );
}
