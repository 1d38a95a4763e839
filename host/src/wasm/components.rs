//! The components built into the binary (see `host/build.rs`).

/// The SSE source component.
pub const SOURCE: &[u8] = include_bytes!(env!("SSE_INGEST_SOURCE_WASM"));

/// Built-in filters by name.
pub const FILTERS: &[(&str, &[u8])] = &[
    (
        "passthrough",
        include_bytes!(env!("SSE_INGEST_FILTER_PASSTHROUGH_WASM")),
    ),
    (
        "types",
        include_bytes!(env!("SSE_INGEST_FILTER_TYPES_WASM")),
    ),
    (
        "json-match",
        include_bytes!(env!("SSE_INGEST_FILTER_JSON_MATCH_WASM")),
    ),
    (
        "wikimedia",
        include_bytes!(env!("SSE_INGEST_FILTER_WIKIMEDIA_WASM")),
    ),
];

/// For tests only: misbehaving filters (`guest/filters/testing`) by name, with
/// the path of the `.wasm` the build script produced. They are not built-ins
/// (no user can pick them by name) and are not embedded in the binary.
const TESTING_FILTERS: &[(&str, &str)] = &[
    ("trap", env!("SSE_INGEST_TESTING_TRAP_WASM")),
    ("spin", env!("SSE_INGEST_TESTING_SPIN_WASM")),
    ("memory-hog", env!("SSE_INGEST_TESTING_MEMORY_HOG_WASM")),
    // The Rust filter example, beside whose build the Python and JavaScript ones are tested.
    ("example-rust", env!("SSE_INGEST_EXAMPLE_RUST_WASM")),
];

/// For tests only: the path on disk of a misbehaving test filter (`trap`,
/// `spin` or `memory-hog`), to pass as `--filter FILE.wasm`.
pub fn testing_filter_path(name: &str) -> Option<&'static str> {
    TESTING_FILTERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, path)| *path)
}

/// The bytes of a built-in filter.
pub fn builtin_filter(name: &str) -> Option<&'static [u8]> {
    FILTERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// The bytes of the filter `spec` names: a built-in, or a file read now. The error is a
/// sentence for the operator.
pub fn load_filter(spec: &crate::config::FilterSpec) -> Result<Vec<u8>, String> {
    match spec {
        crate::config::FilterSpec::Builtin(name) => {
            builtin_filter(name).map(<[u8]>::to_vec).ok_or_else(|| {
                format!(
                    "unknown filter `{name}` (built-in: {}; or give a .wasm file)",
                    builtin_filter_names().join(", ")
                )
            })
        }
        crate::config::FilterSpec::File(path) => std::fs::read(path)
            .map_err(|error| format!("cannot read filter {}: {error}", path.display())),
    }
}

/// The names of the built-in filters, for messages.
pub fn builtin_filter_names() -> Vec<&'static str> {
    FILTERS.iter().map(|(n, _)| *n).collect()
}
