//! Relaying MCP Streamable HTTP to the upstream a path names: POST, GET and DELETE, responses streamed back.
//!
//! On the way out: the path below `/mcp/NAME` joins the upstream endpoint's path (already checked canonical by
//! [`crate::app::Dispatch`]), the upstream URL's own query parameters win over the client's, the body is capped, and
//! `Cookie`, `Host` and `Origin` stay behind. On the way back: `Set-Cookie` stays behind, a redirect never
//! reveals the upstream's URL, and challenges point at the gateway's metadata.

use std::{collections::HashSet, sync::Arc, time::Instant};

use axum::{
    body::Body,
    extract::Request,
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode, Uri},
    response::Response,
};
use tower_mcp_auth::{
    route::McpRoute,
    upstream::{remove_hop_by_hop, with_resource_metadata, Refused},
};

use super::{
    access_log::AuthOutcome,
    json_error, route,
    sessions::{self, Owner, SESSION_HEADER},
    tls, Gateway, Upstream,
};

/// Marks a response the upstream gave (as opposed to one of the gateway's own).
#[derive(Clone, Copy, Debug)]
pub struct Relayed;

/// The query of the upstream request: the upstream URL's parameters, then the client's whose names it does not
/// set (names compared after percent-decoding).
fn merge_query(base: Option<&str>, client: Option<&str>) -> Option<String> {
    let base = base.filter(|q| !q.is_empty());
    let taken: HashSet<String> = form_urlencoded::parse(base.unwrap_or_default().as_bytes())
        .map(|(name, _)| name.into_owned())
        .collect();
    let mut parts: Vec<&str> = base.into_iter().collect();
    parts.extend(
        client
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or_default();
                let decoded = form_urlencoded::parse(name.as_bytes())
                    .next()
                    .map(|(n, _)| n.into_owned())
                    .unwrap_or_default();
                !taken.contains(&decoded)
            }),
    );
    (!parts.is_empty()).then(|| parts.join("&"))
}

/// The upstream URI: its MCP endpoint, the rest of the gateway path below it, and the merged query.
fn upstream_uri(base: &Uri, rest: &str, query: Option<&str>) -> Result<Uri, axum::http::Error> {
    let base_path = base.path();
    if rest.is_empty() && query.is_none() && (base_path == "/" || !base_path.ends_with('/')) {
        // The endpoint itself, as configured (nearly every MCP request): shared, not rebuilt.
        return Ok(base.clone());
    }
    let mut path = base.path().trim_end_matches('/').to_owned();
    if !rest.is_empty() {
        path.push('/');
        path.push_str(rest);
    }
    if path.is_empty() {
        path.push('/');
    }
    if let Some(query) = merge_query(base.query(), query) {
        path.push('?');
        path.push_str(&query);
    }
    Uri::builder()
        .scheme(base.scheme_str().unwrap_or("http"))
        .authority(base.authority().map_or("", |a| a.as_str()))
        .path_and_query(path)
        .build()
}

/// A redirect's `Location` moved onto the gateway's route, or `None` when it leaves the upstream endpoint (another
/// origin, a path outside the endpoint, a relative reference): the client must never learn the upstream's URL.
fn relocate(location: &HeaderValue, upstream: &Upstream) -> Option<HeaderValue> {
    let base = upstream.config.url();
    let location = location.to_str().ok()?;
    let target: Uri = location.parse().ok()?;
    if let Some(authority) = target.authority() {
        let same_origin = target
            .scheme_str()
            .unwrap_or(base.scheme_str()?)
            .eq_ignore_ascii_case(base.scheme_str()?)
            && base
                .authority()
                .is_some_and(|a| a.as_str().eq_ignore_ascii_case(authority.as_str()));
        if !same_origin {
            return None;
        }
    } else if !location.starts_with('/') {
        return None;
    }
    let base_path = base.path().trim_end_matches('/');
    let rest = target.path().strip_prefix(base_path)?;
    if !route::is_canonical_rest(rest) {
        return None;
    }
    let mut moved = format!("{}{rest}", upstream.resource);
    // Parameters of the upstream URL's own query are the gateway's configuration, never the client's business.
    let taken: HashSet<String> =
        form_urlencoded::parse(base.query().unwrap_or_default().as_bytes())
            .map(|(name, _)| name.into_owned())
            .collect();
    let kept: Vec<(String, String)> =
        form_urlencoded::parse(target.query().unwrap_or_default().as_bytes())
            .filter(|(name, _)| !taken.contains(name.as_ref()))
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
    if !kept.is_empty() {
        moved.push('?');
        moved.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .extend_pairs(kept)
                .finish(),
        );
    }
    HeaderValue::try_from(moved).ok()
}

/// Every challenge the upstream sent, pointed at the gateway's metadata; one that cannot be rewritten is dropped,
/// and if none is left, a plain `Bearer` challenge naming the metadata stands in, so none of the upstream's
/// URLs survive.
fn relay_challenges(headers: &mut HeaderMap, metadata_url: &str) {
    let rewritten: Vec<HeaderValue> = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| with_resource_metadata(v, metadata_url))
        .collect();
    headers.remove(header::WWW_AUTHENTICATE);
    let bare = HeaderValue::from_static("Bearer");
    let fallback = || with_resource_metadata(&bare, metadata_url).unwrap_or(bare.clone());
    if rewritten.is_empty() {
        headers.insert(header::WWW_AUTHENTICATE, fallback());
    }
    for value in rewritten {
        headers.append(header::WWW_AUTHENTICATE, value);
    }
}

/// Reads the request body, at most `max` bytes; `Err` is the 413 (or 400) to answer.
async fn read_body(parts: &Parts, body: Body, max: usize) -> Result<axum::body::Bytes, Response> {
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than the gateway relays",
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    tower_mcp_auth::body::to_bytes(body, max)
        .await
        .map_err(|error| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
            while let Some(e) = source {
                if e.is::<http_body_util::LengthLimitError>() {
                    return too_large();
                }
                source = e.source();
            }
            if crate::conn::is_body_timeout(&*error) {
                return json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body did not arrive in time",
                );
            }
            json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request body could not be read",
            )
        })
}

/// The end of the request path for every `/mcp/...` path, behind the auth layers: the relay.
pub async fn handle(gateway: Arc<Gateway>, request: Request) -> Response {
    // How the caller was admitted, as the stage above found it (one digest of a passthrough token per request).
    let outcome = match request.extensions().get::<Option<AuthOutcome>>() {
        Some(outcome) => outcome.clone(),
        None => AuthOutcome::of(&request),
    };
    let owner = outcome.as_ref().and_then(AuthOutcome::owner);
    relay(&gateway, request, owner).await
}

async fn relay(gateway: &Gateway, mut request: Request, owner: Option<Owner>) -> Response {
    // Taken, not copied: nothing reads the request's route after the relay.
    let Some(route) = request.extensions_mut().remove::<McpRoute>() else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such upstream MCP server",
        );
    };
    // What follows `/mcp/NAME/`, as the endpoint path's continuation.
    let (name, rest) = (route.name(), route.rest().trim_start_matches('/'));
    let Some(upstream) = gateway.upstreams.get(name) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such upstream MCP server",
        );
    };
    let (started, method) = (Instant::now(), request.method().clone());
    let response = relay_to(gateway, upstream, rest, request, owner).await;
    upstream
        .requests
        .record(&method, response.status(), started);
    response
}

/// Relays `request` to `upstream`, `rest` being the path below the route.
async fn relay_to(
    gateway: &Gateway,
    upstream: &Upstream,
    rest: &str,
    request: Request,
    owner: Option<Owner>,
) -> Response {
    let name = upstream.config.name();
    // The client holds a sealed id; the upstream gets its own id back only when the seal opens for this caller
    // on this upstream. Anything else is what an unknown session gets, and the upstream is never contacted.
    let session = match sessions::presented(request.headers()) {
        Ok(presented) => presented.cloned(),
        Err(description) => {
            return json_error(StatusCode::BAD_REQUEST, "invalid_request", description)
        }
    };
    let session = match session {
        None => None,
        Some(sealed) => match owner
            .as_ref()
            .and_then(|owner| gateway.sessions.open(name, owner, &sealed))
        {
            Some(opened) => Some(opened),
            None => return json_error(StatusCode::NOT_FOUND, "not_found", "no such MCP session"),
        },
    };
    let uri = match upstream_uri(upstream.config.url(), rest, request.uri().query()) {
        Ok(uri) => uri,
        Err(_) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", "bad path"),
    };
    let (mut parts, body) = request.into_parts();
    // MCP messages are small JSON documents: reading them whole caps their size, and the upstream timeout then
    // measures the upstream alone, never a slow client.
    let body = match read_body(&parts, body, gateway.max_body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    parts.uri = uri;
    if let Some(session) = session {
        parts.headers.insert(SESSION_HEADER, session);
    }
    // `Origin` is for the gateway, not the upstream. `Host` and cookies are the credential forwarding's to
    // remove (`ForwardCredentials` drops them from every upstream request and sets the upstream's `Host`).
    parts.headers.remove(header::ORIGIN);
    let method = parts.method.clone();
    // Kept whole, the body can be sent again: the token-exchange retry after an upstream 401 needs it.
    let request = axum::http::Request::from_parts(parts, body);

    // The timeout covers connecting and the response head; an event stream that follows is not cut by it. A
    // shared deadline table, not a timer per request: the answer comes no earlier than the timeout, and at most
    // a tick (a tenth of it, 1 s at most) later.
    let sent = gateway
        .upstream_deadlines
        .within(upstream.client.send(request))
        .await;
    let response = match sent {
        Err(_) => {
            tracing::warn!(upstream = upstream.config.name(), %method, "upstream timed out");
            return json_error(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "the upstream MCP server did not answer in time",
            );
        }
        Ok(Err(error)) if error.is::<Refused>() => {
            // A passthrough-only caller sent to an upstream that takes only the gateway's credential.
            return json_error(
                StatusCode::FORBIDDEN,
                "access_denied",
                "this upstream does not accept the client's own token",
            );
        }
        Ok(Err(error)) if tls::is_tls_error(&*error) => {
            tracing::warn!(upstream = upstream.config.name(), %method, error = %error, "upstream TLS failure");
            return json_error(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "TLS failure: the upstream MCP server's certificate or handshake was refused",
            );
        }
        Ok(Err(error)) => {
            tracing::warn!(upstream = upstream.config.name(), %method, error = %error, "upstream unreachable");
            return json_error(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream MCP server is unreachable",
            );
        }
        // The gateway's own answer (a refused or failed token exchange), not the upstream's.
        Ok(Ok(Err(answer))) => return answer,
        Ok(Ok(Ok(response))) => response,
    };
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::SET_COOKIE);
    // The upstream's session id never reaches the client as it is: sealed for this caller, or not at all.
    let mut opened = parts.headers.get_all(&SESSION_HEADER).iter();
    let sealed = match (opened.next(), opened.next(), &owner) {
        (None, _, _) => None,
        (Some(session), None, Some(owner)) => {
            Some(gateway.sessions.seal(name, owner, session.as_bytes()))
        }
        (Some(_), _, _) => {
            tracing::warn!(
                upstream = name,
                "upstream sent several session ids, or one to no caller"
            );
            return json_error(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream MCP server sent an unusable session id",
            );
        }
    };
    if let Some(sealed) = sealed {
        parts.headers.insert(SESSION_HEADER, sealed);
    }
    parts.extensions.insert(Relayed);
    if parts.status.is_redirection() {
        if let Some(location) = parts.headers.get(header::LOCATION) {
            match relocate(location, upstream) {
                Some(moved) => {
                    parts.headers.insert(header::LOCATION, moved);
                }
                None => {
                    tracing::warn!(
                        upstream = upstream.config.name(),
                        "upstream redirected elsewhere"
                    );
                    return json_error(
                        StatusCode::BAD_GATEWAY,
                        "bad_gateway",
                        "the upstream MCP server redirected outside its endpoint",
                    );
                }
            }
        }
    }
    let challenged = matches!(
        parts.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    );
    if challenged && upstream.config.accepts_passthrough() {
        // 401 (no or bad token) and 403 (`insufficient_scope` step-up) alike send the client to the
        // gateway's metadata, keeping `error`, `scope` and the rest.
        if parts.headers.contains_key(header::WWW_AUTHENTICATE)
            || parts.status == StatusCode::UNAUTHORIZED
        {
            relay_challenges(&mut parts.headers, &upstream.metadata_url);
        }
    } else if parts.status == StatusCode::UNAUTHORIZED {
        // Only the gateway's own credential (or the client's x-mcp- one) went upstream: the client cannot fix
        // this by signing in, so it must not see the upstream's challenge.
        tracing::warn!(
            upstream = upstream.config.name(),
            "upstream refused the gateway's credential"
        );
        return json_error(
            StatusCode::BAD_GATEWAY,
            "upstream_auth_failed",
            "the upstream MCP server refused the gateway's credential",
        );
    } else if challenged {
        parts.headers.remove(header::WWW_AUTHENTICATE);
    }
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_itself_is_the_configured_uri_and_rests_join_it() {
        for (base, rest, query, expected) in [
            ("http://u:1/mcp", "", None, "http://u:1/mcp"),
            ("http://u:1/mcp?k=1", "", None, "http://u:1/mcp?k=1"),
            ("http://u:1/", "", None, "http://u:1/"),
            ("http://u:1/mcp/", "", None, "http://u:1/mcp"),
            ("http://u:1/mcp", "", Some("a=1"), "http://u:1/mcp?a=1"),
            (
                "http://u:1/mcp?k=1",
                "b/c",
                Some("k=2&a=1"),
                "http://u:1/mcp/b/c?k=1&a=1",
            ),
            ("http://u:1", "x", None, "http://u:1/x"),
        ] {
            let base: Uri = base.parse().unwrap();
            assert_eq!(
                upstream_uri(&base, rest, query).unwrap().to_string(),
                expected,
                "{base} + {rest:?} ? {query:?}"
            );
        }
    }

    #[test]
    fn the_upstream_query_wins() {
        assert_eq!(
            merge_query(Some("a=1&b=2"), Some("b=9&c=3")).as_deref(),
            Some("a=1&b=2&c=3")
        );
        assert_eq!(
            merge_query(Some("key=s"), Some("%6bey=evil")).as_deref(),
            Some("key=s")
        );
        assert_eq!(merge_query(None, Some("c=3")).as_deref(), Some("c=3"));
        assert_eq!(merge_query(Some(""), None), None);
    }
}
