//! Relaying MCP Streamable HTTP to the upstream a path names: POST, GET and DELETE, bodies streamed both ways.

use std::{sync::Arc, time::Instant};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json,
};
use tower::ServiceExt;
use tower_mcp_auth::{
    permissions::KeyIdentity,
    upstream::{remove_hop_by_hop, with_resource_metadata, Refused},
    Authenticated, OAuthPassthrough,
};

use super::{
    sessions::{Owner, SESSION_HEADER},
    Gateway,
};

fn json_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// Splits `/mcp/NAME[/REST]` into `NAME` and `REST`.
fn route(path: &str) -> (&str, &str) {
    let rest = path.strip_prefix("/mcp/").unwrap_or_default();
    rest.split_once('/').unwrap_or((rest, ""))
}

/// The upstream URI: its MCP endpoint, the rest of the gateway path below it, and the query.
fn upstream_uri(base: &Uri, rest: &str, query: Option<&str>) -> Result<Uri, axum::http::Error> {
    let mut path = base.path().trim_end_matches('/').to_owned();
    if !rest.is_empty() {
        path.push('/');
        path.push_str(rest);
    }
    if path.is_empty() {
        path.push('/');
    }
    if let Some(query) = query {
        path.push('?');
        path.push_str(query);
    }
    Uri::builder()
        .scheme(base.scheme_str().unwrap_or("http"))
        .authority(base.authority().map_or("", |a| a.as_str()))
        .path_and_query(path)
        .build()
}

/// The handler behind the auth layers for every `/mcp/...` path.
pub async fn handle(
    State(gateway): State<Arc<Gateway>>,
    identity: Option<Authenticated<KeyIdentity>>,
    passthrough: Option<OAuthPassthrough>,
    mut request: Request,
) -> Response {
    let started = Instant::now();
    let (name, rest) = route(request.uri().path());
    let Some(upstream) = gateway.upstreams.get(name) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such upstream MCP server",
        );
    };
    let name = upstream.config.name().to_owned();
    let uri = match upstream_uri(upstream.config.url(), rest, request.uri().query()) {
        Ok(uri) => uri,
        Err(_) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", "bad path"),
    };
    let method = request.method().clone();
    let owner = Owner::of(identity.as_ref(), passthrough.as_ref());
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(session) = &session {
        if !gateway
            .sessions
            .owned_by(&name, session, owner.as_ref())
            .await
        {
            return json_error(StatusCode::NOT_FOUND, "not_found", "no such MCP session");
        }
    }
    *request.uri_mut() = uri;
    // The client picks `Host` from the upstream URI; a browser's `Origin` is for the gateway, not the upstream.
    request.headers_mut().remove(header::HOST);
    request.headers_mut().remove(header::ORIGIN);

    let result = upstream.client.clone().oneshot(request).await;
    let response = match result {
        Ok(response) => response,
        Err(error) if error.is::<Refused>() => {
            return json_error(
                StatusCode::FORBIDDEN,
                "access_denied",
                "this upstream does not accept the client's own token",
            );
        }
        Err(error) => {
            tracing::warn!(upstream = %name, %method, error = %error, "upstream unreachable");
            return json_error(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream MCP server is unreachable",
            );
        }
    };
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    if let Some(owner) = owner {
        let opened = parts
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok());
        match (opened, &session) {
            (_, Some(session))
                if method == axum::http::Method::DELETE && parts.status.is_success() =>
            {
                gateway.sessions.end(&name, session).await;
            }
            (Some(opened), _) if parts.status.is_success() => {
                gateway.sessions.bind(&name, opened, owner).await;
            }
            _ => {}
        }
    }
    if parts.status == StatusCode::UNAUTHORIZED && upstream.config.accepts_passthrough() {
        // Every challenge the upstream sent is replaced by one that points at the gateway's metadata; one that
        // cannot be rewritten gives way to a plain challenge, so none of the upstream's parameters survive it.
        let bare = HeaderValue::from_static("Bearer");
        let challenge = parts
            .headers
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| with_resource_metadata(v, &upstream.metadata_url))
            .or_else(|| with_resource_metadata(&bare, &upstream.metadata_url))
            .unwrap_or(bare);
        parts.headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    tracing::info!(
        upstream = %name,
        %method,
        status = parts.status.as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        identity = identity.as_ref().map(|a| a.identity().name()),
        passthrough = passthrough.as_ref().map(|p| tracing::field::display(p.fingerprint())),
        "proxied"
    );
    Response::from_parts(parts, Body::new(body))
}
