//! The decision table (see the [crate documentation](crate#decisions)): from the credentials a request sent,
//! whether its route allows passthrough and what the validator said, to what the inner service sees or the
//! client gets.
//!
//! [`plan`] and [`Plan::decide`] are pure: they read nothing but their arguments, and the tests below run them
//! against the table row by row. [`settle`] applies a decision to a request (extensions, tracing event).

use bytes::Bytes;
use http::{Request, Response};

use super::config::Config;
use crate::{
    admission::Admission,
    credentials::{Authorization, Credential, Credentials},
    identity::{Authenticated, CredentialSource},
    passthrough::OAuthPassthrough,
    response::{is_grpc, Challenges, Rejection},
    secret::credentials_equal,
    timeout::TimedOut,
    trace::{self, Outcome},
    validate::{BoxError, Verdict},
    Presented,
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

/// The validator failed or timed out: no verdict.
#[derive(Debug)]
pub(crate) struct NoVerdict;

/// The first half of the table, before any validator call: which credential to validate and what its verdict
/// will decide, or the answer when there is nothing to validate (with the credential source it is logged
/// under).
///
/// `allows` says whether the route allows passthrough, and is asked only where the table reads it;
/// `known_gateway_key` whether a bearer sent beside a key is known at once to be a gateway key itself (it is
/// then dropped, never forwarded); `challenges` gives the route's 401 challenges.
pub(crate) fn plan(
    credentials: Credentials,
    allows: impl Fn() -> bool,
    known_gateway_key: impl FnOnce(&str) -> bool,
    challenges: impl FnOnce() -> Challenges,
) -> Result<(Credential, Plan), (Rejection, &'static str)> {
    match credentials {
        Credentials {
            key: Some(key),
            authorization,
        } => {
            let forward = match authorization {
                Some(Authorization::Bearer(token))
                    if allows()
                        && !credentials_equal(token.as_str(), key.as_str())
                        && !known_gateway_key(token.as_str()) =>
                {
                    Some(token)
                }
                _ => None,
            };
            Ok((key, Plan::Key { forward }))
        }
        Credentials {
            key: None,
            authorization: Some(Authorization::Bearer(token)),
        } => Ok((
            token,
            Plan::Bearer {
                passthrough: allows(),
            },
        )),
        Credentials {
            key: None,
            authorization: Some(Authorization::Foreign),
        } => Err((Rejection::ForeignScheme, "authorization")),
        Credentials {
            key: None,
            authorization: None,
        } => Err((
            Rejection::Unauthorized {
                challenges: challenges(),
                token_sent: false,
            },
            "none",
        )),
    }
}

impl Plan {
    pub(crate) fn source(&self) -> CredentialSource {
        match self {
            Self::Key { .. } => CredentialSource::KeyHeader,
            Self::Bearer { .. } => CredentialSource::Bearer,
        }
    }

    /// The second half of the table: applies the verdict on `credential` (the key, or the lone bearer).
    /// `challenges` gives the route's 401 challenges and is only called for a 401.
    pub(crate) fn decide<I>(
        self,
        credential: &Presented<'_>,
        verdict: Result<Verdict<I>, NoVerdict>,
        challenges: impl FnOnce() -> Challenges,
    ) -> Decision<I> {
        let Ok(verdict) = verdict else {
            // Fail closed: never passthrough, never an identity.
            return Decision::Reject(Rejection::Unavailable);
        };
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
                passthrough: Some(OAuthPassthrough::presented(credential)),
            },
            // A bad token of the gateway's own issuer: the client should fetch a new one, never pass it on.
            (_, Verdict::Unknown | Verdict::Invalid) => Decision::Reject(Rejection::Unauthorized {
                challenges: challenges(),
                token_sent: true,
            }),
        }
    }
}

/// Applies the validator's answer on `credential` to `request`: inserts the extensions and returns `None` when
/// the request is admitted, or returns the response that refuses it. Records the request's tracing event.
pub(crate) fn settle<ReqBody, I, E>(
    config: &Config,
    request: &mut Request<ReqBody>,
    credential: &Presented<'_>,
    plan: Plan,
    answer: Result<Result<Verdict<I>, E>, TimedOut>,
) -> Option<Response<Bytes>>
where
    I: Clone + Send + Sync + 'static,
    E: Into<BoxError>,
{
    let source = plan.source().as_str();
    let answer = answer
        .map_err(BoxError::from)
        .and_then(|verdict| verdict.map_err(Into::into));
    let (verdict, error) = match answer {
        Ok(verdict) => (Ok(verdict), None),
        Err(error) => (Err(NoVerdict), Some(error)),
    };
    match plan.decide(credential, verdict, || config.challenges(request)) {
        Decision::Admit {
            identity,
            passthrough,
        } => {
            let outcome = if identity.is_some() {
                Outcome::Authenticated {
                    forwards_token: passthrough.is_some(),
                }
            } else {
                Outcome::Passthrough
            };
            trace::record(outcome, source, None, Some(credential), None);
            let extensions = request.extensions_mut();
            // The non-generic admission fact, for code that must not depend on the identity type.
            extensions.insert(match &identity {
                Some(identity) => Admission::Authenticated(identity.source()),
                None => Admission::Passthrough,
            });
            if let Some(identity) = identity {
                extensions.insert(identity);
            }
            if let Some(passthrough) = passthrough {
                extensions.insert(passthrough);
            }
            None
        }
        Decision::Reject(rejection) => {
            let outcome = match rejection {
                Rejection::Denied => Outcome::Denied,
                Rejection::Unavailable => Outcome::Error,
                _ => Outcome::Rejected,
            };
            let response = rejection.into_response(is_grpc(request.headers()));
            trace::record(
                outcome,
                source,
                Some(response.status().as_u16()),
                Some(credential),
                error.as_ref(),
            );
            Some(response)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The decision table of `auth-decisions.md` and the crate docs, one row per case, run against the pure
    //! functions: headers → [`plan`] → verdict → [`Plan::decide`].

    use http::{header::WWW_AUTHENTICATE, HeaderMap, HeaderName, HeaderValue};

    use super::*;
    use crate::credentials::take_credentials;

    const KEY_HEADER: HeaderName = HeaderName::from_static("x-litellm-api-key");
    const METADATA: &str = "https://gw.example/.well-known/oauth-protected-resource/mcp/atl";

    /// What the inner service sees or the client gets.
    #[derive(Debug, PartialEq)]
    enum Seen {
        /// The inner service, with these extensions.
        Inner {
            identity: Option<(String, CredentialSource)>,
            passthrough: Option<String>,
        },
        /// The layer's answer: status and `WWW-Authenticate`; `asked` says whether the validator was.
        Answer {
            status: u16,
            challenge: Option<String>,
            asked: bool,
        },
    }

    fn authenticated(id: &str, source: CredentialSource, passthrough: Option<&str>) -> Seen {
        Seen::Inner {
            identity: Some((id.to_owned(), source)),
            passthrough: passthrough.map(str::to_owned),
        }
    }

    fn passthrough(token: &str) -> Seen {
        Seen::Inner {
            identity: None,
            passthrough: Some(token.to_owned()),
        }
    }

    fn answer(status: u16, challenge: Option<&str>, asked: bool) -> Seen {
        Seen::Answer {
            status,
            challenge: challenge.map(str::to_owned),
            asked,
        }
    }

    struct Row {
        name: &'static str,
        key: Option<&'static str>,
        authorization: Option<&'static str>,
        /// The validator's answer on the credential it is asked about; `Err` for an error or a timeout.
        verdict: Result<Verdict<String>, NoVerdict>,
        /// Whether the validator knows at once that a bearer sent beside a key is a gateway key too.
        bearer_is_known_key: bool,
        /// Whether the route's passthrough policy allows passthrough (with resource metadata configured).
        allows: bool,
        expect: Seen,
    }

    fn run(row: Row) -> Seen {
        let mut headers = HeaderMap::new();
        if let Some(key) = row.key {
            headers.insert(KEY_HEADER, HeaderValue::from_static(key));
        }
        if let Some(authorization) = row.authorization {
            headers.insert("authorization", HeaderValue::from_static(authorization));
        }
        let credentials = match take_credentials(&mut headers, &KEY_HEADER, 8 * 1024) {
            Ok(credentials) => credentials,
            Err(_) => panic!("{}: the preconditions refused the headers", row.name),
        };
        let challenges = || {
            if row.allows {
                Challenges::with_resource_metadata(METADATA).unwrap()
            } else {
                Challenges::bare()
            }
        };
        let respond = |rejection: Rejection, asked: bool| {
            let response = rejection.into_response(false);
            Seen::Answer {
                status: response.status().as_u16(),
                challenge: response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap().to_owned()),
                asked,
            }
        };
        let (credential, plan) = match plan(
            credentials,
            || row.allows,
            |_| row.bearer_is_known_key,
            challenges,
        ) {
            Ok(planned) => planned,
            Err((rejection, _)) => return respond(rejection, false),
        };
        match plan.decide(
            &Presented::new(credential.as_str()),
            row.verdict,
            challenges,
        ) {
            Decision::Admit {
                identity,
                passthrough,
            } => {
                assert!(identity.is_some() || passthrough.is_some(), "{}", row.name);
                Seen::Inner {
                    identity: identity.map(|a| (a.identity().clone(), a.source())),
                    passthrough: passthrough.map(|p| p.expose_token().to_owned()),
                }
            }
            Decision::Reject(rejection) => respond(rejection, true),
        }
    }

    fn valid() -> Result<Verdict<String>, NoVerdict> {
        Ok(Verdict::Valid("alice".to_owned()))
    }

    #[test]
    fn decision_table() {
        use CredentialSource::{Bearer, KeyHeader};
        const INVALID_TOKEN: Option<&str> = Some(r#"Bearer error="invalid_token""#);
        let invalid_token_with_metadata =
            format!(r#"Bearer error="invalid_token", resource_metadata="{METADATA}""#);
        let bare_with_metadata = format!(r#"Bearer resource_metadata="{METADATA}""#);
        let rows = [
            Row {
                name: "valid key, no authorization",
                key: Some("sk-good"),
                authorization: None,
                verdict: valid(),
                bearer_is_known_key: false,
                allows: true,
                expect: authenticated("alice", KeyHeader, None),
            },
            Row {
                name: "valid key, another bearer, route allows: dual credential",
                key: Some("sk-good"),
                authorization: Some("Bearer upstream-token"),
                verdict: valid(),
                bearer_is_known_key: false,
                allows: true,
                expect: authenticated("alice", KeyHeader, Some("upstream-token")),
            },
            Row {
                name: "valid key, another bearer, route denies: bearer dropped",
                key: Some("sk-good"),
                authorization: Some("Bearer upstream-token"),
                verdict: valid(),
                bearer_is_known_key: false,
                allows: false,
                expect: authenticated("alice", KeyHeader, None),
            },
            Row {
                name: "valid key, the same key as bearer: nothing to forward",
                key: Some("sk-good"),
                authorization: Some("Bearer sk-good"),
                verdict: valid(),
                bearer_is_known_key: false,
                allows: true,
                expect: authenticated("alice", KeyHeader, None),
            },
            Row {
                name: "valid key, a bearer known to be a gateway key: never forwarded",
                key: Some("sk-good"),
                authorization: Some("Bearer sk-other"),
                verdict: valid(),
                bearer_is_known_key: true,
                allows: true,
                expect: authenticated("alice", KeyHeader, None),
            },
            Row {
                name: "valid key, foreign scheme: header dropped",
                key: Some("sk-good"),
                authorization: Some("Basic dXNlcjpwYXNz"),
                verdict: valid(),
                bearer_is_known_key: false,
                allows: true,
                expect: authenticated("alice", KeyHeader, None),
            },
            Row {
                name: "unknown key: 401 invalid_token, no fallback",
                key: Some("sk-made-up"),
                authorization: Some("Bearer upstream-token"),
                verdict: Ok(Verdict::Unknown),
                bearer_is_known_key: false,
                allows: true,
                expect: answer(401, Some(invalid_token_with_metadata.as_str()), true),
            },
            Row {
                name: "unknown key, route denies passthrough: bare invalid_token",
                key: Some("sk-made-up"),
                authorization: None,
                verdict: Ok(Verdict::Unknown),
                bearer_is_known_key: false,
                allows: false,
                expect: answer(401, INVALID_TOKEN, true),
            },
            Row {
                name: "denied key: 403",
                key: Some("sk-blocked"),
                authorization: Some("Bearer upstream-token"),
                verdict: Ok(Verdict::Denied),
                bearer_is_known_key: false,
                allows: true,
                expect: answer(403, None, true),
            },
            Row {
                name: "invalid key: 401 invalid_token",
                key: Some("sk-bad"),
                authorization: None,
                verdict: Ok(Verdict::Invalid),
                bearer_is_known_key: false,
                allows: false,
                expect: answer(401, INVALID_TOKEN, true),
            },
            Row {
                name: "bearer that is a valid key: authenticated, never passthrough",
                key: None,
                authorization: Some("Bearer sk-good"),
                verdict: valid(),
                bearer_is_known_key: false,
                allows: true,
                expect: authenticated("alice", Bearer, None),
            },
            Row {
                name: "unknown bearer, route allows: passthrough without identity",
                key: None,
                authorization: Some("Bearer upstream-token"),
                verdict: Ok(Verdict::Unknown),
                bearer_is_known_key: false,
                allows: true,
                expect: passthrough("upstream-token"),
            },
            Row {
                name: "unknown bearer, route denies: 401 invalid_token",
                key: None,
                authorization: Some("Bearer upstream-token"),
                verdict: Ok(Verdict::Unknown),
                bearer_is_known_key: false,
                allows: false,
                expect: answer(401, INVALID_TOKEN, true),
            },
            Row {
                name: "denied bearer: 403, never passthrough",
                key: None,
                authorization: Some("Bearer sk-blocked"),
                verdict: Ok(Verdict::Denied),
                bearer_is_known_key: false,
                allows: true,
                expect: answer(403, None, true),
            },
            Row {
                name: "invalid bearer: 401 invalid_token, never passthrough",
                key: None,
                authorization: Some("Bearer expired-jwt"),
                verdict: Ok(Verdict::Invalid),
                bearer_is_known_key: false,
                allows: true,
                expect: answer(401, Some(invalid_token_with_metadata.as_str()), true),
            },
            Row {
                name: "validator error on a key: 503",
                key: Some("sk-good"),
                authorization: Some("Bearer upstream-token"),
                verdict: Err(NoVerdict),
                bearer_is_known_key: false,
                allows: true,
                expect: answer(503, None, true),
            },
            Row {
                name: "validator error on a bearer: 503, never passthrough",
                key: None,
                authorization: Some("Bearer upstream-token"),
                verdict: Err(NoVerdict),
                bearer_is_known_key: false,
                allows: true,
                expect: answer(503, None, true),
            },
            Row {
                name: "foreign scheme alone: 401 bare Bearer, validator not asked",
                key: None,
                authorization: Some("Basic dXNlcjpwYXNz"),
                verdict: valid(),
                bearer_is_known_key: false,
                allows: true,
                expect: answer(401, Some("Bearer"), false),
            },
            Row {
                name: "no credential, route allows: 401 with resource metadata",
                key: None,
                authorization: None,
                verdict: valid(),
                bearer_is_known_key: false,
                allows: true,
                expect: answer(401, Some(bare_with_metadata.as_str()), false),
            },
            Row {
                name: "no credential, route denies: 401 bare Bearer",
                key: None,
                authorization: None,
                verdict: valid(),
                bearer_is_known_key: false,
                allows: false,
                expect: answer(401, Some("Bearer"), false),
            },
        ];
        let mut failures = Vec::new();
        for row in rows {
            let name = row.name;
            let expected = format!("{:?}", row.expect);
            let seen = format!("{:?}", run(row));
            if seen != expected {
                failures.push(format!("{name}:\n  expected {expected}\n  seen     {seen}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
