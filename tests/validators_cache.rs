//! `Cache`: TTLs per verdict, negative caching, errors never cached, expiry capping the TTL, invalidation,
//! bounded size, and single flight — each measured by counting calls to the store behind it.
//!
//! Time: moka keeps time with `std::time::Instant`, which tokio's paused clock does not move, so the TTL
//! tests use short real TTLs (hundreds of milliseconds) and sleep past them. Every timing assertion is
//! one-sided where it can be (an entry *has* expired after sleeping well past its TTL); the assertions that
//! an entry is *still* cached leave seconds of margin.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    validate_fn,
    validators::{Cache, CacheBuilder},
    McpAuthLayer, OAuthPassthrough, PassthroughPolicy, Validator, Verdict,
};

/// The store behind the cache: answers by the credential's prefix, and counts every call.
#[derive(Clone, Default)]
struct Store {
    calls: Arc<AtomicUsize>,
    /// While set, calls fail (before counting as answered).
    failing: Arc<std::sync::atomic::AtomicBool>,
    delay: Duration,
}

#[derive(Debug)]
struct StoreDown;

impl fmt::Display for StoreDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("key store unavailable")
    }
}

impl std::error::Error for StoreDown {}

#[derive(Clone, Debug, PartialEq)]
struct Key {
    owner: String,
    expires: Option<SystemTime>,
}

impl Store {
    fn slow(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// `sk-valid*` → Valid, `sk-denied*` → Denied, `sk-expiring-<ms>` → Valid until now + ms,
    /// `sk-expired*` → Valid but expired, anything else → Unknown.
    fn validator(
        &self,
    ) -> impl Validator<Identity = Key, Error = StoreDown, Future = impl Future + Send + 'static>
    {
        let store = self.clone();
        validate_fn(move |credential: String| {
            let store = store.clone();
            async move {
                store.calls.fetch_add(1, Ordering::SeqCst);
                if !store.delay.is_zero() {
                    tokio::time::sleep(store.delay).await;
                }
                if store.failing.load(Ordering::SeqCst) {
                    return Err(StoreDown);
                }
                let key = |expires| Key {
                    owner: "alice".to_owned(),
                    expires,
                };
                Ok(if credential.starts_with("sk-valid") {
                    Verdict::Valid(key(None))
                } else if let Some(ms) = credential.strip_prefix("sk-expiring-") {
                    let ms = ms.parse().unwrap();
                    Verdict::Valid(key(Some(SystemTime::now() + Duration::from_millis(ms))))
                } else if credential.starts_with("sk-expired") {
                    Verdict::Valid(key(Some(SystemTime::now() - Duration::from_secs(1))))
                } else if credential.starts_with("sk-denied") {
                    Verdict::Denied
                } else {
                    Verdict::Unknown
                })
            }
        })
    }

    fn cache(
        &self,
    ) -> CacheBuilder<
        impl Validator<Identity = Key, Error = StoreDown, Future = impl Future + Send + 'static>,
    > {
        Cache::builder(self.validator())
    }
}

fn valid() -> Verdict<Key> {
    Verdict::Valid(Key {
        owner: "alice".to_owned(),
        expires: None,
    })
}

#[tokio::test]
async fn each_verdict_is_answered_from_memory_the_second_time() {
    let store = Store::default();
    let cache = store.cache().build();
    for _ in 0..3 {
        assert_eq!(cache.validate("sk-valid").await.unwrap(), valid());
        assert_eq!(cache.validate("sk-denied").await.unwrap(), Verdict::Denied);
        assert_eq!(
            cache.validate("oauth-token").await.unwrap(),
            Verdict::Unknown
        );
    }
    assert_eq!(store.calls(), 3, "one store call per credential");
}

#[tokio::test]
async fn a_hit_is_a_ready_future() {
    let store = Store::default();
    let cache = store.cache().build();
    assert_eq!(
        format!("{:?}", cache.validate("sk-valid")),
        "CacheFuture(\"Lookup\")"
    );
    cache.validate("sk-valid").await.unwrap();
    let hit = cache.validate("sk-valid");
    assert_eq!(format!("{hit:?}"), "CacheFuture(\"Hit\")");
    assert_eq!(hit.now_or_never().unwrap().unwrap(), valid());
}

#[tokio::test]
async fn negative_cache_spares_the_store_one_lookup_per_passthrough_request() {
    let store = Store::default();
    let cache = store.cache().unknown_ttl(Duration::from_secs(30)).build();
    let requests = 10_000;
    for _ in 0..requests {
        assert_eq!(
            cache.validate("upstream-oauth-token").await.unwrap(),
            Verdict::Unknown
        );
    }
    let calls = store.calls();
    println!(
        "negative cache: {requests} validations of one unknown token -> {calls} store call(s), {} hits",
        requests - calls
    );
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn negative_cache_behind_the_layer_with_passthrough() {
    let store = Store::default();
    let layer = McpAuthLayer::new(store.cache().build())
        .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"]));
    let gateway =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|req: Request<()>| async move {
                assert!(req.extensions().get::<OAuthPassthrough>().is_some());
                Ok::<_, Infallible>(Response::new(()))
            }));
    let requests = 1_000;
    for _ in 0..requests {
        let req = Request::post("/mcp/atlassian")
            .header("authorization", "Bearer atl-oauth-token")
            .body(())
            .unwrap();
        let response = gateway.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let calls = store.calls();
    println!(
        "negative cache behind the layer: {requests} passthrough requests -> {calls} store call(s), {} hits",
        requests - calls
    );
    assert_eq!(calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_one_store_call_for_a_thousand_concurrent_validations() {
    let store = Store::slow(Duration::from_millis(200));
    let cache = store.cache().build();
    let barrier = Arc::new(tokio::sync::Barrier::new(1_000));
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let cache = cache.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                cache.validate("sk-valid-new").await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), valid());
    }
    let calls = store.calls();
    println!(
        "single flight: 1000 concurrent validations of one new credential -> {calls} store call(s)"
    );
    assert_eq!(calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_shares_an_error_and_does_not_cache_it() {
    let store = Store::slow(Duration::from_millis(200));
    store.fail(true);
    let cache = store.cache().build();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.validate("sk-valid").await })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "key store unavailable");
        assert!(err.get_ref().is::<StoreDown>());
    }
    assert_eq!(store.calls(), 1);

    store.fail(false);
    assert_eq!(cache.validate("sk-valid").await.unwrap(), valid());
    assert_eq!(store.calls(), 2, "the error was not cached");
}

#[tokio::test]
async fn errors_are_never_cached() {
    let store = Store::default();
    let cache = store.cache().build();
    store.fail(true);
    for _ in 0..3 {
        assert!(cache.validate("sk-valid").await.is_err());
    }
    assert_eq!(store.calls(), 3);
    store.fail(false);
    assert_eq!(cache.validate("sk-valid").await.unwrap(), valid());
    assert_eq!(cache.validate("sk-valid").await.unwrap(), valid());
    assert_eq!(store.calls(), 4);
}

#[tokio::test]
async fn a_timed_out_validation_is_not_cached() {
    let store = Store::slow(Duration::from_millis(300));
    let cache = store.cache().build();
    let timed_out =
        tokio::time::timeout(Duration::from_millis(20), cache.validate("sk-valid")).await;
    assert!(timed_out.is_err());
    assert_eq!(cache.validate("sk-valid").await.unwrap(), valid());
    assert_eq!(store.calls(), 2);
}

#[tokio::test]
async fn a_store_timeout_behind_the_layer_is_503_and_the_next_request_asks_again() {
    let store = Store::slow(Duration::from_millis(300));
    let layer =
        McpAuthLayer::new(store.cache().build()).validation_timeout(Duration::from_millis(50));
    let gateway =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(()))
            }));
    let call = || {
        let req = Request::get("/mcp")
            .header("x-litellm-api-key", "sk-valid")
            .body(())
            .unwrap();
        gateway.clone().oneshot(req)
    };
    assert_eq!(
        call().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(store.calls(), 2);
}

#[tokio::test]
async fn ttls_per_verdict() {
    let store = Store::default();
    let cache = store
        .cache()
        .valid_ttl(Duration::from_secs(10))
        .unknown_ttl(Duration::from_millis(200))
        .denied_ttl(Duration::from_millis(200))
        .build();
    cache.validate("sk-valid").await.unwrap();
    cache.validate("sk-denied").await.unwrap();
    cache.validate("oauth-token").await.unwrap();
    assert_eq!(store.calls(), 3);

    tokio::time::sleep(Duration::from_millis(500)).await;
    cache.validate("sk-valid").await.unwrap();
    assert_eq!(store.calls(), 3, "Valid is kept for valid_ttl");
    cache.validate("sk-denied").await.unwrap();
    cache.validate("oauth-token").await.unwrap();
    assert_eq!(
        store.calls(),
        5,
        "Unknown and Denied expired after their shorter TTL"
    );
}

#[tokio::test]
async fn valid_ttl_expires() {
    let store = Store::default();
    let cache = store.cache().valid_ttl(Duration::from_millis(200)).build();
    cache.validate("sk-valid").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cache.validate("sk-valid").await.unwrap();
    assert_eq!(store.calls(), 2);
}

#[tokio::test]
async fn zero_ttl_disables_caching_of_that_verdict() {
    let store = Store::default();
    let cache = store.cache().unknown_ttl(Duration::ZERO).build();
    for _ in 0..3 {
        cache.validate("oauth-token").await.unwrap();
    }
    assert_eq!(store.calls(), 3);
}

#[tokio::test]
async fn expiry_caps_the_ttl() {
    let store = Store::default();
    let cache = store
        .cache()
        .valid_ttl(Duration::from_secs(60))
        .expiry(|key: &Key| key.expires)
        .build();
    // Expires in 1 s: kept until then, not for 60 s.
    cache.validate("sk-expiring-1000").await.unwrap();
    cache.validate("sk-expiring-1000").await.unwrap();
    assert_eq!(store.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    cache.validate("sk-expiring-1000").await.unwrap();
    assert_eq!(store.calls(), 2, "kept no longer than the key's expiry");

    // Expires in an hour: valid_ttl still applies (and is not exceeded).
    cache.validate("sk-expiring-3600000").await.unwrap();
    cache.validate("sk-expiring-3600000").await.unwrap();
    assert_eq!(store.calls(), 3);

    // Already expired: answered, but not kept at all.
    cache.validate("sk-expired").await.unwrap();
    cache.validate("sk-expired").await.unwrap();
    assert_eq!(store.calls(), 5);
}

#[tokio::test]
async fn without_expiry_the_identity_does_not_shorten_the_ttl() {
    let store = Store::default();
    let cache = store.cache().build();
    cache.validate("sk-expired").await.unwrap();
    cache.validate("sk-expired").await.unwrap();
    assert_eq!(store.calls(), 1);
}

#[tokio::test]
async fn invalidate_revokes_at_once() {
    let store = Store::default();
    let cache = store.cache().build();
    cache.validate("sk-valid").await.unwrap();
    cache.validate("sk-valid-other").await.unwrap();
    cache.invalidate("sk-valid").await;
    cache.validate("sk-valid").await.unwrap();
    cache.validate("sk-valid-other").await.unwrap();
    assert_eq!(
        store.calls(),
        3,
        "only the invalidated credential is asked again"
    );

    // Stores that only know digests (LiteLLM keeps SHA-256 hex) revoke by digest.
    use sha2::{Digest, Sha256};
    let digest: [u8; 32] = Sha256::digest(b"sk-valid-other").into();
    cache.invalidate_digest(&digest).await;
    cache.validate("sk-valid-other").await.unwrap();
    assert_eq!(store.calls(), 4);

    cache.invalidate_all();
    cache.validate("sk-valid").await.unwrap();
    assert_eq!(store.calls(), 5);
}

#[tokio::test]
async fn bounded_under_a_hundred_thousand_distinct_garbage_tokens() {
    let store = Store::default();
    let cache = store.cache().max_entries(1_000).build();
    for i in 0..100_000 {
        assert_eq!(
            cache.validate(&format!("garbage-{i}")).await.unwrap(),
            Verdict::Unknown
        );
    }
    assert_eq!(store.calls(), 100_000);
    let count = settled_entry_count(&cache).await;
    println!("bounded: 100000 distinct unknown tokens, max_entries 1000 -> {count} entries");
    assert!(count <= 1_000, "{count} entries");
}

#[tokio::test]
async fn bounded_by_bytes() {
    let store = Store::default();
    // 1 KiB identities, 64 KiB budget: about 54 answers fit, whatever max_entries allows.
    let cache = Cache::builder(validate_fn({
        let store = store.clone();
        move |credential: String| {
            let store = store.clone();
            async move {
                store.calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Infallible>(Verdict::Valid(format!("{credential:<1024}")))
            }
        }
    }))
    .max_entries(1_000_000)
    .max_bytes(64 * 1024)
    .weigher(|identity: &String| identity.capacity())
    .build();
    for i in 0..10_000 {
        cache.validate(&format!("sk-{i}")).await.unwrap();
    }
    let count = settled_entry_count(&cache).await;
    let bytes = cache.weighted_size();
    println!("bounded by bytes: 10000 answers with 1 KiB identities, max_bytes 64 KiB -> {count} entries, {bytes} bytes");
    assert!(bytes <= 64 * 1024, "{bytes} bytes");
    assert!(count <= 64 * 1024 / 1024, "{count} entries");
}

#[tokio::test]
async fn max_entries_still_applies_with_max_bytes() {
    let store = Store::default();
    let cache = store.cache().max_entries(100).max_bytes(1 << 30).build();
    for i in 0..10_000 {
        cache.validate(&format!("garbage-{i}")).await.unwrap();
    }
    let count = settled_entry_count(&cache).await;
    assert!(count <= 100, "{count} entries");
}

/// moka applies evictions in batches; a few more operations after a pause let the last batch run.
async fn settled_entry_count<V>(cache: &Cache<V>) -> u64
where
    V: Validator,
    V::Future: Send + 'static,
{
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let _ = cache.validate("settle").await;
    }
    cache.entry_count()
}

#[tokio::test]
async fn no_credential_in_debug_or_errors() {
    let store = Store::default();
    let cache = store.cache().build();
    cache.validate("sk-valid-secret-credential").await.unwrap();
    let shown = format!("{cache:?}");
    assert!(!shown.contains("secret-credential"), "{shown}");
    store.fail(true);
    let err = cache.validate("sk-valid-other-secret").await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("other-secret"), "{shown}");
}
