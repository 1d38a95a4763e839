//! The command line. Every flag states its default in its doc comment.

pub mod exit;

pub(crate) mod admin_client;
pub(crate) mod commands;
pub(crate) mod config_file;
pub(crate) mod live_line;
pub(crate) mod logging;
pub(crate) mod run_config;
pub(crate) mod seed;

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::cli::logging::LogArgs;
use crate::config::{OnFilterError, ResumePolicy, Secret};
use crate::core::format::Format;
use crate::core::partition::KeyStrategy;

/// Parses the command line and runs the command; returns the exit code, or the failure
/// to print. Help, version and usage errors are printed here (a usage error as one line).
pub fn main() -> Result<u8, exit::Failure> {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(error) if error.use_stderr() => {
            // One line, as for every usage error: the first line of clap's message.
            let text = error.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            return Err(exit::Failure::usage(first.trim_start_matches("error: ")));
        }
        Err(help_or_version) => {
            let _ = help_or_version.print();
            return Ok(exit::OK);
        }
    };
    let run_given = matches
        .subcommand_matches("run")
        .map(RunSources::of)
        .unwrap_or_default();
    let mut log = cli.log.clone();
    if let Command::Run(args) = &cli.command
        && let Some(path) = &args.config
    {
        if log.log_format.is_none()
            && let Some(format) = config_file::peek_string(path, "log_format")
        {
            log.log_format = format.parse().ok();
        }
        if log.log_level.is_none() {
            log.log_level = config_file::peek_string(path, "log_level");
        }
    }
    logging::init(&log);
    match cli.command {
        Command::Run(args) => commands::run::execute(*args, &run_given),
        Command::Check(args) => commands::check::execute(&args),
        Command::Import(args) => commands::import::execute(&args),
        Command::Status(args) => commands::status::execute(&args),
        Command::Shards(args) => commands::shards::execute(&args),
        Command::Health(args) => commands::health::execute(&args),
        Command::Precompile(args) => commands::precompile::execute(&args),
        Command::Swap(args) => commands::swap::execute(args),
        Command::TestFilter(args) => commands::test_filter::execute(args),
        Command::Filters(command) => commands::filters::execute(command),
    }
}

/// Where each of `run`'s given settings came from: the command line or the environment.
/// Only these two count as "given"; a default is not.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunSources {
    command_line: BTreeSet<String>,
    environment: BTreeSet<String>,
}

impl RunSources {
    fn of(matches: &ArgMatches) -> Self {
        // `ids()` also holds the argument group clap makes of the struct: keep arguments.
        let command = Cli::command();
        let arguments: BTreeSet<String> = command
            .find_subcommand("run")
            .map(|run| {
                run.get_arguments()
                    .map(|arg| arg.get_id().as_str().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut sources = Self::default();
        for id in matches.ids() {
            let id = id.as_str();
            if !arguments.contains(id) {
                continue;
            }
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => sources.command_line.insert(id.to_string()),
                Some(ValueSource::EnvVariable) => sources.environment.insert(id.to_string()),
                _ => false,
            };
        }
        sources
    }

    /// The ids (field names) of the flags given on the command line.
    pub(crate) fn on_command_line(&self) -> impl Iterator<Item = &str> {
        self.command_line.iter().map(String::as_str)
    }

    /// Whether the field `id` was set from its environment variable.
    pub(crate) fn set_from_environment(&self, id: &str) -> bool {
        self.environment.contains(id)
    }

    /// For tests: flags given on the command line.
    #[cfg(test)]
    pub(crate) fn command_line_for_tests(ids: &[&str]) -> Self {
        Self {
            command_line: ids.iter().map(|id| id.to_string()).collect(),
            environment: BTreeSet::new(),
        }
    }
}

/// Parses `sse-ingest run FLAGS…` as given by a pipeline of a config file, the seed import or
/// the defaults, reading no environment variable: the process's own variables
/// (`SSE_INGEST_SHARD`, `SSE_INGEST_ADMIN_TOKEN`, …) belong to the process's command line,
/// not to every pipeline (with `SSE_INGEST_SHARD` set, `--shard`'s `requires = "config"`
/// used to fail every pipeline's parse).
pub(crate) fn parse_run_flags<I, T>(argv: I) -> Result<RunArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let command =
        Cli::command().mut_subcommand("run", |run| run.mut_args(|arg| arg.env(None::<&str>)));
    let matches = command.try_get_matches_from(argv)?;
    match Cli::from_arg_matches(&matches)?.command {
        Command::Run(args) => Ok(*args),
        _ => Err(clap::Error::raw(
            clap::error::ErrorKind::InvalidSubcommand,
            "not a `run` command line",
        )),
    }
}

/// `sse-ingest run` with no flags: every default, whatever the environment holds.
pub(crate) fn run_args_defaults() -> RunArgs {
    match parse_run_flags(["sse-ingest", "run"]) {
        Ok(args) => args,
        // No run flag is required and no environment variable is read: this cannot fail.
        Err(error) => unreachable!("`run` without flags parses: {error}"),
    }
}

/// The flags of `sse-ingest run FLAGS…`, parsed as the command line would be (for tests).
#[cfg(test)]
pub(crate) fn run_args_for_tests(flags: &[&str]) -> RunArgs {
    let mut argv = vec!["sse-ingest", "run"];
    argv.extend_from_slice(flags);
    match parse_run_flags(argv) {
        Ok(args) => args,
        Err(error) => panic!("not a run command: {error}"),
    }
}

/// Keeps live Server-Sent-Events streams flowing into Kinesis, files or stdout,
/// shaped by WebAssembly filter components.
#[derive(Debug, Parser)]
#[command(name = "sse-ingest", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// How to log.
    #[command(flatten)]
    pub log: LogArgs,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream events from an SSE endpoint into a sink until stopped.
    Run(Box<RunArgs>),
    /// Run a filter component on recorded events and print or check its records.
    TestFilter(TestFilterArgs),
    /// The built-in filter components.
    #[command(subcommand)]
    Filters(FiltersCommand),
    /// Replace a running pipeline's filter, through its admin API, without dropping a connection or an event.
    Swap(SwapArgs),
    /// Validate a config file without connecting: print every problem as FILE:LINE:COL.
    Check(CheckArgs),
    /// Print the TOML config equivalent of the seed's runtime-properties file.
    Import(ImportArgs),
    /// Print a running process's pipelines as a table (from its admin API); exit 1 if not ready.
    Status(StatusArgs),
    /// Print which shard runs each pipeline of a config file (`run --shard INDEX/COUNT`).
    Shards(ShardsArgs),
    /// Exit 0 when a running process is healthy (its admin API answers `/health`, or with
    /// --ready `/ready`): a container health check without curl.
    Health(HealthArgs),
    /// Compile the built-in components ahead of time into DIR, for a portable CPU baseline
    /// (a container image ships them; `run` loads them instead of compiling).
    Precompile(PrecompileArgs),
}

/// Flags of `sse-ingest health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The admin address of the process.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: String,
    /// Ask `/ready` (every pipeline connected) instead of `/health` (the process answers).
    #[arg(long)]
    pub ready: bool,
    /// Give up after this long. Default: 5000.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

/// Flags of `sse-ingest precompile`.
#[derive(Debug, Clone, Args)]
pub struct PrecompileArgs {
    /// Where the compiled components go (created if missing).
    pub dir: PathBuf,
}

/// Flags of `sse-ingest shards`.
#[derive(Debug, Clone, Args)]
pub struct ShardsArgs {
    /// The config file (TOML), or `env:NAME` for a variable holding it.
    pub file: PathBuf,
    /// The number of shards.
    #[arg(long)]
    pub count: u32,
}

/// Flags of `sse-ingest status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The admin address of the process (`run --admin`, or `[admin]` of its config file).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: String,
    /// The admin token, if the process has one (better from the environment than on the
    /// command line, which every local user can read).
    #[arg(long, env = "SSE_INGEST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
}

/// Flags of `sse-ingest check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The config file (TOML), or `env:NAME` for a variable holding it.
    pub file: PathBuf,
}

/// Flags of `sse-ingest import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The seed's runtime-properties JSON (as `run --properties` reads it).
    #[arg(long, value_name = "FILE")]
    pub properties: PathBuf,
}

/// Flags of `sse-ingest run`.
///
/// `Debug` shows the admin token, header values and the proxy URL as `[redacted]`;
/// equality compares them, which is how a reload tells a changed pipeline (a rotated
/// secret too) from an unchanged one.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct RunArgs {
    /// Run every pipeline of this TOML file (each `run` flag is a key of the same name,
    /// `_` for `-`); SIGHUP reloads it. The other run flags cannot be given with it.
    /// `env:NAME` reads the TOML from the environment variable NAME (where no file can be
    /// mounted, as on ECS).
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// With --config: reload whenever the file changes, as on SIGHUP.
    #[arg(long, requires = "config")]
    pub watch_config: bool,
    /// No one-line live summary on an interactive terminal.
    #[arg(long)]
    pub quiet: bool,
    /// With --config: run only this shard's pipelines, `INDEX/COUNT` (e.g. `0/2`). Each
    /// pipeline runs on exactly one shard (rendezvous hashing of its name).
    #[arg(
        long,
        env = "SSE_INGEST_SHARD",
        requires = "config",
        conflicts_with = "shard_from_hostname",
        value_name = "INDEX/COUNT",
        value_parser = crate::config::shard::Shard::parse
    )]
    pub shard: Option<crate::config::shard::Shard>,
    /// With --config: the shard's INDEX is the `-ORDINAL` ending the hostname (a Kubernetes
    /// StatefulSet pod's name, e.g. `sse-ingest-2`); COUNT is --shard-count.
    #[arg(
        long,
        env = "SSE_INGEST_SHARD_FROM_HOSTNAME",
        requires_all = ["config", "shard_count"]
    )]
    pub shard_from_hostname: bool,
    /// The number of shards, with --shard-from-hostname (the StatefulSet's replicas).
    #[arg(long, env = "SSE_INGEST_SHARD_COUNT", requires = "shard_from_hostname")]
    pub shard_count: Option<u32>,
    /// The SSE endpoint (http or https).
    #[arg(
        long,
        default_value = "https://stream.wikimedia.org/v2/stream/recentchange"
    )]
    pub url: String,
    /// The seed's runtime-properties JSON (SSESourceProperties, OutputStreamProperties,
    /// ProducerConfigProperties); flags given with non-default values win over it.
    #[arg(long, value_name = "FILE")]
    pub properties: Option<PathBuf>,
    /// An extra request header, `Name: value`; repeat for more.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<Secret>,
    /// Keep only these SSE event types (comma-separated); default: all.
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// Record format: `raw` (the event's data) or `envelope` (a JSON object with event, id, data, source, received_at).
    #[arg(long, value_enum, default_value_t = FormatArg::Raw)]
    pub format: FormatArg,
    /// Where records go: `file:DIR`, `stdout`, `kinesis:STREAM`, or `discard` (acknowledged
    /// and kept nowhere: to measure the pipeline, or a dry run). Default: `file:./sse-ingest-out`.
    #[arg(long, default_value = "file:./sse-ingest-out")]
    pub sink: String,
    /// Do not reconnect: when the stream ends, write everything received and exit 0.
    #[arg(long)]
    pub once: bool,
    /// Largest event the parser buffers; a larger one is dropped with a warning. Default: 4 MiB.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_event_bytes: u64,
    /// Reconnect when no byte (not even a comment) arrives for this long. Default: 60000.
    #[arg(long, default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Give up a connection attempt (TCP and TLS, then the response head) after this long. Default: 10000.
    #[arg(long, default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
    /// The filter component: a built-in name (`passthrough`, `types`, `json-match`, `wikimedia`) or a `.wasm` file. Default: passthrough.
    #[arg(long, default_value = "passthrough")]
    pub filter: String,
    /// A `key=value` setting for the filter; repeat for more.
    #[arg(long = "filter-config", value_name = "KEY=VALUE")]
    pub filter_config: Vec<String>,
    /// The pipeline's name (in logs, metrics, file names and the state directory). Default: default.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Where checkpoints and the compiled-component cache live. Default: ./sse-ingest-state.
    #[arg(long, default_value = "./sse-ingest-state")]
    pub state_dir: PathBuf,
    /// First reconnect delay when the server sent no `retry:`. Default: 1000.
    #[arg(long, default_value_t = 1000)]
    pub reconnect_initial_ms: u64,
    /// Floor for every reconnect delay, including a server's `retry: 0`. Default: 100.
    #[arg(long, default_value_t = 100)]
    pub reconnect_min_ms: u64,
    /// Cap of the exponential reconnect backoff. Default: 30000.
    #[arg(long, default_value_t = 30_000)]
    pub reconnect_max_ms: u64,
    /// HTTP statuses that end the pipeline instead of reconnecting (comma-separated). Default: 401,403,404,410.
    #[arg(long, value_delimiter = ',', default_value = "401,403,404,410")]
    pub fatal_statuses: Vec<u16>,
    /// Reconnect (instead of failing) when the server answers with a content type other than text/event-stream.
    #[arg(long)]
    pub retry_wrong_content_type: bool,
    /// At most one checkpoint write per this many milliseconds (0: after every batch); a
    /// `kill -9` repeats at most the records acknowledged in that time. Default: 1000.
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_interval_ms: u64,
    /// Where checkpoints are kept: `file` (STATE_DIR/pipelines/NAME/checkpoint.json) or
    /// `dynamodb:TABLE` (an item per pipeline, keyed `pipeline`, that outlives the machine:
    /// another replica can take the pipeline over). Default: file.
    #[arg(long, default_value = "file", value_name = "file|dynamodb:TABLE")]
    pub checkpoint_store: String,
    /// The DynamoDB endpoint of `--checkpoint-store dynamodb:TABLE`, e.g. a local server.
    /// Default: the region's.
    #[arg(long, value_name = "URL")]
    pub checkpoint_endpoint_url: Option<String>,
    /// A prefix of the DynamoDB checkpoint items' keys (`NAMESPACE/NAME`), so that two
    /// deployments sharing a table never take each other's pipelines. Default: none.
    #[arg(long, value_name = "NAMESPACE")]
    pub checkpoint_namespace: Option<String>,
    /// How often a DynamoDB checkpoint's owner reads (batched, strongly consistent) that it
    /// still holds its items, so an idle pipeline that was taken over stops. Default: 10000.
    #[arg(long, default_value_t = 10_000)]
    pub checkpoint_heartbeat_ms: u64,
    /// How many recent event ids are remembered to drop events a server replays twice. Default: 10000.
    #[arg(long, default_value_t = 10_000)]
    pub dedupe_window: usize,
    /// AWS region of the Kinesis stream; default: the standard AWS chain (AWS_REGION, profile, IMDS).
    #[arg(long)]
    pub region: Option<String>,
    /// Kinesis endpoint URL, e.g. a local Kinesis server. Credentials always come from the standard AWS chain.
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Kinesis: no record overtakes an earlier record with the same partition key, even under retries.
    #[arg(long)]
    pub ordered: bool,
    /// Kinesis: pack records into KPL aggregated records, per predicted shard, up to the record limit; only for consumers that de-aggregate (KCL, Firehose, Lambda with the KPL aggregation library).
    #[arg(long)]
    pub aggregate: bool,
    /// Kinesis: PutRecords requests in flight at once. Default: 4.
    #[arg(long, default_value_t = 4)]
    pub max_in_flight: usize,
    /// Kinesis: how long a partly filled request waits for more records. Default: 100.
    #[arg(long, default_value_t = 100)]
    pub linger_ms: u64,
    /// Kinesis: how long a record is retried (throttling, failures) before it becomes a dead letter. Default: 300000.
    #[arg(long, default_value_t = 300_000)]
    pub record_deadline_ms: u64,
    /// Kinesis: records per PutRecords request, 1 to 500. Default: 500.
    #[arg(long, default_value_t = 500)]
    pub max_records_per_request: usize,
    /// Kinesis: data + partition key bytes per PutRecords request. Default: 5242880 (5 MiB).
    #[arg(long, default_value_t = 5 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Kinesis: largest record (data + partition key bytes); larger ones are dead-lettered. Default: the stream's MaxRecordSizeInKiB, else 1 MiB.
    #[arg(long)]
    pub max_record_bytes: Option<usize>,
    /// Kinesis: records buffered and not yet acknowledged; when full, reading the source pauses. Default: 10000.
    #[arg(long, default_value_t = 10_000)]
    pub buffer_max_records: usize,
    /// Kinesis: bytes of those records (data + partition key). Default: 67108864 (64 MiB).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub buffer_max_bytes: usize,
    /// Kinesis: time limit of one PutRecords attempt, after which its records are retried. Default: 10000.
    #[arg(long, default_value_t = 10_000)]
    pub attempt_timeout_ms: u64,
    /// Kinesis: time limit of one PutRecords operation. Default: 15000.
    #[arg(long, default_value_t = 15_000)]
    pub operation_timeout_ms: u64,
    /// On a stop (SIGTERM/SIGINT, a reload), how long to wait for buffered records to be delivered; the rest are dead letters. Default: 30000.
    #[arg(long, default_value_t = 30_000)]
    pub shutdown_timeout_ms: u64,
    /// At the end of a stream (`--once`, or a source that failed), the drain into Kinesis goes on while records are acknowledged; it gives up (dead letters, exit 1) after this long without one. Default: 60000.
    #[arg(long, default_value_t = 60_000)]
    pub drain_stall_timeout_ms: u64,
    /// Partition key of records a filter leaves unkeyed: `const:VALUE`, `type`, `id`, `json:/POINTER` or `random`. Default: id.
    #[arg(long, default_value = "id")]
    pub partition_key: KeyStrategy,
    /// Where undeliverable events and records go, with the reason: `file:DIR`. Default: file:STATE_DIR/dead-letters.
    #[arg(long)]
    pub dead_letter: Option<String>,
    /// Most bytes of dead letters kept for the pipeline (its files under the dead-letter
    /// directory); when full, the pipeline stops taking events until files are moved away
    /// (dead letters are never dropped). Range 1024 to 1099511627776 (1 TiB). Default:
    /// 1073741824 (1 GiB).
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    pub dead_letter_max_bytes: u64,
    /// File sink (and dead letters): roll a file once it holds this many bytes. Range 1024 to
    /// 1073741824 (1 GiB). Default: 67108864 (64 MiB).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub file_roll_bytes: u64,
    /// File sink (and dead letters): roll a file once it is this old, even when nothing more
    /// is written, so a record is in a finished file within this time. Range 1000 to 3600000.
    /// Default: 60000.
    #[arg(long, default_value_t = 60_000)]
    pub file_roll_interval_ms: u64,
    /// What happens to a batch the filter fails on. Default: dead-letter.
    #[arg(long, value_enum, default_value_t = OnFilterErrorArg::DeadLetter)]
    pub on_filter_error: OnFilterErrorArg,
    /// A swapped-in filter that fails within this many batches is rolled back. Default: 10.
    #[arg(long, default_value_t = 10)]
    pub rollback_batches: u32,
    /// CPU time a filter may spend on one batch before it is stopped. Default: 500.
    #[arg(long, default_value_t = 500)]
    pub filter_cpu_budget_ms: u64,
    /// Memory a filter instance may use, in MiB. Default: 64.
    #[arg(long, default_value_t = 64)]
    pub filter_memory_mib: usize,
    /// Serve the admin HTTP API (metrics, status, filter swaps) on this address, e.g.
    /// 127.0.0.1:9090. With --config, it overrides the file's `[admin]` `address` (and serves
    /// the API even where the file has no `[admin]` table).
    #[arg(long, env = "SSE_INGEST_ADMIN", value_name = "IP:PORT")]
    pub admin: Option<std::net::SocketAddr>,
    /// The admin API's bearer token, required by its mutating endpoints (and for an
    /// address off loopback). Default: none.
    #[arg(long, env = "SSE_INGEST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// Serve the admin API off loopback without a token.
    #[arg(long)]
    pub admin_allow_unauthenticated: bool,
    /// Watch the `--filter` file and swap it in whenever it changes.
    #[arg(long)]
    pub watch: bool,
    /// Where compiled components are cached. Default: STATE_DIR/component-cache.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Most events per batch handed from the source to the filter. Default: 512.
    #[arg(long, default_value_t = 512)]
    pub batch_max_events: u32,
    /// Most bytes (data, ids, types) per batch handed from the source to the filter; a
    /// single larger event goes alone. The filter's memory must hold the largest batch
    /// (checked at start). Range 65536 to 268435456. Default: 4194304 (4 MiB).
    #[arg(long, default_value_t = crate::config::sizing::DEFAULT_BATCH_MAX_BYTES)]
    pub batch_max_bytes: u64,
    /// The User-Agent request header. Keep `sse-ingest/VERSION` in it and add how to reach
    /// you, as public streams such as Wikimedia's ask. Default: sse-ingest/VERSION.
    #[arg(long, default_value = concat!("sse-ingest/", env!("CARGO_PKG_VERSION")))]
    pub user_agent: String,
    /// A PEM file of certificate authorities to trust besides the system's (e.g. a private
    /// CA); repeat for more.
    #[arg(long = "ca-file", value_name = "PEM")]
    pub ca_files: Vec<PathBuf>,
    /// A client certificate chain (PEM), for endpoints that require mutual TLS; needs --client-key.
    #[arg(long, value_name = "PEM", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// An http:// proxy for every request (CONNECT tunnel for https); default: HTTPS_PROXY,
    /// HTTP_PROXY or ALL_PROXY from the environment, as curl reads them.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<Secret>,
    /// Hosts that go direct, comma-separated (domains with their subdomains, IPs, CIDR
    /// ranges, `*`); default: NO_PROXY from the environment.
    #[arg(long, value_name = "LIST")]
    pub no_proxy: Option<String>,
    /// Resume from the checkpoint: `auto` when it belongs to this stream (URL and
    /// content-selecting headers; another stream's is not used, with a warning), `require`
    /// (another stream's checkpoint stops the start), `never`. Default: auto.
    #[arg(long, default_value = "auto", value_parser = parse_resume)]
    pub resume: ResumePolicy,
    /// Kinesis: another stream the filter may send records to (a filter naming any other
    /// stream gets a dead letter); repeat for more.
    #[arg(long = "allow-stream", value_name = "NAME")]
    pub allow_streams: Vec<String>,
    /// Another origin (`https://host[:port]`) that redirects may lead to; repeat for more.
    /// The configured URL's origin is always allowed, nothing else is.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Send the `--header`s on after a redirect to another (allowed) origin too; by default
    /// they are dropped there, since they often carry a key meant for the first origin only.
    #[arg(long)]
    pub keep_headers_on_redirect: bool,
}

fn parse_resume(text: &str) -> Result<ResumePolicy, String> {
    text.parse()
}

/// `--on-filter-error`, as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnFilterErrorArg {
    /// Write the batch's events to the dead-letter output with the error; go on.
    DeadLetter,
    /// Restore the previous filter version (kept after a swap's probation too, so at any
    /// time) and re-run the batch on it; with none kept, dead-letter.
    Rollback,
    /// Stop the pipeline with the error (exit code 1).
    Stop,
}

impl From<OnFilterErrorArg> for OnFilterError {
    fn from(arg: OnFilterErrorArg) -> Self {
        match arg {
            OnFilterErrorArg::DeadLetter => OnFilterError::DeadLetter,
            OnFilterErrorArg::Rollback => OnFilterError::Rollback,
            OnFilterErrorArg::Stop => OnFilterError::Stop,
        }
    }
}

/// `--format`, as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// The event's data as UTF-8 bytes.
    Raw,
    /// One JSON object: `{"event","id","data","source","received_at"}`.
    Envelope,
}

impl From<FormatArg> for Format {
    fn from(arg: FormatArg) -> Self {
        match arg {
            FormatArg::Raw => Format::Raw,
            FormatArg::Envelope => Format::Envelope,
        }
    }
}

/// Flags of `sse-ingest swap`.
#[derive(Debug, Clone, Args)]
pub struct SwapArgs {
    /// The admin address the pipeline was started with (`run --admin`).
    #[arg(long)]
    pub admin: String,
    /// The pipeline's name. Default: default.
    #[arg(long, default_value = "default")]
    pub pipeline: String,
    /// The admin token, if the process has one (better from the environment than on the
    /// command line, which every local user can read).
    #[arg(long, env = "SSE_INGEST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// The new filter: a `.wasm` file or a built-in name.
    #[arg(long)]
    pub filter: String,
    /// A `key=value` setting for the new filter; repeat for more.
    #[arg(long = "filter-config", value_name = "KEY=VALUE")]
    pub filter_config: Vec<String>,
}

/// Flags of `sse-ingest test-filter`.
#[derive(Debug, Clone, Args)]
pub struct TestFilterArgs {
    /// The filter: a `.wasm` file or a built-in name.
    pub filter: String,
    /// Recorded events: an `.sse` capture, or lines as `run --sink file:DIR` writes them
    /// (envelope objects with `event` and `data`; any other line is the data of a
    /// `message` event, as in the raw format).
    #[arg(long)]
    pub input: PathBuf,
    /// A `key=value` setting for the filter; repeat for more.
    #[arg(long = "filter-config", value_name = "KEY=VALUE")]
    pub filter_config: Vec<String>,
    /// Expected records as JSON lines (`{"data", "partition_key"?, "stream"?}`); exit 1 on the first difference.
    #[arg(long)]
    pub expect: Option<PathBuf>,
    /// The pipeline format the filter sees. Default: raw.
    #[arg(long, value_enum, default_value_t = FormatArg::Raw)]
    pub format: FormatArg,
}

/// Subcommands of `sse-ingest filters`.
#[derive(Debug, Clone, Subcommand)]
pub enum FiltersCommand {
    /// List the built-in filters.
    List,
    /// Write the built-in filters to DIR as NAME.wasm.
    Export {
        /// The folder to write to (created if missing).
        dir: PathBuf,
    },
    /// Write a new filter project to DIR (outside this repository): it keeps every event
    /// unchanged out of the box, `DIR/build.sh` builds it and `DIR/test.sh` checks it.
    New {
        /// The project's language.
        #[arg(long, value_enum)]
        lang: crate::cli::commands::new_filter::Lang,
        /// The folder to write to (created if missing; must be empty).
        dir: PathBuf,
    },
}
