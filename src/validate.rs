//! The pluggable part: a [`Validator`] answers with a [`Verdict`] for each presented gateway credential.

use std::{error::Error, fmt, future::Future};

use crate::Presented;

/// An error from a validator, boxed: the key store is down, the network failed, the answer was unreadable.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// What a validator says about a presented credential.
///
/// The distinction between [`Unknown`](Verdict::Unknown) and [`Denied`](Verdict::Denied) is what makes OAuth
/// passthrough safe: only a credential that is *not a gateway key at all* may travel on as an upstream token,
/// while a gateway key that is blocked, expired or over budget is refused outright.
///
/// [`Invalid`](Verdict::Invalid) is for validators of tokens rather than keys (a JWT validator acting as an
/// OAuth resource server): a token the validator recognises as issued for it, but that fails a check, is
/// refused with `401 invalid_token` so the client knows to get a new one, and never passes through.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict<I> {
    /// A gateway key, and the identity it belongs to.
    Valid(I),
    /// Not a gateway key at all.
    Unknown,
    /// A gateway key that may not be used now (blocked, expired, over budget).
    Denied,
    /// A token of this validator's own issuer that fails its checks: expired, not yet valid, badly signed,
    /// signed with an algorithm that is not allowed, or issued for another audience (another route).
    ///
    /// The layer answers `401 invalid_token` with the route's challenges: never passthrough (the token is
    /// not the client's upstream token, it is a bad gateway token) and never `403` (a fresh token may work).
    Invalid,
}

impl<I> Verdict<I> {
    /// Maps the identity of a `Valid` verdict.
    ///
    /// ```
    /// use tower_mcp_auth::Verdict;
    /// assert_eq!(Verdict::Valid(7).map(|n| n * 2), Verdict::Valid(14));
    /// assert_eq!(Verdict::<u8>::Denied.map(|n| n * 2), Verdict::Denied);
    /// ```
    pub fn map<J>(self, f: impl FnOnce(I) -> J) -> Verdict<J> {
        match self {
            Self::Valid(identity) => Verdict::Valid(f(identity)),
            Self::Unknown => Verdict::Unknown,
            Self::Denied => Verdict::Denied,
            Self::Invalid => Verdict::Invalid,
        }
    }
}

/// Whether a credential is known at once to be a validator's own, from [`Validator::recognize_now`].
///
/// Asked of a bearer sent beside a gateway key, before it may travel upstream as the client's own token: a
/// bearer that is [`Ours`](Recognition::Ours) never does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Recognition {
    /// One of the validator's own credentials in some state: a key of its store (valid, blocked, deleted,
    /// rotated), or a token naming its issuer, valid or not.
    Ours,
    /// Certainly not one of its credentials.
    NotOurs,
    /// The validator cannot tell without waiting (a store lookup). The layer lets such a bearer travel on (the
    /// documented limit of a validator that must await its store); a [`FirstOf`](crate::validators::FirstOf)
    /// chain counts it as its own.
    Unsure,
}

/// Decides whether a credential is a gateway key.
///
/// The layer calls [`validate`](Validator::validate) at most once per request, with the key header's value when
/// there is one, else with the bearer token. An error fails the request closed (`503`); so does a validation that
/// outlives the layer's timeout.
///
/// The credential is lent, not given: a validator that answers from memory (a static key set, a cache hit) need
/// not copy it, and one that must await a store copies it into its future. Errors are logged, so they must not
/// contain the credential.
///
/// Implement it directly for a key store, or wrap an `async` closure with [`validate_fn`]:
///
/// ```
/// use std::future::{ready, Ready};
/// use std::convert::Infallible;
/// use tower_mcp_auth::{Validator, Verdict};
///
/// struct OneKey;
///
/// impl Validator for OneKey {
///     type Identity = &'static str;
///     type Error = Infallible;
///     type Future = Ready<Result<Verdict<&'static str>, Infallible>>;
///
///     fn validate(&self, credential: &str) -> Self::Future {
///         // A real validator compares digests in constant time; see `Verdict` for the answers.
///         ready(Ok(if credential == "sk-one" { Verdict::Valid("ops") } else { Verdict::Unknown }))
///     }
/// }
/// ```
pub trait Validator: Send + Sync + 'static {
    /// What a valid credential identifies; stored in [`Authenticated`](crate::Authenticated).
    ///
    /// It is cloned into every admitted request, so prefer a type that clones without allocating
    /// (`Arc<str>`, an `Arc` of a struct, a small `Copy` id).
    type Identity: Clone + Send + Sync + 'static;
    /// Why a validation could not reach a verdict.
    type Error: Into<BoxError>;
    /// The validation in progress.
    type Future: Future<Output = Result<Verdict<Self::Identity>, Self::Error>>;

    /// Starts validating `credential`.
    fn validate(&self, credential: &str) -> Self::Future;

    /// The answer for `credential` when it is at hand without waiting (a static key set, a cache hit), else
    /// `None`, the default.
    ///
    /// The layer asks this first. An answer here lets it call the inner service straight from `call`, without
    /// parking the request and a clone of the inner service in its future; `None` sends it to
    /// [`validate`](Validator::validate). Both must give the same answer.
    fn validate_now(
        &self,
        credential: &str,
    ) -> Option<Result<Verdict<Self::Identity>, Self::Error>> {
        let _ = credential;
        None
    }

    /// [`validate_now`](Validator::validate_now) for a [`Presented`] credential, whose SHA-256 digest is
    /// computed at most once per request: the layer asks this, not `validate_now`.
    ///
    /// The default reads `validate_now(credential.as_str())`. A validator that hashes the credential overrides
    /// it to read [`Presented::sha256`] instead, and a validator that wraps others passes the `Presented` on:
    /// then a chain hashes the credential once, and a token that passes through carries that same digest in its
    /// [`OAuthPassthrough`](crate::OAuthPassthrough) marker. Both must give the same answer.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::future::{ready, Ready};
    /// use tower_mcp_auth::{Presented, Validator, Verdict};
    ///
    /// /// One key, kept as its digest.
    /// struct OneKey([u8; 32]);
    ///
    /// impl Validator for OneKey {
    ///     type Identity = &'static str;
    ///     type Error = Infallible;
    ///     type Future = Ready<Result<Verdict<&'static str>, Infallible>>;
    ///
    ///     fn validate(&self, credential: &str) -> Self::Future {
    ///         ready(self.validate_presented_now(&Presented::new(credential)).unwrap())
    ///     }
    ///
    ///     fn validate_now(&self, credential: &str) -> Option<Result<Verdict<&'static str>, Infallible>> {
    ///         self.validate_presented_now(&Presented::new(credential))
    ///     }
    ///
    ///     fn validate_presented_now(
    ///         &self,
    ///         credential: &Presented<'_>,
    ///     ) -> Option<Result<Verdict<&'static str>, Infallible>> {
    ///         // A real validator compares digests in constant time (`subtle`).
    ///         Some(Ok(if credential.sha256() == &self.0 { Verdict::Valid("ops") } else { Verdict::Unknown }))
    ///     }
    /// }
    /// ```
    fn validate_presented_now(
        &self,
        credential: &Presented<'_>,
    ) -> Option<Result<Verdict<Self::Identity>, Self::Error>> {
        self.validate_now(credential.as_str())
    }

    /// Whether `credential` is known at once to be one of this validator's own, in any state (see
    /// [`Recognition`]).
    ///
    /// The layer asks this of a bearer sent beside a gateway key, on a route that allows passthrough: a bearer
    /// that is [`Recognition::Ours`] is dropped, never forwarded upstream as the client's own token. The default
    /// reads
    /// [`validate_now`](Validator::validate_now): `Unknown` is `NotOurs`, no answer is `Unsure`, and any other
    /// answer (an error too) is `Ours`. A validator that can tell its own credentials from their shape, such as
    /// a JWT validator from the token's issuer, answers here whatever the state of its keys.
    fn recognize_now(&self, credential: &str) -> Recognition {
        match self.validate_now(credential) {
            Some(Ok(Verdict::Unknown)) => Recognition::NotOurs,
            Some(_) => Recognition::Ours,
            None => Recognition::Unsure,
        }
    }
}

/// Wraps an `async` closure as a [`Validator`].
///
/// The closure receives an owned copy of the credential and returns `Result<Verdict<I>, E>` for any error type
/// that converts into [`BoxError`].
///
/// ```
/// use std::convert::Infallible;
/// use tower_mcp_auth::{validate_fn, McpAuthLayer, Verdict};
///
/// let layer = McpAuthLayer::new(validate_fn(|key: String| async move {
///     Ok::<_, Infallible>(if key == "sk-good" { Verdict::Valid("alice".to_owned()) } else { Verdict::Unknown })
/// }));
/// # let _ = layer;
/// ```
pub fn validate_fn<F>(f: F) -> ValidateFn<F> {
    ValidateFn { f }
}

/// A [`Validator`] made from a closure by [`validate_fn`].
#[derive(Clone, Copy)]
pub struct ValidateFn<F> {
    f: F,
}

impl<F> fmt::Debug for ValidateFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidateFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<F, Fut, I, E> Validator for ValidateFn<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Verdict<I>, E>>,
    I: Clone + Send + Sync + 'static,
    E: Into<BoxError>,
{
    type Identity = I;
    type Error = E;
    type Future = Fut;

    fn validate(&self, credential: &str) -> Fut {
        (self.f)(credential.to_owned())
    }
}
