//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and are never forwarded.

use http::{header::CONNECTION, HeaderMap, HeaderName};

/// Whether `name` is one of the fixed hop-by-hop headers. Names are lower case, so this compares their text:
/// a few instructions per name, as a request's every header is checked.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes every header a `Connection` header lists, then the fixed hop-by-hop headers (`Connection`,
/// `Keep-Alive`, `Proxy-Authorization`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`).
///
/// [`ForwardCredentialsLayer`](super::ForwardCredentialsLayer) does this to every upstream request before it
/// sets its own headers, so a `Connection` header cannot name one of them away; a proxy calls it on the
/// upstream's response headers before relaying them.
///
/// ```
/// use http::HeaderMap;
/// use tower_mcp_auth::upstream::remove_hop_by_hop;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("connection", "keep-alive, x-internal".parse().unwrap());
/// headers.insert("x-internal", "1".parse().unwrap());
/// headers.insert("transfer-encoding", "chunked".parse().unwrap());
/// headers.insert("mcp-session-id", "abc".parse().unwrap());
/// remove_hop_by_hop(&mut headers);
/// assert_eq!(headers.len(), 1);
/// assert!(headers.contains_key("mcp-session-id"));
/// ```
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names, no hashed removals. Without a fixed one there is no
    // `Connection` either, so nothing listed.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
        .collect();
    remove_matching(headers, |name| is_hop_by_hop(name) || listed.contains(name));
}

/// Removes every header whose name `doomed` picks. Only the names present are removed (usually one or none),
/// each by one hashed removal, found by a pass over the names rather than a removal per name that might be there.
pub(crate) fn remove_matching(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    while let Some(name) = headers.keys().find(|name| doomed(name)).cloned() {
        headers.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn connection_listed_and_fixed_headers_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "x-a , X-B"),
            ("connection", "close,,"),
            ("x-a", "1"),
            ("x-b", "2"),
            ("x-c", "3"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-connection", "keep-alive"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-c"], "3");
    }
}
