//! `run --config FILE.toml` and `check FILE`: many pipelines from one file.
//!
//! Every `run` flag is a key of the same name with `_` for `-`. A pipeline's table (over
//! the file's `[defaults]`) becomes that pipeline's command line, which the same clap
//! definition and the same mapper ([`pipeline_config`]) turn into its configuration: the
//! file and the flags run one code path, and no key can drift from its flag.
//!
//! The file is read with `toml`'s spanned document ([`DeTable`]), so every problem is
//! reported as `FILE:LINE:COL: message`, all of them at once.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Args as _};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::cli::RunArgs;
use crate::cli::run_config::pipeline_config;
use crate::config::{AdminSettings, AdminTls, PipelineConfig, Redactor, Secret, ServiceConfig};

/// Keys of the top level of the file.
const GLOBAL_KEYS: &[&str] = &[
    "state_dir",
    "cache_dir",
    "log_format",
    "log_level",
    "report_interval_ms",
    "region",
    "endpoint_url",
    "admin",
    "defaults",
    "pipeline",
];

/// The admin API's port when `[admin]` names no address (on loopback).
const DEFAULT_ADMIN_PORT: u16 = 9090;

/// Keys of the `[admin]` table.
const ADMIN_KEYS: &[&str] = &[
    "address",
    "token",
    "allow_unauthenticated",
    "metrics_public",
    "tls_cert",
    "tls_key",
];

/// `run` flags that are not pipeline keys, and where they go instead.
const NOT_PIPELINE_KEYS: &[(&str, &str)] = &[
    (
        "admin",
        "the admin API is set once, in `[admin]` (`address`)",
    ),
    (
        "state_dir",
        "`state_dir` is set once, at the top of the file",
    ),
    (
        "cache_dir",
        "`cache_dir` is set once, at the top of the file",
    ),
    ("config", "a config file cannot name another"),
    ("watch_config", "`--watch-config` is a flag of `run`"),
    ("quiet", "`--quiet` is a flag of `run`"),
    (
        "shard",
        "`--shard` is a flag of `run` (or SSE_INGEST_SHARD)",
    ),
    (
        "shard_from_hostname",
        "`--shard-from-hostname` is a flag of `run`",
    ),
    ("shard_count", "`--shard-count` is a flag of `run`"),
    ("admin_token", "the admin token is `token` in `[admin]`"),
    (
        "admin_allow_unauthenticated",
        "it is `allow_unauthenticated` in `[admin]`",
    ),
    (
        "properties",
        "turn a runtime-properties file into TOML with `sse-ingest import --properties FILE`",
    ),
];

/// One problem in a config file, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong, as one sentence.
    pub message: String,
}

/// Every problem of a file, printed one per line as `FILE:LINE:COL: message`.
#[derive(Debug, Clone)]
pub(crate) struct Problems {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// In the order of the file.
    pub list: Vec<Problem>,
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, problem) in self.list.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                problem.line,
                problem.column,
                problem.message
            )?;
        }
        Ok(())
    }
}

/// Reads and validates `path` (nothing is connected or compiled).
pub(crate) fn load(path: &Path) -> Result<ServiceConfig, Problems> {
    let problems = |list| Problems {
        file: path.to_path_buf(),
        list,
    };
    let text = read_text(path).map_err(|error| {
        problems(vec![Problem {
            line: 1,
            column: 1,
            message: format!("cannot read the file: {error}"),
        }])
    })?;
    parse(&text).map_err(problems)
}

/// `NAME` when `path` is `env:NAME`: the configuration is in that environment variable (a
/// container platform without config files, such as ECS, passes it so).
pub(crate) fn environment_variable(path: &Path) -> Option<&str> {
    path.to_str()?.strip_prefix("env:")
}

/// The text of a config file, or of the environment variable [`environment_variable`] names.
pub(crate) fn read_text(path: &Path) -> std::io::Result<String> {
    match environment_variable(path) {
        Some(name) => std::env::var(name).map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("environment variable {name}: {error}"),
            )
        }),
        None => std::fs::read_to_string(path),
    }
}

/// Reads only the top-level string `key` (`log_format`, `log_level`: logging starts before
/// the rest of the file is read, so a problem in it is reported by [`parse`] instead).
pub(crate) fn peek_string(path: &Path, key: &str) -> Option<String> {
    let text = read_text(path).ok()?;
    let document = DeTable::parse(&text).ok()?;
    match document.get_ref().get(key)?.get_ref() {
        DeValue::String(format) => Some(format.to_string()),
        _ => None,
    }
}

/// The configuration a file's text describes, or every problem in it.
pub(crate) fn parse(text: &str) -> Result<ServiceConfig, Vec<Problem>> {
    parse_located(text).map(|(config, _)| config)
}

/// Like [`parse`], with where each pipeline's filter is set (its `filter` key, else its
/// table), for problems found later (`check` loads the filters).
pub(crate) fn parse_located(
    text: &str,
) -> Result<(ServiceConfig, BTreeMap<String, Problem>), Vec<Problem>> {
    let mut reader = Reader {
        text,
        problems: Vec::new(),
        redactor: Redactor::default(),
        filter_at: BTreeMap::new(),
    };
    let (document, syntax) = DeTable::parse_recoverable(text);
    for error in syntax {
        let at = error.span().unwrap_or(0..0);
        reader.problem(&at, error.message().trim_end().to_string());
    }
    let config = reader.service(document.get_ref());
    let mut problems = reader.problems;
    problems.sort_by_key(|p| (p.line, p.column));
    match config {
        Some(config) if problems.is_empty() => Ok((config, reader.filter_at)),
        _ => Err(problems),
    }
}

/// The state of one read: the text (for positions), what went wrong, the secrets met.
struct Reader<'t> {
    text: &'t str,
    problems: Vec<Problem>,
    redactor: Redactor,
    filter_at: BTreeMap<String, Problem>,
}

/// A value of the file: a flag value, with where it is.
#[derive(Debug, Clone)]
struct Located {
    values: FlagValue,
    span: Range<usize>,
}

/// How a key's value reaches a command line.
#[derive(Debug, Clone)]
enum FlagValue {
    /// A switch: present or not.
    Switch(bool),
    /// One or more values, each given as `--flag value`.
    Values(Vec<String>),
}

/// What a run flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Switch,
    One,
    Many,
}

impl<'t> Reader<'t> {
    fn problem(&mut self, span: &Range<usize>, message: String) {
        let message = self.redactor.redact(&message);
        let at = self.at(span, message);
        self.problems.push(at);
    }

    /// A problem's position (line and column of `span`'s start) with `message`.
    fn at(&self, span: &Range<usize>, message: String) -> Problem {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit_once('\n')
            .map_or(before, |(_, last)| last)
            .chars()
            .count()
            + 1;
        Problem {
            line,
            column,
            message,
        }
    }

    fn service(&mut self, document: &DeTable<'_>) -> Option<ServiceConfig> {
        for key in document.keys() {
            if !GLOBAL_KEYS.contains(&key.get_ref().as_ref()) {
                let message = unknown_key(key.get_ref(), GLOBAL_KEYS, "at the top of the file");
                self.problem(&key.span(), message);
            }
        }
        let state_dir = self
            .string(document, "state_dir")
            .unwrap_or_else(|| "./sse-ingest-state".to_string());
        let cache_dir = self.string(document, "cache_dir");
        let log_format = self.string(document, "log_format");
        if let (Some(format), Some(value)) = (&log_format, document.get("log_format"))
            && format != "text"
            && format != "json"
        {
            self.problem(
                &value.span(),
                format!("`log_format` is `{format}`: expected `text` or `json`"),
            );
        }
        if let (Some(level), Some(value)) = (
            self.string(document, "log_level"),
            document.get("log_level"),
        ) && let Err(error) = crate::cli::logging::filter(&level)
        {
            self.problem(&value.span(), error.to_string());
        }
        let report_interval = self
            .integer(document, "report_interval_ms")
            .map(Duration::from_millis);
        let admin = self.admin(document.get("admin"));
        let mut globals = BTreeMap::new();
        for key in ["region", "endpoint_url"] {
            if let Some(value) = document.get(key)
                && let Some(located) = self.flag_value(key, Takes::One, value)
            {
                globals.insert(key.to_string(), located);
            }
        }
        let flags = run_flags();
        let defaults = match document.get("defaults") {
            Some(value) => match value.get_ref() {
                DeValue::Table(table) => self.pipeline_keys(table, &flags, "in `[defaults]`"),
                _ => {
                    self.problem(&value.span(), "`defaults` must be a table".into());
                    BTreeMap::new()
                }
            },
            None => BTreeMap::new(),
        };
        let tables = match document.get("pipeline") {
            Some(value) => match value.get_ref() {
                DeValue::Array(items) => items.iter().collect::<Vec<_>>(),
                _ => {
                    self.problem(
                        &value.span(),
                        "`pipeline` must be an array of tables: write `[[pipeline]]`".into(),
                    );
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        if tables.is_empty() && self.problems.is_empty() {
            self.problem(
                &(0..0),
                "no pipeline: add a `[[pipeline]]` table with a `name` and a `url`".into(),
            );
        }
        let mut names = HashSet::new();
        let mut pipelines = Vec::new();
        for table in tables {
            let DeValue::Table(entries) = table.get_ref() else {
                self.problem(&table.span(), "each `[[pipeline]]` must be a table".into());
                continue;
            };
            let own = self.pipeline_keys(entries, &flags, "in a `[[pipeline]]`");
            let Some(name) = own.get("name") else {
                self.problem(
                    &table.span(),
                    "this pipeline has no `name` (required, unique)".into(),
                );
                continue;
            };
            if let FlagValue::Values(values) = &name.values
                && let Some(text) = values.first()
                && !names.insert(text.clone())
            {
                self.problem(
                    &name.span,
                    format!("a second pipeline named `{text}`: names must be unique"),
                );
                continue;
            }
            let filter_span = own
                .get("filter")
                .or_else(|| defaults.get("filter"))
                .map_or_else(|| table.span(), |located| located.span.clone());
            if let FlagValue::Values(values) = &name.values
                && let Some(text) = values.first()
            {
                let at = self.at(&filter_span, String::new());
                self.filter_at.insert(text.clone(), at);
            }
            let mut merged = globals.clone();
            merged.extend(defaults.clone());
            merged.extend(own);
            if let Some(config) = self.pipeline(
                &merged,
                &flags,
                &state_dir,
                cache_dir.as_deref(),
                &table.span(),
            ) {
                pipelines.push(config);
            }
        }
        // The process's redactor knows every pipeline's secrets too (those of its URL).
        let mut redactor = self.redactor.clone();
        for pipeline in &pipelines {
            redactor.absorb(&pipeline.secrets);
        }
        Some(ServiceConfig {
            pipelines,
            admin: admin?,
            report_interval,
            redactor,
        })
    }

    fn admin(&mut self, value: Option<&Spanned<DeValue<'_>>>) -> Option<AdminSettings> {
        let Some(value) = value else {
            return Some(AdminSettings::default());
        };
        let DeValue::Table(table) = value.get_ref() else {
            self.problem(
                &value.span(),
                "`admin` must be a table: write `[admin]`".into(),
            );
            return None;
        };
        for key in table.keys() {
            if !ADMIN_KEYS.contains(&key.get_ref().as_ref()) {
                let message = unknown_key(key.get_ref(), ADMIN_KEYS, "in `[admin]`");
                self.problem(&key.span(), message);
            }
        }
        let address = match (self.string(table, "address"), table.get("address")) {
            (Some(text), Some(value)) => match text.parse() {
                Ok(address) => Some(address),
                Err(_) => {
                    self.problem(
                        &value.span(),
                        format!("`address` `{text}` is not IP:PORT, e.g. 127.0.0.1:9090"),
                    );
                    None
                }
            },
            // An `[admin]` table turns the API on; loopback unless told otherwise.
            _ => Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_ADMIN_PORT))),
        };
        let token = match (self.string(table, "token"), table.get("token")) {
            (Some(text), Some(value)) => match self.redactor.expand(&text) {
                Ok(token) => Some(Secret::from(token)),
                Err(message) => {
                    self.problem(&value.span(), format!("`token`: {message}"));
                    None
                }
            },
            _ => None,
        };
        let allow_unauthenticated = self.boolean(table, "allow_unauthenticated");
        let metrics_public = self.boolean(table, "metrics_public");
        let tls = match (
            self.string(table, "tls_cert"),
            self.string(table, "tls_key"),
        ) {
            (Some(cert), Some(key)) => Some(AdminTls {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            }),
            (None, None) => None,
            _ => {
                self.problem(
                    &value.span(),
                    "`tls_cert` and `tls_key` go together: give both or neither".into(),
                );
                None
            }
        };
        let settings = AdminSettings {
            address,
            token,
            allow_unauthenticated,
            metrics_public,
            tls,
        };
        if let Err(message) = settings.check() {
            self.problem(&value.span(), message);
        }
        Some(settings)
    }

    /// A pipeline's keys (or the defaults'), each checked against the run flags.
    fn pipeline_keys(
        &mut self,
        table: &DeTable<'_>,
        flags: &BTreeMap<String, (String, Takes)>,
        place: &str,
    ) -> BTreeMap<String, Located> {
        let mut keys = BTreeMap::new();
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            if let Some((_, why)) = NOT_PIPELINE_KEYS.iter().find(|(k, _)| *k == name) {
                self.problem(
                    &key.span(),
                    format!("`{name}` is not a pipeline key: {why}"),
                );
                continue;
            }
            let Some((_, takes)) = flags.get(name) else {
                let known: Vec<&str> = flags.keys().map(String::as_str).collect();
                let message = unknown_key(name, &known, place);
                self.problem(&key.span(), message);
                continue;
            };
            if let Some(located) = self.flag_value(name, *takes, value) {
                keys.insert(name.to_string(), located);
            }
        }
        keys
    }

    /// A key's TOML value as flag values; headers and the URL have their secrets expanded.
    fn flag_value(
        &mut self,
        key: &str,
        takes: Takes,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<Located> {
        let span = value.span();
        let values = match (takes, value.get_ref()) {
            (Takes::Switch, DeValue::Boolean(on)) => FlagValue::Switch(*on),
            (Takes::Switch, _) => {
                self.problem(&span, format!("`{key}` must be true or false"));
                return None;
            }
            (Takes::Many, DeValue::Array(items)) => {
                let mut values = Vec::new();
                for item in items {
                    values.push(self.scalar(key, item)?);
                }
                FlagValue::Values(values)
            }
            (Takes::One, DeValue::Array(_)) => {
                self.problem(&span, format!("`{key}` takes one value, not a list"));
                return None;
            }
            (_, _) => FlagValue::Values(vec![self.scalar(key, value)?]),
        };
        let values = match values {
            FlagValue::Values(values) if key == "header" => {
                let mut expanded = Vec::new();
                for header in values {
                    match self.redactor.expand_header(&header) {
                        Ok(header) => expanded.push(header),
                        Err(message) => {
                            self.problem(&span, format!("`header`: {message}"));
                            return None;
                        }
                    }
                }
                FlagValue::Values(expanded)
            }
            // The URL may hold a token (`?access_token=${TOKEN}`) or be one whole (`@file`).
            FlagValue::Values(values) if key == "url" => {
                let mut expanded = Vec::new();
                for url in values {
                    match self.redactor.expand_url(&url) {
                        Ok(url) => expanded.push(url),
                        Err(message) => {
                            self.problem(&span, format!("`url`: {message}"));
                            return None;
                        }
                    }
                }
                FlagValue::Values(expanded)
            }
            other => other,
        };
        Some(Located { values, span })
    }

    /// A string, integer, float or boolean as the text a flag would take.
    fn scalar(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<String> {
        match value.get_ref() {
            DeValue::String(text) => Some(text.to_string()),
            DeValue::Integer(integer) => {
                match i128::from_str_radix(integer.as_str(), integer.radix()) {
                    Ok(n) => Some(n.to_string()),
                    Err(_) => {
                        self.problem(&value.span(), format!("`{key}`: the number is too large"));
                        None
                    }
                }
            }
            DeValue::Float(float) => Some(float.as_str().to_string()),
            DeValue::Boolean(on) => Some(on.to_string()),
            DeValue::Datetime(_) | DeValue::Array(_) | DeValue::Table(_) => {
                self.problem(
                    &value.span(),
                    format!("`{key}` takes a string or a number here"),
                );
                None
            }
        }
    }

    fn string(&mut self, table: &DeTable<'_>, key: &str) -> Option<String> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::String(text) => Some(text.to_string()),
            _ => {
                self.problem(&value.span(), format!("`{key}` must be a string"));
                None
            }
        }
    }

    /// `key` of `table` as true or false; false when absent (or wrong, with a problem).
    fn boolean(&mut self, table: &DeTable<'_>, key: &str) -> bool {
        let Some(value) = table.get(key) else {
            return false;
        };
        match value.get_ref() {
            DeValue::Boolean(yes) => *yes,
            _ => {
                self.problem(&value.span(), format!("`{key}` must be true or false"));
                false
            }
        }
    }

    fn integer(&mut self, table: &DeTable<'_>, key: &str) -> Option<u64> {
        let value = table.get(key)?;
        let parsed = match value.get_ref() {
            DeValue::Integer(integer) => {
                u64::from_str_radix(integer.as_str(), integer.radix()).ok()
            }
            _ => None,
        };
        if parsed.is_none() {
            self.problem(
                &value.span(),
                format!("`{key}` must be a whole number of 0 or more"),
            );
        }
        parsed
    }

    /// One pipeline's keys as its command line, parsed and validated as the flags are.
    fn pipeline(
        &mut self,
        keys: &BTreeMap<String, Located>,
        flags: &BTreeMap<String, (String, Takes)>,
        state_dir: &str,
        cache_dir: Option<&str>,
        table: &Range<usize>,
    ) -> Option<PipelineConfig> {
        let mut argv = vec![
            "sse-ingest".to_string(),
            "run".to_string(),
            "--state-dir".to_string(),
            state_dir.to_string(),
        ];
        if let Some(cache_dir) = cache_dir {
            argv.extend(["--cache-dir".to_string(), cache_dir.to_string()]);
        }
        for (key, located) in keys {
            let Some((long, _)) = flags.get(key) else {
                continue;
            };
            match &located.values {
                FlagValue::Switch(true) => argv.push(format!("--{long}")),
                FlagValue::Switch(false) => {}
                FlagValue::Values(values) => {
                    for value in values {
                        // `--flag=value`, so a value starting with `-` stays a value.
                        argv.push(format!("--{long}={value}"));
                    }
                }
            }
        }
        let span_of = |flag: &str| -> Range<usize> {
            keys.get(&flag.replace('-', "_"))
                .map_or_else(|| table.clone(), |located| located.span.clone())
        };
        let args: RunArgs = match crate::cli::parse_run_flags(&argv) {
            Ok(args) => args,
            Err(error) => {
                let flag = error
                    .get(clap::error::ContextKind::InvalidArg)
                    .map(|arg| arg.to_string())
                    .and_then(|arg| {
                        arg.trim_start_matches('-')
                            .split([' ', '='])
                            .next()
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                let text = error.to_string();
                let first = text.lines().next().unwrap_or("invalid value");
                let message = first.trim_start_matches("error: ").replace(
                    &format!("'--{flag} <"),
                    &format!("'{} <", flag.replace('-', "_")),
                );
                self.problem(&span_of(&flag), message);
                return None;
            }
        };
        match pipeline_config(&args) {
            Ok(mut config) => {
                config.secrets.absorb(&self.redactor);
                Some(config)
            }
            Err(error) => {
                let span = error.flag().map_or_else(|| table.clone(), &span_of);
                self.problem(&span, error.to_string());
                None
            }
        }
    }
}

/// Every `run` flag that is a pipeline key: key (`_` for `-`) → (flag, what it takes).
fn run_flags() -> BTreeMap<String, (String, Takes)> {
    let command = RunArgs::augment_args(clap::Command::new("run"));
    command
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?.to_string();
            let takes = match arg.get_action() {
                ArgAction::SetTrue => Takes::Switch,
                ArgAction::Append => Takes::Many,
                _ => Takes::One,
            };
            let key = long.replace('-', "_");
            if NOT_PIPELINE_KEYS.iter().any(|(k, _)| *k == key) {
                return None;
            }
            Some((key, (long, takes)))
        })
        .collect()
}

/// "unknown key `x` PLACE", with the closest known key when one is close.
fn unknown_key(key: &str, known: &[&str], place: &str) -> String {
    let closest = known
        .iter()
        .map(|candidate| (strsim::jaro_winkler(key, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((_, candidate)) => format!("unknown key `{key}` {place}; did you mean `{candidate}`?"),
        None => format!("unknown key `{key}` {place}"),
    }
}

#[cfg(test)]
mod tests;
