//! `sse-ingest check FILE`: validates a config file without connecting anything.
//!
//! Syntax, types, keys, URLs, sink specs, ranges, duplicate names and overlapping
//! directories come from reading the file (the same code `run --config` uses); then every
//! pipeline's filter is loaded, compiled and given its configuration, as at start.

use std::collections::BTreeMap;

use crate::cli::CheckArgs;
use crate::cli::config_file::{self, Problem, Problems};
use crate::cli::exit::{self, Failure};
use crate::config::PipelineConfig;
use crate::service::Components;
use crate::wasm::filter::FilterContext;

/// Prints every problem as `FILE:LINE:COL: message` (exit 2), or a one-line summary (exit 0).
pub fn execute(args: &CheckArgs) -> Result<u8, Failure> {
    let text = config_file::read_text(&args.file)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", args.file.display())))?;
    let list = match config_file::parse_located(&text) {
        Ok((config, filter_at)) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
            let problems = runtime.block_on(check_filters(&config.pipelines, &filter_at))?;
            if problems.is_empty() {
                println!(
                    "{}: ok, {} pipeline{}",
                    args.file.display(),
                    config.pipelines.len(),
                    if config.pipelines.len() == 1 { "" } else { "s" }
                );
                return Ok(exit::OK);
            }
            problems
        }
        Err(list) => list,
    };
    let count = list.len();
    println!(
        "{}",
        Problems {
            file: args.file.clone(),
            list
        }
    );
    Err(Failure::usage(format!(
        "{count} problem{} in {}",
        if count == 1 { "" } else { "s" },
        args.file.display()
    )))
}

/// Loads, compiles and initialises each pipeline's filter with its configuration.
async fn check_filters(
    pipelines: &[PipelineConfig],
    filter_at: &BTreeMap<String, Problem>,
) -> Result<Vec<Problem>, Failure> {
    let components = Components::new(None).map_err(Failure::failed)?;
    let mut problems = Vec::new();
    for pipeline in pipelines {
        let problem = |message: String| {
            let mut at = filter_at.get(&pipeline.name).cloned().unwrap_or(Problem {
                line: 1,
                column: 1,
                message: String::new(),
            });
            at.message = format!("pipeline `{}`: {message}", pipeline.name);
            at
        };
        let (label, component) = match components.filter(&pipeline.filter) {
            Ok(loaded) => loaded,
            Err(error) => {
                problems.push(problem(error.to_string()));
                continue;
            }
        };
        let context = FilterContext {
            pipeline: pipeline.name.clone(),
            source_url: pipeline.shown_url(),
            format: pipeline.format,
            partition_key: pipeline.partition_key.clone(),
            routable_streams: pipeline.routable_streams(),
        };
        if let Err(error) = component
            .instantiate(&context, &pipeline.filter_config, pipeline.filter_limits)
            .await
        {
            problems.push(problem(format!("{label}: {error}")));
        }
    }
    Ok(problems)
}
