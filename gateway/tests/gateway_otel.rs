//! OpenTelemetry through the `mcp-gateway` binary (feature `otel`): an OTLP/HTTP receiver in the test decodes
//! what the gateway exports with `opentelemetry-proto`. One span per request to `/mcp/NAME`, with the route,
//! upstream, JSON-RPC method, tool, how the caller was admitted and the status; the client's `traceparent`
//! continued and handed to the upstream as the child of the gateway's span (or, with
//! `--otel-ignore-client-trace`, a new trace); and no credential, nor a digest of one, anywhere in the export.
#![cfg(feature = "otel")]

mod gateway_support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    http::{Method, StatusCode},
    routing::post,
    Router,
};
use gateway_support::{answer, process::GatewayProcess, send, temp_file, Recorder};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{any_value::Value, AnyValue},
    trace::v1::Span,
};
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

const KEY: &str = "sk-otel-gateway-key-never-exported";
const WRONG_KEY: &str = "sk-otel-wrong-key-never-exported";
const OAUTH_TOKEN: &str = "oauth-token-of-the-client-never-exported";
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// What the receiver was sent: every export's raw bytes, and the spans decoded from them.
#[derive(Clone, Default)]
struct Received {
    raw: Arc<Mutex<Vec<Bytes>>>,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Received {
    /// Waits (up to 30 s) for `count` spans; returns them all.
    async fn spans(&self, count: usize) -> Vec<Span> {
        for _ in 0..300 {
            let spans = self.spans.lock().unwrap().clone();
            if spans.len() >= count {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{count} spans not exported within 30 s: {:?}",
            self.spans.lock().unwrap()
        );
    }
}

/// An OTLP/HTTP (protobuf) trace receiver on a loopback port; returns its base URL.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let state = received.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let state = state.clone();
            async move {
                let export = ExportTraceServiceRequest::decode(body.clone())
                    .expect("the export is an OTLP protobuf message");
                state.raw.lock().unwrap().push(body);
                let mut spans = state.spans.lock().unwrap();
                for resource in export.resource_spans {
                    for scope in resource.scope_spans {
                        spans.extend(scope.spans);
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

/// `bytes` in lowercase hexadecimal, as trace and span ids are written in `traceparent`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span's attributes as text.
fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            let value = match &kv.value {
                Some(AnyValue {
                    value: Some(Value::StringValue(s)),
                }) => s.clone(),
                Some(AnyValue {
                    value: Some(Value::IntValue(i)),
                }) => i.to_string(),
                Some(AnyValue {
                    value: Some(Value::BoolValue(b)),
                }) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// The only exported span whose `http.route` is `route` and whose status is `status`.
fn span_of<'a>(spans: &'a [Span], route: &str, status: u16) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            let attributes = attributes(s);
            attributes.get("http.route").map(String::as_str) == Some(route)
                && attributes.get("http.response.status_code") == Some(&status.to_string())
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one span for {route} and {status}: {spans:?}"
    );
    found[0]
}

/// The gateway binary exporting to `endpoint`, with upstreams `keyed` (gateway keys) and `open` (OAuth
/// passthrough), both `upstream`.
async fn gateway(endpoint: &str, upstream: &Recorder, extra: &[&str]) -> GatewayProcess {
    let yaml = format!(
        "mcp_servers:\n  keyed:\n    url: {url}\n  open:\n    url: {url}\n    oauth_passthrough: true\n",
        url = upstream.url("/mcp")
    );
    let config = temp_file("config.yaml", &yaml);
    let mut args = vec![
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
        "--key".to_owned(),
        KEY.to_owned(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    GatewayProcess::start(
        &args,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await
}

/// POSTs a `tools/call` of `echo` to `/mcp/{route}` with `credential` (a header and its value) and the client's
/// `traceparent`.
async fn call(gateway: &GatewayProcess, route: &str, credential: (&str, &str)) -> StatusCode {
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    send(
        Method::POST,
        &format!("{}/mcp/{route}", gateway.url()),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-11-25"),
            ("traceparent", &traceparent),
            ("tracestate", "client=1"),
            credential,
        ],
        Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#,
        ),
    )
    .await
    .status
}

async fn upstream() -> Recorder {
    Recorder::start(|_| {
        answer(
            StatusCode::OK,
            &[],
            r#"{"jsonrpc":"2.0","id":3,"result":{"content":[]}}"#,
        )
    })
    .await
}

/// The `traceparent` the upstream saw on its `index`th request: (trace id, parent span id).
fn upstream_parent(upstream: &Recorder, index: usize) -> (String, String) {
    let seen = upstream.seen();
    let value = seen[index]
        .headers
        .get("traceparent")
        .expect("the upstream is sent a traceparent")
        .to_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test]
async fn one_span_per_request_continuing_the_clients_trace_and_no_secret_exported() {
    let (endpoint, received) = receiver().await;
    let upstream = upstream().await;
    let gateway = gateway(&endpoint, &upstream, &[]).await;

    assert_eq!(
        call(&gateway, "keyed", ("x-litellm-api-key", KEY)).await,
        StatusCode::OK
    );
    let bearer = format!("Bearer {OAUTH_TOKEN}");
    assert_eq!(
        call(&gateway, "open", ("authorization", &bearer)).await,
        StatusCode::OK
    );
    assert_eq!(
        call(&gateway, "keyed", ("x-litellm-api-key", WRONG_KEY)).await,
        StatusCode::UNAUTHORIZED
    );
    // Not a relayed route: no span.
    let health = send(
        Method::GET,
        &format!("{}/healthz", gateway.url()),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(health.status, StatusCode::OK);

    let spans = received.spans(3).await;
    // The batch exporter has had its chance to send a fourth, which must not exist.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spans_now = received.spans.lock().unwrap().clone();
    assert_eq!(
        spans_now.len(),
        3,
        "one span per request to /mcp: {spans_now:?}"
    );
    assert_eq!(upstream.seen().len(), 2, "the refused request never left");

    // Admitted by gateway key: the whole outcome, as the child of the client's span.
    let keyed = span_of(&spans, "/mcp/keyed", 200);
    let attrs = attributes(keyed);
    assert_eq!(keyed.name, "POST /mcp/keyed");
    assert_eq!(attrs["mcp.upstream"], "keyed");
    assert_eq!(attrs["http.request.method"], "POST");
    assert_eq!(attrs["http.response.status_code"], "200");
    assert_eq!(attrs["mcp.method.name"], "tools/call");
    assert_eq!(attrs["gen_ai.tool.name"], "echo");
    assert_eq!(attrs["gateway.auth"], "key");
    assert_eq!(hex(&keyed.trace_id), CLIENT_TRACE);
    assert_eq!(hex(&keyed.parent_span_id), CLIENT_SPAN);
    // The upstream's parent is the gateway's span, in the client's trace; the client's state goes on.
    let (trace, parent) = upstream_parent(&upstream, 0);
    assert_eq!(trace, CLIENT_TRACE);
    assert_eq!(parent, hex(&keyed.span_id));
    assert_ne!(parent, CLIENT_SPAN);
    assert_eq!(
        upstream.seen()[0].headers.get("tracestate").unwrap(),
        "client=1"
    );

    let open = span_of(&spans, "/mcp/open", 200);
    let attrs = attributes(open);
    assert_eq!(attrs["gateway.auth"], "passthrough");
    assert_eq!(attrs["gen_ai.tool.name"], "echo");
    assert_eq!(upstream_parent(&upstream, 1).1, hex(&open.span_id));

    // Refused: the span says so, and how (no caller).
    let refused = attributes(span_of(&spans, "/mcp/keyed", 401));
    assert_eq!(refused["mcp.upstream"], "keyed");
    assert_ne!(refused["gateway.auth"], "key");

    // No credential, nor a SHA-256 of one (hex or raw), in any byte exported.
    let raw: Vec<u8> = received.raw.lock().unwrap().concat();
    for secret in [KEY, WRONG_KEY, OAUTH_TOKEN] {
        let digest = Sha256::digest(secret.as_bytes());
        for needle in [
            secret.as_bytes().to_vec(),
            hex(&digest).into_bytes(),
            hex(&digest[..8]).into_bytes(),
            digest.to_vec(),
        ] {
            assert!(
                !raw.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{secret} (or its digest) was exported"
            );
        }
    }
    gateway.stop().await;
}

#[tokio::test]
async fn with_ignore_client_trace_every_request_starts_its_own_trace() {
    let (endpoint, received) = receiver().await;
    let upstream = upstream().await;
    let gateway = gateway(&endpoint, &upstream, &["--otel-ignore-client-trace"]).await;
    assert_eq!(
        call(&gateway, "keyed", ("x-litellm-api-key", KEY)).await,
        StatusCode::OK
    );
    let spans = received.spans(1).await;
    let span = span_of(&spans, "/mcp/keyed", 200);
    assert_ne!(hex(&span.trace_id), CLIENT_TRACE);
    assert!(span.parent_span_id.is_empty(), "a root span: {span:?}");
    let (trace, parent) = upstream_parent(&upstream, 0);
    assert_eq!(trace, hex(&span.trace_id));
    assert_eq!(parent, hex(&span.span_id));
    let state = upstream.seen()[0].headers.get("tracestate").cloned();
    assert!(
        state.is_none(),
        "the client's tracestate is dropped with its trace: {state:?}"
    );
    gateway.stop().await;
}
