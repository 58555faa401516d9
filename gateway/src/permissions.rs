//! Who may use which upstream, enforced behind the auth layer, before the gateway's own credential is attached.
//!
//! Gateway keys: a plain `--key KEY` reaches every upstream; `--key KEY=atl,priv` (and the same in a key file)
//! only `atl` and `priv`; a LiteLLM key what LiteLLM grants it. The check is the crate's `RequireUpstreamLayer`:
//! a key that may not use the upstream a path names gets `403 access_denied`, and the upstream never sees the
//! request.
//!
//! Per upstream ([`RouteAccess`]): an `oauth_delegate` upstream takes the client's own token only beside a
//! gateway key (as LiteLLM does); and JWT callers may be held to scopes (`required_scopes`: a step-up `403
//! insufficient_scope` naming them) and to clients (`allowed_client_ids`: `403 access_denied`).

use crate::stage::{Answers, Next, Step};
use std::sync::Arc;

use axum::{
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use tower_mcp_auth::{
    permissions::{PathSegment, RequireUpstreamLayer},
    Admission, Authenticated,
};

use super::{config::RouteAccess, json_error, resource_server::Caller, route};

/// The permission check: the upstream is the name of the request's `McpRoute`, as the dispatcher ([`crate::app::Dispatch`]) read it.
pub fn require_upstream() -> RequireUpstreamLayer<Caller, PathSegment> {
    RequireUpstreamLayer::path_segment("/mcp/")
}

/// Each route's [`RouteAccess`] with the URL of its metadata document (for the step-up challenge).
pub type Routes = Arc<crate::NameMap<String, (RouteAccess, String)>>;

/// Middleware, behind the auth layer: applies the [`RouteAccess`] of the route a path names.
pub fn route_access<S: Answers>(routes: &Routes, request: Request, next: Next<'_, S>) -> Step<S> {
    let Some((access, metadata_url)) = route::of(&request).and_then(|r| routes.get(r.name()))
    else {
        return next.pass(request);
    };
    if access.delegate && request.extensions().get::<Admission>() == Some(&Admission::Passthrough) {
        return next.answer(delegate_needs_key());
    }
    if let Some(Caller::Jwt(claims)) = request
        .extensions()
        .get::<Authenticated<Caller>>()
        .map(Authenticated::identity)
    {
        if let Some(allowed) = &access.allowed_client_ids {
            let client = claims
                .client_id
                .as_deref()
                .or_else(|| claims.extra.get("azp").and_then(serde_json::Value::as_str));
            if !client.is_some_and(|c| allowed.iter().any(|a| a == c)) {
                return next.answer(json_error(
                    StatusCode::FORBIDDEN,
                    "access_denied",
                    "this client may not use this upstream",
                ));
            }
        }
        let missing = access
            .required_scopes
            .iter()
            .any(|needed| !claims.scopes().any(|s| s == needed));
        if missing {
            return next.answer(insufficient_scope(&access.required_scopes, metadata_url));
        }
    }
    next.pass(request)
}

/// A lone bearer on an `oauth_delegate` route: the gateway key is missing, not the token.
fn delegate_needs_key() -> Response {
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "this upstream takes the client's own token only beside a gateway key (x-litellm-api-key)",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer error="invalid_token""#),
    );
    response
}

/// RFC 6750 §3.1 step-up: `403` with the scopes the route needs and the metadata naming the issuer.
fn insufficient_scope(scopes: &[String], metadata_url: &str) -> Response {
    let mut response = json_error(
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        "the token lacks a scope this upstream requires",
    );
    // Scopes and the URL were checked at start-up to be quotable.
    let challenge = format!(
        r#"Bearer error="insufficient_scope", scope="{}", resource_metadata="{metadata_url}""#,
        scopes.join(" ")
    );
    if let Ok(value) = HeaderValue::try_from(challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Whether `scope` is an RFC 6749 §3.3 scope token (visible ASCII but `"` and `\`), so it can stand in a
/// challenge.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_tokens_are_what_a_challenge_can_quote() {
        for ok in ["mcp.read", "repo:write", "https://api.example/read"] {
            assert!(is_scope_token(ok), "{ok}");
        }
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(!is_scope_token(bad), "{bad}");
        }
    }
}
