//! Over the wire: a capturing upstream on a loopback port records every header it receives, the gateway stack
//! (`TakeClientCredentialsLayer` → `McpAuthLayer` → `ForwardCredentialsLayer` around hyper-util's client) sends
//! to it, and a property test checks what may reach whom.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use proptest::prelude::*;
use tokio::runtime::Runtime;
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    client_credentials::TakeClientCredentialsLayer,
    upstream::{ForwardCredentialsLayer, UpstreamConfig},
    validate_fn, Admission, BoxError, CredentialSource, McpAuthLayer, PassthroughPolicy, Verdict,
};

type HttpClient = Client<HttpConnector, Full<Bytes>>;
type Captured = Vec<(String, String)>;

/// Set by the capturing upstream on its answers, so a test tells them from the gateway's own.
const CAPTURED: &str = "x-captured";

/// One runtime, one capturing upstream and one client for every test and property case.
struct World {
    runtime: Runtime,
    address: SocketAddr,
    client: HttpClient,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let address = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move {
                axum::serve(listener, Router::new().fallback(capture))
                    .await
                    .unwrap()
            });
            address
        });
        let client = {
            let _runtime = runtime.enter();
            Client::builder(TokioExecutor::new()).build_http()
        };
        World {
            runtime,
            address,
            client,
        }
    })
}

/// The capturing upstream: answers with every header it received, as JSON pairs.
async fn capture(headers: HeaderMap) -> ([(&'static str, &'static str); 1], String) {
    let pairs: Captured = headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    ([(CAPTURED, "1")], serde_json::to_string(&pairs).unwrap())
}

async fn captured(
    response: Response<impl http_body::Body<Error = impl std::fmt::Debug>>,
) -> Option<Captured> {
    let from_upstream = response.headers().contains_key(CAPTURED);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    from_upstream.then(|| serde_json::from_slice(&body).unwrap())
}

const NAMES: [&str; 4] = ["atlassian", "github", "my", "my-server"];
const ATLASSIAN: usize = 0;
const MY_SERVER: usize = 3;

fn upstreams(address: SocketAddr) -> Vec<UpstreamConfig> {
    let url = format!("http://{address}");
    let upstream = |name| UpstreamConfig::new(name, &url).unwrap();
    vec![
        upstream("atlassian").with_passthrough(true),
        upstream("github").with_auth(configured("bearer_token", "github")),
        upstream("my").with_auth(configured("api_key", "my")),
        upstream("my-server")
            .with_auth(configured("token", "my-server"))
            .with_header(
                HeaderName::from_static("x-tenant"),
                HeaderValue::from_static("tenant-zz"),
            ),
    ]
}

/// The gateway's own credential for `server`. Every secret here ends in `-zz`, so none contains another.
fn configured_secret(server: &str) -> String {
    format!("cfg-{server}-zz")
}

fn configured(kind: &str, server: &str) -> tower_mcp_auth::upstream::UpstreamAuth {
    format!("{kind}:{}", configured_secret(server))
        .parse()
        .unwrap()
}

/// The client's own credential for `server`.
fn client_secret(server: &str) -> String {
    format!("cred-{server}-zz")
}

const KEY: &str = "sk-gateway-key-zz";
const TOKEN: &str = "user-oauth-token-zz";
const FALLBACK: &str = "cred-fallback-zz";

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Valid,
    Unknown,
    Denied,
    Error,
}

impl Outcome {
    fn verdict(self) -> Result<Verdict<()>, &'static str> {
        match self {
            Self::Valid => Ok(Verdict::Valid(())),
            Self::Unknown => Ok(Verdict::Unknown),
            Self::Denied => Ok(Verdict::Denied),
            Self::Error => Err("key store down"),
        }
    }
}

/// Sends `request` through the whole gateway, whose validator answers `key` and `token` as told; returns the
/// headers the upstream received, or `None` when the gateway answered itself.
async fn through_gateway(
    key: Outcome,
    token: Outcome,
    request: Request<Full<Bytes>>,
) -> Option<Captured> {
    let world = world();
    let clients: Arc<HashMap<String, _>> = Arc::new(
        upstreams(world.address)
            .into_iter()
            .map(|upstream| {
                let name = upstream.name().to_owned();
                let client = ForwardCredentialsLayer::new(upstream).layer(world.client.clone());
                (name, client)
            })
            .collect(),
    );
    let validator = validate_fn(move |credential: String| async move {
        match credential.as_str() {
            KEY => key.verdict(),
            TOKEN => token.verdict(),
            _ => Outcome::Unknown.verdict(),
        }
    });
    let gateway = ServiceBuilder::new()
        .layer(TakeClientCredentialsLayer::new().servers(NAMES))
        .layer(
            McpAuthLayer::new(validator)
                .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"])),
        )
        .service(service_fn(move |request: Request<Full<Bytes>>| {
            let name = request.uri().path().trim_start_matches("/mcp/").to_owned();
            let client = clients[&name].clone();
            async move {
                let response = client.oneshot(request).await?;
                let (parts, body) = response.into_parts();
                let body = body.collect().await?.to_bytes();
                Ok::<_, BoxError>(Response::from_parts(parts, Full::new(body)))
            }
        }));
    captured(gateway.oneshot(request).await.unwrap()).await
}

fn request(target: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::post(format!("/mcp/{target}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::from_static(b"{}"))).unwrap()
}

fn values<'a>(captured: &'a Captured, name: &str) -> Vec<&'a str> {
    captured
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn run<F: std::future::Future>(future: F) -> F::Output {
    world().runtime.block_on(future)
}

// ---- Capture tests ----

#[test]
fn capture_passthrough_token_reaches_the_upstream_that_accepts_it() {
    let captured = run(through_gateway(
        Outcome::Valid,
        Outcome::Unknown,
        request(
            "atlassian",
            &[
                ("x-litellm-api-key", KEY),
                ("authorization", "Bearer user-oauth-token-zz"),
            ],
        ),
    ))
    .expect("forwarded");
    assert_eq!(
        values(&captured, "authorization"),
        [format!("Bearer {TOKEN}")]
    );
    assert!(values(&captured, "x-litellm-api-key").is_empty());
}

#[test]
fn capture_token_alone_passes_through_on_an_opted_in_route() {
    let captured = run(through_gateway(
        Outcome::Unknown,
        Outcome::Unknown,
        request(
            "atlassian",
            &[("authorization", "Bearer user-oauth-token-zz")],
        ),
    ))
    .expect("forwarded");
    assert_eq!(
        values(&captured, "authorization"),
        [format!("Bearer {TOKEN}")]
    );
}

#[test]
fn capture_configured_credential_and_extra_header() {
    let captured = run(through_gateway(
        Outcome::Valid,
        Outcome::Unknown,
        request(
            "my-server",
            &[
                ("x-litellm-api-key", KEY),
                ("authorization", "Bearer user-oauth-token-zz"),
                ("x-tenant", "client-chosen"),
            ],
        ),
    ))
    .expect("forwarded");
    assert_eq!(
        values(&captured, "authorization"),
        ["token cfg-my-server-zz"]
    );
    assert_eq!(values(&captured, "x-tenant"), ["tenant-zz"]);
}

#[test]
fn capture_client_credential_goes_to_its_server_only() {
    let headers = [
        ("x-litellm-api-key", KEY),
        ("x-mcp-my-server-authorization", "Bearer cred-my-server-zz"),
        ("x-mcp-my-x-api-key", "cred-my-zz"),
    ];
    let to_my_server = run(through_gateway(
        Outcome::Valid,
        Outcome::Unknown,
        request("my-server", &headers),
    ))
    .expect("forwarded");
    assert_eq!(
        values(&to_my_server, "authorization"),
        ["Bearer cred-my-server-zz"]
    );
    assert!(values(&to_my_server, "x-api-key").is_empty());

    let to_my = run(through_gateway(
        Outcome::Valid,
        Outcome::Unknown,
        request("my", &headers),
    ))
    .expect("forwarded");
    assert_eq!(values(&to_my, "x-api-key"), ["cred-my-zz"]);
    assert!(values(&to_my, "authorization").is_empty());
}

#[test]
fn capture_connection_header_can_neither_strip_nor_smuggle() {
    let captured = run(through_gateway(
        Outcome::Valid,
        Outcome::Unknown,
        request(
            "github",
            &[
                ("connection", "authorization, x-litellm-api-key, x-api-key"),
                ("x-litellm-api-key", KEY),
                ("x-api-key", KEY),
                ("proxy-authorization", "Bearer sk-gateway-key-zz"),
            ],
        ),
    ))
    .expect("forwarded");
    assert_eq!(values(&captured, "authorization"), ["Bearer cfg-github-zz"]);
    assert!(values(&captured, "connection").is_empty());
    assert!(
        captured.iter().all(|(_, value)| !value.contains(KEY)),
        "{captured:?}"
    );
}

#[test]
fn capture_rejected_requests_reach_no_upstream() {
    for (key, headers) in [
        (Outcome::Unknown, vec![("x-litellm-api-key", KEY)]),
        (Outcome::Denied, vec![("x-litellm-api-key", KEY)]),
        (Outcome::Error, vec![("x-litellm-api-key", KEY)]),
        (
            Outcome::Valid,
            vec![("x-mcp-github-authorization", "Bearer sk-gateway-key-zz")],
        ),
    ] {
        let response = run(through_gateway(
            key,
            Outcome::Unknown,
            request("github", &headers),
        ));
        assert!(response.is_none(), "{key:?} {headers:?}");
    }
}

#[test]
fn capture_status_of_a_plain_request() {
    // The capturing upstream itself, reached directly through the outgoing layer, for a request admitted as
    // the inbound layer would have admitted it.
    let world = world();
    let upstream = upstreams(world.address).swap_remove(1);
    let mut request = request("github", &[("host", "gateway.test")]);
    request
        .extensions_mut()
        .insert(Admission::Authenticated(CredentialSource::KeyHeader));
    let response = run(async {
        let client = ForwardCredentialsLayer::new(upstream).layer(world.client.clone());
        client.oneshot(request).await.unwrap()
    });
    assert_eq!(response.status(), StatusCode::OK);
    let captured = run(captured(response)).unwrap();
    assert_eq!(values(&captured, "host"), [world.address.to_string()]);
    assert_eq!(values(&captured, "authorization"), ["Bearer cfg-github-zz"]);
}

// ---- The property ----

/// What a header value carries.
#[derive(Clone, Copy, Debug)]
enum Secret {
    Key,
    Token,
    /// The server's own credential in a per-server header; the shared one in `x-mcp-auth`.
    Own,
    Junk,
}

/// How a header value spells it.
#[derive(Clone, Copy, Debug)]
enum Form {
    Plain,
    Bearer,
    TokenScheme,
}

fn render(secret: Secret, form: Form, server: Option<&str>) -> String {
    let secret = match (secret, server) {
        (Secret::Key, _) => KEY.to_owned(),
        (Secret::Token, _) => TOKEN.to_owned(),
        (Secret::Own, Some(server)) => client_secret(server),
        (Secret::Own, None) => FALLBACK.to_owned(),
        (Secret::Junk, _) => "junk-value".to_owned(),
    };
    match form {
        Form::Plain => secret,
        Form::Bearer => format!("Bearer {secret}"),
        Form::TokenScheme => format!("token {secret}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Bearer {
    Key,
    Token,
    Foreign,
}

/// Names a header that carries, or should never carry, a credential; the value is random.
const SLOTS: [&str; 8] = [
    "proxy-authorization",
    "x-api-key",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "x-litellm-api-key",
];
const LISTED: [&str; 8] = [
    "authorization",
    "x-litellm-api-key",
    "x-api-key",
    "x-tenant",
    "x-custom",
    "keep-alive",
    "x-mcp-github-authorization",
    "close",
];
/// Per-server header names; none is a prefix of another server's (`my-authorization` vs `my-server-…`).
const SUFFIXES: [&str; 3] = ["authorization", "x-api-key", "cookie"];

#[derive(Clone, Debug)]
struct Case {
    target: usize,
    key: Option<Form>,
    bearer: Option<Bearer>,
    key_outcome: Outcome,
    token_outcome: Outcome,
    client: Vec<(usize, usize, Secret, Form)>,
    fallback: Option<(Secret, Form)>,
    servers: Vec<usize>,
    connection: Vec<usize>,
    slots: Vec<(usize, Secret, Form)>,
    custom: bool,
}

impl Case {
    fn request(&self) -> Request<Full<Bytes>> {
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut add = |name: &str, value: String| headers.push((name.to_owned(), value));
        if let Some(form) = self.key {
            add(
                "x-litellm-api-key",
                render(Secret::Key, form, None).replace("token ", ""),
            );
        }
        match self.bearer {
            Some(Bearer::Key) => add("authorization", format!("Bearer {KEY}")),
            Some(Bearer::Token) => add("authorization", format!("Bearer {TOKEN}")),
            Some(Bearer::Foreign) => add("authorization", "Basic Zm9vOmJhcg==".to_owned()),
            None => {}
        }
        for &(server, suffix, secret, form) in &self.client {
            let server = NAMES[server];
            add(
                &format!("x-mcp-{server}-{}", SUFFIXES[suffix]),
                render(secret, form, Some(server)),
            );
        }
        if let Some((secret, form)) = self.fallback {
            add("x-mcp-auth", render(secret, form, None));
        }
        if !self.servers.is_empty() {
            let servers: Vec<&str> = self.servers.iter().map(|&i| NAMES[i]).collect();
            add("x-mcp-servers", servers.join(", "));
        }
        if !self.connection.is_empty() {
            let listed: Vec<&str> = self.connection.iter().map(|&i| LISTED[i]).collect();
            add("connection", listed.join(", "));
        }
        for &(slot, secret, form) in &self.slots {
            add(SLOTS[slot], render(secret, form, None));
        }
        if self.custom {
            add("x-custom", "client-custom-value".to_owned());
            add("x-tenant", "client-tenant".to_owned());
        }
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        request(NAMES[self.target], &pairs)
    }

    /// Whether `KEY` was presented and the key store called it a gateway key. (When the store calls it
    /// unknown, it is not a gateway key: alone in `Authorization` on the opted-in route it is a client token.)
    fn admitted_with_key(&self) -> bool {
        matches!(self.key_outcome, Outcome::Valid)
            && (self.key.is_some() || self.bearer == Some(Bearer::Key))
    }

    fn admitted_with_token_as_key(&self) -> bool {
        self.key.is_none()
            && self.bearer == Some(Bearer::Token)
            && matches!(self.token_outcome, Outcome::Valid)
    }

    /// Whether the gateway makes `TOKEN` an `OAuthPassthrough` (on the opted-in route).
    fn passes_token_through(&self) -> bool {
        self.target == ATLASSIAN
            && self.bearer == Some(Bearer::Token)
            && (self.key.is_some() || matches!(self.token_outcome, Outcome::Unknown))
    }
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Valid),
        3 => Just(Outcome::Unknown),
        1 => Just(Outcome::Denied),
        1 => Just(Outcome::Error),
    ]
}

fn secret() -> impl Strategy<Value = Secret> {
    prop_oneof![
        Just(Secret::Key),
        Just(Secret::Token),
        Just(Secret::Own),
        Just(Secret::Junk)
    ]
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        Just(Form::Plain),
        Just(Form::Bearer),
        Just(Form::TokenScheme)
    ]
}

prop_compose! {
    fn case()(
        target in 0..NAMES.len(),
        key in proptest::option::weighted(0.7, form()),
        bearer in proptest::option::of(prop_oneof![Just(Bearer::Key), Just(Bearer::Token), Just(Bearer::Foreign)]),
        key_outcome in outcome(),
        token_outcome in outcome(),
        client in proptest::collection::vec((0..NAMES.len(), 0..SUFFIXES.len(), secret(), form()), 0..5),
        fallback in proptest::option::of((secret(), form())),
        servers in proptest::collection::vec(0..NAMES.len(), 0..3),
        connection in proptest::collection::vec(0..LISTED.len(), 0..3),
        slots in proptest::collection::vec((0..SLOTS.len(), secret(), form()), 0..3),
        custom in any::<bool>(),
    ) -> Case {
        Case { target, key, bearer, key_outcome, token_outcome, client, fallback, servers, connection, slots, custom }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn each_upstream_gets_its_own_credential_and_no_other(case in case()) {
        let Some(captured) = run(through_gateway(case.key_outcome, case.token_outcome, case.request())) else {
            // The gateway answered itself: nothing reached any upstream.
            return Ok(());
        };
        let target = NAMES[case.target];
        let carries = |secret: &str| captured.iter().any(|(_, value)| value.contains(secret));

        // The gateway credential the request was admitted with never leaves the gateway.
        if case.admitted_with_key() {
            prop_assert!(!carries(KEY), "gateway key upstream: {captured:?}");
        }
        if case.admitted_with_token_as_key() {
            prop_assert!(!carries(TOKEN), "gateway key upstream: {captured:?}");
        }
        // The passthrough token reaches only an upstream that accepts it...
        if case.bearer == Some(Bearer::Token) && case.target != ATLASSIAN {
            prop_assert!(!carries(TOKEN), "passthrough token at {target}: {captured:?}");
        }
        // ...and reaches it, as its only Authorization.
        if case.passes_token_through() {
            prop_assert_eq!(values(&captured, "authorization"), [format!("Bearer {TOKEN}")]);
        }
        // No other server's credential, the client's or the gateway's own.
        for other in NAMES.iter().filter(|name| **name != target) {
            prop_assert!(!carries(&client_secret(other)), "{other}'s credential at {target}: {captured:?}");
            prop_assert!(!carries(&configured_secret(other)), "{other}'s credential at {target}: {captured:?}");
        }
        // No hop-by-hop or gateway header, and the operator's extra header wins.
        for (name, _) in &captured {
            prop_assert!(!name.starts_with("x-mcp-"), "{name}");
            prop_assert!(
                !["connection", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization",
                  "proxy-connection", "x-litellm-api-key"].contains(&name.as_str()),
                "{name}"
            );
        }
        if case.target == MY_SERVER {
            prop_assert_eq!(values(&captured, "x-tenant"), ["tenant-zz"]);
        }
    }
}

// ---- One endpoint that picks its upstream from the request (as LiteLLM's `/mcp` does) ----

/// The composition the outgoing side must survive: passthrough opted in on the whole `/mcp` prefix, and the
/// upstream chosen by a header the client controls. An anonymous `Authorization: Bearer a` then reaches the
/// handler for any upstream; the one that does not accept passthrough must get no gateway credential, and no
/// request at all. The gateway answers such a refusal `403`.
async fn through_one_endpoint(
    target: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<Captured>) {
    let world = world();
    let clients: Arc<HashMap<String, _>> = Arc::new(
        upstreams(world.address)
            .into_iter()
            .map(|upstream| {
                let name = upstream.name().to_owned();
                let client = ForwardCredentialsLayer::new(upstream).layer(world.client.clone());
                (name, client)
            })
            .collect(),
    );
    let validator = validate_fn(|credential: String| async move {
        Ok::<_, BoxError>(if credential == KEY {
            Verdict::Valid(())
        } else {
            Verdict::Unknown
        })
    });
    let gateway = ServiceBuilder::new()
        .layer(TakeClientCredentialsLayer::new().servers(NAMES))
        .layer(McpAuthLayer::new(validator).passthrough(PassthroughPolicy::path_prefixes(["/mcp"])))
        .service(service_fn(move |request: Request<Full<Bytes>>| {
            let name = request.headers()["x-target"].to_str().unwrap().to_owned();
            let client = clients[&name].clone();
            async move {
                match client.oneshot(request).await {
                    Ok(response) => {
                        let (parts, body) = response.into_parts();
                        let body = body.collect().await?.to_bytes();
                        Ok::<_, BoxError>(Response::from_parts(parts, Full::new(body)))
                    }
                    Err(error) if error.is::<tower_mcp_auth::upstream::Refused>() => {
                        let mut refused = Response::new(Full::new(Bytes::from_static(
                            br#"{"error":"access_denied"}"#,
                        )));
                        *refused.status_mut() = StatusCode::FORBIDDEN;
                        Ok(refused)
                    }
                    Err(error) => Err(error),
                }
            }
        }));
    let mut builder = Request::post("/mcp").header("x-target", target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(Bytes::from_static(b"{}"))).unwrap();
    let response = gateway.oneshot(request).await.unwrap();
    let status = response.status();
    (status, captured(response).await)
}

#[test]
fn capture_anonymous_passthrough_to_a_non_passthrough_upstream_gets_nothing_and_is_refused() {
    for target in ["github", "my", "my-server"] {
        let (status, captured) = run(through_one_endpoint(
            target,
            &[("authorization", "Bearer a")],
        ));
        assert_eq!(status, StatusCode::FORBIDDEN, "{target}");
        assert_eq!(captured, None, "{target}: the upstream was called");
    }
    // The upstream that accepts passthrough gets the caller's own token, and nothing of the gateway's.
    let (status, captured) = run(through_one_endpoint(
        "atlassian",
        &[("authorization", "Bearer a")],
    ));
    assert_eq!(status, StatusCode::OK);
    let captured = captured.expect("forwarded");
    assert_eq!(values(&captured, "authorization"), ["Bearer a"]);
    assert!(
        captured.iter().all(|(_, v)| !v.contains("cfg-")),
        "{captured:?}"
    );
}

#[test]
fn capture_the_same_request_with_a_key_gets_the_configured_credential() {
    let (status, captured) = run(through_one_endpoint(
        "github",
        &[("x-litellm-api-key", KEY), ("authorization", "Bearer a")],
    ));
    assert_eq!(status, StatusCode::OK);
    let captured = captured.expect("forwarded");
    assert_eq!(values(&captured, "authorization"), ["Bearer cfg-github-zz"]);
    assert!(
        captured.iter().all(|(_, v)| !v.contains(KEY)),
        "{captured:?}"
    );
}
