//! `sse-ingest health --admin ADDR [--ready]`: the container health check. A minimal image
//! has no curl, so the binary asks its own admin API.

use std::time::Duration;

use crate::cli::HealthArgs;
use crate::cli::admin_client::AdminClient;
use crate::cli::exit::{self, Failure};

/// Exit 0 when `/health` (or, with `--ready`, `/ready`) answers 200; else 1, with the
/// answer on stderr.
pub fn execute(args: &HealthArgs) -> Result<u8, Failure> {
    let path = if args.ready { "/ready" } else { "/health" };
    let client = AdminClient::new(&args.admin, None);
    let (status, body) = client.probe(path, Duration::from_millis(args.timeout_ms))?;
    if status == 200 {
        Ok(exit::OK)
    } else {
        Err(Failure::failed(format!(
            "{path} answered {status}: {}",
            body.trim()
        )))
    }
}
