//! The container image recipe (deploy/Dockerfile), tested without a container engine: its
//! ENTRYPOINT, CMD, ENV and HEALTHCHECK are read from the file and run here, with the
//! image's paths mapped to temporary ones, against a local SSE server. What a build would
//! do (compile the components ahead of time) is done by the same subcommand the file runs.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::numbered::frame;
use support::sse_server::{Answer, Gate, Response, SseServer, Step};
use support::{WithAdmin, free_port, run_with_limit, sink_lines_so_far, sse_ingest, stderr_of};

const LIMIT: Duration = Duration::from_secs(120);

/// What the runtime stage of the Dockerfile says, and the build stage's precompile target.
#[derive(Debug, Default)]
struct Recipe {
    env: BTreeMap<String, String>,
    user: String,
    workdir: String,
    volumes: Vec<String>,
    exposed: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    /// Where the build stage's `sse-ingest precompile DIR` writes.
    precompile_dir: String,
}

/// A JSON array of strings (the exec form), as Docker reads it.
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("not an exec-form JSON array: {text:?}: {e}"))
}

/// Reads deploy/Dockerfile: continuation lines joined, comments skipped; the runtime stage
/// is what follows the last FROM.
fn recipe() -> Recipe {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Dockerfile");
    let text = std::fs::read_to_string(file).unwrap();
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut recipe = Recipe::default();
    for instruction in &instructions {
        let (keyword, rest) = instruction.split_once(' ').unwrap_or((instruction, ""));
        let rest = rest.trim();
        match keyword {
            "FROM" => {
                // A new stage: only the last one's settings count.
                let precompile_dir = std::mem::take(&mut recipe.precompile_dir);
                recipe = Recipe {
                    precompile_dir,
                    ..Recipe::default()
                };
            }
            "RUN" if rest.contains("sse-ingest precompile") => {
                recipe.precompile_dir = rest.split_whitespace().last().unwrap().to_string();
            }
            "ENV" => {
                let (name, value) = rest.split_once('=').unwrap();
                recipe.env.insert(name.to_string(), value.to_string());
            }
            "USER" => recipe.user = rest.to_string(),
            "WORKDIR" => recipe.workdir = rest.to_string(),
            "VOLUME" => recipe.volumes = exec_form(rest),
            "EXPOSE" => recipe.exposed = rest.split_whitespace().map(str::to_string).collect(),
            "ENTRYPOINT" => recipe.entrypoint = exec_form(rest),
            "CMD" => recipe.cmd = exec_form(rest),
            "HEALTHCHECK" => {
                let (_, command) = rest.split_once(" CMD ").unwrap();
                recipe.healthcheck = exec_form(command);
            }
            _ => {}
        }
    }
    recipe
}

/// The image's paths on this machine.
struct Mapped {
    paths: Vec<(String, PathBuf)>,
}

impl Mapped {
    fn map(&self, argument: &str) -> String {
        self.paths
            .iter()
            .find(|(image, _)| image == argument)
            .map_or_else(
                || argument.to_string(),
                |(_, here)| here.display().to_string(),
            )
    }
}

#[test]
fn the_image_runs_as_a_non_root_user_with_its_state_on_a_volume() {
    let recipe = recipe();
    let (user, group) = recipe.user.split_once(':').unwrap();
    assert_ne!(user.parse::<u32>().unwrap(), 0, "runs as root");
    assert_ne!(group.parse::<u32>().unwrap(), 0, "runs in root's group");
    assert_eq!(recipe.volumes, vec![recipe.workdir.clone()], "{recipe:?}");
    assert_eq!(recipe.exposed, vec!["9090".to_string()]);
    assert_eq!(
        recipe.entrypoint,
        vec!["/usr/local/bin/sse-ingest".to_string()]
    );
    assert_eq!(recipe.cmd[..2], ["run".to_string(), "--config".to_string()]);
    assert_eq!(
        recipe.healthcheck[1..3],
        ["health".to_string(), "--admin".to_string()]
    );
    // The build stage writes the components where the runtime looks for them (it copies
    // the build's /out/ to /).
    assert_eq!(
        recipe.precompile_dir.strip_prefix("/out"),
        recipe
            .env
            .get("SSE_INGEST_PRECOMPILED_DIR")
            .map(String::as_str),
        "{recipe:?}"
    );
}

#[test]
fn the_images_command_line_streams_from_precompiled_components_and_passes_its_health_check() {
    let recipe = recipe();
    let image = tempfile::tempdir().unwrap();
    let volume = image.path().join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    let precompiled = image.path().join("precompiled");
    // What the image build runs.
    let built = run_with_limit(sse_ingest().arg("precompile").arg(&precompiled), LIMIT);
    assert!(built.status.success(), "{}", stderr_of(&built));

    let gate = Gate::default();
    let hold = gate.clone();
    let server = SseServer::start(move |_, _| {
        let events: String = (0..100).map(frame).collect();
        Answer::Respond(Response::stream(vec![
            Step::Bytes(events.into_bytes()),
            Step::Wait(hold.clone()),
        ]))
    });
    let config_path = recipe.cmd.last().unwrap().clone();
    let config = image.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\naddress = \"127.0.0.1:0\"\n\n[[pipeline]]\nname = \"wiki\"\nurl = \"{}\"\n",
            server.url("/stream")
        ),
    )
    .unwrap();
    let mapped = Mapped {
        paths: vec![
            (
                recipe.entrypoint[0].clone(),
                PathBuf::from(env!("CARGO_BIN_EXE_sse-ingest")),
            ),
            (
                recipe.env["SSE_INGEST_PRECOMPILED_DIR"].clone(),
                precompiled.clone(),
            ),
            (config_path, config.clone()),
        ],
    };

    let mut command = Command::new(mapped.map(&recipe.entrypoint[0]));
    command.args(recipe.cmd.iter().map(|argument| mapped.map(argument)));
    for (name, value) in &recipe.env {
        command.env(name, mapped.map(value));
    }
    command
        .current_dir(&volume)
        .env("RUST_LOG", "sse_ingest=debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let running = WithAdmin::spawn(&mut command);
    running.wait_for_metric(
        "sse_ingest_records_written_total{pipeline=\"wiki\"}",
        100.0,
        LIMIT,
    );
    let stderr = running.stderr();
    assert!(
        stderr.contains("loaded precompiled component=\"the built-in source\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("loaded precompiled component=\"built-in filter `passthrough`\""),
        "{stderr}"
    );
    // Everything written is on the volume, and nothing had to be compiled into its cache.
    assert_eq!(sink_lines_so_far(&volume.join("sse-ingest-out")), 100);
    let cached = walkdir::WalkDir::new(volume.join("sse-ingest-state/component-cache"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .count();
    assert_eq!(cached, 0, "a component was compiled at start");

    // The image's health check, at the admin port this run got.
    let address = format!("127.0.0.1:{}", running.port);
    let health: Vec<String> = recipe
        .healthcheck
        .iter()
        .map(|argument| {
            if argument.starts_with("127.0.0.1:") {
                address.clone()
            } else {
                mapped.map(argument)
            }
        })
        .collect();
    let checked = run_with_limit(Command::new(&health[0]).args(&health[1..]), LIMIT);
    assert!(checked.status.success(), "{}", stderr_of(&checked));

    gate.open();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(running.child.id().to_string())
        .status();
    let (status, stderr) = running.finish(LIMIT);
    assert!(status.success(), "{stderr}");
}

#[test]
fn the_health_check_fails_when_nothing_answers() {
    let output = run_with_limit(
        sse_ingest().args(["health", "--admin", &format!("127.0.0.1:{}", free_port())]),
        LIMIT,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("cannot reach the admin API"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn a_precompiled_component_the_engine_refuses_is_compiled_instead() {
    let dir = tempfile::tempdir().unwrap();
    let precompiled = dir.path().join("precompiled");
    let built = run_with_limit(sse_ingest().arg("precompile").arg(&precompiled), LIMIT);
    assert!(built.status.success(), "{}", stderr_of(&built));
    // Every artefact damaged: as if built by another version or for other settings.
    for entry in std::fs::read_dir(&precompiled).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not compiled code").unwrap();
    }
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[[pipeline]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\n",
    )
    .unwrap();
    let output = run_with_limit(
        sse_ingest()
            .arg("check")
            .arg(&config)
            .env("SSE_INGEST_PRECOMPILED_DIR", &precompiled)
            .env("RUST_LOG", "sse_ingest=warn")
            .current_dir(dir.path()),
        LIMIT,
    );
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("precompiled component refused: compiling it instead"),
        "{stderr}"
    );
}
