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

/// A token of our issuer beside a key is ours whatever the key set's state, and a chain asks every validator.
#[cfg(feature = "jwt")]
mod issuer_aware {
    use super::*;
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    use tower_mcp_auth::validators::{FirstOf, Jwt};

    const ISSUER: &str = "http://127.0.0.1:9/issuer";

    /// A JWT naming `iss`, signed by no one: only its claims are read before any check.
    fn jwt_of(iss: &str) -> String {
        let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.c2ln",
            part(serde_json::json!({"alg": "ES256", "kid": "k1"})),
            part(
                serde_json::json!({"iss": iss, "aud": "https://gw.example/mcp/atlassian", "exp": 4_000_000_000u64})
            ),
        )
    }

    /// A JWT validator whose key set can never be fetched (nothing listens on port 9).
    fn unreachable_jwt() -> Jwt {
        Jwt::builder(ISSUER, "https://gw.example/mcp/atlassian")
            .jwks_uri("http://127.0.0.1:9/jwks".parse().unwrap())
            .build()
            .unwrap()
    }

    async fn forwards<V: Validator>(validator: V, bearer: &str) -> bool {
        let service = ServiceBuilder::new()
            .layer(McpAuthLayer::new(validator).passthrough(policy()))
            .service(service_fn(|req: Request<()>| async move {
                Ok::<_, Infallible>(Response::new(
                    req.extensions()
                        .get::<OAuthPassthrough>()
                        .is_some()
                        .to_string(),
                ))
            }));
        let request = Request::post("/mcp/atlassian")
            .header("x-litellm-api-key", "sk-alice")
            .header("authorization", format!("Bearer {bearer}"))
            .body(())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        // The inner service answered `true` or `false`.
        &body[..] == b"true"
    }

    #[tokio::test]
    async fn a_jwt_of_our_issuer_beside_a_key_is_never_forwarded_whatever_its_key_set() {
        let chain = FirstOf::new(static_keys(), unreachable_jwt());
        assert!(
            !forwards(chain.clone(), &jwt_of(ISSUER)).await,
            "a token naming our issuer went upstream as the client's own"
        );
        // A JWT of another issuer, and an opaque upstream token, are the client's own.
        assert!(forwards(chain.clone(), &jwt_of("https://idp.other.example")).await);
        assert!(forwards(chain, "atl-oauth-token").await);
    }

    #[tokio::test]
    async fn a_chain_asks_every_validator_and_never_forwards_what_it_cannot_rule_out() {
        // A first validator that must await its store (an uncached key table): it cannot answer at once.
        let store = validate_fn(|key: String| async move {
            Ok::<_, Infallible>(if key == "sk-alice" {
                Verdict::Valid("alice".to_owned())
            } else {
                Verdict::Unknown
            })
        });
        let chain = FirstOf::new(store, unreachable_jwt());
        // The JWT validator is asked all the same, and knows its issuer's token.
        assert_eq!(
            chain.recognize_now(&jwt_of(ISSUER)),
            tower_mcp_auth::Recognition::Ours
        );
        assert!(!forwards(chain.clone(), &jwt_of(ISSUER)).await);
        // The store could still call the bearer a key: the chain cannot rule it out, so it stays behind.
        assert!(!forwards(chain, "atl-oauth-token").await);
    }
}
