//! Which top-level modules of a crate import which, read from the source text, and the
//! first cycle among them: a layering check that needs no compiler plugin.
//!
//! Plain text scanning is enough because the code is rustfmt-formatted: every path to
//! another module starts with `crate::` (or `super::`, resolved against the file's module
//! and the inline `mod name {` blocks it sits in), comments are whole lines, and an inline
//! module's closing brace sits at its own indentation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `from → to → where` (the first `file:line` that makes `from` use `to`).
pub type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The crate's top-level modules under `src` (its directories and `.rs` files other than
/// `lib.rs` and `main.rs`) and the imports between them.
pub fn crate_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(src) {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "rs") {
            let relative = entry.path().strip_prefix(src).unwrap();
            let text = std::fs::read_to_string(entry.path()).unwrap();
            files.push((relative.to_string_lossy().replace('\\', "/"), text));
        }
    }
    graph(&files)
}

/// The graph of `files` (path relative to the crate's `src`, text).
pub fn graph(files: &[(String, String)]) -> Graph {
    let units: BTreeSet<String> = files
        .iter()
        .filter_map(|(path, _)| {
            let module = module_path(path);
            module.first().cloned()
        })
        .collect();
    let mut graph = Graph::new();
    for (path, text) in files {
        let module = module_path(path);
        let Some(unit) = module.first() else {
            continue; // the crate root: every module's parent, in no cycle of theirs
        };
        graph.entry(unit.clone()).or_default();
        for (number, target) in references(&module, text) {
            if target != *unit && units.contains(&target) {
                graph
                    .entry(unit.clone())
                    .or_default()
                    .entry(target)
                    .or_insert_with(|| format!("{path}:{number}"));
            }
        }
    }
    graph
}

/// `pipeline/checkpoint/mod.rs` → `[pipeline, checkpoint]`; `lib.rs` → `[]`.
fn module_path(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The first segment of every absolute module path a file's code names, with its line.
fn references(module: &[String], text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    // The indentations of the inline `mod name {` blocks the line is in.
    let mut inline: Vec<usize> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with('}') && inline.last() == Some(&indent) {
            inline.pop();
            continue;
        }
        let mut depth = module.len() + inline.len();
        if inline_module(trimmed) {
            inline.push(indent);
        }
        for target in crate_paths(line) {
            found.push((index + 1, target));
        }
        // `super::super::name`: up one module per `super`.
        let mut rest = line;
        while let Some(at) = rest.find("super::") {
            let after_word = at == 0 || !is_ident(rest.as_bytes()[at - 1]);
            rest = &rest[at..];
            if !after_word {
                rest = &rest["super::".len()..];
                continue;
            }
            let mut ups = 0;
            while let Some(next) = rest.strip_prefix("super::") {
                ups += 1;
                rest = next;
            }
            depth = depth.saturating_sub(ups);
            let resolved = if depth == 0 {
                first_ident(rest)
            } else {
                module.first().cloned()
            };
            if let Some(target) = resolved {
                found.push((index + 1, target));
            }
            depth = module.len() + inline.len();
        }
    }
    found
}

/// `mod tests {`, `pub(crate) mod inner {`: a module whose items follow in this file.
fn inline_module(trimmed: &str) -> bool {
    let words: Vec<&str> = trimmed.split_whitespace().collect();
    words.last() == Some(&"{")
        && words
            .iter()
            .position(|w| *w == "mod")
            .is_some_and(|at| at + 3 == words.len())
}

/// The first segments of `crate::name` and of each name in `crate::{a, b::c}`.
fn crate_paths(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let whole_word = at == 0 || !is_ident(rest.as_bytes()[at - 1]);
        rest = &rest[at + "crate::".len()..];
        if !whole_word {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut nesting = 0usize;
            let mut start = true;
            for (offset, c) in group.char_indices() {
                match c {
                    '{' => nesting += 1,
                    '}' if nesting == 0 => break,
                    '}' => nesting -= 1,
                    ',' if nesting == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        start = false;
                        if let Some(name) = first_ident(&group[offset..]) {
                            targets.push(name);
                        }
                    }
                    _ => {}
                }
            }
        } else if let Some(name) = first_ident(rest) {
            targets.push(name);
        }
    }
    targets
}

fn first_ident(text: &str) -> Option<String> {
    let end = text
        .bytes()
        .position(|b| !is_ident(b))
        .unwrap_or(text.len());
    (end > 0).then(|| text[..end].to_string())
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The first cycle, as `[a, b, ..., a]` with where each step is imported, or `None`.
pub fn first_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

/// A cycle in words: `a → b (a/x.rs:3) → a (b.rs:9)`.
pub fn describe(graph: &Graph, cycle: &[String]) -> String {
    let mut text = cycle[0].clone();
    for step in cycle.windows(2) {
        let place = &graph[&step[0]][&step[1]];
        text.push_str(&format!(" → {} ({place})", step[1]));
    }
    text
}
