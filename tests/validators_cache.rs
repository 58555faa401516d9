//! `Cache`: TTLs per verdict, negative caching, errors never cached, expiry capping the TTL, invalidation,
//! bounded size, and single flight — each measured by counting calls to the store behind it.
//!
//! Time: the cache keeps its TTLs and lookup deadlines on Tokio's clock, so every test that depends on time
//! runs with the clock paused and moves it by hand (`tokio::time::advance`) or lets Tokio jump it to the next
//! timer: no test sleeps in real time or races real work against a wall clock. TTLs are long (a minute and
//! more), so that moka's own real-time eviction, which frees memory after the same TTL, never applies
//! within a test, however slow the machine.

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
    /// A store that takes a day to answer: longer than any lookup deadline.
    fn hung() -> Self {
        Self::slow(Duration::from_secs(86_400))
    }

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

#[tokio::test(start_paused = true)]
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

#[tokio::test(start_paused = true)]
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

#[tokio::test(start_paused = true)]
async fn negative_cache_spares_the_store_one_lookup_per_passthrough_request() {
    let store = Store::default();
    let cache = store.cache().unknown_ttl(Duration::from_secs(600)).build();
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

#[tokio::test(start_paused = true)]
async fn negative_cache_behind_the_layer_with_passthrough() {
    let store = Store::default();
    let layer = McpAuthLayer::new(store.cache().unknown_ttl(Duration::from_secs(600)).build())
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

#[tokio::test(start_paused = true)]
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

/// The same on a multi-threaded runtime, where the lookup task and its waiters run on different threads.
/// Nothing here depends on time: the store answers only once every validation is waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_across_threads() {
    // A permit, not a notification: the store may start waiting after it is released.
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = Cache::new(validate_fn({
        let release = Arc::clone(&release);
        let calls = Arc::clone(&calls);
        move |_credential: String| {
            let release = Arc::clone(&release);
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let _permit = release.acquire().await.unwrap();
                Ok::<_, Infallible>(Verdict::Valid("alice"))
            }
        }
    }));
    let waiting = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let cache = cache.clone();
            let waiting = Arc::clone(&waiting);
            tokio::spawn(async move {
                let mut validation = cache.validate("sk-valid");
                // Poll once (starting or joining the lookup), then say so and wait for the answer.
                let first =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(validation.poll_unpin(cx)))
                        .await;
                assert!(first.is_pending());
                waiting.fetch_add(1, Ordering::SeqCst);
                validation.await
            })
        })
        .collect();
    while waiting.load(Ordering::SeqCst) < 200 {
        tokio::task::yield_now().await;
    }
    release.add_permits(1);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), Verdict::Valid("alice"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
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
        assert!(!err.is_timeout());
    }
    assert_eq!(store.calls(), 1);

    store.fail(false);
    assert_eq!(cache.validate("sk-valid").await.unwrap(), valid());
    assert_eq!(store.calls(), 2, "the error was not cached");
}

#[tokio::test(start_paused = true)]
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

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_does_not_cancel_the_lookup() {
    let store = Store::slow(Duration::from_millis(300));
    let cache = store.cache().build();
    let gave_up = tokio::time::timeout(Duration::from_millis(20), cache.validate("sk-valid")).await;
    assert!(gave_up.is_err());
    // The lookup went on without it: the next validation joins it instead of asking again.
    assert_eq!(cache.validate("sk-valid").await.unwrap(), valid());
    assert_eq!(store.calls(), 1);
    // And its answer was cached.
    assert_eq!(cache.validate("sk-valid").await.unwrap(), valid());
    assert_eq!(store.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lookup_past_its_deadline_fails_every_waiter_and_is_not_cached() {
    let store = Store::hung();
    let cache = store.cache().lookup_timeout(Duration::from_secs(2)).build();
    let started = tokio::time::Instant::now();
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.validate("sk-valid").await })
        })
        .collect();
    for waiter in waiters {
        let err = waiter.await.unwrap().unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert_eq!(err.to_string(), "key store lookup timed out after 2s");
    }
    assert_eq!(started.elapsed(), Duration::from_secs(2), "paused clock");
    assert_eq!(store.calls(), 1);
    // Not cached: the next validation asks again.
    assert!(cache.validate("sk-valid").await.unwrap_err().is_timeout());
    assert_eq!(store.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_store_fails_the_waiters_and_the_next_validation_asks_again() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = Cache::new(validate_fn({
        let calls = Arc::clone(&calls);
        move |_credential: String| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call == 0 {
                    panic!("store driver bug");
                }
                Ok::<_, Infallible>(Verdict::Valid("alice"))
            }
        }
    }));
    let err = cache.validate("sk-valid").await.unwrap_err();
    assert_eq!(err.to_string(), "key store lookup aborted");
    assert_eq!(
        cache.validate("sk-valid").await.unwrap(),
        Verdict::Valid("alice")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

fn layer_over(
    store: &Store,
    layer_timeout: Duration,
) -> impl tower::Service<
    Request<()>,
    Response = Response<tower_mcp_auth::body::ResponseBody<()>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    let layer = McpAuthLayer::new(store.cache().build()).validation_timeout(layer_timeout);
    ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }))
}

#[tokio::test(start_paused = true)]
async fn a_store_timeout_behind_the_layer_is_503_and_the_lookup_goes_on() {
    let store = Store::slow(Duration::from_millis(300));
    let gateway = layer_over(&store, Duration::from_millis(50));
    let call = || {
        let req = Request::get("/mcp")
            .header("x-litellm-api-key", "sk-valid")
            .body(())
            .unwrap();
        gateway.clone().oneshot(req)
    };
    let status = |response: Response<_>| response.status();
    assert_eq!(
        status(call().await.unwrap()),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        status(call().await.unwrap()),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        store.calls(),
        1,
        "the second request waited on the same lookup"
    );
    // The lookup finished after both requests gave up; its answer admits the next one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(call().await.unwrap()), StatusCode::OK);
    assert_eq!(store.calls(), 1);
}

/// The measurement that motivated the detached lookup: a store that never answers, one credential, about
/// 320 requests a second and a 0.5 s layer timeout. Each request gives up after 0.5 s, but the store sees one
/// call per lookup deadline (5 s), not one per timed-out request.
#[tokio::test(start_paused = true)]
async fn a_hung_store_gets_one_call_per_lookup_deadline_however_many_requests_time_out() {
    let store = Store::hung();
    let gateway = layer_over(&store, Duration::from_millis(500));
    let started = tokio::time::Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    // 6 s at one request every 3 ms.
    for _ in 0..2_000 {
        let req = Request::post("/mcp")
            .header("x-litellm-api-key", "sk-valid-hung")
            .body(())
            .unwrap();
        let gateway = gateway.clone();
        requests.spawn(async move {
            let asked = tokio::time::Instant::now();
            let response = gateway.oneshot(req).await.unwrap();
            (response.status(), asked.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut answered = 0;
    while let Some(joined) = requests.join_next().await {
        let (status, waited) = joined.expect("no request panics");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(waited <= Duration::from_millis(500), "{waited:?}");
        answered += 1;
    }
    assert_eq!(answered, 2_000);
    let elapsed = started.elapsed();
    let calls = store.calls();
    println!("hung store: 2000 requests over {elapsed:?}, layer timeout 0.5 s, lookup deadline 5 s -> {calls} store call(s)");
    // Lookups start at 0 s and at 5 s (the first request after the first deadline): two, whatever the load.
    assert_eq!(calls, 2);
}

#[tokio::test(start_paused = true)]
async fn ttls_per_verdict() {
    let store = Store::default();
    let cache = store
        .cache()
        .valid_ttl(Duration::from_secs(3_600))
        .unknown_ttl(Duration::from_secs(60))
        .denied_ttl(Duration::from_secs(60))
        .build();
    cache.validate("sk-valid").await.unwrap();
    cache.validate("sk-denied").await.unwrap();
    cache.validate("oauth-token").await.unwrap();
    assert_eq!(store.calls(), 3);

    tokio::time::advance(Duration::from_secs(59)).await;
    cache.validate("sk-denied").await.unwrap();
    cache.validate("oauth-token").await.unwrap();
    assert_eq!(
        store.calls(),
        3,
        "Unknown and Denied are kept for their TTL"
    );

    tokio::time::advance(Duration::from_secs(2)).await;
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

#[tokio::test(start_paused = true)]
async fn valid_ttl_expires() {
    let store = Store::default();
    let cache = store.cache().valid_ttl(Duration::from_secs(60)).build();
    cache.validate("sk-valid").await.unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    cache.validate("sk-valid").await.unwrap();
    assert_eq!(store.calls(), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    cache.validate("sk-valid").await.unwrap();
    assert_eq!(store.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn zero_ttl_disables_caching_of_that_verdict() {
    let store = Store::default();
    let cache = store.cache().unknown_ttl(Duration::ZERO).build();
    for _ in 0..3 {
        cache.validate("oauth-token").await.unwrap();
    }
    assert_eq!(store.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn expiry_caps_the_ttl() {
    let store = Store::default();
    let cache = store
        .cache()
        .valid_ttl(Duration::from_secs(600))
        .expiry(|key: &Key| key.expires)
        .build();
    // Expires in 60 s: kept until then, not for 600 s. (The expiry is read off the system clock when the answer
    // is stored; the TTL it leaves is then counted on the paused clock.)
    cache.validate("sk-expiring-60000").await.unwrap();
    cache.validate("sk-expiring-60000").await.unwrap();
    assert_eq!(store.calls(), 1);
    tokio::time::advance(Duration::from_secs(90)).await;
    cache.validate("sk-expiring-60000").await.unwrap();
    assert_eq!(store.calls(), 2, "kept no longer than the key's expiry");

    // Expires in a day: valid_ttl still applies (and is not exceeded).
    cache.validate("sk-expiring-86400000").await.unwrap();
    tokio::time::advance(Duration::from_secs(300)).await;
    cache.validate("sk-expiring-86400000").await.unwrap();
    assert_eq!(store.calls(), 3);
    tokio::time::advance(Duration::from_secs(301)).await;
    cache.validate("sk-expiring-86400000").await.unwrap();
    assert_eq!(store.calls(), 4, "kept no longer than valid_ttl");

    // Already expired: answered, but not kept at all.
    cache.validate("sk-expired").await.unwrap();
    cache.validate("sk-expired").await.unwrap();
    assert_eq!(store.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn without_expiry_the_identity_does_not_shorten_the_ttl() {
    let store = Store::default();
    let cache = store.cache().build();
    cache.validate("sk-expired").await.unwrap();
    cache.validate("sk-expired").await.unwrap();
    assert_eq!(store.calls(), 1);
}

#[tokio::test(start_paused = true)]
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

/// moka applies writes and evictions in batches; running its pending tasks applies them now (a few rounds, so
/// that evictions queued by the first round are applied too). No waiting on a clock.
async fn settled_entry_count<V>(cache: &Cache<V>) -> u64
where
    V: Validator,
    V::Future: Send + 'static,
{
    for _ in 0..3 {
        cache.run_pending_tasks().await;
    }
    cache.entry_count()
}

#[tokio::test(start_paused = true)]
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

/// Lookups are Tokio tasks: a miss polled outside a runtime panics (Tokio's message), and leaves nothing in
/// flight behind, so the same credential is looked up normally once a runtime polls it.
#[test]
fn a_miss_outside_a_tokio_runtime_panics_and_leaves_nothing_behind() {
    use std::{
        pin::Pin,
        task::{Context, Waker},
    };
    let store = Store::default();
    let cache = store.cache().build();
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut validation = cache.validate("sk-valid");
        let _ = Pin::new(&mut validation).poll(&mut Context::from_waker(Waker::noop()));
    }));
    assert!(polled.is_err(), "polled without a runtime");
    assert_eq!(store.calls(), 0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(
        runtime.block_on(cache.validate("sk-valid")).unwrap(),
        valid()
    );
    assert_eq!(store.calls(), 1);
}
