//! RFC 9728 protected-resource metadata for each passthrough route, built from the upstream's own.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Path, State},
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use moka::future::Cache;

use super::Gateway;

/// How long an upstream's authorization servers are kept before they are read again.
pub const METADATA_TTL: Duration = Duration::from_secs(300);

/// The upstream's `authorization_servers` and `scopes_supported`, as read from its metadata.
#[derive(Clone, Debug)]
pub struct UpstreamMetadata {
    authorization_servers: serde_json::Value,
    scopes_supported: Option<serde_json::Value>,
}

pub type MetadataCache = Cache<String, Arc<UpstreamMetadata>>;

pub fn cache() -> MetadataCache {
    Cache::builder()
        .max_capacity(1024)
        .time_to_live(METADATA_TTL)
        .build()
}

/// RFC 9728 §3.1: the metadata of `https://host/path` is at `https://host/.well-known/oauth-protected-resource/path`,
/// falling back to the host's root document.
fn candidates(url: &Uri) -> Vec<String> {
    let origin = format!(
        "{}://{}",
        url.scheme_str().unwrap_or("http"),
        url.authority().map_or("", |a| a.as_str())
    );
    let path = url.path().trim_end_matches('/');
    let mut urls = vec![format!(
        "{origin}/.well-known/oauth-protected-resource{path}"
    )];
    if !path.is_empty() {
        urls.push(format!("{origin}/.well-known/oauth-protected-resource"));
    }
    urls
}

async fn fetch(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &Uri,
) -> Result<Arc<UpstreamMetadata>, String> {
    for candidate in candidates(url) {
        let uri: Uri = candidate
            .parse()
            .map_err(|_| "bad metadata URL".to_owned())?;
        let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
            .await
            .map_err(|_| "metadata request timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            continue;
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let document: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| "metadata is not JSON".to_owned())?;
        let servers = document["authorization_servers"].clone();
        if servers.is_array() {
            return Ok(Arc::new(UpstreamMetadata {
                authorization_servers: servers,
                scopes_supported: document.get("scopes_supported").cloned(),
            }));
        }
    }
    Err("the upstream publishes no authorization servers".to_owned())
}

/// `GET /.well-known/oauth-protected-resource/mcp/{name}`: outside the auth layer, like every discovery document.
pub async fn handle(State(gateway): State<Arc<Gateway>>, Path(name): Path<String>) -> Response {
    let Some(upstream) = gateway
        .upstreams
        .get(name.as_str())
        .filter(|u| u.config.accepts_passthrough())
    else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "not_found"})),
        )
            .into_response();
    };
    let url = upstream.config.url().clone();
    let client = gateway.metadata_client.clone();
    let upstream_metadata = gateway
        .metadata
        .try_get_with(name.clone(), async move { fetch(&client, &url).await })
        .await;
    match upstream_metadata {
        Ok(metadata) => {
            let mut document = serde_json::json!({
                "resource": format!("{}/mcp/{}", gateway.public_url, upstream.config.name()),
                "authorization_servers": metadata.authorization_servers,
                "bearer_methods_supported": ["header"],
            });
            if let Some(scopes) = &metadata.scopes_supported {
                document["scopes_supported"] = scopes.clone();
            }
            Json(document).into_response()
        }
        Err(error) => {
            tracing::warn!(upstream = %name, %error, "upstream metadata unavailable");
            (
                StatusCode::BAD_GATEWAY,
                Json(serde_json::json!({"error": "bad_gateway", "error_description": "upstream metadata unavailable"})),
            )
                .into_response()
        }
    }
}
