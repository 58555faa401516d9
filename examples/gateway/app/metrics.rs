//! `GET /metrics`: the layer's metrics (feature `metrics`) and the gateway's own per-upstream requests, in
//! Prometheus' text format.
//!
//! The recorder is the `metrics` facade's global one, installed once per process; a real deployment would serve
//! this on an internal port only, away from MCP clients.

use std::{sync::OnceLock, time::Duration};

use axum::{
    http::{header, Method},
    response::IntoResponse,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Per-upstream requests, by the OpenTelemetry HTTP client convention's name; counts, statuses and latency.
const UPSTREAM_REQUESTS: &str = "http.client.request.duration";

/// The process's Prometheus recorder, installed on first use.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .install_recorder()
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

/// `GET /metrics`.
pub async fn scrape() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
}

/// One relayed request: the upstream's configured name, the method, the status the gateway answered with.
pub fn upstream_request(upstream: &str, method: &Method, status: u16, elapsed: Duration) {
    metrics::histogram!(
        UPSTREAM_REQUESTS,
        "upstream" => upstream.to_owned(),
        "http.request.method" => method.as_str().to_owned(),
        "http.response.status_code" => status.to_string()
    )
    .record(elapsed.as_secs_f64());
}
