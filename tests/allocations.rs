//! Heap allocations on the accepted path, counted with dhat: the layer allocates nothing beyond the extensions
//! it hands to the inner service (the identity and the admission fact).

use std::{convert::Infallible, sync::Arc};

use futures_util::FutureExt;
use http::{Request, Response};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_mcp_auth::{validators::StaticKeys, Authenticated, McpAuthLayer, PassthroughPolicy};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Allocations made while `f` runs.
fn blocks_during(f: impl FnOnce()) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    f();
    dhat::HeapStats::get().total_blocks - before
}

#[test]
fn accepted_requests_allocate_only_the_extension() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _context = runtime.enter();

    // An `Arc<str>` identity clones without allocating, so what is counted is the layer's own work.
    let keys: StaticKeys<Arc<str>> = StaticKeys::new().with_key("sk-alloc", Arc::from("ops"));
    let inner = service_fn(|req: Request<()>| async move {
        assert!(req.extensions().get::<Authenticated<Arc<str>>>().is_some());
        Ok::<_, Infallible>(Response::new(()))
    });
    let mut service = McpAuthLayer::new(keys)
        .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"]))
        .layer(inner);

    // The same request with and without the layer: the difference is the layer's.
    let request = |with_key: bool| {
        let mut builder = Request::post("/mcp/github");
        if with_key {
            builder = builder.header("x-litellm-api-key", "sk-alloc");
        }
        builder.body(()).unwrap()
    };
    let mut run = |req: Request<()>| {
        let svc = service.ready().now_or_never().unwrap().unwrap();
        let response = svc.call(req).now_or_never().unwrap().unwrap();
        drop(response);
    };
    // Warm up once (lazy statics, tracing callsite registration).
    run(request(true));

    let accepted = request(true);
    let through_layer = blocks_during(|| run(accepted));

    // An empty `Extensions` map allocates its map and one box per value: those are the extensions themselves,
    // the identity and the non-generic admission fact beside it.
    let mut plain = request(false);
    let extension_only = blocks_during(|| {
        let extensions = plain.extensions_mut();
        extensions.insert(tower_mcp_auth::Admission::Authenticated(
            tower_mcp_auth::CredentialSource::KeyHeader,
        ));
        extensions.insert(Authenticated::new(
            Arc::<str>::from("ops"),
            tower_mcp_auth::CredentialSource::KeyHeader,
        ));
    });
    // `Arc::from("ops")` above is one allocation the layer does not make (it clones an existing Arc).
    let extension_only = extension_only - 1;
    eprintln!("accepted path: {through_layer} allocations; inserting the extension alone: {extension_only}");
    assert_eq!(
        through_layer, extension_only,
        "the layer allocated beyond the extension"
    );
}
