//! The README's flags table says what `sse-ingest run --help` says: every flag in it exists,
//! its default is the binary's, and the values it lists are the ones the flag's help lists.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};

/// One flag of `run --help`: its `[default: …]`, if any, and its help text.
#[derive(Debug, Default)]
struct Help {
    default: Option<String>,
    text: String,
}

impl Help {
    /// The values the help lists: clap's "Possible values", else the backticked words
    /// before the "Default:" sentence.
    fn values(&self) -> BTreeSet<String> {
        if let Some((_, list)) = self.text.split_once("Possible values:") {
            return list
                .lines()
                .filter_map(|line| line.strip_prefix("- "))
                .filter_map(|line| line.split(':').next())
                .map(str::to_string)
                .collect();
        }
        let before_default = self.text.split("Default:").next().unwrap_or_default();
        before_default
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }
}

/// `run --help`, flag by flag.
fn run_help() -> BTreeMap<String, Help> {
    let output = support::sse_ingest()
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let mut flags: BTreeMap<String, Help> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if line.starts_with("      --") || line.starts_with("  -") {
            let name = trimmed
                .split([' ', ','])
                .find(|word| word.starts_with("--"))
                .unwrap()
                .to_string();
            flags.entry(name.clone()).or_default();
            current = Some(name);
        } else if let Some(name) = &current {
            let help = flags.get_mut(name).unwrap();
            match trimmed
                .strip_prefix("[default: ")
                .and_then(|rest| rest.strip_suffix(']'))
            {
                Some(value) => help.default = Some(value.to_string()),
                None => {
                    help.text.push_str(trimmed);
                    help.text.push('\n');
                }
            }
        }
    }
    flags
}

/// A flag as a row of the README's table shows it.
#[derive(Debug)]
struct Row {
    flag: String,
    /// `a|b|c` after the flag, when the row lists the values (not a placeholder as `N`).
    values: Option<BTreeSet<String>>,
    /// The default cell, or this flag's part of it.
    default: Option<String>,
}

/// The flags of the README's table.
fn readme_rows() -> Vec<Row> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let (_, table) = readme
        .split_once("`sse-ingest run --help` lists every flag with its default.")
        .expect("the flags table's introduction");
    let mut rows = Vec::new();
    for line in table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter(|line| line.starts_with("| `--"))
    {
        let line = line.replace("\\|", "\u{1}");
        let cells: Vec<String> = line
            .split('|')
            .map(|cell| cell.trim().replace('\u{1}', "|"))
            .collect();
        let flags: Vec<&str> = cells[1].split('`').skip(1).step_by(2).collect();
        let defaults: Vec<&str> = cells[2].split(", ").collect();
        for (n, shown) in flags.iter().enumerate() {
            let (flag, form) = shown.split_once(' ').unwrap_or((shown, ""));
            let values = (form.contains('|')
                && form
                    .split('|')
                    .all(|v| v.starts_with(|c: char| c.is_lowercase())))
            .then(|| form.split('|').map(str::to_string).collect());
            let default = match (flags.len(), defaults.len()) {
                (1, _) => Some(cells[2].clone()),
                (many, given) if many == given => Some(defaults[n].to_string()),
                _ => None,
            };
            rows.push(Row {
                flag: flag.to_string(),
                values,
                default,
            });
        }
    }
    rows
}

/// A default as the README writes it, as `--help` writes it: `None` when the README says
/// it in words (`the URL's own`), `Some(None)` for a switch that is `off`.
fn comparable(default: &str) -> Option<Option<String>> {
    let default = default.trim_matches('`');
    if default == "off" {
        return Some(None);
    }
    let units = [("KiB", 1u64 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)];
    for (unit, bytes) in units {
        if let Some(number) = default.strip_suffix(&format!(" {unit}")) {
            return Some(Some((number.parse::<u64>().ok()? * bytes).to_string()));
        }
    }
    let default = default.replace("VERSION", env!("CARGO_PKG_VERSION"));
    let words = default.is_empty()
        || default.contains(' ')
        || default.contains(char::is_uppercase)
        || ["all", "none"].contains(&default.as_str());
    (!words).then_some(Some(default))
}

#[test]
fn every_flag_of_the_readme_table_has_the_default_and_values_of_run_help() {
    let help = run_help();
    let rows = readme_rows();
    assert!(rows.len() > 30, "{rows:?}");
    let mut compared = 0;
    for row in &rows {
        let Some(flag) = help.get(&row.flag) else {
            panic!("README's `{}` is no flag of `run --help`", row.flag);
        };
        if let Some(expected) = row.default.as_deref().and_then(comparable) {
            assert_eq!(flag.default, expected, "the default of {}", row.flag);
            compared += 1;
        }
        if let Some(values) = &row.values {
            assert_eq!(values, &flag.values(), "the values of {}", row.flag);
        }
    }
    assert!(compared > 20, "only {compared} defaults compared: {rows:?}");
}
