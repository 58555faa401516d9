//! Finding an upstream's RFC 9728 metadata the way real servers publish it.
//!
//! In order, the first that answers with a JSON document naming `authorization_servers` wins:
//! 1. the `resource_metadata` of the upstream's own 401 challenge, when it is on the upstream's origin;
//! 2. the path-aware well-known URL (`/.well-known/oauth-protected-resource/PATH`), then the root one;
//! 3. failing all, RFC 8414 authorization-server metadata on the upstream's origin makes that origin the
//!    authorization server.
//!
//! Every request is timed and its body capped; results are cached, failures briefly, so anonymous discovery
//! traffic cannot make the gateway hammer an upstream.

use std::{sync::Arc, time::Duration};

use axum::http::{header, Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use moka::future::Cache;
use tower_mcp_auth::upstream::resource_metadata_of;

/// How long an upstream's metadata is kept before it is read again.
pub const METADATA_TTL: Duration = Duration::from_secs(300);
/// How long a failed discovery is remembered.
pub const FAILURE_TTL: Duration = Duration::from_secs(30);
/// The largest metadata document read.
pub const MAX_DOCUMENT: usize = 64 * 1024;

/// What the gateway takes from an upstream's metadata.
#[derive(Clone, Debug)]
pub struct UpstreamMetadata {
    pub authorization_servers: serde_json::Value,
    pub scopes_supported: Option<serde_json::Value>,
}

impl UpstreamMetadata {
    /// `scopes_supported` as one space-separated `scope` value, when it lists any.
    pub fn scope_hint(&self) -> Option<String> {
        let scopes: Vec<&str> = self
            .scopes_supported
            .as_ref()?
            .as_array()?
            .iter()
            .filter_map(|s| s.as_str())
            .filter(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            })
            .collect();
        (!scopes.is_empty()).then(|| scopes.join(" "))
    }
}

type MetadataClient = Client<super::super::tls::HttpsConnector, Empty<Bytes>>;

/// Discovery with its caches; one per gateway.
pub struct Discovery {
    client: MetadataClient,
    timeout: Duration,
    found: Cache<String, Arc<UpstreamMetadata>>,
    failed: Cache<String, Arc<str>>,
}

fn origin(url: &Uri) -> String {
    format!(
        "{}://{}",
        url.scheme_str().unwrap_or("http"),
        url.authority().map_or("", |a| a.as_str())
    )
}

impl Discovery {
    pub fn new(client: MetadataClient, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            found: Cache::builder()
                .max_capacity(1024)
                .time_to_live(METADATA_TTL)
                .build(),
            failed: Cache::builder()
                .max_capacity(1024)
                .time_to_live(FAILURE_TTL)
                .build(),
        }
    }

    /// The metadata of upstream `name` at `url`, from the caches or discovered now (once for concurrent callers).
    pub async fn metadata(&self, name: &str, url: &Uri) -> Result<Arc<UpstreamMetadata>, Arc<str>> {
        if let Some(error) = self.failed.get(name).await {
            return Err(error);
        }
        let discovered = self
            .found
            .try_get_with(name.to_owned(), async {
                self.discover(url)
                    .await
                    .map(Arc::new)
                    .map_err(Arc::<str>::from)
            })
            .await;
        match discovered {
            Ok(metadata) => Ok(metadata),
            Err(error) => {
                let error: Arc<str> = (*error).clone();
                self.failed.insert(name.to_owned(), error.clone()).await;
                Err(error)
            }
        }
    }

    async fn discover(&self, url: &Uri) -> Result<UpstreamMetadata, String> {
        let origin = origin(url);
        let path = url.path().trim_end_matches('/');
        let mut candidates = Vec::new();
        if let Some(named) = self.challenge_metadata_url(url).await {
            if named
                .parse::<Uri>()
                .is_ok_and(|u| origin.eq_ignore_ascii_case(&self::origin(&u)))
            {
                candidates.push(named);
            }
        }
        if !path.is_empty() {
            candidates.push(format!(
                "{origin}/.well-known/oauth-protected-resource{path}"
            ));
        }
        candidates.push(format!("{origin}/.well-known/oauth-protected-resource"));
        for candidate in candidates {
            let Some(document) = self.get_json(&candidate).await else {
                continue;
            };
            let servers = &document["authorization_servers"];
            if servers.as_array().is_some_and(|s| !s.is_empty()) {
                return Ok(UpstreamMetadata {
                    authorization_servers: servers.clone(),
                    scopes_supported: document.get("scopes_supported").cloned(),
                });
            }
        }
        let server_metadata = self
            .get_json(&format!("{origin}/.well-known/oauth-authorization-server"))
            .await;
        if server_metadata.is_some_and(|d| d["issuer"].is_string()) {
            return Ok(UpstreamMetadata {
                authorization_servers: serde_json::json!([origin]),
                scopes_supported: None,
            });
        }
        Err(
            "the upstream publishes no protected-resource or authorization-server metadata"
                .to_owned(),
        )
    }

    /// The `resource_metadata` of the 401 the upstream's MCP endpoint gives a request without credentials.
    async fn challenge_metadata_url(&self, url: &Uri) -> Option<String> {
        let request = Request::get(url.clone())
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(Empty::new())
            .ok()?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .ok()?
            .ok()?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return None;
        }
        response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .find_map(resource_metadata_of)
    }

    /// A JSON document at `url`, or `None` for anything else: an error status, a timeout, a body over the cap,
    /// or a body that is not JSON.
    async fn get_json(&self, url: &str) -> Option<serde_json::Value> {
        let uri: Uri = url.parse().ok()?;
        let read = async {
            let response = self.client.get(uri).await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            let body = Limited::new(response.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .ok()?
                .to_bytes();
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .filter(serde_json::Value::is_object)
        };
        tokio::time::timeout(self.timeout, read)
            .await
            .ok()
            .flatten()
    }
}
