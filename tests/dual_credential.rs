//! A bearer sent beside a valid gateway key travels upstream as the client's own token only if it is not
//! itself a gateway key; the key store says so at once for static keys and cache hits.

use std::{convert::Infallible, time::Duration};

use http::{Request, Response, StatusCode};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    validate_fn,
    validators::{Cache, StaticKeys},
    Authenticated, McpAuthLayer, OAuthPassthrough, PassthroughPolicy, Validator, Verdict,
};

/// What the inner service saw: the identity and whether a passthrough token came with it.
async fn seen<V>(layer: McpAuthLayer<V>, bearer: &str) -> (StatusCode, Option<String>, bool)
where
    V: Validator<Identity = String>,
{
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|req: Request<()>| async move {
                let who = req
                    .extensions()
                    .get::<Authenticated<String>>()
                    .map(|a| a.identity().clone());
                let forwards = req.extensions().get::<OAuthPassthrough>().is_some();
                Ok::<_, Infallible>(Response::new(format!(
                    "{}|{forwards}",
                    who.unwrap_or_default()
                )))
            }));
    let request = Request::post("/mcp/atlassian")
        .header("x-litellm-api-key", "sk-alice")
        .header("authorization", format!("Bearer {bearer}"))
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let (who, forwards) = body.split_once('|').unwrap_or_default();
    (
        status,
        (!who.is_empty()).then(|| who.to_owned()),
        forwards == "true",
    )
}

fn static_keys() -> StaticKeys<String> {
    StaticKeys::new()
        .with_key("sk-alice", "alice".to_owned())
        .with_key("sk-bob", "bob".to_owned())
}

fn policy() -> PassthroughPolicy {
    PassthroughPolicy::path_prefixes(["/mcp/atlassian"])
}

#[tokio::test]
async fn a_second_gateway_key_beside_the_key_is_never_forwarded() {
    let layer = McpAuthLayer::new(static_keys()).passthrough(policy());
    let (status, who, forwards) = seen(layer, "sk-bob").await;
    assert_eq!(
        (status, who.as_deref(), forwards),
        (StatusCode::OK, Some("alice"), false)
    );
}

#[tokio::test]
async fn an_upstream_token_beside_the_key_is_forwarded() {
    let layer = McpAuthLayer::new(static_keys()).passthrough(policy());
    let (status, who, forwards) = seen(layer, "atl-oauth-token").await;
    assert_eq!(
        (status, who.as_deref(), forwards),
        (StatusCode::OK, Some("alice"), true)
    );
}

#[tokio::test]
async fn a_cached_key_store_catches_a_key_it_has_seen() {
    // A store that must be awaited (no answer at hand) behind a cache.
    let store = validate_fn(|key: String| async move {
        Ok::<_, Infallible>(match key.as_str() {
            "sk-alice" => Verdict::Valid("alice".to_owned()),
            "sk-blocked" => Verdict::Denied,
            _ => Verdict::Unknown,
        })
    });
    let cache = Cache::builder(store)
        .valid_ttl(Duration::from_secs(60))
        .unknown_ttl(Duration::from_secs(60))
        .build();
    // Not seen yet: the cache has no answer at hand, and the bearer travels on (documented).
    cache.validate("sk-blocked").await.unwrap();
    cache.validate("atl-oauth-token").await.unwrap();
    let layer = McpAuthLayer::new(cache).passthrough(policy());
    let (_, _, forwards) = seen(layer.clone(), "sk-blocked").await;
    assert!(
        !forwards,
        "a blocked gateway key the cache has seen is dropped"
    );
    let (_, _, forwards) = seen(layer, "atl-oauth-token").await;
    assert!(
        forwards,
        "a token the store called Unknown still passes through"
    );
}
