//! Test support: a real SSE server on 127.0.0.1 and a runner for the real binary.
//!
//! The server speaks HTTP/1.1 over TCP with chunked bodies, so a test can
//! say exactly which bytes arrive in which chunk, pause, end the stream
//! cleanly, or drop the connection mid-event. Every loop is bounded.
#![allow(dead_code, clippy::unwrap_used)]

pub mod ambiguous;
pub mod dynalite;
pub mod examples;
pub mod imports;
pub mod kpl;
pub mod node_server;
pub mod numbered;
pub mod outage;
pub mod proxy;
pub mod sse_server;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The fixture folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The 100 Wikimedia events (one JSON data payload per line).
pub fn wikimedia_events() -> Vec<String> {
    let text =
        std::fs::read_to_string(fixtures().join("wikimedia-recentchange-sample.ndjson")).unwrap();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A Wikimedia-style id for the n-th event: a JSON array of Kafka positions.
pub fn wikimedia_id(n: usize) -> String {
    format!(
        r#"[{{"topic":"eqiad.mediawiki.recentchange","partition":0,"offset":{}}},{{"topic":"codfw.mediawiki.recentchange","partition":0,"offset":-1}}]"#,
        4_820_784_717u64 + n as u64
    )
}

/// The live stream's framing of the n-th event.
pub fn wikimedia_frame(n: usize, data: &str) -> String {
    format!("event: message\nid: {}\ndata: {data}\n\n", wikimedia_id(n))
}

/// The environment variables a proxy is read from (as curl reads them).
pub const PROXY_VARIABLES: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Reconnect after 10 ms instead of a second: for tests whose server ends streams on purpose.
pub const FAST_RECONNECTS: [&str; 4] = ["--reconnect-initial-ms", "10", "--reconnect-min-ms", "10"];

/// `sse-ingest` with a shared component cache, so tests do not recompile components.
pub fn sse_ingest() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sse-ingest"));
    command.env_remove("RUST_LOG");
    // Hermetic: the machine's proxy settings must not reach the servers on 127.0.0.1.
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Flags every test run needs: a private state dir and the shared cache.
pub fn isolated(command: &mut Command, state_dir: &Path) {
    command
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--cache-dir")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"));
}

/// The dummy credentials kinesalite and dynalite accept, and no profile of the machine's, for
/// a command that reaches them.
pub fn local_aws_credentials(command: &mut Command) {
    command
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env_remove("AWS_PROFILE");
}

/// The peak resident memory (`VmHWM`) of process `pid` so far, in bytes.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
        * 1024
}

/// `sse-ingest run --url URL` with a private state dir; callers add `--once`, the sink and
/// whatever else the test needs.
pub fn run_command(url: &str, state_dir: &Path) -> Command {
    let mut command = sse_ingest();
    command.args(["run", "--url", url]);
    isolated(&mut command, state_dir);
    command
}

/// The `--sink` value for a file sink writing under `dir`.
pub fn file_sink(dir: &Path) -> String {
    format!("file:{}", dir.display())
}

/// Runs a command to completion, killing it after `limit`.
pub fn run_with_limit(command: &mut Command, limit: Duration) -> Output {
    let child = command.spawn().expect("the sse-ingest binary starts");
    wait_with_limit(child, limit)
}

/// Waits for a running child, killing it after `limit`.
pub fn wait_with_limit(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let deadline = Instant::now() + limit;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(output) => return output.expect("waiting for sse-ingest"),
            Err(_) if Instant::now() >= deadline => {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                panic!("sse-ingest did not finish within {limit:?}");
            }
            Err(_) => {}
        }
    }
}

/// How often `wait_until` looks again.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `done` holds, looking every 10 ms, at most `limit`; otherwise `Err` with
/// how long it waited. Every test that waits for something waits through here.
pub fn try_wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), Duration> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return Err(limit);
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// `try_wait_until`, panicking with `what` (and `context()`) when it does not happen.
pub fn wait_until(
    what: &str,
    limit: Duration,
    done: impl FnMut() -> bool,
    context: impl FnOnce() -> String,
) {
    if try_wait_until(limit, done).is_err() {
        panic!("{what} did not happen within {limit:?}: {}", context());
    }
}

/// Starts `command`, sends it SIGTERM as soon as `ready` says so (checked every 10 ms, at
/// most for `limit`), and waits (at most `limit`) for it to exit. Returns its output and how
/// long it took to exit after the signal.
pub fn terminate_when(
    command: &mut Command,
    mut ready: impl FnMut() -> bool,
    limit: Duration,
) -> (Output, Duration) {
    let child = command.spawn().expect("the sse-ingest binary starts");
    if try_wait_until(limit, &mut ready).is_err() {
        let _ = Command::new("kill")
            .arg("-9")
            .arg(child.id().to_string())
            .status();
        panic!("what the signal waits for did not happen within {limit:?}");
    }
    let signalled = Instant::now();
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "sse-ingest exited before the signal");
    let output = wait_with_limit(child, limit);
    (output, signalled.elapsed())
}

/// The number in field `key=value` of the final summary log line (`finished`).
pub fn summary_field(stderr: &str, key: &str) -> u64 {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("finished"))
        .unwrap_or_default();
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in summary: {stderr}"))
}

/// Every `.ndjson` file under `dir`, sorted by path (= delivery order), concatenated.
pub fn file_sink_lines(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    collect_files(dir, &mut files);
    files.retain(|p| p.extension().is_some_and(|e| e == "ndjson"));
    files.sort();
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends with a torn line",
            file.display()
        );
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}

/// Lines the file sink under `dir` holds so far, in finished and in-progress files alike:
/// what it has acknowledged while it runs. Unlike `file_sink_lines`, it tolerates a line
/// being written at the moment of reading.
pub fn sink_lines_so_far(dir: &Path) -> usize {
    let mut files = Vec::new();
    collect_files(dir, &mut files);
    files
        .iter()
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".ndjson") || name.ends_with(".ndjson.inprogress")
        })
        .map(|p| std::fs::read(p).map_or(0, |bytes| bytes.iter().filter(|&&b| b == b'\n').count()))
        .sum()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Asserts that the run exited with `code` and that its standard error says `needle`.
pub fn assert_exit_saying(output: &Output, code: i32, needle: &str) {
    let stderr = stderr_of(output);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "no `{needle}` in: {stderr}");
}

/// Standard error as text, for assertions and failure messages.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A free TCP port on 127.0.0.1 (bound, then released for the binary to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A minimal HTTP/1.1 request to 127.0.0.1:port; returns (status, body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    http_request_with(port, method, path, &[], body)
}

/// The header a swap's body goes with (on loopback without a token, a swap without it is
/// refused: a web page could send any other type without asking first).
pub const WASM: &str = "Content-Type: application/wasm";

/// `POST /pipelines/NAME/filter?QUERY` with `filter` as the body, as `swap` sends it.
pub fn swap_filter(port: u16, pipeline: &str, query: &str, filter: &[u8]) -> (u16, String) {
    let path = if query.is_empty() {
        format!("/pipelines/{pipeline}/filter")
    } else {
        format!("/pipelines/{pipeline}/filter?{query}")
    };
    http_request_with(port, "POST", &path, &[WASM], filter).unwrap_or((0, String::new()))
}

/// `http_request` with extra header lines (`Name: value`).
pub fn http_request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    http_request_within(port, method, path, headers, body, Duration::from_secs(30))
}

/// `http_request_with`, waiting up to `limit` for the answer (a swap that compiles a
/// large component answers only once it is compiled).
pub fn http_request_within(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
    limit: Duration,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(limit))?;
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Waits until the admin API on `port` answers, or panics after `limit`.
pub fn wait_for_admin(port: u16, limit: Duration) {
    // A pipeline takes swaps once it runs (it is listed from its start).
    let running = || {
        http_request(port, "GET", "/pipelines", b"")
            .is_ok_and(|(status, body)| status == 200 && body.contains(r#""state":"running""#))
    };
    wait_until(
        "a running pipeline on the admin API",
        limit,
        running,
        || format!("port {port}"),
    );
}

/// The built-in filter component's bytes, as the binary would export them.
pub fn builtin_filter(name: &str) -> Vec<u8> {
    sse_ingest::wasm::components::builtin_filter(name)
        .unwrap_or_else(|| panic!("no built-in filter {name}"))
        .to_vec()
}

/// Every dead-letter line under `dir`, parsed.
pub fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    file_sink_lines(dir)
        .iter()
        .map(|line| serde_json::from_str(line).expect("a dead letter is JSON"))
        .collect()
}

/// A running `sse-ingest` whose admin API listens on a port the system chose (`--admin
/// 127.0.0.1:0`), read from its own log line, so no test races another for a port.
pub struct WithAdmin {
    /// The process.
    pub child: Child,
    /// The admin API's port.
    pub port: u16,
    /// `Authorization: Bearer TOKEN` for the API's reads, when the process has a token.
    bearer: Option<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl WithAdmin {
    /// Adds `--admin 127.0.0.1:0`, starts `command`, and waits (at most a minute) for the
    /// admin API's `listening` log line.
    pub fn start(command: &mut Command) -> Self {
        command.args(["--admin", "127.0.0.1:0"]);
        Self::spawn(command)
    }

    /// Starts `command`, whose admin API is already set to port 0 (a config file's
    /// `[admin]`), and waits (at most a minute) for its `listening` log line.
    pub fn spawn(command: &mut Command) -> Self {
        use std::io::BufRead as _;
        let mut child = command.spawn().expect("the sse-ingest binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let collected = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let sink = std::sync::Arc::clone(&collected);
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("admin API listening")
                    && let Some(port) = line
                        .split_whitespace()
                        .find_map(|word| word.strip_prefix("address=127.0.0.1:"))
                        .and_then(|port| port.parse::<u16>().ok())
                {
                    let _ = port_tx.send(port);
                }
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let port = match port_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the admin API never said where it listens: {}",
                    collected.lock().unwrap()
                );
            }
        };
        Self {
            child,
            port,
            bearer: None,
            stderr: collected,
            reader: Some(reader),
        }
    }

    /// Sends `token` with the reads of this helper (`metric`, `get`): the process has one.
    pub fn with_token(mut self, token: &str) -> Self {
        self.bearer = Some(format!("Authorization: Bearer {token}"));
        self
    }

    /// `GET path` on the admin API, with the token when there is one.
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let headers: Vec<&str> = self.bearer.iter().map(String::as_str).collect();
        http_request_with(self.port, "GET", path, &headers, b"")
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The value of one series on `/metrics`, e.g.
    /// `sse_ingest_records_written_total{pipeline="default"}`, if it is there.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, metrics) = self.get("/metrics").ok()?;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
    }

    /// Waits (at most `limit`) until the series on `/metrics` reaches `at_least`.
    pub fn wait_for_metric(&self, series: &str, at_least: f64, limit: Duration) {
        wait_until(
            &format!("{series} reaching {at_least}"),
            limit,
            || self.metric(series).is_some_and(|value| value >= at_least),
            || self.stderr(),
        );
    }

    /// Waits (at most `limit`) until standard error holds `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) {
        wait_until(
            &format!("`{needle}` in the log"),
            limit,
            || self.stderr().contains(needle),
            || self.stderr(),
        );
    }

    /// Waits (at most `limit`, then kills) for the exit; returns the status and all of stderr.
    pub fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "sse-ingest did not finish within {limit:?}: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.stderr())
    }

    /// Kills the process and returns all of stderr.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.stderr()
    }
}
