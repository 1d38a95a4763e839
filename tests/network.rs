//! The network as users have it, through the real binary: HTTPS with a certificate
//! authority made in the test, mutual TLS, proxies from the environment and from flags,
//! redirects within the allow-list, readable failures, and the User-Agent.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::proxy::TestProxy;
use support::sse_server::{Answer, End, Response, SseServer};
use support::tls::{TestCa, Validity};
use support::{
    file_sink, file_sink_lines, free_port, http_request, run_command, run_with_limit, stderr_of,
};

const LIMIT: Duration = Duration::from_secs(60);

/// Ten events with ids, as one chunk.
fn ten_events() -> Response {
    let body: String = (0..10)
        .map(|n| format!("id: {n}\ndata: event {n}\n\n"))
        .collect();
    Response::text(&body)
}

fn expected_events() -> Vec<String> {
    (0..10).map(|n| format!("event {n}")).collect()
}

/// `run --once` into a file sink under `out`, with `extra` flags.
fn run_once(url: &str, state: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut command = run_command(url, state);
    command
        .arg("--once")
        .args(["--sink", &file_sink(out)])
        .args(extra);
    command
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        stderr_of(output)
    );
}

/// Exit 1 with one readable line that says all of `needles`, and no panic anywhere.
fn assert_fails_saying(output: &Output, needles: &[&str]) {
    let stderr = stderr_of(output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("sse-ingest: "), "{stderr}");
    for needle in needles {
        assert!(last.contains(needle), "no `{needle}` in: {last}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!last.contains("ErrorCode"), "a Debug dump: {last}");
}

/// `run --once` against `url` into a fresh file sink, trusting `ca`; returns the output and
/// the sink's directory.
fn run_trusting(
    ca: &TestCa,
    url: &str,
    configure: impl FnOnce(&mut Command),
) -> (Output, tempfile::TempDir) {
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ca_file = ca.write_pem(state.path());
    let mut command = run_once(
        url,
        state.path(),
        out.path(),
        &["--ca-file", ca_file.to_str().unwrap()],
    );
    configure(&mut command);
    (run_with_limit(&mut command, LIMIT), out)
}

fn tls_server(ca: &TestCa, validity: Validity, names: &[&str]) -> SseServer {
    SseServer::start_tls(ca.server_config(names, validity), |_, _| {
        Answer::Respond(ten_events())
    })
}

#[test]
fn https_with_a_private_ca_from_ca_file_delivers_every_event() {
    let ca = TestCa::new("sse-ingest test CA");
    let server = tls_server(&ca, Validity::Current, &["127.0.0.1"]);
    let url = server.url("/v2/stream");
    assert!(url.starts_with("https://"));
    let (output, out) = run_trusting(&ca, &url, |_| {});
    assert_success(&output);
    assert_eq!(file_sink_lines(out.path()), expected_events());
}

#[test]
fn https_without_the_ca_fails_naming_the_certificate_problem_and_the_host() {
    let ca = TestCa::new("sse-ingest test CA");
    let server = tls_server(&ca, Validity::Current, &["127.0.0.1"]);
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut command = run_once(&server.url("/v2/stream"), state.path(), out.path(), &[]);
    let output = run_with_limit(&mut command, LIMIT);
    let address = server.address().to_string();
    assert_fails_saying(
        &output,
        &[
            &format!("TLS handshake with {address} failed"),
            "unknown certificate authority",
            "--ca-file",
        ],
    );
    assert!(file_sink_lines(out.path()).is_empty());
}

#[test]
fn a_certificate_for_another_name_is_refused_naming_the_name() {
    let ca = TestCa::new("sse-ingest test CA");
    let server = tls_server(&ca, Validity::Current, &["stream.example.org"]);
    let (output, _out) = run_trusting(&ca, &server.url("/"), |_| {});
    assert_fails_saying(
        &output,
        &[
            &server.address().to_string(),
            "not valid for the name `127.0.0.1`",
        ],
    );
}

#[test]
fn an_expired_certificate_is_refused_as_expired() {
    let ca = TestCa::new("sse-ingest test CA");
    let server = tls_server(&ca, Validity::Expired, &["127.0.0.1"]);
    let (output, _out) = run_trusting(&ca, &server.url("/"), |_| {});
    assert_fails_saying(
        &output,
        &[&server.address().to_string(), "certificate has expired"],
    );
}

#[test]
fn mutual_tls_delivers_with_the_client_certificate_and_says_what_is_missing_without() {
    let ca = TestCa::new("sse-ingest test CA");
    let clients = TestCa::new("sse-ingest client CA");
    let config = ca.server_config_requiring_clients(&["127.0.0.1"], &clients);
    let server = SseServer::start_tls(config, |_, _| Answer::Respond(ten_events()));
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ca_file = ca.write_pem(state.path());
    let (cert, key) = clients.write_client_identity(state.path());

    let mut with_identity = run_once(
        &server.url("/"),
        state.path(),
        out.path(),
        &[
            "--ca-file",
            ca_file.to_str().unwrap(),
            "--client-cert",
            cert.to_str().unwrap(),
            "--client-key",
            key.to_str().unwrap(),
        ],
    );
    assert_success(&run_with_limit(&mut with_identity, LIMIT));
    assert_eq!(file_sink_lines(out.path()), expected_events());

    let other_state = tempfile::tempdir().unwrap();
    let other_out = tempfile::tempdir().unwrap();
    let mut without = run_once(
        &server.url("/"),
        other_state.path(),
        other_out.path(),
        &["--ca-file", ca_file.to_str().unwrap()],
    );
    let output = run_with_limit(&mut without, LIMIT);
    // The server's alert says why, unless it is lost with the closing connection (TLS 1.3
    // checks the certificate after the handshake); either way the line names the cause.
    assert_fails_saying(
        &output,
        &[
            &server.address().to_string(),
            "client certificate",
            "--client-cert",
        ],
    );
}

#[test]
fn https_proxy_from_the_environment_sees_one_connect_and_every_event_arrives() {
    let ca = TestCa::new("sse-ingest test CA");
    let server = tls_server(&ca, Validity::Current, &["127.0.0.1"]);
    let proxy = TestProxy::forwarding();
    let (output, out) = run_trusting(&ca, &server.url("/v2/stream"), |command| {
        command.env("HTTPS_PROXY", proxy.url());
    });
    assert_success(&output);
    assert_eq!(file_sink_lines(out.path()), expected_events());
    let seen = proxy.requests();
    let connect = format!("CONNECT {} HTTP/1.1", server.address());
    assert_eq!(
        seen.iter()
            .map(|r| r.request_line.as_str())
            .collect::<Vec<_>>(),
        vec![connect.as_str()]
    );
}

#[test]
fn a_target_in_no_proxy_goes_direct_and_the_proxy_sees_nothing() {
    let ca = TestCa::new("sse-ingest test CA");
    let server = tls_server(&ca, Validity::Current, &["127.0.0.1"]);
    let proxy = TestProxy::forwarding();
    let (output, out) = run_trusting(&ca, &server.url("/v2/stream"), |command| {
        command
            .env("https_proxy", proxy.url())
            .env("no_proxy", "localhost,127.0.0.1");
    });
    assert_success(&output);
    assert_eq!(file_sink_lines(out.path()), expected_events());
    assert_eq!(proxy.requests(), vec![]);
    assert_eq!(server.connections(), 1);
}

#[test]
fn plain_http_through_a_proxy_flag_is_sent_in_absolute_form_with_its_credentials() {
    let server = SseServer::always(ten_events());
    let proxy = TestProxy::forwarding();
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let proxy_url = proxy.url_with_credentials("ingest", "s3cret-pw");
    let mut command = run_once(
        &server.url("/events?x=1"),
        state.path(),
        out.path(),
        &["--proxy", &proxy_url],
    );
    // Debug logs too: the password must appear in none of them.
    command.env("RUST_LOG", "debug");
    let output = run_with_limit(&mut command, LIMIT);
    assert_success(&output);
    assert_eq!(file_sink_lines(out.path()), expected_events());
    let seen = proxy.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].request_line,
        format!("GET http://{}/events?x=1 HTTP/1.1", server.address())
    );
    // base64("ingest:s3cret-pw")
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Basic aW5nZXN0OnMzY3JldC1wdw==")
    );
    // The server behind the proxy saw the origin-form request without the proxy's credentials.
    let request = &server.requests()[0];
    assert_eq!(request.path, "/events?x=1");
    assert_eq!(request.header("proxy-authorization"), None);
    let stderr = stderr_of(&output);
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
}

#[test]
fn a_refusing_proxy_gives_a_readable_error() {
    let ca = TestCa::new("sse-ingest test CA");
    let server = tls_server(&ca, Validity::Current, &["127.0.0.1"]);
    let proxy = TestProxy::refusing("403 Forbidden");
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut command = run_once(&server.url("/"), state.path(), out.path(), &[]);
    command.env("HTTPS_PROXY", proxy.url());
    let output = run_with_limit(&mut command, LIMIT);
    let proxy_address = proxy.url().trim_start_matches("http://").to_string();
    assert_fails_saying(
        &output,
        &[
            &format!(
                "the proxy {proxy_address} refused the tunnel to {}",
                server.address()
            ),
            "403 Forbidden",
        ],
    );
    assert_eq!(server.connections(), 0);
}

#[test]
fn a_host_that_cannot_resolve_fails_with_a_sentence_naming_it() {
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut command = run_once(
        "https://no-such-stream.invalid/v2/stream",
        state.path(),
        out.path(),
        &[],
    );
    let output = run_with_limit(&mut command, LIMIT);
    assert_fails_saying(
        &output,
        &["cannot resolve the host name `no-such-stream.invalid`"],
    );
}

#[test]
fn the_server_receives_the_default_user_agent_and_a_configured_one() {
    let server = SseServer::always(ten_events());
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut default = run_once(&server.url("/"), state.path(), out.path(), &[]);
    assert_success(&run_with_limit(&mut default, LIMIT));
    let configured = "sse-ingest/0.1.0 (ops@example.org; wiki-edits pipeline)";
    let out2 = tempfile::tempdir().unwrap();
    let state2 = tempfile::tempdir().unwrap();
    let mut custom = run_once(
        &server.url("/"),
        state2.path(),
        out2.path(),
        &["--user-agent", configured],
    );
    assert_success(&run_with_limit(&mut custom, LIMIT));
    let agents: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.header("user-agent").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        agents,
        vec![
            format!("sse-ingest/{}", env!("CARGO_PKG_VERSION")),
            configured.to_string()
        ]
    );
}

/// A server that answers `/start` with `status` to `/moved`, and streams at `/moved`.
fn redirecting(status: u16) -> SseServer {
    SseServer::start(move |_, request| {
        if request.path == "/start" {
            Answer::Respond(
                Response::plain(status, "text/plain", "").with_header("Location", "/moved"),
            )
        } else {
            Answer::Respond(ten_events())
        }
    })
}

#[test]
fn a_302_and_a_307_reach_the_stream_and_the_log_names_the_hop() {
    for status in [302, 307] {
        let server = redirecting(status);
        let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut command = run_once(&server.url("/start"), state.path(), out.path(), &[]);
        let output = run_with_limit(&mut command, LIMIT);
        assert_success(&output);
        assert_eq!(
            file_sink_lines(out.path()),
            expected_events(),
            "HTTP {status}"
        );
        let paths: Vec<_> = server.requests().iter().map(|r| r.path.clone()).collect();
        assert_eq!(paths, vec!["/start", "/moved"]);
        let stderr = stderr_of(&output);
        let hop = stderr
            .lines()
            .find(|l| l.contains("following a redirect"))
            .unwrap_or_else(|| panic!("no redirect logged: {stderr}"));
        assert!(hop.contains(&format!("status={status}")), "{hop}");
        assert!(hop.contains("/moved"), "{hop}");
    }
}

#[test]
fn a_301_to_an_https_origin_given_with_allow_origin_reaches_the_stream() {
    let ca = TestCa::new("sse-ingest test CA");
    let secure = tls_server(&ca, Validity::Current, &["127.0.0.1"]);
    let target = secure.url("/v2/stream");
    let plain = SseServer::start(move |_, _| {
        Answer::Respond(Response::plain(301, "text/plain", "").with_header("Location", &target))
    });
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ca_file = ca.write_pem(state.path());
    let allowed = format!("https://{}", secure.address());
    let mut command = run_once(
        &plain.url("/start"),
        state.path(),
        out.path(),
        &[
            "--ca-file",
            ca_file.to_str().unwrap(),
            "--allow-origin",
            &allowed,
        ],
    );
    let output = run_with_limit(&mut command, LIMIT);
    assert_success(&output);
    assert_eq!(file_sink_lines(out.path()), expected_events());
    assert_eq!(secure.requests()[0].path, "/v2/stream");
}

#[test]
fn a_redirect_to_an_origin_not_allowed_fails_naming_it() {
    let elsewhere = SseServer::always(ten_events());
    let target = elsewhere.url("/stolen");
    let server = SseServer::start(move |_, _| {
        Answer::Respond(Response::plain(302, "text/plain", "").with_header("Location", &target))
    });
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut command = run_once(&server.url("/start"), state.path(), out.path(), &[]);
    let output = run_with_limit(&mut command, LIMIT);
    let origin = format!("http://{}", elsewhere.address());
    assert_fails_saying(
        &output,
        &[
            &format!("{origin} is not an origin this pipeline may reach"),
            &format!("--allow-origin {origin}"),
        ],
    );
    assert_eq!(
        elsewhere.connections(),
        0,
        "the sandbox let the request out"
    );
}

#[test]
fn a_redirect_loop_stops_after_ten_hops() {
    let server = SseServer::start(|_, _| {
        Answer::Respond(Response::plain(302, "text/plain", "").with_header("Location", "/again"))
    });
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut command = run_once(&server.url("/start"), state.path(), out.path(), &[]);
    let output = run_with_limit(&mut command, LIMIT);
    assert_fails_saying(&output, &["more than 10 redirects"]);
    assert_eq!(server.requests().len(), 11);
}

#[test]
fn reconnects_after_a_redirect_go_back_to_the_configured_url() {
    // /start redirects to /moved, whose stream ends; the reconnect asks /start again
    // (HTML §9.2.3: the EventSource's URL does not change) with the last id.
    let server =
        SseServer::start(
            |connection, request| match (connection, request.path.as_str()) {
                (_, "/start") => Answer::Respond(
                    Response::plain(302, "text/plain", "").with_header("Location", "/moved"),
                ),
                (1, _) => Answer::Respond(Response::text("id: 1\ndata: first\n\n")),
                _ => Answer::Respond(Response::plain(204, "text/plain", "")),
            },
        );
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/start"), state.path());
    command
        .args(["--sink", &file_sink(out.path())])
        .args(support::FAST_RECONNECTS);
    let output = run_with_limit(&mut command, LIMIT);
    // The 204 at /moved ends the run with its own code.
    assert_eq!(output.status.code(), Some(3), "{}", stderr_of(&output));
    let requests = server.requests();
    let paths: Vec<_> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, vec!["/start", "/moved", "/start", "/moved"]);
    assert_eq!(requests[2].header("last-event-id"), Some("1"));
    assert_eq!(file_sink_lines(out.path()), vec!["first"]);
}

#[test]
fn a_refused_connection_is_retried_and_counted_with_cause_connect() {
    let closed_port = free_port();
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut command = run_command(&format!("http://127.0.0.1:{closed_port}/"), state.path());
    command
        .args(["--sink", &file_sink(out.path()), "--reconnect-max-ms", "50"])
        .args(support::FAST_RECONNECTS);
    let running = support::WithAdmin::start(&mut command);
    let admin_port = running.port;
    let deadline = Instant::now() + LIMIT;
    let mut count = 0;
    while Instant::now() < deadline && count < 2 {
        if let Ok((200, metrics)) = http_request(admin_port, "GET", "/metrics", b"") {
            count = metrics
                .lines()
                .filter(|l| l.starts_with("sse_ingest_reconnects_total{"))
                .filter(|l| l.contains("cause=\"connect\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = running.kill();
    assert!(
        count >= 2,
        "reconnects with cause=connect: {count}; {stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("reconnecting"))
        .unwrap_or_else(|| panic!("no reconnect line: {stderr}"));
    assert!(
        line.contains(&format!("127.0.0.1:{closed_port} refused the connection")),
        "{line}"
    );
    assert!(
        line.contains("cause=\"connect\"") || line.contains("cause=connect"),
        "{line}"
    );
}

#[test]
fn a_connection_dropped_mid_stream_is_one_sentence_naming_the_server() {
    let server = SseServer::always(
        Response::text("id: 1\ndata: kept\n\ndata: cut mid-ev").ending(End::Drop),
    );
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut command = run_once(&server.url("/"), state.path(), out.path(), &[]);
    let output = run_with_limit(&mut command, LIMIT);
    assert_fails_saying(
        &output,
        &[&format!(
            "{} closed the connection in the middle of the response",
            server.address()
        )],
    );
    assert!(!stderr_of(&output).contains("internal error"));
    assert_eq!(file_sink_lines(out.path()), vec!["kept"]);
}
