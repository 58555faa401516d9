//! `Admission`: how the layer let a request in, readable without knowing the identity type.

use crate::identity::CredentialSource;

/// Request extension: the layer admitted this request, and how.
///
/// [`McpAuthLayer`](crate::McpAuthLayer) inserts it on every request it lets through, beside
/// [`Authenticated<I>`](crate::Authenticated) and/or [`OAuthPassthrough`](crate::OAuthPassthrough). Unlike
/// `Authenticated<I>`, it does not depend on the validator's identity type, so code on the outgoing side
/// ([`ForwardCredentials`](crate::upstream::ForwardCredentials)) can ask "did the gateway authenticate this
/// caller?" without being generic over it. A request without it was never admitted by the layer, and code that
/// sends gateway-held material refuses it.
///
/// ```
/// use http::Request;
/// use tower_mcp_auth::{Admission, CredentialSource};
///
/// fn may_use_gateway_credentials(req: &Request<()>) -> bool {
///     req.extensions().get::<Admission>().is_some_and(|a| a.is_authenticated())
/// }
/// let mut req = Request::new(());
/// assert!(!may_use_gateway_credentials(&req));
/// req.extensions_mut().insert(Admission::Passthrough);
/// assert!(!may_use_gateway_credentials(&req));
/// req.extensions_mut().insert(Admission::Authenticated(CredentialSource::KeyHeader));
/// assert!(may_use_gateway_credentials(&req));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Admission {
    /// The caller presented a gateway credential that the validator accepted; the request also carries
    /// [`Authenticated<I>`](crate::Authenticated), and may carry an
    /// [`OAuthPassthrough`](crate::OAuthPassthrough) token beside it (dual credential).
    Authenticated(CredentialSource),
    /// The caller has no gateway identity: only its own bearer token, admitted because the route accepts
    /// passthrough. The request carries [`OAuthPassthrough`](crate::OAuthPassthrough) and nothing else.
    Passthrough,
}

impl Admission {
    /// Whether the caller was authenticated by a gateway credential (and so may use gateway-held material).
    pub fn is_authenticated(self) -> bool {
        matches!(self, Self::Authenticated(_))
    }

    /// A short, stable name for logs and metrics: `authenticated` or `passthrough`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authenticated(_) => "authenticated",
            Self::Passthrough => "passthrough",
        }
    }
}
