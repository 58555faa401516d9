//! Everything printed at TRACE level while credentials go through the layer: exactly one decision event per
//! request, and no credential, whole or in part.
//!
//! One test in its own binary: tracing caches per-callsite interest process-wide, so a capture that shares its
//! process with tests running concurrently without a subscriber can miss events.

mod support;

use std::time::Duration;

use axum::{routing::any, Router};
use http::{header::AUTHORIZATION, HeaderName, Request, StatusCode};
use support::{
    contract::{cases, run},
    layer, scripted_store, Calls, SECRETS,
};
use tower::ServiceBuilder;
use tower_mcp_auth::{Authenticated, OAuthPassthrough};

const KEY_HEADER: HeaderName = HeaderName::from_static("x-litellm-api-key");

async fn whoami(
    identity: Option<Authenticated<String>>,
    passthrough: Option<OAuthPassthrough>,
) -> String {
    format!("{} {}", identity.is_some(), passthrough.is_some())
}

#[tokio::test]
async fn no_credential_in_trace_output() {
    composed_with_tower_http().await;
    every_contract_case().await;
}

/// Every case again under a TRACE subscriber: exactly one decision event per request, and no credential,
/// whole or in part, in anything printed.
async fn every_contract_case() {
    let captured = support::Captured::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber());
    tokio::time::pause();
    let cases = cases();
    for case in &cases {
        run(case).await;
    }
    let output = captured.text();
    assert_eq!(
        output.matches("mcp auth decision").count(),
        cases.len(),
        "{output}"
    );
    assert!(output.contains("fingerprint="), "{output}");
    // Every credential the cases send, plus fragments long enough to identify them.
    let mut needles: Vec<&str> = SECRETS.to_vec();
    needles.extend([
        "dXNlcjpwYXNz",
        "upstream-oauth",
        "oauth-token",
        "good",
        "blocked",
        "made-up",
    ]);
    for needle in needles {
        assert!(!output.contains(needle), "{needle:?} printed:\n{output}");
    }
}

/// tower-http's trace, sensitive-headers and timeout layers around this one: headers traced as `Sensitive`, a
/// slow key store cut off by the outer timeout, and still no credential printed.
async fn composed_with_tower_http() {
    use tower_http::{
        sensitive_headers::SetSensitiveRequestHeadersLayer,
        timeout::TimeoutLayer,
        trace::{DefaultMakeSpan, DefaultOnRequest, TraceLayer},
    };

    let captured = support::Captured::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber());

    let router = Router::new().route("/mcp/{server}", any(whoami)).layer(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new([
                AUTHORIZATION,
                KEY_HEADER,
            ]))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(
                        DefaultMakeSpan::new()
                            .include_headers(true)
                            .level(tracing::Level::INFO),
                    )
                    .on_request(DefaultOnRequest::new().level(tracing::Level::INFO)),
            )
            .layer(TimeoutLayer::with_status_code(
                StatusCode::GATEWAY_TIMEOUT,
                Duration::from_millis(50),
            ))
            .layer(
                layer(scripted_store(Calls::default())).validation_timeout(Duration::from_secs(30)),
            ),
    );
    // Served in-process so the test's subscriber sees every event.
    use tower::ServiceExt;
    let send = |path: &str, headers: &[(&str, &str)]| {
        let mut request = Request::post(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        router
            .clone()
            .oneshot(request.body(axum::body::Body::empty()).unwrap())
    };

    let ok = send(
        "/mcp/atlassian",
        &[
            ("x-litellm-api-key", "sk-good"),
            ("authorization", "Bearer upstream-oauth-token"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let denied = send("/mcp/github", &[("authorization", "Bearer made-up-a")])
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    // A key store slower than the outer timeout: tower-http's timeout answers first.
    let slow = send("/mcp/github", &[("x-litellm-api-key", "sk-hang")])
        .await
        .unwrap();
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);

    let output = captured.text();
    assert!(
        output.contains("\"x-litellm-api-key\": Sensitive"),
        "headers were traced: {output}"
    );
    assert!(output.contains("mcp auth decision"), "{output}");
    for secret in ["sk-good", "upstream-oauth-token", "made-up-a", "sk-hang"] {
        assert!(!output.contains(secret), "{secret} printed:\n{output}");
    }
}
