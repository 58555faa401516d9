//! [`TokenExchange`]: the RFC 8693 client of one authorization server, and its builder.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures_util::{future::BoxFuture, FutureExt as _};
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::Connect, Client};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{
    http_client::{
        basic_authorization, form_body, https_client, send, ClientOptions, FetchFailure,
    },
    tls::TrustError,
};

use super::{
    cache::{Entry, Flight, InFlight, PerEntry},
    config::{AuthMethod, ExchangeTarget, TokenClientAuth, ACCESS_TOKEN_TYPE, GRANT_TYPE},
    error::{ErrorKind, ExchangeError},
    token::{ExchangedToken, Subject},
};

pub(super) const DEFAULT_EXPIRY_SKEW: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_REFUSED_TTL: Duration = Duration::from_secs(5);
pub(super) const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// How long an exchanged token without `expires_in` is kept at most (its subject's `exp` may cut it shorter).
pub(super) const DEFAULT_TTL_WITHOUT_EXPIRY: Duration = Duration::from_secs(60);

pub(super) type Post = dyn Fn(Request<Full<Bytes>>) -> BoxFuture<'static, Result<(StatusCode, Bytes), ExchangeError>>
    + Send
    + Sync;

pub(super) struct Exchanger {
    pub(super) post: Box<Post>,
    pub(super) endpoint: Uri,
    pub(super) auth: TokenClientAuth,
    pub(super) basic: Option<HeaderValue>,
    pub(super) subject_token_type: String,
    pub(super) expiry_skew: Duration,
    pub(super) refused_ttl: Duration,
    pub(super) cache: moka::future::Cache<[u8; 32], Entry>,
    pub(super) in_flight: Mutex<HashMap<[u8; 32], InFlight>>,
    pub(super) next_id: AtomicU64,
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
/// It is cheap to clone (an `Arc`); share one between the [`ExchangeTokenLayer`](super::ExchangeTokenLayer)s of all upstreams.
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
    pub(super) inner: Arc<Exchanger>,
}

impl TokenExchange {
    /// Starts building a client for the token endpoint at `endpoint`, authenticating as `auth`.
    pub fn builder(endpoint: Uri, auth: TokenClientAuth) -> TokenExchangeBuilder {
        TokenExchangeBuilder {
            endpoint,
            auth,
            subject_token_type: ACCESS_TOKEN_TYPE.to_owned(),
            options: ClientOptions::new(),
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
                let entry = Entry {
                    subject: subject_digest,
                    outcome: outcome.clone(),
                    ttl,
                };
                exchanger.cache.insert(key, entry).await;
                // Checked after the insert, never only before it: an invalidation that set the flag while the
                // insert was under way may have registered its predicate before the entry existed, and would
                // then not hide it. Whatever the interleaving, one of the two removes it.
                if flag.load(Ordering::SeqCst) {
                    exchanger.cache.invalidate(&key).await;
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
        let mut request = Request::new(Full::new(Bytes::from(form_body(pairs))));
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
        // RFC 6749 §5.2 error responses are 400s (`invalid_grant`, `invalid_target`, ...); some servers answer
        // `access_denied` with 403. Only those refuse the subject token. A 401 refuses the gateway's own client
        // authentication (`invalid_client`), and a 404, 405, 429 or 5xx says the endpoint is wrong or unwell:
        // the gateway's problem, never a reason to send the client for a new token in vain (503, not 401).
        if matches!(status, StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN) {
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
    pub(super) endpoint: Uri,
    pub(super) auth: TokenClientAuth,
    pub(super) subject_token_type: String,
    pub(super) options: ClientOptions,
    pub(super) expiry_skew: Duration,
    pub(super) refused_ttl: Duration,
    pub(super) max_entries: u64,
}

impl TokenExchangeBuilder {
    /// The type of the subject tokens (default [`ACCESS_TOKEN_TYPE`]; `…:token-type:jwt` for some servers).
    pub fn subject_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.subject_token_type = token_type.into();
        self
    }

    /// How long one exchange may take (default 3 s); a slower one is a 503.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// The largest token endpoint answer accepted (default 64 KiB).
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.options.max_response_bytes = max;
        self
    }

    /// Sets the [timeout](Self::timeout) and the [answer cap](Self::max_response_bytes) at once (default
    /// [`ClientOptions::new`]: 3 s, 64 KiB).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_auth::{
    ///     http_client::ClientOptions,
    ///     upstream::{TokenClientAuth, TokenExchange},
    /// };
    ///
    /// let exchange = TokenExchange::builder(
    ///     "http://127.0.0.1:8080/token".parse().unwrap(),
    ///     TokenClientAuth::basic("gateway", "client-secret"),
    /// )
    /// .client_options(ClientOptions::new().with_timeout(Duration::from_secs(1)))
    /// .build()
    /// .expect("usable trust roots");
    /// # let _ = exchange;
    /// ```
    pub fn client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
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
        Ok(self.build_with_client(https_client()?))
    }

    /// Builds the client over `client` (bring your own connector, e.g. for TLS).
    pub fn build_with_client<C>(self, client: Client<C, Full<Bytes>>) -> TokenExchange
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        let options = self.options;
        let post = move |request: Request<Full<Bytes>>| {
            let client = client.clone();
            async move {
                send(&client, request, options)
                    .await
                    .map_err(|failure| match failure {
                        FetchFailure::Transport(e) => ExchangeError {
                            kind: ErrorKind::Transport,
                            source: Some(Arc::from(e)),
                        },
                        FetchFailure::TooLarge => {
                            ExchangeError::new(ErrorKind::TooLarge(options.max_response_bytes))
                        }
                        FetchFailure::Timeout => {
                            ExchangeError::new(ErrorKind::Timeout(options.timeout))
                        }
                        // `send` reads the answer whatever its status.
                        FetchFailure::Status(status) => {
                            ExchangeError::new(ErrorKind::Status(status))
                        }
                    })
            }
            .boxed()
        };
        let basic = (self.auth.method == AuthMethod::Basic).then(|| {
            let mut value = HeaderValue::try_from(basic_authorization(
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use hyper_util::rt::TokioExecutor;

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

    #[tokio::test]
    async fn a_subject_invalidated_while_its_exchange_finishes_leaves_nothing_cached() {
        use tokio::sync::Barrier;
        // The token endpoint answers only once the test has invalidated the subject mid-flight.
        let (reached, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let mut exchange = TokenExchange::builder(
            "http://127.0.0.1:9/token".parse().unwrap(),
            TokenClientAuth::basic("id", "secret"),
        )
        .build_with_client(Client::builder(TokioExecutor::new()).build_http());
        let posts = Arc::new(AtomicU64::new(0));
        {
            let (reached, release, posts) = (reached.clone(), release.clone(), posts.clone());
            Arc::get_mut(&mut exchange.inner).unwrap().post = Box::new(move |_| {
                let (reached, release) = (reached.clone(), release.clone());
                let first = posts.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        reached.wait().await;
                        release.wait().await;
                    }
                    let body = br#"{"access_token":"exchanged","expires_in":600}"#;
                    Ok((StatusCode::OK, Bytes::from_static(body)))
                }
                .boxed()
            });
        }
        let target = ExchangeTarget::resource("https://u/mcp");
        let flight = {
            let (exchange, target) = (exchange.clone(), target.clone());
            tokio::spawn(async move {
                let subject = Subject {
                    token: "subject",
                    expires_at: None,
                };
                exchange.exchange(subject, &target).await
            })
        };
        reached.wait().await;
        exchange.invalidate_subject("subject");
        release.wait().await;
        assert!(
            flight.await.unwrap().is_ok(),
            "the request in flight still gets its answer"
        );
        let key = exchange.inner.key("subject", &target);
        exchange.inner.cache.run_pending_tasks().await;
        assert!(
            exchange.inner.cache.get(&key).await.is_none(),
            "the revoked subject's exchanged token stayed cached"
        );
        // The next request exchanges again.
        let subject = Subject {
            token: "subject",
            expires_at: None,
        };
        exchange.exchange(subject, &target).await.unwrap();
        assert_eq!(posts.load(Ordering::SeqCst), 2);
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
