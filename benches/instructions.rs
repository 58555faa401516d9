//! Instructions per request under callgrind (gungraun): the layer's accepted, passthrough, cached and 401
//! paths beside the bare service and tower-http's `ValidateRequestHeaderLayer` doing an equivalent key check.
//!
//! Instruction counts do not move with the load on a shared machine, so a 5 % regression shows as 5 %. Each
//! case is measured as one request through a ready service whose caches and lazy state were warmed in the
//! setup (which callgrind does not count); every case pays the same boxing and runtime-context entry, so the
//! bare row is the floor the others are compared against.
//!
//! Needs valgrind and `gungraun-runner` of the same version as the `gungraun` dev-dependency:
//! `scripts/bench-instructions.sh` installs both and prints the ratio table of BENCHMARKS.md.

mod support;

use std::{convert::Infallible, hint::black_box, time::Duration};

use futures_util::FutureExt;
use gungraun::{library_benchmark, library_benchmark_group, main};
use http::{Request, StatusCode};
use support::{anchor, inner, keys, layer, request, Kind};
use tower::{util::BoxCloneService, Layer, Service, ServiceExt};
use tower_mcp_auth::validators::Cache;

type Boxed = BoxCloneService<Request<()>, StatusCode, Infallible>;

/// A warmed, ready service, the request to measure, and the runtime whose context the layer expects.
struct Prepared {
    runtime: tokio::runtime::Runtime,
    service: Boxed,
    request: Request<()>,
}

fn boxed<S, B>(service: S) -> Boxed
where
    S: Service<Request<()>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    BoxCloneService::new(service.map_response(|response| response.status()))
}

#[derive(Clone, Copy)]
enum Subject {
    Bare,
    Anchor,
    Layer,
    CachedLayer,
}

fn prepare(subject: Subject, kind: Kind) -> Prepared {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let service = {
        let _context = runtime.enter();
        match subject {
            Subject::Bare => boxed(inner()),
            Subject::Anchor => boxed(anchor().layer(inner())),
            Subject::Layer => boxed(layer(keys()).layer(inner())),
            Subject::CachedLayer => boxed(
                layer(
                    Cache::builder(keys())
                        .unknown_ttl(Duration::from_secs(600))
                        .build(),
                )
                .layer(inner()),
            ),
        }
    };
    let mut prepared = Prepared {
        runtime,
        service,
        request: request(kind),
    };
    // Warm every lazy part (cache entry, tracing callsite interest, thread-locals) outside the count. The
    // first call of a cached subject is a miss, answered by a spawned lookup: it needs the runtime to run.
    for _ in 0..2 {
        let warm = request(kind);
        let service = &mut prepared.service;
        prepared
            .runtime
            .block_on(async { service.ready().await?.call(warm).await })
            .unwrap();
    }
    prepared
}

fn run(prepared: &mut Prepared, request: Request<()>) -> StatusCode {
    let _context = prepared.runtime.enter();
    let service = prepared.service.ready().now_or_never().unwrap().unwrap();
    service.call(request).now_or_never().unwrap().unwrap()
}

fn measure(mut prepared: Prepared) -> (StatusCode, Prepared) {
    let request = std::mem::replace(&mut prepared.request, Request::new(()));
    let status = run(&mut prepared, black_box(request));
    // The prepared state is returned so that dropping the runtime is not counted.
    (black_box(status), prepared)
}

#[library_benchmark]
#[bench::bare(prepare(Subject::Bare, Kind::Key))]
#[bench::tower_http_anchor(prepare(Subject::Anchor, Kind::Key))]
#[bench::key(prepare(Subject::Layer, Kind::Key))]
#[bench::bearer(prepare(Subject::Layer, Kind::Bearer))]
#[bench::passthrough(prepare(Subject::Layer, Kind::Passthrough))]
#[bench::reject_401(prepare(Subject::Layer, Kind::Reject))]
#[bench::cached_key(prepare(Subject::CachedLayer, Kind::Key))]
#[bench::cached_bearer(prepare(Subject::CachedLayer, Kind::Bearer))]
#[bench::cached_passthrough(prepare(Subject::CachedLayer, Kind::Passthrough))]
#[bench::cached_reject_401(prepare(Subject::CachedLayer, Kind::Reject))]
fn per_request(prepared: Prepared) -> (StatusCode, Prepared) {
    measure(prepared)
}

library_benchmark_group!(name = layer_paths, benchmarks = [per_request]);
main!(library_benchmark_groups = layer_paths);
