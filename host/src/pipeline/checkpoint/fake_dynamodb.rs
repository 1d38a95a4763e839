//! A fake DynamoDB on 127.0.0.1 for unit tests of the paths dynalite (which the integration
//! tests use) cannot produce: a failed condition that returns the stored item, and heartbeat
//! answers chosen per key. Each request is answered by a closure of its operation
//! (`PutItem`, `BatchGetItem`, ...) and JSON body.

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

/// What the fake answers: a status line (`200 OK`) and a JSON body.
pub type Answer = (&'static str, String);

/// Serves `answer` until the runtime ends; returns the endpoint.
pub async fn serve(
    answer: impl Fn(&str, &serde_json::Value) -> Answer + Send + Sync + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let (reader, mut writer) = connection.into_split();
                let mut reader = BufReader::new(reader);
                loop {
                    let (mut operation, mut length) = (String::new(), 0usize);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            let value = value.trim();
                            match name.to_ascii_lowercase().as_str() {
                                "x-amz-target" => {
                                    operation =
                                        value.rsplit('.').next().unwrap_or_default().to_string();
                                }
                                "content-length" => length = value.parse().unwrap_or(0),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let request = serde_json::from_slice(&body).unwrap_or_default();
                    let (status, body) = answer(&operation, &request);
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    endpoint
}

/// An error answer of type `kind` (e.g. `ConditionalCheckFailedException`), with `extra`
/// members (`"Item":{...}`) when not empty.
pub fn error(status: &'static str, kind: &str, extra: &str) -> Answer {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    (
        status,
        format!(
            r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"the fake's answer"{extra}}}"#
        ),
    )
}

/// A client of the fake at `endpoint`.
pub fn client(endpoint: &str) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
        .build();
    Client::from_conf(config)
}
