//! The filter examples of `examples/filters` (the same filter in Rust, Python and
//! JavaScript), built from source by their own `test.sh` (which builds with `build.sh`, then
//! checks the component against the recorded events with `test-filter`), once per test
//! process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The languages of the examples, as `examples/filters` names their folders.
pub const LANGUAGES: [&str; 3] = ["rust", "python", "js"];

/// The configuration every example is tested with.
pub const CONFIG: &str = "wikis=enwiki,dewiki";

/// The examples' folder.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/filters")
}

/// The component of the example in `lang`, built and checked by its `test.sh`. Panics
/// with the script's output if either step fails.
pub fn example_filter(lang: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Mutex::default);
    // One build at a time: the builds are CPU-bound, and two tests may want the same one.
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.get(lang) {
        return path.clone();
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("examples");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("bash")
        .arg(examples_dir().join(lang).join("test.sh"))
        .env("OUT_DIR", &out)
        .env("SSE_INGEST", env!("CARGO_BIN_EXE_sse-ingest"))
        .env(
            "COMPONENTIZE_PY",
            root.join("target/tools/componentize-py/bin/componentize-py"),
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run the {lang} example's test.sh: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("ok: 21 records as expected"),
        "the {lang} example's test.sh failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let path = out.join(format!("wiki_edits_{lang}.wasm"));
    assert!(path.is_file(), "{} was not built", path.display());
    built.insert(lang.to_string(), path.clone());
    path
}

/// The recorded events' data, one per line, as the examples' `events.ndjson` holds them.
pub fn recorded_events() -> Vec<String> {
    std::fs::read_to_string(examples_dir().join("events.ndjson"))
        .expect("examples/filters/events.ndjson")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The data of the records every example must write for the recorded events.
pub fn expected_records() -> Vec<String> {
    std::fs::read_to_string(examples_dir().join("expected.ndjson"))
        .expect("examples/filters/expected.ndjson")
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("JSON");
            record["data"].as_str().expect("a data string").to_string()
        })
        .collect()
}
