//! The settings of the crate's own outgoing HTTP clients — token introspection, the JWT validator's JWKS fetches
//! and RFC 8693 token exchange — and the exchanges they run: each bounded in response size and, as a whole
//! (connecting, sending, reading the answer), in time.
//!
//! Every builder of such a client takes one [`ClientOptions`]
//! ([`Introspection::client_options`](crate::validators::Introspection::client_options),
//! [`JwtBuilder::client_options`](crate::validators::JwtBuilder::client_options),
//! [`TokenExchangeBuilder::client_options`](crate::upstream::TokenExchangeBuilder::client_options)); their
//! `timeout` and `max_response_bytes` methods set one field of it.
//!
//! ```
//! use std::time::Duration;
//! use tower_mcp_auth::{http_client::ClientOptions, validators::Jwt};
//!
//! let options = ClientOptions::jwks().with_timeout(Duration::from_secs(1));
//! let jwt = Jwt::builder("https://auth.example.com", "https://gateway.example.com/mcp")
//!     .client_options(options)
//!     .build()
//!     .expect("usable trust roots");
//! # let _ = jwt;
//! ```

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::{
    client::legacy::{connect::Connect, Client},
    rt::TokioExecutor,
};

use crate::{
    tls::{https_connector, HttpsConnector, TrustError},
    validate::BoxError,
};

/// How long one exchange may take by default: below the layer's own validation timeout (5 s), so that a slow
/// endpoint is reported as such.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// The default cap on an answer: introspection and token endpoints answer a few hundred bytes.
const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The default cap on an issuer's metadata or JWKS, which may list many keys with their certificate chains.
const DEFAULT_JWKS_MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// The limits of one outgoing client: how long one exchange may take, and the largest answer it reads.
///
/// [`Default`] (and [`new`](Self::new)) are the defaults of introspection and token exchange: 3 s and 64 KiB;
/// [`jwks`](Self::jwks) those of the JWT validator's metadata and JWKS fetches: 3 s and 256 KiB. An answer
/// larger than `max_response_bytes` is an error, as is an exchange slower than `timeout`.
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_auth::http_client::ClientOptions;
///
/// let options = ClientOptions::new()
///     .with_timeout(Duration::from_secs(1))
///     .with_max_response_bytes(16 * 1024);
/// assert_eq!(options.timeout, Duration::from_secs(1));
/// assert_eq!(options.max_response_bytes, 16 * 1024);
/// assert_eq!(ClientOptions::default().max_response_bytes, 64 * 1024);
/// assert_eq!(ClientOptions::jwks().max_response_bytes, 256 * 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOptions {
    /// How long one exchange (connecting, sending, reading the answer) may take.
    pub timeout: Duration,
    /// The largest answer body accepted.
    pub max_response_bytes: usize,
}

impl ClientOptions {
    /// The defaults of introspection and token exchange: 3 s, 64 KiB.
    pub const fn new() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The defaults of the JWT validator's metadata and JWKS fetches: 3 s, 256 KiB.
    pub const fn jwks() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_JWKS_MAX_RESPONSE_BYTES,
        }
    }

    /// These options with another [`timeout`](Self::timeout).
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// These options with another [`max_response_bytes`](Self::max_response_bytes).
    #[must_use]
    pub const fn with_max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// The client every builder makes when given none: pooled, `http` and `https`, trusting the platform's roots
/// plus `SSL_CERT_FILE` ([`https_connector`]).
pub(crate) fn https_client() -> Result<Client<HttpsConnector, Full<Bytes>>, TrustError> {
    Ok(Client::builder(TokioExecutor::new()).build(https_connector()?))
}

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

/// Why an exchange got no answer.
pub(crate) enum FetchFailure {
    /// Connecting, sending or reading failed.
    Transport(BoxError),
    /// The server answered another status than `200 OK`, where only that one was accepted.
    Status(StatusCode),
    /// The body was longer than [`ClientOptions::max_response_bytes`].
    TooLarge,
    /// The whole exchange took longer than [`ClientOptions::timeout`].
    Timeout,
}

/// Sends `request` and reads a `200 OK` answer within `options`' limits.
#[cfg(any(feature = "introspection", feature = "jwt"))]
pub(crate) async fn fetch<C>(
    client: &Client<C, Full<Bytes>>,
    request: Request<Full<Bytes>>,
    options: ClientOptions,
) -> Result<(HeaderMap, Bytes), FetchFailure>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let (_, headers, body) = exchange(client, request, options, true).await?;
    Ok((headers, body))
}

/// Sends `request` and reads the answer, whatever its status, within `options`' limits.
#[cfg(feature = "token-exchange")]
pub(crate) async fn send<C>(
    client: &Client<C, Full<Bytes>>,
    request: Request<Full<Bytes>>,
    options: ClientOptions,
) -> Result<(StatusCode, Bytes), FetchFailure>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let (status, _, body) = exchange(client, request, options, false).await?;
    Ok((status, body))
}

/// One exchange; with `only_ok`, an answer other than `200 OK` fails before its body is read.
async fn exchange<C>(
    client: &Client<C, Full<Bytes>>,
    request: Request<Full<Bytes>>,
    options: ClientOptions,
    only_ok: bool,
) -> Result<(StatusCode, HeaderMap, Bytes), FetchFailure>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| FetchFailure::Transport(e.into()))?;
        let status = response.status();
        if only_ok && status != StatusCode::OK {
            return Err(FetchFailure::Status(status));
        }
        let (parts, body) = response.into_parts();
        let body = read_capped(body, options.max_response_bytes).await?;
        Ok((status, parts.headers, body))
    };
    tokio::time::timeout(options.timeout, exchange)
        .await
        .map_err(|_| FetchFailure::Timeout)?
}

/// Collects `body`, failing with [`FetchFailure::TooLarge`] once it passes `limit` bytes.
async fn read_capped<B>(body: B, limit: usize) -> Result<Bytes, FetchFailure>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(FetchFailure::TooLarge),
        Err(e) => Err(FetchFailure::Transport(e)),
    }
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
