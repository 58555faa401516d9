//! `Introspection`: asks an OAuth 2.0 token introspection endpoint (RFC 7662) about each credential.

use std::{
    error::Error,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::Connect, Client};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::{
    http_client::{fetch, form_body, https_client, ClientOptions, FetchFailure},
    tls::HttpsConnector,
    validate::{BoxError, Validator, Verdict},
};

/// A [`Validator`] that asks an RFC 7662 token introspection endpoint about each credential.
///
/// Each validation POSTs `token=<credential>` (form-encoded) with the gateway's client authentication, and maps
/// the answer:
///
/// | endpoint answers | verdict |
/// |---|---|
/// | `200`, `"active": false` | [`Unknown`](Verdict::Unknown) |
/// | `200`, `"active": true`, but not for this gateway: an `aud`, `iss` or `client_id` other than one [required](Introspection::require_audience) | [`Unknown`](Verdict::Unknown) |
/// | `200`, `"active": true`, for this gateway, `exp` in the past | [`Denied`](Verdict::Denied) |
/// | `200`, `"active": true`, for this gateway, no `exp` or `exp` in the future | [`Valid`](Verdict::Valid)`(claims)` |
/// | any other status, a transport failure, a timeout, a body that is not the JSON of RFC 7662 §2.2 | error (the layer answers 503) |
///
/// An `active` token whose `exp` has passed is `Denied`, not `Unknown`: the endpoint has just shown that it
/// issued the token, so it is one of the gateway's own credentials, expired; `Unknown` would let it travel
/// upstream as an OAuth passthrough token on routes that allow passthrough.
///
/// # Whom the token is for
///
/// An identity provider answers `active` for every token it issued, including a user's token for an upstream
/// MCP server. Admitting those would make any upstream token a gateway identity (token confusion; the MCP
/// authorization specification requires the server to validate that a token was issued for it). Configure at
/// least [`require_audience`](Introspection::require_audience) with the gateway's resource identifier;
/// [`require_issuer`](Introspection::require_issuer) and [`require_client_id`](Introspection::require_client_id)
/// narrow it further. A token that fails one of them is `Unknown`, not ours: it may still pass through as the
/// client's own token where the route allows passthrough, but it never becomes a gateway identity. A
/// requirement the answer does not mention (no `aud`) counts as a mismatch.
///
/// # Transport
///
/// The client reuses connections (hyper-util's pooled client). [`new`](Introspection::new) speaks `http` and
/// `https` through the crate's [`tls::https_connector`](crate::tls::https_connector) (the platform's roots plus
/// `SSL_CERT_FILE`), and refuses an endpoint with any other scheme when it is built. For other trust settings,
/// build a client and pass it to [`with_client`](Introspection::with_client). Errors never contain the
/// credential: they name the status, the failure or the position of a JSON error, not the body.
///
/// Put a [`Cache`](super::Cache) in front so that each token is introspected once per TTL, with `exp`
/// capping the TTL:
///
/// ```
/// use tower_mcp_auth::{
///     validators::{Cache, ClientAuth, Introspection, IntrospectionClaims},
///     McpAuthLayer,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let introspection = Introspection::new(
///     "https://idp.example/oauth2/introspect".parse().unwrap(),
///     ClientAuth::basic("gateway", "client-secret"),
/// )
/// .unwrap()
/// .require_audience("https://gateway.example/mcp")
/// .require_issuer("https://idp.example");
/// let validator = Cache::builder(introspection).expiry(IntrospectionClaims::expires_at).build();
/// let layer = McpAuthLayer::new(validator);
/// # let _ = layer;
/// # }
/// ```
pub struct Introspection<C = HttpsConnector> {
    client: Client<C, Full<Bytes>>,
    endpoint: Uri,
    auth: ClientAuth,
    options: ClientOptions,
    binding: Binding,
}

/// Whom an active token must be for; `None` accepts any value.
#[derive(Clone, Debug, Default)]
struct Binding {
    audience: Option<String>,
    issuer: Option<String>,
    client_id: Option<String>,
}

impl Binding {
    /// Whether `claims` were issued for this gateway.
    fn accepts(&self, claims: &IntrospectionClaims) -> bool {
        let matches = |required: &Option<String>, actual: Option<&str>| {
            required.as_deref().is_none_or(|r| actual == Some(r))
        };
        self.audience
            .as_deref()
            .is_none_or(|audience| claims.aud.iter().any(|a| a == audience))
            && matches(&self.issuer, claims.iss.as_deref())
            && matches(&self.client_id, claims.client_id.as_deref())
    }
}

impl Introspection {
    /// Introspects at `endpoint` (`http` or `https`) with a pooled client, authenticating as `auth`. HTTPS
    /// trusts the platform's roots plus `SSL_CERT_FILE` ([`tls::https_connector`](crate::tls::https_connector)).
    ///
    /// Building needs no runtime; validating runs on tokio.
    ///
    /// ```
    /// use tower_mcp_auth::validators::{ClientAuth, Introspection};
    ///
    /// let introspection = Introspection::new(
    ///     "https://idp.example/introspect".parse().unwrap(),
    ///     ClientAuth::bearer("registration-token"),
    /// )
    /// .unwrap();
    /// # let _ = introspection;
    /// assert!(Introspection::new("ftp://idp.example/x".parse().unwrap(), ClientAuth::bearer("t")).is_err());
    /// ```
    ///
    /// # Errors
    /// When `endpoint` is not an absolute `http` or `https` URL, or `SSL_CERT_FILE` names a file that cannot be
    /// read as PEM certificates.
    pub fn new(endpoint: Uri, auth: ClientAuth) -> Result<Self, IntrospectionError> {
        check_endpoint(&endpoint)?;
        let client = https_client()
            .map_err(|e| IntrospectionError::new(Kind::Trust, Some(Box::new(e) as BoxError)))?;
        Self::with_client(client, endpoint, auth)
    }
}

/// An endpoint the client can reach: absolute, `http` or `https`.
fn check_endpoint(endpoint: &Uri) -> Result<(), IntrospectionError> {
    let scheme_ok = matches!(endpoint.scheme_str(), Some("http" | "https"));
    if scheme_ok && endpoint.authority().is_some() {
        Ok(())
    } else {
        Err(IntrospectionError::new(Kind::Endpoint, None))
    }
}

impl<C> Introspection<C> {
    /// Introspects at `endpoint` through `client` (bring your own connector, e.g. other trusted roots).
    ///
    /// The connector must handle the endpoint's scheme: hyper-util's plain `HttpConnector` refuses `https`
    /// URLs on every call (each validation then fails closed, `503`).
    ///
    /// ```
    /// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    /// use tower_mcp_auth::validators::{ClientAuth, Introspection};
    ///
    /// let client = Client::builder(TokioExecutor::new())
    ///     .pool_max_idle_per_host(8)
    ///     .build_http();
    /// let introspection = Introspection::with_client(
    ///     client,
    ///     "http://127.0.0.1:8080/introspect".parse().unwrap(),
    ///     ClientAuth::basic("gateway", "client-secret"),
    /// )
    /// .unwrap();
    /// # let _ = introspection;
    /// ```
    ///
    /// # Errors
    /// When `endpoint` is not an absolute `http` or `https` URL.
    pub fn with_client(
        client: Client<C, Full<Bytes>>,
        endpoint: Uri,
        auth: ClientAuth,
    ) -> Result<Self, IntrospectionError> {
        check_endpoint(&endpoint)?;
        Ok(Self {
            client,
            endpoint,
            auth,
            options: ClientOptions::new(),
            binding: Binding::default(),
        })
    }

    /// Admits only tokens whose `aud` contains `audience` (the gateway's resource identifier, RFC 8707);
    /// others are [`Unknown`](Verdict::Unknown).
    ///
    /// ```
    /// # use tower_mcp_auth::validators::{ClientAuth, Introspection};
    /// let introspection = Introspection::new("https://idp.example/introspect".parse().unwrap(), ClientAuth::bearer("t"))
    ///     .unwrap()
    ///     .require_audience("https://gateway.example/mcp");
    /// # let _ = introspection;
    /// ```
    pub fn require_audience(mut self, audience: impl Into<String>) -> Self {
        self.binding.audience = Some(audience.into());
        self
    }

    /// Admits only tokens whose `iss` is `issuer`; others are [`Unknown`](Verdict::Unknown).
    pub fn require_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.binding.issuer = Some(issuer.into());
        self
    }

    /// Admits only tokens whose `client_id` is `client_id`; others are [`Unknown`](Verdict::Unknown).
    pub fn require_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.binding.client_id = Some(client_id.into());
        self
    }

    /// Sets how long one introspection (connecting, sending, reading the answer) may take (default 3 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_auth::validators::{ClientAuth, Introspection};
    /// let introspection = Introspection::new(
    ///     "http://127.0.0.1:8080/introspect".parse().unwrap(),
    ///     ClientAuth::bearer("t"),
    /// )
    /// .unwrap()
    /// .timeout(Duration::from_secs(1));
    /// # let _ = introspection;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// Sets the largest response body accepted (default 64 KiB); a larger one is an error.
    ///
    /// ```
    /// # use tower_mcp_auth::validators::{ClientAuth, Introspection};
    /// let introspection = Introspection::new(
    ///     "http://127.0.0.1:8080/introspect".parse().unwrap(),
    ///     ClientAuth::bearer("t"),
    /// )
    /// .unwrap()
    /// .max_response_bytes(16 * 1024);
    /// # let _ = introspection;
    /// ```
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.options.max_response_bytes = max;
        self
    }

    /// Sets the [timeout](Self::timeout) and the [response cap](Self::max_response_bytes) at once
    /// (default [`ClientOptions::new`]: 3 s, 64 KiB).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_mcp_auth::{
    ///     http_client::ClientOptions,
    ///     validators::{ClientAuth, Introspection},
    /// };
    ///
    /// let options = ClientOptions::new().with_timeout(Duration::from_secs(1));
    /// let introspection = Introspection::new(
    ///     "http://127.0.0.1:8080/introspect".parse().unwrap(),
    ///     ClientAuth::bearer("t"),
    /// )
    /// .unwrap()
    /// .client_options(options);
    /// # let _ = introspection;
    /// ```
    pub fn client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    fn request(&self, credential: &str) -> Request<Full<Bytes>> {
        let body = form_body([("token", credential)]);
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.endpoint.clone();
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(header::AUTHORIZATION, self.auth.header.clone());
        request
    }
}

impl<C> fmt::Debug for Introspection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspection")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("timeout", &self.options.timeout)
            .field("max_response_bytes", &self.options.max_response_bytes)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl<C> Validator for Introspection<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    type Identity = IntrospectionClaims;
    type Error = IntrospectionError;
    type Future = BoxFuture<'static, Result<Verdict<IntrospectionClaims>, IntrospectionError>>;

    fn validate(&self, credential: &str) -> Self::Future {
        let request = self.request(credential);
        let client = self.client.clone();
        let options = self.options;
        let binding = self.binding.clone();
        Box::pin(async move {
            let (_, body) =
                fetch(&client, request, options)
                    .await
                    .map_err(|failure| match failure {
                        FetchFailure::Transport(e) => {
                            IntrospectionError::new(Kind::Transport, Some(e))
                        }
                        FetchFailure::Status(status) => {
                            IntrospectionError::new(Kind::Status(status), None)
                        }
                        FetchFailure::TooLarge => IntrospectionError::new(
                            Kind::TooLarge(options.max_response_bytes),
                            None,
                        ),
                        FetchFailure::Timeout => {
                            IntrospectionError::new(Kind::Timeout(options.timeout), None)
                        }
                    })?;
            let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
                IntrospectionError::new(
                    Kind::Json {
                        line: e.line(),
                        column: e.column(),
                    },
                    None,
                )
            })?;
            Ok(answer.verdict(&binding, SystemTime::now()))
        })
    }
}

/// How the gateway authenticates itself to the introspection endpoint (RFC 7662 §2.1).
///
/// The secret is kept only inside a header value marked sensitive; `Debug` shows the scheme alone.
///
/// ```
/// use tower_mcp_auth::validators::ClientAuth;
///
/// let auth = ClientAuth::basic("gateway", "s3cret");
/// assert_eq!(format!("{auth:?}"), "ClientAuth { scheme: \"Basic\", .. }");
/// let auth = ClientAuth::bearer("initial-access-token");
/// assert!(!format!("{auth:?}").contains("initial-access-token"));
/// ```
#[derive(Clone)]
pub struct ClientAuth {
    scheme: &'static str,
    header: HeaderValue,
}

impl ClientAuth {
    /// HTTP Basic with a client id and secret, each form-encoded first as RFC 6749 §2.3.1 requires.
    ///
    /// ```
    /// use tower_mcp_auth::validators::ClientAuth;
    /// let auth = ClientAuth::basic("gateway", "s3cret");
    /// # let _ = auth;
    /// ```
    pub fn basic(client_id: &str, client_secret: &str) -> Self {
        Self::new(
            "Basic",
            &crate::http_client::basic_authorization(client_id, client_secret),
        )
    }

    /// A bearer token that the endpoint accepts from the gateway.
    ///
    /// ```
    /// use tower_mcp_auth::validators::ClientAuth;
    /// let auth = ClientAuth::bearer("gateway-introspection-token");
    /// # let _ = auth;
    /// ```
    ///
    /// # Panics
    /// When `token` holds characters a header value cannot (control characters, non-ASCII).
    pub fn bearer(token: &str) -> Self {
        Self::new("Bearer", &format!("Bearer {token}"))
    }

    fn new(scheme: &'static str, value: &str) -> Self {
        let Ok(mut header) = HeaderValue::from_str(value) else {
            panic!("the introspection client's {scheme} credential is not a valid header value");
        };
        header.set_sensitive(true);
        Self { scheme, header }
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// What an introspection endpoint says about an active token (RFC 7662 §2.2): the identity of a credential
/// that [`Introspection`] found valid.
///
/// Fields the RFC names are typed; any others (`tenant`, `groups`, …) are in [`extra`](Self::extra).
///
/// ```
/// use http::Request;
/// use tower_mcp_auth::{validators::IntrospectionClaims, Authenticated};
///
/// fn subject(req: &Request<()>) -> Option<&str> {
///     let claims = req.extensions().get::<Authenticated<IntrospectionClaims>>()?.identity();
///     claims.sub.as_deref()
/// }
/// # assert_eq!(subject(&Request::new(())), None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct IntrospectionClaims {
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// The client the token was issued to.
    pub client_id: Option<String>,
    /// A human-readable identifier of the resource owner.
    pub username: Option<String>,
    /// The token's type, e.g. `Bearer`.
    pub token_type: Option<String>,
    /// When the token expires, in seconds since the Unix epoch.
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<u64>,
    /// When the token was issued, in seconds since the Unix epoch.
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<u64>,
    /// When the token becomes usable, in seconds since the Unix epoch.
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<u64>,
    /// The subject: usually a machine-readable identifier of the resource owner.
    pub sub: Option<String>,
    /// The intended audiences (`aud` may be one string or an array).
    #[serde(default, deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// The issuer.
    pub iss: Option<String>,
    /// The token's identifier.
    pub jti: Option<String>,
    /// Every other member of the response.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IntrospectionClaims {
    /// When the token expires (`exp`), for [`CacheBuilder::expiry`](super::CacheBuilder::expiry). An `exp`
    /// beyond what the platform's clock can represent is `None`: no expiry within reach, so the cache's own
    /// TTL applies.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use tower_mcp_auth::validators::IntrospectionClaims;
    ///
    /// let mut claims = IntrospectionClaims::default();
    /// assert_eq!(claims.expires_at(), None);
    /// claims.exp = Some(1_700_000_000);
    /// assert_eq!(claims.expires_at(), Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
    /// claims.exp = Some(u64::MAX);
    /// assert_eq!(claims.expires_at(), None);
    /// ```
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.exp
            .and_then(|exp| UNIX_EPOCH.checked_add(Duration::from_secs(exp)))
    }

    /// The scopes, split on spaces.
    ///
    /// ```
    /// use tower_mcp_auth::validators::IntrospectionClaims;
    ///
    /// let mut claims = IntrospectionClaims::default();
    /// claims.scope = Some("mcp:read mcp:write".to_owned());
    /// assert_eq!(claims.scopes().collect::<Vec<_>>(), ["mcp:read", "mcp:write"]);
    /// ```
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split_ascii_whitespace()
    }
}

/// The response body: `active`, and the claims beside it.
#[derive(Deserialize)]
struct Answer {
    active: bool,
    #[serde(flatten)]
    claims: IntrospectionClaims,
}

impl Answer {
    fn verdict(self, binding: &Binding, now: SystemTime) -> Verdict<IntrospectionClaims> {
        // A token issued for someone else is not one of the gateway's credentials, whatever its state.
        if !self.active || !binding.accepts(&self.claims) {
            return Verdict::Unknown;
        }
        match self.claims.expires_at() {
            Some(expires) if expires <= now => Verdict::Denied,
            _ => Verdict::Valid(self.claims),
        }
    }
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, possibly with a fraction (dropped).
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    match (number.as_u64(), number.as_f64()) {
        (Some(seconds), _) => Ok(Some(seconds)),
        (None, Some(seconds)) if seconds >= 0.0 && seconds < u64::MAX as f64 => {
            Ok(Some(seconds as u64))
        }
        _ => Err(serde::de::Error::custom(
            "a NumericDate is a non-negative number",
        )),
    }
}

/// `aud` is a string or an array of strings.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

/// Why an introspection reached no verdict. Its `Display` names the failure, never the credential or the
/// response body.
///
/// ```
/// use tower_mcp_auth::validators::IntrospectionError;
///
/// fn describe(err: &IntrospectionError) -> String {
///     match (err.is_timeout(), err.status()) {
///         (true, _) => "slow".to_owned(),
///         (_, Some(status)) => format!("answered {status}"),
///         _ => err.to_string(),
///     }
/// }
/// # let _ = describe;
/// ```
pub struct IntrospectionError {
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Debug)]
enum Kind {
    Transport,
    Timeout(Duration),
    Status(StatusCode),
    TooLarge(usize),
    Json { line: usize, column: usize },
    Endpoint,
    Trust,
}

impl IntrospectionError {
    fn new(kind: Kind, source: Option<BoxError>) -> Self {
        Self { kind, source }
    }

    /// Whether the endpoint did not answer within the [timeout](Introspection::timeout).
    ///
    /// ```
    /// # fn check(err: &tower_mcp_auth::validators::IntrospectionError) -> bool {
    /// err.is_timeout()
    /// # }
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout(_))
    }

    /// The status the endpoint answered with, when it was not `200 OK`.
    ///
    /// ```
    /// # fn check(err: &tower_mcp_auth::validators::IntrospectionError) -> bool {
    /// err.status() == Some(http::StatusCode::UNAUTHORIZED) // the gateway's client credentials were refused
    /// # }
    /// ```
    pub fn status(&self) -> Option<StatusCode> {
        match self.kind {
            Kind::Status(status) => Some(status),
            _ => None,
        }
    }
}

impl fmt::Display for IntrospectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Transport => {
                f.write_str("introspection request failed")?;
                // The root cause ("connection refused") is what an operator needs; the layer logs Display.
                let mut cause = self.source.as_deref().map(|e| e as &(dyn Error + 'static));
                while let Some(next) = cause.and_then(Error::source) {
                    cause = Some(next);
                }
                match cause {
                    Some(cause) => write!(f, ": {cause}"),
                    None => Ok(()),
                }
            }
            Kind::Timeout(timeout) => write!(f, "introspection timed out after {timeout:?}"),
            Kind::Status(status) => write!(f, "introspection endpoint answered {status}"),
            Kind::TooLarge(limit) => {
                write!(f, "introspection response larger than {limit} bytes")
            }
            Kind::Endpoint => {
                f.write_str("introspection endpoint is not an absolute http or https URL")
            }
            Kind::Trust => match &self.source {
                Some(source) => write!(f, "introspection client cannot load trusted roots: {source}"),
                None => f.write_str("introspection client cannot load trusted roots"),
            },
            Kind::Json { line, column } => write!(
                f,
                "introspection response is not an RFC 7662 answer (JSON error at line {line}, column {column})"
            ),
        }
    }
}

impl fmt::Debug for IntrospectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl Error for IntrospectionError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let answer = |json: &str| serde_json::from_str::<Answer>(json).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let any = Binding::default();
        assert_eq!(
            answer(r#"{"active":false}"#).verdict(&any, now),
            Verdict::Unknown
        );
        assert_eq!(
            answer(r#"{"active":true,"exp":999}"#).verdict(&any, now),
            Verdict::Denied
        );
        assert_eq!(
            answer(r#"{"active":true,"exp":1000}"#).verdict(&any, now),
            Verdict::Denied
        );
        // An exp beyond the clock's range is far in the future, not a panic.
        assert!(matches!(
            answer(r#"{"active":true,"exp":18446744073709551615}"#).verdict(&any, now),
            Verdict::Valid(_)
        ));
        let Verdict::Valid(claims) =
            answer(r#"{"active":true,"exp":1001.5,"aud":"gw","sub":"alice","tenant":"acme"}"#)
                .verdict(&any, now)
        else {
            panic!("not valid");
        };
        assert_eq!(claims.exp, Some(1001));
        assert_eq!(claims.aud, ["gw"]);
        assert_eq!(claims.sub.as_deref(), Some("alice"));
        assert_eq!(claims.extra["tenant"], "acme");
        assert!(!claims.extra.contains_key("active"));
        assert!(serde_json::from_str::<Answer>(r#"{"exp":1}"#).is_err());
        // Bound to an audience: another audience, or none, is not ours, even when expired.
        let gateway = Binding {
            audience: Some("gw".to_owned()),
            ..Binding::default()
        };
        for json in [
            r#"{"active":true,"aud":"upstream"}"#,
            r#"{"active":true}"#,
            r#"{"active":true,"aud":["upstream"],"exp":1}"#,
        ] {
            assert_eq!(
                answer(json).verdict(&gateway, now),
                Verdict::Unknown,
                "{json}"
            );
        }
        assert!(matches!(
            answer(r#"{"active":true,"aud":["x","gw"]}"#).verdict(&gateway, now),
            Verdict::Valid(_)
        ));
        assert_eq!(
            answer(r#"{"active":true,"aud":"gw","exp":1}"#).verdict(&gateway, now),
            Verdict::Denied
        );
        assert!(serde_json::from_str::<Answer>(r#"{"active":true,"exp":-1}"#).is_err());
    }
}
