//! An upstream MCP server for demos and tests: rmcp's Streamable HTTP server with two tools, behind a check of
//! one OAuth bearer token, with its own RFC 9728 metadata. It records the headers of every request it gets.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{ServerCapabilities, ServerConfig},
    schemars, tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    },
    ServerHandler,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The authorization server the demo's metadata names.
pub const DEMO_AUTHORIZATION_SERVER: &str = "https://auth.demo.invalid";

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct AddRequest {
    /// The first addend.
    pub a: i64,
    /// The second addend.
    pub b: i64,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct EchoRequest {
    /// The text to send back.
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct DemoTools {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl DemoTools {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Add two integers")]
    fn add(&self, Parameters(AddRequest { a, b }): Parameters<AddRequest>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "Send the text back")]
    fn echo(&self, Parameters(EchoRequest { text }): Parameters<EchoRequest>) -> String {
        text
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("A demo upstream MCP server")
    }
}

/// A running demo upstream.
#[derive(Clone)]
pub struct DemoUpstream {
    pub addr: SocketAddr,
    scheme: &'static str,
    #[allow(dead_code)] // read by the tests, which include this module
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl DemoUpstream {
    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("{}://{}/mcp", self.scheme, self.addr)
    }

    /// The headers of every request received so far (MCP endpoint and metadata).
    #[allow(dead_code)] // used by the tests, which include this module
    pub fn seen(&self) -> Vec<HeaderMap> {
        self.seen.lock().unwrap().clone()
    }
}

struct Guard {
    expected: String,
    challenge: String,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

async fn check_bearer(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    guard.seen.lock().unwrap().push(request.headers().clone());
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == guard.expected.as_bytes());
    if authorized {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, guard.challenge.clone())],
            Json(serde_json::json!({"error": "invalid_token"})),
        )
            .into_response()
    }
}

/// Starts a demo upstream on an ephemeral loopback port that accepts only `Authorization: Bearer <token>`.
pub async fn start(token: &str) -> std::io::Result<DemoUpstream> {
    start_with(token, None).await
}

/// Like [`start`], serving HTTPS with `acceptor`'s certificate.
#[allow(dead_code)] // used by the tests, which include this module
pub async fn start_tls(token: &str, acceptor: TlsAcceptor) -> std::io::Result<DemoUpstream> {
    start_with(token, Some(acceptor)).await
}

async fn start_with(token: &str, tls: Option<TlsAcceptor>) -> std::io::Result<DemoUpstream> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let metadata_url = format!("{scheme}://{addr}/.well-known/oauth-protected-resource/mcp");
    let guard = Arc::new(Guard {
        expected: format!("Bearer {token}"),
        challenge: format!(
            r#"Bearer error="invalid_token", resource_metadata="{metadata_url}", scope="demo""#
        ),
        seen: seen.clone(),
    });
    let mcp = StreamableHttpService::new(
        || Ok(DemoTools::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let metadata = serde_json::json!({
        "resource": format!("{scheme}://{addr}/mcp"),
        "authorization_servers": [DEMO_AUTHORIZATION_SERVER],
        "scopes_supported": ["demo"],
        "bearer_methods_supported": ["header"],
    });
    let seen_metadata = seen.clone();
    let app = Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(guard, check_bearer))
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(move |headers: HeaderMap| {
                seen_metadata.lock().unwrap().push(headers);
                let metadata = metadata.clone();
                async move { Json(metadata) }
            }),
        );
    match tls {
        Some(acceptor) => {
            // Self-contained (the benchmark server includes this file alone): one task per connection.
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (acceptor, app) = (acceptor.clone(), app.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                    });
                }
            });
        }
        None => {
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
        }
    }
    Ok(DemoUpstream { addr, scheme, seen })
}
