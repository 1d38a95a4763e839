//! `sse-ingest run`: one pipeline from flags, or every pipeline of `--config FILE`.
//!
//! Both become a [`ServiceConfig`] and run the same code. With a config file, SIGHUP (and
//! with `--watch-config`, any change of the file) reloads it; a file that fails
//! validation is refused whole and the running set stays as it was.

use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, watch};

use crate::cli::config_file;
use crate::cli::exit::{self, Failure};
use crate::cli::{RunArgs, RunSources};
use crate::config::shard::Shard;
use crate::config::{AdminSettings, Secret, ServiceConfig};
use crate::pipeline::checkpoint::CheckpointError;
use crate::pipeline::state_lock::LockError;
use crate::pipeline::{PipelineEnd, PipelineError};
use crate::service::{Outcome, PipelineFailure, Service};
use crate::sink::SinkError;
use crate::wasm::filter::FilterError;

/// Threads of the blocking pool.
const BLOCKING_THREADS: usize = 16;

/// Runs what the flags or the config file describe; returns the exit code.
pub fn execute(mut args: RunArgs, sources: &RunSources) -> Result<u8, Failure> {
    let config_file = args.config.clone();
    let shard = shard(&args)?;
    let config = match &config_file {
        Some(path) => {
            refuse_pipeline_flags(sources)?;
            if args.watch_config && config_file::environment_variable(path).is_some() {
                return Err(Failure::usage(
                    "--watch-config watches a file; --config env:NAME has none (send SIGHUP to reload)",
                ));
            }
            let mut config = config_file::load(path).map_err(Failure::usage)?;
            if let Some(address) = args.admin {
                config.admin.address = Some(address);
            }
            if sources.set_from_environment("admin_token") {
                admin_token_from_environment(
                    &mut config,
                    args.admin_token.as_ref().map(Secret::expose),
                )?;
            }
            config.admin.check().map_err(Failure::usage)?;
            take_share(config, shard)
        }
        None => {
            if let Some(path) = args.properties.clone() {
                crate::cli::seed::SeedProperties::load(&path)
                    .map_err(Failure::usage)?
                    .apply(&mut args);
            }
            from_flags(&args)?
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // File, checkpoint and dead-letter writes and DNS lookups run on the blocking pool
        // (`core::blocking`); a few threads keep up with a thousand pipelines, and each
        // thread costs an allocator heap.
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
    let watch_config = args.watch_config;
    let live = crate::cli::live_line::wanted(args.quiet);
    runtime.block_on(run(config, config_file, shard, watch_config, live))
}

/// `--shard I/N`, or `--shard-from-hostname` with `--shard-count N`; none without either.
fn shard(args: &RunArgs) -> Result<Option<Shard>, Failure> {
    if let Some(shard) = args.shard {
        return Ok(Some(shard));
    }
    match (args.shard_from_hostname, args.shard_count) {
        (true, Some(count)) => {
            let hostname = gethostname::gethostname();
            Shard::from_hostname(&hostname.to_string_lossy(), count)
                .map(Some)
                .map_err(|e| Failure::usage(format!("--shard-from-hostname: {e}")))
        }
        _ => Ok(None),
    }
}

/// Keeps the pipelines `shard` runs (all of them without sharding). The whole file was
/// validated first, so every replica refuses a bad file alike.
fn take_share(mut config: ServiceConfig, shard: Option<Shard>) -> ServiceConfig {
    if let Some(shard) = shard {
        let total = config.pipelines.len();
        config
            .pipelines
            .retain(|pipeline| shard.owns(&pipeline.name));
        let names: Vec<&str> = config.pipelines.iter().map(|p| p.name.as_str()).collect();
        tracing::info!(
            shard = %shard,
            pipelines = names.len(),
            of = total,
            names = %names.join(","),
            "this shard's pipelines"
        );
        if names.is_empty() {
            tracing::warn!(shard = %shard, "no pipeline falls to this shard: idle until the configuration or the shard count changes");
        }
    }
    config
}

/// One pipeline from the flags.
fn from_flags(args: &RunArgs) -> Result<ServiceConfig, Failure> {
    let pipeline = crate::cli::run_config::pipeline_config(args).map_err(Failure::usage)?;
    let admin = AdminSettings {
        address: args.admin,
        token: args.admin_token.clone(),
        allow_unauthenticated: args.admin_allow_unauthenticated,
        ..AdminSettings::default()
    };
    admin.check().map_err(Failure::usage)?;
    let mut redactor = pipeline.secrets.clone();
    if let Some(token) = &admin.token {
        redactor.remember(token.expose());
    }
    Ok(ServiceConfig {
        pipelines: vec![pipeline],
        admin,
        report_interval: None,
        redactor,
    })
}

/// The `run` flags that belong to the process, not to a pipeline: they may stand beside
/// `--config`.
const PROCESS_FLAGS: &[&str] = &[
    "admin",
    "config",
    "watch_config",
    "quiet",
    "shard",
    "shard_from_hostname",
    "shard_count",
];

/// With `--config`, every pipeline setting comes from the file: a pipeline flag given on the
/// command line beside it would be silently ignored, so it is an error that names the flags.
/// What clap filled in from a default or from the environment is not "given" here (a
/// container's `SSE_INGEST_SHARD` or `SSE_INGEST_ADMIN_TOKEN` is the process's).
fn refuse_pipeline_flags(sources: &RunSources) -> Result<(), Failure> {
    let pipeline_flags: Vec<String> = sources
        .on_command_line()
        .filter(|id| !PROCESS_FLAGS.contains(id))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if pipeline_flags.is_empty() {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "--config takes every setting from the file; give {} as keys there",
        pipeline_flags.join(", ")
    )))
}

/// `SSE_INGEST_ADMIN_TOKEN` beside `--config`: the token of the file's `[admin]` API when the
/// file names none, and refused when the file names another (two tokens for one API would
/// leave an operator guessing which one works). Without an `[admin]` table the variable
/// opens no API: it is ignored, and the log says so.
fn admin_token_from_environment(
    config: &mut ServiceConfig,
    token: Option<&str>,
) -> Result<(), Failure> {
    let Some(token) = token else {
        return Ok(());
    };
    if config.admin.address.is_none() {
        tracing::info!(
            "SSE_INGEST_ADMIN_TOKEN is set but the config file has no [admin] table: no admin API is served"
        );
        return Ok(());
    }
    match &config.admin.token {
        Some(from_file) if from_file.expose() != token => Err(Failure::usage(
            "SSE_INGEST_ADMIN_TOKEN differs from the config file's [admin] token; set one of them",
        )),
        Some(_) => Ok(()),
        None => {
            config.admin.token = Some(Secret::from(token));
            config.redactor.remember(token);
            Ok(())
        }
    }
}

async fn run(
    config: ServiceConfig,
    file: Option<PathBuf>,
    shard: Option<Shard>,
    watch_file: bool,
    live: bool,
) -> Result<u8, Failure> {
    let (stop_admin_tx, stop_admin_rx) = watch::channel(false);
    let single = file.is_none();
    let mut service = Service::start(&config, stop_admin_rx)
        .await
        .map_err(Failure::usage)?;
    let mut signals = Signals::new()?;
    let live_line = live.then(|| crate::cli::live_line::spawn(service.pipelines()));
    let (reload_tx, mut reload_rx) = mpsc::unbounded_channel::<()>();
    let _watcher = match (&file, watch_file) {
        (Some(path), true) => Some(watch_config_file(path, reload_tx.clone())?),
        _ => None,
    };
    // A shard that is given no pipeline (more replicas than pipelines) stays up until it is
    // stopped: a replica that exited would be restarted over and over by its orchestrator.
    // One whose pipelines ended (`once`) exits as usual.
    let mut idle_allowed = shard.is_some() && config.pipelines.is_empty();
    while service.is_running() || idle_allowed {
        tokio::select! {
            ended = service.next_end(), if service.is_running() => {
                if ended.is_none() {
                    break;
                }
            }
            signal = signals.next() => match (signal, &file) {
                (Signal::Stop, _) => {
                    tracing::info!("stop requested: finishing what was received");
                    idle_allowed = false;
                    service.stop_all();
                }
                (Signal::Reload, Some(_)) => {
                    let _ = reload_tx.send(());
                }
                (Signal::Reload, None) => {
                    tracing::warn!("SIGHUP ignored: there is no config file to reload (run --config FILE)");
                }
            },
            Some(()) = reload_rx.recv() => {
                if let Some(path) = &file
                    && let Some(assigned) = reload(&mut service, path, shard)
                {
                    idle_allowed = shard.is_some() && assigned == 0;
                }
            }
        }
    }
    let _ = stop_admin_tx.send(true);
    if let Some(task) = live_line {
        task.abort();
        crate::cli::live_line::clear();
    }
    exit_code(service.into_outcomes(), single).map_err(|failure| Failure {
        code: failure.code,
        message: config.redactor.redact(&failure.message),
    })
}

/// Reads the file again and applies it, or keeps everything as it is and says why. Returns
/// how many pipelines it now runs, when it was applied.
fn reload(service: &mut Service, path: &Path, shard: Option<Shard>) -> Option<usize> {
    match config_file::load(path) {
        Ok(config) => {
            let config = take_share(config, shard);
            service.reload(&config);
            Some(config.pipelines.len())
        }
        Err(problems) => {
            for problem in problems.to_string().lines() {
                tracing::error!(
                    problem,
                    "configuration refused; the running pipelines stay as they are"
                );
            }
            None
        }
    }
}

/// Reloads whenever the file is written (its folder is watched: editors replace files).
fn watch_config_file(
    path: &Path,
    reload: mpsc::UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher, Failure> {
    let file_name = path.file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && (event.kind.is_create() || event.kind.is_modify())
            && event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == file_name)
        {
            let _ = reload.send(());
        }
    })
    .map_err(|e| Failure::failed(format!("cannot watch {}: {e}", path.display())))?;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    watcher
        .watch(&folder, RecursiveMode::NonRecursive)
        .map_err(|e| Failure::failed(format!("cannot watch {}: {e}", path.display())))?;
    Ok(watcher)
}

/// One pipeline: its own exit code as before. Several: 0 when none failed, else the code
/// of the first failure, with every failure in the message.
fn exit_code(outcomes: Vec<(String, Outcome)>, single: bool) -> Result<u8, Failure> {
    let mut failures: Vec<(String, Failure)> = Vec::new();
    let mut code = exit::OK;
    for (name, outcome) in outcomes {
        match classify(outcome) {
            Ok(own) => code = code.max(own),
            Err(failure) => failures.push((name, failure)),
        }
    }
    if single {
        return match failures.pop() {
            Some((_, failure)) => Err(failure),
            None => Ok(code),
        };
    }
    match failures.first() {
        None => Ok(code),
        Some((_, first)) => Err(Failure {
            code: first.code,
            message: failures
                .iter()
                .map(|(name, failure)| format!("pipeline `{name}`: {}", failure.message))
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

/// A pipeline's end as an exit code (a good end) or a failure.
fn classify(outcome: Outcome) -> Result<u8, Failure> {
    match outcome {
        Ok(PipelineEnd::EndOfStream | PipelineEnd::Stopped) => Ok(exit::OK),
        Ok(PipelineEnd::NoContent) => Err(Failure {
            code: exit::SERVER_SAID_STOP,
            message:
                "the server answered 204 No Content, which means \"stop reconnecting\"; stopped"
                    .to_string(),
        }),
        Err(error @ PipelineFailure::Lock(LockError::Held { .. })) => Err(Failure::usage(error)),
        Err(error @ PipelineFailure::Lock(LockError::Io { .. })) => Err(Failure::failed(error)),
        Err(PipelineFailure::Filter(reason)) => Err(Failure::usage(reason)),
        // A filter that refuses its configuration at start is a configuration error.
        Err(PipelineFailure::Run(error @ PipelineError::Filter(FilterError::Init(_)))) => {
            Err(Failure::usage(error))
        }
        Err(PipelineFailure::Run(error @ PipelineError::Resume(_))) => Err(Failure::usage(error)),
        // Another owner runs it now: an end, not a failure (logged as it happened).
        Err(PipelineFailure::Run(PipelineError::Checkpoint(CheckpointError::Fenced {
            ..
        }))) => Ok(exit::HANDED_OVER),
        // The reader of stdout is done with us: stop quietly, like any Unix tool.
        Err(PipelineFailure::Run(PipelineError::Sink(SinkError::ReaderGone))) => {
            Ok(exit::READER_GONE)
        }
        Err(PipelineFailure::Run(error)) => Err(Failure::failed(error)),
    }
}

/// SIGINT/SIGTERM (stop) and SIGHUP (reload).
struct Signals {
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, Failure> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind| {
            signal(kind).map_err(|e| Failure::failed(format!("cannot listen for signals: {e}")))
        };
        Ok(Self {
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Signal::Stop,
            _ = self.terminate.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Reload,
        }
    }
}

/// What a signal asks for.
enum Signal {
    /// SIGINT or SIGTERM.
    Stop,
    /// SIGHUP.
    Reload,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service_with_admin(token: Option<&str>) -> ServiceConfig {
        ServiceConfig {
            pipelines: Vec::new(),
            admin: AdminSettings {
                address: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9090))),
                token: token.map(Secret::from),
                ..AdminSettings::default()
            },
            report_interval: None,
            redactor: crate::config::Redactor::default(),
        }
    }

    #[test]
    fn process_flags_may_stand_beside_a_config_file() {
        let sources = RunSources::command_line_for_tests(&[
            "config",
            "shard",
            "admin",
            "quiet",
            "watch_config",
        ]);
        assert!(refuse_pipeline_flags(&sources).is_ok());
    }

    #[test]
    fn a_pipeline_flag_beside_a_config_file_is_refused_by_name() {
        let sources = RunSources::command_line_for_tests(&["config", "url", "max_event_bytes"]);
        let failure = refuse_pipeline_flags(&sources).unwrap_err();
        assert!(
            failure.message.contains("--max-event-bytes, --url"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn the_environments_admin_token_fills_a_file_without_one() {
        let mut config = service_with_admin(None);
        admin_token_from_environment(&mut config, Some("from-the-environment")).unwrap();
        assert_eq!(
            config.admin.token.as_ref().map(Secret::expose),
            Some("from-the-environment")
        );
        assert_eq!(
            config.redactor.redact("x from-the-environment y"),
            "x [redacted] y"
        );
    }

    #[test]
    fn the_environments_admin_token_must_match_the_files() {
        let mut same = service_with_admin(Some("one-token-for-both"));
        assert!(admin_token_from_environment(&mut same, Some("one-token-for-both")).is_ok());
        let mut other = service_with_admin(Some("the-files-token"));
        let failure =
            admin_token_from_environment(&mut other, Some("the-environments")).unwrap_err();
        assert!(failure.message.contains("differs"), "{}", failure.message);
        assert_eq!(
            other.admin.token.as_ref().map(Secret::expose),
            Some("the-files-token")
        );
    }
}
