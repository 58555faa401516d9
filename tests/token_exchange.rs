//! The spec-compliant path end to end, on loopback: a client's JWT for the gateway route is admitted by `Jwt`,
//! exchanged (RFC 8693) at an authorization server for a token whose audience is the upstream, and an rmcp
//! upstream that itself admits only tokens for its own audience (with this crate's `Jwt`) lists its tools.
#![cfg(all(feature = "jwt", feature = "token-exchange"))]

use testkit::issuer;
use testkit::resource_server;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use axum::{
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Form, Json, Router,
};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use issuer::{Issuer, Shared};
use resource_server::{
    initialize, mcp_client, start_gateway, start_upstream, Identity, UpstreamLog, METADATA, ROUTE,
};
use serde_json::json;
use tokio::net::TcpListener;
use tower_mcp_auth::{
    upstream::{ExchangeTarget, Subject, TokenClientAuth, TokenExchange},
    validators::{Either, Jwt},
    Validator, Verdict,
};

const CLIENT_ID: &str = "gateway";
const CLIENT_SECRET: &str = "gateway-secret";

// ---- The authorization server's token endpoint ----

/// What the token endpoint does: exchange, refuse (400) or fail (500); and what it saw.
#[derive(Default)]
struct TokenEndpoint {
    exchanges: AtomicUsize,
    /// 0 = exchange, 1 = 400 invalid_grant, 2 = 500.
    mode: AtomicUsize,
    revoked: Mutex<HashSet<String>>,
    last_form: Mutex<HashMap<String, String>>,
}

fn token_endpoint(
    endpoint: Arc<TokenEndpoint>,
    issuer: Arc<Mutex<Option<Issuer>>>,
) -> Router<Arc<Shared>> {
    Router::new().route(
        "/token",
        post(
            move |headers: HeaderMap, Form(form): Form<HashMap<String, String>>| {
                let endpoint = Arc::clone(&endpoint);
                let issuer = issuer.lock().unwrap().clone().expect("issuer started");
                async move { exchange(&endpoint, &issuer, &headers, form) }
            },
        ),
    )
}

fn exchange(
    endpoint: &TokenEndpoint,
    issuer: &Issuer,
    headers: &HeaderMap,
    form: HashMap<String, String>,
) -> Response {
    endpoint.exchanges.fetch_add(1, Ordering::SeqCst);
    *endpoint.last_form.lock().unwrap() = form.clone();
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let client_ok = headers
        .get("authorization")
        .is_some_and(|v| v == basic.as_str())
        || (form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET));
    if !client_ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    match endpoint.mode.load(Ordering::SeqCst) {
        1 => return invalid_grant(),
        2 => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        3 => return StatusCode::NOT_FOUND.into_response(),
        4 => return StatusCode::BAD_GATEWAY.into_response(),
        _ => {}
    }
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:token-exchange")
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    let subject = form.get("subject_token").cloned().unwrap_or_default();
    if endpoint.revoked.lock().unwrap().contains(&subject) {
        return invalid_grant();
    }
    // The subject must be a valid token of this issuer (checked with the crate's own validator, for any
    // audience: the server only needs the signature, issuer and expiry).
    let Some(claims) = issuer.verify_any_audience(&subject) else {
        return invalid_grant();
    };
    let Some(resource) = form.get("resource") else {
        return invalid_grant();
    };
    let mut issued = issuer.claims(resource, 3600);
    issued["sub"] = json!(claims["sub"]);
    issued["jti"] = json!(format!("x-{}", endpoint.exchanges.load(Ordering::SeqCst)));
    let token = issuer.sign("k1", &issued);
    Json(json!({
        "access_token": token,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
    .into_response()
}

fn invalid_grant() -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_grant"})),
    )
        .into_response()
}

// ---- The loopback set-up ----

struct Setup {
    issuer: Issuer,
    endpoint: Arc<TokenEndpoint>,
    exchange: TokenExchange,
    upstream: UpstreamLog,
    gateway: String,
}

impl Setup {
    fn route_url(&self) -> String {
        format!("{}{ROUTE}", self.gateway)
    }
}

async fn setup_with(client_auth: TokenClientAuth) -> Setup {
    let endpoint = Arc::new(TokenEndpoint::default());
    let slot = Arc::new(Mutex::new(None));
    let issuer = Issuer::start_with(token_endpoint(Arc::clone(&endpoint), Arc::clone(&slot))).await;
    *slot.lock().unwrap() = Some(issuer.clone());
    let jwt_for = |audience: String| {
        Jwt::builder(issuer.url.clone(), audience)
            .jwks_uri(issuer.jwks_uri())
            .build()
            .unwrap()
    };
    let upstream = UpstreamLog::default();
    let upstream_url = start_upstream(jwt_for, upstream.clone()).await;
    let exchange = TokenExchange::builder(
        format!("{}/token", issuer.url).parse().unwrap(),
        client_auth,
    )
    .build()
    .unwrap();
    let gateway = start_gateway(jwt_for, exchange.clone(), &upstream_url).await;
    Setup {
        issuer,
        endpoint,
        exchange,
        upstream,
        gateway,
    }
}

async fn setup() -> Setup {
    setup_with(TokenClientAuth::basic(CLIENT_ID, CLIENT_SECRET)).await
}

fn exchanges(setup: &Setup) -> usize {
    setup.endpoint.exchanges.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_token_for_the_route_is_exchanged_for_one_the_upstream_accepts_once_per_subject() {
    let setup = setup().await;
    let token = setup.issuer.token(&setup.route_url());
    let client = mcp_client(setup.route_url(), &token).await.unwrap();
    for _ in 0..100 {
        let tools = client.list_all_tools().await.unwrap();
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0].name, "add");
    }
    client.cancel().await.unwrap();
    assert_eq!(exchanges(&setup), 1, "over 100 requests, one exchange");
    assert!(setup.upstream.hits() >= 101);
    assert!(setup
        .upstream
        .subjects
        .lock()
        .unwrap()
        .iter()
        .all(|sub| sub == "client-1"));
    let form = setup.endpoint.last_form.lock().unwrap().clone();
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(form["subject_token"], token);
    assert_eq!(
        form["subject_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert!(!form.contains_key("client_secret"), "client_secret_basic");
    // The client's token for the gateway is not what the upstream accepts.
    let upstream_hits = setup.upstream.hits();
    assert!(matches!(
        Jwt::builder(setup.issuer.url.clone(), "elsewhere")
            .jwks_uri(setup.issuer.jwks_uri())
            .build()
            .unwrap()
            .validate(&token)
            .await
            .unwrap(),
        Verdict::Invalid
    ));
    assert_eq!(setup.upstream.hits(), upstream_hits);
}

#[tokio::test]
async fn concurrent_exchanges_of_one_subject_share_one_request() {
    let setup = setup_with(TokenClientAuth::post(CLIENT_ID, CLIENT_SECRET)).await;
    let token = setup.issuer.token(&setup.route_url());
    let target = ExchangeTarget::resource("http://upstream.example/mcp/a");
    let calls = (0..100).map(|_| {
        let exchange = setup.exchange.clone();
        let (token, target) = (token.clone(), target.clone());
        async move {
            let subject = Subject {
                token: &token,
                expires_at: None,
            };
            exchange.exchange(subject, &target).await.unwrap()
        }
    });
    let tokens = futures_util::future::join_all(calls).await;
    assert_eq!(exchanges(&setup), 1);
    assert!(tokens.iter().all(|t| t.as_str() == tokens[0].as_str()));
    assert!(!format!("{:?}", tokens[0]).contains(tokens[0].as_str()));
    let form = setup.endpoint.last_form.lock().unwrap().clone();
    assert_eq!(form["client_secret"], CLIENT_SECRET, "client_secret_post");
    // Another target is another exchange.
    let other = ExchangeTarget::audience("other")
        .with_resource("http://other.example/")
        .with_scope("read");
    let subject = Subject {
        token: &token,
        expires_at: None,
    };
    setup.exchange.exchange(subject, &other).await.unwrap();
    assert_eq!(exchanges(&setup), 2);
}

#[tokio::test]
async fn another_routes_expired_and_tampered_tokens_are_401_and_the_upstream_is_not_called() {
    let setup = setup().await;
    let for_other_route = setup.issuer.token(&format!("{}/mcp/b", setup.gateway));
    let expired = setup
        .issuer
        .sign("k1", &setup.issuer.claims(&setup.route_url(), -300));
    let good = setup.issuer.token(&setup.route_url());
    let (head, rest) = good.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let mut claims = setup.issuer.claims(&setup.route_url(), 3600);
    claims["sub"] = json!("admin");
    let tampered = format!(
        "{head}.{}.{signature}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    for (case, token) in [
        ("another route", &for_other_route),
        ("expired", &expired),
        ("tampered", &tampered),
    ] {
        let response = initialize(setup.route_url(), token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{case}: {challenge}"
        );
    }
    assert_eq!(setup.upstream.hits(), 0);
    assert_eq!(exchanges(&setup), 0);
}

#[tokio::test]
async fn authorization_server_failures_are_503_and_refusals_401_with_the_route_challenge() {
    let setup = setup().await;
    let token = setup.issuer.token(&setup.route_url());

    setup.endpoint.mode.store(2, Ordering::SeqCst);
    let response = initialize(setup.route_url(), &token).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A 5xx is not cached: the next request asks again.
    let response = initialize(setup.route_url(), &token).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(exchanges(&setup), 2);

    setup.endpoint.mode.store(1, Ordering::SeqCst);
    let response = initialize(setup.route_url(), &token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert_eq!(
        challenge,
        format!(r#"Bearer error="invalid_token", resource_metadata="{METADATA}""#)
    );
    let body = String::from_utf8(response.body().to_vec()).unwrap();
    assert!(!body.contains(&token));
    // A refusal is remembered briefly: the retry does not reach the authorization server.
    let response = initialize(setup.route_url(), &token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(exchanges(&setup), 3);
    assert_eq!(setup.upstream.hits(), 0);

    // A token endpoint nobody listens on: 503.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = TokenExchange::builder(
        format!("http://127.0.0.1:{port}/token").parse().unwrap(),
        TokenClientAuth::basic(CLIENT_ID, CLIENT_SECRET),
    )
    .build()
    .unwrap();
    let subject = Subject {
        token: &token,
        expires_at: None,
    };
    let error = down
        .exchange(subject, &ExchangeTarget::resource("r"))
        .await
        .unwrap_err();
    assert!(!error.is_refused());
    assert!(!error.to_string().contains(&token));
}

#[tokio::test]
async fn a_token_endpoint_answering_404_or_another_5xx_is_503_never_the_clients_401() {
    let setup = setup().await;
    let token = setup.issuer.token(&setup.route_url());
    // 404: the gateway's own misconfiguration; 502: the authorization server unwell. Neither is the client's.
    for mode in [3, 4] {
        setup.endpoint.mode.store(mode, Ordering::SeqCst);
        let response = initialize(setup.route_url(), &token).await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "mode {mode}"
        );
        assert!(response.headers().get("www-authenticate").is_none());
    }
    assert_eq!(setup.upstream.hits(), 0);
}

#[tokio::test]
async fn an_upstream_401_on_a_cached_token_causes_one_re_exchange() {
    let setup = setup().await;
    let token = setup.issuer.token(&setup.route_url());
    assert_eq!(
        initialize(setup.route_url(), &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(exchanges(&setup), 1);

    setup.upstream.refuse_next(1);
    let hits = setup.upstream.hits();
    assert_eq!(
        initialize(setup.route_url(), &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(exchanges(&setup), 2, "one re-exchange");
    assert_eq!(setup.upstream.hits(), hits + 2, "one retry");

    // Refused twice: one retry only, and the upstream's 401 reaches the client.
    setup.upstream.refuse_next(2);
    let hits = setup.upstream.hits();
    assert_eq!(
        initialize(setup.route_url(), &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(setup.upstream.hits(), hits + 2);
    assert_eq!(exchanges(&setup), 3);
}

#[tokio::test]
async fn revoking_the_subject_drops_its_exchanged_tokens() {
    let setup = setup().await;
    let token = setup.issuer.token(&setup.route_url());
    assert_eq!(
        initialize(setup.route_url(), &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        initialize(setup.route_url(), &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(exchanges(&setup), 1);

    // The authorization server revokes the subject; the gateway is told.
    setup.endpoint.revoked.lock().unwrap().insert(token.clone());
    setup.exchange.invalidate_subject(&token);
    let response = initialize(setup.route_url(), &token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(exchanges(&setup), 2, "the cached token was dropped");

    // Other subjects keep theirs.
    let second = setup.issuer.sign("k1", &{
        let mut c = setup.issuer.claims(&setup.route_url(), 3600);
        c["sub"] = json!("client-2");
        c
    });
    assert_eq!(
        initialize(setup.route_url(), &second).await.status(),
        StatusCode::OK
    );
    setup.exchange.invalidate_subject(&token);
    assert_eq!(
        initialize(setup.route_url(), &second).await.status(),
        StatusCode::OK
    );
    assert_eq!(exchanges(&setup), 3);
}

#[tokio::test]
async fn a_gateway_key_is_forwarded_without_exchange() {
    let setup = setup().await;
    // The upstream accepts only exchanged tokens, so a key-admitted request reaches it without one: 401.
    let response = initialize(setup.route_url(), "sk-ops").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(exchanges(&setup), 0);
    assert_eq!(setup.upstream.hits(), 0, "refused by its auth layer");
}

#[test]
fn identities_without_a_subject_token() {
    use tower_mcp_auth::upstream::SubjectToken;
    let key: Identity = Either::Left("ops".to_owned());
    assert!(key.subject_token().is_none());
}

#[tokio::test]
async fn a_refused_gateway_client_authentication_is_503_not_the_clients_fault() {
    let setup = setup_with(TokenClientAuth::basic(CLIENT_ID, "not-the-secret")).await;
    let token = setup.issuer.token(&setup.route_url());
    let response = initialize(setup.route_url(), &token).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(setup.upstream.hits(), 0);
}

#[tokio::test]
async fn an_exchanged_token_is_never_kept_past_its_subjects_expiry() {
    let setup = setup().await;
    // Expired five seconds ago, still inside the validators' leeway: admitted and exchanged, but the exchanged
    // token (valid for an hour) may not outlive its subject, so it is not kept at all.
    let expiring = setup
        .issuer
        .sign("k1", &setup.issuer.claims(&setup.route_url(), -5));
    assert_eq!(
        initialize(setup.route_url(), &expiring).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        initialize(setup.route_url(), &expiring).await.status(),
        StatusCode::OK
    );
    assert_eq!(exchanges(&setup), 2);
    // A subject with an hour to go: its exchanged token is kept.
    let token = setup.issuer.token(&setup.route_url());
    assert_eq!(
        initialize(setup.route_url(), &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        initialize(setup.route_url(), &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(exchanges(&setup), 3);
}

/// The generic revocation hook: a revocation source that knows only the subject's SHA-256 (LiteLLM's key
/// table) drops the tokens exchanged for it.
#[tokio::test]
async fn a_revoked_digest_drops_the_exchanged_tokens_through_the_revocation_hook() {
    use tower_mcp_auth::validators::{Revocation, RevocationSink};

    let setup = setup().await;
    let token = setup.issuer.token(&setup.route_url());
    assert_eq!(
        initialize(setup.route_url(), &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(exchanges(&setup), 1);
    // A flush only says notifications may have been lost: exchanged tokens stay.
    setup.exchange.revoke(&Revocation::All).await;
    assert_eq!(
        initialize(setup.route_url(), &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(exchanges(&setup), 1);

    setup.endpoint.revoked.lock().unwrap().insert(token.clone());
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()).into();
    setup.exchange.revoke(&Revocation::Digest(digest)).await;
    assert_eq!(
        initialize(setup.route_url(), &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(exchanges(&setup), 2, "the cached token was dropped");
}
