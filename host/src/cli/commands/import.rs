//! `sse-ingest import --properties FILE.json`: the seed's runtime-properties file as the
//! TOML config that runs the same pipeline (`run --config`).

use toml::{Table, Value};

use crate::cli::ImportArgs;
use crate::cli::exit::{self, Failure};
use crate::cli::run_args_defaults;
use crate::cli::seed::SeedProperties;

/// Prints the TOML; returns the exit code.
pub fn execute(args: &ImportArgs) -> Result<u8, Failure> {
    let seed = SeedProperties::load(&args.properties).map_err(Failure::usage)?;
    print!("{}", to_toml(seed, &args.properties.display().to_string()));
    Ok(exit::OK)
}

/// The config file text: what `run --properties` would run, key for key.
fn to_toml(seed: SeedProperties, from: &str) -> String {
    let report_interval_ms = seed.report_interval_ms;
    let defaults = run_args_defaults();
    let mut run = defaults.clone();
    seed.apply(&mut run);
    let strings =
        |values: &[String]| Value::Array(values.iter().cloned().map(Value::from).collect());
    let mut pipeline = Table::new();
    pipeline.insert("name".into(), Value::from("default"));
    pipeline.insert("url".into(), Value::from(run.url.clone()));
    if !run.headers.is_empty() {
        let headers: Vec<String> = run
            .headers
            .iter()
            .map(|header| header.expose().to_string())
            .collect();
        pipeline.insert("header".into(), strings(&headers));
    }
    if !run.types.is_empty() {
        pipeline.insert("types".into(), strings(&run.types));
    }
    if run.idle_timeout_ms != defaults.idle_timeout_ms {
        pipeline.insert(
            "idle_timeout_ms".into(),
            Value::from(i64::try_from(run.idle_timeout_ms).unwrap_or(i64::MAX)),
        );
    }
    pipeline.insert("sink".into(), Value::from(run.sink.clone()));
    if let Some(region) = &run.region {
        pipeline.insert("region".into(), Value::from(region.clone()));
    }
    if run.aggregate {
        pipeline.insert("aggregate".into(), Value::from(true));
    }
    let mut document = Table::new();
    if let Some(ms) = report_interval_ms {
        document.insert(
            "report_interval_ms".into(),
            Value::from(i64::try_from(ms).unwrap_or(i64::MAX)),
        );
    }
    document.insert(
        "pipeline".into(),
        Value::Array(vec![Value::Table(pipeline)]),
    );
    let body = toml::to_string(&document).unwrap_or_default();
    format!(
        "# Made by `sse-ingest import` from {from}; run it with `sse-ingest run --config FILE`.\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cli::seed::tests::SEED;

    #[test]
    fn the_imported_toml_is_a_config_that_runs_the_same_pipeline() {
        let text = to_toml(SeedProperties::parse(SEED).unwrap(), "seed.json");
        let config =
            crate::cli::config_file::parse(&text).unwrap_or_else(|p| panic!("{p:?}\n{text}"));
        assert_eq!(
            config.report_interval,
            Some(std::time::Duration::from_secs(10))
        );
        let pipeline = &config.pipelines[0];
        assert_eq!(
            pipeline.url.as_str(),
            "https://stream.wikimedia.org/v2/stream/recentchange"
        );
        assert_eq!(pipeline.types, vec!["message", "edit"]);
        assert_eq!(pipeline.idle_timeout, std::time::Duration::from_secs(30));
        assert_eq!(
            pipeline.headers,
            vec![
                ("User-Agent".to_string(), "sse-ingest".to_string()),
                ("Accept-Language".to_string(), "en".to_string())
            ]
        );
        assert!(
            matches!(&pipeline.sink, crate::sink::SinkSpec::Kinesis(options)
                if options.producer.stream == "wiki-edits" && options.region.as_deref() == Some("eu-west-1")
                    && !options.producer.aggregate),
            "{:?}",
            pipeline.sink
        );
    }

    #[test]
    fn an_aggregating_seed_imports_as_aggregate_true() {
        let seed = SEED.replace(
            r#""AggregationEnabled": "false""#,
            r#""AggregationEnabled": "true""#,
        );
        let text = to_toml(SeedProperties::parse(&seed).unwrap(), "seed.json");
        assert!(text.contains("aggregate = true"), "{text}");
        let config =
            crate::cli::config_file::parse(&text).unwrap_or_else(|p| panic!("{p:?}\n{text}"));
        assert!(
            matches!(&config.pipelines[0].sink, crate::sink::SinkSpec::Kinesis(options)
                if options.producer.aggregate),
            "{:?}",
            config.pipelines[0].sink
        );
    }
}
