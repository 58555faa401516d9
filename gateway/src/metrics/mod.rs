//! `GET /metrics`: the layer's metrics (feature `metrics`) and the gateway's own per-upstream requests, in
//! Prometheus' text format.
//!
//! The recorder is the `metrics` facade's global one, installed once per process. Latencies (every metric whose
//! name ends in `duration`) are Prometheus histograms with fixed buckets ([`LATENCY_BUCKETS`]), which add up
//! across replicas, unlike quantiles. With `--metrics-listen ADDR` this is served on that listener only, away
//! from MCP clients; without it, on the public listener.

use std::{
    borrow::Borrow,
    hash::Hash,
    sync::{Arc, OnceLock, PoisonError, RwLock},
    time::Instant,
};

use axum::{
    http::{header, Method, StatusCode},
    response::IntoResponse,
};
use metrics::{Histogram, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

mod recorder;

use recorder::Kept;

/// Per-upstream requests, by the OpenTelemetry HTTP client convention's name; counts, statuses and latency.
const UPSTREAM_REQUESTS: &str = "http.client.request.duration";

/// The buckets of every latency histogram, in seconds: from a cached key lookup to a slow upstream.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's Prometheus recorder, installed on first use.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration".to_owned()), LATENCY_BUCKETS)
            .expect("the latency buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(Kept::new(recorder))
            .expect("no other metrics recorder is installed");
        tower_mcp_auth::metrics::describe();
        metrics::describe_histogram!(
            UPSTREAM_REQUESTS,
            metrics::Unit::Seconds,
            "Requests relayed to each upstream MCP server, by method and status"
        );
        handle
    })
}

/// Installs the recorder, so that what happens before the first scrape is counted too.
pub fn install() {
    handle();
}

/// The router of a metrics-only listener: `GET /metrics`.
pub fn router() -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(scrape))
}

/// `GET /metrics`.
pub async fn scrape() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
}

/// Metric handles by key, each registered on first use: the facade's macros build the key, allocate its labels
/// and look it up in the recorder's registry on every call; a kept handle records with none of that. Keyed by
/// label values here, and by the facade's own key in the process's recorder ([`Kept`]).
pub struct Handles<K, H>(RwLock<crate::NameMap<K, H>>);

impl<K, H> Default for Handles<K, H> {
    fn default() -> Self {
        Self(RwLock::default())
    }
}

impl<K: Hash + Eq, H: Clone> Handles<K, H> {
    /// The handle of `key`, registered by `register` the first time (the key is copied only then).
    pub fn get<Q>(&self, key: &Q, register: impl FnOnce(&Q) -> H) -> H
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let known = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned();
        known.unwrap_or_else(|| {
            self.0
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.to_owned())
                .or_insert_with(|| register(key))
                .clone()
        })
    }
}

/// The request histogram of one upstream, one handle per method and status ([`Handles`]).
pub struct UpstreamRequests {
    upstream: SharedString,
    histograms: Handles<(&'static str, StatusCode), Histogram>,
}

impl UpstreamRequests {
    /// The histograms of the upstream configured as `upstream`.
    pub fn new(upstream: &str) -> Self {
        Self {
            upstream: Arc::<str>::from(upstream).into(),
            histograms: Handles::default(),
        }
    }

    /// Records one request the relay handled (called by the relay's handler, inside authentication): the
    /// method and the status the gateway answered with (the upstream's, or the gateway's 502/504 when it failed),
    /// and the time to the response head.
    ///
    /// Labels come only from the configuration and a fixed list: `upstream` is a configured name (a path naming
    /// no configured upstream is not recorded), and a method outside the ones MCP uses is `_OTHER`
    /// (OpenTelemetry's convention), so a client can neither grow the label set (beyond the statuses HTTP has)
    /// nor place a credential in it.
    pub fn record(&self, method: &Method, status: StatusCode, started: Instant) {
        let method = match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::DELETE => "DELETE",
            Method::OPTIONS => "OPTIONS",
            _ => "_OTHER",
        };
        let seconds = started.elapsed().as_secs_f64();
        let histogram = self.histograms.get(&(method, status), |&(method, status)| {
            metrics::histogram!(
                UPSTREAM_REQUESTS,
                "upstream" => self.upstream.clone(),
                "http.request.method" => method,
                "http.response.status_code" => status.as_u16().to_string()
            )
        });
        histogram.record(seconds);
    }
}
