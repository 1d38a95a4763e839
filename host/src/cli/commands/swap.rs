//! `sse-ingest swap`: asks a running pipeline's admin API to replace its filter.

use crate::cli::SwapArgs;
use crate::cli::admin_client::{AdminClient, Answer};
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
    let client = AdminClient::new(&args.admin, args.admin_token.clone());
    let path = format!("/pipelines/{}/filter?{}", args.pipeline, query.finish());
    let Answer { status, body } = client.post(&path, "application/wasm", &bytes)?;
    let status = http::StatusCode::from_u16(status).unwrap_or_default();
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
