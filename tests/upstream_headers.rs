//! The outgoing side, one request at a time: the upstream header table, the credential precedence, and the
//! header hygiene of `ForwardCredentialsLayer`. The inner service stands in for the HTTP client and answers
//! with the request it was asked to send.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use tower::{service_fn, Layer, ServiceExt};
use tower_mcp_auth::{
    client_credentials::{ClientCredentials, TakeClientCredentialsLayer},
    upstream::{AuthKind, ForwardCredentialsLayer, Refused, UpstreamAuth, UpstreamConfig},
    Admission, BoxError, CredentialSource, OAuthPassthrough,
};

const CREDENTIAL_HEADERS: [&str; 2] = ["authorization", "x-api-key"];

fn upstream(name: &str) -> UpstreamConfig {
    UpstreamConfig::new(name, "http://upstream.test:8080").unwrap()
}

/// Nothing of the client's headers went out: only the upstream's own `Host`.
fn assert_only_the_upstream_host<B>(sent: &Request<B>) {
    let headers: Vec<(&str, &str)> = sent
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
        .collect();
    assert_eq!(headers, [("host", "upstream.test:8080")]);
}

/// What the HTTP client is asked to send when `request` goes out through `layer`, or the refusal; and how many
/// times the client was called.
async fn try_sent_with(
    layer: ForwardCredentialsLayer,
    request: Request<()>,
) -> (Result<Request<()>, BoxError>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let client = service_fn(move |req: Request<()>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Infallible>(req) }
    });
    let result = layer.layer(client).oneshot(request).await;
    (result, calls.load(Ordering::SeqCst))
}

/// What the HTTP client is asked to send for a request the inbound layer authenticated by gateway key (unless
/// the request says otherwise).
async fn sent_with(layer: ForwardCredentialsLayer, mut request: Request<()>) -> Request<()> {
    if request.extensions().get::<Admission>().is_none() {
        request.extensions_mut().insert(authenticated());
    }
    try_sent_with(layer, request).await.0.unwrap()
}

fn authenticated() -> Admission {
    Admission::Authenticated(CredentialSource::KeyHeader)
}

/// The refusal of `request` by `upstream`'s layer, checking the HTTP client was never called.
async fn refused(upstream: UpstreamConfig, request: Request<()>) -> Refused {
    let (result, calls) = try_sent_with(ForwardCredentialsLayer::new(upstream), request).await;
    assert_eq!(calls, 0, "a refused request reached the HTTP client");
    *result
        .expect_err("the request must be refused")
        .downcast::<Refused>()
        .expect("the error is a refusal")
}

/// A request as `McpAuthLayer` hands over one it admitted only on the client's own token.
fn passthrough_only(headers: &[(&str, &str)], token: &str) -> Request<()> {
    let mut request = inbound(headers, Some(token));
    request.extensions_mut().insert(Admission::Passthrough);
    request
}

async fn sent(upstream: UpstreamConfig, request: Request<()>) -> Request<()> {
    sent_with(ForwardCredentialsLayer::new(upstream), request).await
}

fn request() -> Request<()> {
    Request::post("/mcp").body(()).unwrap()
}

/// A request as the inbound layers hand it over: `headers` already parsed into `ClientCredentials` by
/// `TakeClientCredentialsLayer`, and an optional passthrough token (beside the gateway key, unless
/// `passthrough_only` marks it otherwise).
fn inbound(headers: &[(&str, &str)], passthrough: Option<&str>) -> Request<()> {
    let mut builder = Request::post("/mcp/srv");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(()).unwrap();
    let credentials = TakeClientCredentialsLayer::new()
        .servers(["srv", "other"])
        .take(request.headers_mut());
    request.extensions_mut().insert(credentials);
    if let Some(token) = passthrough {
        request
            .extensions_mut()
            .insert(OAuthPassthrough::new(token));
    }
    request
}

/// The credential headers a request carries: name and value of `Authorization` and `X-API-Key`.
fn credentials(request: &Request<()>) -> Vec<(&str, &str)> {
    request
        .headers()
        .iter()
        .filter(|(name, _)| CREDENTIAL_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
        .collect()
}

async fn configured(kind: AuthKind, value: &str) -> Request<()> {
    let auth = UpstreamAuth::new(kind, value).unwrap();
    sent(upstream("srv").with_auth(auth), request()).await
}

// ---- The upstream header table, one test per row ----

#[tokio::test]
async fn table_none_sends_nothing() {
    let sent = configured(AuthKind::None, "").await;
    assert_eq!(credentials(&sent), []);
}

#[tokio::test]
async fn table_api_key_sends_x_api_key() {
    let sent = configured(AuthKind::ApiKey, "k-123").await;
    assert_eq!(credentials(&sent), [("x-api-key", "k-123")]);
}

#[tokio::test]
async fn table_bearer_token_sends_bearer() {
    let sent = configured(AuthKind::BearerToken, "b-123").await;
    assert_eq!(credentials(&sent), [("authorization", "Bearer b-123")]);
}

#[tokio::test]
async fn table_basic_sends_base64_of_user_and_password() {
    let sent = configured(AuthKind::Basic, "aladdin:open sesame").await;
    // RFC 7617's own example.
    assert_eq!(
        credentials(&sent),
        [("authorization", "Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ==")]
    );
}

#[tokio::test]
async fn table_authorization_sends_the_value_verbatim() {
    let sent = configured(
        AuthKind::Authorization,
        "Digest username=\"a\", nonce=\"n\"",
    )
    .await;
    assert_eq!(
        credentials(&sent),
        [("authorization", "Digest username=\"a\", nonce=\"n\"")]
    );
}

#[tokio::test]
async fn table_oauth2_sends_bearer() {
    let sent = configured(AuthKind::OAuth2, "o-123").await;
    assert_eq!(credentials(&sent), [("authorization", "Bearer o-123")]);
}

#[tokio::test]
async fn table_token_sends_token_scheme() {
    let sent = configured(AuthKind::Token, "t-123").await;
    assert_eq!(credentials(&sent), [("authorization", "token t-123")]);
}

#[tokio::test]
async fn table_empty_values_send_nothing() {
    for kind in [
        AuthKind::ApiKey,
        AuthKind::BearerToken,
        AuthKind::Basic,
        AuthKind::Authorization,
        AuthKind::OAuth2,
        AuthKind::Token,
    ] {
        for value in ["", "   "] {
            let sent = configured(kind, value).await;
            assert_eq!(credentials(&sent), [], "{kind} with {value:?}");
        }
    }
}

#[tokio::test]
async fn table_every_credential_value_is_sensitive() {
    for (kind, value) in [
        (AuthKind::ApiKey, "v"),
        (AuthKind::BearerToken, "v"),
        (AuthKind::Basic, "u:p"),
        (AuthKind::Authorization, "v"),
        (AuthKind::OAuth2, "v"),
        (AuthKind::Token, "v"),
    ] {
        let sent = configured(kind, value).await;
        let (_, value) = sent
            .headers()
            .iter()
            .find(|(name, _)| CREDENTIAL_HEADERS.contains(&name.as_str()))
            .unwrap();
        assert!(value.is_sensitive(), "{kind}");
    }
    // The other sources too.
    let sent = sent(
        upstream("srv").with_passthrough(true),
        inbound(&[], Some("p")),
    )
    .await;
    assert!(sent.headers()["authorization"].is_sensitive());
    let client = inbound(&[("x-mcp-srv-x-org-key", "c")], None);
    let sent = self::sent(upstream("srv"), client).await;
    assert!(sent.headers()["x-org-key"].is_sensitive());
}

#[tokio::test]
async fn table_extra_headers_win_case_insensitively() {
    let config = upstream("srv")
        .with_auth(UpstreamAuth::new(AuthKind::ApiKey, "configured").unwrap())
        .with_header(
            HeaderName::from_bytes(b"X-API-Key").unwrap(),
            HeaderValue::from_static("extra"),
        );
    let sent = sent(config, request()).await;
    assert_eq!(credentials(&sent), [("x-api-key", "extra")]);
    assert!(sent.headers()["x-api-key"].is_sensitive());
}

// ---- Precedence: passthrough -> client's per-server credential -> configured -> nothing ----

fn everything() -> Request<()> {
    inbound(
        &[
            ("x-mcp-srv-authorization", "Bearer client-srv"),
            ("x-mcp-auth", "client-all"),
        ],
        Some("passthrough-token"),
    )
}

fn configured_upstream() -> UpstreamConfig {
    upstream("srv").with_auth("bearer_token:configured".parse().unwrap())
}

#[tokio::test]
async fn precedence_1_passthrough_token_wins_where_the_upstream_accepts_it() {
    let sent = sent(configured_upstream().with_passthrough(true), everything()).await;
    assert_eq!(
        credentials(&sent),
        [("authorization", "Bearer passthrough-token")]
    );
}

#[tokio::test]
async fn precedence_1_dual_credential_token_never_reaches_an_upstream_that_does_not_accept_it() {
    let sent = sent(
        configured_upstream(),
        inbound(&[], Some("passthrough-token")),
    )
    .await;
    assert_eq!(credentials(&sent), [("authorization", "Bearer configured")]);
}

#[tokio::test]
async fn precedence_2_client_per_server_credential_over_configured() {
    let sent = sent(configured_upstream(), everything()).await;
    assert_eq!(credentials(&sent), [("authorization", "Bearer client-srv")]);
}

#[tokio::test]
async fn precedence_2_client_per_server_headers_replace_the_whole_credential() {
    // The client's X-API-Key is its whole credential: the configured Authorization is not added beside it.
    let client = inbound(&[("x-mcp-srv-x-api-key", "client-key")], None);
    let sent = sent(configured_upstream(), client).await;
    assert_eq!(credentials(&sent), [("x-api-key", "client-key")]);
}

#[tokio::test]
async fn precedence_2_deprecated_client_value_is_sent_as_the_configured_kind_says() {
    let client = inbound(&[("x-mcp-auth", "client-all")], None);
    let sent = sent(configured_upstream(), client).await;
    assert_eq!(credentials(&sent), [("authorization", "Bearer client-all")]);

    let client = inbound(&[("x-mcp-auth", "client-all")], None);
    let api_key = upstream("srv").with_auth("api_key:configured".parse().unwrap());
    let sent = self::sent(api_key, client).await;
    assert_eq!(credentials(&sent), [("x-api-key", "client-all")]);
}

#[tokio::test]
async fn precedence_2_a_credential_for_another_server_does_not_count() {
    let client = inbound(
        &[("x-mcp-other-authorization", "Bearer client-other")],
        None,
    );
    let sent = sent(configured_upstream(), client).await;
    assert_eq!(credentials(&sent), [("authorization", "Bearer configured")]);
}

#[tokio::test]
async fn precedence_3_configured_auth_without_a_client_credential() {
    let sent = sent(configured_upstream(), inbound(&[], None)).await;
    assert_eq!(credentials(&sent), [("authorization", "Bearer configured")]);
}

#[tokio::test]
async fn precedence_3_configured_auth_when_the_deprecated_value_cannot_be_sent() {
    // `none` sends the deprecated value as nothing, so the configured credential (none) applies: nothing.
    let sent = sent(
        upstream("srv"),
        inbound(&[("x-mcp-auth", "client-all")], None),
    )
    .await;
    assert_eq!(credentials(&sent), []);
}

#[tokio::test]
async fn precedence_4_nothing() {
    let sent = sent(upstream("srv").with_passthrough(true), inbound(&[], None)).await;
    assert_eq!(credentials(&sent), []);
}

#[tokio::test]
async fn precedence_5_extra_headers_win_over_every_source() {
    let config = configured_upstream().with_passthrough(true).with_header(
        HeaderName::from_static("authorization"),
        HeaderValue::from_static("Bearer extra"),
    );
    let sent = sent(config, everything()).await;
    assert_eq!(credentials(&sent), [("authorization", "Bearer extra")]);
}

#[tokio::test]
async fn credential_headers_is_the_same_precedence_for_other_clients() {
    let mut request = everything();
    request.extensions_mut().insert(authenticated());
    let headers = configured_upstream()
        .with_passthrough(true)
        .credential_headers(request.extensions())
        .unwrap();
    let mut expected = HeaderMap::new();
    expected.insert(
        "authorization",
        HeaderValue::from_static("Bearer passthrough-token"),
    );
    assert_eq!(headers, expected);
}

// ---- Gateway-held material only for authenticated callers ----

/// The composition of the issue: one endpoint picks its upstream from something the client controls, so an
/// anonymous passthrough request (`Authorization: Bearer a`) can reach an upstream that does not accept
/// passthrough. It must get nothing of the gateway's, and not be sent at all.
#[tokio::test]
async fn passthrough_only_request_to_a_non_passthrough_upstream_is_refused_and_sends_nothing() {
    let github = configured_upstream().with_header(
        HeaderName::from_static("x-org"),
        HeaderValue::from_static("gateway-extra"),
    );
    let refusal = refused(github.clone(), passthrough_only(&[], "a")).await;
    assert_eq!(refusal, Refused::PassthroughNotAccepted);
    // Even with the client's own per-server credential for it: the request has no gateway identity.
    let request = passthrough_only(&[("x-mcp-srv-authorization", "Bearer client-srv")], "a");
    assert_eq!(
        refused(github.clone(), request).await,
        Refused::PassthroughNotAccepted
    );
    // The same request with a gateway key gets the configured credential.
    let sent = sent(github, inbound(&[], Some("a"))).await;
    assert_eq!(credentials(&sent), [("authorization", "Bearer configured")]);
    assert_eq!(sent.headers()["x-org"], "gateway-extra");
}

#[tokio::test]
async fn passthrough_only_request_gets_its_own_token_and_nothing_gateway_held() {
    let atlassian = configured_upstream().with_passthrough(true).with_header(
        HeaderName::from_static("x-org"),
        HeaderValue::from_static("gateway-extra"),
    );
    let sent = sent(atlassian.clone(), passthrough_only(&[], "own-token")).await;
    assert_eq!(credentials(&sent), [("authorization", "Bearer own-token")]);
    assert!(
        sent.headers().get("x-org").is_none(),
        "{:?}",
        sent.headers()
    );
    let headers = atlassian
        .credential_headers(passthrough_only(&[], "own-token").extensions())
        .unwrap();
    assert_eq!(headers.len(), 1);
}

#[tokio::test]
async fn a_request_the_layer_never_admitted_is_refused() {
    for upstream in [
        configured_upstream(),
        configured_upstream().with_passthrough(true),
        upstream("srv"),
    ] {
        assert_eq!(
            refused(upstream.clone(), request()).await,
            Refused::NotAdmitted
        );
        // An `OAuthPassthrough` marker alone, without the layer's admission, is not enough either.
        assert_eq!(
            refused(upstream, inbound(&[], Some("a"))).await,
            Refused::NotAdmitted
        );
    }
}

// ---- Cookies ----

fn with_cookie() -> Request<()> {
    Request::post("/mcp")
        .header("cookie", "gateway_session=s3cret")
        .body(())
        .unwrap()
}

#[tokio::test]
async fn cookie_is_not_forwarded_by_default() {
    let sent = sent(configured_upstream(), with_cookie()).await;
    assert!(
        sent.headers().get("cookie").is_none(),
        "{:?}",
        sent.headers()
    );
}

#[tokio::test]
async fn cookie_is_forwarded_when_the_upstream_opts_in() {
    let config = configured_upstream().with_cookies(true);
    assert!(config.forwards_cookies());
    let sent = sent(config, with_cookie()).await;
    assert_eq!(sent.headers()["cookie"], "gateway_session=s3cret");
}

// ---- Header hygiene ----

#[tokio::test]
async fn hop_by_hop_headers_are_removed() {
    let request = Request::post("/mcp")
        .header("connection", "keep-alive, x-listed")
        .header("x-listed", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .header("transfer-encoding", "chunked")
        .header("upgrade", "websocket")
        .header("proxy-authorization", "Basic cHJveHk6cHc=")
        .header("proxy-connection", "keep-alive")
        .header("mcp-session-id", "s-1")
        .body(())
        .unwrap();
    let sent = sent(upstream("srv"), request).await;
    let names: Vec<&str> = sent.headers().keys().map(HeaderName::as_str).collect();
    assert_eq!(names, ["mcp-session-id", "host"]);
}

#[tokio::test]
async fn gateway_and_client_credential_headers_are_removed() {
    let request = Request::post("/mcp")
        .header("x-litellm-api-key", "sk-gateway")
        .header("authorization", "Bearer sk-gateway")
        .header("x-api-key", "client-chosen")
        .header("x-mcp-srv-authorization", "Bearer unparsed")
        .header("x-mcp-servers", "srv")
        .header("x-mcp-auth", "unparsed")
        .header("host", "gateway.test")
        .body(())
        .unwrap();
    let sent = sent(upstream("srv"), request).await;
    assert_only_the_upstream_host(&sent);
}

#[tokio::test]
async fn custom_gateway_header_names_are_removed() {
    let request = Request::post("/mcp")
        .header("x-gateway-key", "sk-gateway")
        .header("x-client-auth", "client-all")
        .body(())
        .unwrap();
    let layer = ForwardCredentialsLayer::new(upstream("srv"))
        .key_header(HeaderName::from_static("x-gateway-key"))
        .client_auth_header(HeaderName::from_static("x-client-auth"));
    let sent = sent_with(layer, request).await;
    assert_only_the_upstream_host(&sent);
}

#[tokio::test]
async fn connection_authorization_cannot_strip_the_credential() {
    for listed in [
        "authorization",
        "Authorization, x-api-key",
        "close, AUTHORIZATION",
    ] {
        let mut request = inbound(&[], Some("passthrough-token"));
        request
            .headers_mut()
            .insert("connection", HeaderValue::from_str(listed).unwrap());
        let sent = sent(upstream("srv").with_passthrough(true), request).await;
        assert_eq!(
            credentials(&sent),
            [("authorization", "Bearer passthrough-token")]
        );
        assert!(sent.headers().get("connection").is_none());
    }
}

#[tokio::test]
async fn connection_key_header_cannot_smuggle_the_gateway_key() {
    let request = Request::post("/mcp")
        .header("connection", "x-litellm-api-key, authorization")
        .header("x-litellm-api-key", "sk-gateway")
        .header("authorization", "Bearer sk-gateway")
        .body(())
        .unwrap();
    let configured = upstream("srv").with_auth("api_key:configured".parse().unwrap());
    let sent = sent(configured, request).await;
    assert_eq!(credentials(&sent), [("x-api-key", "configured")]);
    for (_, value) in sent.headers() {
        assert!(!value.to_str().unwrap().contains("sk-gateway"));
    }
}

#[tokio::test]
async fn the_origin_is_pinned_to_the_upstream_url() {
    let request = Request::post("http://elsewhere.test/mcp/srv?x=1")
        .body(())
        .unwrap();
    let sent = sent(upstream("srv"), request).await;
    assert_eq!(sent.uri(), "http://upstream.test:8080/mcp/srv?x=1");

    let sent = self::sent(upstream("srv"), Request::post("/a/b").body(()).unwrap()).await;
    assert_eq!(sent.uri(), "http://upstream.test:8080/a/b");
}

// ---- Configuration ----

#[test]
fn upstream_auth_parses_kind_value_strings() {
    let header = |s: &str| {
        let auth: UpstreamAuth = s.parse().unwrap();
        auth.header()
            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
    };
    assert_eq!(header("none"), None);
    assert_eq!(header("NONE"), None);
    assert_eq!(
        header("bearer_token:abc").unwrap(),
        "authorization: Bearer abc"
    );
    assert_eq!(header("api_key:xyz").unwrap(), "x-api-key: xyz");
    assert_eq!(
        header("basic:user:pass").unwrap(),
        "authorization: Basic dXNlcjpwYXNz"
    );
    assert_eq!(
        header("authorization:Custom a:b").unwrap(),
        "authorization: Custom a:b"
    );
    assert_eq!(header("oauth2:o").unwrap(), "authorization: Bearer o");
    assert_eq!(header("Token:t").unwrap(), "authorization: token t");
    assert_eq!(header("bearer_token:"), None);
}

#[test]
fn upstream_auth_refuses_bad_input_without_repeating_it() {
    for bad in [
        "ghp_secret",
        "bearer:ghp_secret",
        "none:ghp_secret",
        "basic:ghp_secret",
        "bearer_token:ghp_\tsecret",
        "api_key:ghp_secr\u{e9}t",
    ] {
        let err = bad.parse::<UpstreamAuth>().unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(!format!("{err:?}").contains("secret"), "{err:?}");
    }
    assert!("basic:us\u{e9}r:p\u{e4}ss".parse::<UpstreamAuth>().is_ok());
    // Surrounding whitespace, such as a file's final newline, is not part of the credential.
    assert!("bearer_token:abc\n".parse::<UpstreamAuth>().is_ok());
}

#[test]
fn debug_output_never_shows_a_credential() {
    let config = upstream("srv")
        .with_auth("bearer_token:configured-secret".parse().unwrap())
        .with_header(
            HeaderName::from_static("x-extra"),
            HeaderValue::from_static("extra-secret"),
        );
    let layer = ForwardCredentialsLayer::new(config.clone());
    let request = inbound(
        &[
            ("x-mcp-srv-authorization", "Bearer client-secret"),
            ("x-mcp-auth", "all-secret"),
        ],
        None,
    );
    let client = request.extensions().get::<ClientCredentials>().unwrap();
    for debug in [
        format!("{config:?}"),
        format!("{layer:?}"),
        format!("{client:?}"),
        format!("{:?}", config.auth()),
    ] {
        assert!(!debug.contains("secret"), "{debug}");
    }
    assert!(format!("{client:?}").contains("srv"));
}

#[test]
fn upstream_config_checks_name_and_url() {
    assert_eq!(
        UpstreamConfig::new("My-Server_2.x", "https://h.test/mcp")
            .unwrap()
            .name(),
        "my-server_2.x"
    );
    for name in ["", "my server", "a/b", "é"] {
        assert!(
            UpstreamConfig::new(name, "https://h.test").is_err(),
            "{name:?}"
        );
    }
    for url in ["/mcp", "h.test/mcp", "https://user:secret@h.test/"] {
        let err = UpstreamConfig::new("a", url).unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
    let config = UpstreamConfig::new("a", "https://h.test/mcp/k3y-in-path").unwrap();
    assert!(!format!("{config:?}").contains("k3y"));
}
