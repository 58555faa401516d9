//! `TokenExchange` and `ExchangeTokenLayer`: each upstream gets a token issued for it, exchanged (RFC 8693) from
//! the token the client presented to the gateway.

use std::{
    collections::HashMap,
    error::Error,
    fmt,
    future::poll_fn,
    marker::PhantomData,
    mem,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use futures_util::{
    future::{BoxFuture, Shared},
    FutureExt as _,
};
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{connect::Connect, Client},
    rt::TokioExecutor,
};
use moka::Expiry;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    body::ResponseBody,
    form,
    http_fetch::{read_capped, ReadError},
    identity::Authenticated,
    response::{is_grpc, Challenges, Rejection},
    secret::Fingerprint,
    tls::{https_connector, TrustError},
    validators::Either,
};

/// RFC 8693 §2.1's grant type.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3's type of an OAuth access token, the default subject token type.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
const DEFAULT_EXPIRY_SKEW: Duration = Duration::from_secs(30);
const DEFAULT_REFUSED_TTL: Duration = Duration::from_secs(5);
const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// How long an exchanged token without `expires_in` is kept at most (its subject's `exp` may cut it shorter).
const DEFAULT_TTL_WITHOUT_EXPIRY: Duration = Duration::from_secs(60);

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

/// How the gateway authenticates to the token endpoint (RFC 6749 §2.3.1). The secret never shows in `Debug`.
#[derive(Clone)]
pub struct TokenClientAuth {
    method: AuthMethod,
    client_id: String,
    client_secret: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthMethod {
    Basic,
    Post,
}

impl TokenClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-encoded id and secret.
    pub fn basic(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            method: AuthMethod::Basic,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }

    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    pub fn post(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            method: AuthMethod::Post,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }
}

impl fmt::Debug for TokenClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClientAuth")
            .field("method", &self.method)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What a token is exchanged for: one upstream's `audience` and/or `resource` (RFC 8707), and `scope`.
///
/// ```
/// use tower_mcp_auth::upstream::ExchangeTarget;
///
/// let github = ExchangeTarget::resource("https://mcp.github.example/").with_scope("repo:read");
/// # let _ = github;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExchangeTarget {
    audience: Option<String>,
    resource: Option<String>,
    scope: Option<String>,
}

impl ExchangeTarget {
    /// A token for this resource indicator (RFC 8707): usually the upstream's URL.
    pub fn resource(resource: impl Into<String>) -> Self {
        Self {
            resource: Some(resource.into()),
            ..Self::default()
        }
    }

    /// The default target of an upstream: a token whose resource indicator is the upstream's URL.
    ///
    /// ```
    /// use tower_mcp_auth::upstream::{ExchangeTarget, UpstreamConfig};
    ///
    /// let github = UpstreamConfig::new("github", "https://mcp.github.example/mcp").unwrap();
    /// assert_eq!(
    ///     ExchangeTarget::upstream(&github),
    ///     ExchangeTarget::resource("https://mcp.github.example/mcp")
    /// );
    /// ```
    pub fn upstream(upstream: &super::UpstreamConfig) -> Self {
        Self::resource(upstream.url().to_string())
    }

    /// A token for this logical audience (RFC 8693 `audience`).
    pub fn audience(audience: impl Into<String>) -> Self {
        Self {
            audience: Some(audience.into()),
            ..Self::default()
        }
    }

    /// Adds a resource indicator.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Adds an audience.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Asks for these space-separated scopes.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

/// A token the authorization server issued in exchange. `Debug` shows a [`Fingerprint`] only.
#[derive(Clone)]
pub struct ExchangedToken {
    token: Arc<str>,
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

/// Why no token could be exchanged. `Display` names the failure and status, never a token or a body.
#[derive(Clone)]
pub struct ExchangeError {
    kind: ErrorKind,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorKind {
    /// The authorization server refused (a 4xx).
    Refused(StatusCode),
    /// Any other status.
    Status(StatusCode),
    Transport,
    Timeout(Duration),
    TooLarge(usize),
    Json,
    BadToken,
}

impl ExchangeError {
    fn new(kind: ErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// Whether the authorization server refused the exchange (a 4xx other than 401: the subject token is
    /// expired or revoked, or may not be exchanged for this target). The client gets 401 `invalid_token`; any
    /// other error is a 503, including a 401, which refuses the gateway's own client credentials.
    pub fn is_refused(&self) -> bool {
        matches!(self.kind, ErrorKind::Refused(_))
    }

    /// The authorization server's status, when it answered with one other than 200.
    pub fn status(&self) -> Option<StatusCode> {
        match self.kind {
            ErrorKind::Refused(status) | ErrorKind::Status(status) => Some(status),
            _ => None,
        }
    }
}

impl fmt::Debug for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Refused(status) => {
                write!(
                    f,
                    "the authorization server refused the exchange ({status})"
                )
            }
            ErrorKind::Status(status) => write!(f, "the token endpoint answered {status}"),
            ErrorKind::Transport => f.pad("the token endpoint could not be reached"),
            ErrorKind::Timeout(after) => {
                write!(f, "the token endpoint did not answer within {after:?}")
            }
            ErrorKind::TooLarge(limit) => {
                write!(f, "the token endpoint answered more than {limit} bytes")
            }
            ErrorKind::Json => f.pad("the token endpoint's answer is not an RFC 8693 response"),
            ErrorKind::BadToken => f.pad("the issued token cannot be sent in a header"),
        }
    }
}

impl Error for ExchangeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}

type Post = dyn Fn(Request<Full<Bytes>>) -> BoxFuture<'static, Result<(StatusCode, Bytes), ExchangeError>>
    + Send
    + Sync;
type Flight = Shared<BoxFuture<'static, Result<ExchangedToken, ExchangeError>>>;

/// A cached outcome, and the subject it came from (for [`TokenExchange::invalidate_subject`]).
#[derive(Clone)]
struct Entry {
    subject: [u8; 32],
    outcome: Result<ExchangedToken, ExchangeError>,
    ttl: Duration,
}

struct PerEntry;

impl Expiry<[u8; 32], Entry> for PerEntry {
    fn expire_after_create(&self, _: &[u8; 32], entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

struct InFlight {
    id: u64,
    subject: [u8; 32],
    /// Set when the subject is invalidated mid-flight, so the result is not cached.
    dropped: Arc<AtomicBool>,
    flight: Flight,
}

struct Exchanger {
    post: Box<Post>,
    endpoint: Uri,
    auth: TokenClientAuth,
    basic: Option<HeaderValue>,
    subject_token_type: String,
    expiry_skew: Duration,
    refused_ttl: Duration,
    cache: moka::future::Cache<[u8; 32], Entry>,
    in_flight: Mutex<HashMap<[u8; 32], InFlight>>,
    next_id: AtomicU64,
}

/// An RFC 8693 token-exchange client for one authorization server, with a cache of exchanged tokens.
///
/// [`exchange`](TokenExchange::exchange) POSTs `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`
/// with the subject token, its type (default [`ACCESS_TOKEN_TYPE`]), the target's `audience`, `resource` and
/// `scope`, authenticating as the gateway's client (`client_secret_basic` or `client_secret_post`).
///
/// - **Cached** by a SHA-256 digest of the subject token and the parameters (never the token itself), for
///   `expires_in` less a skew (default 30 s), and never past the subject's own expiry.
/// - **Single-flight, detached**: concurrent exchanges of one subject for one target share one request, run as
///   a spawned task, so a caller that gives up cancels nothing for the others.
/// - **Refusals cached briefly** (a 4xx, default 5 s), so a client retrying a revoked token does not hammer
///   the authorization server; other failures are not cached.
/// - [`invalidate_subject`](TokenExchange::invalidate_subject) drops every token exchanged from a subject,
///   for revocation.
///
/// It is cheap to clone (an `Arc`); share one between the [`ExchangeTokenLayer`]s of all upstreams.
///
/// ```
/// use tower_mcp_auth::upstream::{ExchangeTarget, ExchangeTokenLayer, TokenClientAuth, TokenExchange};
/// use std::sync::Arc;
/// use tower_mcp_auth::validators::JwtClaims;
///
/// let exchange = TokenExchange::builder(
///     "http://127.0.0.1:8080/token".parse().unwrap(),
///     TokenClientAuth::basic("gateway", "client-secret"),
/// )
/// .build()
/// .expect("usable trust roots");
/// let github = ExchangeTokenLayer::<Arc<JwtClaims>>::new(
///     exchange.clone(),
///     ExchangeTarget::resource("https://mcp.github.example/"),
/// );
/// # let _ = github;
/// ```
#[derive(Clone)]
pub struct TokenExchange {
    inner: Arc<Exchanger>,
}

impl TokenExchange {
    /// Starts building a client for the token endpoint at `endpoint`, authenticating as `auth`.
    pub fn builder(endpoint: Uri, auth: TokenClientAuth) -> TokenExchangeBuilder {
        TokenExchangeBuilder {
            endpoint,
            auth,
            subject_token_type: ACCESS_TOKEN_TYPE.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            expiry_skew: DEFAULT_EXPIRY_SKEW,
            refused_ttl: DEFAULT_REFUSED_TTL,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }

    /// The token exchanged from `subject` for `target`: from the cache, from an exchange in flight, or from a
    /// new exchange.
    pub async fn exchange(
        &self,
        subject: Subject<'_>,
        target: &ExchangeTarget,
    ) -> Result<ExchangedToken, ExchangeError> {
        let key = self.inner.key(subject.token, target);
        if let Some(entry) = self.inner.cache.get(&key).await {
            return entry.outcome;
        }
        self.start(key, subject, target).await
    }

    /// Drops the cached token exchanged from `subject` for `target` and exchanges again: for an upstream that
    /// refused the cached one.
    pub async fn exchange_again(
        &self,
        subject: Subject<'_>,
        target: &ExchangeTarget,
    ) -> Result<ExchangedToken, ExchangeError> {
        let key = self.inner.key(subject.token, target);
        self.inner.cache.invalidate(&key).await;
        self.start(key, subject, target).await
    }

    /// Drops every token exchanged from `subject_token`, cached or in flight: call it when the subject is
    /// revoked. The next request with that subject exchanges again, and the authorization server decides.
    pub fn invalidate_subject(&self, subject_token: &str) {
        self.invalidate_subject_digest(&Sha256::digest(subject_token.as_bytes()).into());
    }

    /// [`invalidate_subject`](TokenExchange::invalidate_subject) by the subject token's SHA-256 digest, for
    /// revocation sources that only know digests (LiteLLM's key table); also reached through
    /// [`RevocationSink`](crate::validators::RevocationSink).
    pub fn invalidate_subject_digest(&self, subject: &[u8; 32]) {
        let subject = *subject;
        {
            let mut in_flight = self.inner.lock_in_flight();
            in_flight.retain(|_, flight| {
                if flight.subject == subject {
                    flight.dropped.store(true, Ordering::SeqCst);
                    false
                } else {
                    true
                }
            });
        }
        // Registered predicates hide matching entries from every later `get`, at once.
        self.inner
            .cache
            .invalidate_entries_if(move |_, entry| entry.subject == subject)
            .expect("the cache is built with invalidation closures");
    }

    /// Joins the exchange in flight for `key`, or starts one as a spawned task.
    fn start(&self, key: [u8; 32], subject: Subject<'_>, target: &ExchangeTarget) -> Flight {
        let mut in_flight = self.inner.lock_in_flight();
        if let Some(flight) = in_flight.get(&key) {
            return flight.flight.clone();
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicBool::new(false));
        let request = self.inner.request(subject.token, target);
        let subject_digest: [u8; 32] = Sha256::digest(subject.token.as_bytes()).into();
        let expires_at = subject.expires_at;
        let exchanger = Arc::clone(&self.inner);
        let flag = Arc::clone(&dropped);
        let task = tokio::spawn(async move {
            let outcome = (exchanger.post)(request)
                .await
                .and_then(|(status, body)| exchanger.read(status, &body));
            let ttl = match &outcome {
                Ok((_, expires_in)) => Some(exchanger.ttl(*expires_in, expires_at)),
                Err(error) if error.is_refused() => Some(exchanger.refused_ttl),
                Err(_) => None,
            };
            let outcome = outcome.map(|(token, _)| token);
            if let Some(ttl) = ttl.filter(|ttl| !ttl.is_zero()) {
                if !flag.load(Ordering::SeqCst) {
                    let entry = Entry {
                        subject: subject_digest,
                        outcome: outcome.clone(),
                        ttl,
                    };
                    exchanger.cache.insert(key, entry).await;
                }
            }
            let mut in_flight = exchanger.lock_in_flight();
            if in_flight.get(&key).is_some_and(|flight| flight.id == id) {
                in_flight.remove(&key);
            }
            outcome
        });
        let flight: Flight = task
            .map(|joined| {
                joined.unwrap_or_else(|e| {
                    Err(ExchangeError {
                        kind: ErrorKind::Transport,
                        source: Some(Arc::new(e)),
                    })
                })
            })
            .boxed()
            .shared();
        in_flight.insert(
            key,
            InFlight {
                id,
                subject: subject_digest,
                dropped,
                flight: flight.clone(),
            },
        );
        flight
    }
}

impl fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchange")
            .field("endpoint", &self.inner.endpoint)
            .field("auth", &self.inner.auth)
            .field("subject_token_type", &self.inner.subject_token_type)
            .field("cached", &self.inner.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl Exchanger {
    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], InFlight>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cache key: a digest of the subject token and every parameter that shapes the exchanged token, each
    /// length-prefixed so no two different inputs collide by concatenation.
    fn key(&self, subject_token: &str, target: &ExchangeTarget) -> [u8; 32] {
        let mut digest = Sha256::new();
        let parts = [
            Some(subject_token),
            Some(self.subject_token_type.as_str()),
            target.audience.as_deref(),
            target.resource.as_deref(),
            target.scope.as_deref(),
        ];
        for part in parts {
            match part {
                None => digest.update([0u8]),
                Some(part) => {
                    digest.update([1u8]);
                    digest.update((part.len() as u64).to_be_bytes());
                    digest.update(part.as_bytes());
                }
            }
        }
        digest.finalize().into()
    }

    fn request(&self, subject_token: &str, target: &ExchangeTarget) -> Request<Full<Bytes>> {
        let mut pairs = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", subject_token),
            ("subject_token_type", self.subject_token_type.as_str()),
        ];
        if let Some(audience) = &target.audience {
            pairs.push(("audience", audience));
        }
        if let Some(resource) = &target.resource {
            pairs.push(("resource", resource));
        }
        if let Some(scope) = &target.scope {
            pairs.push(("scope", scope));
        }
        if self.auth.method == AuthMethod::Post {
            pairs.push(("client_id", &self.auth.client_id));
            pairs.push(("client_secret", &self.auth.client_secret));
        }
        let mut request = Request::new(Full::new(Bytes::from(form::encode_pairs(pairs))));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.endpoint.clone();
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(basic) = &self.basic {
            headers.insert(header::AUTHORIZATION, basic.clone());
        }
        request
    }

    /// Reads the token endpoint's answer: the token and its `expires_in`, or why there is none.
    fn read(
        &self,
        status: StatusCode,
        body: &[u8],
    ) -> Result<(ExchangedToken, Option<u64>), ExchangeError> {
        // A 401 is the authorization server refusing the gateway's own client authentication (RFC 6749 §5.2
        // `invalid_client`): a gateway misconfiguration, not a bad subject token, so it is no refusal of the
        // client's token (a 503, not a 401 that would send the client for a new token in vain).
        if status.is_client_error() && status != StatusCode::UNAUTHORIZED {
            return Err(ExchangeError::new(ErrorKind::Refused(status)));
        }
        if status != StatusCode::OK {
            return Err(ExchangeError::new(ErrorKind::Status(status)));
        }
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            expires_in: Option<u64>,
        }
        let answer: Answer =
            serde_json::from_slice(body).map_err(|_| ExchangeError::new(ErrorKind::Json))?;
        if answer.access_token.is_empty()
            || HeaderValue::from_str(&format!("Bearer {}", answer.access_token)).is_err()
        {
            return Err(ExchangeError::new(ErrorKind::BadToken));
        }
        let token = ExchangedToken {
            token: answer.access_token.into(),
        };
        Ok((token, answer.expires_in))
    }

    /// How long an exchanged token is kept: `expires_in` less the skew, and never past the subject's expiry.
    fn ttl(&self, expires_in: Option<u64>, subject_expires_at: Option<SystemTime>) -> Duration {
        let own = expires_in.map_or(DEFAULT_TTL_WITHOUT_EXPIRY, |seconds| {
            Duration::from_secs(seconds).saturating_sub(self.expiry_skew)
        });
        let subject = subject_expires_at.map(|at| {
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        });
        subject.map_or(own, |left| left.min(own))
    }
}

/// Builds a [`TokenExchange`]; from [`TokenExchange::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TokenExchangeBuilder {
    endpoint: Uri,
    auth: TokenClientAuth,
    subject_token_type: String,
    timeout: Duration,
    max_response_bytes: usize,
    expiry_skew: Duration,
    refused_ttl: Duration,
    max_entries: u64,
}

impl TokenExchangeBuilder {
    /// The type of the subject tokens (default [`ACCESS_TOKEN_TYPE`]; `…:token-type:jwt` for some servers).
    pub fn subject_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.subject_token_type = token_type.into();
        self
    }

    /// How long one exchange may take (default 3 s); a slower one is a 503.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest token endpoint answer accepted (default 64 KiB).
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// How long before its `expires_in` an exchanged token stops being used (default 30 s).
    pub fn expiry_skew(mut self, skew: Duration) -> Self {
        self.expiry_skew = skew;
        self
    }

    /// How long a refusal (a 4xx) is remembered (default 5 s; zero turns the negative cache off).
    pub fn refused_ttl(mut self, ttl: Duration) -> Self {
        self.refused_ttl = ttl;
        self
    }

    /// The most exchanged tokens kept (default 100 000).
    pub fn max_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }

    /// Builds the client with a pooled connection to an `https://` (or `http://`) token endpoint, trusting
    /// the platform's roots plus `SSL_CERT_FILE` ([`tls::https_connector`](crate::tls::https_connector)).
    ///
    /// # Errors
    /// When `SSL_CERT_FILE` is set but unusable; see [`TrustError`].
    pub fn build(self) -> Result<TokenExchange, TrustError> {
        let client = Client::builder(TokioExecutor::new()).build(https_connector()?);
        Ok(self.build_with_client(client))
    }

    /// Builds the client over `client` (bring your own connector, e.g. for TLS).
    pub fn build_with_client<C>(self, client: Client<C, Full<Bytes>>) -> TokenExchange
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        let (timeout, limit) = (self.timeout, self.max_response_bytes);
        let post = move |request: Request<Full<Bytes>>| {
            let client = client.clone();
            async move {
                let exchange = async {
                    let response = client.request(request).await.map_err(|e| ExchangeError {
                        kind: ErrorKind::Transport,
                        source: Some(Arc::new(e)),
                    })?;
                    let status = response.status();
                    let body =
                        read_capped(response.into_body(), limit)
                            .await
                            .map_err(|e| match e {
                                ReadError::TooLarge => {
                                    ExchangeError::new(ErrorKind::TooLarge(limit))
                                }
                                ReadError::Body(e) => ExchangeError {
                                    kind: ErrorKind::Transport,
                                    source: Some(Arc::from(e)),
                                },
                            })?;
                    Ok((status, body))
                };
                tokio::time::timeout(timeout, exchange)
                    .await
                    .map_err(|_| ExchangeError::new(ErrorKind::Timeout(timeout)))?
            }
            .boxed()
        };
        let basic = (self.auth.method == AuthMethod::Basic).then(|| {
            let mut value = HeaderValue::try_from(form::basic_authorization(
                &self.auth.client_id,
                &self.auth.client_secret,
            ))
            .expect("base64 is a valid header value");
            value.set_sensitive(true);
            value
        });
        let cache = moka::future::Cache::builder()
            .max_capacity(self.max_entries)
            .expire_after(PerEntry)
            .support_invalidation_closures()
            .build();
        TokenExchange {
            inner: Arc::new(Exchanger {
                post: Box::new(post),
                endpoint: self.endpoint,
                auth: self.auth,
                basic,
                subject_token_type: self.subject_token_type,
                expiry_skew: self.expiry_skew,
                refused_ttl: self.refused_ttl,
                cache,
                in_flight: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }
}

/// A [`Layer`] for the client side of one upstream that accepts only tokens issued for it: it exchanges the
/// subject token of the request's identity ([`Authenticated<I>`] with `I:` [`SubjectToken`]) for one whose
/// audience is this upstream, and sends that as `Authorization: Bearer`.
///
/// Put it inside [`ForwardCredentialsLayer`](super::ForwardCredentialsLayer) (nearer the HTTP client), so the
/// exchanged token is set after that layer has removed every other credential:
///
/// | request | what happens |
/// |---|---|
/// | no identity, or one without a subject token (a gateway key) | passed on as [`ForwardCredentialsLayer`](super::ForwardCredentialsLayer) prepared it |
/// | exchange succeeds | `Authorization: Bearer <exchanged>` (sensitive), inner service called |
/// | upstream answers 401 | the cached token is dropped, exchanged again, and the request sent once more |
/// | authorization server refuses (4xx) | 401 `invalid_token`, with the route's challenge; inner service not called |
/// | 5xx, 401 (the gateway's client authentication refused), transport error, timeout | 503; inner service not called |
///
/// Retrying needs the request twice, so the request body must be `Clone` (e.g. `Full<Bytes>`: MCP messages
/// are small JSON documents; buffer a streaming body first, with a size limit).
pub struct ExchangeTokenLayer<I> {
    exchange: TokenExchange,
    target: Arc<ExchangeTarget>,
    challenges: Challenges,
    _identity: PhantomData<fn() -> I>,
}

impl<I> ExchangeTokenLayer<I> {
    /// Exchanges through `exchange` for `target`.
    pub fn new(exchange: TokenExchange, target: ExchangeTarget) -> Self {
        Self {
            exchange,
            target: Arc::new(target),
            challenges: Challenges::bare(),
            _identity: PhantomData,
        }
    }

    /// Names the route's RFC 9728 metadata in the 401 answered when the exchange is refused, as
    /// [`McpAuthLayer::resource_metadata`](crate::McpAuthLayer::resource_metadata) does.
    ///
    /// # Panics
    /// When `url` is not visible ASCII or holds `"` or `\`.
    pub fn resource_metadata(self, url: &str) -> Self {
        self.try_resource_metadata(url)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`resource_metadata`](Self::resource_metadata) for values read from configuration: a
    /// [`ConfigError`](crate::ConfigError) naming the URL instead of a panic.
    pub fn try_resource_metadata(mut self, url: &str) -> Result<Self, crate::ConfigError> {
        self.challenges = Challenges::with_resource_metadata(url)?;
        Ok(self)
    }
}

impl<I> Clone for ExchangeTokenLayer<I> {
    fn clone(&self) -> Self {
        Self {
            exchange: self.exchange.clone(),
            target: Arc::clone(&self.target),
            challenges: self.challenges.clone(),
            _identity: PhantomData,
        }
    }
}

impl<I> fmt::Debug for ExchangeTokenLayer<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeTokenLayer")
            .field("exchange", &self.exchange)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl<S, I> Layer<S> for ExchangeTokenLayer<I> {
    type Service = ExchangeToken<S, I>;

    fn layer(&self, inner: S) -> Self::Service {
        ExchangeToken {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware that sends one upstream a token exchanged for it; built by [`ExchangeTokenLayer`].
pub struct ExchangeToken<S, I> {
    inner: S,
    layer: ExchangeTokenLayer<I>,
}

impl<S: Clone, I> Clone for ExchangeToken<S, I> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, I> fmt::Debug for ExchangeToken<S, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeToken")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, I> ExchangeToken<S, I> {
    crate::macros::inner_service_accessors!();
}

impl<S, I, B, ResBody> Service<Request<B>> for ExchangeToken<S, I>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    I: SubjectToken + Clone + Send + Sync + 'static,
    B: Clone + Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The ready service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let identity = request
            .extensions()
            .get::<Authenticated<I>>()
            .map(|authenticated| authenticated.identity().clone());
        let Some(identity) = identity.filter(|identity| identity.subject_token().is_some()) else {
            return inner
                .call(request)
                .map(|r| r.map(|r| r.map(ResponseBody::new)))
                .boxed();
        };
        let layer = self.layer.clone();
        async move {
            let subject = identity.subject_token().expect("checked above");
            let grpc = is_grpc(request.headers());
            let refusal = |error: ExchangeError| {
                tracing::debug!(
                    target: "tower_mcp_auth::upstream",
                    %error,
                    subject = %Fingerprint::of(subject.token),
                    "token exchange failed"
                );
                let rejection = if error.is_refused() {
                    Rejection::Unauthorized {
                        challenges: layer.challenges.clone(),
                        token_sent: true,
                    }
                } else {
                    Rejection::Unavailable
                };
                rejection.into_response(grpc).map(ResponseBody::full)
            };
            let token = match layer.exchange.exchange(subject, &layer.target).await {
                Ok(token) => token,
                Err(error) => return Ok(refusal(error)),
            };
            let retry = copy(&request);
            let response = send(&mut inner, request, &token).await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response.map(ResponseBody::new));
            }
            drop(response);
            let token = match layer.exchange.exchange_again(subject, &layer.target).await {
                Ok(token) => token,
                Err(error) => return Ok(refusal(error)),
            };
            let response = send(&mut inner, retry, &token).await?;
            Ok(response.map(ResponseBody::new))
        }
        .boxed()
    }
}

/// A copy of `request` for the retry: everything but the extensions that are not `Clone`-able is kept.
fn copy<B: Clone>(request: &Request<B>) -> Request<B> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    copy
}

/// Sets the exchanged token and calls `inner` once it is ready.
async fn send<S, B, ResBody>(
    inner: &mut S,
    mut request: Request<B>,
    token: &ExchangedToken,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.as_str()))
        .expect("checked when the token was read");
    value.set_sensitive(true);
    request.headers_mut().insert(header::AUTHORIZATION, value);
    poll_fn(|cx| inner.poll_ready(cx)).await?;
    inner.call(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::STANDARD, Engine as _};

    #[test]
    fn an_exchanged_token_is_kept_no_longer_than_either_lifetime() {
        let exchange = TokenExchange::builder(
            "http://127.0.0.1:9/token".parse().unwrap(),
            TokenClientAuth::basic("id", "secret"),
        )
        .expiry_skew(Duration::from_secs(30))
        .build_with_client(Client::builder(TokioExecutor::new()).build_http());
        let exchanger = &exchange.inner;
        let hour = Some(SystemTime::now() + Duration::from_secs(3600));
        assert_eq!(exchanger.ttl(Some(600), hour), Duration::from_secs(570));
        let soon = exchanger.ttl(
            Some(600),
            Some(SystemTime::now() + Duration::from_secs(100)),
        );
        assert!(soon <= Duration::from_secs(100) && soon > Duration::from_secs(90));
        assert_eq!(exchanger.ttl(Some(10), hour), Duration::ZERO);
        assert_eq!(exchanger.ttl(None, None), DEFAULT_TTL_WITHOUT_EXPIRY);
        let past = Some(SystemTime::now() - Duration::from_secs(1));
        assert_eq!(exchanger.ttl(Some(600), past), Duration::ZERO);
    }

    #[test]
    fn cache_keys_differ_by_every_parameter_and_never_hold_the_token() {
        let exchange = TokenExchange::builder(
            "http://127.0.0.1:9/token".parse().unwrap(),
            TokenClientAuth::post("id", "secret"),
        )
        .build_with_client(Client::builder(TokioExecutor::new()).build_http());
        let e = &exchange.inner;
        let a = ExchangeTarget::resource("r");
        let keys = [
            e.key("t", &a),
            e.key("t2", &a),
            e.key("t", &ExchangeTarget::audience("r")),
            e.key("t", &a.clone().with_scope("s")),
            e.key("t", &ExchangeTarget::resource("r").with_audience("")),
        ];
        for (i, x) in keys.iter().enumerate() {
            for y in &keys[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert!(!format!("{:?}", TokenClientAuth::post("id", "secret")).contains("secret"));
    }

    #[test]
    fn the_form_carries_the_rfc8693_parameters() {
        let exchange = TokenExchange::builder(
            "http://127.0.0.1:9/token".parse().unwrap(),
            TokenClientAuth::basic("gate way", "s:cret"),
        )
        .build_with_client(Client::builder(TokioExecutor::new()).build_http());
        let request = exchange.inner.request(
            "subj",
            &ExchangeTarget::resource("https://u/mcp").with_scope("a b"),
        );
        assert_eq!(
            request.headers()[header::AUTHORIZATION],
            format!("Basic {}", STANDARD.encode("gate+way:s%3Acret"))
        );
        assert!(request.headers()[header::AUTHORIZATION].is_sensitive());
    }
}
