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
