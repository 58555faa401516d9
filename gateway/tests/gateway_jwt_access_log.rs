//! The access log of a JWT caller: `auth=jwt-client:ID` (or `jwt-user:SUBJECT`), never the token, and a token for another route logged
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
    // A user `alice` signed in through the client `ide`, and a client that is itself named `alice`.
    let audience = format!("http://{gw}/mcp/a");
    let signed = |sub: &str, client: &str| {
        let mut claims = issuer.claims(&audience, 3600);
        claims["sub"] = sub.into();
        claims["client_id"] = client.into();
        format!("Bearer {}", issuer.sign("k1", &claims))
    };
    for (bearer, route) in [
        (signed("alice", "ide"), "/mcp/a?as=user"),
        (signed("alice", "alice"), "/mcp/a?as=client"),
    ] {
        let answer = post_init(
            &format!("http://{gw}{route}"),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let lines = captured.access_lines(4).await;
    let line = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {lines:#?}"))
            .clone()
    };
    let jwt = line("route=/mcp/a");
    assert!(
        jwt.contains("auth=jwt-client:client-1") && jwt.contains("status=200"),
        "{jwt}"
    );
    let user_and_client: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("route=/mcp/a") && l.contains("alice"))
        .collect();
    assert_eq!(user_and_client.len(), 2, "{lines:#?}");
    assert!(
        user_and_client
            .iter()
            .any(|l| l.contains("auth=jwt-user:alice"))
            && user_and_client
                .iter()
                .any(|l| l.contains("auth=jwt-client:alice")),
        "a JWT user and a JWT client of the same name are logged apart: {user_and_client:#?}"
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
