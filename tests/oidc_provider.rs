//! The resource-server path against a real authorization server: `oidc-provider` (Node), started by
//! `scripts/with-oidc.sh`, which sets `TOWER_MCP_AUTH_TEST_OIDC_ISSUER`; without that variable each test prints
//! why it is skipped and passes.
//!
//! The provider issues JWT access tokens per RFC 8707 resource to the client-credentials client `mcp-client`,
//! exchanges them (RFC 8693) for the client `gateway`, introspects opaque ones, and rotates its signing key on
//! request (see scripts/oidc/server.js). The steps of the main test run in order, in one test, because they
//! read the provider's counters and the last one rotates its key.
#![cfg(all(feature = "jwt", feature = "token-exchange", feature = "introspection"))]

use testkit::resource_server;

use std::{io::Write, time::Duration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use resource_server::{initialize, mcp_client, start_gateway, start_upstream, UpstreamLog, ROUTE};
use serde_json::Value;
use tower_mcp_auth::{
    upstream::{TokenClientAuth, TokenExchange},
    validators::{ClientAuth, Introspection, Jwt},
    Validator, Verdict,
};

const ISSUER_VAR: &str = "TOWER_MCP_AUTH_TEST_OIDC_ISSUER";

/// The provider's issuer URL, or `None` after printing why the test is skipped.
fn issuer(test: &str) -> Option<String> {
    let Ok(issuer) = std::env::var(ISSUER_VAR) else {
        // Straight to stderr: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "skipped {test}: {ISSUER_VAR} is not set (run under scripts/with-oidc.sh)"
        );
        return None;
    };
    Some(issuer)
}

async fn send(request: Request<Full<Bytes>>) -> (StatusCode, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A client-credentials token of `mcp-client` for `resource`.
async fn client_credentials(issuer: &str, resource: &str) -> String {
    let form = format!(
        "grant_type=client_credentials&scope=mcp&resource={}",
        encode(resource)
    );
    let request = Request::post(format!("{issuer}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            "Basic bWNwLWNsaWVudDptY3AtY2xpZW50LXNlY3JldA==",
        )
        .body(Full::new(Bytes::from(form)))
        .unwrap();
    let (status, body) = send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn admin(issuer: &str, method: &str, path: &str, body: &str) -> Value {
    let request = Request::builder()
        .method(method)
        .uri(format!("{issuer}/admin/{path}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let (status, body) = send(request).await;
    assert_eq!(status, StatusCode::OK);
    body
}

async fn stat(issuer: &str, name: &str) -> u64 {
    admin(issuer, "GET", "stats", "").await[name]
        .as_u64()
        .unwrap()
}

fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_resource_server_path_against_oidc_provider() {
    let Some(issuer) = issuer("the_resource_server_path_against_oidc_provider") else {
        return;
    };
    // Keys found through the provider's discovery metadata, as a deployment would.
    let jwt_for = |audience: String| Jwt::builder(issuer.clone(), audience).build().unwrap();
    let upstream = UpstreamLog::default();
    let upstream_url = start_upstream(jwt_for, upstream.clone()).await;
    let exchange = TokenExchange::builder(
        format!("{issuer}/token").parse().unwrap(),
        TokenClientAuth::basic("gateway", "gateway-secret"),
    )
    .build()
    .unwrap();
    let gateway = start_gateway(jwt_for, exchange.clone(), &upstream_url).await;
    let route = format!("{gateway}{ROUTE}");

    // A client-credentials token for the route: admitted, exchanged once, and the upstream (which accepts
    // only tokens for its own audience) lists its tools, a hundred times over.
    let exchanges = stat(&issuer, "exchanges").await;
    let token = client_credentials(&issuer, &route).await;
    let client = mcp_client(route.clone(), &token).await.unwrap();
    for _ in 0..100 {
        let tools = client.list_all_tools().await.unwrap();
        assert_eq!(tools.len(), 1);
    }
    client.cancel().await.unwrap();
    assert_eq!(stat(&issuer, "exchanges").await, exchanges + 1);
    assert_eq!(upstream.distinct_tokens(), 1);
    assert!(!upstream.tokens.lock().unwrap().contains(&token));
    assert!(upstream
        .subjects
        .lock()
        .unwrap()
        .iter()
        .all(|s| s == "mcp-client"));

    // Tokens for another route, for the upstream itself, and a tampered one: 401, the upstream not called.
    let hits = upstream.hits();
    let other_route = client_credentials(&issuer, &format!("{gateway}/mcp/b")).await;
    let for_upstream = client_credentials(&issuer, &format!("{upstream_url}{ROUTE}")).await;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["scope"] = "mcp admin".into();
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = parts.join(".");
    for (case, bad) in [
        ("another route", &other_route),
        ("the upstream's audience", &for_upstream),
        ("tampered", &tampered),
    ] {
        let response = initialize(route.clone(), bad).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains(r#"error="invalid_token""#), "{case}");
    }
    assert_eq!(upstream.hits(), hits);

    // The upstream refuses the cached exchanged token once: one re-exchange, and success.
    let exchanges = stat(&issuer, "exchanges").await;
    upstream.refuse_next(1);
    assert_eq!(
        initialize(route.clone(), &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(stat(&issuer, "exchanges").await, exchanges + 1);

    // The authorization server fails: 503. (A fresh subject, so nothing is cached.)
    admin(&issuer, "POST", "fail", "500").await;
    let fresh = client_credentials(&issuer, &route).await;
    let response = initialize(route.clone(), &fresh).await;
    admin(&issuer, "POST", "fail", "0").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The subject is revoked: its exchanged tokens are dropped, and the refused exchange is a 401.
    admin(&issuer, "POST", "revoke", &token).await;
    exchange.invalidate_subject(&token);
    let exchanges = stat(&issuer, "exchanges").await;
    let response = initialize(route.clone(), &token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(stat(&issuer, "exchanges").await, exchanges + 1);

    // Last, as it changes the provider for everyone: the provider rotates its signing key. A token under the
    // new kid is admitted after exactly one JWKS refetch.
    let audience = "urn:test:rotation";
    let jwt = Jwt::builder(issuer.clone(), audience)
        .min_refresh_interval(Duration::ZERO)
        .build()
        .unwrap();
    let before = client_credentials(&issuer, audience).await;
    assert!(matches!(
        jwt.validate(&before).await.unwrap(),
        Verdict::Valid(_)
    ));
    let rotated = admin(&issuer, "POST", "rotate", "").await;
    let after = client_credentials(&issuer, audience).await;
    assert_eq!(kid(&after), rotated["kid"].as_str().unwrap());
    assert_ne!(kid(&after), kid(&before));
    let fetches = stat(&issuer, "jwks_fetches").await;
    assert!(matches!(
        jwt.validate(&after).await.unwrap(),
        Verdict::Valid(_)
    ));
    assert_eq!(stat(&issuer, "jwks_fetches").await, fetches + 1);
    assert!(matches!(
        jwt.validate(&after).await.unwrap(),
        Verdict::Valid(_)
    ));
    assert!(matches!(
        jwt.validate(&before).await.unwrap(),
        Verdict::Valid(_)
    ));
    assert_eq!(stat(&issuer, "jwks_fetches").await, fetches + 1);
}

#[tokio::test]
async fn introspection_against_oidc_provider() {
    let Some(issuer) = issuer("introspection_against_oidc_provider") else {
        return;
    };
    let discovery = Request::get(format!("{issuer}/.well-known/openid-configuration"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, metadata) = send(discovery).await;
    let endpoint = metadata["introspection_endpoint"].as_str().unwrap();
    let introspection = Introspection::new(
        endpoint.parse().unwrap(),
        ClientAuth::basic("gateway", "gateway-secret"),
    )
    .unwrap()
    .require_audience("urn:opaque:mcp");
    // The provider issues opaque tokens for `urn:opaque:` resources.
    let token = client_credentials(&issuer, "urn:opaque:mcp").await;
    let Verdict::Valid(claims) = introspection.validate(&token).await.unwrap() else {
        panic!("an active token is valid");
    };
    assert_eq!(claims.client_id.as_deref(), Some("mcp-client"));
    assert_eq!(claims.aud, ["urn:opaque:mcp"]);
    assert_eq!(claims.scopes().collect::<Vec<_>>(), ["mcp"]);
    assert_eq!(
        introspection.validate("made-up-token").await.unwrap(),
        Verdict::Unknown
    );
}
