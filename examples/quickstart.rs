//! An axum app behind `McpAuthLayer` on a loopback port: gateway keys everywhere, OAuth passthrough on
//! `/mcp/atlassian` only.
//!
//! ```text
//! cargo run --example quickstart -- [ADDR]
//! ```

use std::{convert::Infallible, net::SocketAddr};

use axum::{routing::any, Extension, Router};
use tower_mcp_auth::{
    validate_fn, Authenticated, McpAuthLayer, OAuthPassthrough, PassthroughPolicy, Verdict,
};

async fn handler(
    identity: Option<Extension<Authenticated<String>>>,
    passthrough: Option<Extension<OAuthPassthrough>>,
) -> String {
    match (identity, passthrough) {
        (Some(who), Some(token)) => format!(
            "gateway user {}, forwarding an OAuth token ({})\n",
            who.identity(),
            token.fingerprint()
        ),
        (Some(who), None) => format!("gateway user {}\n", who.identity()),
        (None, Some(token)) => format!(
            "no gateway identity; forwarding the client's OAuth token ({})\n",
            token.fingerprint()
        ),
        (None, None) => unreachable!("the layer admits no request without one of the two"),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:4000")
        .parse()
        .expect("ADDR must be a socket address such as 127.0.0.1:4000");

    let auth = McpAuthLayer::new(validate_fn(|key: String| async move {
        Ok::<_, Infallible>(match key.as_str() {
            "sk-demo" => Verdict::Valid("demo-user".to_owned()),
            "sk-blocked" => Verdict::Denied,
            _ => Verdict::Unknown,
        })
    }))
    .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"]))
    .resource_metadata(
        "/mcp/atlassian",
        &format!("http://{addr}/.well-known/oauth-protected-resource/mcp/atlassian"),
    );
    let app = Router::new()
        .route("/mcp/{server}", any(handler))
        .layer(auth);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    println!("try:");
    println!("  curl -i -H 'x-litellm-api-key: sk-demo' http://{addr}/mcp/github");
    println!("  curl -i -H 'authorization: Bearer some-oauth-token' http://{addr}/mcp/atlassian");
    println!("  curl -i -H 'authorization: Bearer some-oauth-token' http://{addr}/mcp/github");
    println!("  curl -i http://{addr}/mcp/atlassian");
    axum::serve(listener, app).await
}
