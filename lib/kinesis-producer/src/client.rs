//! Building an `aws_sdk_kinesis::Client`.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder as HttpClientBuilder, Connector};

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

/// A client configured the way AWS tools usually are: see [`sdk_config_from_env`].
///
/// The [`Producer`](crate::Producer) does not use the SDK's retries for PutRecords: it makes
/// its own copy of the client without them and retries only what failed, per record, until
/// each record's deadline.
pub async fn client_from_env(
    region: Option<String>,
    endpoint_url: Option<String>,
    http: &HttpSettings,
) -> Result<Client, ClientError> {
    Ok(Client::new(
        &sdk_config_from_env(region, endpoint_url, http).await?,
    ))
}

/// The settings of an AWS client (any service's: the host builds its DynamoDB client from
/// the same) configured the way AWS tools usually are: credentials from aws-config's default
/// chain (environment, shared profile, web identity, ECS container and EC2 instance
/// metadata), region from `region` or that chain, and `endpoint_url` if given (e.g. a VPC
/// endpoint or a local server). Clients built from one of these share its HTTP connection
/// pool and credential cache.
///
/// It has explicit timeouts (see the constants in this module) and the SDK's standard retries
/// (3 attempts), which suit control-plane calls.
///
/// Its HTTPS client trusts the system's certificate authorities plus those in `http`, and
/// goes through the proxies `http` names.
pub async fn sdk_config_from_env(
    region: Option<String>,
    endpoint_url: Option<String>,
    http: &HttpSettings,
) -> Result<aws_config::SdkConfig, ClientError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client(http)?)
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
        "AWS client settings from the default credential chain"
    );
    Ok(sdk_config)
}

/// How the AWS clients reach AWS: trust and proxies, resolved by the caller (flags first,
/// then the environment, as curl reads it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpSettings {
    /// PEM certificate authorities trusted besides the system's.
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// The proxy for http endpoints (e.g. a local server), if any.
    pub http_proxy: Option<String>,
    /// The proxy for https endpoints (AWS itself), if any.
    pub https_proxy: Option<String>,
    /// Hosts that go direct, curl's `NO_PROXY` syntax.
    pub no_proxy: Option<String>,
}

/// The AWS HTTP client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A proxy URL was refused.
    #[error("the AWS clients' proxy: {0}")]
    Proxy(String),
    /// The trust store was refused.
    #[error("the AWS clients' TLS settings: {0}")]
    Tls(String),
}

/// The SDK's own hyper + rustls (aws-lc-rs) client with our trust store and proxies.
fn http_client(settings: &HttpSettings) -> Result<SharedHttpClient, ClientError> {
    let mut trust = TrustStore::default();
    for pem in &settings.extra_ca_pem {
        trust.add_pem_certificate(pem.clone());
    }
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|error| ClientError::Tls(error.to_string()))?;
    let proxy = proxy_config(settings)?;
    // The builder caches one connector per connector settings; the closure says how to
    // make one.
    Ok(
        HttpClientBuilder::new().build_with_connector_fn(move |connector_settings, components| {
            let mut builder = Connector::builder();
            builder.set_connector_settings(connector_settings.cloned());
            if let Some(components) = components {
                builder.set_sleep_impl(components.sleep_impl());
            }
            builder
                .proxy_config(proxy.clone())
                .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(tls_context.clone())
                .build()
        }),
    )
}

/// The SDK takes one proxy rule: AWS endpoints are https, so where the http and https
/// proxies differ, the https one is used (and the http one for http endpoints only when
/// it is the only one).
fn proxy_config(settings: &HttpSettings) -> Result<ProxyConfig, ClientError> {
    let refused =
        |error: aws_smithy_http_client::proxy::ProxyError| ClientError::Proxy(error.to_string());
    let config = match (&settings.http_proxy, &settings.https_proxy) {
        (None, None) => return Ok(ProxyConfig::disabled()),
        (Some(http), Some(https)) if http == https => {
            ProxyConfig::all(http.as_str()).map_err(refused)?
        }
        (_, Some(https)) => ProxyConfig::https(https.as_str()).map_err(refused)?,
        (Some(http), None) => ProxyConfig::http(http.as_str()).map_err(refused)?,
    };
    Ok(match &settings.no_proxy {
        Some(no_proxy) => config.no_proxy(no_proxy),
        None => config,
    })
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
