//! The AWS clients' settings, shared: pipelines (and their checkpoint stores) that reach the
//! same region and endpoint with the same trust and proxies share one [`SdkConfig`], so
//! every client built from it shares its HTTP connection pool and credential cache.

use aws_config::SdkConfig;
use kinesis_producer::{ClientError, HttpSettings};

/// What makes two AWS client settings the same.
type Key = (Option<String>, Option<String>, HttpSettings);

/// The settings for `region` and `endpoint_url` through `http`, made once per process.
pub async fn shared_config(
    region: &Option<String>,
    endpoint_url: &Option<String>,
    http: &HttpSettings,
) -> Result<SdkConfig, ClientError> {
    static CONFIGS: tokio::sync::Mutex<Vec<(Key, SdkConfig)>> =
        tokio::sync::Mutex::const_new(Vec::new());
    let key = (region.clone(), endpoint_url.clone(), http.clone());
    // Held across the creation, so that pipelines starting together make one.
    let mut configs = CONFIGS.lock().await;
    if let Some((_, config)) = configs.iter().find(|(k, _)| *k == key) {
        return Ok(config.clone());
    }
    let config =
        kinesis_producer::sdk_config_from_env(region.clone(), endpoint_url.clone(), http).await?;
    configs.push((key, config.clone()));
    Ok(config)
}
