//! Revocation from outside the process: the [`RevocationSink`] hook that any revocation source drives, and
//! the [`TrustGate`] that stops a cache trusting its `Valid` answers when that source goes quiet.

use std::{
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::secret::Fingerprint;

/// A credential revoked somewhere else (in a shared key store, by another replica), or every credential.
///
/// A revocation names a credential by its SHA-256 digest, the form in which key stores such as LiteLLM keep
/// keys. `Debug` shows the digest's [`Fingerprint`] only.
///
/// ```
/// use tower_mcp_auth::validators::Revocation;
///
/// let revoked = Revocation::Digest([0xab; 32]);
/// assert_eq!(format!("{revoked:?}"), "Digest(Fingerprint(abababab))");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// The credential whose SHA-256 digest this is.
    Digest([u8; 32]),
    /// Every credential: whatever was learnt from the store may be stale (a missed notification, a reconnect).
    All,
}

impl fmt::Debug for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Digest(digest) => f
                .debug_tuple("Digest")
                .field(&Fingerprint::from_digest(digest))
                .finish(),
            Self::All => f.write_str("All"),
        }
    }
}

/// Where revocations go: anything that remembers answers about credentials and must forget them when the
/// credential is revoked.
///
/// [`Cache`](super::Cache) implements it (a digest is [`Cache::invalidate_digest`](super::Cache::invalidate_digest),
/// `All` is [`Cache::invalidate_all`](super::Cache::invalidate_all));
/// `upstream::TokenExchange` (feature `token-exchange`) implements it too, dropping the tokens exchanged for a
/// revoked key; [`revocation_fn`] turns a closure into one, for other caches (sessions, …). Revocation
/// sources such as `LiteLlmRevocations` (feature `postgres`) take any number of sinks.
///
/// ```
/// use std::sync::Arc;
/// use tower_mcp_auth::validators::{Cache, Revocation, RevocationSink, StaticKeys};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cache = Cache::new(StaticKeys::new().with_key("sk-a", "ops"));
/// let sinks: Vec<Arc<dyn RevocationSink>> = vec![Arc::new(cache.clone())];
/// for sink in &sinks {
///     sink.revoke(&Revocation::All).await;
/// }
/// # }
/// ```
pub trait RevocationSink: Send + Sync {
    /// Forgets what is known about the revoked credential(s). Called once the revocation is committed in the
    /// store, so that the next lookup reads the new state.
    fn revoke<'a>(&'a self, revocation: &'a Revocation) -> BoxFuture<'a, ()>;
}

/// The tokens exchanged for a revoked subject token are dropped
/// ([`invalidate_subject_digest`](crate::upstream::TokenExchange::invalidate_subject_digest)). A flush
/// ([`Revocation::All`]) leaves them: it only says that notifications may have been lost, and the polling that
/// goes on regardless reports each revoked key by its digest within the bound.
#[cfg(feature = "token-exchange")]
impl RevocationSink for crate::upstream::TokenExchange {
    fn revoke<'a>(&'a self, revocation: &'a Revocation) -> BoxFuture<'a, ()> {
        if let Revocation::Digest(digest) = revocation {
            self.invalidate_subject_digest(digest);
        }
        Box::pin(std::future::ready(()))
    }
}

impl<T: RevocationSink + ?Sized> RevocationSink for Arc<T> {
    fn revoke<'a>(&'a self, revocation: &'a Revocation) -> BoxFuture<'a, ()> {
        (**self).revoke(revocation)
    }
}

/// A [`RevocationSink`] made from a closure; see [`revocation_fn`].
pub struct RevocationFn<F>(F);

/// Makes a [`RevocationSink`] from an async closure, e.g. to drop the upstream tokens a gateway obtained by
/// exchanging a key that is now revoked.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tower_mcp_auth::validators::{revocation_fn, Revocation, RevocationSink};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = Arc::clone(&seen);
/// let sink = revocation_fn(move |revocation: Revocation| {
///     let log = Arc::clone(&log);
///     async move { log.lock().unwrap().push(revocation) }
/// });
/// sink.revoke(&Revocation::Digest([1; 32])).await;
/// assert_eq!(*seen.lock().unwrap(), [Revocation::Digest([1; 32])]);
/// # }
/// ```
pub fn revocation_fn<F, Fut>(f: F) -> RevocationFn<F>
where
    F: Fn(Revocation) -> Fut + Send + Sync,
    Fut: Future<Output = ()> + Send + 'static,
{
    RevocationFn(f)
}

impl<F, Fut> RevocationSink for RevocationFn<F>
where
    F: Fn(Revocation) -> Fut + Send + Sync,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn revoke<'a>(&'a self, revocation: &'a Revocation) -> BoxFuture<'a, ()> {
        Box::pin((self.0)(revocation.clone()))
    }
}

impl<F> fmt::Debug for RevocationFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationFn").finish_non_exhaustive()
    }
}

/// How long a cache may go on trusting its `Valid` answers without news from the revocation source.
///
/// A revocation source (a watcher of the key store) [`confirm`](TrustGate::confirm)s each time it has seen
/// every revocation committed before a point in time; the gate stays open for [`bound`](TrustGate::bound)
/// after that point. A [`Cache`](super::Cache) built with [`CacheBuilder::trust_gate`](super::CacheBuilder::trust_gate)
/// answers a cached `Valid` only while the gate is open; once it closes (the source cannot reach the store
/// for longer than the bound), every such credential is validated again by the store, which fails closed if
/// the store is down too. Cached `Unknown` and `Denied` answers are unaffected: serving them never admits a
/// revoked key.
///
/// Time is Tokio's clock ([`tokio::time::Instant`]), so tests can pause and advance it. Clones share the gate.
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_auth::validators::TrustGate;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let gate = TrustGate::new(Duration::from_secs(2)); // open for 2 s from now
/// assert!(gate.is_trusted());
/// tokio::time::advance(Duration::from_secs(3)).await;
/// assert!(!gate.is_trusted()); // no news for longer than the bound
/// gate.confirm(tokio::time::Instant::now());
/// assert!(gate.is_trusted());
/// # }
/// ```
#[derive(Clone)]
pub struct TrustGate(Arc<Gate>);

struct Gate {
    /// The origin of `until`.
    base: Instant,
    bound: Duration,
    /// Nanoseconds after `base` at which the gate closes.
    until: AtomicU64,
}

impl TrustGate {
    /// A gate with the given bound, open for `bound` from now (the time a watcher has for its first look).
    pub fn new(bound: Duration) -> Self {
        let gate = Self(Arc::new(Gate {
            base: Instant::now(),
            bound,
            until: AtomicU64::new(0),
        }));
        gate.confirm(gate.0.base);
        gate
    }

    /// The longest a cached `Valid` answer is trusted after the last confirmation.
    pub fn bound(&self) -> Duration {
        self.0.bound
    }

    /// Records that every revocation committed before `seen_at` has been applied: the gate stays open until
    /// `seen_at + bound`. An older confirmation than one already recorded changes nothing.
    pub fn confirm(&self, seen_at: Instant) {
        let until = self.nanos(seen_at).saturating_add(nanos(self.0.bound));
        self.0.until.fetch_max(until, Ordering::AcqRel);
    }

    /// Whether cached `Valid` answers may be served now.
    pub fn is_trusted(&self) -> bool {
        self.nanos(Instant::now()) < self.0.until.load(Ordering::Acquire)
    }

    /// How long the gate stays open without another confirmation (zero once closed).
    pub fn remaining(&self) -> Duration {
        let until = self.0.until.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(self.nanos(Instant::now())))
    }

    fn nanos(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.0.base))
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl fmt::Debug for TrustGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustGate")
            .field("bound", &self.0.bound)
            .field("remaining", &self.remaining())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn confirmations_only_move_forward() {
        let gate = TrustGate::new(Duration::from_secs(2));
        let start = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        gate.confirm(Instant::now());
        gate.confirm(start); // late and older: ignored
        assert_eq!(gate.remaining(), Duration::from_secs(2));
        tokio::time::advance(Duration::from_millis(1_999)).await;
        assert!(gate.is_trusted());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!gate.is_trusted());
        assert_eq!(gate.remaining(), Duration::ZERO);
    }
}
