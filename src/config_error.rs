//! `ConfigError`: why a configured value was refused by a `try_` builder.

use std::{error::Error, fmt};

/// A configured value the layer refuses: returned by the `try_` builders
/// ([`PassthroughPolicy::try_path_prefixes`](crate::PassthroughPolicy::try_path_prefixes),
/// [`McpAuthLayer::try_resource_metadata`](crate::McpAuthLayer::try_resource_metadata),
/// [`McpAuthLayer::try_key_header`](crate::McpAuthLayer::try_key_header)), for values that come from a
/// configuration file rather than from code. The panicking builders panic with the same message.
///
/// `Display` names the setting, the value and what is wrong with it; these values are configuration, never
/// credentials.
///
/// ```
/// use tower_mcp_auth::PassthroughPolicy;
///
/// let err = PassthroughPolicy::try_path_prefixes(["/mcp/../admin"]).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid route prefix \"/mcp/../admin\": it must not contain '%', '\\', '//' or dot segments"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    setting: &'static str,
    value: String,
    reason: &'static str,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, value: &str, reason: &'static str) -> Self {
        Self {
            setting,
            value: value.to_owned(),
            reason,
        }
    }

    /// The setting the refused value was for: `"route prefix"`, `"resource metadata URL"` or `"key header"`.
    ///
    /// ```
    /// use tower_mcp_auth::PassthroughPolicy;
    ///
    /// let err = PassthroughPolicy::try_path_prefixes(["mcp"]).unwrap_err();
    /// assert_eq!(err.setting(), "route prefix");
    /// ```
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// The refused value, as configured.
    ///
    /// ```
    /// use tower_mcp_auth::PassthroughPolicy;
    ///
    /// let err = PassthroughPolicy::try_path_prefixes(["mcp"]).unwrap_err();
    /// assert_eq!(err.value(), "mcp");
    /// ```
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} {:?}: it {}",
            self.setting, self.value, self.reason
        )
    }
}

impl Error for ConfigError {}
