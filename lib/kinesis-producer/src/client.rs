//! Building an `aws_sdk_kinesis::Client`.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};

/// Connect timeout of the clients built here (the SDK's default is about 3.1 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempt timeout of the clients built here. The SDK sets none, so a stuck call would wait
/// forever. The producer sets its own on its copy of the client.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Operation timeout (all attempts) of the clients built here.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// A client configured the way AWS tools usually are: credentials from aws-config's default
/// chain (environment, shared profile, web identity, ECS container and EC2 instance
/// metadata), region from `region` or that chain, and `endpoint_url` if given (e.g. a VPC
/// endpoint or a local server).
///
/// It has explicit timeouts (see the constants in this module) and the SDK's standard retries
/// (3 attempts), which suit control-plane calls. The [`Producer`](crate::Producer) does not
/// use those retries for PutRecords: it makes its own copy of the client without them and
/// retries only what failed, per record, until each record's deadline.
pub async fn client_from_env(region: Option<String>, endpoint_url: Option<String>) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .retry_config(RetryConfig::standard());
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let sdk_config = loader.load().await;
    tracing::debug!(
        region = ?sdk_config.region(),
        endpoint = ?sdk_config.endpoint_url(),
        "Kinesis client from the default credential chain"
    );
    Client::new(&sdk_config)
}

/// A client for a local Kinesis API server (kinesalite and the like), with fixed dummy
/// credentials: such servers do not check signatures, but the SDK signs every request and
/// needs something to sign with. Same timeouts and retries as [`client_from_env`].
pub fn client_for_local(endpoint_url: impl Into<String>, region: impl Into<String>) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .region(Region::new(region.into()))
        .credentials_provider(Credentials::new(
            "local-access-key",
            "local-secret-key",
            None,
            None,
            "kinesis-producer-local",
        ))
        .timeout_config(timeouts())
        .retry_config(RetryConfig::standard())
        .build();
    Client::from_conf(config)
}
