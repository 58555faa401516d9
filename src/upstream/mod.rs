//! The outgoing side: send each upstream MCP server the right credential, and only it.
//!
//! A gateway stacks two layers on the way in and one per upstream on the way out:
//!
//! - [`TakeClientCredentialsLayer`](crate::client_credentials::TakeClientCredentialsLayer) (an inbound layer,
//!   in [`client_credentials`](crate::client_credentials)), outside [`McpAuthLayer`](crate::McpAuthLayer), takes the client's
//!   per-server credentials (`x-mcp-servers`, `x-mcp-{server}-{header}`, the deprecated `x-mcp-auth`) out of
//!   the request into a redacted [`ClientCredentials`](crate::client_credentials::ClientCredentials) extension. They never admit anyone.
//! - [`ForwardCredentialsLayer`] wraps the HTTP client of one upstream, described by an [`UpstreamConfig`]:
//!   it removes hop-by-hop and credential headers (and `Cookie`, unless the upstream opts in), then sets one
//!   credential. Gateway-held material goes only with a caller the gateway authenticated: a request admitted
//!   only as a passthrough gets its own token where the upstream accepts passthrough and is refused
//!   ([`Refused`]) where it does not; a request the layer never admitted is refused. For an authenticated
//!   caller, by this precedence:
//!
//! | # | source | when |
//! |---|---|---|
//! | 1 | [`OAuthPassthrough`](crate::OAuthPassthrough), as `Authorization: Bearer …` | the upstream [accepts passthrough](UpstreamConfig::with_passthrough) |
//! | 2 | the client's `x-mcp-{server}-…` headers for this upstream, else its `x-mcp-auth` value | the client sent one |
//! | 3 | the configured [`UpstreamAuth`] | it has a value |
//! | 4 | nothing | |
//!
//! With feature `token-exchange`, [`ExchangeTokenLayer`] (inside [`ForwardCredentialsLayer`]) sends an upstream
//! that accepts only tokens issued for itself a token exchanged (RFC 8693) from the client's JWT instead.
//!
//! Extra headers of the [`UpstreamConfig`] are applied last and win. Every credential value is marked
//! sensitive; no `Debug` output shows more than a [`Fingerprint`](crate::Fingerprint).
//!
//! ```
//! use std::{collections::HashMap, convert::Infallible, sync::Arc};
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_mcp_auth::{validate_fn, McpAuthLayer, PassthroughPolicy, Verdict};
//! use tower_mcp_auth::client_credentials::TakeClientCredentialsLayer;
//! use tower_mcp_auth::upstream::{ForwardCredentialsLayer, UpstreamConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let upstreams = [
//!     UpstreamConfig::new("atlassian", "https://mcp.atlassian.com").unwrap().with_passthrough(true),
//!     UpstreamConfig::new("github", "https://api.githubcopilot.com")
//!         .unwrap()
//!         .with_auth("bearer_token:gateway-github-token".parse().unwrap()),
//! ];
//! // Stands in for hyper-util's legacy `Client`: answers with what it would send.
//! let http_client = service_fn(|req: Request<()>| async move {
//!     let authorization = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_owned());
//!     let leaked = req.headers().contains_key("x-litellm-api-key");
//!     Ok::<_, Infallible>(Response::new(format!("{} {authorization:?} {leaked}", req.uri())))
//! });
//! let clients: Arc<HashMap<String, _>> = Arc::new(
//!     upstreams
//!         .iter()
//!         .map(|u| {
//!             let client = ServiceBuilder::new()
//!                 .layer(ForwardCredentialsLayer::new(u.clone()))
//!                 .service(http_client.clone());
//!             (u.name().to_owned(), client)
//!         })
//!         .collect(),
//! );
//!
//! let gateway = ServiceBuilder::new()
//!     .layer(TakeClientCredentialsLayer::new().servers(upstreams.iter().map(|u| u.name())))
//!     .layer(
//!         McpAuthLayer::new(validate_fn(|key: String| async move {
//!             Ok::<_, Infallible>(if key == "sk-good" { Verdict::Valid(()) } else { Verdict::Unknown })
//!         }))
//!         .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"])),
//!     )
//!     .service(service_fn(move |req: Request<()>| {
//!         // The path picks the upstream.
//!         let client = clients[req.uri().path().trim_start_matches("/mcp/")].clone();
//!         client.oneshot(req)
//!     }));
//!
//! let sent = |path: &str| {
//!     let req = Request::post(path)
//!         .header("x-litellm-api-key", "sk-good")
//!         .header("authorization", "Bearer user-oauth-token")
//!         .body(())
//!         .unwrap();
//!     let gateway = gateway.clone();
//!     async move {
//!         let body = gateway.oneshot(req).await.unwrap().into_body().collect().await.unwrap();
//!         String::from_utf8(body.to_bytes().to_vec()).unwrap()
//!     }
//! };
//! // Atlassian accepts the client's own token; the gateway key never leaves.
//! assert_eq!(
//!     sent("/mcp/atlassian").await,
//!     r#"https://mcp.atlassian.com/mcp/atlassian Some("Bearer user-oauth-token") false"#
//! );
//! // GitHub gets the gateway's own credential for it, never the client's token.
//! assert_eq!(
//!     sent("/mcp/github").await,
//!     r#"https://api.githubcopilot.com/mcp/github Some("Bearer gateway-github-token") false"#
//! );
//! # }
//! ```

mod auth;
mod challenge;
mod config;
mod error;
#[cfg(feature = "token-exchange")]
pub mod exchange;
mod forward;
pub(crate) mod hop_by_hop;
mod refused;

pub use auth::{AuthKind, UpstreamAuth};
pub use challenge::{resource_metadata_of, with_resource_metadata};
pub use config::UpstreamConfig;
pub use error::ConfigError;
#[cfg(feature = "token-exchange")]
pub use exchange::{
    ExchangeError, ExchangeTarget, ExchangeToken, ExchangeTokenLayer, ExchangedToken, Subject,
    SubjectToken, TokenClientAuth, TokenExchange, TokenExchangeBuilder, ACCESS_TOKEN_TYPE,
};
pub use forward::{ForwardCredentials, ForwardCredentialsLayer, ForwardFuture};
pub use hop_by_hop::remove_hop_by_hop;
pub use refused::Refused;
