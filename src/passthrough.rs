//! Which requests may carry the client's own OAuth token upstream, and the marker that carries it.

use std::{fmt, sync::Arc};

use http::{header::InvalidHeaderValue, HeaderMap, HeaderValue, Method, Uri};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    config_error::ConfigError,
    route::PathPrefix,
    secret::{sha256, Fingerprint},
    Presented,
};

/// The scheme of the `Authorization` value a passthrough token travels in.
const BEARER: &[u8] = b"Bearer ";

/// The parts of a request a [`PassthroughPolicy`] decides on.
///
/// The credential headers have already been removed when a policy sees the request.
#[derive(Debug)]
pub struct PassthroughRequest<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
}

impl<'a> PassthroughRequest<'a> {
    /// A view of a request for a policy to decide on.
    pub fn new(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Self {
            method,
            uri,
            headers,
        }
    }

    /// The request method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The request headers, without the credential headers.
    ///
    /// Headers are chosen by the client: a policy that lets a header opt a request in lets every client opt in.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }
}

type PolicyFn = dyn Fn(&PassthroughRequest<'_>) -> bool + Send + Sync;

#[derive(Clone)]
enum Kind {
    Never,
    Always,
    Prefixes(Arc<[PathPrefix]>),
    Custom(Arc<PolicyFn>),
}

/// Decides, per request, whether a bearer token that is not a gateway key may travel on to the upstream as
/// the client's own OAuth token.
///
/// The default, [`PassthroughPolicy::none`], allows nothing: a bearer that is not a gateway key is refused with
/// `401`. Routes opt in one by one with [`path_prefixes`](PassthroughPolicy::path_prefixes).
///
/// ```
/// use http::{HeaderMap, Method, Uri};
/// use tower_mcp_auth::{PassthroughPolicy, PassthroughRequest};
///
/// let policy = PassthroughPolicy::path_prefixes(["/mcp/atlassian"]);
/// let allows = |path: &str| {
///     let uri: Uri = path.parse().unwrap();
///     policy.allows(&PassthroughRequest::new(&Method::POST, &uri, &HeaderMap::new()))
/// };
/// assert!(allows("/mcp/atlassian"));
/// assert!(allows("/mcp/atlassian/sse"));
/// assert!(!allows("/mcp/atlassian-evil"));
/// assert!(!allows("/mcp/atlassian/../github"));
/// assert!(!allows("/mcp/github"));
/// ```
#[derive(Clone)]
pub struct PassthroughPolicy(Kind);

impl PassthroughPolicy {
    /// Allows passthrough nowhere (the default).
    pub fn none() -> Self {
        Self(Kind::Never)
    }

    /// Allows passthrough on every request.
    ///
    /// Only for a gateway whose every upstream accepts its clients' own tokens: any bearer that is not a gateway
    /// key then reaches the inner service, and the gateway key check no longer keeps anyone out.
    pub fn always() -> Self {
        Self(Kind::Always)
    }

    /// Allows passthrough on requests whose path lies under one of `prefixes`, on whole segments.
    ///
    /// `/mcp/atlassian` covers `/mcp/atlassian`, `/mcp/atlassian/` and `/mcp/atlassian/...`, not
    /// `/mcp/atlassian-evil`. A request path with a dot segment, an empty segment inside it or any
    /// percent-encoded byte never opts in.
    ///
    /// # Panics
    /// When a prefix does not start with `/` or contains `%`, `//`, `.` or `..` segments. For prefixes read
    /// from configuration, use [`try_path_prefixes`](Self::try_path_prefixes).
    pub fn path_prefixes<I, P>(prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        Self::try_path_prefixes(prefixes).unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`path_prefixes`](Self::path_prefixes) for prefixes read from configuration: a prefix that does not
    /// start with `/` or contains `%`, `//`, `.` or `..` segments is a [`ConfigError`] naming it, not a panic.
    ///
    /// ```
    /// use tower_mcp_auth::PassthroughPolicy;
    ///
    /// assert!(PassthroughPolicy::try_path_prefixes(["/mcp/atlassian", "/mcp/github/"]).is_ok());
    /// let err = PassthroughPolicy::try_path_prefixes(["/mcp/atlassian", "mcp/jira"]).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid route prefix \"mcp/jira\": it must start with '/'");
    /// ```
    pub fn try_path_prefixes<I, P>(prefixes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let prefixes: Arc<[PathPrefix]> = prefixes
            .into_iter()
            .map(|p| PathPrefix::try_new(p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(if prefixes.is_empty() {
            Self::none()
        } else {
            Self(Kind::Prefixes(prefixes))
        })
    }

    /// Decides with a closure over the request's method, URI and headers.
    ///
    /// The closure owns the whole decision, including path canonicalisation; prefer
    /// [`path_prefixes`](Self::path_prefixes), and never let a client-chosen header opt a request in.
    ///
    /// ```
    /// use http::Method;
    /// use tower_mcp_auth::PassthroughPolicy;
    ///
    /// // Passthrough for reads of one route only.
    /// let policy = PassthroughPolicy::from_fn(|req| {
    ///     req.method() == Method::GET && req.uri().path() == "/mcp/github"
    /// });
    /// # let _ = policy;
    /// ```
    pub fn from_fn<F>(f: F) -> Self
    where
        F: Fn(&PassthroughRequest<'_>) -> bool + Send + Sync + 'static,
    {
        Self(Kind::Custom(Arc::new(f)))
    }

    /// Whether this policy lets `request` carry the client's own token upstream.
    pub fn allows(&self, request: &PassthroughRequest<'_>) -> bool {
        match &self.0 {
            Kind::Never => false,
            Kind::Always => true,
            Kind::Prefixes(prefixes) => {
                let path = request.uri.path();
                prefixes.iter().any(|p| p.matches(path))
            }
            Kind::Custom(f) => f(request),
        }
    }
}

impl Default for PassthroughPolicy {
    fn default() -> Self {
        Self::none()
    }
}

impl fmt::Debug for PassthroughPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Never => f.write_str("PassthroughPolicy::none()"),
            Kind::Always => f.write_str("PassthroughPolicy::always()"),
            Kind::Prefixes(prefixes) => f
                .debug_tuple("PassthroughPolicy::path_prefixes")
                .field(prefixes)
                .finish(),
            Kind::Custom(_) => f.write_str("PassthroughPolicy::from_fn(..)"),
        }
    }
}

/// Request extension: a bearer token to forward to the upstream as the client's own OAuth token.
///
/// It is a forwarding marker, **never an identity**. On its own (no [`Authenticated`](crate::Authenticated)
/// beside it) it means the gateway does not know who the caller is; the upstream decides whether the token is
/// good. It is only ever set on routes whose [`PassthroughPolicy`] allows it, and only for a token the validator
/// called [`Verdict::Unknown`](crate::Verdict::Unknown) or one sent next to a valid gateway key.
///
/// `Debug` shows a fingerprint, never the token.
///
/// ```
/// use tower_mcp_auth::OAuthPassthrough;
///
/// let p = OAuthPassthrough::new("upstream-token");
/// assert_eq!(p.expose_token(), "upstream-token");
/// assert!(!format!("{p:?}").contains("upstream-token"));
/// let header = p.authorization().unwrap();
/// assert_eq!(header.to_str().unwrap(), "Bearer upstream-token");
/// assert!(header.is_sensitive());
/// ```
#[derive(Clone)]
pub struct OAuthPassthrough {
    token: SecretString,
    /// The token's SHA-256, when admission already computed it.
    pub(crate) digest: Option<[u8; 32]>,
}

impl OAuthPassthrough {
    /// Wraps a bearer token.
    ///
    /// The layer builds this for you; the constructor is public so tests and forwarding code can build
    /// requests as the layer would hand them over.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: SecretString::from(token.into()),
            digest: None,
        }
    }

    /// The marker for the credential `presented`, with the digest a validator computed while admitting it.
    pub(crate) fn presented(presented: &Presented<'_>) -> Self {
        Self {
            token: SecretString::from(presented.as_str()),
            digest: presented.computed_sha256(),
        }
    }

    /// The token itself, to forward upstream.
    pub fn expose_token(&self) -> &str {
        self.token.expose_secret()
    }

    /// The `Authorization: Bearer <token>` value to send upstream, marked sensitive.
    ///
    /// Fails only for a marker built by hand from a token that cannot be a header value; the layer only ever
    /// builds markers from tokens it checked against RFC 6750's `b64token`.
    pub fn authorization(&self) -> Result<HeaderValue, InvalidHeaderValue> {
        // Written once into a buffer of its exact size, which the header value then owns: one allocation.
        let token = self.expose_token().as_bytes();
        let mut bytes = Vec::with_capacity(BEARER.len() + token.len());
        bytes.extend_from_slice(BEARER);
        bytes.extend_from_slice(token);
        let mut value = HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes))?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// The token's SHA-256 digest, to key or fingerprint a caller known only by its token (never to compare
    /// secrets without [`subtle`](https://docs.rs/subtle)).
    ///
    /// The digest the validators computed while admitting the token, when they did (see [`Presented`]): a
    /// token is then hashed once per request, however many parts of the gateway need its digest.
    ///
    /// ```
    /// use sha2::{Digest, Sha256};
    /// use tower_mcp_auth::OAuthPassthrough;
    ///
    /// let digest: [u8; 32] = Sha256::digest(b"upstream-token").into();
    /// assert_eq!(OAuthPassthrough::new("upstream-token").token_sha256(), digest);
    /// ```
    pub fn token_sha256(&self) -> [u8; 32] {
        self.digest
            .unwrap_or_else(|| sha256(self.token.expose_secret()))
    }

    /// A short fingerprint of the token, safe to log.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::from_digest(&self.token_sha256())
    }
}

impl fmt::Debug for OAuthPassthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthPassthrough")
            .field("token", &format_args!("[redacted {}]", self.fingerprint()))
            .finish()
    }
}
