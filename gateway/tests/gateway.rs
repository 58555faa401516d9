//! The gateway example end to end: an rmcp Streamable HTTP server that requires its own OAuth token, the
//! gateway in front of it, and an rmcp client (or plain HTTP where the point is the status line) through it.

use mcp_gateway as app;

use std::{collections::HashMap, convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{HeaderName, HeaderValue, Request, StatusCode},
    response::Response,
    routing::get,
    Router,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rmcp::{
    model::{CallToolRequestParams, ClientConfig},
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
    ServiceExt,
};
use tokio::{net::TcpListener, sync::Notify};

const UPSTREAM_TOKEN: &str = "upstream-oauth-token-4f1d";
const KEY: &str = "sk-gateway-test-key";
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"0"}}}"#;

struct Setup {
    gateway: SocketAddr,
    passthrough_upstream: app::demo::DemoUpstream,
    keyed_upstream: app::demo::DemoUpstream,
}

/// Two upstreams requiring `UPSTREAM_TOKEN`: `atlassian` (passthrough) and `github` (the gateway's own
/// credential via `--upstream-auth`), plus `sse` (a raw event stream) when given.
async fn setup(extra: &[(&str, String)]) -> Setup {
    let passthrough_upstream = app::demo::start(UPSTREAM_TOKEN).await.unwrap();
    let keyed_upstream = app::demo::start(UPSTREAM_TOKEN).await.unwrap();
    let mut args = vec![
        "--key".to_owned(),
        KEY.to_owned(),
        "--upstream".to_owned(),
        format!("atlassian={}", passthrough_upstream.url()),
        "--passthrough".to_owned(),
        "atlassian".to_owned(),
        "--upstream".to_owned(),
        format!("github={}", keyed_upstream.url()),
        "--upstream-auth".to_owned(),
        format!("github=bearer_token:{UPSTREAM_TOKEN}"),
    ];
    for (name, url) in extra {
        args.push("--upstream".to_owned());
        args.push(format!("{name}={url}"));
    }
    let options = app::Options::parse(args, None).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    let prepared = app::prepare(options, gateway).await.unwrap();
    tokio::spawn(app::serve(listener, prepared.app, std::future::pending()));
    Setup {
        gateway,
        passthrough_upstream,
        keyed_upstream,
    }
}

/// An rmcp client to `url` with an optional OAuth token and an optional gateway key.
async fn mcp_client(
    url: String,
    token: Option<&str>,
    key: Option<&str>,
) -> Result<rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>, String> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    if let Some(key) = key {
        let mut headers = HashMap::new();
        headers.insert(
            HeaderName::from_static("x-litellm-api-key"),
            HeaderValue::from_str(key).unwrap(),
        );
        config = config.custom_headers(headers);
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    ClientConfig::default()
        .serve(transport)
        .await
        .map_err(|e| e.to_string())
}

async fn tool_names(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>,
) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

async fn add(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>,
    a: i64,
    b: i64,
) -> String {
    let args = serde_json::json!({"a": a, "b": b})
        .as_object()
        .unwrap()
        .clone();
    let result = client
        .call_tool(CallToolRequestParams::new("add").with_arguments(args))
        .await
        .unwrap();
    serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A raw MCP `initialize` POST, for the cases where the status line and headers are the point.
async fn post_initialize(url: String, headers: &[(&str, &str)]) -> Response<Bytes> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from_static(INIT.as_bytes())))
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(1), body.collect())
        .await
        .map(|b| b.unwrap().to_bytes())
        .unwrap_or_default();
    Response::from_parts(parts, body)
}

async fn http_get(url: String) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn carries(upstream: &app::demo::DemoUpstream, needle: &str) -> bool {
    upstream
        .seen()
        .iter()
        .flat_map(|headers| headers.values())
        .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(needle))
}

#[tokio::test]
async fn case_1_client_oauth_token_passes_through_and_tools_work() {
    let s = setup(&[]).await;
    let client = mcp_client(
        format!("http://{}/mcp/atlassian", s.gateway),
        Some(UPSTREAM_TOKEN),
        None,
    )
    .await
    .unwrap();
    assert_eq!(tool_names(&client).await, ["add", "echo"]);
    assert_eq!(add(&client, 2, 40).await, "42");
    client.cancel().await.unwrap();
    assert!(carries(&s.passthrough_upstream, UPSTREAM_TOKEN));
}

#[tokio::test]
async fn case_2_gateway_key_and_oauth_token_lists_tools_and_the_key_never_leaves() {
    let s = setup(&[]).await;
    let client = mcp_client(
        format!("http://{}/mcp/atlassian/", s.gateway),
        Some(UPSTREAM_TOKEN),
        Some(KEY),
    )
    .await
    .unwrap();
    assert_eq!(tool_names(&client).await, ["add", "echo"]);
    assert_eq!(add(&client, 1, 1).await, "2");
    client.cancel().await.unwrap();
    assert!(!s.passthrough_upstream.seen().is_empty());
    assert!(!carries(&s.passthrough_upstream, KEY));
}

#[tokio::test]
async fn case_3_gateway_key_as_bearer_is_not_forwarded_and_the_upstream_401_reaches_the_client() {
    let s = setup(&[]).await;
    let url = format!("http://{}/mcp/atlassian", s.gateway);
    let response =
        post_initialize(url.clone(), &[("authorization", &format!("Bearer {KEY}"))]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    let gateway_metadata = format!(
        "http://{}/.well-known/oauth-protected-resource/mcp/atlassian",
        s.gateway
    );
    // The upstream's challenge, pointed at the gateway's metadata, with its other parameters kept.
    assert_eq!(
        challenge,
        format!(
            r#"Bearer error="invalid_token", resource_metadata="{gateway_metadata}", scope="demo""#
        )
    );
    assert_eq!(
        s.passthrough_upstream.seen().len(),
        1,
        "the upstream answered the 401 itself"
    );
    assert!(!carries(&s.passthrough_upstream, KEY));
    // An rmcp client sees the refusal too: never an empty tool list.
    assert!(mcp_client(url, Some(KEY), None).await.is_err());
}

#[tokio::test]
async fn case_4_no_credentials_get_a_challenge_naming_metadata_that_describes_the_route() {
    let s = setup(&[]).await;
    let response = post_initialize(format!("http://{}/mcp/atlassian", s.gateway), &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let metadata_url = format!(
        "http://{}/.well-known/oauth-protected-resource/mcp/atlassian",
        s.gateway
    );
    // The upstream's `scopes_supported` travels as a hint, read by the gateway's discovery.
    assert_eq!(
        challenge,
        format!(r#"Bearer resource_metadata="{metadata_url}", scope="demo""#)
    );
    assert!(
        !s.passthrough_upstream
            .seen()
            .iter()
            .any(|h| h.contains_key("authorization") || h.contains_key("content-type")),
        "refused at the gateway: only discovery, without credentials, reached the upstream"
    );
    let discovery_requests = s.passthrough_upstream.seen().len();

    let (status, body) = http_get(metadata_url).await;
    assert_eq!(status, StatusCode::OK);
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        document["resource"],
        format!("http://{}/mcp/atlassian", s.gateway)
    );
    assert_eq!(
        document["authorization_servers"],
        serde_json::json!([app::demo::DEMO_AUTHORIZATION_SERVER])
    );
    // Read from the upstream's own metadata, once (cached).
    let (status, _) = http_get(format!(
        "http://{}/.well-known/oauth-protected-resource/mcp/atlassian",
        s.gateway
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.passthrough_upstream.seen().len(),
        discovery_requests,
        "cached"
    );
    // Only passthrough routes publish metadata.
    let (status, _) = http_get(format!(
        "http://{}/.well-known/oauth-protected-resource/mcp/github",
        s.gateway
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn case_5_wrong_key_with_valid_upstream_token_is_refused_before_the_upstream() {
    let s = setup(&[]).await;
    let response = post_initialize(
        format!("http://{}/mcp/atlassian", s.gateway),
        &[
            ("x-litellm-api-key", "sk-wrong"),
            ("authorization", &format!("Bearer {UPSTREAM_TOKEN}")),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(s.passthrough_upstream.seen().is_empty());

    // Unknown upstream names: 404 for a caller with a key, 401 for one without (names are not revealed).
    let known_caller = post_initialize(
        format!("http://{}/mcp/nope", s.gateway),
        &[("x-litellm-api-key", KEY)],
    )
    .await;
    assert_eq!(known_caller.status(), StatusCode::NOT_FOUND);
    assert_eq!(known_caller.headers()["content-type"], "application/json");
    let stranger = post_initialize(
        format!("http://{}/mcp/nope", s.gateway),
        &[("authorization", &format!("Bearer {UPSTREAM_TOKEN}"))],
    )
    .await;
    assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn case_6_made_up_bearer_on_a_non_passthrough_upstream_never_reaches_it() {
    let s = setup(&[]).await;
    let response = post_initialize(
        format!("http://{}/mcp/github", s.gateway),
        &[("authorization", "Bearer made-up")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(s.keyed_upstream.seen().is_empty());
    assert!(mcp_client(
        format!("http://{}/mcp/github", s.gateway),
        Some("made-up"),
        None
    )
    .await
    .is_err());
    assert!(s.keyed_upstream.seen().is_empty());
}

#[tokio::test]
async fn case_7_gateway_key_on_a_non_passthrough_upstream_uses_the_gateway_credential() {
    let s = setup(&[]).await;
    let client = mcp_client(format!("http://{}/mcp/github", s.gateway), None, Some(KEY))
        .await
        .unwrap();
    assert_eq!(tool_names(&client).await, ["add", "echo"]);
    assert_eq!(add(&client, 20, 22).await, "42");
    client.cancel().await.unwrap();
    assert!(carries(&s.keyed_upstream, UPSTREAM_TOKEN));
    assert!(!carries(&s.keyed_upstream, KEY));
}

#[tokio::test]
async fn case_8_server_sent_events_arrive_before_the_upstream_finishes() {
    // An upstream that sends one event, then waits for the test before it sends the last one and ends.
    let release = Arc::new(Notify::new());
    let upstream_release = release.clone();
    let app = Router::new().route(
        "/events",
        get(move || {
            let release = upstream_release.clone();
            async move {
                let stream = async_stream(release);
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(stream))
                    .unwrap()
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let s = setup(&[("events", format!("http://{upstream}/events"))]).await;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::get(format!("http://{}/mcp/events", s.gateway))
        .header("x-litellm-api-key", KEY)
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(30), body.frame())
        .await
        .expect("the first event arrived while the upstream was still open")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"data: first\n\n");
    release.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"data: last\n\n");
}

fn async_stream(
    release: Arc<Notify>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    futures_util::stream::unfold(0, move |step| {
        let release = release.clone();
        async move {
            match step {
                0 => Some((Ok(Bytes::from_static(b"data: first\n\n")), 1)),
                1 => {
                    release.notified().await;
                    Some((Ok(Bytes::from_static(b"data: last\n\n")), 2))
                }
                _ => None,
            }
        }
    })
}

/// The example's command line, as a process: the one `listening on` line, a working demo, a clean exit on SIGTERM.
#[tokio::test]
async fn the_binary_serves_its_demo_and_stops_on_sigterm() {
    let binary = env!("CARGO_BIN_EXE_mcp-gateway");
    let mut child = tokio::process::Command::new(binary)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base = first
        .strip_prefix("listening on ")
        .expect(&first)
        .to_owned();
    let client = mcp_client(format!("{base}/mcp/demo"), Some(app::DEMO_TOKEN), None)
        .await
        .unwrap();
    assert_eq!(tool_names(&client).await, ["add", "echo"]);
    client.cancel().await.unwrap();
    let made_up = post_initialize(
        format!("{base}/mcp/demo"),
        &[("authorization", "Bearer made-up")],
    )
    .await;
    assert_eq!(made_up.status(), StatusCode::UNAUTHORIZED);
    // Discovery and the operations endpoints work in the demo as well.
    let (status, metadata) = http_get(format!(
        "{base}/.well-known/oauth-protected-resource/mcp/demo"
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metadata.contains(app::demo::DEMO_AUTHORIZATION_SERVER),
        "{metadata}"
    );
    assert_eq!(http_get(format!("{base}/healthz")).await.0, StatusCode::OK);
    assert_eq!(http_get(format!("{base}/readyz")).await.0, StatusCode::OK);
    let with_key = post_initialize(
        format!("{base}/mcp/demo"),
        &[
            ("x-litellm-api-key", app::DEMO_KEY),
            ("authorization", &format!("Bearer {}", app::DEMO_TOKEN)),
        ],
    )
    .await;
    assert_eq!(with_key.status(), StatusCode::OK);

    let pid = child.id().unwrap() as i32;
    std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
