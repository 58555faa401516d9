//! The gateway's RFC 9728 protected-resource metadata for each passthrough route, built from the upstream's;
//! with a JWT issuer (`--jwt-issuer`), for every route, naming that issuer first.

use crate::stage::{Answers, Finish, Next, Run, Then};
use std::sync::Arc;

use axum::{
    extract::{Path, Request, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use futures_util::future::Either;

use super::super::{json_error, proxy::Relayed, route, Gateway, Upstream};

fn document(
    gateway: &Gateway,
    upstream: &Upstream,
    metadata: Option<&super::upstream::UpstreamMetadata>,
) -> Response {
    // The gateway's own issuer first: its JWTs are what every route admits besides keys.
    let mut servers: Vec<serde_json::Value> = gateway
        .jwt_issuer
        .iter()
        .map(|i| i.as_str().into())
        .collect();
    servers.extend(
        metadata
            .and_then(|m| m.authorization_servers.as_array())
            .into_iter()
            .flatten()
            .cloned(),
    );
    let mut document = serde_json::json!({
        "resource": upstream.resource,
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
    });
    if let Some(scopes) = metadata.and_then(|m| m.scopes_supported.as_ref()) {
        document["scopes_supported"] = scopes.clone();
    }
    // The scopes the route's own `tool_scopes` ask of JWT callers.
    let own = gateway.tools.scopes_supported(upstream.config.name());
    if !own.is_empty() {
        let mut all: Vec<serde_json::Value> = document["scopes_supported"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for scope in own.into_iter().map(serde_json::Value::from) {
            if !all.contains(&scope) {
                all.push(scope);
            }
        }
        document["scopes_supported"] = all.into();
    }
    Json(document).into_response()
}

async fn answer(gateway: &Gateway, upstream: Option<&Upstream>) -> Response {
    let Some(upstream) =
        upstream.filter(|u| u.config.accepts_passthrough() || gateway.jwt_issuer.is_some())
    else {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no metadata here");
    };
    if !upstream.config.accepts_passthrough() {
        return document(gateway, upstream, None);
    }
    match gateway
        .discovery
        .metadata(upstream.config.name(), upstream.config.url())
        .await
    {
        Ok(metadata) => document(gateway, upstream, Some(&metadata)),
        // The gateway's issuer is a way in even when the upstream's metadata is out of reach.
        Err(_) if gateway.jwt_issuer.is_some() => document(gateway, upstream, None),
        Err(error) => {
            tracing::warn!(upstream = upstream.config.name(), %error, "upstream metadata unavailable");
            json_error(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "upstream metadata unavailable",
            )
        }
    }
}

/// `GET /.well-known/oauth-protected-resource/[PUBLIC_PATH/]mcp/{name}`: outside the auth layer, like every
/// discovery document. `PUBLIC_PATH` is the path of `--public-url` (RFC 9728 §3.1), when it has one.
pub async fn handle(State(gateway): State<Arc<Gateway>>, Path(rest): Path<String>) -> Response {
    let rest = rest
        .strip_prefix(gateway.public_path.trim_start_matches('/'))
        .map(|r| r.trim_start_matches('/'))
        .filter(|_| !gateway.public_path.is_empty())
        .unwrap_or(&rest);
    let name = rest.strip_prefix("mcp/").filter(|n| !n.contains('/'));
    answer(
        &gateway,
        name.and_then(|n| gateway.upstreams.get(n)).map(|u| &**u),
    )
    .await
}

/// `GET /.well-known/oauth-protected-resource`: the document of the one passthrough route, when there is
/// exactly one (with several, a client must use the path-aware URL of its route).
pub async fn handle_root(State(gateway): State<Arc<Gateway>>) -> Response {
    let mut passthrough = gateway
        .upstreams
        .values()
        .filter(|u| u.config.accepts_passthrough());
    let only = match (passthrough.next(), passthrough.next()) {
        (Some(only), None) => Some(&**only),
        _ => None,
    };
    answer(&gateway, only).await
}

/// Middleware on the `/mcp/` routes, outside authentication: the gateway's own 401 on a passthrough route gains
/// the upstream's `scope` hint when its metadata lists `scopes_supported`.
pub fn scope_hint<S: Answers>(
    gateway: &Arc<Gateway>,
    request: Request,
    next: Next<'_, S>,
) -> Either<Run<S>, Then<S, Hinted, Finish>> {
    let name = route::of(&request).map_or("", |route| route.name());
    match gateway.upstreams.get(name) {
        Some(upstream) if upstream.config.accepts_passthrough() => {
            let upstream = upstream.clone();
            Either::Right(next.then(request, (gateway.clone(), upstream), hint))
        }
        _ => Either::Left(next.run(request)),
    }
}

/// What [`hint`] needs: the gateway (its discovery client) and the route's upstream.
type Hinted = (Arc<Gateway>, Arc<Upstream>);

/// [`scope_hint`] after the answer, on a route that takes the client's own token: only the gateway's own 401
/// to a request without credentials (a challenge with neither `error=` nor `scope=`) waits for the upstream's
/// metadata.
fn hint((gateway, upstream): Hinted, response: Response) -> Finish {
    if response.status() != StatusCode::UNAUTHORIZED
        || response.extensions().get::<Relayed>().is_some()
    {
        return Finish::Now(response);
    }
    let Some(challenge) = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return Finish::Now(response);
    };
    // Only the challenge of a request without credentials (no `error=`) starts discovery.
    let lower = challenge.to_ascii_lowercase();
    if lower.contains("scope=") || lower.contains("error=") {
        return Finish::Now(response);
    }
    Finish::Later(Box::pin(with_scope(gateway, upstream, challenge, response)))
}

/// `response` with the upstream's scope hint added to its `challenge`, when the upstream's metadata has one.
async fn with_scope(
    gateway: Arc<Gateway>,
    upstream: Arc<Upstream>,
    challenge: String,
    mut response: Response,
) -> Response {
    let Some(scope) = gateway
        .discovery
        .metadata(upstream.config.name(), upstream.config.url())
        .await
        .ok()
        .and_then(|m| m.scope_hint())
    else {
        return response;
    };
    let separator = if challenge.trim().eq_ignore_ascii_case("bearer") {
        " "
    } else {
        ", "
    };
    if let Ok(value) = HeaderValue::try_from(format!("{challenge}{separator}scope=\"{scope}\"")) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
