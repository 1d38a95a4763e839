//! Imports point one way: no cycle between the host's module groups (`cli`, `service`,
//! `admin`, `pipeline`, `wasm`, `config`, `sink`, `net`, `core`) nor between the source
//! component's files. A cycle makes two groups one in all but name: neither can be read,
//! tested or changed without the other.

use crate::support;

use std::path::Path;

use support::imports::{Graph, crate_graph, describe, first_cycle, graph};

fn assert_no_cycle(graph: &Graph) {
    if let Some(cycle) = first_cycle(graph) {
        panic!("an import cycle: {}", describe(graph, &cycle));
    }
}

fn source_dir(crate_dir: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src")
}

#[test]
fn the_host_module_groups_import_one_way() {
    let graph = crate_graph(&source_dir("host"));
    for group in [
        "admin", "cli", "config", "core", "net", "pipeline", "service", "sink", "wasm",
    ] {
        assert!(graph.contains_key(group), "no group `{group}` in {graph:?}");
    }
    // The scan sees the imports it judges.
    assert!(graph["cli"].contains_key("service"), "{graph:?}");
    assert!(graph["pipeline"].contains_key("core"), "{graph:?}");
    assert_no_cycle(&graph);
}

#[test]
fn the_source_component_files_import_one_way() {
    let graph = crate_graph(&source_dir("guest/source"));
    assert!(graph["connection"].contains_key("stream"), "{graph:?}");
    assert_no_cycle(&graph);
}

/// Files as the scanner reads them: (path under `src`, text).
fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect()
}

#[test]
fn a_cycle_through_crate_paths_is_found_and_named_with_its_lines() {
    let graph = graph(&files(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("a/mod.rs", "use crate::b::Thing;\n"),
        ("a/inner.rs", "// crate::c only in a comment\n"),
        ("b.rs", "use crate::{c::{self, More}, core};\n"),
        ("c.rs", "fn f() {\n    crate::a::call();\n}\n"),
    ]));
    let cycle = first_cycle(&graph).expect("a → b → c → a");
    assert_eq!(cycle, ["a", "b", "c", "a"]);
    assert_eq!(
        describe(&graph, &cycle),
        "a → b (a/mod.rs:1) → c (b.rs:1) → a (c.rs:2)"
    );
}

#[test]
fn super_paths_are_resolved_and_tests_modules_stay_inside_their_file() {
    let graph = graph(&files(&[
        ("a/mod.rs", "mod inner;\npub(crate) use super::b::Thing;\n"),
        (
            "a/inner.rs",
            "use super::Local;\n\n#[cfg(test)]\nmod tests {\n    use super::super::Local;\n}\n",
        ),
        (
            "b.rs",
            "mod tests {\n    use super::*;\n}\nuse super::a::Thing;\n",
        ),
    ]));
    assert_eq!(
        first_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    assert_eq!(graph["b"]["a"], "b.rs:4");
}

#[test]
fn imports_one_way_are_no_cycle() {
    let graph = graph(&files(&[
        ("a.rs", "use crate::b::X;\nuse crate::c::Y;\n"),
        ("b.rs", "use crate::c::Z;\n"),
        ("c.rs", "mod tests {\n    use super::*;\n}\n"),
    ]));
    assert_eq!(first_cycle(&graph), None);
    assert_eq!(graph["a"].len(), 2);
}
