//! Operations: `GET /healthz` and `GET /readyz`.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use futures_util::future::BoxFuture;

use super::json_error;

/// Asks the key store whether it answers.
pub type ReadinessProbe = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// How long `/readyz` waits for the key store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: the process serves.
pub async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// What `/readyz` asks.
#[derive(Clone)]
pub struct Readiness {
    pub keys: ReadinessProbe,
    pub limits: crate::limits::Limiter,
}

/// `GET /readyz`: 200 when the key store answers and rate limits can be counted (Redis answers, or its outage
/// falls back to counting in process), 503 otherwise; the body shows the rate-limit backend's state.
pub async fn readyz(State(ready): State<Readiness>) -> Response {
    let keys = matches!(
        tokio::time::timeout(READY_TIMEOUT, (ready.keys)()).await,
        Ok(true)
    );
    let (limits, rate_limits) = ready.limits.readiness().await;
    match (keys, limits) {
        (true, true) => {
            Json(serde_json::json!({"status": "ready", "rate_limits": rate_limits})).into_response()
        }
        (false, _) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the key store does not answer",
        ),
        (true, false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "error": "not_ready",
                "error_description": "the rate-limit store does not answer",
                "rate_limits": rate_limits,
            })),
        )
            .into_response(),
    }
}
