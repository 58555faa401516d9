//! The access log of a JWT caller: `auth=jwt:SUBJECT`, never the token, and a token for another route logged
//! as challenged. Its own binary, like `gateway_access_log`: `tracing` caches per-callsite interest
//! process-wide, so the capturing subscriber must be the only one any test here installs.

mod gateway_support;
use testkit::issuer;

use axum::http::StatusCode;
use gateway_support::*;
use issuer::Issuer;

#[tokio::test]
async fn a_jwt_caller_is_logged_by_subject_and_never_by_token() {
    let captured = Captured::default();
    // A current-thread runtime: the gateway's tasks run on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(captured.subscriber());
    let issuer = Issuer::start().await;
    let upstream = Recorder::start(|_| answer(StatusCode::OK, &[], r#"{"ok":true}"#)).await;
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("a={}", upstream.url("/mcp"))),
        ("--upstream", &format!("b={}", upstream.url("/mcp"))),
        ("--jwt-issuer", &issuer.url),
        ("--jwt-jwks-uri", &issuer.jwks_uri().to_string()),
    ]))
    .await;
    let token = issuer.token(&format!("http://{gw}/mcp/a"));
    let bearer = format!("Bearer {token}");
    let admitted = post_init(&format!("http://{gw}/mcp/a"), &[("authorization", &bearer)]).await;
    assert_eq!(admitted.status, StatusCode::OK);
    let refused = post_init(&format!("http://{gw}/mcp/b"), &[("authorization", &bearer)]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let lines = captured.access_lines(2).await;
    let line = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {lines:#?}"))
            .clone()
    };
    let jwt = line("route=/mcp/a");
    assert!(
        jwt.contains("auth=jwt:client-1") && jwt.contains("status=200"),
        "{jwt}"
    );
    let challenged = line("route=/mcp/b");
    assert!(
        challenged.contains("status=401") && challenged.contains("auth=challenged"),
        "{challenged}"
    );
    let all = captured.text();
    // Neither the token nor any of its three parts.
    for part in std::iter::once(token.as_str()).chain(token.split('.')) {
        assert!(!all.contains(part), "a part of the token is in the log");
    }
}
