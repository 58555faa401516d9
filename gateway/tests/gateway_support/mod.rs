//! What the gateway test binaries share: the gateway started from command-line arguments, a plain HTTP client
//! that shows status and headers, and upstreams that record what reached them.
#![allow(dead_code)]

pub mod process;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    extract::Request,
    http::{request::Parts, HeaderMap, Method, StatusCode, Uri},
    response::Response,
    Router,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::net::TcpListener;

use mcp_gateway as app;

pub const KEY: &str = "sk-gateway-test-key";
pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"0"}}}"#;

/// Starts a gateway on a loopback port from `args` (and `options` edits); returns its address. Its access lines
/// are `tracing` events (`--access-log tracing`), which a test captures with its subscriber; the binary's own
/// default, lines it formats itself, is tested through the binary (gateway_access_log.rs).
pub async fn gateway_with(args: &[String], edit: impl FnOnce(&mut app::Options)) -> SocketAddr {
    let mut options = app::Options::parse(args.iter().cloned(), None).unwrap();
    options.access_log = app::AccessLog::Tracing;
    edit(&mut options);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let prepared = app::prepare(options, addr).await.unwrap();
    tokio::spawn(app::run(prepared, listener, std::future::pending()));
    addr
}

pub async fn gateway(args: &[String]) -> SocketAddr {
    gateway_with(args, |_| {}).await
}

/// `["--flag", "value", ...]` from pairs.
pub fn args(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(f, v)| [f.to_string(), v.to_string()])
        .collect()
}

/// An answer read whole (bodies that do not end within a second are cut there).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends one plain HTTP request.
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = axum::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(1), body.collect())
        .await
        .map(|b| b.map(|b| b.to_bytes()).unwrap_or_default())
        .unwrap_or_default();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// An MCP `initialize` POST.
pub async fn post_init(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut all = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    all.extend_from_slice(headers);
    send(Method::POST, url, &all, Bytes::from_static(INIT.as_bytes())).await
}

/// One request as an upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

/// An upstream that records every request and answers with `respond`.
#[derive(Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    pub async fn start(
        respond: impl Fn(&Parts) -> Response + Clone + Send + Sync + 'static,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = Router::new().fallback(move |request: Request| {
            let respond = respond.clone();
            let log = log.clone();
            async move {
                let (parts, _) = request.into_parts();
                log.lock().unwrap().push(Seen {
                    method: parts.method.clone(),
                    uri: parts.uri.clone(),
                    headers: parts.headers.clone(),
                });
                respond(&parts)
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A response with `status`, `headers` and a JSON body.
pub fn answer(status: StatusCode, headers: &[(&str, &str)], body: &str) -> Response {
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(Body::from(body.to_owned())).unwrap()
}

/// An upstream that accepts connections and never answers; returns its address.
pub async fn hung_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// A loopback port nothing listens on.
pub async fn dead_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A fresh file under the temporary directory holding `content`.
pub fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gateway-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// Everything a `tracing` subscriber writes, for checks on log lines.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines of the access log, waiting (boundedly) until there are at least `count`.
    pub async fn access_lines(&self, count: usize) -> Vec<String> {
        for _ in 0..100 {
            let lines: Vec<String> = self
                .text()
                .lines()
                .filter(|l| l.contains("gateway::access"))
                .map(str::to_owned)
                .collect();
            if lines.len() >= count {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {count} access-log lines:\n{}", self.text());
    }
}
