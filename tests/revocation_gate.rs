//! `TrustGate` and `RevocationSink` with `Cache`, on Tokio's paused clock: cached `Valid` answers are served
//! only while the gate is open; once it closes they are validated by the store again, failing closed while the
//! store is down; `Unknown` and `Denied` answers are unaffected; revocations reach the cache through the hook.

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tower_mcp_auth::{
    validate_fn,
    validators::{revocation_fn, Cache, Revocation, RevocationSink, TrustGate},
    Validator, Verdict,
};

#[derive(Debug)]
struct StoreDown;

impl fmt::Display for StoreDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("store down")
    }
}

impl std::error::Error for StoreDown {}

/// A store that counts its calls and can be taken down.
#[derive(Clone, Default)]
struct Store {
    calls: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Store {
    fn validator(&self) -> impl Validator<Identity = &'static str, Future: Send> {
        let store = self.clone();
        validate_fn(move |key: String| {
            let store = store.clone();
            async move {
                store.calls.fetch_add(1, Ordering::SeqCst);
                if store.down.load(Ordering::SeqCst) {
                    return Err(StoreDown);
                }
                Ok(match key.as_str() {
                    "sk-good" => Verdict::Valid("alice"),
                    "sk-blocked" => Verdict::Denied,
                    _ => Verdict::Unknown,
                })
            }
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn valid_answers_are_not_trusted_past_the_bound_without_news() {
    let store = Store::default();
    let gate = TrustGate::new(Duration::from_secs(2));
    let cache = Cache::builder(store.validator())
        .trust_gate(gate.clone())
        .build();

    for key in ["sk-good", "sk-blocked", "oauth-token"] {
        cache.validate(key).await.unwrap();
    }
    assert_eq!(store.calls(), 3);
    // Within the bound, everything comes from memory.
    tokio::time::advance(Duration::from_millis(1_900)).await;
    assert_eq!(
        cache.validate("sk-good").await.unwrap(),
        Verdict::Valid("alice")
    );
    assert_eq!(store.calls(), 3);

    // The watcher has been silent for longer than the bound, and the store is down too: fail closed.
    tokio::time::advance(Duration::from_millis(200)).await;
    assert!(!gate.is_trusted());
    store.down.store(true, Ordering::SeqCst);
    assert_eq!(cache.validate_now("sk-good").map(|a| a.is_ok()), None);
    assert!(cache.validate("sk-good").await.is_err());
    assert_eq!(store.calls(), 4);
    // Refusals are still served from memory: they never admit a revoked key.
    assert_eq!(cache.validate("sk-blocked").await.unwrap(), Verdict::Denied);
    assert_eq!(
        cache.validate("oauth-token").await.unwrap(),
        Verdict::Unknown
    );
    assert_eq!(store.calls(), 4);

    // The store is back but the watcher is still silent: each validation asks the store.
    store.down.store(false, Ordering::SeqCst);
    for expected_calls in [5, 6] {
        assert_eq!(
            cache.validate("sk-good").await.unwrap(),
            Verdict::Valid("alice")
        );
        assert_eq!(store.calls(), expected_calls);
    }

    // News from the watcher: the cached answer is trusted again.
    gate.confirm(tokio::time::Instant::now());
    assert_eq!(
        cache.validate_now("sk-good").unwrap().unwrap(),
        Verdict::Valid("alice")
    );
    assert_eq!(
        cache.validate("sk-good").await.unwrap(),
        Verdict::Valid("alice")
    );
    assert_eq!(store.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_cache_without_a_gate_trusts_its_answers_for_their_ttl() {
    let store = Store::default();
    let cache = Cache::builder(store.validator()).build();
    cache.validate("sk-good").await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    store.down.store(true, Ordering::SeqCst);
    assert_eq!(
        cache.validate("sk-good").await.unwrap(),
        Verdict::Valid("alice")
    );
    assert_eq!(store.calls(), 1);
}

#[tokio::test]
async fn revocations_reach_the_cache_through_the_hook() {
    let store = Store::default();
    let cache = Cache::builder(store.validator()).build();
    let exchanged = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&exchanged);
    let sinks: Vec<Arc<dyn RevocationSink>> = vec![
        Arc::new(cache.clone()),
        Arc::new(revocation_fn(move |revocation: Revocation| {
            let counter = Arc::clone(&counter);
            async move {
                if matches!(revocation, Revocation::Digest(_)) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
        })),
    ];
    cache.validate("sk-good").await.unwrap();
    cache.validate("sk-good").await.unwrap();
    assert_eq!(store.calls(), 1);

    // LiteLLM's `token` column: the key's SHA-256.
    let digest: [u8; 32] = sha2_digest("sk-good");
    let revoked = Revocation::Digest(digest);
    assert!(!format!("{revoked:?}").contains("sk-good"));
    for sink in &sinks {
        sink.revoke(&revoked).await;
    }
    cache.validate("sk-good").await.unwrap();
    assert_eq!(store.calls(), 2, "the revoked digest was asked again");
    assert_eq!(exchanged.load(Ordering::SeqCst), 1);

    for sink in &sinks {
        sink.revoke(&Revocation::All).await;
    }
    cache.validate("sk-good").await.unwrap();
    assert_eq!(store.calls(), 3, "a flush forgets everything");
}

fn sha2_digest(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}
