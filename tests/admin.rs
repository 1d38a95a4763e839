//! The admin API under attack: it authenticates before it reads, bounds every connection,
//! refuses what a web page could send, and a reload notices a rotated secret.

use crate::support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::sse_server::{Gate, Response, SseServer, Step};
use support::{
    WASM, WithAdmin, assert_exit_saying, builtin_filter, file_sink, http_request,
    http_request_with, run_command, run_with_limit, stderr_of, wait_for_admin, wait_until,
};

const LIMIT: Duration = Duration::from_secs(60);

/// A token long enough not to be warned about.
const TOKEN: &str = "a-test-token-of-thirty-two-bytes";

/// A server that sends one event and then holds the connection until `hold` opens.
fn one_event_then_hold(hold: &Gate) -> SseServer {
    SseServer::always(Response::stream(vec![
        Step::Bytes(b"id: 1\ndata: one\n\n".to_vec()),
        Step::Wait(hold.clone()),
    ]))
}

/// `run` of one pipeline into files under `dir`, with the admin API on a system port and
/// the environment's token, if any.
fn running(server: &SseServer, dir: &Path, token: Option<&str>) -> WithAdmin {
    let mut command = run_command(&server.url("/"), &dir.join("state"));
    command.args(["--sink", &file_sink(&dir.join("out"))]);
    if let Some(token) = token {
        command.env("SSE_INGEST_ADMIN_TOKEN", token);
    }
    let running = WithAdmin::start(&mut command);
    match token {
        Some(token) => running.with_token(token),
        None => running,
    }
}

/// The resident set of process `pid` now, in bytes.
fn resident(pid: u32) -> u64 {
    memory(pid).0
}

/// The sse-ingest child's resident set now and at its peak, in bytes.
fn memory_of(running: &WithAdmin) -> (u64, u64) {
    memory(running.child.id())
}

/// `VmRSS` and `VmHWM` of process `pid`, in bytes (`/proc/PID/status`).
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    };
    (kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
}

/// The version of the default pipeline's filter, as `/pipelines/default` says.
fn filter_version(running: &WithAdmin) -> serde_json::Value {
    let (status, body) = running.get("/pipelines/default").unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["filter_version"].clone()
}

#[test]
fn sixteen_unauthenticated_60_mb_swaps_are_refused_before_their_bodies_are_read() {
    const BODY: usize = 60 * 1000 * 1000;
    let hold = Gate::default();
    let server = one_event_then_hold(&hold);
    let dir = tempfile::tempdir().unwrap();
    let running = running(&server, dir.path(), Some(TOKEN));
    wait_until(
        "the pipeline running",
        LIMIT,
        || filter_version(&running) == 1,
        || running.stderr(),
    );
    let (before, _) = memory_of(&running);
    // Resident memory sampled while the requests run (the high-water mark would also hold
    // whatever start-up peaked at).
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (sampling, pid) = (std::sync::Arc::clone(&sampling), running.child.id());
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(resident(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak.max(resident(pid))
        })
    };

    let port = running.port;
    let senders: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.set_read_timeout(Some(LIMIT)).unwrap();
                stream.set_write_timeout(Some(LIMIT)).unwrap();
                let head = format!(
                    "POST /pipelines/default/filter HTTP/1.1\r\nHost: 127.0.0.1\r\n{WASM}\r\n\
                     Content-Length: {BODY}\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).unwrap();
                // All of it, as an attacker would; the server may close before the end.
                let chunk = vec![0u8; 1 << 20];
                let mut sent = 0;
                while sent < BODY {
                    if stream.write_all(&chunk).is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
                String::from_utf8_lossy(&answer).into_owned()
            })
        })
        .collect();
    let answers: Vec<String> = senders.into_iter().map(|s| s.join().unwrap()).collect();

    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let peak = sampler.join().unwrap();
    let grown = peak.saturating_sub(before);
    eprintln!(
        "16 unauthenticated 60 MB swaps: resident {} MiB before, peak {} MiB, {} MiB more",
        before >> 20,
        peak >> 20,
        grown >> 20
    );
    for answer in &answers {
        // A reset after the 401 may leave nothing to read; a 401 is all there may be.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 401"),
            "{answer}"
        );
    }
    assert!(
        answers.iter().any(|a| a.starts_with("HTTP/1.1 401")),
        "at least one 401 is read back: {answers:?}"
    );
    assert!(
        grown < 50 * 1024 * 1024,
        "the process grew by {} MiB",
        grown >> 20
    );
    assert_eq!(filter_version(&running), 1);
    hold.open();
    running.kill();
}

#[test]
fn five_hundred_half_sent_requests_are_closed_while_health_answers_throughout() {
    let hold = Gate::default();
    let server = one_event_then_hold(&hold);
    let dir = tempfile::tempdir().unwrap();
    let running = running(&server, dir.path(), None);
    wait_for_admin(running.port, LIMIT);

    let started = Instant::now();
    let mut half_sent: Vec<Option<TcpStream>> = (0..500)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", running.port)).unwrap();
            stream
                .write_all(b"GET /pipelines HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .unwrap();
            stream.set_nonblocking(true).unwrap();
            Some(stream)
        })
        .collect();
    let mut slowest_health = Duration::ZERO;
    let mut health_failures = Vec::new();
    let closed = support::try_wait_until(Duration::from_secs(45), || {
        let asked = Instant::now();
        match http_request(running.port, "GET", "/health", b"") {
            Ok((200, _)) => slowest_health = slowest_health.max(asked.elapsed()),
            other => health_failures.push(format!("{other:?}")),
        }
        for slot in &mut half_sent {
            if let Some(stream) = slot {
                let mut byte = [0u8; 1];
                match stream.read(&mut byte) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // End of stream, a reset, or an error answer: the server is done.
                    _ => *slot = None,
                }
            }
        }
        half_sent.iter().all(Option::is_none)
    });
    let open = half_sent.iter().filter(|s| s.is_some()).count();
    assert!(
        closed.is_ok(),
        "{open} of 500 half-sent requests still open after 45 s: {}",
        running.stderr()
    );
    eprintln!(
        "500 half-sent requests closed after {:?}; slowest /health meanwhile {slowest_health:?}",
        started.elapsed()
    );
    assert!(health_failures.is_empty(), "{health_failures:?}");
    assert!(
        slowest_health < Duration::from_secs(2),
        "{slowest_health:?}"
    );
    hold.open();
    running.kill();
}

#[test]
fn a_rebinding_swap_is_refused_and_the_version_stays_one_while_a_local_swap_succeeds() {
    let hold = Gate::default();
    let server = one_event_then_hold(&hold);
    let dir = tempfile::tempdir().unwrap();
    let running = running(&server, dir.path(), None);
    wait_for_admin(running.port, LIMIT);
    wait_until(
        "the pipeline running filter version 1",
        LIMIT,
        || filter_version(&running) == 1,
        || running.stderr(),
    );
    let filter = builtin_filter("passthrough");
    // A label with a line break: it must not forge a log line.
    let path = "/pipelines/default/filter?label=mine%0Aforged%20INFO%20line";

    let rebinding = [
        "Host: evil.example",
        "Origin: http://evil.example",
        "Content-Type: text/plain",
    ];
    let (status, body) =
        http_request_with(running.port, "POST", path, &rebinding, &filter).unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(filter_version(&running), 1);
    let (status, body) = http_request_with(
        running.port,
        "POST",
        path,
        &["Content-Type: text/plain"],
        &filter,
    )
    .unwrap();
    assert_eq!(
        status, 415,
        "a page's simple request is refused too: {body}"
    );
    assert_eq!(filter_version(&running), 1);

    let host = format!("Host: localhost:{}", running.port);
    let (status, body) =
        http_request_with(running.port, "POST", path, &[&host, WASM], &filter).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(filter_version(&running), 2);
    running.wait_for_log("forged INFO line", LIMIT);
    let stderr = running.kill();
    hold.open();
    assert!(
        !stderr.lines().any(|line| line.starts_with("forged")),
        "a label's line break stays escaped: {stderr}"
    );
}

#[test]
fn the_swap_command_sends_the_token_and_prints_the_new_version() {
    let hold = Gate::default();
    let server = one_event_then_hold(&hold);
    let dir = tempfile::tempdir().unwrap();
    let running = running(&server, dir.path(), Some(TOKEN));
    // Running with its first filter version: `/pipelines/default` answers before the
    // pipeline's filter stage has started, without a version.
    wait_until(
        "the pipeline running filter version 1",
        LIMIT,
        || {
            running
                .get("/pipelines/default")
                .is_ok_and(|(status, body)| {
                    status == 200
                        && serde_json::from_str::<serde_json::Value>(&body)
                            .is_ok_and(|value| value["filter_version"] == 1)
                })
        },
        || running.stderr(),
    );
    let address = format!("127.0.0.1:{}", running.port);
    let swap = || {
        let mut command = support::sse_ingest();
        command.args(["swap", "--admin", &address, "--filter", "passthrough"]);
        command.env_remove("SSE_INGEST_ADMIN_TOKEN");
        command
    };

    let refused = run_with_limit(&mut swap(), LIMIT);
    assert_exit_saying(&refused, 1, "Authorization: Bearer");
    assert_eq!(filter_version(&running), 1);

    let swapped = run_with_limit(swap().env("SSE_INGEST_ADMIN_TOKEN", TOKEN), LIMIT);
    assert!(swapped.status.success(), "{}", stderr_of(&swapped));
    let printed = String::from_utf8_lossy(&swapped.stdout);
    assert!(
        printed.contains("pipeline `default` now runs filter version 2"),
        "{printed}"
    );
    assert_eq!(filter_version(&running), 2);
    let _ = running.kill();
    hold.open();
}

#[test]
fn with_a_token_configured_reads_need_it_and_ready_tells_no_details() {
    let hold = Gate::default();
    let server = one_event_then_hold(&hold);
    let dir = tempfile::tempdir().unwrap();
    let running = running(&server, dir.path(), Some(TOKEN));
    wait_until(
        "the pipeline running",
        LIMIT,
        || filter_version(&running) == 1,
        || running.stderr(),
    );
    for path in ["/pipelines", "/pipelines/default", "/metrics", "/nowhere"] {
        let (status, body) = http_request(running.port, "GET", path, b"").unwrap();
        assert_eq!(status, 401, "{path}: {body}");
    }
    let lowercase = format!("Authorization: bearer {TOKEN}");
    let (status, body) =
        http_request_with(running.port, "GET", "/pipelines", &[&lowercase], b"").unwrap();
    assert_eq!(status, 200, "`bearer` in any case: {body}");
    for path in ["/health", "/healthz"] {
        let (status, _) = http_request(running.port, "GET", path, b"").unwrap();
        assert_eq!(status, 200, "{path}");
    }
    let (_, ready) = http_request(running.port, "GET", "/ready", b"").unwrap();
    assert!(ready.contains("\"ready\""), "{ready}");
    assert!(
        !ready.contains("not_ready"),
        "no details without the token: {ready}"
    );
    // A body on a route that takes none is refused before it is read.
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (status, _) = http_request_with(
        running.port,
        "POST",
        "/pipelines/default/pause",
        &[&bearer],
        b"unexpected",
    )
    .unwrap();
    assert_eq!(status, 413);
    let stderr = running.kill();
    hold.open();
    assert!(!stderr.contains(TOKEN), "the token is never logged");
}

#[test]
fn a_short_token_is_warned_about_at_start() {
    let hold = Gate::default();
    let server = one_event_then_hold(&hold);
    let dir = tempfile::tempdir().unwrap();
    let running = running(&server, dir.path(), Some("tiny-t0k"));
    running.wait_for_log("the admin token is shorter than 16 bytes", LIMIT);
    let stderr = running.kill();
    hold.open();
    assert!(
        !stderr.contains("tiny-t0k"),
        "the warning does not show it: {stderr}"
    );
}

#[test]
fn a_rotated_secret_file_restarts_the_pipeline_that_sends_it() {
    let hold = Gate::default();
    let server = one_event_then_hold(&hold);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("api-key");
    std::fs::write(&secret, "first-secret-value\n").unwrap();
    let config = dir.path().join("sse-ingest.toml");
    let text = format!(
        "state_dir = {state:?}\ncache_dir = {cache:?}\n\n[admin]\naddress = \"127.0.0.1:0\"\n\n\
         [[pipeline]]\nname = \"p\"\nurl = {url:?}\nsink = {sink:?}\nheader = [\"X-Api-Key: @{secret}\"]\n",
        state = dir.path().join("state"),
        cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
        url = server.url("/"),
        sink = file_sink(&dir.path().join("out")),
        secret = secret.display(),
    );
    std::fs::write(&config, &text).unwrap();
    let mut command = support::sse_ingest();
    command
        .args(["run", "--watch-config", "--config"])
        .arg(&config);
    let running = WithAdmin::spawn(&mut command);
    let sent = |value: &str| {
        server
            .requests()
            .iter()
            .any(|request| request.header("X-Api-Key") == Some(value))
    };
    wait_until(
        "the first secret sent",
        LIMIT,
        || sent("first-secret-value"),
        || running.stderr(),
    );

    std::fs::write(&secret, "second-secret-value\n").unwrap();
    // The file is unchanged but for its time; only the secret it points at changed.
    std::fs::write(&config, &text).unwrap();
    wait_until(
        "the rotated secret sent",
        LIMIT,
        || sent("second-secret-value"),
        || running.stderr(),
    );
    let stderr = running.kill();
    hold.open();
    assert!(
        stderr.contains("changed in the configuration: restarting"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret-value"), "{stderr}");
}

/// `GET path` over TLS to 127.0.0.1:`port`, trusting `ca`, naming the server `localhost`.
fn https_get(port: u16, ca: &support::tls::TestCa, path: &str) -> std::io::Result<String> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(ca.client_config(), name).unwrap();
    let socket = TcpStream::connect(("127.0.0.1", port))?;
    socket.set_read_timeout(Some(LIMIT))?;
    let mut stream = rustls::StreamOwned::new(connection, socket);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    match stream.read_to_string(&mut answer) {
        Ok(_) => Ok(answer),
        // A server that closes without close_notify after a whole answer.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {
            Ok(answer)
        }
        Err(error) => Err(error),
    }
}

#[test]
fn with_tls_configured_the_api_answers_over_https_with_a_certificate_of_the_test_ca_only() {
    let ca = support::tls::TestCa::new("sse-ingest admin test CA");
    let identity = ca.issue(
        &["localhost", "127.0.0.1"],
        support::tls::Validity::Current,
        false,
    );
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("admin.crt"), dir.path().join("admin.key"));
    std::fs::write(&cert, &identity.certificate_pem).unwrap();
    std::fs::write(&key, &identity.key_pem).unwrap();
    let hold = Gate::default();
    let server = one_event_then_hold(&hold);
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    let file = dir.path().join("sse-ingest.toml");
    std::fs::write(
        &file,
        format!(
            "state_dir = {:?}\ncache_dir = {:?}\n\n[admin]\naddress = \"127.0.0.1:0\"\n\
             tls_cert = {:?}\ntls_key = {:?}\n\n[[pipeline]]\nname = \"p\"\nurl = \"{}\"\n\
             sink = \"file:{}\"\n",
            dir.path().join("state").display().to_string(),
            cache.display().to_string(),
            cert.display().to_string(),
            key.display().to_string(),
            server.url("/"),
            dir.path().join("out").display()
        ),
    )
    .unwrap();
    let mut command = support::sse_ingest();
    command.args(["run", "--config"]).arg(&file);
    let running = WithAdmin::spawn(&mut command);
    running.wait_for_log("tls=true", LIMIT);

    let answer = https_get(running.port, &ca, "/health").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = https_get(running.port, &ca, "/pipelines").unwrap();
    assert!(answer.contains("\"p\""), "{answer}");
    // Plain HTTP on the same port gets no answer of the API.
    let plain = http_request(running.port, "GET", "/health", b"");
    assert!(
        !matches!(plain, Ok((200, _))),
        "plain HTTP was answered: {plain:?}"
    );
    // A client that trusts another CA refuses the API's certificate.
    let other = support::tls::TestCa::new("another CA");
    assert!(https_get(running.port, &other, "/health").is_err());
    hold.open();
    let _ = running.kill();
}
