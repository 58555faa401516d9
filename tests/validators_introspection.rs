//! `Introspection` against a real RFC 7662 endpoint: an axum app on 127.0.0.1.
#![cfg(feature = "introspection")]

mod support;

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Form, Json, Router,
};
use http::Request;
use serde_json::json;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    validators::{Cache, ClientAuth, Introspection, IntrospectionClaims, IntrospectionError},
    Authenticated, McpAuthLayer, OAuthPassthrough, PassthroughPolicy, Validator, Verdict,
};

const CLIENT_ID: &str = "gateway";
const CLIENT_SECRET: &str = "s3cret:with/odd chars";
const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "https://gateway.test/mcp";

#[derive(Clone, Default)]
struct Endpoint {
    calls: Arc<AtomicUsize>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The authorization server: answers by token, after checking the gateway's client authentication.
async fn introspect(
    State(endpoint): State<Endpoint>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    endpoint.calls.fetch_add(1, Ordering::SeqCst);
    endpoint.peers.lock().unwrap().push(peer);
    // RFC 6749 §2.3.1: id and secret are form-encoded, then joined and base64-encoded.
    let expected_basic = "Basic Z2F0ZXdheTpzM2NyZXQlM0F3aXRoJTJGb2RkK2NoYXJz";
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    if authorization != Some(expected_basic) && authorization != Some("Bearer gateway-token") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let token = form.get("token").cloned().unwrap_or_default();
    match token.as_str() {
        "tok-active" => Json(json!({
            "active": true, "sub": "alice", "scope": "mcp:read mcp:write", "client_id": "ide",
            "exp": now() + 3600, "aud": ["gateway", "mcp"], "tenant": "acme",
        }))
        .into_response(),
        "tok-short" => {
            Json(json!({ "active": true, "sub": "bob", "exp": now() + 2 })).into_response()
        }
        "tok-inactive" => Json(json!({ "active": false })).into_response(),
        // Issued by the same identity provider, but for an upstream MCP server, to its own client.
        "tok-for-upstream" => Json(json!({
            "active": true, "sub": "alice", "client_id": "atlassian-client", "iss": ISSUER,
            "aud": "https://mcp.atlassian.test", "exp": now() + 3600,
        }))
        .into_response(),
        // For the gateway, from another issuer.
        "tok-other-issuer" => Json(json!({
            "active": true, "sub": "alice", "client_id": "ide", "iss": "https://evil.test",
            "aud": AUDIENCE, "exp": now() + 3600,
        }))
        .into_response(),
        // For the gateway, in every respect.
        "tok-for-gateway" => Json(json!({
            "active": true, "sub": "alice", "client_id": "ide", "iss": ISSUER,
            "aud": ["other", AUDIENCE], "exp": now() + 3600,
        }))
        .into_response(),
        "tok-for-gateway-expired" => Json(json!({
            "active": true, "sub": "alice", "client_id": "ide", "iss": ISSUER,
            "aud": AUDIENCE, "exp": now() - 60,
        }))
        .into_response(),
        // An `exp` at the very end of u64: beyond what `SystemTime` can hold.
        "tok-forever" => {
            Json(json!({ "active": true, "sub": "dave", "exp": u64::MAX })).into_response()
        }
        "tok-expired" => {
            Json(json!({ "active": true, "sub": "carol", "exp": now() - 60 })).into_response()
        }
        "tok-500" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        // Far slower than any timeout a test sets, so that a loaded machine cannot let it answer in time.
        "tok-slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Json(json!({ "active": true })).into_response()
        }
        "tok-bad-json" => (StatusCode::OK, "{\"active\": tru").into_response(),
        // A body that echoes the token where a boolean belongs must not leak it through the error.
        "tok-wrong-type-secret" => {
            Json(json!({ "active": "tok-wrong-type-secret" })).into_response()
        }
        "tok-huge" => {
            Json(json!({ "active": true, "padding": "x".repeat(100_000) })).into_response()
        }
        // Echo the token as `sub`, to check the form encoding of the request.
        other if other.starts_with("echo") => {
            Json(json!({ "active": true, "sub": other })).into_response()
        }
        _ => Json(json!({ "active": false })).into_response(),
    }
}

async fn start() -> (Endpoint, String) {
    let endpoint = Endpoint::default();
    let app = Router::new()
        .route("/introspect", post(introspect))
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (endpoint, format!("http://{addr}/introspect"))
}

fn validator(url: &str) -> Introspection {
    Introspection::new(
        url.parse().unwrap(),
        ClientAuth::basic(CLIENT_ID, CLIENT_SECRET),
    )
    .unwrap()
}

#[tokio::test]
async fn active_token_is_valid_with_its_claims() {
    let (_, url) = start().await;
    let Verdict::Valid(claims) = validator(&url).validate("tok-active").await.unwrap() else {
        panic!("not valid");
    };
    assert_eq!(claims.sub.as_deref(), Some("alice"));
    assert_eq!(claims.client_id.as_deref(), Some("ide"));
    assert_eq!(
        claims.scopes().collect::<Vec<_>>(),
        ["mcp:read", "mcp:write"]
    );
    assert_eq!(claims.aud, ["gateway", "mcp"]);
    assert_eq!(claims.extra["tenant"], "acme");
    let expires = claims.expires_at().unwrap();
    assert!(expires > SystemTime::now() + Duration::from_secs(3500));
}

#[tokio::test]
async fn inactive_token_is_unknown() {
    let (_, url) = start().await;
    assert_eq!(
        validator(&url).validate("tok-inactive").await.unwrap(),
        Verdict::Unknown
    );
    assert_eq!(
        validator(&url).validate("never-issued").await.unwrap(),
        Verdict::Unknown
    );
}

#[tokio::test]
async fn active_but_expired_token_is_denied() {
    let (_, url) = start().await;
    assert_eq!(
        validator(&url).validate("tok-expired").await.unwrap(),
        Verdict::Denied
    );
}

#[tokio::test]
async fn bearer_client_authentication() {
    let (_, url) = start().await;
    let introspection =
        Introspection::new(url.parse().unwrap(), ClientAuth::bearer("gateway-token")).unwrap();
    assert!(matches!(
        introspection.validate("tok-active").await.unwrap(),
        Verdict::Valid(_)
    ));
}

#[tokio::test]
async fn refused_client_authentication_is_an_error() {
    let (_, url) = start().await;
    let introspection =
        Introspection::new(url.parse().unwrap(), ClientAuth::basic(CLIENT_ID, "wrong")).unwrap();
    let err = introspection.validate("tok-active").await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
}

#[tokio::test]
async fn server_error_is_an_error() {
    let (_, url) = start().await;
    let err = validator(&url).validate("tok-500").await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(
        err.to_string(),
        "introspection endpoint answered 500 Internal Server Error"
    );
}

#[tokio::test]
async fn slow_endpoint_times_out() {
    let (_, url) = start().await;
    let started = Instant::now();
    let err = validator(&url)
        .timeout(Duration::from_millis(200))
        .validate("tok-slow")
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // One-sided, with a margin no loaded machine needs: the endpoint would have taken 60 s.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bad_json_is_an_error() {
    let (_, url) = start().await;
    let err = validator(&url).validate("tok-bad-json").await.unwrap_err();
    assert!(err.to_string().contains("not an RFC 7662 answer"), "{err}");
    assert!(err.status().is_none() && !err.is_timeout());
}

#[tokio::test]
async fn oversized_answer_is_an_error() {
    let (_, url) = start().await;
    let err = validator(&url).validate("tok-huge").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "introspection response larger than 65536 bytes"
    );
}

#[tokio::test]
async fn unreachable_endpoint_is_an_error_naming_the_cause() {
    // Bind and drop a listener, so that nothing listens on the port.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = validator(&format!("http://{addr}/introspect"))
        .validate("tok-active")
        .await
        .unwrap_err();
    println!("unreachable endpoint: {err}");
    assert!(
        err.to_string()
            .starts_with("introspection request failed: "),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn errors_never_contain_the_credential() {
    let (_, url) = start().await;
    let introspection = validator(&url).timeout(Duration::from_millis(200));
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = validator(&format!("http://{dead}/introspect"));
    let errors: Vec<IntrospectionError> = vec![
        introspection.validate("tok-500").await.unwrap_err(),
        introspection.validate("tok-slow").await.unwrap_err(),
        introspection.validate("tok-bad-json").await.unwrap_err(),
        introspection
            .validate("tok-wrong-type-secret")
            .await
            .unwrap_err(),
        introspection.validate("tok-huge").await.unwrap_err(),
        unreachable
            .validate("tok-unreachable-secret")
            .await
            .unwrap_err(),
    ];
    for err in errors {
        let mut shown = format!("{err} {err:?}");
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            shown.push_str(&format!(" {cause} {cause:?}"));
            source = cause.source();
        }
        assert!(!shown.contains("tok-"), "{shown}");
    }
    let shown = format!("{introspection:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("Z2F0ZXdhe"),
        "{shown}"
    );
}

#[tokio::test]
async fn credential_is_form_encoded() {
    let (_, url) = start().await;
    let token = "echo-a+b/c=d&e%f~";
    let Verdict::Valid(claims) = validator(&url).validate(token).await.unwrap() else {
        panic!("not valid");
    };
    assert_eq!(claims.sub.as_deref(), Some(token));
}

#[tokio::test]
async fn connections_are_reused() {
    let (endpoint, url) = start().await;
    let introspection = validator(&url);
    for _ in 0..5 {
        introspection.validate("tok-active").await.unwrap();
    }
    let peers = endpoint.peers.lock().unwrap().clone();
    assert_eq!(peers.len(), 5);
    assert!(peers.iter().all(|peer| *peer == peers[0]), "{peers:?}");
}

#[tokio::test]
async fn cached_introspection_with_exp_capping_the_ttl() {
    let (endpoint, url) = start().await;
    let cache = Cache::builder(validator(&url))
        .valid_ttl(Duration::from_secs(60))
        .expiry(IntrospectionClaims::expires_at)
        .build();
    for _ in 0..3 {
        assert!(matches!(
            cache.validate("tok-active").await.unwrap(),
            Verdict::Valid(_)
        ));
        assert!(matches!(
            cache.validate("tok-short").await.unwrap(),
            Verdict::Valid(_)
        ));
        assert_eq!(
            cache.validate("tok-inactive").await.unwrap(),
            Verdict::Unknown
        );
    }
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), 3);
    // `tok-short` expires 1 to 2 s after it was issued (exp has one-second resolution): gone after 3 s.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    cache.validate("tok-active").await.unwrap();
    assert_eq!(
        endpoint.calls.load(Ordering::SeqCst),
        3,
        "tok-active is kept for valid_ttl"
    );
    cache.validate("tok-short").await.unwrap();
    assert_eq!(
        endpoint.calls.load(Ordering::SeqCst),
        4,
        "tok-short was kept no longer than its exp"
    );
    // Errors are not cached.
    assert!(cache.validate("tok-500").await.is_err());
    assert!(cache.validate("tok-500").await.is_err());
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), 6);
}

/// The inner service behind the layer: answers with the gateway identity's `sub` and whether the request was
/// passed through.
async fn identity_echo(req: Request<()>) -> Result<http::Response<String>, Infallible> {
    let sub = req
        .extensions()
        .get::<Authenticated<IntrospectionClaims>>()
        .and_then(|a| a.identity().sub.clone());
    let passthrough = req.extensions().get::<OAuthPassthrough>().is_some();
    Ok(http::Response::new(format!("{sub:?} {passthrough}")))
}

#[tokio::test]
async fn behind_the_layer() {
    let (_, url) = start().await;
    let layer = McpAuthLayer::new(Cache::new(validator(&url)))
        .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"]));
    let gateway = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(identity_echo));
    let call = |path: &str, token: &str| {
        let req = Request::post(path)
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        gateway.clone().oneshot(req)
    };
    let ok = call("/mcp/github", "tok-active").await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        call("/mcp/github", "tok-expired").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call("/mcp/atlassian", "tok-expired")
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call("/mcp/github", "tok-inactive").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call("/mcp/atlassian", "tok-inactive")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        call("/mcp/atlassian", "tok-500").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call("/mcp/atlassian", "tok-bad-json")
            .await
            .unwrap()
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

// ---- Whom the token is for ----

fn bound(url: &str) -> Introspection {
    validator(url)
        .require_audience(AUDIENCE)
        .require_issuer(ISSUER)
        .require_client_id("ide")
}

#[tokio::test]
async fn a_token_for_another_audience_is_not_ours() {
    let (_, url) = start().await;
    let introspection = bound(&url);
    for token in ["tok-for-upstream", "tok-other-issuer", "tok-active"] {
        assert_eq!(
            introspection.validate(token).await.unwrap(),
            Verdict::Unknown,
            "{token}"
        );
    }
    assert!(matches!(
        introspection.validate("tok-for-gateway").await.unwrap(),
        Verdict::Valid(claims) if claims.sub.as_deref() == Some("alice")
    ));
    assert_eq!(
        introspection
            .validate("tok-for-gateway-expired")
            .await
            .unwrap(),
        Verdict::Denied
    );
    // Each requirement on its own.
    let audience_only = validator(&url).require_audience(AUDIENCE);
    assert_eq!(
        audience_only.validate("tok-for-upstream").await.unwrap(),
        Verdict::Unknown
    );
    assert!(matches!(
        audience_only.validate("tok-other-issuer").await.unwrap(),
        Verdict::Valid(_)
    ));
    let issuer_only = validator(&url).require_issuer(ISSUER);
    assert_eq!(
        issuer_only.validate("tok-other-issuer").await.unwrap(),
        Verdict::Unknown
    );
    let client_only = validator(&url).require_client_id("ide");
    assert_eq!(
        client_only.validate("tok-for-upstream").await.unwrap(),
        Verdict::Unknown
    );
}

#[tokio::test]
async fn an_upstream_token_never_becomes_a_gateway_identity_behind_the_layer() {
    let (_, url) = start().await;
    let layer = McpAuthLayer::new(bound(&url))
        .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"]));
    let gateway = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(identity_echo));
    let call = |path: &str, token: &str| {
        let req = Request::post(path)
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        let gateway = gateway.clone();
        async move {
            let response = gateway.oneshot(req).await.unwrap();
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    // Where passthrough is allowed it travels as the client's own token, with no identity...
    assert_eq!(
        call("/mcp/atlassian", "tok-for-upstream").await,
        (StatusCode::OK, "None true".to_owned())
    );
    // ...and elsewhere it is refused as not a gateway credential.
    assert_eq!(
        call("/mcp/github", "tok-for-upstream").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call("/mcp/github", "tok-for-gateway").await,
        (StatusCode::OK, "Some(\"alice\") false".to_owned())
    );
}

#[tokio::test]
async fn an_exp_beyond_the_clock_neither_panics_nor_caps_the_cache() {
    let (endpoint, url) = start().await;
    let Verdict::Valid(claims) = validator(&url).validate("tok-forever").await.unwrap() else {
        panic!("not valid");
    };
    assert_eq!(claims.exp, Some(u64::MAX));
    assert_eq!(claims.expires_at(), None);
    let cache = Cache::builder(validator(&url))
        .valid_ttl(Duration::from_secs(60))
        .expiry(IntrospectionClaims::expires_at)
        .build();
    for _ in 0..3 {
        assert!(matches!(
            cache.validate("tok-forever").await.unwrap(),
            Verdict::Valid(_)
        ));
    }
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn an_endpoint_it_cannot_use_is_refused_when_built() {
    for endpoint in [
        "ftp://idp.test/introspect",
        "/introspect",
        "unix:/run/idp.sock",
    ] {
        let Ok(uri) = endpoint.parse() else { continue };
        let err = Introspection::new(uri, ClientAuth::bearer("t")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "introspection endpoint is not an absolute http or https URL",
            "{endpoint}"
        );
    }
}

// ---- HTTPS ----

#[tokio::test]
async fn an_https_endpoint_with_a_test_ca_trusted_through_the_connector() {
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    use support::tls::{serve_https, TestCa};
    use tower_mcp_auth::tls::{add_pem_certificates, https_connector_with_roots};

    let ca = TestCa::new("introspection test CA");
    let addr = serve_https(
        ca.server_config(),
        service_fn(|_req: Request<hyper::body::Incoming>| async {
            let body = json!({ "active": true, "sub": "tls-alice", "aud": AUDIENCE }).to_string();
            Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from(body),
            )))
        }),
    )
    .await;
    let url: http::Uri = format!("https://localhost:{}/introspect", addr.port())
        .parse()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    add_pem_certificates(&mut roots, ca.cert_pem().as_bytes()).unwrap();
    let client = Client::builder(TokioExecutor::new()).build(https_connector_with_roots(roots));
    let introspection = Introspection::with_client(client, url.clone(), ClientAuth::bearer("t"))
        .unwrap()
        .require_audience(AUDIENCE);
    assert!(matches!(
        introspection.validate("tok").await.unwrap(),
        Verdict::Valid(claims) if claims.sub.as_deref() == Some("tls-alice")
    ));

    // The default client reaches https endpoints too; one whose CA it does not trust fails closed.
    let untrusted = Introspection::new(url, ClientAuth::bearer("t")).unwrap();
    let err = untrusted.validate("tok").await.unwrap_err();
    assert!(
        err.to_string().starts_with("introspection request failed"),
        "{err}"
    );
}
