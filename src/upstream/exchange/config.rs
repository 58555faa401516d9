//! What an exchange asks for and how the gateway authenticates: [`ExchangeTarget`], [`TokenClientAuth`].

use std::fmt;

/// RFC 8693 §2.1's grant type.
pub(super) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3's type of an OAuth access token, the default subject token type.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// How the gateway authenticates to the token endpoint (RFC 6749 §2.3.1). The secret never shows in `Debug`.
#[derive(Clone)]
pub struct TokenClientAuth {
    pub(super) method: AuthMethod,
    pub(super) client_id: String,
    pub(super) client_secret: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AuthMethod {
    Basic,
    Post,
}

impl TokenClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-encoded id and secret.
    pub fn basic(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            method: AuthMethod::Basic,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }

    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    pub fn post(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            method: AuthMethod::Post,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }
}

impl fmt::Debug for TokenClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClientAuth")
            .field("method", &self.method)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What a token is exchanged for: one upstream's `audience` and/or `resource` (RFC 8707), and `scope`.
///
/// ```
/// use tower_mcp_auth::upstream::ExchangeTarget;
///
/// let github = ExchangeTarget::resource("https://mcp.github.example/").with_scope("repo:read");
/// # let _ = github;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExchangeTarget {
    pub(super) audience: Option<String>,
    pub(super) resource: Option<String>,
    pub(super) scope: Option<String>,
}

impl ExchangeTarget {
    /// A token for this resource indicator (RFC 8707): usually the upstream's URL.
    pub fn resource(resource: impl Into<String>) -> Self {
        Self {
            resource: Some(resource.into()),
            ..Self::default()
        }
    }

    /// The default target of an upstream: a token whose resource indicator is the upstream's URL.
    ///
    /// ```
    /// use tower_mcp_auth::upstream::{ExchangeTarget, UpstreamConfig};
    ///
    /// let github = UpstreamConfig::new("github", "https://mcp.github.example/mcp").unwrap();
    /// assert_eq!(
    ///     ExchangeTarget::upstream(&github),
    ///     ExchangeTarget::resource("https://mcp.github.example/mcp")
    /// );
    /// ```
    pub fn upstream(upstream: &crate::upstream::UpstreamConfig) -> Self {
        Self::resource(upstream.url().to_string())
    }

    /// A token for this logical audience (RFC 8693 `audience`).
    pub fn audience(audience: impl Into<String>) -> Self {
        Self {
            audience: Some(audience.into()),
            ..Self::default()
        }
    }

    /// Adds a resource indicator.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Adds an audience.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Asks for these space-separated scopes.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}
