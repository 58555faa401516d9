//! `Refused`: why the outgoing side would not send a request upstream.

use std::{error::Error, fmt};

/// The error of [`ForwardCredentials`](super::ForwardCredentials) (and of
/// [`UpstreamConfig::credential_headers`](super::UpstreamConfig::credential_headers)) for a request it will not
/// send: nothing is sent upstream, fail closed.
///
/// A gateway answers it as a refusal of the caller (`403 access_denied`), not as an unreachable upstream. It
/// names the upstream, never a credential.
///
/// ```
/// use tower_mcp_auth::{upstream::{Refused, UpstreamConfig}, Admission, OAuthPassthrough};
///
/// let github = UpstreamConfig::new("github", "https://api.githubcopilot.com")
///     .unwrap()
///     .with_auth("bearer_token:ghp_gateway".parse().unwrap());
/// let mut extensions = http::Extensions::new();
/// // Never admitted by the layer: refused.
/// assert_eq!(github.credential_headers(&extensions).unwrap_err(), Refused::NotAdmitted);
/// // Admitted only as a passthrough, to an upstream that does not accept passthrough: refused.
/// extensions.insert(Admission::Passthrough);
/// extensions.insert(OAuthPassthrough::new("made-up"));
/// let err = github.credential_headers(&extensions).unwrap_err();
/// assert_eq!(err, Refused::PassthroughNotAccepted);
/// assert!(!err.to_string().contains("ghp_gateway"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// The request carries no [`Admission`](crate::Admission): it never went through
    /// [`McpAuthLayer`](crate::McpAuthLayer), so nothing of the gateway's may go with it.
    NotAdmitted,
    /// The request was admitted only as a passthrough (no gateway identity) and this upstream does not accept
    /// the client's own token: the only credential it could send would be the gateway's.
    PassthroughNotAccepted,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::NotAdmitted => "request was not admitted by the authentication layer",
            Self::PassthroughNotAccepted => {
                "upstream does not accept passthrough and the request has no gateway identity"
            }
        })
    }
}

impl Error for Refused {}
