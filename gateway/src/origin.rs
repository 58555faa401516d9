//! DNS-rebinding defences of the MCP transport: an `Origin` that is present and not allowed gets 403, and on a
//! loopback listener a `Host` that is neither a loopback name nor the public URL's host gets 421. Both run
//! before authentication, so such a request never reaches a key store or an upstream.

use crate::stage::{Answers, Next, Step};
use std::sync::Arc;

use axum::{
    extract::Request,
    http::{header, StatusCode, Uri},
};

use super::json_error;

/// The origins and hosts this gateway answers.
#[derive(Debug)]
pub struct Origins {
    allowed: Vec<String>,
    /// The hosts allowed on a loopback listener, or `None` when any host is.
    hosts: Option<Vec<String>>,
}

/// `scheme://host[:port]` of `url`, lower-cased, or `None` when it has no authority.
pub fn origin_of(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?).to_ascii_lowercase())
}

/// The host of an authority (`host[:port]`, `[v6]:port`), as written (compare it ignoring ASCII case).
fn host_of(authority: &str) -> &str {
    if let Some(end) = authority.find(']') {
        return &authority[..=end];
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn is_loopback_name(host: &str) -> bool {
    const SUFFIX: &[u8] = b".localhost";
    let bytes = host.as_bytes();
    host.eq_ignore_ascii_case("localhost")
        || (bytes.len() >= SUFFIX.len()
            && bytes[bytes.len() - SUFFIX.len()..].eq_ignore_ascii_case(SUFFIX))
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Origins {
    /// Allows the public URL's origin and `extra`; checks `Host` only when the listener is on loopback.
    pub fn new(
        public_url: &str,
        extra: &[String],
        loopback_listener: bool,
    ) -> Result<Self, String> {
        let mut allowed = vec![origin_of(public_url).ok_or("--public-url is not an absolute URL")?];
        for origin in extra {
            let trimmed = origin.trim_end_matches('/');
            let normal = origin_of(trimmed)
                .filter(|o| o.len() == trimmed.len())
                .ok_or_else(|| {
                    format!("--allow-origin {origin:?} is not an origin (scheme://host[:port])")
                })?;
            allowed.push(normal);
        }
        let hosts = loopback_listener.then(|| {
            let public: Uri = public_url.parse().expect("checked above");
            vec![host_of(public.authority().map_or("", |a| a.as_str())).to_ascii_lowercase()]
        });
        Ok(Self { allowed, hosts })
    }

    /// Whether a browser page of `origin` may call the gateway.
    pub fn allows(&self, origin: &[u8]) -> bool {
        std::str::from_utf8(origin)
            .is_ok_and(|o| self.allowed.iter().any(|a| a.eq_ignore_ascii_case(o)))
    }

    /// The allowed origins, for CORS.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    fn allows_host(&self, request: &Request) -> bool {
        let Some(hosts) = &self.hosts else {
            return true;
        };
        let authority = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()));
        let Some(host) = authority.map(host_of) else {
            return false;
        };
        is_loopback_name(host) || hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }
}

/// Middleware: 403 for a foreign `Origin`, 421 for a foreign `Host` on a loopback listener.
pub fn check<S: Answers>(origins: &Arc<Origins>, request: Request, next: Next<'_, S>) -> Step<S> {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        if !origins.allows(origin.as_bytes()) {
            return next.answer(json_error(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "this Origin may not call the gateway",
            ));
        }
    }
    if !origins.allows_host(&request) {
        return next.answer(json_error(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            "unexpected Host for this gateway",
        ));
    }
    next.pass(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(host: &str) -> Request {
        Request::builder()
            .uri("/mcp/a")
            .header(header::HOST, host)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn hosts_are_compared_without_their_port_and_ignoring_case() {
        assert_eq!(host_of("Example.COM:8080"), "Example.COM");
        assert_eq!(host_of("[::1]:80"), "[::1]");
        assert_eq!(host_of("a.b"), "a.b");
        for loopback in [
            "localhost",
            "LOCALHOST",
            "app.LocalHost",
            ".localhost",
            "127.0.0.1",
            "127.9.9.9",
            "[::1]",
        ] {
            assert!(is_loopback_name(loopback), "{loopback}");
        }
        for other in [
            "localhost.evil",
            "xlocalhost",
            "128.0.0.1",
            "[::2]",
            "gw.example",
        ] {
            assert!(!is_loopback_name(other), "{other}");
        }
        let origins = Origins::new("http://Gw.Example:8080", &[], true).unwrap();
        for allowed in [
            "gw.example",
            "GW.EXAMPLE:8080",
            "localhost:1",
            "127.0.0.1:9",
        ] {
            assert!(origins.allows_host(&with_host(allowed)), "{allowed}");
        }
        for refused in ["gw.example.evil", "evil", "gw.exampl"] {
            assert!(!origins.allows_host(&with_host(refused)), "{refused}");
        }
        let public = Origins::new("http://gw.example", &[], false).unwrap();
        assert!(public.allows_host(&with_host("anything")));
    }
}
