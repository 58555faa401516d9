//! The one reading of a request path: `/mcp/NAME[/REST]` as a typed [`McpRoute`], route prefixes matched on
//! whole segments, and the canonical-path rule both apply.
//!
//! A path is *canonical* when it starts with `/` and holds no dot segment (`.`, `..`), no empty segment except
//! a single trailing slash (`//`), no backslash, no `;` (Java servlet containers read `..;` as `..` and drop
//! path parameters), and no percent-encoded byte at all (so neither `%25` double encoding, nor `%00`, nor the
//! bytes of an overlong UTF-8 form such as `%c0%ae`). Such paths are how a
//! request that a router, a proxy or an upstream would normalise onto another route tries to look like a
//! different one, so every reader here refuses them rather than decode them: the passthrough policy's
//! prefixes never match them, [`McpRoute`] is never built from one, and
//! [`RequireUpstreamLayer::path_segment`](crate::permissions::RequireUpstreamLayer::path_segment) lets them
//! through only for identities that may use every upstream.

use std::{error::Error, fmt};

use http::Extensions;
use smallvec::SmallVec;

use crate::config_error::ConfigError;

/// The prefix [`McpRoute::parse`] reads routes under.
pub const DEFAULT_ROUTE_PREFIX: &str = "/mcp/";

/// Which upstream MCP server a request path names: `/mcp/NAME[/REST]`, checked once.
///
/// [`parse`](Self::parse) refuses a path that is not canonical (see the [module docs](self)) before it looks
/// at the name, so a route is only ever built from a path that every router and upstream reads the same way.
/// The name is lowercased (upstream names are configured in lowercase, and the permission check has always
/// compared them so); the rest is kept as sent.
///
/// A gateway computes it once, early (say in the layer that confines paths), and inserts it as a request
/// extension; every later layer — the passthrough policy of a route, the permission check, metrics, OAuth
/// discovery, the proxy — reads the same value with [`from_extensions`](Self::from_extensions) instead of
/// splitting the path again. [`of_request`](Self::of_request) reads the extension when it is there and parses
/// the path otherwise.
///
/// ```
/// use tower_mcp_auth::route::{McpRoute, RouteError};
///
/// let route = McpRoute::parse("/mcp/GitHub/sse").unwrap();
/// assert_eq!(route.name(), "github");
/// assert_eq!(route.rest(), "/sse");
/// assert_eq!(McpRoute::parse("/mcp/atlassian").unwrap().rest(), "");
///
/// assert_eq!(McpRoute::parse("/mcp/atl/../github"), Err(RouteError::NotCanonical));
/// assert_eq!(McpRoute::parse("/mcp/atl/%2e%2e/github"), Err(RouteError::NotCanonical));
/// assert_eq!(McpRoute::parse("/mcp/"), Err(RouteError::EmptyName));
/// assert_eq!(McpRoute::parse("/health"), Err(RouteError::NotUnderPrefix));
/// assert_eq!(McpRoute::parse_under("/gw/mcp", "/gw/mcp/atl").unwrap().name(), "atl");
///
/// // Computed once, read by every later layer.
/// let mut request = http::Request::get("/mcp/atl/x").body(()).unwrap();
/// let route = McpRoute::of_request(&request).unwrap();
/// request.extensions_mut().insert(route);
/// assert_eq!(McpRoute::from_extensions(request.extensions()).unwrap().name(), "atl");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct McpRoute {
    /// Lowercased, in place up to [`NAME_INLINE`] bytes: reading a route allocates nothing for a usual name.
    name: SmallVec<[u8; NAME_INLINE]>,
    rest: Box<str>,
}

/// The bytes of a route's name held without an allocation.
const NAME_INLINE: usize = 32;

impl fmt::Debug for McpRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpRoute")
            .field("name", &self.name())
            .field("rest", &self.rest)
            .finish()
    }
}

impl McpRoute {
    /// Reads `path` as `/mcp/NAME[/REST]`.
    pub fn parse(path: &str) -> Result<Self, RouteError> {
        Self::parse_under(DEFAULT_ROUTE_PREFIX, path)
    }

    /// Reads `path` as `PREFIX/NAME[/REST]`; `prefix` is taken with or without its trailing slash (`/mcp`
    /// and `/mcp/` are the same prefix).
    ///
    /// In this order: a path not under `prefix` on whole segments is [`RouteError::NotUnderPrefix`]; a path
    /// that is not canonical is [`RouteError::NotCanonical`] (before the name is looked at, so `/mcp//x` is
    /// never read as a route without a name); an empty name is [`RouteError::EmptyName`].
    pub fn parse_under(prefix: &str, path: &str) -> Result<Self, RouteError> {
        let rest = under(prefix, path).ok_or(RouteError::NotUnderPrefix)?;
        if !is_canonical(path) {
            return Err(RouteError::NotCanonical);
        }
        let (name, rest) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
        if name.is_empty() {
            return Err(RouteError::EmptyName);
        }
        Ok(Self {
            name: name.bytes().map(|b| b.to_ascii_lowercase()).collect(),
            rest: rest.into(),
        })
    }

    /// The upstream's name, lowercased: `github` for `/mcp/GitHub/x`.
    pub fn name(&self) -> &str {
        // An ASCII-lowercased copy of a `&str`: always UTF-8.
        std::str::from_utf8(&self.name).unwrap_or_default()
    }

    /// What follows the name: `""`, `"/"` or `"/…"`, as sent.
    pub fn rest(&self) -> &str {
        &self.rest
    }

    /// The route a gateway inserted into the request's extensions, if any.
    pub fn from_extensions(extensions: &Extensions) -> Option<&Self> {
        extensions.get::<Self>()
    }

    /// The route of `request` under [`DEFAULT_ROUTE_PREFIX`]: the inserted extension when there is one,
    /// else its path parsed.
    pub fn of_request<B>(request: &http::Request<B>) -> Result<Self, RouteError> {
        match Self::from_extensions(request.extensions()) {
            Some(route) => Ok(route.clone()),
            None => Self::parse(request.uri().path()),
        }
    }
}

impl fmt::Display for McpRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{DEFAULT_ROUTE_PREFIX}{}{}", self.name(), self.rest)
    }
}

/// Why a path names no [`McpRoute`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteError {
    /// The path is not under the prefix (on whole segments).
    NotUnderPrefix,
    /// The path is not canonical: a dot segment, an empty inner segment, a backslash or a percent-encoded
    /// byte.
    NotCanonical,
    /// Nothing follows the prefix.
    EmptyName,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::NotUnderPrefix => "the path is not under the route prefix",
            Self::NotCanonical => "the path is not canonical",
            Self::EmptyName => "the path names no upstream",
        })
    }
}

impl Error for RouteError {}

/// What follows `prefix` in `path` when `path` lies under it on whole segments (`prefix` with or without its
/// trailing slash).
fn under<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    let prefix = prefix.trim_end_matches('/');
    path.strip_prefix(prefix)?.strip_prefix('/')
}

/// A route prefix such as `/mcp/atlassian`, matched on whole path segments.
///
/// `/mcp/atlassian` matches `/mcp/atlassian`, `/mcp/atlassian/` and `/mcp/atlassian/anything`, but not
/// `/mcp/atlassian-evil`. A request path that is not canonical matches nothing at all.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PathPrefix(Box<str>);

impl PathPrefix {
    /// Parses a configured prefix: refused when it does not start with `/`, or is not itself a canonical path.
    /// Prefixes come from code or configuration at start-up, where a loud failure beats a route that silently
    /// never matches.
    pub(crate) fn try_new(prefix: &str) -> Result<Self, ConfigError> {
        let refuse = |reason| Err(ConfigError::new("route prefix", prefix, reason));
        if !prefix.starts_with('/') {
            return refuse("must start with '/'");
        }
        if !is_canonical(prefix) {
            return refuse("must not contain '%', '\\', '//' or dot segments");
        }
        Ok(Self(prefix.trim_end_matches('/').into()))
    }

    /// [`try_new`](Self::try_new), panicking with its message.
    #[cfg(test)]
    pub(crate) fn new(prefix: &str) -> Self {
        Self::try_new(prefix).unwrap_or_else(|err| panic!("{err}"))
    }

    /// The prefix as configured, without a trailing slash (`""` for the root).
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `path` lies under this prefix on whole segments and is canonical.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix(&*self.0) else {
            return false;
        };
        (rest.is_empty() || rest.starts_with('/')) && is_canonical(path)
    }
}

impl fmt::Debug for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Whether `path` is canonical (see the [module docs](self)): it starts with `/`, and has no percent-encoded
/// byte, no backslash, no dot segment and no empty segment except a single trailing slash.
pub(crate) fn is_canonical(path: &str) -> bool {
    if path.contains(['%', '\\', ';']) {
        return false;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    // The root, checked before the trailing slash goes: otherwise `//` would pass for it.
    if rest.is_empty() {
        return true;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split('/')
        .all(|segment| !matches!(segment, "" | "." | ".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_segments_only() {
        let p = PathPrefix::new("/mcp/atlassian");
        assert!(p.matches("/mcp/atlassian"));
        assert!(p.matches("/mcp/atlassian/"));
        assert!(p.matches("/mcp/atlassian/tools/list"));
        assert!(!p.matches("/mcp/atlassian-evil"));
        assert!(!p.matches("/mcp/atlassianx/"));
        assert!(!p.matches("/mcp"));
        assert!(!p.matches("/MCP/atlassian"));
    }

    #[test]
    fn configured_trailing_slash_is_ignored() {
        let p = PathPrefix::new("/mcp/atlassian/");
        assert!(p.matches("/mcp/atlassian"));
        assert!(!p.matches("/mcp/atlassian-evil"));
    }

    #[test]
    fn non_canonical_paths_never_match() {
        let p = PathPrefix::new("/mcp/atlassian");
        for path in [
            "/mcp/atlassian/../github",
            "/mcp/atlassian/./x",
            "/mcp/atlassian/..",
            "/mcp/atlassian//x",
            "/mcp/atlassian/%2e%2e/github",
            "/mcp/atlassian/%41",
            "/mcp/atlassian%2F",
            "//mcp/atlassian",
        ] {
            assert!(!p.matches(path), "{path} must not match");
        }
        assert!(!PathPrefix::new("/").matches("//"));
    }

    #[test]
    fn root_prefix_matches_every_canonical_path() {
        let p = PathPrefix::new("/");
        assert!(p.matches("/"));
        assert!(p.matches("/mcp/x"));
        assert!(!p.matches("/mcp/../x"));
    }

    #[test]
    fn canonical_paths() {
        // The gateway's rule and this one, merged: the stricter of both.
        for ok in [
            "/",
            "/a",
            "/a/",
            "/a/b/c",
            "/a/b.json",
            "/a/..b",
            "/a/.b",
            "/a/b~x",
        ] {
            assert!(is_canonical(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "//",
            "/a/..",
            "/a/../b",
            "/a/./b",
            "/a//b",
            "//a",
            "/a/%2e%2e/b",
            "/a/%2F",
            "/a/%5c",
            "/a\\b",
            "/a/%2E",
            "/a/%20",
            "/a/%41",
            "/a/..;/b",
            "/a/.;/b",
            "/a/b;x",
            "/a;jsessionid=1",
            "/a/%25",
            "/a/%252e%252e/b",
            "/a/%00",
            "/a/%c0%ae%c0%ae/b",
            "/a/%80",
            "/a//",
            "/.",
            "/..",
        ] {
            assert!(!is_canonical(bad), "{bad}");
        }
    }

    #[test]
    fn routes() {
        let route = McpRoute::parse("/mcp/Atl/x/y").unwrap();
        assert_eq!((route.name(), route.rest()), ("atl", "/x/y"));
        assert_eq!(route.to_string(), "/mcp/atl/x/y");
        assert_eq!(McpRoute::parse("/mcp/atl/").unwrap().rest(), "/");
        assert_eq!(McpRoute::parse("/mcp"), Err(RouteError::NotUnderPrefix));
        assert_eq!(
            McpRoute::parse("/mcpx/atl"),
            Err(RouteError::NotUnderPrefix)
        );
        assert_eq!(
            McpRoute::parse("//mcp/atl"),
            Err(RouteError::NotUnderPrefix)
        );
        assert_eq!(McpRoute::parse("/mcp//atl"), Err(RouteError::NotCanonical));
        assert_eq!(
            McpRoute::parse("/mcp/atl\\..\\x"),
            Err(RouteError::NotCanonical)
        );
        assert_eq!(
            McpRoute::parse("/mcp/atl/%20"),
            Err(RouteError::NotCanonical)
        );
        assert_eq!(McpRoute::parse("/mcp/"), Err(RouteError::EmptyName));
        assert_eq!(McpRoute::parse_under("/", "/atl/x").unwrap().name(), "atl");
        assert_eq!(
            McpRoute::parse_under("/gw/mcp/", "/gw/mcp/atl")
                .unwrap()
                .rest(),
            ""
        );
    }

    #[test]
    #[should_panic(expected = "must start with '/'")]
    fn relative_prefix_is_refused() {
        let _ = PathPrefix::new("mcp/atlassian");
    }

    #[test]
    #[should_panic(expected = "must not contain")]
    fn double_slash_prefix_is_refused() {
        let _ = PathPrefix::new("//");
    }

    #[test]
    #[should_panic(expected = "must not contain")]
    fn dotted_prefix_is_refused() {
        let _ = PathPrefix::new("/mcp/../atlassian");
    }
}
