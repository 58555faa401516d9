//! `Cache`: answers repeated credentials from memory (moka) and shares one detached store lookup between
//! concurrent validations of a credential.

use std::{
    collections::HashMap,
    error::Error,
    fmt,
    future::{ready, Future, Ready},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use futures_util::{
    future::{BoxFuture, Either, Shared},
    FutureExt,
};
use moka::Expiry;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

use super::revocation::{Revocation, RevocationSink, TrustGate};
use crate::{
    metrics::{self, CacheLookup},
    secret::sha256,
    validate::{BoxError, Recognition, Validator, Verdict},
    Presented,
};

/// The default time a `Valid` answer is kept: 60 s.
const DEFAULT_VALID_TTL: Duration = Duration::from_secs(60);
/// The default time an `Unknown` answer is kept: 10 s.
const DEFAULT_UNKNOWN_TTL: Duration = Duration::from_secs(10);
/// The default time a `Denied` answer is kept: 10 s.
const DEFAULT_DENIED_TTL: Duration = Duration::from_secs(10);
/// The default bound on the number of cached answers.
const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// The default deadline of one store lookup: 5 s, the layer's default validation timeout.
const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// What one cached answer costs besides its identity's heap data: the 32-byte key, the entry, and moka's
/// bookkeeping for it (an estimate).
const ENTRY_OVERHEAD: usize = 160;

type ExpiryFn<I> = dyn Fn(&I) -> Option<SystemTime> + Send + Sync;
type WeigherFn<I> = dyn Fn(&I) -> usize + Send + Sync;
type Outcome<I> = Result<Verdict<I>, CacheError>;
/// A store lookup in progress, awaited by every validation of its credential.
type Lookup<I> = Shared<BoxFuture<'static, Outcome<I>>>;
/// The lookups in progress, by credential digest, each with the number that tells it apart from a later one.
type InFlight<I> = Mutex<HashMap<[u8; 32], (u64, Lookup<I>)>>;

/// A [`Validator`] that caches another validator's answers, keyed by the credential's SHA-256 digest.
///
/// - **Per-verdict TTLs.** `Valid` answers are kept for [`valid_ttl`](CacheBuilder::valid_ttl) (60 s),
///   `Unknown` for [`unknown_ttl`](CacheBuilder::unknown_ttl) (10 s) and `Denied` for
///   [`denied_ttl`](CacheBuilder::denied_ttl) (10 s). The negative cache of `Unknown` answers is what makes
///   OAuth passthrough cheap: a client's upstream token is looked up once per `unknown_ttl`, not per request.
///   A TTL of zero disables caching of that verdict (concurrent lookups are still coalesced).
/// - **Errors are never cached**, and neither is a lookup that outlived its
///   [`lookup_timeout`](CacheBuilder::lookup_timeout): the next request asks the store again.
/// - **Detached single flight.** Concurrent validations of the same credential share one call to the inner
///   validator, which runs as its own Tokio task (`tokio::spawn`) with its own deadline,
///   [`lookup_timeout`](CacheBuilder::lookup_timeout) (5 s). A validation that is given up (the layer's
///   timeout, a client that disconnects) stops waiting but never cancels the lookup for the others, so a hung
///   store receives one call per credential per `lookup_timeout`, however many requests time out waiting for
///   it. Lookups are keyed by the credential's digest; a miss must therefore be awaited inside a Tokio
///   runtime.
/// - **Bounded.** At most [`max_entries`](CacheBuilder::max_entries) answers (100 000), and optionally at most
///   [`max_bytes`](CacheBuilder::max_bytes), with identities weighed by a [`weigher`](CacheBuilder::weigher);
///   the least useful entries are evicted first (moka's TinyLFU).
/// - **Digests, not credentials.** The cache holds SHA-256 digests of credentials; a credential is copied
///   only into an in-flight lookup, in a buffer that is zeroed when dropped.
/// - **Expiry caps the TTL.** With [`expiry`](CacheBuilder::expiry), a `Valid` answer for a key that expires
///   in 5 s is kept for 5 s, not 60.
///
/// A cache hit answers with a ready future and no allocation beyond cloning the identity (wrap large
/// identities in an `Arc`); a miss boxes the lookup.
///
/// # Time
///
/// An answer's TTL is kept on Tokio's clock ([`tokio::time::Instant`]), which is the system's monotonic clock
/// except in tests that pause time (`#[tokio::test(start_paused = true)]` and `tokio::time::advance`, with
/// Tokio's `test-util` feature): there, expiry follows the paused clock, so TTLs can be tested without
/// sleeping. moka also evicts each answer once its TTL has passed in real time, to free the memory.
///
/// # Revocation delay
///
/// A key revoked in the store is still admitted from the cache for up to `valid_ttl` (or until it expires, if
/// sooner), and a newly issued key that was tried before it existed is refused for up to `unknown_ttl`. Call
/// [`invalidate`](Cache::invalidate) (or [`invalidate_digest`](Cache::invalidate_digest), for stores that
/// only know digests) after the store change is committed to end that delay at once; a lookup that was
/// already in flight when you invalidated may still store the answer it read before the change.
///
/// Across several replicas, a revocation source drives [`invalidate_digest`](Cache::invalidate_digest) through
/// [`RevocationSink`](super::RevocationSink) (for LiteLLM's tables: `LiteLlmRevocations`, feature `postgres`),
/// and [`trust_gate`](CacheBuilder::trust_gate) bounds how long `Valid` answers are trusted when that source
/// goes quiet.
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use tower_mcp_auth::{validate_fn, validators::Cache, Validator, Verdict};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = validate_fn(|key: String| async move {
///     Ok::<_, Infallible>(if key == "sk-good" { Verdict::Valid("alice".to_owned()) } else { Verdict::Unknown })
/// });
/// let cache = Cache::builder(store).unknown_ttl(Duration::from_secs(5)).build();
/// assert_eq!(cache.validate("sk-good").await.unwrap(), Verdict::Valid("alice".to_owned()));
/// assert_eq!(cache.validate("oauth-token").await.unwrap(), Verdict::Unknown); // asks the store
/// assert_eq!(cache.validate("oauth-token").await.unwrap(), Verdict::Unknown); // from memory
/// cache.invalidate("sk-good").await; // revoked: the next request asks the store again
/// # }
/// ```
pub struct Cache<V: Validator> {
    inner: Arc<V>,
    answers: moka::future::Cache<[u8; 32], Answer<V::Identity>>,
    policy: Arc<Policy<V::Identity>>,
    in_flight: Arc<InFlight<V::Identity>>,
}

/// A cached answer and how long it may be kept, decided when it was stored.
#[derive(Clone)]
struct Answer<I> {
    verdict: Verdict<I>,
    ttl: Duration,
    /// When the answer stops being served, on Tokio's clock; `None` when that is beyond what it can count.
    until: Option<tokio::time::Instant>,
}

impl<I> Answer<I> {
    fn is_fresh(&self, now: tokio::time::Instant) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// Tells moka to keep each answer for its own TTL.
struct PerAnswer;

impl<I> Expiry<[u8; 32], Answer<I>> for PerAnswer {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        answer: &Answer<I>,
        _: Instant,
    ) -> Option<Duration> {
        Some(answer.ttl)
    }

    fn expire_after_update(
        &self,
        _: &[u8; 32],
        answer: &Answer<I>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(answer.ttl)
    }
}

/// The TTL settings and the lookup deadline, shared with in-flight lookups.
struct Policy<I> {
    valid_ttl: Duration,
    unknown_ttl: Duration,
    denied_ttl: Duration,
    lookup_timeout: Duration,
    expiry: Option<Box<ExpiryFn<I>>>,
    gate: Option<TrustGate>,
}

impl<I> Policy<I> {
    /// Whether a cached verdict may be served now: a `Valid` one only while the trust gate, if any, is open.
    fn serves(&self, verdict: &Verdict<I>) -> bool {
        !matches!(verdict, Verdict::Valid(_))
            || self.gate.as_ref().is_none_or(TrustGate::is_trusted)
    }

    fn answer(&self, verdict: Verdict<I>) -> Answer<I> {
        let ttl = match &verdict {
            Verdict::Valid(identity) => {
                let until_expiry = self.expiry.as_ref().and_then(|f| f(identity)).map(|at| {
                    at.duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO)
                });
                until_expiry.map_or(self.valid_ttl, |left| left.min(self.valid_ttl))
            }
            Verdict::Unknown => self.unknown_ttl,
            Verdict::Denied | Verdict::Invalid => self.denied_ttl,
        };
        let until = tokio::time::Instant::now().checked_add(ttl);
        Answer {
            verdict,
            ttl,
            until,
        }
    }
}

impl<V: Validator> Cache<V> {
    /// The cached answer for a credential's digest, if there is one at hand.
    ///
    /// moka's `get` is async only because it may do some housekeeping; it almost always completes on the first
    /// poll, which lets a hit answer without waiting. When it does not, the lookup of `validate` (which checks
    /// the cache again) takes over.
    fn hit(&self, key: &[u8; 32]) -> Option<Verdict<V::Identity>> {
        self.answers
            .get(key)
            .now_or_never()
            .flatten()
            .filter(|answer| answer.is_fresh(tokio::time::Instant::now()))
            .filter(|answer| self.policy.serves(&answer.verdict))
            .map(|answer| {
                metrics::cache_lookup(CacheLookup::Hit);
                answer.verdict
            })
    }

    /// Caches `inner`'s answers with the defaults: `Valid` for 60 s, `Unknown` and `Denied` for 10 s, at most
    /// 100 000 answers, no expiry.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use tower_mcp_auth::{validate_fn, validators::Cache, Verdict};
    ///
    /// let cache = Cache::new(validate_fn(|_key: String| async { Ok::<Verdict<()>, Infallible>(Verdict::Unknown) }));
    /// # let _ = cache;
    /// ```
    pub fn new(inner: V) -> Self {
        Self::builder(inner).build()
    }

    /// Starts configuring a cache in front of `inner`.
    ///
    /// ```
    /// use std::{convert::Infallible, time::Duration};
    /// use tower_mcp_auth::{validate_fn, validators::Cache, Verdict};
    ///
    /// let store = validate_fn(|_key: String| async { Ok::<Verdict<String>, Infallible>(Verdict::Unknown) });
    /// let cache = Cache::builder(store)
    ///     .valid_ttl(Duration::from_secs(30))
    ///     .unknown_ttl(Duration::from_secs(5))
    ///     .denied_ttl(Duration::from_secs(5))
    ///     .max_entries(50_000)
    ///     .max_bytes(32 * 1024 * 1024)
    ///     .weigher(|identity: &String| identity.len())
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn builder(inner: V) -> CacheBuilder<V> {
        CacheBuilder {
            inner,
            valid_ttl: DEFAULT_VALID_TTL,
            unknown_ttl: DEFAULT_UNKNOWN_TTL,
            denied_ttl: DEFAULT_DENIED_TTL,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: None,
            weigher: None,
            expiry: None,
            gate: None,
            lookup_timeout: DEFAULT_LOOKUP_TIMEOUT,
        }
    }

    /// Forgets the answer for `credential`, so that the next validation asks the inner validator. Use it when
    /// a key is revoked; see the [revocation delay](Cache#revocation-delay).
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use tower_mcp_auth::{validate_fn, validators::Cache, Verdict};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let cache = Cache::new(validate_fn(|_k: String| async { Ok::<Verdict<()>, Infallible>(Verdict::Unknown) }));
    /// cache.invalidate("sk-revoked").await;
    /// # }
    /// ```
    pub async fn invalidate(&self, credential: &str) {
        self.answers.invalidate(&sha256(credential)).await;
    }

    /// Forgets the answer for the credential whose SHA-256 digest is `digest`: for revocation events from a
    /// store that only knows digests (LiteLLM's `token` column is this digest, hex-encoded).
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use tower_mcp_auth::{validate_fn, validators::Cache, Verdict};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let cache = Cache::new(validate_fn(|_k: String| async { Ok::<Verdict<()>, Infallible>(Verdict::Unknown) }));
    /// let digest: [u8; 32] = [0xab; 32]; // e.g. decoded from a revocation event
    /// cache.invalidate_digest(&digest).await;
    /// # }
    /// ```
    pub async fn invalidate_digest(&self, digest: &[u8; 32]) {
        self.answers.invalidate(digest).await;
    }

    /// Forgets every answer.
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use tower_mcp_auth::{validate_fn, validators::Cache, Verdict};
    /// # let cache = Cache::new(validate_fn(|_k: String| async { Ok::<Verdict<()>, Infallible>(Verdict::Unknown) }));
    /// cache.invalidate_all();
    /// ```
    pub fn invalidate_all(&self) {
        self.answers.invalidate_all();
    }

    /// How many answers the cache holds (approximate: moka applies some writes lazily).
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use tower_mcp_auth::{validate_fn, validators::Cache, Verdict};
    /// # let cache = Cache::new(validate_fn(|_k: String| async { Ok::<Verdict<()>, Infallible>(Verdict::Unknown) }));
    /// assert_eq!(cache.entry_count(), 0);
    /// ```
    pub fn entry_count(&self) -> u64 {
        self.answers.entry_count()
    }

    /// Applies the evictions and expirations moka has queued, so that [`entry_count`](Cache::entry_count) and
    /// [`weighted_size`](Cache::weighted_size) are exact afterwards (moka otherwise applies them in batches).
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use tower_mcp_auth::{validate_fn, validators::Cache, Verdict};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let cache = Cache::new(validate_fn(|_k: String| async { Ok::<Verdict<()>, Infallible>(Verdict::Unknown) }));
    /// cache.run_pending_tasks().await;
    /// assert_eq!(cache.entry_count(), 0);
    /// # }
    /// ```
    pub async fn run_pending_tasks(&self) {
        self.answers.run_pending_tasks().await;
    }

    /// The cache's current weight (approximate): the number of answers, or, when
    /// [`max_bytes`](CacheBuilder::max_bytes) is set, their estimated size in bytes (each answer weighing at
    /// least `max_bytes / max_entries`).
    ///
    /// ```
    /// # use std::convert::Infallible;
    /// # use tower_mcp_auth::{validate_fn, validators::Cache, Verdict};
    /// # let cache = Cache::new(validate_fn(|_k: String| async { Ok::<Verdict<()>, Infallible>(Verdict::Unknown) }));
    /// assert_eq!(cache.weighted_size(), 0);
    /// ```
    pub fn weighted_size(&self) -> u64 {
        self.answers.weighted_size()
    }

    /// The inner validator.
    ///
    /// ```
    /// use tower_mcp_auth::validators::{Cache, StaticKeys};
    ///
    /// let cache = Cache::new(StaticKeys::new().with_key("sk-a", ()));
    /// assert_eq!(cache.get_ref().len(), 1);
    /// ```
    pub fn get_ref(&self) -> &V {
        &self.inner
    }
}

impl<V: Validator> Clone for Cache<V> {
    /// Another handle on the same cache.
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            answers: self.answers.clone(),
            policy: Arc::clone(&self.policy),
            in_flight: Arc::clone(&self.in_flight),
        }
    }
}

impl<V: Validator> fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("inner", &std::any::type_name::<V>())
            .field("valid_ttl", &self.policy.valid_ttl)
            .field("unknown_ttl", &self.policy.unknown_ttl)
            .field("denied_ttl", &self.policy.denied_ttl)
            .field("lookup_timeout", &self.policy.lookup_timeout)
            .field("entry_count", &self.answers.entry_count())
            .finish()
    }
}

impl<V> Validator for Cache<V>
where
    V: Validator,
    V::Future: Send + 'static,
{
    type Identity = V::Identity;
    type Error = CacheError;
    type Future = CacheFuture<V::Identity>;

    fn validate_now(&self, credential: &str) -> Option<Result<Verdict<V::Identity>, CacheError>> {
        self.hit(&sha256(credential)).map(Ok)
    }

    fn validate_presented_now(
        &self,
        credential: &Presented<'_>,
    ) -> Option<Result<Verdict<V::Identity>, CacheError>> {
        self.hit(credential.sha256()).map(Ok)
    }

    /// A cached answer, else what the store itself recognises at once.
    fn recognize_now(&self, credential: &str) -> Recognition {
        match self.hit(&sha256(credential)) {
            Some(Verdict::Unknown) => Recognition::NotOurs,
            Some(_) => Recognition::Ours,
            None => self.inner.recognize_now(credential),
        }
    }

    fn validate(&self, credential: &str) -> Self::Future {
        let key = sha256(credential);
        if let Some(verdict) = self.hit(&key) {
            return CacheFuture(Either::Left(ready(Ok(verdict))));
        }
        let cache = self.clone();
        let credential = SecretString::from(credential);
        CacheFuture(Either::Right(Box::pin(async move {
            cache.join_or_start(key, credential).await
        })))
    }
}

impl<V> Cache<V>
where
    V: Validator,
    V::Future: Send + 'static,
{
    /// The lookup in progress for `key`, or a new one started for `credential`.
    ///
    /// Runs inside the caller's future, so that the lookup is spawned on the runtime that polls it. The entry
    /// goes into the table before the task exists, and the task is spawned after the lock is released: a task
    /// that ends at once (a runtime shutting down drops it on the spot) then finds its entry to remove, and never
    /// waits for a lock its spawner holds.
    fn join_or_start(&self, key: [u8; 32], credential: SecretString) -> Lookup<V::Identity> {
        let (reply, answer) = oneshot::channel();
        let (id, joined) = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((_, lookup)) = in_flight.get(&key) {
                metrics::cache_lookup(CacheLookup::Coalesced);
                return lookup.clone();
            }
            // A lookup may have stored its answer and left since `validate` missed.
            if let Some(verdict) = self.hit(&key) {
                return ready(Ok(verdict)).boxed().shared();
            }
            let id = NEXT_LOOKUP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let joined: Lookup<V::Identity> = async move {
                // No answer means the task ended without one: it panicked or its runtime shut down.
                answer
                    .await
                    .unwrap_or_else(|_| Err(CacheError(Arc::new(Box::new(LookupFailed::Aborted)))))
            }
            .boxed()
            .shared();
            in_flight.insert(key, (id, joined.clone()));
            (id, joined)
        };
        let leave = Leave {
            in_flight: Arc::clone(&self.in_flight),
            key,
            id,
        };
        metrics::cache_lookup(CacheLookup::Miss);
        // Detached: dropping the handle does not cancel the task, and no caller ever holds it.
        drop(tokio::spawn(lookup(
            Arc::clone(&self.inner),
            self.answers.clone(),
            Arc::clone(&self.policy),
            key,
            credential,
            reply,
            leave,
        )));
        joined
    }
}

/// Numbers lookups, so that one that ends removes its own entry and never a later one's.
static NEXT_LOOKUP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One store lookup, run as its own task: asks the inner validator within the lookup deadline, stores the
/// answer it gets (errors and timeouts are not stored), hands the outcome to every waiter, and leaves the
/// in-flight table.
async fn lookup<V>(
    inner: Arc<V>,
    answers: moka::future::Cache<[u8; 32], Answer<V::Identity>>,
    policy: Arc<Policy<V::Identity>>,
    key: [u8; 32],
    credential: SecretString,
    reply: oneshot::Sender<Outcome<V::Identity>>,
    leave: Leave<V::Identity>,
) where
    V: Validator,
    V::Future: Send + 'static,
{
    let asked = metrics::validation::<V, _, _>(inner.validate(credential.expose_secret()));
    // The future owns what it needs; the copy of the credential is zeroed now.
    drop(credential);
    let answered = match tokio::time::timeout(policy.lookup_timeout, asked).await {
        Ok(Ok(verdict)) => Ok(policy.answer(verdict)),
        Ok(Err(err)) => Err(CacheError(Arc::new(err.into()))),
        Err(_) => Err(CacheError(Arc::new(Box::new(LookupFailed::TimedOut(
            policy.lookup_timeout,
        ))))),
    };
    let outcome = match answered {
        Ok(answer) => {
            let verdict = answer.verdict.clone();
            if !answer.ttl.is_zero() {
                answers.insert(key, answer).await;
            }
            Ok(verdict)
        }
        Err(err) => Err(err),
    };
    // Nobody waiting is fine: the answer is stored for the next request.
    let _ = reply.send(outcome);
    // After the answer is stored: a validation that finds no lookup in flight finds the answer instead.
    drop(leave);
}

/// Removes a lookup from the in-flight table when it ends, however it ends (answer, error, deadline, panic,
/// runtime shutdown).
struct Leave<I> {
    in_flight: Arc<InFlight<I>>,
    key: [u8; 32],
    id: u64,
}

impl<I> Drop for Leave<I> {
    fn drop(&mut self) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight
            .get(&self.key)
            .is_some_and(|(id, _)| *id == self.id)
        {
            in_flight.remove(&self.key);
        }
    }
}

/// Why a lookup ended without the inner validator's answer or error.
#[derive(Debug)]
enum LookupFailed {
    /// The store did not answer within the lookup deadline.
    TimedOut(Duration),
    /// The lookup task panicked or its runtime shut down.
    Aborted,
}

impl fmt::Display for LookupFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut(after) => write!(f, "key store lookup timed out after {after:?}"),
            Self::Aborted => f.write_str("key store lookup aborted"),
        }
    }
}

impl Error for LookupFailed {}

/// Configures a [`Cache`]; made by [`Cache::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_auth::validators::{Cache, StaticKeys};
///
/// let cache = Cache::builder(StaticKeys::new().with_key("sk-a", "ops"))
///     .valid_ttl(Duration::from_secs(120))
///     .build();
/// # let _ = cache;
/// ```
pub struct CacheBuilder<V: Validator> {
    inner: V,
    valid_ttl: Duration,
    unknown_ttl: Duration,
    denied_ttl: Duration,
    max_entries: u64,
    max_bytes: Option<u64>,
    weigher: Option<Box<WeigherFn<V::Identity>>>,
    expiry: Option<Box<ExpiryFn<V::Identity>>>,
    gate: Option<TrustGate>,
    lookup_timeout: Duration,
}

impl<V: Validator> CacheBuilder<V> {
    /// The deadline of one store lookup (default 5 s, the layer's default validation timeout).
    ///
    /// A lookup runs detached from the requests that wait for it, so the layer's
    /// [`validation_timeout`](crate::McpAuthLayer::validation_timeout) does not end it: this does. A lookup
    /// that outlives it fails every validation still waiting with an error ([`CacheError::is_timeout`]),
    /// which is not cached: the next validation starts a new lookup. Set it near the layer's timeout; a hung
    /// store then receives about one call per credential per `lookup_timeout`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_auth::validators::{Cache, StaticKeys};
    /// let cache = Cache::builder(StaticKeys::<()>::new()).lookup_timeout(Duration::from_secs(2)).build();
    /// # let _ = cache;
    /// ```
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.lookup_timeout = timeout;
        self
    }

    /// How long a `Valid` answer is kept (default 60 s): the longest a revoked key may still be admitted.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_auth::validators::{Cache, StaticKeys};
    /// let cache = Cache::builder(StaticKeys::<()>::new()).valid_ttl(Duration::from_secs(30)).build();
    /// # let _ = cache;
    /// ```
    pub fn valid_ttl(mut self, ttl: Duration) -> Self {
        self.valid_ttl = ttl;
        self
    }

    /// How long an `Unknown` answer is kept (default 10 s): the negative cache that spares the store one
    /// lookup per passthrough request, and the longest a newly issued key may be refused after a failed try.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_auth::validators::{Cache, StaticKeys};
    /// let cache = Cache::builder(StaticKeys::<()>::new()).unknown_ttl(Duration::from_secs(2)).build();
    /// # let _ = cache;
    /// ```
    pub fn unknown_ttl(mut self, ttl: Duration) -> Self {
        self.unknown_ttl = ttl;
        self
    }

    /// How long a `Denied` answer is kept (default 10 s): the longest an unblocked key may still be refused.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_auth::validators::{Cache, StaticKeys};
    /// let cache = Cache::builder(StaticKeys::<()>::new()).denied_ttl(Duration::from_secs(60)).build();
    /// # let _ = cache;
    /// ```
    pub fn denied_ttl(mut self, ttl: Duration) -> Self {
        self.denied_ttl = ttl;
        self
    }

    /// The most answers kept (default 100 000).
    ///
    /// ```
    /// # use tower_mcp_auth::validators::{Cache, StaticKeys};
    /// let cache = Cache::builder(StaticKeys::<()>::new()).max_entries(10_000).build();
    /// # let _ = cache;
    /// ```
    pub fn max_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }

    /// Also bounds the cache's estimated size in bytes (default: no byte bound). Each answer is estimated at
    /// a fixed overhead plus what the [`weigher`](CacheBuilder::weigher) says its identity holds; the entry
    /// bound still applies.
    ///
    /// ```
    /// # use tower_mcp_auth::validators::{Cache, StaticKeys};
    /// let cache = Cache::builder(StaticKeys::<String>::new())
    ///     .max_bytes(64 * 1024 * 1024)
    ///     .weigher(|identity: &String| identity.capacity())
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = Some(max);
        self
    }

    /// Estimates the heap bytes an identity holds, for [`max_bytes`](CacheBuilder::max_bytes) (default: 0);
    /// without `max_bytes` it is not used.
    ///
    /// ```
    /// # use tower_mcp_auth::validators::{Cache, StaticKeys};
    /// let cache = Cache::builder(StaticKeys::<String>::new())
    ///     .max_bytes(1 << 20)
    ///     .weigher(|identity: &String| identity.len())
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn weigher(
        mut self,
        weigher: impl Fn(&V::Identity) -> usize + Send + Sync + 'static,
    ) -> Self {
        self.weigher = Some(Box::new(weigher));
        self
    }

    /// Tells the cache when a `Valid` answer stops being true: the answer is kept until then if that is
    /// sooner than [`valid_ttl`](CacheBuilder::valid_ttl), and not at all if it has passed.
    ///
    /// The expiry comes from the identity, because [`Verdict`] carries nothing else: the identities of the
    /// ready-made store validators have an `expires_at` method for this (`IntrospectionClaims::expires_at`,
    /// `KeyInfo::expires_at`).
    ///
    /// ```
    /// use std::{convert::Infallible, time::{Duration, SystemTime}};
    /// use tower_mcp_auth::{validate_fn, validators::Cache, Verdict};
    ///
    /// #[derive(Clone)]
    /// struct Key { owner: String, expires: Option<SystemTime> }
    ///
    /// let store = validate_fn(|_key: String| async {
    ///     let expires = Some(SystemTime::now() + Duration::from_secs(5));
    ///     Ok::<_, Infallible>(Verdict::Valid(Key { owner: "alice".into(), expires }))
    /// });
    /// // Kept for 5 s, not 60.
    /// let cache = Cache::builder(store).expiry(|key: &Key| key.expires).build();
    /// # let _ = cache;
    /// ```
    pub fn expiry(
        mut self,
        expiry: impl Fn(&V::Identity) -> Option<SystemTime> + Send + Sync + 'static,
    ) -> Self {
        self.expiry = Some(Box::new(expiry));
        self
    }

    /// Serves cached `Valid` answers only while `gate` is open: once the revocation source that feeds the gate
    /// has been silent for longer than its bound, every credential is validated by the store again (and an
    /// outage of the store then fails closed instead of admitting keys that may have been revoked meanwhile).
    /// See [`TrustGate`] and `LiteLlmRevocations` (feature `postgres`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_auth::validators::{Cache, StaticKeys, TrustGate};
    /// let gate = TrustGate::new(Duration::from_secs(2));
    /// let cache = Cache::builder(StaticKeys::<()>::new()).trust_gate(gate.clone()).build();
    /// # let _ = cache;
    /// ```
    pub fn trust_gate(mut self, gate: TrustGate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Builds the cache.
    ///
    /// ```
    /// # use tower_mcp_auth::validators::{Cache, StaticKeys};
    /// let cache = Cache::builder(StaticKeys::<()>::new()).build();
    /// # let _ = cache;
    /// ```
    pub fn build(self) -> Cache<V> {
        let Self {
            inner,
            valid_ttl,
            unknown_ttl,
            denied_ttl,
            max_entries,
            max_bytes,
            weigher,
            expiry,
            gate,
            lookup_timeout,
        } = self;
        let builder = moka::future::Cache::builder().expire_after(PerAnswer);
        let answers = match max_bytes {
            None => builder.max_capacity(max_entries).build(),
            Some(max_bytes) => {
                // Every answer weighs at least max_bytes / max_entries, so no more than max_entries fit in
                // max_bytes; and at least its estimated size, so their sizes add up to no more than max_bytes.
                let floor = max_bytes.div_ceil(max_entries.max(1));
                builder
                    .max_capacity(max_bytes)
                    .weigher(move |_, answer: &Answer<V::Identity>| {
                        let identity = match (&answer.verdict, &weigher) {
                            (Verdict::Valid(identity), Some(weigh)) => weigh(identity),
                            _ => 0,
                        };
                        let estimate = (ENTRY_OVERHEAD + identity) as u64;
                        u32::try_from(estimate.max(floor)).unwrap_or(u32::MAX)
                    })
                    .build()
            }
        };
        Cache {
            inner: Arc::new(inner),
            answers,
            policy: Arc::new(Policy {
                valid_ttl,
                unknown_ttl,
                denied_ttl,
                lookup_timeout,
                expiry,
                gate,
            }),
            in_flight: Arc::default(),
        }
    }
}

impl<V: Validator> fmt::Debug for CacheBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("inner", &std::any::type_name::<V>())
            .field("valid_ttl", &self.valid_ttl)
            .field("unknown_ttl", &self.unknown_ttl)
            .field("denied_ttl", &self.denied_ttl)
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("lookup_timeout", &self.lookup_timeout)
            .finish_non_exhaustive()
    }
}

/// The validation in progress for a [`Cache`]: ready at once on a hit, the (shared) store lookup on a miss.
///
/// ```
/// use tower_mcp_auth::{validators::{Cache, CacheFuture, StaticKeys}, Validator};
///
/// let cache = Cache::new(StaticKeys::new().with_key("sk-a", "ops"));
/// let future: CacheFuture<&str> = cache.validate("sk-a");
/// # drop(future);
/// ```
pub struct CacheFuture<I>(Either<Ready<Outcome<I>>, BoxFuture<'static, Outcome<I>>>);

impl<I> Future for CacheFuture<I> {
    type Output = Outcome<I>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<I> fmt::Debug for CacheFuture<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0 {
            Either::Left(_) => "Hit",
            Either::Right(_) => "Lookup",
        };
        f.debug_tuple("CacheFuture").field(&state).finish()
    }
}

/// The inner validator's error, shared by every validation that waited for the same lookup. `Display` and
/// `source` are the inner error's.
///
/// ```
/// use std::{fmt, error::Error};
/// use tower_mcp_auth::{validate_fn, validators::Cache, Validator, Verdict};
///
/// #[derive(Debug)]
/// struct StoreDown;
/// impl fmt::Display for StoreDown {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str("store down") }
/// }
/// impl Error for StoreDown {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cache = Cache::new(validate_fn(|_key: String| async { Err::<Verdict<()>, _>(StoreDown) }));
/// let err = cache.validate("sk-a").await.unwrap_err();
/// assert_eq!(err.to_string(), "store down");
/// assert!(err.get_ref().is::<StoreDown>());
/// # }
/// ```
#[derive(Clone)]
pub struct CacheError(Arc<BoxError>);

impl CacheError {
    /// The inner validator's error, for downcasting.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &**self.0
    }

    /// Whether the store did not answer within the cache's
    /// [`lookup_timeout`](CacheBuilder::lookup_timeout).
    ///
    /// ```
    /// use std::{convert::Infallible, time::Duration};
    /// use tower_mcp_auth::{validate_fn, validators::Cache, Validator, Verdict};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let hung = validate_fn(|_key: String| std::future::pending::<Result<Verdict<()>, Infallible>>());
    /// let cache = Cache::builder(hung).lookup_timeout(Duration::from_millis(10)).build();
    /// let err = cache.validate("sk-a").await.unwrap_err();
    /// assert!(err.is_timeout());
    /// # }
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.get_ref().downcast_ref::<LookupFailed>(),
            Some(LookupFailed::TimedOut(_))
        )
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self.0, f)
    }
}

impl fmt::Debug for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CacheError").field(&self.0).finish()
    }
}

impl Error for CacheError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

impl<V: Validator> RevocationSink for Cache<V> {
    fn revoke<'a>(&'a self, revocation: &'a Revocation) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match revocation {
                Revocation::Digest(digest) => self.invalidate_digest(digest).await,
                Revocation::All => self.invalidate_all(),
            }
        })
    }
}
