//! `sse-ingest swap`: asks a running pipeline's admin API to replace its filter.

use crate::cli::SwapArgs;
use crate::cli::exit::{self, Failure};
use crate::config::{FilterSpec, parse_key_value};
use crate::wasm::components;

/// Sends the filter; prints the new version, or the reason it was refused.
pub fn execute(args: SwapArgs) -> Result<u8, Failure> {
    let spec = FilterSpec::parse(&args.filter);
    let bytes = components::load_filter(&spec).map_err(Failure::usage)?;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let label = spec.label();
    query.append_pair("label", &label);
    for pair in &args.filter_config {
        if parse_key_value(pair).is_none() {
            return Err(Failure::usage(format!(
                "invalid --filter-config `{pair}`: expected `key=value`"
            )));
        }
        query.append_pair("config", pair);
    }
    let base = if args.admin.starts_with("http://") {
        args.admin.clone()
    } else {
        format!("http://{}", args.admin)
    };
    let url = format!(
        "{base}/pipelines/{}/filter?{}",
        args.pipeline,
        query.finish()
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let mut response = agent
        .post(&url)
        .header("content-type", "application/wasm")
        .send(&bytes[..])
        .map_err(|e| Failure::failed(format!("cannot reach the admin API at {base}: {e}")))?;
    let status = response.status();
    let text = response.body_mut().read_to_string().map_err(|e| {
        Failure::failed(format!(
            "the admin API answered {status} with an unreadable body: {e}"
        ))
    })?;
    let body: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Failure::failed(format!(
            "the admin API answered {status} with an unreadable body: {e}"
        ))
    })?;
    if status.is_success() {
        println!(
            "pipeline `{}` now runs filter version {} ({label})",
            args.pipeline, body["version"]
        );
        Ok(exit::OK)
    } else {
        Err(Failure::failed(
            body["error"]
                .as_str()
                .unwrap_or("the admin API refused the swap")
                .to_string(),
        ))
    }
}
