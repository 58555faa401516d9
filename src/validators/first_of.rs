//! `FirstOf`: asks two validators in order; the first answer that is not `Unknown` wins.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use pin_project_lite::pin_project;

use crate::{
    validate::{BoxError, Recognition, Validator, Verdict},
    Presented,
};

/// A [`Validator`] that asks `first`, and `second` only when `first` says [`Unknown`](Verdict::Unknown).
///
/// Any other answer of `first` (`Valid`, `Denied`, `Invalid`) is final, and an error of either fails closed:
/// the second validator is never asked after an error, so a key store that is down cannot turn a gateway key
/// into something the second validator might accept. The identity is [`Either`] of the two.
///
/// Nest it for more than two: `FirstOf::new(a, FirstOf::new(b, c))`.
///
/// ```
/// use tower_mcp_auth::{validators::{Either, FirstOf, Jwt, StaticKeys}, McpAuthLayer};
///
/// let keys = StaticKeys::new().with_key("sk-ops", "ops");
/// let jwt = Jwt::builder("https://auth.example.com", "https://gateway.example.com/mcp/github")
///     .build()
///     .expect("usable trust roots");
/// // Gateway keys and JWT access tokens side by side.
/// let layer = McpAuthLayer::new(FirstOf::new(keys, jwt));
/// # let _ = layer;
/// ```
pub struct FirstOf<A, B> {
    first: Arc<A>,
    second: Arc<B>,
}

impl<A, B> FirstOf<A, B> {
    /// Asks `first`, then `second` when `first` does not know the credential.
    pub fn new(first: A, second: B) -> Self {
        Self {
            first: Arc::new(first),
            second: Arc::new(second),
        }
    }
}

impl<A, B> Clone for FirstOf<A, B> {
    fn clone(&self) -> Self {
        Self {
            first: Arc::clone(&self.first),
            second: Arc::clone(&self.second),
        }
    }
}

impl<A: fmt::Debug, B: fmt::Debug> fmt::Debug for FirstOf<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirstOf")
            .field("first", &self.first)
            .field("second", &self.second)
            .finish()
    }
}

/// The identity of a [`FirstOf`]: which validator admitted the credential, and its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Either<L, R> {
    /// Admitted by the first validator.
    Left(L),
    /// Admitted by the second validator.
    Right(R),
}

impl<A: Validator, B: Validator> Validator for FirstOf<A, B> {
    type Identity = Either<A::Identity, B::Identity>;
    type Error = BoxError;
    type Future = FirstOfFuture<A, B>;

    fn validate(&self, credential: &str) -> Self::Future {
        FirstOfFuture {
            state: State::First {
                future: self.first.validate(credential),
                second: Arc::clone(&self.second),
                credential: Some(credential.to_owned()),
            },
        }
    }

    fn validate_now(&self, credential: &str) -> Option<Result<Verdict<Self::Identity>, BoxError>> {
        self.validate_presented_now(&Presented::new(credential))
    }

    /// The first validator's answer, else the second's when the first does not know the credential; the
    /// `Presented` is passed on, so the two share its digest.
    fn validate_presented_now(
        &self,
        credential: &Presented<'_>,
    ) -> Option<Result<Verdict<Self::Identity>, BoxError>> {
        match self.first.validate_presented_now(credential)? {
            Err(error) => Some(Err(error.into())),
            Ok(Verdict::Unknown) => Some(
                self.second
                    .validate_presented_now(credential)?
                    .map(|verdict| verdict.map(Either::Right))
                    .map_err(Into::into),
            ),
            Ok(verdict) => Some(Ok(verdict.map(Either::Left))),
        }
    }

    /// Asks both validators, whatever the first one says. The chain rules a credential out only when both do;
    /// when either recognises it, or either cannot tell at once, it is the chain's own. So a first validator
    /// that must await its store no longer hides a token the second knows to be its own, and a chain that cannot
    /// rule a bearer out never lets it travel upstream.
    fn recognize_now(&self, credential: &str) -> Recognition {
        match (
            self.first.recognize_now(credential),
            self.second.recognize_now(credential),
        ) {
            (Recognition::NotOurs, Recognition::NotOurs) => Recognition::NotOurs,
            _ => Recognition::Ours,
        }
    }
}

pin_project! {
    /// The response future of [`FirstOf`].
    pub struct FirstOfFuture<A: Validator, B: Validator> {
        #[pin]
        state: State<A, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<A: Validator, B: Validator> {
        First {
            #[pin]
            future: A::Future,
            second: Arc<B>,
            // Copied only because the second validator may need it; dropped as soon as it is not.
            credential: Option<String>,
        },
        Second {
            #[pin]
            future: B::Future,
        },
    }
}

impl<A: Validator, B: Validator> Future for FirstOfFuture<A, B> {
    type Output = Result<Verdict<Either<A::Identity, B::Identity>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::First {
                    future,
                    second,
                    credential,
                } => match ready!(future.poll(cx)) {
                    Err(error) => return Poll::Ready(Err(error.into())),
                    Ok(Verdict::Unknown) => {
                        let credential = credential.take().expect("polled after completion");
                        let future = second.validate(&credential);
                        state.set(State::Second { future });
                    }
                    Ok(verdict) => return Poll::Ready(Ok(verdict.map(Either::Left))),
                },
                StateProj::Second { future } => {
                    let answer = ready!(future.poll(cx));
                    return Poll::Ready(
                        answer
                            .map(|verdict| verdict.map(Either::Right))
                            .map_err(Into::into),
                    );
                }
            }
        }
    }
}

impl<A: Validator, B: Validator> fmt::Debug for FirstOfFuture<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirstOfFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        future::{ready, Ready},
        sync::Mutex,
    };

    use super::*;

    /// Answers `Unknown`, hashing the credential when `hashes`; records whether the digest was already there.
    struct Probe {
        hashes: bool,
        found_digest: Mutex<Vec<bool>>,
    }

    impl Validator for Probe {
        type Identity = ();
        type Error = Infallible;
        type Future = Ready<Result<Verdict<()>, Infallible>>;

        fn validate(&self, _: &str) -> Self::Future {
            ready(Ok(Verdict::Unknown))
        }

        fn validate_now(&self, credential: &str) -> Option<Result<Verdict<()>, Infallible>> {
            self.validate_presented_now(&Presented::new(credential))
        }

        fn validate_presented_now(
            &self,
            credential: &Presented<'_>,
        ) -> Option<Result<Verdict<()>, Infallible>> {
            let found = credential.computed_sha256().is_some();
            self.found_digest.lock().unwrap().push(found);
            if self.hashes {
                credential.sha256();
            }
            Some(Ok(Verdict::Unknown))
        }
    }

    #[test]
    fn both_validators_share_the_presented_credential_and_its_digest() {
        let probe = |hashes| Probe {
            hashes,
            found_digest: Mutex::new(Vec::new()),
        };
        let chain = FirstOf::new(probe(true), probe(false));
        let presented = Presented::new("upstream-token");
        assert!(matches!(
            chain.validate_presented_now(&presented),
            Some(Ok(Verdict::Unknown))
        ));
        // The first computed the digest; the second was handed the same one.
        assert_eq!(*chain.first.found_digest.lock().unwrap(), [false]);
        assert_eq!(*chain.second.found_digest.lock().unwrap(), [true]);
        assert!(presented.computed_sha256().is_some());
    }
}
