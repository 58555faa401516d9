//! `McpAuthLayer`: the builder of the configuration, and the [`Layer`] that wraps services with it.

use std::{fmt, sync::Arc, time::Duration};

use http::{
    header::{AUTHORIZATION, COOKIE, HOST},
    HeaderName,
};
use tower_layer::Layer;

use super::{
    config::{Config, DEFAULT_KEY_HEADER, DEFAULT_MAX_CREDENTIAL_LEN, DEFAULT_VALIDATION_TIMEOUT},
    service::McpAuth,
};
use crate::{
    config_error::ConfigError, passthrough::PassthroughPolicy, response::Challenges,
    route::PathPrefix,
};

/// A [`Layer`] that authenticates MCP gateway requests; see the [crate documentation](crate) for the decisions.
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use http::{HeaderName, Request};
/// use tower_mcp_auth::{validate_fn, McpAuthLayer, PassthroughPolicy, Verdict};
///
/// let layer = McpAuthLayer::new(validate_fn(|key: String| async move {
///     Ok::<_, Infallible>(if key == "sk-good" { Verdict::Valid(1u64) } else { Verdict::Unknown })
/// }))
/// .key_header(HeaderName::from_static("x-api-key"))
/// .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"]))
/// .resource_metadata(
///     "/mcp/atlassian",
///     "https://gw.example/.well-known/oauth-protected-resource/mcp/atlassian",
/// )
/// .validation_timeout(Duration::from_secs(2))
/// .max_credential_len(4096);
/// # let _ = layer;
/// ```
pub struct McpAuthLayer<V> {
    validator: Arc<V>,
    config: Arc<Config>,
}

impl<V> McpAuthLayer<V> {
    /// A layer that asks `validator` about every gateway credential, with the defaults: key header
    /// `x-litellm-api-key`, no passthrough anywhere, a 5 s validation timeout and an 8 KiB credential cap.
    pub fn new(validator: V) -> Self {
        Self {
            validator: Arc::new(validator),
            config: Arc::new(Config {
                key_header: DEFAULT_KEY_HEADER,
                policy: PassthroughPolicy::none(),
                timeout: DEFAULT_VALIDATION_TIMEOUT,
                max_credential_len: DEFAULT_MAX_CREDENTIAL_LEN,
                resource_metadata: Vec::new(),
            }),
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Sets the header that carries gateway keys (default `x-litellm-api-key`).
    ///
    /// # Panics
    /// When `name` is one the key header cannot be; see [`try_key_header`](Self::try_key_header).
    pub fn key_header(self, name: HeaderName) -> Self {
        self.try_key_header(name)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`key_header`](Self::key_header) for a name read from configuration: a [`ConfigError`] instead of a
    /// panic when `name` is
    /// - `authorization`, which has its own rules;
    /// - an `x-mcp-` name, which the gateway reads as a client's per-server credential
    ///   ([`TakeClientCredentialsLayer`](crate::client_credentials::TakeClientCredentialsLayer)): a gateway key there
    ///   would be taken for a credential to send upstream;
    /// - `cookie` or `host`, which every browser and HTTP client sets for its own purposes: a key there would
    ///   be a session cookie or a host name, and the header would be removed from every request.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_mcp_auth::{validators::StaticKeys, McpAuthLayer};
    ///
    /// let layer = McpAuthLayer::new(StaticKeys::new().with_key("sk-a", ()));
    /// assert!(layer.clone().try_key_header(HeaderName::from_static("x-api-key")).is_ok());
    /// let err = layer.try_key_header(HeaderName::from_static("x-mcp-github-key")).unwrap_err();
    /// assert_eq!(err.setting(), "key header");
    /// ```
    pub fn try_key_header(self, name: HeaderName) -> Result<Self, ConfigError> {
        let refuse = |reason| Err(ConfigError::new("key header", name.as_str(), reason));
        if name == AUTHORIZATION {
            return refuse("cannot be `authorization`, which has its own rules");
        }
        if name.as_str().starts_with("x-mcp-") {
            return refuse(
                "cannot be an `x-mcp-` header, which carries client credentials for upstreams",
            );
        }
        if name == COOKIE || name == HOST {
            return refuse("cannot be `cookie` or `host`, which clients set for other purposes");
        }
        Ok(self.configure(|c| c.key_header = name))
    }

    /// Sets which requests may carry an unknown bearer upstream as the client's own OAuth token
    /// (default: none).
    pub fn passthrough(self, policy: PassthroughPolicy) -> Self {
        self.configure(|c| c.policy = policy)
    }

    /// Sets how long a validation may take before the request is answered with 503 (default 5 s).
    pub fn validation_timeout(self, timeout: Duration) -> Self {
        self.configure(|c| c.timeout = timeout)
    }

    /// Sets the longest raw credential header value accepted; longer ones are answered with 431 without being
    /// parsed (default 8 KiB).
    pub fn max_credential_len(self, max: usize) -> Self {
        self.configure(|c| c.max_credential_len = max)
    }

    /// Names the RFC 9728 protected-resource metadata of the route under `prefix`.
    ///
    /// A request on that route that carries no credential, on a route whose passthrough policy allows
    /// passthrough, is answered `401` with `WWW-Authenticate: Bearer resource_metadata="<url>"`, so an MCP
    /// client can discover where to get a token. The longest matching prefix wins.
    ///
    /// # Panics
    /// When `prefix` is not an absolute canonical path, or `url` is empty, not visible ASCII or holds `"` or
    /// `\`. For values read from configuration, use [`try_resource_metadata`](Self::try_resource_metadata).
    pub fn resource_metadata(self, prefix: &str, url: &str) -> Self {
        self.try_resource_metadata(prefix, url)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`resource_metadata`](Self::resource_metadata) for values read from configuration: a [`ConfigError`]
    /// naming the prefix or URL instead of a panic.
    ///
    /// ```
    /// use tower_mcp_auth::{validators::StaticKeys, McpAuthLayer};
    ///
    /// let layer = McpAuthLayer::new(StaticKeys::new().with_key("sk-a", ()));
    /// let err = layer
    ///     .try_resource_metadata("/mcp/atlassian", "https://gw.example/\"x")
    ///     .unwrap_err();
    /// assert_eq!(err.setting(), "resource metadata URL");
    /// ```
    pub fn try_resource_metadata(self, prefix: &str, url: &str) -> Result<Self, ConfigError> {
        let route = (
            PathPrefix::try_new(prefix)?,
            Challenges::with_resource_metadata(url)?,
        );
        Ok(self.configure(|c| c.resource_metadata.push(route)))
    }
}

impl<V> Clone for McpAuthLayer<V> {
    fn clone(&self) -> Self {
        Self {
            validator: Arc::clone(&self.validator),
            config: Arc::clone(&self.config),
        }
    }
}

impl<V> fmt::Debug for McpAuthLayer<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpAuthLayer")
            .field("validator", &std::any::type_name::<V>())
            .field("config", &self.config)
            .finish()
    }
}

impl<S, V> Layer<S> for McpAuthLayer<V> {
    type Service = McpAuth<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        McpAuth::new(inner, Arc::clone(&self.validator), Arc::clone(&self.config))
    }
}
