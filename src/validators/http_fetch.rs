//! One HTTP exchange with an identity provider, bounded in time and in response size: shared by
//! `Introspection` and the JWKS fetcher of `Jwt`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::{connect::Connect, Client};

use crate::validate::BoxError;

/// Why [`fetch`] got no `200 OK` body.
pub(super) enum FetchFailure {
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
pub(super) async fn fetch<C>(
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
        let body = Limited::new(body, limit).collect().await.map_err(|e| {
            if e.is::<LengthLimitError>() {
                FetchFailure::TooLarge
            } else {
                FetchFailure::Transport(e)
            }
        })?;
        Ok((parts.headers, body.to_bytes()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| FetchFailure::Timeout)?
}
