//! The decision table: from what was sent and what the validator said to what the inner service sees.

use crate::{
    credentials::Credential,
    identity::{Authenticated, CredentialSource},
    passthrough::OAuthPassthrough,
    response::{Challenges, Rejection},
    validate::Verdict,
};

/// What the request offered, settled before the validator is asked.
pub(crate) enum Plan {
    /// The key header was validated. `forward` is a bearer token sent beside it, kept only where the route
    /// allows passthrough and the token is not the key itself.
    Key { forward: Option<Credential> },
    /// Only a bearer was sent, and validated as a gateway key; `passthrough` says whether the route lets it
    /// through as the client's own token when it is not one.
    Bearer { passthrough: bool },
}

/// What happens to the request.
pub(crate) enum Decision<I> {
    /// Call the inner service with these extensions. At least one is `Some`.
    Admit {
        identity: Option<Authenticated<I>>,
        passthrough: Option<OAuthPassthrough>,
    },
    /// Answer without calling the inner service.
    Reject(Rejection),
}

impl Plan {
    pub(crate) fn source(&self) -> CredentialSource {
        match self {
            Self::Key { .. } => CredentialSource::KeyHeader,
            Self::Bearer { .. } => CredentialSource::Bearer,
        }
    }

    /// Applies the verdict on `credential` (the key, or the lone bearer). `challenges` gives the route's 401
    /// challenges and is only called for a 401.
    pub(crate) fn decide<I>(
        self,
        credential: &Credential,
        verdict: Verdict<I>,
        challenges: impl FnOnce() -> Challenges,
    ) -> Decision<I> {
        match (self, verdict) {
            (plan, Verdict::Valid(identity)) => {
                let source = plan.source();
                // A lone bearer that is a gateway key never doubles as an upstream token.
                let forward = match plan {
                    Self::Key { forward } => forward,
                    Self::Bearer { .. } => None,
                };
                Decision::Admit {
                    identity: Some(Authenticated::new(identity, source)),
                    passthrough: forward.map(|token| OAuthPassthrough::new(token.as_str())),
                }
            }
            (_, Verdict::Denied) => Decision::Reject(Rejection::Denied),
            (Self::Bearer { passthrough: true }, Verdict::Unknown) => Decision::Admit {
                identity: None,
                passthrough: Some(OAuthPassthrough::new(credential.as_str())),
            },
            // A bad token of the gateway's own issuer: the client should fetch a new one, never pass it on.
            (_, Verdict::Unknown | Verdict::Invalid) => Decision::Reject(Rejection::Unauthorized {
                challenges: challenges(),
                token_sent: true,
            }),
        }
    }
}
