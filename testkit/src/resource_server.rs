//! The pieces of the resource-server tests: an rmcp upstream that admits only tokens for its own audience
//! (through this crate's `Jwt`), and a gateway that admits gateway keys or JWTs for its route and exchanges
//! them for the upstream.
#![allow(dead_code, unreachable_pub)]

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex,
};

use axum::{body::Body, http::StatusCode, response::IntoResponse, Router};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{ClientConfig, ServerCapabilities, ServerConfig},
    schemars, tool, tool_handler, tool_router,
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig,
        streamable_http_server::{
            session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
        },
        StreamableHttpClientTransport,
    },
    ServerHandler, ServiceExt as _,
};
use tokio::net::TcpListener;
use tower::{service_fn, ServiceBuilder, ServiceExt as _};
use tower_mcp_auth::{
    upstream::{
        ExchangeTarget, ExchangeTokenLayer, ForwardCredentialsLayer, TokenExchange, UpstreamConfig,
    },
    validators::{Either, FirstOf, Jwt, JwtClaims, StaticKeys},
    McpAuthLayer,
};

/// The route, on the gateway and on the upstream alike.
pub const ROUTE: &str = "/mcp/a";
/// The RFC 9728 metadata the gateway's 401s for the route name.
pub const METADATA: &str = "https://gw.example/.well-known/oauth-protected-resource/mcp/a";

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddRequest {
    a: i64,
    b: i64,
}

#[derive(Debug, Clone)]
struct Tools {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Tools {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Add two integers")]
    fn add(&self, Parameters(AddRequest { a, b }): Parameters<AddRequest>) -> String {
        (a + b).to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[derive(Clone, Default)]
pub struct UpstreamLog {
    /// Requests that reached the upstream.
    hits: Arc<AtomicUsize>,
    /// How many of the next requests the upstream refuses with 401 whatever their token.
    refuse_next: Arc<AtomicUsize>,
    /// The subjects (`sub`) of the tokens it admitted.
    pub subjects: Arc<Mutex<Vec<String>>>,
    /// The tokens it admitted.
    pub tokens: Arc<Mutex<Vec<String>>>,
}

impl UpstreamLog {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Refuses the next `n` requests with 401, whatever their token.
    pub fn refuse_next(&self, n: usize) {
        self.refuse_next.store(n, Ordering::SeqCst);
    }

    /// How many different tokens it admitted: how many exchanges reached it.
    pub fn distinct_tokens(&self) -> usize {
        let tokens = self.tokens.lock().unwrap();
        tokens
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
    }
}

/// Starts the upstream; `jwt_for(audience)` is its validator, for its own URL of the route. Returns its URL.
pub async fn start_upstream(jwt_for: impl FnOnce(String) -> Jwt, log: UpstreamLog) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let jwt = jwt_for(format!("{url}{ROUTE}"));
    let mcp = StreamableHttpService::new(
        || Ok(Tools::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let guarded = ServiceBuilder::new()
        .map_request(move |request: Request<Body>| {
            log.hits.fetch_add(1, Ordering::SeqCst);
            if let Some(claims) = request
                .extensions()
                .get::<tower_mcp_auth::Authenticated<Arc<JwtClaims>>>()
            {
                let claims = claims.identity();
                log.subjects
                    .lock()
                    .unwrap()
                    .push(claims.sub.clone().unwrap_or_default());
                log.tokens.lock().unwrap().push(claims.token().to_owned());
            }
            (request, Arc::clone(&log.refuse_next))
        })
        .service_fn(
            move |(request, refuse): (Request<Body>, Arc<AtomicUsize>)| {
                let mcp = mcp.clone();
                async move {
                    let refused = refuse
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if refused {
                        return Ok::<_, std::convert::Infallible>(
                            (
                                StatusCode::UNAUTHORIZED,
                                [("www-authenticate", "Bearer error=\"invalid_token\"")],
                            )
                                .into_response(),
                        );
                    }
                    let response = mcp.oneshot(request).await.unwrap();
                    Ok(response.map(Body::new))
                }
            },
        );
    let app = Router::new().route_service(
        ROUTE,
        ServiceBuilder::new()
            .layer(McpAuthLayer::new(jwt))
            .service(guarded)
            .map_response(|r| r.map(Body::new)),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The identity behind the gateway's `FirstOf(keys, jwt)`.
pub type Identity = Either<String, Arc<JwtClaims>>;

/// Starts a gateway admitting the key `sk-ops` or a JWT checked by `jwt_for(its URL of the route)`, and
/// forwarding to `upstream_url` with a token exchanged through `exchange`. Returns its URL.
pub async fn start_gateway(
    jwt_for: impl FnOnce(String) -> Jwt,
    exchange: TokenExchange,
    upstream_url: &str,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = format!("http://{}", listener.local_addr().unwrap());
    let jwt = jwt_for(format!("{gateway}{ROUTE}"));
    let keys = StaticKeys::new().with_key("sk-ops", "ops".to_owned());
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let upstream_client = ServiceBuilder::new()
        .layer(ForwardCredentialsLayer::new(
            UpstreamConfig::new("a", upstream_url).unwrap(),
        ))
        .layer(
            ExchangeTokenLayer::<Identity>::new(
                exchange,
                ExchangeTarget::resource(format!("{upstream_url}{ROUTE}")),
            )
            .resource_metadata(METADATA),
        )
        .service(client);
    let proxy = service_fn(move |request: Request<Body>| {
        let upstream_client = upstream_client.clone();
        async move {
            // MCP messages are small JSON documents: buffer the body so a retry can send it again.
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let request = Request::from_parts(parts, Full::new(body));
            let response = upstream_client.oneshot(request).await.unwrap();
            Ok::<_, std::convert::Infallible>(response.map(Body::new))
        }
    });
    let app = Router::new().route_service(
        ROUTE,
        ServiceBuilder::new()
            .layer(McpAuthLayer::new(FirstOf::new(keys, jwt)))
            .service(proxy)
            .map_response(|r| r.map(Body::new)),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    gateway
}

pub async fn mcp_client(
    url: String,
    token: &str,
) -> Result<rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>, String> {
    let config = StreamableHttpClientTransportConfig::with_uri(url).auth_header(token);
    ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .map_err(|e| e.to_string())
}

pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"0"}}}"#;

/// A raw MCP `initialize` POST with `Authorization: Bearer token`.
pub async fn initialize(url: String, token: &str) -> http::Response<Bytes> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from_static(INIT.as_bytes())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}
