//! `/mcp/NAME[/REST]`: read once per request into the library's typed [`McpRoute`] (canonical-checked there),
//! which every later layer — permissions, authentication per route, discovery, metrics and the relay — reads
//! from the request's extensions instead of splitting the path again.

use axum::{extract::Request, http::StatusCode, middleware::Next, response::Response};
use tower_mcp_auth::route::{McpRoute, RouteError};

use super::json_error;

/// Middleware, outside authentication: a path below `/mcp/` that is not canonical (dot segments, empty inner
/// segments, a backslash, any percent-encoded byte) is a 400 whoever asks; a canonical one carries its
/// [`McpRoute`] from here on.
pub async fn confine(mut request: Request, next: Next) -> Response {
    match McpRoute::parse(request.uri().path()) {
        Ok(route) => {
            request.extensions_mut().insert(route);
            next.run(request).await
        }
        Err(RouteError::NotUnderPrefix) => next.run(request).await,
        Err(_) => json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the path below /mcp/NAME must be canonical",
        ),
    }
}

/// The route [`confine`] read for `request`.
pub fn of<B>(request: &axum::http::Request<B>) -> Option<&McpRoute> {
    McpRoute::from_extensions(request.extensions())
}

/// Whether `rest` (a path to append to a route, empty or starting with `/`) is canonical by the same rule.
pub fn is_canonical_rest(rest: &str) -> bool {
    (rest.is_empty() || rest.starts_with('/')) && McpRoute::parse(&format!("/mcp/x{rest}")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_rests() {
        for ok in ["", "/", "/b/c", "/b.json", "/..b"] {
            assert!(is_canonical_rest(ok), "{ok}");
        }
        for bad in [
            "/..",
            "/../b",
            "/./b",
            "//b",
            "b",
            "/%2e%2e/b",
            "/%2F",
            "/%5c",
            "\\b",
            "/%2E",
            "/%20",
        ] {
            assert!(!is_canonical_rest(bad), "{bad}");
        }
    }
}
