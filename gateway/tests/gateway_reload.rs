//! Configuration reload through the running `mcp-gateway` binary: its config file and key file rewritten, then
//! `SIGHUP`. An added upstream and an added key work, a removed key is refused at once (on a keep-alive
//! connection too), a tightened tool permission filters `tools/list` and refuses `tools/call`, and a broken
//! configuration is refused with its reason logged while the running one keeps serving — with an event stream
//! and an MCP session open across every reload.

mod gateway_support;

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    http::{HeaderName, HeaderValue, Method, Request, StatusCode},
    response::Response,
    routing::get,
    Router,
};
use bytes::Bytes;
use gateway_support::{answer, process::GatewayProcess, send, temp_file, Recorder, INIT};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use rmcp::{
    model::{CallToolRequestParams, ClientConfig},
    service::RunningService,
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
    RoleClient, ServiceExt,
};
use testkit::tools_upstream::{upstream, Calls};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

const KEY_STAYS: &str = "sk-reload-key-that-stays";
const KEY_REMOVED: &str = "sk-reload-key-that-is-removed";
const KEY_ADDED: &str = "sk-reload-key-that-is-added";
const RELOADED: &str = "configuration reloaded";
const REFUSED: &str = "configuration reload refused";

/// An upstream whose one `GET` event stream sends each event the test hands it, and ends when the test drops
/// its sender.
async fn events_upstream() -> (String, mpsc::UnboundedSender<&'static str>) {
    let (events, receiver) = mpsc::unbounded_channel::<&'static str>();
    let receiver = Arc::new(Mutex::new(Some(receiver)));
    let app = Router::new().route(
        "/events",
        get(move || {
            let receiver = receiver.lock().unwrap().take().expect("one event stream");
            async move {
                let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
                    let event = receiver.recv().await?;
                    Some((Ok::<_, Infallible>(format!("data: {event}\n\n")), receiver))
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(stream))
                    .unwrap()
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/events"), events)
}

/// The gateway's event stream, read one event at a time.
struct EventStream(hyper::body::Incoming);

impl EventStream {
    async fn open(gateway: SocketAddr) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = Request::get(format!("http://{gateway}/mcp/events"))
            .header("x-litellm-api-key", KEY_STAYS)
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Self(response.into_body())
    }

    /// The next event's bytes (within 30 s), or `None` when the stream ended.
    async fn next(&mut self) -> Option<Bytes> {
        let frame = tokio::time::timeout(Duration::from_secs(30), self.0.frame())
            .await
            .expect("the event arrives within 30 s")?;
        Some(frame.expect("the stream carries on").into_data().unwrap())
    }
}

/// One keep-alive HTTP/1.1 connection to the gateway: every request goes over it, or fails.
struct Connection(hyper::client::conn::http1::SendRequest<Full<Bytes>>);

impl Connection {
    async fn open(gateway: SocketAddr) -> Self {
        let tcp = TcpStream::connect(gateway).await.unwrap();
        let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(connection);
        Self(send)
    }

    /// The status of an `initialize` POST to `/mcp/rec` with `key`, over this connection.
    async fn initialize(&mut self, key: &str) -> StatusCode {
        self.0.ready().await.expect("the connection is still open");
        let request = Request::post("/mcp/rec")
            .header("host", "127.0.0.1")
            .header("x-litellm-api-key", key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Full::new(Bytes::from_static(INIT.as_bytes())))
            .unwrap();
        let response = self
            .0
            .send_request(request)
            .await
            .expect("the same connection answers");
        let status = response.status();
        response.into_body().collect().await.unwrap();
        status
    }
}

/// The status of an `initialize` POST to `/mcp/{upstream}` with `key`, on a new connection.
async fn initialize(gateway: SocketAddr, upstream: &str, key: &str) -> StatusCode {
    let headers = [
        ("x-litellm-api-key", key),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    let url = format!("http://{gateway}/mcp/{upstream}");
    send(
        Method::POST,
        &url,
        &headers,
        Bytes::from_static(INIT.as_bytes()),
    )
    .await
    .status
}

/// An rmcp client on `/mcp/{upstream}` with gateway key `key`.
async fn client(
    gateway: SocketAddr,
    upstream: &str,
    key: &str,
) -> RunningService<RoleClient, ClientConfig> {
    let mut headers = HashMap::new();
    headers.insert(
        HeaderName::from_static("x-litellm-api-key"),
        HeaderValue::from_str(key).unwrap(),
    );
    let config =
        StreamableHttpClientTransportConfig::with_uri(format!("http://{gateway}/mcp/{upstream}"))
            .custom_headers(headers);
    ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap_or_else(|e| panic!("client on {upstream}: {e}"))
}

async fn listed(client: &RunningService<RoleClient, ClientConfig>) -> Vec<String> {
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

/// Calls `tool`: `Ok(())` when it ran, `Err(message)` when it was refused.
async fn call(client: &RunningService<RoleClient, ClientConfig>, tool: &str) -> Result<(), String> {
    let arguments = serde_json::json!({ "text": "hi" })
        .as_object()
        .cloned()
        .unwrap();
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The gateway's `/metrics` text.
async fn metrics(gateway: SocketAddr) -> String {
    let answer = send(
        Method::GET,
        &format!("http://{gateway}/metrics"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    String::from_utf8(answer.body.to_vec()).unwrap()
}

/// The config file: upstreams `tools` (with `allowed_tools` when given), `events` and `rec`, and `added` when
/// given.
fn config(
    tools: &str,
    allowed: Option<&str>,
    events: &str,
    rec: &Recorder,
    added: Option<&str>,
) -> String {
    let mut config = format!("mcp_servers:\n  tools:\n    url: {tools}\n");
    if let Some(allowed) = allowed {
        config += &format!("    allowed_tools: [{allowed}]\n");
    }
    config += &format!(
        "  events:\n    url: {events}\n  rec:\n    url: {}\n",
        rec.url("/mcp")
    );
    if let Some(added) = added {
        config += &format!("  added:\n    url: {added}\n");
    }
    config
}

#[tokio::test]
async fn reloads_apply_keys_upstreams_and_tool_permissions_and_refuse_a_broken_config() {
    let (tools_url, tools): (String, Calls) = upstream(false).await;
    let (added_url, _) = upstream(false).await;
    let (events_url, events) = events_upstream().await;
    let rec = Recorder::start(|_| {
        answer(
            StatusCode::OK,
            &[],
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        )
    })
    .await;
    let config_file = temp_file(
        "config.yaml",
        &config(&tools_url, None, &events_url, &rec, None),
    );
    let key_file = config_file.with_file_name("keys");
    std::fs::write(&key_file, format!("{KEY_STAYS}\n{KEY_REMOVED}\n")).unwrap();
    let gateway = GatewayProcess::start(
        &[
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--config".to_owned(),
            config_file.display().to_string(),
            "--key-file".to_owned(),
            key_file.display().to_string(),
        ],
        &[],
    )
    .await;
    let addr = gateway.addr;

    // The first configuration.
    let mut stream = EventStream::open(addr).await;
    events.send("one").unwrap();
    assert_eq!(stream.next().await.unwrap(), "data: one\n\n");
    let mut connection = Connection::open(addr).await;
    assert_eq!(connection.initialize(KEY_REMOVED).await, StatusCode::OK);
    assert_eq!(
        initialize(addr, "rec", KEY_ADDED).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        initialize(addr, "added", KEY_STAYS).await,
        StatusCode::NOT_FOUND
    );
    let session = client(addr, "tools", KEY_STAYS).await;
    assert_eq!(listed(&session).await, ["add", "echo", "secret"]);
    call(&session, "add").await.unwrap();
    assert_eq!(tools.of("add"), 1);

    // Reload: `added` and KEY_ADDED in, KEY_REMOVED out, `tools` down to `echo`.
    std::fs::write(
        &config_file,
        config(
            &tools_url,
            Some("echo"),
            &events_url,
            &rec,
            Some(&added_url),
        ),
    )
    .unwrap();
    std::fs::write(&key_file, format!("{KEY_STAYS}\n{KEY_ADDED}\n")).unwrap();
    gateway.hang_up();
    gateway.wait_for_log(RELOADED, 1).await;

    assert_eq!(
        connection.initialize(KEY_REMOVED).await,
        StatusCode::UNAUTHORIZED,
        "a removed key is refused on the keep-alive connection it used"
    );
    assert_eq!(
        initialize(addr, "rec", KEY_REMOVED).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(initialize(addr, "rec", KEY_ADDED).await, StatusCode::OK);
    let added = client(addr, "added", KEY_ADDED).await;
    assert_eq!(listed(&added).await, ["add", "echo", "secret"]);
    added.cancel().await.unwrap();
    // The session opened before the reload goes on, under the tightened permission.
    assert_eq!(listed(&session).await, ["echo"]);
    let refused = call(&session, "add").await.unwrap_err();
    assert!(refused.contains("add"), "{refused}");
    assert_eq!(
        tools.of("add"),
        1,
        "a refused call never reaches the upstream"
    );
    call(&session, "echo").await.unwrap();
    assert_eq!(tools.of("echo"), 1);
    events.send("two").unwrap();
    assert_eq!(stream.next().await.unwrap(), "data: two\n\n");

    // A broken config is refused with its reason; the running configuration stays.
    std::fs::write(&config_file, "mcp_servers: [unclosed\n").unwrap();
    gateway.hang_up();
    let log = gateway.wait_for_log(REFUSED, 1).await;
    let line = log.lines().find(|l| l.contains(REFUSED)).unwrap();
    assert!(
        line.contains(&format!("--config {}", config_file.display())),
        "the reason names the file: {line}"
    );
    assert_eq!(log.matches(RELOADED).count(), 1);
    assert_eq!(initialize(addr, "rec", KEY_ADDED).await, StatusCode::OK);
    assert_eq!(
        connection.initialize(KEY_REMOVED).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(listed(&session).await, ["echo"]);
    let added = client(addr, "added", KEY_ADDED).await;
    assert_eq!(listed(&added).await, ["add", "echo", "secret"]);
    added.cancel().await.unwrap();
    let scraped = metrics(addr).await;
    assert!(
        scraped.contains("mcp_gateway_config_last_reload_successful 0"),
        "{scraped}"
    );
    events.send("three").unwrap();
    assert_eq!(stream.next().await.unwrap(), "data: three\n\n");

    // Mended, the config is applied again.
    std::fs::write(
        &config_file,
        config(&tools_url, None, &events_url, &rec, None),
    )
    .unwrap();
    gateway.hang_up();
    gateway.wait_for_log(RELOADED, 2).await;
    assert_eq!(
        initialize(addr, "added", KEY_STAYS).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(listed(&session).await, ["add", "echo", "secret"]);
    assert!(metrics(addr)
        .await
        .contains("mcp_gateway_config_last_reload_successful 1"));
    session.cancel().await.unwrap();

    // The stream opened before the first reload ends as the upstream ends it.
    events.send("last").unwrap();
    assert_eq!(stream.next().await.unwrap(), "data: last\n\n");
    drop(events);
    assert_eq!(stream.next().await, None);
    assert!(!gateway.stderr().contains(KEY_REMOVED));
    gateway.stop().await;
}

#[tokio::test]
async fn a_reload_keeps_every_callers_count_and_applies_a_new_limit() {
    let rec = Recorder::start(|_| {
        answer(
            StatusCode::OK,
            &[],
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        )
    })
    .await;
    let limited = |rpm: u32| {
        format!(
            "mcp_servers:\n  rec:\n    url: {}\ngateway_settings:\n  rate_limits:\n    per_caller: {{rpm: {rpm}, burst: 2}}\n",
            rec.url("/mcp")
        )
    };
    let config_file = temp_file("config.yaml", &limited(2));
    let gateway = GatewayProcess::start(
        &[
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--config".to_owned(),
            config_file.display().to_string(),
            "--key".to_owned(),
            KEY_STAYS.to_owned(),
            "--key".to_owned(),
            KEY_ADDED.to_owned(),
        ],
        &[],
    )
    .await;
    let addr = gateway.addr;
    // A burst of two, then one request every 30 s: the third within the test's time is refused.
    assert_eq!(initialize(addr, "rec", KEY_STAYS).await, StatusCode::OK);
    assert_eq!(initialize(addr, "rec", KEY_STAYS).await, StatusCode::OK);
    assert_eq!(
        initialize(addr, "rec", KEY_STAYS).await,
        StatusCode::TOO_MANY_REQUESTS
    );

    // The same limits reloaded: the count goes on, no new burst.
    gateway.hang_up();
    gateway.wait_for_log(RELOADED, 1).await;
    assert_eq!(
        initialize(addr, "rec", KEY_STAYS).await,
        StatusCode::TOO_MANY_REQUESTS,
        "a reload grants no new burst"
    );
    assert_eq!(initialize(addr, "rec", KEY_ADDED).await, StatusCode::OK);

    // A looser rate is a new limit, counted afresh; a removed limit admits.
    std::fs::write(
        &config_file,
        format!("mcp_servers:\n  rec:\n    url: {}\n", rec.url("/mcp")),
    )
    .unwrap();
    gateway.hang_up();
    gateway.wait_for_log(RELOADED, 2).await;
    for _ in 0..4 {
        assert_eq!(initialize(addr, "rec", KEY_STAYS).await, StatusCode::OK);
    }
    let posts = rec.seen().len();
    assert_eq!(
        posts,
        2 + 1 + 4,
        "refused requests never reached the upstream"
    );
    gateway.stop().await;
}
