//! `Authenticated<I>`: who the caller is, as far as the gateway is concerned.

/// Where the gateway credential that admitted a request was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialSource {
    /// The key header (`x-litellm-api-key` unless configured otherwise).
    KeyHeader,
    /// `Authorization: Bearer <key>`, the form older clients use.
    Bearer,
}

impl CredentialSource {
    /// A short, stable name for logs and metrics: `key_header` or `bearer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeyHeader => "key_header",
            Self::Bearer => "bearer",
        }
    }
}

/// Request extension: the caller presented a gateway credential that the validator accepted.
///
/// This is the **only** extension that says who the caller is. An [`OAuthPassthrough`](crate::OAuthPassthrough)
/// marker on its own means "no identity": code that authorises, bills or rate-limits must look for this type.
///
/// ```
/// use http::Request;
/// use tower_mcp_auth::Authenticated;
///
/// fn who(req: &Request<()>) -> Option<&str> {
///     req.extensions().get::<Authenticated<String>>().map(|a| a.identity().as_str())
/// }
/// assert_eq!(who(&Request::new(())), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated<I> {
    identity: I,
    source: CredentialSource,
}

impl<I> Authenticated<I> {
    /// Records an identity admitted through `source`.
    ///
    /// The layer builds this for you; the constructor is public so tests of inner services can build requests
    /// as the layer would hand them over.
    pub fn new(identity: I, source: CredentialSource) -> Self {
        Self { identity, source }
    }

    /// The identity the validator returned for the gateway credential.
    pub fn identity(&self) -> &I {
        &self.identity
    }

    /// Consumes the marker and returns the identity.
    pub fn into_identity(self) -> I {
        self.identity
    }

    /// Where the gateway credential was found.
    pub fn source(&self) -> CredentialSource {
        self.source
    }
}
