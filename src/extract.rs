//! axum extractors (cargo feature `axum`): handlers take [`Authenticated<I>`] and [`OAuthPassthrough`] as
//! arguments, or `Option<_>` of them.

use std::{convert::Infallible, fmt};

use axum_core::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{header::WWW_AUTHENTICATE, request::Parts, HeaderValue, StatusCode};

use crate::{identity::Authenticated, passthrough::OAuthPassthrough};

/// Rejection of a handler that requires an extension the request does not carry: a gateway identity on a
/// request admitted by passthrough only, or a passthrough token on a request that brought none.
///
/// Answers `401` with `WWW-Authenticate: Bearer` and a small JSON body.
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_mcp_auth::Authenticated;
///
/// // Only callers with a gateway key may read usage; passthrough-only callers get 401.
/// async fn usage(who: Authenticated<String>) -> String {
///     format!("usage of {}", who.identity())
/// }
/// let app: Router = Router::new().route("/usage", get(usage));
/// # let _ = app;
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MissingCredential {
    what: &'static str,
}

impl fmt::Debug for MissingCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MissingCredential")
            .field("what", &self.what)
            .finish()
    }
}

impl fmt::Display for MissingCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "this endpoint needs {}", self.what)
    }
}

impl std::error::Error for MissingCredential {}

impl IntoResponse for MissingCredential {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": "unauthorized",
            "error_description": self.to_string(),
        });
        (
            StatusCode::UNAUTHORIZED,
            [
                (WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")),
                (
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

/// The extension `T`, or the rejection naming `what` the handler needs.
fn required<T: Clone + Send + Sync + 'static>(
    parts: &Parts,
    what: &'static str,
) -> Result<T, MissingCredential> {
    parts
        .extensions
        .get::<T>()
        .cloned()
        .ok_or(MissingCredential { what })
}

impl<S, I> FromRequestParts<S> for Authenticated<I>
where
    S: Send + Sync,
    I: Clone + Send + Sync + 'static,
{
    type Rejection = MissingCredential;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        required(parts, "a gateway API key")
    }
}

impl<S, I> OptionalFromRequestParts<S> for Authenticated<I>
where
    S: Send + Sync,
    I: Clone + Send + Sync + 'static,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for OAuthPassthrough {
    type Rejection = MissingCredential;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        required(parts, "an OAuth bearer token")
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for OAuthPassthrough {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}
