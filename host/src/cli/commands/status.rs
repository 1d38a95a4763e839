//! `sse-ingest status`: one screen on a running process's pipelines, from its admin API.

use crate::cli::StatusArgs;
use crate::cli::admin_client::AdminClient;
use crate::cli::exit::{self, Failure};

/// Prints the table; exit 0 when the process is ready, 1 when not (so scripts can use it).
pub fn execute(args: &StatusArgs) -> Result<u8, Failure> {
    let client = AdminClient::new(&args.admin, args.admin_token.clone());
    let pipelines = client.get("/pipelines")?;
    let ready = client.get("/ready")?;
    print!("{}", table(&pipelines.body));
    if ready.status == 200 {
        println!("ready");
        Ok(exit::OK)
    } else {
        println!("not ready");
        Ok(exit::FAILURE)
    }
}

/// The pipelines of a `/pipelines` answer as aligned columns.
fn table(answer: &serde_json::Value) -> String {
    let header = [
        "PIPELINE",
        "STATE",
        "CONNECTED",
        "EVENTS",
        "WRITTEN",
        "DEAD",
        "LAST EVENT",
        "FILTER",
        "REASON",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_string()).collect()];
    let empty = Vec::new();
    for pipeline in answer["pipelines"].as_array().unwrap_or(&empty) {
        let text = |key: &str| match &pipeline[key] {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let connected = if pipeline["connected"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        };
        let last_event = match pipeline["last_event_age_seconds"].as_u64() {
            Some(age) => format!("{age}s ago"),
            None => "-".to_string(),
        };
        let filter = match pipeline["filter_version"].as_u64() {
            Some(version) => format!("{} v{version}", text("filter")),
            None => text("filter"),
        };
        rows.push(vec![
            text("name"),
            text("state"),
            connected.to_string(),
            text("events_received"),
            text("records_written"),
            text("dead_letters"),
            last_event,
            filter,
            text("reason"),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_pipeline_with_aligned_columns() {
        let answer = serde_json::json!({"pipelines": [
            {"name": "wiki", "state": "running", "connected": true, "events_received": 1200,
             "records_written": 1190, "dead_letters": 0, "last_event_age_seconds": 1,
             "filter": "built-in filter `wikimedia`", "filter_version": 2, "reason": null},
            {"name": "b", "state": "failed", "connected": false, "events_received": 0,
             "records_written": 0, "dead_letters": 0, "last_event_age_seconds": null,
             "filter": "built-in filter `passthrough`", "filter_version": null,
             "reason": "the server answered HTTP 404"},
        ]});
        let text = table(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("wiki      running  yes"), "{text}");
        assert!(lines[1].contains("1s ago"), "{text}");
        assert!(lines[1].contains("`wikimedia` v2"), "{text}");
        assert!(lines[2].ends_with("the server answered HTTP 404"), "{text}");
        let state_column = lines[0].find("STATE").unwrap();
        assert_eq!(lines[2].find("failed"), Some(state_column));
    }
}
