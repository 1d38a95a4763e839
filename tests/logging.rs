//! What `--log-level` (and the config file's `log_level`) turns on: the product's own debug
//! lines, not the tens of thousands Cranelift and wasmtime write while compiling.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::sse_server::{Response, SseServer};
use support::{run_with_limit, stderr_of};

const LIMIT: Duration = Duration::from_secs(120);

/// Five events, then the end of the stream.
fn five_events() -> SseServer {
    let body: String = (0..5).map(|n| format!("id: {n}\ndata: {n}\n\n")).collect();
    SseServer::always(Response::text(&body))
}

/// Runs `command` to its end and checks its JSON log lines: product debug lines, none from
/// a compiler's crate, and few lines in all.
fn assert_only_our_debug_lines(command: &mut Command) {
    let output = run_with_limit(command, LIMIT);
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    // Records of `log`-based crates (Cranelift, wasmtime's compiler) carry their target.
    let from_compiler = lines.iter().find(|line| {
        line["fields"]["log.target"]
            .as_str()
            .is_some_and(|target| target.starts_with("cranelift") || target.starts_with("wasmtime"))
    });
    assert_eq!(from_compiler, None, "{} lines", lines.len());
    assert!(
        lines
            .iter()
            .any(|line| line["level"] == "DEBUG" && line["fields"]["message"] == "open-file limit"),
        "{stderr}"
    );
    assert!(lines.len() < 100, "{} lines: {stderr}", lines.len());
}

/// A private, empty component cache under `dir`: the components are compiled (and Cranelift
/// has something to log).
fn fresh_cache(dir: &Path) -> String {
    dir.join("cache").display().to_string()
}

#[test]
fn log_level_debug_shows_our_debug_lines_and_not_the_compilers() {
    let server = five_events();
    let dir = tempfile::tempdir().unwrap();
    let mut command = support::sse_ingest();
    command
        .args([
            "run",
            "--url",
            &server.url("/s"),
            "--once",
            "--sink",
            "discard",
        ])
        .args(["--cache-dir", &fresh_cache(dir.path())])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--log-level", "debug", "--log-format", "json"]);
    assert_only_our_debug_lines(&mut command);
}

#[test]
fn the_config_files_log_level_is_the_flags() {
    let server = five_events();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sse-ingest.toml");
    std::fs::write(
        &file,
        format!(
            "state_dir = {:?}\ncache_dir = {:?}\nlog_level = \"debug\"\nlog_format = \"json\"\n\n\
             [[pipeline]]\nname = \"p\"\nurl = \"{}\"\nonce = true\nsink = \"discard\"\n",
            dir.path().join("state").display().to_string(),
            fresh_cache(dir.path()),
            server.url("/s"),
        ),
    )
    .unwrap();
    let mut command = support::sse_ingest();
    command.args(["run", "--config"]).arg(&file);
    assert_only_our_debug_lines(&mut command);
}
