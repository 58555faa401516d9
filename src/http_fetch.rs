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

/// An `application/x-www-form-urlencoded` body of `name=value` pairs, as OAuth endpoints take them.
#[cfg(any(feature = "token-exchange", feature = "introspection"))]
pub(crate) fn form_body<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The `Authorization` value of HTTP Basic client authentication (RFC 6749 §2.3.1): `Basic ` and the base64 of
/// the form-encoded client id and secret joined by `:`.
#[cfg(any(feature = "token-exchange", feature = "introspection"))]
pub(crate) fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    let encode =
        |value: &str| form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encode(client_id), encode(client_secret));
    format!("Basic {}", STANDARD.encode(credentials))
}

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

#[cfg(all(test, any(feature = "token-exchange", feature = "introspection")))]
mod tests {
    #[test]
    fn form_bodies_and_basic_credentials_are_form_encoded() {
        assert_eq!(
            super::form_body([
                ("grant_type", "urn:x"),
                ("scope", "a b"),
                ("p", "a/b:c*-._~")
            ]),
            "grant_type=urn%3Ax&scope=a+b&p=a%2Fb%3Ac*-._%7E"
        );
        // RFC 6749 §2.3.1: id and secret are form-encoded before they are joined and base64-encoded.
        use base64::{engine::general_purpose::STANDARD, Engine as _};
        let basic = super::basic_authorization("gw id", "s:e/c");
        let decoded = STANDARD
            .decode(basic.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "gw+id:s%3Ae%2Fc");
    }
}
