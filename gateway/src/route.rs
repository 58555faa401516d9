//! `/mcp/NAME[/REST]`: which upstream a path names, and whether the rest may be appended to its endpoint.

use axum::{extract::Request, http::StatusCode, middleware::Next, response::Response};

use super::json_error;

/// Splits `/mcp/NAME[/REST]` into `NAME` and `REST`.
pub fn split(path: &str) -> (&str, &str) {
    let rest = path.strip_prefix("/mcp/").unwrap_or_default();
    rest.split_once('/').unwrap_or((rest, ""))
}

/// Whether `rest` (what follows `/mcp/`) is canonical: no `.` or `..` segment, no empty segment but a trailing
/// one, no `\`, and no percent-encoded `/`, `\` or `.` that an upstream could decode into one of those.
pub fn is_canonical(rest: &str) -> bool {
    if rest.contains('\\') {
        return false;
    }
    let encoded = |w: &[u8]| {
        [b"%2f", b"%5c", b"%2e"]
            .iter()
            .any(|e| w.eq_ignore_ascii_case(*e))
    };
    if rest.as_bytes().windows(3).any(encoded) {
        return false;
    }
    let mut segments = rest.split('/').enumerate().peekable();
    while let Some((i, s)) = segments.next() {
        let last = segments.peek().is_none();
        if matches!(s, "." | "..") || (s.is_empty() && !(last && i > 0)) {
            return false;
        }
    }
    true
}

/// Middleware, outside authentication: a non-canonical path below `/mcp/` is a 400 whoever asks.
pub async fn confine(request: Request, next: Next) -> Response {
    let rest = request
        .uri()
        .path()
        .strip_prefix("/mcp/")
        .unwrap_or_default();
    if !is_canonical(rest) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the path below /mcp/NAME must be canonical",
        );
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths() {
        for ok in ["a", "a/", "a/b/c", "a/b.json", "a/..b", "a/%20"] {
            assert!(is_canonical(ok), "{ok}");
        }
        for bad in [
            "a/..",
            "a/../b",
            "a/./b",
            "a//b",
            "",
            "/a",
            "a/%2e%2e/b",
            "a/%2F",
            "a/%5c",
            "a\\b",
            "a/%2E",
        ] {
            assert!(!is_canonical(bad), "{bad}");
        }
    }
}
