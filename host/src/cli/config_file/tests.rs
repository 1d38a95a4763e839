use super::*;

const THREE: &str = r#"
state_dir = "/tmp/sse-ingest-test-state"
report_interval_ms = 5000
region = "eu-west-1"

[admin]
address = "127.0.0.1:9090"

[defaults]
format = "envelope"
idle_timeout_ms = 20000

[[pipeline]]
name = "wiki"
url = "https://stream.example.org/recentchange"
types = ["message", "edit"]
sink = "kinesis:wiki-edits"
header = ["Accept-Language: en"]

[[pipeline]]
name = "files-a"
url = "http://127.0.0.1:1/a"
sink = "file:/tmp/out"
once = true
filter = "json-match"
filter_config = ["where=/wiki=enwiki"]

[[pipeline]]
name = "files-b"
url = "http://127.0.0.1:1/b"
sink = "stdout"
format = "raw"
"#;

#[test]
fn every_pipeline_gets_the_defaults_its_own_keys_and_the_global_settings() {
    let config = parse(THREE).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(config.pipelines.len(), 3);
    assert_eq!(config.report_interval, Some(Duration::from_secs(5)));
    assert_eq!(
        config.admin.address,
        Some("127.0.0.1:9090".parse().unwrap())
    );
    let [wiki, a, b] = &config.pipelines[..] else {
        unreachable!()
    };
    assert_eq!(wiki.name, "wiki");
    assert_eq!(wiki.types, vec!["message", "edit"]);
    assert_eq!(wiki.idle_timeout, Duration::from_secs(20));
    assert_eq!(wiki.format, crate::core::format::Format::Envelope);
    assert_eq!(wiki.state_dir, PathBuf::from("/tmp/sse-ingest-test-state"));
    assert!(
        matches!(&wiki.sink, crate::sink::SinkSpec::Kinesis(k) if k.region.as_deref() == Some("eu-west-1"))
    );
    assert!(!a.reconnect.enabled, "once = true");
    assert_eq!(
        a.filter_config,
        vec![("where".to_string(), "/wiki=enwiki".to_string())]
    );
    assert_eq!(
        b.format,
        crate::core::format::Format::Raw,
        "own key over the default"
    );
    assert!(b.reconnect.enabled);
}

#[test]
fn several_mistakes_are_each_reported_with_their_line() {
    let text = r#"stat_dir = "x"

[[pipeline]]
name = "one"
url = "ftp://example.org/"
idle_timout_ms = 5

[[pipeline]]
name = "one"
url = "http://example.org/"

[[pipeline]]
name = "three"
url = "http://example.org/"
max_event_bytes = 1
once = "yes"

[[pipeline]]
url = "http://example.org/"
"#;
    let problems = parse(text).unwrap_err();
    let lines: Vec<(usize, &str)> = problems
        .iter()
        .map(|p| (p.line, p.message.as_str()))
        .collect();
    let has = |line: usize, needle: &str| {
        lines
            .iter()
            .any(|(l, message)| *l == line && message.contains(needle))
    };
    assert!(has(1, "did you mean `state_dir`"), "{lines:?}");
    assert!(has(5, "scheme `ftp` is not http or https"), "{lines:?}");
    assert!(has(15, "max-event-bytes: 1 is out of range"), "{lines:?}");
    assert!(has(6, "did you mean `idle_timeout_ms`"), "{lines:?}");
    assert!(has(9, "a second pipeline named `one`"), "{lines:?}");
    assert!(has(16, "`once` must be true or false"), "{lines:?}");
    assert!(has(18, "no `name`"), "{lines:?}");
    assert_eq!(problems.len(), 7, "{lines:?}");
}

#[test]
fn a_value_out_of_range_points_at_its_key() {
    let text = "[[pipeline]]\nname = \"p\"\nurl = \"http://example.org/\"\nmax_event_bytes = 1\n";
    let problems = parse(text).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!((problems[0].line, problems[0].column), (4, 19));
    assert!(
        problems[0].message.contains("max-event-bytes"),
        "{problems:?}"
    );
}

#[test]
fn the_drain_stall_timeout_is_a_key_like_its_flag() {
    let text = "[defaults]\ndrain_stall_timeout_ms = 5000\n[[pipeline]]\nname = \"p\"\nurl = \"http://example.org/\"\n";
    let config = parse(text).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(
        config.pipelines[0].drain_stall_timeout,
        Duration::from_secs(5)
    );
    let text =
        "[[pipeline]]\nname = \"p\"\nurl = \"http://example.org/\"\ndrain_stall_timeout_ms = 10\n";
    let problems = parse(text).unwrap_err();
    assert_eq!(problems[0].line, 4, "{problems:?}");
    assert!(
        problems[0].message.contains("drain-stall-timeout-ms"),
        "{problems:?}"
    );
}

#[test]
fn aggregate_is_a_key_like_its_flag_and_only_a_boolean() {
    let pipeline = |value: &str| {
        format!(
            "[[pipeline]]\nname = \"p\"\nurl = \"http://example.org/\"\nsink = \"kinesis:s\"\naggregate = {value}\n"
        )
    };
    let aggregate = |text: &str| {
        let config = parse(text).unwrap_or_else(|p| panic!("{p:?}"));
        match &config.pipelines[0].sink {
            crate::sink::SinkSpec::Kinesis(k) => k.producer.aggregate,
            other => panic!("{other:?}"),
        }
    };
    assert!(aggregate(&pipeline("true")));
    assert!(!aggregate(&pipeline("false")));
    let problems = parse(&pipeline("\"yes\"")).unwrap_err();
    assert_eq!(problems[0].line, 5, "{problems:?}");
}

#[test]
fn a_bad_url_and_a_bad_sink_point_at_their_keys() {
    let text = "[[pipeline]]\nname = \"p\"\nurl = \"ftp://example.org/\"\n";
    let problems = parse(text).unwrap_err();
    assert_eq!(problems[0].line, 3, "{problems:?}");
    let text = "[[pipeline]]\nname = \"p\"\nurl = \"http://example.org/\"\nsink = \"s3:x\"\n";
    let problems = parse(text).unwrap_err();
    assert_eq!(problems[0].line, 4, "{problems:?}");
    assert!(problems[0].message.contains("--sink"), "{problems:?}");
}

#[test]
fn a_syntax_error_has_its_position() {
    let problems = parse("[[pipeline]]\nname = \"p\nurl = 1\n").unwrap_err();
    assert!(!problems.is_empty());
    assert_eq!(problems[0].line, 2, "{problems:?}");
}

#[test]
fn secrets_expand_in_headers_and_stay_out_of_messages() {
    // Cargo sets CARGO_PKG_NAME for the tests it runs.
    let text = r#"[[pipeline]]
name = "p"
url = "http://example.org/"
header = ["Authorization: Bearer ${CARGO_PKG_NAME}"]
"#;
    let config = parse(text).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(
        config.pipelines[0].headers,
        vec![("Authorization".to_string(), "Bearer sse-ingest".to_string())]
    );
    assert_eq!(
        config.redactor.redact("header Bearer sse-ingest sent"),
        "header [redacted] sent"
    );
    // A header the secret makes invalid is reported without the secret.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "x\ny\n").unwrap();
    let text = format!(
        "[[pipeline]]\nname = \"p\"\nurl = \"http://example.org/\"\nheader = [\"X-Key: @{}\"]\n",
        secret.path().display()
    );
    let problems = parse(&text).unwrap_err();
    assert!(
        problems.iter().all(|p| !p.message.contains("x\ny")),
        "{problems:?}"
    );
    let missing = r#"[[pipeline]]
name = "p"
url = "http://example.org/"
header = ["X-Key: ${SSE_INGEST_CONFIG_TEST_UNSET}"]
"#;
    let problems = parse(missing).unwrap_err();
    assert!(
        problems[0]
            .message
            .contains("`SSE_INGEST_CONFIG_TEST_UNSET` is not set"),
        "{problems:?}"
    );
}

#[test]
fn an_admin_address_off_loopback_needs_a_token_or_an_explicit_choice() {
    let pipeline = "[[pipeline]]\nname = \"p\"\nurl = \"http://example.org/\"\n";
    let open = format!("[admin]\naddress = \"0.0.0.0:9090\"\n{pipeline}");
    let problems = parse(&open).unwrap_err();
    assert!(
        problems[0].message.contains("needs a token"),
        "{problems:?}"
    );
    let chosen =
        format!("[admin]\naddress = \"0.0.0.0:9090\"\nallow_unauthenticated = true\n{pipeline}");
    assert!(parse(&chosen).is_ok());
    let token = format!("[admin]\naddress = \"0.0.0.0:9090\"\ntoken = \"t\"\n{pipeline}");
    assert_eq!(
        parse(&token)
            .unwrap()
            .admin
            .token
            .as_ref()
            .map(|t| t.expose()),
        Some("t")
    );
    let default = format!("[admin]\n{pipeline}");
    assert_eq!(
        parse(&default).unwrap().admin.address,
        Some("127.0.0.1:9090".parse().unwrap()),
        "an [admin] table without an address serves on loopback"
    );
    assert_eq!(
        parse(pipeline).unwrap().admin.address,
        None,
        "no [admin], no API"
    );
}

#[test]
fn keys_that_belong_elsewhere_say_where() {
    let text = "[[pipeline]]\nname = \"p\"\nurl = \"http://example.org/\"\nstate_dir = \"x\"\n";
    let problems = parse(text).unwrap_err();
    assert!(
        problems[0].message.contains("set once, at the top"),
        "{problems:?}"
    );
}

#[test]
fn every_run_flag_but_the_process_wide_ones_is_a_pipeline_key() {
    let keys = run_flags();
    for key in [
        "url",
        "header",
        "types",
        "format",
        "sink",
        "filter",
        "filter_config",
    ] {
        assert!(keys.contains_key(key), "{key}");
    }
    for key in [
        "partition_key",
        "dead_letter",
        "idle_timeout_ms",
        "ca_file",
        "user_agent",
        "file_roll_bytes",
        "file_roll_interval_ms",
        "dead_letter_max_bytes",
    ] {
        assert!(keys.contains_key(key), "{key}");
    }
    for key in ["admin", "state_dir", "config", "properties"] {
        assert!(!keys.contains_key(key), "{key}");
    }
}

#[test]
fn admin_metrics_public_and_tls_are_read_and_the_tls_files_go_together() {
    let pipeline = "[[pipeline]]\nname = \"p\"\nurl = \"http://example.org/\"\n";
    let full = format!(
        "[admin]\ntoken = \"a-token-of-twenty-bytes\"\nmetrics_public = true\n\
         tls_cert = \"admin.crt\"\ntls_key = \"admin.key\"\n{pipeline}"
    );
    let admin = parse(&full).unwrap().admin;
    assert!(admin.metrics_public);
    assert_eq!(
        admin.tls,
        Some(crate::config::AdminTls {
            cert: "admin.crt".into(),
            key: "admin.key".into(),
        })
    );
    assert!(
        !parse(&format!("[admin]\n{pipeline}"))
            .unwrap()
            .admin
            .metrics_public
    );
    let half = format!("[admin]\ntls_cert = \"admin.crt\"\n{pipeline}");
    let problems = parse(&half).unwrap_err();
    assert!(problems[0].message.contains("go together"), "{problems:?}");
}

#[test]
fn a_log_level_that_is_no_filter_points_at_its_key() {
    let text = "log_level = \"sse_ingest=loud\"\n[[pipeline]]\nname = \"p\"\nurl = \"http://example.org/\"\n";
    let problems = parse(text).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].line, 1, "{problems:?}");
    assert!(
        problems[0]
            .message
            .contains("invalid log level `sse_ingest=loud`"),
        "{problems:?}"
    );
    let fine = text.replace("sse_ingest=loud", "debug,hyper=trace");
    assert!(parse(&fine).is_ok(), "{:?}", parse(&fine).err());
}
