//! A hung key store behind `validators::Cache`, under load over real HTTP: about 500 requests a second on one
//! credential for 10 s through a hyper server on loopback with `McpAuthLayer` (5 s validation timeout) and a
//! cache (5 s lookup deadline) in front of a store that never answers.
//!
//! Asserted: every request is answered `503` (none reset, none left hanging), none later than the timeout plus
//! a generous margin for a loaded machine, nothing panics, and the store receives about one call per lookup
//! deadline (at most 4 in the whole run) instead of one per timed-out request. The bounds are one-sided: a slow
//! machine sends fewer requests a second, which only lowers the count of lookups. Bounded in count (5 000
//! requests) and in time (about 15 s). Run with `--nocapture` to see the figures.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, task::JoinSet};
use tower::{service_fn, ServiceBuilder};
use tower_mcp_auth::{validate_fn, validators::Cache, McpAuthLayer, Verdict};

const REQUESTS: usize = 5_000;
/// One request every 2 ms: 500 a second.
const PACE: Duration = Duration::from_millis(2);
const LAYER_TIMEOUT: Duration = Duration::from_secs(5);
/// What a loaded machine may add to the layer's timeout before an answer reaches the client.
const MARGIN: Duration = Duration::from_secs(5);
/// A client-side limit per request, so a stuck request fails the test instead of hanging it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Lookups start at about 0 s, 5 s and 10 s; one more for scheduling slack.
const MAX_STORE_CALLS: usize = 4;

async fn start_server(store_calls: Arc<AtomicUsize>) -> SocketAddr {
    let hung = validate_fn(move |_credential: String| {
        store_calls.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<Result<Verdict<()>, Infallible>>()
    });
    // The cache's lookup deadline is its default: 5 s, like the layer's timeout.
    let layer = McpAuthLayer::new(Cache::new(hung)).validation_timeout(LAYER_TIMEOUT);
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"admitted"))))
            }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_under_load_answers_every_request_503_with_one_store_call_per_deadline() {
    let store_calls = Arc::new(AtomicUsize::new(0));
    let address = start_server(Arc::clone(&store_calls)).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();

    let started = Instant::now();
    let mut pace = tokio::time::interval(PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut requests = JoinSet::new();
    for _ in 0..REQUESTS {
        pace.tick().await;
        let client = client.clone();
        let request = Request::post(format!("http://{address}/mcp"))
            .header("x-litellm-api-key", "sk-one-credential")
            .body(Full::new(Bytes::new()))
            .unwrap();
        requests.spawn(async move {
            let sent = Instant::now();
            let response = tokio::time::timeout(CLIENT_TIMEOUT, client.request(request))
                .await
                .map_err(|_| "no answer in time".to_owned())?
                .map_err(|e| format!("transport: {e:?}"))?;
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?;
            Ok::<_, String>((status, sent.elapsed()))
        });
    }
    let sending = started.elapsed();

    let mut slowest = Duration::ZERO;
    let mut failures = Vec::new();
    let mut answered = 0;
    while let Some(joined) = requests.join_next().await {
        match joined.expect("no request task panics") {
            Ok((status, waited)) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                slowest = slowest.max(waited);
                answered += 1;
            }
            Err(failure) => failures.push(failure),
        }
    }
    let calls = store_calls.load(Ordering::SeqCst);
    println!(
        "hung store under load: {REQUESTS} requests sent in {sending:.2?} ({:.0}/s), all done in {:.2?}; \
         slowest answer {slowest:.2?}; {calls} store call(s); {} failure(s)",
        REQUESTS as f64 / sending.as_secs_f64(),
        started.elapsed(),
        failures.len(),
    );
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(5)]
    );
    assert_eq!(answered, REQUESTS);
    assert!(
        slowest <= LAYER_TIMEOUT + MARGIN,
        "slowest answer took {slowest:?}"
    );
    assert!(
        (1..=MAX_STORE_CALLS).contains(&calls),
        "{calls} store calls in {sending:?}"
    );
}
