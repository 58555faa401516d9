//! The crate's own HTTP exchanges (introspection, JWKS, token exchange), bounded in response size and, for a
//! whole exchange, in time.

#[cfg(any(feature = "introspection", feature = "jwt"))]
use std::time::Duration;

use bytes::Bytes;
#[cfg(any(feature = "introspection", feature = "jwt"))]
use http::{HeaderMap, Request, StatusCode};
use http_body::Body;
#[cfg(any(feature = "introspection", feature = "jwt"))]
use http_body_util::Full;
use http_body_util::{BodyExt, LengthLimitError, Limited};
#[cfg(any(feature = "introspection", feature = "jwt"))]
use hyper_util::client::legacy::{connect::Connect, Client};

use crate::validate::BoxError;

/// Why [`read_capped`] gave up.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The body was longer than the cap.
    TooLarge,
    /// The body failed while it was read.
    Body(BoxError),
}

/// Collects `body`, failing with [`ReadError::TooLarge`] once it passes `limit` bytes.
pub(crate) async fn read_capped<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ReadError::TooLarge),
        Err(e) => Err(ReadError::Body(e)),
    }
}

/// Why [`fetch`] got no `200 OK` body.
#[cfg(any(feature = "introspection", feature = "jwt"))]
pub(crate) enum FetchFailure {
    /// Connecting, sending or reading failed.
    Transport(BoxError),
    /// The server answered another status than `200 OK`.
    Status(StatusCode),
    /// The body was longer than the limit.
    TooLarge,
    /// The whole exchange took longer than the timeout.
    Timeout,
}

/// Sends `request` and reads a `200 OK` answer of at most `limit` body bytes, all within `timeout`.
#[cfg(any(feature = "introspection", feature = "jwt"))]
pub(crate) async fn fetch<C>(
    client: &Client<C, Full<Bytes>>,
    request: Request<Full<Bytes>>,
    timeout: Duration,
    limit: usize,
) -> Result<(HeaderMap, Bytes), FetchFailure>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| FetchFailure::Transport(e.into()))?;
        if response.status() != StatusCode::OK {
            return Err(FetchFailure::Status(response.status()));
        }
        let (parts, body) = response.into_parts();
        let body = read_capped(body, limit).await.map_err(|e| match e {
            ReadError::TooLarge => FetchFailure::TooLarge,
            ReadError::Body(e) => FetchFailure::Transport(e),
        })?;
        Ok((parts.headers, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| FetchFailure::Timeout)?
}
