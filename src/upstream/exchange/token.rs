//! The tokens of an exchange: the subject a client presented ([`Subject`], read from an identity through
//! [`SubjectToken`]) and the token the authorization server issued for it ([`ExchangedToken`]).

use std::{fmt, sync::Arc, time::SystemTime};

use crate::{secret::Fingerprint, validators::Either};

/// The token a client presented to the gateway, as the subject of an exchange, and when it expires.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    /// The token itself.
    pub token: &'a str,
    /// When it expires: an exchanged token is never kept longer.
    pub expires_at: Option<SystemTime>,
}

impl fmt::Debug for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject")
            .field("token", &Fingerprint::of(self.token))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An identity that may carry a subject token for exchange: the claims of a JWT the gateway admitted.
///
/// Identities of gateway keys carry none (`String`, `()`); [`Either`] (from
/// [`FirstOf`](crate::validators::FirstOf)) carries its side's. Implement it for your own identity type to
/// exchange the tokens it holds.
pub trait SubjectToken {
    /// The subject token, if this identity holds one.
    fn subject_token(&self) -> Option<Subject<'_>>;
}

impl<T: SubjectToken + ?Sized> SubjectToken for Arc<T> {
    fn subject_token(&self) -> Option<Subject<'_>> {
        (**self).subject_token()
    }
}

impl<L: SubjectToken, R: SubjectToken> SubjectToken for Either<L, R> {
    fn subject_token(&self) -> Option<Subject<'_>> {
        match self {
            Either::Left(left) => left.subject_token(),
            Either::Right(right) => right.subject_token(),
        }
    }
}

/// A gateway key's identity holds no token to exchange.
impl SubjectToken for String {
    fn subject_token(&self) -> Option<Subject<'_>> {
        None
    }
}

/// A gateway key's identity holds no token to exchange.
impl SubjectToken for () {
    fn subject_token(&self) -> Option<Subject<'_>> {
        None
    }
}

#[cfg(feature = "jwt")]
impl SubjectToken for crate::validators::JwtClaims {
    fn subject_token(&self) -> Option<Subject<'_>> {
        Some(Subject {
            token: self.token(),
            expires_at: Some(self.expires_at()),
        })
    }
}

/// A token the authorization server issued in exchange. `Debug` shows a [`Fingerprint`] only.
#[derive(Clone)]
pub struct ExchangedToken {
    pub(super) token: Arc<str>,
}

impl ExchangedToken {
    /// The token, to send upstream as `Authorization: Bearer`. Never log it.
    pub fn as_str(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for ExchangedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExchangedToken")
            .field(&Fingerprint::of(&self.token))
            .finish()
    }
}
