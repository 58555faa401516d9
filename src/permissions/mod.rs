//! Authorization beyond admission: which upstream MCP servers an identity may use.
//!
//! Admission says a caller holds a gateway key; it does not say the key may reach every upstream. LiteLLM
//! scopes MCP servers per key and per team, and so does this module:
//!
//! - [`Upstreams`] is a set of upstream names, or "all";
//! - [`UpstreamAccess`] is what an identity type implements to say which upstreams it may use
//!   ([`KeyIdentity`], the identity of [`StaticKeys`](crate::validators::StaticKeys) key files, and LiteLLM's
//!   `KeyInfo` do);
//! - [`RequireUpstreamLayer`] sits inside [`McpAuthLayer`](crate::McpAuthLayer), asks the identity about the
//!   upstream a request targets, and answers `403 access_denied` (naming the upstream, never the key) where it
//!   may not go. A request admitted only as a passthrough carries no identity: the route's
//!   [`PassthroughPolicy`](crate::PassthroughPolicy) alone governs it.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_mcp_auth::{
//!     permissions::{KeyIdentity, RequireUpstreamLayer},
//!     validators::StaticKeys,
//!     McpAuthLayer,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // `sk-atl` may use `atl` only; `sk-all` every upstream.
//! let keys: StaticKeys<KeyIdentity> = StaticKeys::parse("sk-atl=atl alice\nsk-all ops\n").unwrap();
//! let gateway = ServiceBuilder::new()
//!     .layer(McpAuthLayer::new(keys))
//!     .layer(RequireUpstreamLayer::<KeyIdentity, _>::path_segment("/mcp/"))
//!     .service(service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
//!
//! let status = |path: &str, key: &str| {
//!     let req = Request::post(path).header("x-litellm-api-key", key).body(()).unwrap();
//!     let gateway = gateway.clone();
//!     async move { gateway.oneshot(req).await.unwrap().status() }
//! };
//! assert_eq!(status("/mcp/atl", "sk-atl").await, StatusCode::OK);
//! assert_eq!(status("/mcp/priv", "sk-atl").await, StatusCode::FORBIDDEN);
//! assert_eq!(status("/mcp/priv", "sk-all").await, StatusCode::OK);
//! # }
//! ```

mod identity;
mod layer;
mod rpm;
mod tools;
mod upstreams;

pub use identity::KeyIdentity;
pub use layer::{
    PathSegment, RequireUpstream, RequireUpstreamFuture, RequireUpstreamLayer, TargetUpstream,
};
pub use rpm::RpmLimits;
pub use tools::Tools;
pub use upstreams::{UpstreamAccess, Upstreams};
