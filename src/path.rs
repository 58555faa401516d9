//! Path matching on whole segments, refusing every path that is not in canonical form.

use std::fmt;

use crate::config_error::ConfigError;

/// A route prefix such as `/mcp/atlassian`, matched on whole path segments.
///
/// `/mcp/atlassian` matches `/mcp/atlassian`, `/mcp/atlassian/` and `/mcp/atlassian/anything`, but not
/// `/mcp/atlassian-evil`. A request path matches nothing at all when it is not canonical: it holds a dot segment
/// (`.` or `..`), an empty segment inside it (`//`), or any percent-encoded byte. Such paths are how a request
/// that a router would normalise onto an opted-in route tries to look like a different one, so they are refused
/// rather than decoded.
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
            return refuse("must not contain '%', '//' or dot segments");
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

/// A path is canonical when it has no percent-encoded byte, no dot segment and no empty segment except a
/// single trailing slash.
pub(crate) fn is_canonical(path: &str) -> bool {
    if path.contains('%') {
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
