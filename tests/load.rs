//! Fault injection under load, over loopback HTTP: 20,000 requests at concurrency 256 through an axum server
//! with the layer, against a validator with random latency (0–20 ms), 10% errors and 5% hangs past the layer's
//! timeout, and a mix of valid keys, denied keys, unknown tokens (on passthrough and closed routes) and no
//! credentials.
//!
//! Every request's fate is scripted from a seeded generator and written into its credential
//! (`<class>.<latency>.<id>`), so the validator knows what to do and the test knows each expected status. The
//! test asserts exact accounting: every status and body as scripted, the inner service called exactly once for
//! each admitted request and never for a refused one, the validator asked once per credential, every timed-out
//! validation dropped, no panic, the server still answering afterwards, and resident memory after the run within
//! a stated bound of what it was after a warm-up batch of the same size. Run with `--nocapture` to see the
//! figures.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    ops::Range,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{extract::State, http::HeaderMap, Extension, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use proptest::{
    prelude::RngExt,
    test_runner::{RngAlgorithm, TestRng},
};
use tokio::{net::TcpListener, task::JoinSet};
use tower_mcp_auth::{
    validate_fn, Authenticated, McpAuthLayer, OAuthPassthrough, PassthroughPolicy, Verdict,
};

const REQUESTS: usize = 20_000;
const WARM_UP: usize = 20_000;
const CONCURRENCY: usize = 256;
/// The layer's validation timeout: fifty times the longest scripted latency (20 ms), so that a loaded machine
/// cannot turn a scripted answer into a timeout (the scripted statuses are exact), yet short enough that the
/// hung validations cost only a few seconds of wall time.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How long a "hung" validation takes: far past the timeout, and then it would say `Valid`.
const HANG: Duration = Duration::from_secs(30);
/// A client-side limit per request, so a stuck request fails the test instead of hanging it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Resident memory may grow by at most this much between the end of the warm-up (a first batch of the same
/// size, which brings connections, buffers and the allocator to their working size) and the end of the run:
/// a leak of about 420 bytes per request would exceed it. Measured growth is about 2 MiB.
const RSS_GROWTH_BOUND_MIB: u64 = 8;
const SEED: &[u8; 32] = b"tower-mcp-auth load and faults 1";

const OPEN: &str = "/mcp/atlassian";
const CLOSED: &str = "/mcp/github";
const KEY_HEADER: &str = "x-litellm-api-key";
const REQUEST_ID: &str = "x-request-id";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    ValidKey,
    ValidKeyAsBearer,
    ValidKeyAndUpstreamToken,
    DeniedKey,
    DeniedKeyAsBearer,
    UnknownTokenOnPassthroughRoute,
    UnknownTokenOnClosedRoute,
    UnknownKey,
    NoCredentials,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Error,
    Hang,
}

/// One scripted request.
#[derive(Clone, Debug)]
struct Planned {
    id: usize,
    kind: Kind,
    fault: Fault,
    latency_ms: u64,
    path: &'static str,
}

/// What a request must come back with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// 200 from the inner service, which echoes the request id, identity and passthrough token.
    Admitted {
        identity: Option<String>,
        passthrough: Option<String>,
    },
    Refused(u16),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Admitted {
                identity: Some(_),
                passthrough: None,
            } => "200 authenticated",
            Self::Admitted {
                identity: Some(_),
                passthrough: Some(_),
            } => "200 authenticated + passthrough",
            Self::Admitted { identity: None, .. } => "200 passthrough only",
            Self::Refused(401) => "401",
            Self::Refused(403) => "403",
            Self::Refused(503) => "503",
            Self::Refused(_) => "other",
        }
    }
}

impl Planned {
    fn generate(rng: &mut TestRng, id: usize) -> Self {
        let kind = match rng.random_range(0..100u32) {
            0..25 => Kind::ValidKey,
            25..35 => Kind::ValidKeyAsBearer,
            35..45 => Kind::ValidKeyAndUpstreamToken,
            45..51 => Kind::DeniedKey,
            51..55 => Kind::DeniedKeyAsBearer,
            55..70 => Kind::UnknownTokenOnPassthroughRoute,
            70..80 => Kind::UnknownTokenOnClosedRoute,
            80..85 => Kind::UnknownKey,
            _ => Kind::NoCredentials,
        };
        let fault = match rng.random_range(0..100u32) {
            _ if kind == Kind::NoCredentials => Fault::None,
            0..10 => Fault::Error,
            10..15 => Fault::Hang,
            _ => Fault::None,
        };
        let latency_ms = rng.random_range(0..=20u64);
        let either = if rng.random_range(0..2u32) == 0 {
            OPEN
        } else {
            CLOSED
        };
        let path = match kind {
            Kind::ValidKeyAndUpstreamToken | Kind::UnknownTokenOnPassthroughRoute => OPEN,
            Kind::UnknownTokenOnClosedRoute => CLOSED,
            _ => either,
        };
        Self {
            id,
            kind,
            fault,
            latency_ms,
            path,
        }
    }

    /// The credential the validator sees: the script for it, then the request id.
    fn credential(&self) -> String {
        let class = match (self.fault, self.kind) {
            (Fault::Error, _) => "error",
            (Fault::Hang, _) => "hang",
            (_, Kind::ValidKey | Kind::ValidKeyAsBearer | Kind::ValidKeyAndUpstreamToken) => {
                "valid"
            }
            (_, Kind::DeniedKey | Kind::DeniedKeyAsBearer) => "denied",
            _ => "unknown",
        };
        format!("{class}.{}.{}", self.latency_ms, self.id)
    }

    fn upstream_token(&self) -> String {
        format!("up-token.{}", self.id)
    }

    fn request(&self, address: SocketAddr) -> Request<Full<Bytes>> {
        let mut request = Request::post(format!("http://{address}{}", self.path))
            .header(REQUEST_ID, self.id.to_string());
        let bearer = |token: String| format!("Bearer {token}");
        request = match self.kind {
            Kind::ValidKey | Kind::DeniedKey | Kind::UnknownKey => {
                request.header(KEY_HEADER, self.credential())
            }
            Kind::ValidKeyAndUpstreamToken => request
                .header(KEY_HEADER, self.credential())
                .header("authorization", bearer(self.upstream_token())),
            Kind::ValidKeyAsBearer
            | Kind::DeniedKeyAsBearer
            | Kind::UnknownTokenOnPassthroughRoute
            | Kind::UnknownTokenOnClosedRoute => {
                request.header("authorization", bearer(self.credential()))
            }
            Kind::NoCredentials => request,
        };
        request.body(Full::new(Bytes::new())).unwrap()
    }

    fn asks_validator(&self) -> bool {
        self.kind != Kind::NoCredentials
    }

    fn expected(&self) -> Outcome {
        if self.fault != Fault::None {
            return Outcome::Refused(503);
        }
        let identity = Some(format!("user-{}", self.id));
        match self.kind {
            Kind::ValidKey | Kind::ValidKeyAsBearer => Outcome::Admitted {
                identity,
                passthrough: None,
            },
            Kind::ValidKeyAndUpstreamToken => Outcome::Admitted {
                identity,
                passthrough: Some(self.upstream_token()),
            },
            Kind::UnknownTokenOnPassthroughRoute => Outcome::Admitted {
                identity: None,
                passthrough: Some(self.credential()),
            },
            Kind::DeniedKey | Kind::DeniedKeyAsBearer => Outcome::Refused(403),
            Kind::UnknownTokenOnClosedRoute | Kind::UnknownKey | Kind::NoCredentials => {
                Outcome::Refused(401)
            }
        }
    }
}

/// What the server side counts.
#[derive(Default)]
struct Counters {
    /// Validator calls, and validations still alive (started, not yet finished or dropped).
    asked: AtomicUsize,
    alive: AtomicUsize,
    /// Inner service calls per request id, and inner requests that still carried a credential header.
    inner: Vec<AtomicUsize>,
    leaked: AtomicUsize,
}

/// Decrements `alive` when a validation ends, whether it answered or was dropped at the timeout.
struct Alive(Arc<Counters>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Relaxed);
    }
}

#[derive(Debug)]
struct StoreDown;

impl fmt::Display for StoreDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("key store unavailable")
    }
}

impl std::error::Error for StoreDown {}

/// Follows the script written in the credential: `<class>.<latency>.<id>`.
async fn scripted(
    counters: Arc<Counters>,
    credential: String,
) -> Result<Verdict<String>, StoreDown> {
    counters.asked.fetch_add(1, Relaxed);
    counters.alive.fetch_add(1, Relaxed);
    let _alive = Alive(Arc::clone(&counters));
    let mut parts = credential.split('.');
    let (class, latency, id) = (parts.next(), parts.next(), parts.next());
    let latency = latency.and_then(|l| l.parse().ok()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(latency)).await;
    match (class, id) {
        (Some("valid"), Some(id)) => Ok(Verdict::Valid(format!("user-{id}"))),
        (Some("denied"), _) => Ok(Verdict::Denied),
        (Some("error"), _) => Err(StoreDown),
        (Some("hang"), Some(id)) => {
            tokio::time::sleep(HANG).await;
            Ok(Verdict::Valid(format!("user-{id}")))
        }
        _ => Ok(Verdict::Unknown),
    }
}

/// The inner service: counts the call under its request id, and echoes id, identity and passthrough token.
async fn inner(
    State(counters): State<Arc<Counters>>,
    identity: Option<Extension<Authenticated<String>>>,
    passthrough: Option<Extension<OAuthPassthrough>>,
    headers: HeaderMap,
) -> String {
    let id: usize = headers[REQUEST_ID].to_str().unwrap().parse().unwrap();
    counters.inner[id].fetch_add(1, Relaxed);
    if headers.contains_key("authorization") || headers.contains_key(KEY_HEADER) {
        counters.leaked.fetch_add(1, Relaxed);
    }
    format!(
        "{id} {} {}",
        identity.map_or("-".to_owned(), |a| a.identity().clone()),
        passthrough.map_or("-".to_owned(), |p| p.expose_token().to_owned()),
    )
}

fn body_of(id: usize, outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Admitted {
            identity,
            passthrough,
        } => Some(format!(
            "{id} {} {}",
            identity.as_deref().unwrap_or("-"),
            passthrough.as_deref().unwrap_or("-")
        )),
        Outcome::Refused(_) => None,
    }
}

async fn start_server(counters: Arc<Counters>) -> SocketAddr {
    let validator = {
        let counters = Arc::clone(&counters);
        validate_fn(move |credential: String| scripted(Arc::clone(&counters), credential))
    };
    let layer = McpAuthLayer::new(validator)
        .passthrough(PassthroughPolicy::path_prefixes([OPEN]))
        .validation_timeout(TIMEOUT);
    let router = Router::new()
        .fallback(inner)
        .with_state(counters)
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Status and body of one request, or why there was none.
type Answer = Result<(u16, String), String>;

async fn send(client: &HttpClient, request: Request<Full<Bytes>>) -> Answer {
    let response = tokio::time::timeout(CLIENT_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| format!("transport: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Sends the planned requests of `ids` with `CONCURRENCY` workers; returns each answer by id.
async fn run(
    client: &HttpClient,
    address: SocketAddr,
    plan: &Arc<Vec<Planned>>,
    ids: Range<usize>,
) -> BTreeMap<usize, Answer> {
    let next = Arc::new(AtomicUsize::new(ids.start));
    let mut workers = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, plan, next, end) =
            (client.clone(), Arc::clone(plan), Arc::clone(&next), ids.end);
        workers.spawn(async move {
            let mut answers = Vec::new();
            loop {
                let id = next.fetch_add(1, Relaxed);
                if id >= end {
                    return answers;
                }
                answers.push((id, send(&client, plan[id].request(address)).await));
            }
        });
    }
    let mut answers = BTreeMap::new();
    while let Some(worker) = workers.join_next().await {
        answers.extend(worker.expect("a client worker panicked"));
    }
    answers
}

/// Checks every answer of `ids` against the script; returns the outcome counts (expected = observed).
fn account(
    plan: &[Planned],
    ids: Range<usize>,
    answers: &BTreeMap<usize, Answer>,
    counters: &Counters,
) -> BTreeMap<&'static str, usize> {
    let mut expected_counts = BTreeMap::new();
    let mut observed_counts = BTreeMap::new();
    let mut wrong = Vec::new();
    for planned in &plan[ids.clone()] {
        let expected = planned.expected();
        *expected_counts.entry(expected.label()).or_insert(0) += 1;
        let answer = &answers[&planned.id];
        let label = match answer {
            Ok((200, body)) => {
                // Re-read the echoed identity and token to label what actually happened.
                let mut parts = body
                    .split(' ')
                    .skip(1)
                    .map(|p| (p != "-").then(|| p.to_owned()));
                let observed = Outcome::Admitted {
                    identity: parts.next().flatten(),
                    passthrough: parts.next().flatten(),
                };
                observed.label()
            }
            Ok((status, _)) => Outcome::Refused(*status).label(),
            Err(_) => "transport error",
        };
        *observed_counts.entry(label).or_insert(0) += 1;

        let status_ok = match (&expected, answer) {
            (Outcome::Admitted { .. }, Ok((200, body))) => {
                Some(body) == body_of(planned.id, &expected).as_ref()
            }
            (Outcome::Refused(status), Ok((got, _))) => status == got,
            _ => false,
        };
        let inner_calls = counters.inner[planned.id].load(Relaxed);
        let inner_ok = inner_calls == usize::from(matches!(expected, Outcome::Admitted { .. }));
        if !status_ok || !inner_ok {
            wrong.push(format!(
                "{planned:?}: expected {expected:?}, got {answer:?}, inner calls {inner_calls}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} requests did not go as scripted, e.g.:\n{}",
        wrong.len(),
        ids.len(),
        wrong[..wrong.len().min(10)].join("\n")
    );
    assert_eq!(observed_counts, expected_counts);
    observed_counts
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /proc/self/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_requests_with_faults_go_exactly_as_scripted() {
    let panics = Arc::new(AtomicUsize::new(0));
    let default_hook = std::panic::take_hook();
    let counted = Arc::clone(&panics);
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Relaxed);
        default_hook(info);
    }));

    let total = WARM_UP + REQUESTS;
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, SEED);
    let plan: Arc<Vec<Planned>> = Arc::new(
        (0..total)
            .map(|id| Planned::generate(&mut rng, id))
            .collect(),
    );
    let counters = Arc::new(Counters {
        inner: (0..total).map(|_| AtomicUsize::new(0)).collect(),
        ..Counters::default()
    });
    let address = start_server(Arc::clone(&counters)).await;
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY)
        .build_http();

    let started = Instant::now();
    let answers = run(&client, address, &plan, 0..WARM_UP).await;
    account(&plan, 0..WARM_UP, &answers, &counters);
    drop(answers);
    let warm_up_elapsed = started.elapsed();
    let (rss_warm, _) = memory();

    let started = Instant::now();
    let answers = run(&client, address, &plan, WARM_UP..total).await;
    let elapsed = started.elapsed();
    let counts = account(&plan, WARM_UP..total, &answers, &counters);
    drop(answers);
    let (rss_after, hwm) = memory();

    // Exact accounting on the server side too.
    let asked = plan.iter().filter(|p| p.asks_validator()).count();
    assert_eq!(counters.asked.load(Relaxed), asked, "validator calls");
    assert_eq!(
        counters.leaked.load(Relaxed),
        0,
        "credential headers reached the inner service"
    );
    let admitted = plan
        .iter()
        .filter(|p| matches!(p.expected(), Outcome::Admitted { .. }))
        .count();
    let inner_calls: usize = counters.inner.iter().map(|c| c.load(Relaxed)).sum();
    assert_eq!(inner_calls, admitted, "inner service calls");
    // Every hung validation was dropped at the timeout, not left running.
    assert_eq!(
        counters.alive.load(Relaxed),
        0,
        "validations still alive after the run"
    );

    // The server still answers, on a fresh connection.
    let fresh: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let after = Planned {
        id: 0,
        kind: Kind::ValidKey,
        fault: Fault::None,
        latency_ms: 0,
        path: CLOSED,
    };
    assert_eq!(
        send(&fresh, after.request(address)).await,
        Ok((200, "0 user-0 -".to_owned()))
    );
    let nobody = Request::post(format!("http://{address}{OPEN}"))
        .header(REQUEST_ID, "0")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _) = send(&fresh, nobody).await.unwrap();
    assert_eq!(
        StatusCode::from_u16(status).unwrap(),
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(panics.load(Relaxed), 0, "a panic happened during the run");

    let growth_kib = rss_after.saturating_sub(rss_warm);
    eprintln!("load: {REQUESTS} requests at concurrency {CONCURRENCY} in {elapsed:.2?} ({:.0} requests/s), after a warm-up of {WARM_UP} in {warm_up_elapsed:.2?}", REQUESTS as f64 / elapsed.as_secs_f64());
    eprintln!("load: validator latency 0-20 ms, 10% errors, 5% hangs past the {TIMEOUT:?} timeout");
    for (label, count) in &counts {
        eprintln!("load:   {label:<32} {count:>6}");
    }
    eprintln!(
        "load: RSS after warm-up {} KiB, after the run {} KiB (growth {growth_kib} KiB, bound {RSS_GROWTH_BOUND_MIB} MiB); peak RSS (VmHWM) {} KiB",
        rss_warm, rss_after, hwm
    );
    assert!(
        growth_kib <= RSS_GROWTH_BOUND_MIB * 1024,
        "RSS grew by {growth_kib} KiB over the run, more than {RSS_GROWTH_BOUND_MIB} MiB"
    );
}
