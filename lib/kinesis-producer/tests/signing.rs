//! The producer writes PutRecords bodies itself and hands them to the SDK just before
//! signing. Kinesis servers used in tests do not check signatures, so this test does what
//! AWS does: it recomputes the SigV4 signature of every request as received (method, path,
//! the signed headers and the body) with the client's secret, and requires it to match the
//! one in the `Authorization` header. A body swapped after signing would fail here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kinesis_producer::{Producer, ProducerConfig, ProducerRecord, client_for_local};
use tokio::net::TcpListener;

/// The secret `client_for_local` signs with.
const ACCESS_KEY: &str = "local-access-key";
const SECRET_KEY: &str = "local-secret-key";

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Received {
    target: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The signature AWS would compute for this request, and the one it carries.
    fn signatures(&self) -> (String, String) {
        let authorization = self.header("authorization").expect("the request is signed");
        let field = |name: &str| {
            authorization
                .split([' ', ','])
                .find_map(|part| part.trim().strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {authorization}"))
                .to_owned()
        };
        let signed_headers = field("SignedHeaders=");
        let carried = field("Signature=");
        let credential = field("Credential=");
        let scope: Vec<&str> = credential.split('/').collect();
        let (region, service) = (scope[2], scope[3]);
        let date = self.header("x-amz-date").expect("x-amz-date");
        let time = time_of(date);

        let headers = signed_headers
            .split(';')
            .filter(|name| *name != "x-amz-date")
            .map(|name| (name, self.header(name).unwrap_or_default()));
        let identity = Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let uri = format!("http://{}{}", self.header("host").unwrap(), self.path);
        let request =
            SignableRequest::new(&self.method, uri, headers, SignableBody::Bytes(&self.body))
                .unwrap();
        let (_, expected) = sign(request, &params).unwrap().into_parts();
        (expected, carried)
    }
}

/// `20261127T001500Z` as a time.
fn time_of(amz_date: &str) -> SystemTime {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let parsed = time::PrimitiveDateTime::parse(amz_date, &format).unwrap();
    SystemTime::from(parsed.assume_utc())
}

/// Answers DescribeStreamSummary and PutRecords (all records succeed), keeping each request.
async fn serve(listener: TcpListener, log: Arc<Mutex<Vec<Received>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let log = Arc::clone(&log);
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let headers: Vec<(String, String)> = parts
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                        .collect();
                    let received = Received {
                        target: parts.headers["x-amz-target"].to_str().unwrap().to_owned(),
                        method: parts.method.to_string(),
                        path: parts.uri.to_string(),
                        headers,
                        body,
                    };
                    let answer = answer(&received);
                    log.lock().unwrap().push(received);
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header("content-type", "application/x-amz-json-1.1")
                            .body(Full::new(Bytes::from(answer)))
                            .unwrap(),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(request: &Received) -> String {
    if request.target.ends_with(".DescribeStreamSummary") {
        return serde_json::json!({"StreamDescriptionSummary": {
            "StreamName": "signed",
            "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/signed",
            "StreamStatus": "ACTIVE",
            "RetentionPeriodHours": 24,
            "StreamCreationTimestamp": 0,
            "EnhancedMonitoring": [],
            "OpenShardCount": 1,
        }})
        .to_string();
    }
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    let n = body["Records"].as_array().unwrap().len();
    let records: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"SequenceNumber": i.to_string(), "ShardId": "shardId-000000000000"}))
        .collect();
    serde_json::json!({"FailedRecordCount": 0, "Records": records}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_put_records_signature_covers_the_body_that_was_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(listener, Arc::clone(&log)));

    let client = client_for_local(format!("http://127.0.0.1:{port}"), "us-east-1");
    let mut config = ProducerConfig::new("signed");
    config.linger = Duration::from_millis(10);
    let producer = Producer::new(client, config).await.unwrap();
    let mut long_key = "k".repeat(300);
    long_key.push('"');
    let records = vec![
        ProducerRecord::new(Bytes::from_static(b"plain"), "key-1".to_owned()),
        ProducerRecord::new(Bytes::from(vec![0u8, 255, 10, 34]), "quote\"key".to_owned()),
        ProducerRecord::new(Bytes::from(vec![b'x'; 100_000]), long_key),
    ];
    let outcome = producer.submit(records).await.unwrap().await.unwrap();
    assert_eq!(outcome.acked, 3);
    producer.close(Duration::from_secs(10)).await.unwrap();
    server.abort();

    let log = log.lock().unwrap().clone();
    let puts: Vec<&Received> = log
        .iter()
        .filter(|r| r.target.ends_with(".PutRecords"))
        .collect();
    assert_eq!(puts.len(), 1, "{log:?}");
    let put = puts[0];
    assert_eq!(
        put.header("content-length"),
        Some(put.body.len().to_string().as_str())
    );
    let body: serde_json::Value = serde_json::from_slice(&put.body).unwrap();
    assert_eq!(body["StreamName"], "signed");
    assert_eq!(body["Records"][1]["PartitionKey"], "quote\"key");
    assert_eq!(body["Records"][1]["Data"], "AP8KIg==");
    // The check can fail: one byte more in the body, and the signatures differ.
    let mut tampered = put.clone();
    tampered.body = Bytes::from([&put.body[..], b" "].concat());
    let (expected, carried) = tampered.signatures();
    assert_ne!(expected, carried);
    for request in &log {
        let (expected, carried) = request.signatures();
        assert_eq!(
            expected, carried,
            "{} is not signed over what was sent",
            request.target
        );
    }
}
