//! Per-request cost of the layer, side by side with the bare service and tower-http's
//! `ValidateRequestHeaderLayer` doing an equivalent static key check (the anchor).
//!
//! Every service here answers without waiting, so each call is polled once, inside a Tokio runtime context
//! (the layer's validation timeout needs one), with no executor in the measurement. Run with `cargo bench`;
//! `scripts/bench-report.py` turns criterion's estimates into the ratio table of BENCHMARKS.md.

mod support;

use std::{hint::black_box, time::Duration};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use futures_util::FutureExt;
use http::Request;
use support::{anchor, inner, keys, layer, request, Kind};
use tower::{Layer, Service, ServiceExt};
use tower_mcp_auth::validators::Cache;

/// Benchmarks `service` on `kind` both through `oneshot` and through one reused, ready service.
fn bench<S>(c: &mut Criterion, name: &str, service: S, kind: Kind)
where
    S: Service<Request<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut group = c.benchmark_group("per_request");
    group.bench_function(format!("oneshot/{name}"), |b| {
        b.iter_batched(
            || request(kind),
            |req| {
                black_box(
                    service
                        .clone()
                        .oneshot(req)
                        .now_or_never()
                        .unwrap()
                        .unwrap(),
                )
            },
            BatchSize::SmallInput,
        )
    });
    let mut ready = service.clone();
    group.bench_function(format!("ready/{name}"), |b| {
        b.iter_batched(
            || request(kind),
            |req| {
                let svc = ready.ready().now_or_never().unwrap().unwrap();
                black_box(svc.call(req).now_or_never().unwrap().unwrap())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn per_request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _context = runtime.enter();

    bench(c, "bare", inner(), Kind::Key);
    bench(c, "tower_http_anchor", anchor().layer(inner()), Kind::Key);

    let direct = layer(keys()).layer(inner());
    bench(c, "key", direct.clone(), Kind::Key);
    bench(c, "bearer", direct.clone(), Kind::Bearer);
    bench(c, "passthrough", direct.clone(), Kind::Passthrough);
    bench(c, "reject_401", direct, Kind::Reject);

    let cached = layer(
        Cache::builder(keys())
            .unknown_ttl(Duration::from_secs(600))
            .build(),
    )
    .layer(inner());
    for kind in [Kind::Key, Kind::Passthrough, Kind::Reject] {
        // Fill the cache so that every measured call is a hit.
        runtime
            .block_on(cached.clone().oneshot(request(kind)))
            .unwrap();
    }
    bench(c, "cached_key", cached.clone(), Kind::Key);
    bench(c, "cached_bearer", cached.clone(), Kind::Bearer);
    bench(c, "cached_passthrough", cached.clone(), Kind::Passthrough);
    bench(c, "cached_reject_401", cached, Kind::Reject);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = per_request
}
criterion_main!(benches);
