//! `Jwt` against a loopback issuer with keys generated in the test; `FirstOf` beside gateway keys; the layer's
//! answers for JWTs of our issuer (never passthrough, never 403).
#![cfg(feature = "jwt")]

use testkit::issuer;

use std::{convert::Infallible, io, sync::Arc, time::Duration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use http::{Request, Response, StatusCode};
use issuer::{now, Issuer};
use serde_json::json;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    validate_fn,
    validators::{Either, FirstOf, Jwt, JwtClaims, StaticKeys},
    Authenticated, McpAuthLayer, OAuthPassthrough, PassthroughPolicy, Validator, Verdict,
};

const ROUTE_A: &str = "https://gw.example/mcp/a";
const ROUTE_B: &str = "https://gw.example/mcp/b";

fn jwt(issuer: &Issuer) -> Jwt {
    Jwt::builder(issuer.url.clone(), ROUTE_A)
        .jwks_uri(issuer.jwks_uri())
        .build()
        .unwrap()
}

async fn verdict(jwt: &Jwt, token: &str) -> Verdict<Arc<JwtClaims>> {
    jwt.validate(token).await.unwrap()
}

#[tokio::test]
async fn a_token_for_the_route_is_valid_with_its_claims_and_the_raw_token_redacted() {
    let issuer = Issuer::start().await;
    let token = issuer.token(ROUTE_A);
    let Verdict::Valid(claims) = verdict(&jwt(&issuer), &token).await else {
        panic!("a token of our issuer for our audience is valid");
    };
    assert_eq!(claims.iss, issuer.url);
    assert_eq!(claims.sub.as_deref(), Some("client-1"));
    assert_eq!(claims.aud, [ROUTE_A]);
    assert_eq!(
        claims.scopes().collect::<Vec<_>>(),
        ["mcp:read", "mcp:write"]
    );
    assert_eq!(claims.token(), token);
    let debug = format!("{claims:?}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!debug.contains(signature), "Debug never shows the token");
    assert!(debug.contains("Fingerprint("));
}

#[tokio::test]
async fn the_issuer_is_found_through_its_metadata() {
    let issuer = Issuer::start().await;
    // No RFC 8414 document on this server: discovery falls back to OpenID Connect's.
    let jwt = Jwt::builder(issuer.url.clone(), ROUTE_A).build().unwrap();
    assert!(matches!(
        verdict(&jwt, &issuer.token(ROUTE_A)).await,
        Verdict::Valid(_)
    ));
    assert_eq!(
        issuer
            .shared
            .metadata_hits
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // Metadata naming another issuer is refused (RFC 8414 §3.3): no keys, so a token of ours is a 503.
    let other = Issuer::start().await;
    other
        .shared
        .extra_metadata
        .lock()
        .unwrap()
        .insert("issuer".into(), json!("https://evil.example"));
    let jwt = Jwt::builder(other.url.clone(), ROUTE_A).build().unwrap();
    let error = jwt.validate(&other.token(ROUTE_A)).await.unwrap_err();
    assert!(error.to_string().contains("another issuer"), "{error}");
}

#[tokio::test]
async fn bad_tokens_of_our_issuer_are_invalid() {
    let issuer = Issuer::start().await;
    let jwt = jwt(&issuer);
    let for_b = issuer.token(ROUTE_B);
    let expired = issuer.sign("k1", &issuer.claims(ROUTE_A, -120));
    let mut not_yet = issuer.claims(ROUTE_A, 3600);
    not_yet["nbf"] = json!(now() + 600);
    let not_yet = issuer.sign("k1", &not_yet);
    // Tampered: the payload swapped for one naming another subject, the signature kept.
    let good = issuer.token(ROUTE_A);
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut payload = issuer.claims(ROUTE_A, 3600);
    payload["sub"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    let tampered = parts.join(".");
    // Signed by a key the issuer never published.
    issuer.add_key("rogue", false);
    let rogue = issuer.sign_as("rogue", Some("k1"), &issuer.claims(ROUTE_A, 3600));
    // `alg: none`, and HS256 keyed with the public key (algorithm confusion).
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(issuer.claims(ROUTE_A, 3600).to_string())
    );
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &issuer.claims(ROUTE_A, 3600),
        &jsonwebtoken::EncodingKey::from_secret(b"the published x coordinate"),
    )
    .unwrap();
    // No `aud` at all.
    let mut no_aud = issuer.claims(ROUTE_A, 3600);
    no_aud.as_object_mut().unwrap().remove("aud");
    let no_aud = issuer.sign("k1", &no_aud);
    for (case, token) in [
        ("another route's audience", &for_b),
        ("expired", &expired),
        ("not yet valid", &not_yet),
        ("tampered", &tampered),
        ("unpublished key", &rogue),
        ("alg none", &none),
        ("HS256", &hs256),
        ("no aud", &no_aud),
    ] {
        assert_eq!(verdict(&jwt, token).await, Verdict::Invalid, "{case}");
    }
    // The same token is valid on the route it was issued for.
    assert!(matches!(
        verdict(&jwt.for_audience(ROUTE_B), &for_b).await,
        Verdict::Valid(_)
    ));
}

#[tokio::test]
async fn credentials_that_are_not_our_jwts_are_unknown() {
    let issuer = Issuer::start().await;
    let other = Issuer::start().await;
    let jwt = jwt(&issuer);
    assert_eq!(verdict(&jwt, "sk-gateway-key").await, Verdict::Unknown);
    assert_eq!(verdict(&jwt, "a.b.c").await, Verdict::Unknown);
    assert_eq!(verdict(&jwt, &other.token(ROUTE_A)).await, Verdict::Unknown);
    assert_eq!(issuer.jwks_hits(), 0, "the JWKS is not fetched for them");
}

#[tokio::test(flavor = "current_thread")]
async fn a_rotated_key_is_admitted_after_one_refetch_and_unknown_kids_are_rate_limited() {
    let issuer = Issuer::start().await;
    let interval = Duration::from_secs(60);
    let jwt = Jwt::builder(issuer.url.clone(), ROUTE_A)
        .jwks_uri(issuer.jwks_uri())
        .min_refresh_interval(interval)
        .default_max_age(Duration::from_secs(3600))
        .build()
        .unwrap();
    assert!(matches!(
        verdict(&jwt, &issuer.token(ROUTE_A)).await,
        Verdict::Valid(_)
    ));
    assert_eq!(issuer.jwks_hits(), 1);

    // A burst of tokens naming unknown kids: at most one refetch per interval.
    tokio::time::pause();
    tokio::time::advance(interval).await;
    tokio::time::resume();
    let claims = issuer.claims(ROUTE_A, 3600);
    let burst = (0..50).map(|i| {
        let token = issuer.sign_as("k1", Some(&format!("unknown-{i}")), &claims);
        let jwt = jwt.clone();
        async move { jwt.validate(&token).await.unwrap() }
    });
    let verdicts = futures_util::future::join_all(burst).await;
    assert!(verdicts.iter().all(|v| *v == Verdict::Invalid));
    assert_eq!(issuer.jwks_hits(), 2, "one refetch for the whole burst");

    // The issuer rotates: a token under the new kid inside the interval is refused without a fetch...
    issuer.add_key("k2", true);
    let rotated = issuer.sign("k2", &claims);
    assert_eq!(verdict(&jwt, &rotated).await, Verdict::Invalid);
    assert_eq!(issuer.jwks_hits(), 2);
    // ...and admitted after one refetch once the interval has passed.
    tokio::time::pause();
    tokio::time::advance(interval).await;
    tokio::time::resume();
    assert!(matches!(verdict(&jwt, &rotated).await, Verdict::Valid(_)));
    assert_eq!(issuer.jwks_hits(), 3);
    assert!(matches!(verdict(&jwt, &rotated).await, Verdict::Valid(_)));
    assert_eq!(issuer.jwks_hits(), 3, "known from then on");
}

#[tokio::test(flavor = "current_thread")]
async fn cache_control_sets_freshness_and_a_failed_refresh_keeps_the_last_good_set() {
    let issuer = Issuer::start().await;
    issuer.set_cache_control(Some("public, max-age=120"));
    let jwt = Jwt::builder(issuer.url.clone(), ROUTE_A)
        .jwks_uri(issuer.jwks_uri())
        .min_refresh_interval(Duration::from_secs(10))
        .build()
        .unwrap();
    let token = issuer.token(ROUTE_A);
    assert!(matches!(verdict(&jwt, &token).await, Verdict::Valid(_)));
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(100)).await;
    tokio::time::resume();
    assert!(matches!(verdict(&jwt, &token).await, Verdict::Valid(_)));
    assert_eq!(issuer.jwks_hits(), 1, "fresh for max-age");
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(21)).await;
    tokio::time::resume();
    issuer.set_failing(true);
    assert!(matches!(verdict(&jwt, &token).await, Verdict::Valid(_)));
    assert_eq!(
        issuer.jwks_hits(),
        2,
        "stale: refetched, failed, old set kept"
    );
}

#[tokio::test]
async fn an_issuer_that_never_answered_fails_closed() {
    let issuer = Issuer::start().await;
    issuer.set_failing(true);
    let jwt = jwt(&issuer);
    let error = jwt.validate(&issuer.token(ROUTE_A)).await.unwrap_err();
    assert!(error.to_string().contains("500"), "{error}");
    // Through the layer: 503, inner service not called.
    let response = call(layer_over(jwt), "/mcp/a", &issuer.token(ROUTE_A)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

fn layer_over<V: Validator>(validator: V) -> McpAuthLayer<V> {
    McpAuthLayer::new(validator).passthrough(PassthroughPolicy::path_prefixes(["/mcp/a"]))
}

/// Calls a service behind `layer` that answers 200 with what it saw in a header.
async fn call<V>(layer: McpAuthLayer<V>, path: &str, bearer: &str) -> Response<String>
where
    V: Validator,
    V::Identity: std::fmt::Debug,
{
    let inner = service_fn(|req: Request<()>| async move {
        let who = req
            .extensions()
            .get::<Authenticated<V::Identity>>()
            .map(|a| format!("{:?}", a.identity()).len());
        let passthrough = req.extensions().get::<OAuthPassthrough>().is_some();
        let body = format!("identity={} passthrough={passthrough}", who.is_some());
        Ok::<_, Infallible>(Response::new(body))
    });
    let service = ServiceBuilder::new().layer(layer).service(inner);
    let request = Request::post(path)
        .header("authorization", format!("Bearer {bearer}"))
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    Response::from_parts(parts, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn through_the_layer_a_bad_token_of_our_issuer_is_401_even_where_passthrough_is_allowed() {
    let issuer = Issuer::start().await;
    let other = Issuer::start().await;
    let keys = || StaticKeys::new().with_key("sk-ops", "ops".to_owned());
    let layer = || layer_over(FirstOf::new(keys(), jwt(&issuer)));

    let ok = call(layer(), "/mcp/a", &issuer.token(ROUTE_A)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.body(), "identity=true passthrough=false");

    let key = call(layer(), "/mcp/a", "sk-ops").await;
    assert_eq!(key.body(), "identity=true passthrough=false");

    for token in [
        issuer.token(ROUTE_B),
        issuer.sign("k1", &issuer.claims(ROUTE_A, -120)),
    ] {
        let refused = call(layer(), "/mcp/a", &token).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
        assert!(!refused.body().contains("identity="), "inner not called");
    }

    // Another issuer's token is not ours: it passes through where the route allows it, as before.
    let foreign = call(layer(), "/mcp/a", &other.token(ROUTE_A)).await;
    assert_eq!(foreign.body(), "identity=false passthrough=true");
}

#[tokio::test]
async fn first_of_asks_in_order_and_fails_closed() {
    let keys = StaticKeys::new().with_key("sk-ops", "ops".to_owned());
    let second_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = Arc::clone(&second_calls);
    let second = validate_fn(move |credential: String| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            Ok::<_, Infallible>(match credential.as_str() {
                "jwt-good" => Verdict::Valid(7u32),
                "jwt-bad" => Verdict::Invalid,
                _ => Verdict::Unknown,
            })
        }
    });
    let both = FirstOf::new(keys, second);
    assert_eq!(
        both.validate("sk-ops").await.unwrap(),
        Verdict::Valid(Either::Left("ops".to_owned()))
    );
    assert_eq!(
        both.validate_now("sk-ops").unwrap().unwrap(),
        Verdict::Valid(Either::Left("ops".to_owned()))
    );
    assert_eq!(second_calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(
        both.validate("jwt-good").await.unwrap(),
        Verdict::Valid(Either::Right(7))
    );
    assert_eq!(both.validate("jwt-bad").await.unwrap(), Verdict::Invalid);
    assert_eq!(both.validate("other").await.unwrap(), Verdict::Unknown);

    let failing =
        validate_fn(|_: String| async { Err::<Verdict<()>, _>(io::Error::other("store down")) });
    let never = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = Arc::clone(&never);
    let after = validate_fn(move |_: String| {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, Infallible>(Verdict::Valid(())) }
    });
    let closed = FirstOf::new(failing, after);
    assert!(closed.validate("anything").await.is_err());
    assert_eq!(never.load(std::sync::atomic::Ordering::SeqCst), 0);
}

use testkit::tls;

#[tokio::test]
async fn keys_are_fetched_over_https_from_a_trusted_issuer_only() {
    let issuer = Issuer::start().await;
    // The issuer's JWKS, served again over HTTPS with a certificate of a CA made in the test.
    let jwks = reqwest::get(issuer.jwks_uri().to_string())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let ca = tls::TestCa::new("jwks test CA");
    let addr = tls::serve_https(
        ca.server_config(),
        service_fn(move |_: Request<hyper::body::Incoming>| {
            let jwks = jwks.clone();
            async move { Ok::<_, Infallible>(Response::new(http_body_util::Full::new(jwks))) }
        }),
    )
    .await;
    let jwks_uri: http::Uri = format!("https://127.0.0.1:{}/jwks", addr.port())
        .parse()
        .unwrap();
    let token = issuer.token(ROUTE_A);

    let mut roots = rustls::RootCertStore::empty();
    tower_mcp_auth::tls::add_pem_certificates(&mut roots, ca.cert_pem().as_bytes()).unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(tower_mcp_auth::tls::https_connector_with_roots(roots));
    let trusting = Jwt::builder(issuer.url.clone(), ROUTE_A)
        .jwks_uri(jwks_uri.clone())
        .build_with_client(client);
    assert!(matches!(
        trusting.validate(&token).await.unwrap(),
        Verdict::Valid(_)
    ));

    // The default client does not trust the test CA: no keys, so 503, never a verdict.
    let default = Jwt::builder(issuer.url.clone(), ROUTE_A)
        .jwks_uri(jwks_uri)
        .build()
        .unwrap();
    assert!(default.validate(&token).await.is_err());
}

#[tokio::test]
async fn an_https_issuer_naming_an_http_jwks_uri_is_refused_and_the_keys_never_fetched_in_clear() {
    // The keys are served in clear text by the test issuer; the metadata, over HTTPS, points at them.
    let keys = Issuer::start().await;
    let metadata = Arc::new(std::sync::Mutex::new(serde_json::Value::Null));
    let ca = tls::TestCa::new("metadata test CA");
    let served = Arc::clone(&metadata);
    let addr = tls::serve_https(
        ca.server_config(),
        service_fn(move |_: Request<hyper::body::Incoming>| {
            let body = served.lock().unwrap().to_string();
            async move {
                Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(body),
                )))
            }
        }),
    )
    .await;
    let issuer = format!("https://127.0.0.1:{}", addr.port());
    *metadata.lock().unwrap() = json!({"issuer": issuer, "jwks_uri": keys.jwks_uri().to_string()});
    let mut claims = keys.claims(ROUTE_A, 3600);
    claims["iss"] = json!(issuer);
    let token = keys.sign("k1", &claims);

    let mut roots = rustls::RootCertStore::empty();
    tower_mcp_auth::tls::add_pem_certificates(&mut roots, ca.cert_pem().as_bytes()).unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(tower_mcp_auth::tls::https_connector_with_roots(roots));
    let jwt = Jwt::builder(issuer.clone(), ROUTE_A).build_with_client(client);
    assert!(
        jwt.validate(&token).await.is_err(),
        "no keys from an http jwks_uri: 503, never a verdict"
    );
    assert_eq!(keys.jwks_hits(), 0, "the key set was fetched in clear text");
}

#[tokio::test]
async fn a_token_not_typed_at_jwt_is_invalid_unless_the_issuer_is_allowed_plain_jwt() {
    let issuer = Issuer::start().await;
    let claims = issuer.claims(ROUTE_A, 3600);
    // An ID token, or any other JWT of the issuer, is no access token (RFC 9068 §4).
    let typed_jwt = issuer.sign_typed("k1", Some("k1"), Some("JWT"), &claims);
    let untyped = issuer.sign_typed("k1", Some("k1"), None, &claims);
    let media_type = issuer.sign_typed("k1", Some("k1"), Some("application/AT+JWT"), &claims);
    let strict = jwt(&issuer);
    for token in [&typed_jwt, &untyped] {
        assert!(matches!(
            strict.validate(token).await.unwrap(),
            Verdict::Invalid
        ));
    }
    assert!(matches!(
        strict.validate(&media_type).await.unwrap(),
        Verdict::Valid(_)
    ));
    // The opt-out, for issuers that type their access tokens `JWT`.
    let lenient = Jwt::builder(issuer.url.clone(), ROUTE_A)
        .jwks_uri(issuer.jwks_uri())
        .require_at_jwt_typ(false)
        .build()
        .unwrap();
    for token in [&typed_jwt, &untyped] {
        assert!(matches!(
            lenient.validate(token).await.unwrap(),
            Verdict::Valid(_)
        ));
    }
}
