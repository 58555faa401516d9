//! The access log: one line per exchange when its response ends, with how the caller was admitted, and never
//! a credential. Its own binary: `tracing` caches per-callsite interest process-wide, so the capturing
//! subscriber must be the only one any test here installs.

mod gateway_support;

use axum::http::StatusCode;
use gateway_support::*;

const TOKEN: &str = "upstream-oauth-token-log";

fn ok_upstream() -> impl Fn(&axum::http::request::Parts) -> axum::response::Response + Clone {
    |_| answer(StatusCode::OK, &[], r#"{"ok":true}"#)
}

async fn two_routes(upstream: &Recorder) -> std::net::SocketAddr {
    gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("open={}", upstream.url("/mcp"))),
        ("--passthrough", "open"),
        ("--upstream", &format!("keyed={}", upstream.url("/mcp"))),
        (
            "--upstream-auth",
            "keyed=bearer_token:gateway-own-credential",
        ),
    ]))
    .await
}

#[tokio::test]
async fn one_access_log_line_per_exchange_and_never_a_credential() {
    let captured = Captured::default();
    // A current-thread runtime: the gateway's tasks run on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(captured.subscriber());
    let upstream = Recorder::start(ok_upstream()).await;
    let gw = two_routes(&upstream).await;
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(
        post_init(
            &format!("http://{gw}/mcp/keyed"),
            &[("x-litellm-api-key", KEY)]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        post_init(
            &format!("http://{gw}/mcp/open"),
            &[("authorization", &bearer)]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        post_init(
            &format!("http://{gw}/mcp/keyed"),
            &[("x-litellm-api-key", "sk-wrong-key")]
        )
        .await
        .status,
        401
    );
    let lines = captured.access_lines(3).await;
    assert_eq!(lines.len(), 3, "{lines:#?}");
    // Lines are written as responses end, so their order is not asserted.
    let line = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {lines:#?}"))
    };
    let key_identity = format!("auth=key:key-{}", tower_mcp_auth::Fingerprint::of(KEY));
    let keyed = line("auth=key:");
    assert!(
        keyed.contains("method=POST") && keyed.contains("route=/mcp/keyed"),
        "{keyed}"
    );
    assert!(
        keyed.contains(&key_identity)
            && keyed.contains("bytes=11")
            && keyed.contains("duration_ms="),
        "{keyed}"
    );
    let passthrough = line("route=/mcp/open");
    assert!(
        passthrough.contains(&format!(
            "auth=passthrough:{}",
            tower_mcp_auth::Fingerprint::of(TOKEN)
        )),
        "{passthrough}"
    );
    let refused = line("status=401");
    assert!(
        refused.contains("route=/mcp/keyed") && refused.contains("auth=challenged"),
        "{refused}"
    );
    let all = captured.text();
    for secret in [KEY, TOKEN, "sk-wrong-key", "gateway-own-credential"] {
        assert!(!all.contains(secret), "{secret} in the log");
    }
}

#[tokio::test]
async fn every_mcp_call_has_an_audit_line_naming_method_tool_caller_and_rule() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber());
    let upstream = Recorder::start(ok_upstream()).await;
    let echo_only = "sk-audit-echo-only";
    let gw = gateway(&args(&[
        ("--key", &format!("{echo_only}=keyed/echo")),
        ("--upstream", &format!("keyed={}", upstream.url("/mcp"))),
        (
            "--upstream-auth",
            "keyed=bearer_token:gateway-own-credential",
        ),
    ]))
    .await;
    let call = |tool: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
        )
    };
    for tool in ["add", "echo"] {
        let answer = send(
            axum::http::Method::POST,
            &format!("http://{gw}/mcp/keyed"),
            &[
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", "2025-11-25"),
                ("x-litellm-api-key", echo_only),
            ],
            bytes::Bytes::from(call(tool)),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{tool}");
    }
    let lines = captured.access_lines(2).await;
    let refused = lines.iter().find(|l| l.contains("mcp_name=add")).unwrap();
    for part in [
        "mcp_method=tools/call",
        "mcp_upstream=keyed",
        "mcp_outcome=refused:caller_tools",
        "auth=key:key-",
    ] {
        assert!(refused.contains(part), "{part}: {refused}");
    }
    let allowed = lines.iter().find(|l| l.contains("mcp_name=echo")).unwrap();
    assert!(allowed.contains("mcp_outcome=allowed"), "{allowed}");
    assert!(!captured.text().contains(echo_only), "never the key");
    assert_eq!(
        upstream.seen().len(),
        1,
        "only the allowed call reached the upstream"
    );
}

/// The access lines of a binary started with `extra` arguments and `env`, after the same three exchanges
/// (admitted with the key, refused, and a tool call refused by the key's tool list): each line without its
/// timestamp and duration, sorted, and the timestamps.
async fn binary_lines(
    extra: &[&str],
    env: &[(&str, &str)],
    expected: usize,
) -> (Vec<String>, Vec<String>) {
    let upstream = Recorder::start(ok_upstream()).await;
    let mut arguments = args(&[
        ("--key", KEY),
        ("--key", "sk-access-echo-only=keyed/echo"),
        ("--upstream", &format!("keyed={}", upstream.url("/mcp"))),
        (
            "--upstream-auth",
            "keyed=bearer_token:gateway-own-credential",
        ),
    ]);
    arguments.extend(extra.iter().map(|a| (*a).to_owned()));
    let gw = process::GatewayProcess::start(&arguments, env).await;
    let url = format!("{}/mcp/keyed", gw.url());
    assert_eq!(
        post_init(&url, &[("x-litellm-api-key", KEY)]).await.status,
        200
    );
    assert_eq!(
        post_init(&url, &[("x-litellm-api-key", "sk-wrong-key")])
            .await
            .status,
        401
    );
    let call =
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{}}}"#;
    let refused = send(
        axum::http::Method::POST,
        &url,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-11-25"),
            ("x-litellm-api-key", "sk-access-echo-only"),
        ],
        bytes::Bytes::from_static(call.as_bytes()),
    )
    .await;
    assert_eq!(refused.status, StatusCode::OK);
    let log = if expected > 0 {
        gw.wait_for_log("gateway::access", expected).await
    } else {
        // Nothing to wait for; a reload's line, logged after the exchanges ended, marks the time by which
        // their lines would have been written (a later one could only let this pass wrongly, never fail it).
        gw.hang_up();
        gw.wait_for_log("configuration reloaded", 1).await
    };
    for secret in [
        KEY,
        "sk-wrong-key",
        "sk-access-echo-only",
        "gateway-own-credential",
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
    let mut lines = Vec::new();
    let mut stamps = Vec::new();
    for line in log.lines().filter(|l| l.contains("gateway::access")) {
        let (stamp, rest) = line.split_once(' ').unwrap();
        stamps.push(stamp.to_owned());
        let rest: Vec<&str> = rest
            .split(' ')
            .filter(|field| !field.starts_with("duration_ms="))
            .collect();
        lines.push(rest.join(" "));
    }
    lines.sort();
    (lines, stamps)
}

#[tokio::test]
async fn the_binary_writes_the_line_of_the_tracing_event_itself_and_none_when_off_or_filtered() {
    let (written, stamps) = binary_lines(&[], &[], 3).await;
    let (traced, traced_stamps) = binary_lines(&["--access-log", "tracing"], &[], 3).await;
    assert_eq!(written.len(), 3, "{written:#?}");
    // The same text, field for field, whichever writes it.
    assert_eq!(written, traced);
    for part in [
        " INFO gateway::access: exchange method=POST route=/mcp/keyed status=200 bytes=",
        "auth=key:key-",
        "mcp_outcome=refused:caller_tools",
        "status=401",
        "complete=true",
    ] {
        assert!(
            written.iter().any(|l| l.contains(part)),
            "{part}: {written:#?}"
        );
    }
    // `2026-12-04T04:48:56.555559Z`, as tracing's own timestamps.
    for stamp in stamps.iter().chain(&traced_stamps) {
        let shape: String = stamp
            .chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect();
        assert_eq!(shape, "0000-00-00T00:00:00.000000Z", "{stamp}");
    }
    let (off, _) = binary_lines(&["--access-log", "off"], &[], 0).await;
    assert!(off.is_empty(), "{off:#?}");
    let (filtered, _) = binary_lines(&[], &[("RUST_LOG", "info,gateway::access=off")], 0).await;
    assert!(filtered.is_empty(), "{filtered:#?}");
}
