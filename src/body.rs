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
//!
//! [`to_bytes`] reads a whole body under a size limit, without copying one that comes in one frame.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt as _, Either, Full, Limited};
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

    /// The inner service's body, unwrapped; or this body back when it is the layer's own. Lets a server whose
    /// stack has one body type (axum's `Body`, say) take the inner body back without wrapping it again.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tower_mcp_auth::body::ResponseBody;
    ///
    /// assert_eq!(ResponseBody::new("inner").into_inner().ok(), Some("inner"));
    /// assert!(ResponseBody::<&str>::full(Bytes::from_static(b"{}")).into_inner().is_err());
    /// ```
    pub fn into_inner(self) -> Result<B, Self> {
        match self.inner {
            Either::Left(body) => Ok(body),
            own => Err(Self { inner: own }),
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

/// Reads `body` whole, at most `limit` bytes: the error is [`http_body_util::LengthLimitError`] when it is
/// longer, or the body's own. A body that comes in one frame (as a small request usually does) is returned as
/// that frame, neither copied nor gathered in a list; trailers are ignored.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use bytes::Bytes;
/// use http_body_util::{Full, LengthLimitError};
/// use tower_mcp_auth::body::to_bytes;
///
/// let body = Full::new(Bytes::from_static(b"{}"));
/// assert_eq!(to_bytes(body, 16).await.unwrap(), "{}");
/// let long = Full::new(Bytes::from_static(b"a longer body"));
/// assert!(to_bytes(long, 4).await.unwrap_err().is::<LengthLimitError>());
/// # }
/// ```
pub async fn to_bytes<B>(body: B, limit: usize) -> Result<Bytes, BoxError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let (mut first, mut gathered) = (Bytes::new(), None::<BytesMut>);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        match &mut gathered {
            Some(gathered) => gathered.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut both = BytesMut::with_capacity(first.len() + data.len());
                both.extend_from_slice(&first);
                both.extend_from_slice(&data);
                gathered = Some(both);
            }
        }
    }
    Ok(gathered.map_or(first, BytesMut::freeze))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{LengthLimitError, StreamBody};

    fn frames(
        parts: &[&'static str],
    ) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>>> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|part| Ok(Frame::data(Bytes::from_static(part.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn to_bytes_joins_frames_in_order_and_keeps_one_frame_as_it_is() {
        let one = Bytes::from_static(b"{\"jsonrpc\":\"2.0\"}");
        let read = to_bytes(Full::new(one.clone()), 64).await.unwrap();
        assert_eq!(read, one);
        assert_eq!(
            read.as_ptr(),
            one.as_ptr(),
            "one frame is returned, not copied"
        );
        assert_eq!(
            to_bytes(frames(&["ab", "", "cd", "e"]), 64).await.unwrap(),
            "abcde"
        );
        assert_eq!(to_bytes(frames(&["", "ab"]), 64).await.unwrap(), "ab");
        assert_eq!(to_bytes(frames(&[]), 64).await.unwrap(), "");
    }

    #[tokio::test]
    async fn to_bytes_refuses_a_body_over_the_limit_whatever_its_frames() {
        assert!(to_bytes(frames(&["abc", "de"]), 5).await.is_ok());
        let over = to_bytes(frames(&["abc", "def"]), 5).await.unwrap_err();
        assert!(over.is::<LengthLimitError>());
        let one = to_bytes(frames(&["abcdef"]), 5).await.unwrap_err();
        assert!(one.is::<LengthLimitError>());
    }
}
