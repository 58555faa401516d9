//! The cache's metrics through the `metrics` facade: hits, misses and coalesced lookups, and the store's
//! latency by validator and result; no label carries a credential.
#![cfg(feature = "metrics")]

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::future::join_all;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower_mcp_auth::{validate_fn, validators::Cache, Fingerprint, Validator, Verdict};

fn sample(scrape: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split(['{', ' ']).next() == Some(metric))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

// The recorder is this thread's: a current-thread runtime keeps every lookup on it.
#[tokio::test(flavor = "current_thread")]
async fn hits_misses_and_coalesced_lookups_are_counted() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let store = validate_fn(move |key: String| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, Infallible>(if key == "sk-good" {
                Verdict::Valid("alice")
            } else {
                Verdict::Unknown
            })
        }
    });
    let cache = Cache::new(store);

    cache.validate("sk-good").await.unwrap(); // miss
    cache.validate("sk-good").await.unwrap(); // hit
    assert!(cache.validate_now("sk-good").is_some()); // hit
    let together = join_all((0..5).map(|_| cache.validate("oauth-token"))).await; // 1 miss, 4 coalesced
    assert!(together
        .iter()
        .all(|v| v.as_ref().unwrap() == &Verdict::Unknown));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let scrape = handle.render();
    let lookups = |result: &str| {
        sample(
            &scrape,
            "mcp_auth_cache_lookups",
            &[&format!(r#"result="{result}""#)],
        )
        .unwrap_or_else(|| panic!("no {result} in:\n{scrape}"))
    };
    assert_eq!(lookups("hit"), 2.0);
    assert_eq!(lookups("miss"), 2.0);
    assert_eq!(lookups("coalesced"), 4.0);
    let latency = |result: &str| {
        sample(
            &scrape,
            "mcp_auth_validation_duration_count",
            &[
                r#"validator="ValidateFn""#,
                &format!(r#"result="{result}""#),
            ],
        )
        .unwrap_or_else(|| panic!("no latency for {result} in:\n{scrape}"))
    };
    assert_eq!(latency("valid"), 1.0);
    assert_eq!(latency("unknown"), 1.0);
    for secret in ["sk-good", "oauth-token"] {
        assert!(!scrape.contains(secret));
        assert!(!scrape.contains(&Fingerprint::of(secret).to_string()));
    }
}
