//! `RequireUpstreamLayer`: which upstream an admitted caller may reach, one row per case, behind the real
//! `McpAuthLayer`.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    permissions::{KeyIdentity, RequireUpstreamLayer, Upstreams},
    validators::StaticKeys,
    Admission, Authenticated, CredentialSource, McpAuthLayer, PassthroughPolicy,
};

const KEYS: &str = "sk-a=atl alice\nsk-b=priv bob\nsk-all ops\n";

/// Sends a request through `McpAuthLayer` → `RequireUpstreamLayer` → a counting inner service.
async fn send(path: &str, headers: &[(&str, &str)]) -> (StatusCode, String, usize) {
    let keys: StaticKeys<KeyIdentity> = StaticKeys::parse(KEYS).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let service = ServiceBuilder::new()
        .layer(McpAuthLayer::new(keys).passthrough(PassthroughPolicy::path_prefixes(["/mcp/atl"])))
        .layer(RequireUpstreamLayer::<KeyIdentity, _>::path_segment(
            "/mcp/",
        ))
        .service(service_fn(move |_req: Request<()>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                Ok::<_, Infallible>(Response::new(
                    http_body_util::Full::new(bytes::Bytes::new()),
                ))
            }
        }));
    let mut builder = Request::post(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = service.oneshot(builder.body(()).unwrap()).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8(body.to_vec()).unwrap(),
        calls.load(Ordering::SeqCst),
    )
}

#[tokio::test]
async fn key_a_reaches_atl_and_is_denied_priv() {
    let (status, _, calls) = send("/mcp/atl/x", &[("x-litellm-api-key", "sk-a")]).await;
    assert_eq!((status, calls), (StatusCode::OK, 1));
    let (status, body, calls) = send("/mcp/priv", &[("x-litellm-api-key", "sk-a")]).await;
    assert_eq!((status, calls), (StatusCode::FORBIDDEN, 0));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "access_denied");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("priv"), "{description}");
    assert!(!description.contains("sk-a"), "{description}");
}

#[tokio::test]
async fn a_path_that_a_normalising_router_could_reroute_is_denied_to_a_restricted_key() {
    for path in [
        "/mcp/atl/../priv",
        "/mcp/atl/%2e%2e/priv",
        "/mcp//priv",
        "/mcp/%61tl",
        "/mcp/./priv",
    ] {
        let (status, _, calls) = send(path, &[("x-litellm-api-key", "sk-a")]).await;
        assert_eq!((status, calls), (StatusCode::FORBIDDEN, 0), "{path}");
        let (status, _, _) = send(path, &[("x-litellm-api-key", "sk-all")]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn key_b_the_reverse_and_as_a_bearer_too() {
    let (status, _, _) = send("/mcp/priv", &[("authorization", "Bearer sk-b")]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, calls) = send("/mcp/atl", &[("authorization", "Bearer sk-b")]).await;
    assert_eq!((status, calls), (StatusCode::FORBIDDEN, 0));
}

#[tokio::test]
async fn an_unrestricted_key_reaches_both() {
    for path in ["/mcp/atl", "/mcp/priv"] {
        let (status, _, _) = send(path, &[("x-litellm-api-key", "sk-all")]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn a_passthrough_only_request_is_governed_by_the_passthrough_policy_alone() {
    let (status, _, calls) = send("/mcp/atl", &[("authorization", "Bearer user-oauth")]).await;
    assert_eq!((status, calls), (StatusCode::OK, 1));
    // Where the route does not accept passthrough, the auth layer already refused it.
    let (status, _, calls) = send("/mcp/priv", &[("authorization", "Bearer user-oauth")]).await;
    assert_eq!((status, calls), (StatusCode::UNAUTHORIZED, 0));
}

#[tokio::test]
async fn a_request_the_auth_layer_never_admitted_is_denied() {
    let layer = RequireUpstreamLayer::<KeyIdentity, _>::new(|_: &Uri, headers: &HeaderMap| {
        headers
            .get("x-target")
            .map(|v| v.to_str().unwrap().to_owned())
    });
    let service = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    }));
    let status = |request: Request<()>| {
        let service = service.clone();
        async move { service.oneshot(request).await.unwrap().status() }
    };
    let request = || {
        Request::post("/")
            .header("x-target", "atl")
            .body(())
            .unwrap()
    };
    // No admission at all: fail closed.
    assert_eq!(status(request()).await, StatusCode::FORBIDDEN);
    // An admission that claims authentication without an identity of this type: fail closed.
    let mut claimed = request();
    claimed
        .extensions_mut()
        .insert(Admission::Authenticated(CredentialSource::KeyHeader));
    assert_eq!(status(claimed).await, StatusCode::FORBIDDEN);
    // With the identity: allowed by its upstreams.
    let mut admitted = request();
    admitted
        .extensions_mut()
        .insert(Admission::Authenticated(CredentialSource::KeyHeader));
    admitted.extensions_mut().insert(Authenticated::new(
        KeyIdentity::new("alice", Upstreams::only(["atl"])),
        CredentialSource::KeyHeader,
    ));
    assert_eq!(status(admitted).await, StatusCode::OK);
    // No target: not this layer's business.
    assert_eq!(
        status(Request::post("/").body(()).unwrap()).await,
        StatusCode::OK
    );
}
