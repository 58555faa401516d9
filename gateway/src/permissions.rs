//! Which upstreams each gateway key may use, enforced inside the auth layer.
//!
//! A plain `--key KEY` reaches every upstream; `--key KEY=atl,priv` (and the same in a key file) only `atl` and
//! `priv`; a LiteLLM key what LiteLLM grants it. The check is the crate's `RequireUpstreamLayer`: a key that may
//! not use the upstream a path names gets `403 access_denied`, and the upstream never sees the request.

use tower_mcp_auth::permissions::{PathSegment, RequireUpstreamLayer};

use super::resource_server::Caller;

/// The permission check: the upstream is the name of the request's `McpRoute`, as [`route::confine`](super::route::confine)
/// read it.
pub fn require_upstream() -> RequireUpstreamLayer<Caller, PathSegment> {
    RequireUpstreamLayer::path_segment("/mcp/")
}
