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
