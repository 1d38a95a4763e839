//! The components built into the binary (see `host/build.rs`).

/// The SSE source component.
pub const SOURCE: &[u8] = include_bytes!(env!("SSE_INGEST_SOURCE_WASM"));

/// Built-in filters by name.
pub const FILTERS: &[(&str, &[u8])] = &[(
    "passthrough",
    include_bytes!(env!("SSE_INGEST_FILTER_PASSTHROUGH_WASM")),
)];

/// The bytes of a built-in filter.
pub fn builtin_filter(name: &str) -> Option<&'static [u8]> {
    FILTERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// The names of the built-in filters, for messages.
pub fn builtin_filter_names() -> Vec<&'static str> {
    FILTERS.iter().map(|(n, _)| *n).collect()
}
