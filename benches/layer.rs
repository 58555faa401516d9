//! Per-request cost of the layer, side by side with the bare service and tower-http's
//! `ValidateRequestHeaderLayer` doing an equivalent static key check (the anchor).
//!
//! Every service here answers without waiting, so each call is polled once, inside a Tokio runtime context
//! (the layer's validation timeout needs one), with no executor in the measurement. Run with `cargo bench`;
//! `scripts/bench-report.py` turns criterion's estimates into the ratio table of BENCHMARKS.md.

use std::{convert::Infallible, hint::black_box, sync::Arc, time::Duration};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_mcp_auth::{
    validators::{Cache, StaticKeys},
    McpAuthLayer, PassthroughPolicy, Validator,
};

const KEYS: [&str; 4] = ["sk-bench-0", "sk-bench-1", "sk-bench-2", "sk-bench-3"];

#[derive(Clone, Copy)]
enum Kind {
    /// `x-litellm-api-key: <valid key>`.
    Key,
    /// `Authorization: Bearer <valid key>`.
    Bearer,
    /// `Authorization: Bearer <not a key>` on the opted-in route.
    Passthrough,
    /// `Authorization: Bearer <not a key>` on a closed route: 401.
    Reject,
}

fn request(kind: Kind) -> Request<()> {
    let builder = match kind {
        Kind::Key => Request::post("/mcp/github").header("x-litellm-api-key", KEYS[1]),
        Kind::Bearer => Request::post("/mcp/github").header("authorization", "Bearer sk-bench-1"),
        Kind::Passthrough => {
            Request::post("/mcp/atlassian").header("authorization", "Bearer upstream-oauth-token")
        }
        Kind::Reject => {
            Request::post("/mcp/github").header("authorization", "Bearer upstream-oauth-token")
        }
    };
    builder
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(())
        .unwrap()
}

fn inner() -> impl Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    })
}

/// Identities are `Arc<str>`, cheap to clone, as the crate recommends for identities handed to every request.
fn keys() -> StaticKeys<Arc<str>> {
    KEYS.iter()
        .map(|k| (*k, Arc::from(format!("user-{k}"))))
        .collect()
}

fn layer<V: Validator>(validator: V) -> McpAuthLayer<V> {
    McpAuthLayer::new(validator).passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"]))
}

/// The anchor: tower-http's header validation with the same digest scan as `StaticKeys`. (tower-http's
/// validator returns the rejection response by value, hence the large `Err`.)
#[allow(clippy::result_large_err)]
fn anchor() -> ValidateRequestHeaderLayer<
    impl tower_http::validate_request::ValidateRequest<(), ResponseBody = Full<Bytes>> + Clone,
> {
    let digests: Vec<[u8; 32]> = KEYS
        .iter()
        .map(|k| Sha256::digest(k.as_bytes()).into())
        .collect();
    ValidateRequestHeaderLayer::custom(move |req: &mut Request<()>| {
        let digest: [u8; 32] = match req.headers().get("x-litellm-api-key") {
            Some(value) => Sha256::digest(value.as_bytes()).into(),
            None => [0; 32],
        };
        let mut found = subtle::Choice::from(0);
        for d in &digests {
            found |= d.ct_eq(&digest);
        }
        if bool::from(found) {
            Ok(())
        } else {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            Err(response)
        }
    })
}

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
