//! [`ResponseBody`]: the body of the crate's middleware responses — the inner service's body, or the layer's own
//! small JSON body.
//!
//! [`McpAuth`](crate::auth::McpAuth), [`permissions`](crate::permissions)' layer and token exchange answer with
//! it, so a rejection never needs the inner body type to be buildable from bytes.
//!
//! ```
//! use bytes::Bytes;
//! use http_body::Body as _;
//! use tower_mcp_auth::body::ResponseBody;
//!
//! let inner: ResponseBody<String> = ResponseBody::new("from the upstream".to_owned());
//! let rejection: ResponseBody<String> = ResponseBody::full(Bytes::from_static(b"{}"));
//! assert_eq!(rejection.size_hint().exact(), Some(2));
//! assert!(ResponseBody::<String>::default().is_end_stream());
//! # let _ = inner;
//! ```

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;

use crate::validate::BoxError;

pin_project! {
    /// The body of responses from [`McpAuth`](crate::auth::McpAuth): the inner service's body, or the small JSON body
    /// of a rejection.
    ///
    /// It implements [`Body`] whenever the inner body yields [`Bytes`], with a boxed error — what axum, hyper and
    /// tonic servers accept — so the layer works with any inner body without having to build one from bytes.
    /// Its [`Default`] is an empty body, which lets layers outside this one (tower-http's `TimeoutLayer`, say)
    /// answer on their own.
    pub struct ResponseBody<B> {
        #[pin]
        inner: Either<B, Full<Bytes>>,
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn new(body: B) -> Self {
        Self {
            inner: Either::Left(body),
        }
    }

    /// A body of fixed bytes, as the layer's own responses have.
    pub fn full(bytes: Bytes) -> Self {
        Self {
            inner: Either::Right(Full::new(bytes)),
        }
    }
}

impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::full(Bytes::new())
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Either::Left(_) => "inner",
            Either::Right(_) => "full",
        };
        f.debug_tuple("ResponseBody").field(&kind).finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
