//! Per-tool permissions through the gateway, end to end: rmcp upstreams on loopback that count every call of
//! every tool, the gateway in front (config file `allowed_tools` / `disallowed_tools`, keys `SERVER/TOOL`),
//! and rmcp clients of both protocol eras — the `initialize` handshake (2025-11-25) and the stateless
//! 2026-07-28 revision — side by side; plain HTTP where the status line or the exact body is the point.

use mcp_gateway as app;
mod gateway_support;

use std::{collections::HashMap, net::SocketAddr};

use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use gateway_support::{send, temp_file, Answer};
use rmcp::{
    model::{CallToolRequestParams, ClientConfig, ProtocolVersion},
    service::{ClientLifecycleMode, ClientServiceExt},
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
};
use testkit::tools_upstream::{upstream, Calls};
use tokio::net::TcpListener;

const KEY_ALL: &str = "sk-tools-all";
const KEY_ECHO: &str = "sk-tools-echo-only";
const KEY_FILE: &str = "sk-tools-from-file";

struct Setup {
    gateway: SocketAddr,
    /// The upstream answering with event streams (`sse`) and with JSON (`json`).
    sse: Calls,
    json: Calls,
}

/// Two upstreams whose config hides `secret` (`disallowed_tools`) and, on `json`, allows only `echo` and
/// `add` (`allowed_tools`); key `KEY_ECHO` may call `echo` of both, `KEY_ALL` every tool the config leaves,
/// the key file's key `add` of `sse`.
async fn setup() -> Setup {
    let (sse_url, sse) = upstream(false).await;
    let (json_url, json) = upstream(true).await;
    let config = temp_file(
        "config.yaml",
        &format!(
            "mcp_servers:\n  sse:\n    url: {sse_url}\n    disallowed_tools: [secret]\n  json:\n    url: {json_url}\n    allowed_tools: [echo, add]\n"
        ),
    );
    let keys = temp_file("keys", &format!("{KEY_FILE}=sse/add filer\n"));
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--key",
        KEY_ALL,
        "--key",
        &format!("{KEY_ECHO}=sse/echo,json/echo"),
        "--key-file",
        keys.to_str().unwrap(),
    ];
    let options = app::Options::parse(args.iter().map(|a| a.to_string()), None).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    let prepared = app::prepare(options, gateway).await.unwrap();
    tokio::spawn(app::serve(listener, prepared.app, std::future::pending()));
    Setup { gateway, sse, json }
}

#[derive(Clone, Copy, Debug)]
enum Era {
    Handshake,
    Stateless,
}

const ERAS: [Era; 2] = [Era::Handshake, Era::Stateless];

/// An rmcp client of `era` on `/mcp/{upstream}` with gateway key `key`.
async fn client(
    setup: &Setup,
    upstream: &str,
    key: &str,
    era: Era,
) -> rmcp::service::RunningService<rmcp::RoleClient, ClientConfig> {
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
    let transport = StreamableHttpClientTransport::from_config(config);
    let (info, lifecycle) = match era {
        Era::Handshake => (
            ClientConfig::default().with_protocol_version(ProtocolVersion::V_2025_11_25),
            ClientLifecycleMode::Initialize,
        ),
        Era::Stateless => (
            ClientConfig::default(),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        ),
    };
    info.serve_with_lifecycle(transport, lifecycle)
        .await
        .unwrap_or_else(|e| panic!("{era:?} client on {upstream}: {e}"))
}

async fn listed(setup: &Setup, upstream: &str, key: &str, era: Era) -> Vec<String> {
    let client = client(setup, upstream, key, era).await;
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    client.cancel().await.unwrap();
    names
}

/// Calls `tool`: `Ok(text)` when it ran, `Err(message)` when the call was refused.
async fn call(
    setup: &Setup,
    upstream: &str,
    key: &str,
    era: Era,
    tool: &str,
) -> Result<String, String> {
    let client = client(setup, upstream, key, era).await;
    let arguments = serde_json::json!({ "text": "hi" })
        .as_object()
        .cloned()
        .unwrap();
    let answer = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await;
    client.cancel().await.unwrap();
    match answer {
        Ok(result) => Ok(serde_json::to_string(&result.content).unwrap()),
        Err(error) => Err(error.to_string()),
    }
}

#[tokio::test]
async fn lists_hold_only_what_the_caller_may_call_in_both_eras() {
    let setup = setup().await;
    for era in ERAS {
        assert_eq!(
            listed(&setup, "sse", KEY_ALL, era).await,
            ["add", "echo"],
            "{era:?}"
        );
        assert_eq!(
            listed(&setup, "json", KEY_ALL, era).await,
            ["add", "echo"],
            "{era:?}"
        );
        assert_eq!(
            listed(&setup, "sse", KEY_ECHO, era).await,
            ["echo"],
            "{era:?}"
        );
        assert_eq!(
            listed(&setup, "json", KEY_ECHO, era).await,
            ["echo"],
            "{era:?}"
        );
        assert_eq!(
            listed(&setup, "sse", KEY_FILE, era).await,
            ["add"],
            "{era:?}"
        );
    }
}

#[tokio::test]
async fn refused_calls_never_reach_the_upstream_in_both_eras() {
    let setup = setup().await;
    for era in ERAS {
        // The upstream's own rule, whoever calls.
        let refused = call(&setup, "sse", KEY_ALL, era, "secret")
            .await
            .unwrap_err();
        assert!(refused.contains("secret"), "{era:?}: {refused}");
        let refused = call(&setup, "json", KEY_ALL, era, "secret")
            .await
            .unwrap_err();
        assert!(refused.contains("secret"), "{era:?}: {refused}");
        // The key's grants.
        let refused = call(&setup, "sse", KEY_ECHO, era, "add").await.unwrap_err();
        assert!(
            refused.contains("add") && !refused.contains("sk-"),
            "{era:?}: {refused}"
        );
        let refused = call(&setup, "sse", KEY_FILE, era, "echo")
            .await
            .unwrap_err();
        assert!(refused.contains("echo"), "{era:?}: {refused}");
        // What is allowed runs.
        assert!(call(&setup, "sse", KEY_ECHO, era, "echo")
            .await
            .unwrap()
            .contains("hi"));
        assert!(call(&setup, "json", KEY_ALL, era, "add")
            .await
            .unwrap()
            .contains("hi"));
    }
    assert_eq!(setup.sse.of("secret") + setup.json.of("secret"), 0);
    assert_eq!(setup.sse.of("add"), 0, "add of sse was refused every time");
    assert_eq!(setup.sse.of("echo"), 2);
    assert_eq!(setup.json.of("add"), 2);
}

/// A raw POST of `body` to `/mcp/{upstream}` with `headers` (besides content type and accept).
async fn post(setup: &Setup, upstream: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut all = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    all.extend_from_slice(headers);
    let url = format!("http://{}/mcp/{upstream}", setup.gateway);
    send(Method::POST, &url, &all, Bytes::from(body.to_owned())).await
}

const V26: (&str, &str) = ("mcp-protocol-version", "2026-07-28");

fn call_body(name: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"{name}","arguments":{{"text":"x"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    )
}

/// A case: its name, the headers, the body, the status.
type Row<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, StatusCode);

#[tokio::test]
async fn bodies_read_two_ways_are_refused_before_the_upstream() {
    let setup = setup().await;
    let key = ("x-litellm-api-key", KEY_ALL);
    let rows: &[Row] = &[
        (
            "routing headers disagree with the body",
            vec![key, V26, ("mcp-method", "tools/call"), ("mcp-name", "echo")],
            call_body("add"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "Mcp-Name missing in 2026-07-28",
            vec![key, V26, ("mcp-method", "tools/call")],
            call_body("add"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "Mcp-Method differs in case",
            vec![key, V26, ("mcp-method", "Tools/Call"), ("mcp-name", "add")],
            call_body("add"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "duplicate name",
            vec![key, ("mcp-protocol-version", "2025-11-25")],
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","name":"add","arguments":{"text":"x"}}}"#.to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "duplicate method",
            vec![key, ("mcp-protocol-version", "2025-11-25")],
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/list","method":"tools/call","params":{"name":"add","arguments":{"text":"x"}}}"#.to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "case-changed method",
            vec![key, ("mcp-protocol-version", "2025-11-25")],
            r#"{"jsonrpc":"2.0","id":5,"method":"TOOLS/CALL","params":{"name":"add","arguments":{"text":"x"}}}"#.to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a batch where batching was removed",
            vec![key, ("mcp-protocol-version", "2025-06-18")],
            r#"[{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"add","arguments":{"text":"x"}}}]"#.to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "an unknown revision",
            vec![key, ("mcp-protocol-version", "2099-01-01")],
            call_body("add"),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (case, headers, body, status) in rows {
        let answer = post(&setup, "sse", headers, body).await;
        assert_eq!(answer.status, *status, "{case}: {:?}", answer.body);
        assert_eq!(answer.json()["jsonrpc"], "2.0", "{case}: a JSON-RPC error");
    }
    assert_eq!(setup.sse.of("add") + setup.sse.of("echo"), 0, "nothing ran");
}

#[tokio::test]
async fn escapes_and_batches_are_judged_as_the_upstream_reads_them() {
    let setup = setup().await;
    let echo_key = ("x-litellm-api-key", KEY_ECHO);
    // `\u0061dd` is `add`: refused like `add`, naming it decoded.
    let escaped = call_body("\\u0061dd");
    let headers = [
        echo_key,
        V26,
        ("mcp-method", "tools/call"),
        ("mcp-name", "add"),
    ];
    let answer = post(&setup, "json", &headers, &escaped).await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json();
    assert_eq!(body["id"], 5);
    assert_eq!(body["error"]["code"], -32602);
    assert_eq!(body["error"]["message"], r#"tool "add" is not available"#);
    // In 2025-03-26 a batch is judged member by member; one refused member stops the batch.
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"text":"x"}}}]"#;
    let answer = post(
        &setup,
        "json",
        &[echo_key, ("mcp-protocol-version", "2025-03-26")],
        batch,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let answers = answer.json();
    assert_eq!(
        answers[1]["error"]["message"],
        r#"tool "add" is not available"#
    );
    assert!(answers[0]["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("not run"));
    assert_eq!(setup.json.of("add") + setup.json.of("echo"), 0);
}

#[tokio::test]
async fn preflight_allows_the_routing_headers() {
    let setup = setup().await;
    let url = format!("http://{}/mcp/sse", setup.gateway);
    let origin = format!("http://{}", setup.gateway);
    let answer = send(
        Method::OPTIONS,
        &url,
        &[
            ("origin", &origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "mcp-method,mcp-name,mcp-protocol-version,x-litellm-api-key",
            ),
        ],
        Bytes::new(),
    )
    .await;
    assert!(answer.status.is_success(), "{:?}", answer.status);
    let allowed = answer
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for header in ["mcp-method", "mcp-name", "mcp-protocol-version"] {
        assert!(allowed.contains(header), "{allowed}");
    }
}

#[tokio::test]
async fn metrics_count_calls_by_upstream_method_tool_and_outcome_with_bounded_labels() {
    let setup = setup().await;
    let key = ("x-litellm-api-key", KEY_ALL);
    let old = ("mcp-protocol-version", "2025-11-25");
    let body = |tool: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"x"}}}}}}"#
        )
    };
    // Refused by the upstream's rule; a name the configuration never mentions; a client-made name.
    for tool in ["secret", "made-up-tool-4b1e", "\\u0073ecret"] {
        let answer = post(&setup, "json", &[key, old], &body(tool)).await;
        assert_eq!(answer.status, StatusCode::OK, "{tool}");
    }
    let scrape = send(
        Method::GET,
        &format!("http://{}/metrics", setup.gateway),
        &[],
        Bytes::new(),
    )
    .await;
    let text = String::from_utf8_lossy(&scrape.body).into_owned();
    let line = |labels: &[&str]| {
        text.lines()
            .filter(|l| l.starts_with("mcp_gateway_calls"))
            .find(|l| labels.iter().all(|label| l.contains(label)))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(
        line(&[
            r#"upstream="json""#,
            r#"method="tools/call""#,
            r#"tool="other""#,
            r#"outcome="refused:upstream_tools""#
        ]),
        Some(3.0),
        "{text}"
    );
    assert!(
        !text.contains("made-up-tool"),
        "client names never become labels"
    );
    assert!(!text.contains(KEY_ALL));
    assert_eq!(setup.json.of("secret"), 0);
}

/// A `tools/list` page with `tools`, as the upstream sends it: public and cacheable for a minute.
fn page(tools: &[&str], next: Option<&str>) -> String {
    let tools: Vec<serde_json::Value> = tools
        .iter()
        .map(|t| serde_json::json!({ "name": t, "inputSchema": {"type": "object"} }))
        .collect();
    let mut result = serde_json::json!({ "tools": tools, "ttlMs": 60000, "cacheScope": "public" });
    if let Some(next) = next {
        result["nextCursor"] = next.into();
    }
    serde_json::json!({ "jsonrpc": "2.0", "id": 1, "result": result }).to_string()
}

#[tokio::test]
async fn every_page_is_filtered_json_and_event_stream_and_private_where_the_caller_narrowed_it() {
    use gateway_support::Recorder;
    let upstream = Recorder::start(|parts| {
        let second = parts.headers.get("x-test-page").is_some_and(|v| v == "2");
        let mut response = if second {
            axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(axum::body::Body::from(format!(
                    "id: 7\nevent: message\ndata: {}\n\n",
                    page(&["rm", "echo"], None)
                )))
                .unwrap()
        } else {
            gateway_support::answer(StatusCode::OK, &[], &page(&["add", "echo"], Some("p2")))
        };
        response
            .headers_mut()
            .insert("cache-control", "public, max-age=60".parse().unwrap());
        response
    })
    .await;
    let args: Vec<String> = [
        "--upstream",
        &format!("pages={}", upstream.url("/mcp")),
        "--key",
        "sk-pages-echo=pages/echo",
        "--key",
        "sk-pages-all",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let gw = gateway_support::gateway(&args).await;
    let list = |key: &'static str, cursor: Option<&'static str>| {
        let url = format!("http://{gw}/mcp/pages");
        async move {
            let params = match cursor {
                Some(cursor) => format!(r#"{{"cursor":"{cursor}"}}"#),
                None => "{}".to_owned(),
            };
            let body =
                format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{params}}}"#);
            let page = if cursor.is_some() { "2" } else { "1" };
            send(
                Method::POST,
                &url,
                &[
                    ("content-type", "application/json"),
                    ("accept", "application/json, text/event-stream"),
                    ("x-litellm-api-key", key),
                    V26,
                    ("mcp-method", "tools/list"),
                    ("x-test-page", page),
                ],
                Bytes::from(body),
            )
            .await
        }
    };
    let names = |result: &serde_json::Value| -> Vec<String> {
        result["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Page 1, JSON.
    let first = list("sk-pages-echo", None).await;
    let body = first.json();
    assert_eq!(names(&body["result"]), ["echo"]);
    assert_eq!(body["result"]["cacheScope"], "private");
    assert_eq!(body["result"]["nextCursor"], "p2");
    assert_eq!(first.header("cache-control"), Some("private"));
    // Page 2, an event stream: the event is rewritten, its other fields kept.
    let second = list("sk-pages-echo", Some("p2")).await;
    let text = String::from_utf8_lossy(&second.body).into_owned();
    assert!(text.starts_with("id: 7\nevent: message\ndata: "), "{text}");
    let data: serde_json::Value =
        serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(names(&data["result"]), ["echo"]);
    assert_eq!(data["result"]["cacheScope"], "private");
    // A caller no rule narrows gets the upstream's answer as it was.
    let all = list("sk-pages-all", None).await;
    assert_eq!(names(&all.json()["result"]), ["add", "echo"]);
    assert_eq!(all.json()["result"]["cacheScope"], "public");
}
