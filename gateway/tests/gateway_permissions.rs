//! The gateway example with per-key upstream permissions and caller-bound MCP sessions, end to end: rmcp
//! upstreams on loopback, the gateway in front, rmcp clients (or plain HTTP where the status line is the point).

use mcp_gateway as app;
mod gateway_support;

use std::{collections::HashMap, net::SocketAddr};

use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use gateway_support::{send, temp_file, INIT};
use rmcp::{
    model::ClientConfig,
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
    ServiceExt,
};
use tokio::net::TcpListener;

const UPSTREAM_TOKEN: &str = "upstream-oauth-token-7c2e";
const KEY_A: &str = "sk-gateway-key-a";
const KEY_B: &str = "sk-gateway-key-b";
const KEY_ALL: &str = "sk-gateway-key-all";
const KEY_FILE: &str = "sk-gateway-key-from-file";

struct Setup {
    gateway: SocketAddr,
    atl: app::demo::DemoUpstream,
    private: app::demo::DemoUpstream,
}

/// Two upstreams, `atl` (which also accepts the client's own token) and `priv`, each reached with the
/// gateway's credential; key A may use `atl`, key B `priv`, the plain key both, the key file's key `priv`.
async fn setup() -> Setup {
    let atl = app::demo::start(UPSTREAM_TOKEN).await.unwrap();
    let private = app::demo::start(UPSTREAM_TOKEN).await.unwrap();
    let key_file = temp_file(
        "keys",
        &format!("# keys with their upstreams\n{KEY_FILE}=priv filer\n"),
    );
    let args = [
        "--key",
        &format!("{KEY_A}=atl"),
        "--key",
        &format!("{KEY_B}=priv"),
        "--key",
        KEY_ALL,
        "--key-file",
        key_file.to_str().unwrap(),
        "--upstream",
        &format!("atl={}", atl.url()),
        "--passthrough",
        "atl",
        "--upstream-auth",
        &format!("atl=bearer_token:{UPSTREAM_TOKEN}"),
        "--upstream",
        &format!("priv={}", private.url()),
        "--upstream-auth",
        &format!("priv=bearer_token:{UPSTREAM_TOKEN}"),
    ];
    let options = app::Options::parse(args.iter().map(|a| a.to_string()), None).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    let prepared = app::prepare(options, gateway).await.unwrap();
    std::fs::remove_file(&key_file).unwrap();
    tokio::spawn(app::serve(listener, prepared.app, std::future::pending()));
    Setup {
        gateway,
        atl,
        private,
    }
}

/// The tools an rmcp client sees through the gateway at `/mcp/{upstream}` with gateway key `key`.
async fn tools(setup: &Setup, upstream: &str, key: &str) -> Result<Vec<String>, String> {
    let mut headers = HashMap::new();
    headers.insert(
        HeaderName::from_static("x-litellm-api-key"),
        HeaderValue::from_str(key).unwrap(),
    );
    let config = StreamableHttpClientTransportConfig::with_uri(format!(
        "http://{}/mcp/{upstream}",
        setup.gateway
    ))
    .custom_headers(headers);
    let client = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .map_err(|e| e.to_string())?;
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    client.cancel().await.unwrap();
    Ok(names)
}

/// A raw MCP POST through the gateway: status, headers and body.
async fn post(
    setup: &Setup,
    upstream: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> (StatusCode, http::HeaderMap, String) {
    let mut all = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    all.extend_from_slice(headers);
    let url = format!("http://{}/mcp/{upstream}", setup.gateway);
    // An SSE answer may stay open: `send` reads what comes within a second.
    let answer = send(
        Method::POST,
        &url,
        &all,
        Bytes::from_static(body.as_bytes()),
    )
    .await;
    (
        answer.status,
        answer.headers,
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

async fn assert_denied(setup: &Setup, upstream: &str, key: &str) {
    let (status, _, body) = post(setup, upstream, &[("x-litellm-api-key", key)], INIT).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{upstream}: {body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "access_denied");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains(upstream), "{description}");
    assert!(!description.contains("sk-"), "{description}");
}

#[tokio::test]
async fn key_a_lists_tools_on_atl_and_is_denied_priv() {
    let s = setup().await;
    assert_eq!(tools(&s, "atl", KEY_A).await.unwrap(), ["add", "echo"]);
    let before = s.private.seen().len();
    assert_denied(&s, "priv", KEY_A).await;
    assert!(tools(&s, "priv", KEY_A).await.is_err());
    assert_eq!(
        s.private.seen().len(),
        before,
        "priv saw a request it was denied"
    );
}

#[tokio::test]
async fn key_b_the_reverse() {
    let s = setup().await;
    assert_eq!(tools(&s, "priv", KEY_B).await.unwrap(), ["add", "echo"]);
    let before = s.atl.seen().len();
    assert_denied(&s, "atl", KEY_B).await;
    assert_eq!(s.atl.seen().len(), before);
}

#[tokio::test]
async fn an_unrestricted_key_reaches_both_and_the_key_file_counts() {
    let s = setup().await;
    for upstream in ["atl", "priv"] {
        assert_eq!(
            tools(&s, upstream, KEY_ALL).await.unwrap(),
            ["add", "echo"],
            "{upstream}"
        );
    }
    assert_eq!(tools(&s, "priv", KEY_FILE).await.unwrap(), ["add", "echo"]);
    assert_denied(&s, "atl", KEY_FILE).await;
}

#[tokio::test]
async fn a_passthrough_caller_is_governed_by_the_passthrough_policy_alone() {
    let s = setup().await;
    let bearer = format!("Bearer {UPSTREAM_TOKEN}");
    let (status, _, _) = post(&s, "atl", &[("authorization", &bearer)], INIT).await;
    assert_eq!(status, StatusCode::OK);
    // `priv` does not accept passthrough: the auth layer refuses the token as not a gateway key.
    let (status, _, _) = post(&s, "priv", &[("authorization", &bearer)], INIT).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// ---- Sessions bound to callers ----

const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#;

/// Opens a session on `atl` as the caller `headers` describe; returns its id.
async fn open_session(s: &Setup, headers: &[(&str, &str)]) -> String {
    let (status, answer, body) = post(s, "atl", headers, INIT).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    answer["mcp-session-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_session_presented_by_another_caller_is_404_and_never_reaches_the_upstream() {
    let s = setup().await;
    let session = open_session(&s, &[("x-litellm-api-key", KEY_A)]).await;

    // Another key that may use `atl` presents it: 404, as for an unknown session.
    let before = s.atl.seen().len();
    let (status, _, body) = post(
        &s,
        "atl",
        &[("x-litellm-api-key", KEY_ALL), ("mcp-session-id", &session)],
        LIST,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // So does a passthrough caller, even with a token the upstream would accept.
    let bearer = format!("Bearer {UPSTREAM_TOKEN}");
    let (status, _, _) = post(
        &s,
        "atl",
        &[("authorization", &bearer), ("mcp-session-id", &session)],
        LIST,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.atl.seen().len(),
        before,
        "the upstream saw a foreign caller's request"
    );

    // The caller that opened it carries on.
    let (status, _, body) = post(
        &s,
        "atl",
        &[("x-litellm-api-key", KEY_A), ("mcp-session-id", &session)],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(s.atl.seen().len(), before + 1);
}

#[tokio::test]
async fn passthrough_sessions_are_bound_to_the_token_and_unknown_sessions_are_404() {
    let s = setup().await;
    let bearer = format!("Bearer {UPSTREAM_TOKEN}");
    let session = open_session(&s, &[("authorization", &bearer)]).await;
    // A key caller cannot take over a passthrough caller's session.
    let (status, _, _) = post(
        &s,
        "atl",
        &[("x-litellm-api-key", KEY_A), ("mcp-session-id", &session)],
        LIST,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A session the gateway never handed out is unknown.
    let (status, _, _) = post(
        &s,
        "atl",
        &[
            ("authorization", &bearer),
            ("mcp-session-id", "made-up-session"),
        ],
        LIST,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The same session on another upstream is another session, also unknown.
    let (status, _, _) = post(
        &s,
        "priv",
        &[("x-litellm-api-key", KEY_ALL), ("mcp-session-id", &session)],
        LIST,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
