//! The layer stacked into real servers on loopback ports: axum, plain hyper, tonic, and composed with
//! tower-http's trace, sensitive-headers and timeout layers.

mod support;

use std::net::SocketAddr;

use axum::{routing::any, Router};
use bytes::Bytes;
use http::{header::AUTHORIZATION, HeaderName, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};
use support::{layer, scripted_store, Calls, Inner};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_mcp_auth::{Authenticated, OAuthPassthrough};

const KEY_HEADER: HeaderName = HeaderName::from_static("x-litellm-api-key");

/// Sends a request to a loopback server and returns its status and body.
async fn call(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::post(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn whoami(
    identity: Option<axum::Extension<Authenticated<String>>>,
    passthrough: Option<axum::Extension<OAuthPassthrough>>,
    headers: http::HeaderMap,
) -> String {
    format!(
        "identity={} passthrough={} authorization_seen={}",
        identity.map_or("-".to_owned(), |a| a.identity().clone()),
        passthrough.map_or("-".to_owned(), |p| p.expose_token().to_owned()),
        headers.contains_key(AUTHORIZATION) || headers.contains_key(KEY_HEADER),
    )
}

async fn serve_axum(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[tokio::test]
async fn axum_router_over_http() {
    let calls = Calls::default();
    let router = Router::new()
        .route("/mcp/{server}", any(whoami))
        .layer(layer(scripted_store(calls.clone())));
    let addr = serve_axum(router).await;

    let (status, body) = call(addr, "/mcp/github", &[("x-litellm-api-key", "sk-good")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        "identity=alice passthrough=- authorization_seen=false"
    );

    let (status, body) = call(
        addr,
        "/mcp/atlassian",
        &[
            ("x-litellm-api-key", "sk-good"),
            ("authorization", "Bearer upstream-oauth-token"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        "identity=alice passthrough=upstream-oauth-token authorization_seen=false"
    );

    let (status, body) = call(
        addr,
        "/mcp/atlassian",
        &[("authorization", "Bearer upstream-oauth-token")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        "identity=- passthrough=upstream-oauth-token authorization_seen=false"
    );

    let (status, _) = call(addr, "/mcp/github", &[("authorization", "Bearer a")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(addr, "/mcp/github", &[("x-litellm-api-key", "sk-blocked")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(addr, "/mcp/github", &[("x-litellm-api-key", "sk-error")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        calls.take(),
        [
            "sk-good",
            "sk-good",
            "upstream-oauth-token",
            "a",
            "sk-blocked",
            "sk-error"
        ]
    );
}

#[tokio::test]
async fn plain_hyper_server_through_tower_to_hyper_service() {
    let inner = Inner::default();
    let service = ServiceBuilder::new()
        .layer(layer(scripted_store(Calls::default())))
        .service(inner.service::<hyper::body::Incoming>());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let (status, body) = call(
        addr,
        "/mcp/atlassian",
        &[("authorization", "Bearer upstream-oauth-token")],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "inner"));
    let seen = inner.take();
    assert_eq!(seen[0].passthrough.as_deref(), Some("upstream-oauth-token"));
    assert_eq!(seen[0].identity, None);

    let (status, body) = call(addr, "/mcp/atlassian", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("\"error\""));
    assert!(inner.take().is_empty());
}

#[tokio::test]
async fn tonic_health_server_with_key_in_metadata() {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Calls::default();
    let auth = layer(scripted_store(calls.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(auth)
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let check = |key: Option<&'static str>| {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        if let Some(key) = key {
            request
                .metadata_mut()
                .insert("x-litellm-api-key", key.parse().unwrap());
        }
        request
    };
    let answer = client.check(check(Some("sk-good"))).await.unwrap();
    assert_eq!(answer.into_inner().status, 1, "SERVING");

    let refused = client.check(check(None)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert_eq!(
        refused.metadata().get("www-authenticate").unwrap(),
        "Bearer"
    );
    let refused = client.check(check(Some("made-up-a"))).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = client.check(check(Some("sk-blocked"))).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let refused = client.check(check(Some("sk-error"))).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert_eq!(
        calls.take(),
        ["sk-good", "made-up-a", "sk-blocked", "sk-error"]
    );
}

/// With the `axum` feature, handlers take the extensions as arguments; one that needs an identity refuses a
/// passthrough-only request with 401.
#[tokio::test]
async fn axum_extractors_require_what_the_handler_names() {
    async fn usage(who: Authenticated<String>) -> String {
        format!("usage of {}", who.identity())
    }
    async fn forward(token: OAuthPassthrough, who: Option<Authenticated<String>>) -> String {
        format!("{} {}", token.fingerprint(), who.is_some())
    }
    let router = Router::new()
        .route("/mcp/atlassian/usage", any(usage))
        .route("/mcp/atlassian/forward", any(forward))
        .layer(layer(scripted_store(Calls::default())));
    let addr = serve_axum(router).await;

    let (status, body) = call(
        addr,
        "/mcp/atlassian/usage",
        &[("x-litellm-api-key", "sk-good")],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "usage of alice"));
    let (status, body) = call(
        addr,
        "/mcp/atlassian/usage",
        &[("authorization", "Bearer upstream-oauth-token")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("gateway API key"), "{body}");

    let (status, body) = call(
        addr,
        "/mcp/atlassian/forward",
        &[("authorization", "Bearer upstream-oauth-token")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.ends_with(" false") && !body.contains("upstream-oauth-token"),
        "{body}"
    );
    let (status, _) = call(
        addr,
        "/mcp/atlassian/forward",
        &[("x-litellm-api-key", "sk-good")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
