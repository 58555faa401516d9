//! `/mcp/NAME[/REST]`: read once per request into the library's typed [`McpRoute`] (canonical-checked there),
//! which every later layer — permissions, authentication per route, discovery, metrics and the relay — reads
//! from the request's extensions instead of splitting the path again.

use tower_mcp_auth::route::McpRoute;

/// The route the request path read for `request` ([`crate::app::Dispatch`]).
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
