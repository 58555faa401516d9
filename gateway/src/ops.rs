//! Operations: `GET /healthz`, `GET /readyz`, and one access-log line per exchange when its response ends.

use crate::stage::{Answers, Next};
use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::{Body as _, Frame, SizeHint};
use tower_mcp_auth::{mcp::McpOutcome, Authenticated, Fingerprint};

use super::{json_error, resource_server::Caller};

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

/// How the caller of an exchange was admitted, for the access log: never a credential, at most a fingerprint.
#[derive(Clone, Debug)]
pub enum AuthOutcome {
    /// `key:IDENTITY` or `jwt:SUBJECT`.
    Caller(String),
    Passthrough(String),
    CallerAndPassthrough(String, String),
}

impl AuthOutcome {
    /// `token_digest` is the SHA-256 digest of the passthrough token, if any; the log shows its fingerprint
    /// (the first eight hex digits, as [`Fingerprint`] shows a credential).
    pub fn of(
        identity: Option<&Authenticated<Caller>>,
        token_digest: Option<&[u8; 32]>,
    ) -> Option<Self> {
        let token = token_digest.map(|d| Fingerprint::from_digest(d).to_string());
        match (identity.map(|a| a.identity().describe()), token) {
            (Some(id), Some(token)) => Some(Self::CallerAndPassthrough(id, token)),
            (Some(id), None) => Some(Self::Caller(id)),
            (None, Some(token)) => Some(Self::Passthrough(token)),
            (None, None) => None,
        }
    }
}

impl fmt::Display for AuthOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Caller(id) => write!(f, "{id}"),
            Self::Passthrough(token) => write!(f, "passthrough:{token}"),
            Self::CallerAndPassthrough(id, token) => write!(f, "{id}+passthrough:{token}"),
        }
    }
}

/// The outcome of an exchange the handler never saw, read from its status.
fn refused(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "challenged",
        StatusCode::FORBIDDEN => "refused",
        StatusCode::SERVICE_UNAVAILABLE => "key_store_unavailable",
        s if s.is_client_error() => "rejected",
        _ => "none",
    }
}

/// How the caller of a logged exchange was admitted: formatted only when the line is written.
pub enum Auth {
    Outcome(AuthOutcome),
    Other(&'static str),
}

impl Auth {
    /// What `response` says of its caller: the handler's outcome, or one read from the status.
    pub fn of(response: &Response) -> Self {
        match response.extensions().get::<Option<AuthOutcome>>() {
            Some(Some(outcome)) => Self::Outcome(outcome.clone()),
            Some(None) => Self::Other("none"),
            None => Self::Other(refused(response.status())),
        }
    }

    /// How the caller was admitted without who, nor which token: `key`, `jwt`, `passthrough`, a caller and
    /// `+passthrough`, or the outcome of a refused exchange.
    #[cfg(feature = "otel")]
    pub fn kind(&self) -> &'static str {
        // A caller's description starts with `key:` for a gateway key and `jwt` for a JWT.
        let caller = |id: &str| if id.starts_with("key:") { "key" } else { "jwt" };
        match self {
            Self::Outcome(AuthOutcome::Caller(id)) => caller(id),
            Self::Outcome(AuthOutcome::Passthrough(_)) => "passthrough",
            Self::Outcome(AuthOutcome::CallerAndPassthrough(id, _)) => match caller(id) {
                "key" => "key+passthrough",
                _ => "jwt+passthrough",
            },
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Outcome(outcome) => outcome.fmt(f),
            Self::Other(other) => f.write_str(other),
        }
    }
}

struct Entry {
    method: Method,
    route: String,
    status: StatusCode,
    auth: Auth,
    started: Instant,
    mcp: Option<McpOutcome>,
}

/// The longest tool or resource name the log repeats; a longer one is cut (it is the client's text).
const MAX_LOGGED_NAME: usize = 128;

/// One field of every MCP call of an exchange, comma-separated; `-` for an exchange without calls.
pub struct Calls<'a>(
    pub Option<&'a McpOutcome>,
    pub fn(&tower_mcp_auth::mcp::CallOutcome) -> Option<&str>,
);

impl fmt::Display for Calls<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(outcome) = self.0 else {
            return f.write_str("-");
        };
        for (i, call) in outcome.calls().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let value = (self.1)(call).unwrap_or("-");
            let cut = value
                .char_indices()
                .nth(MAX_LOGGED_NAME)
                .map_or(value, |(at, _)| &value[..at]);
            // Escaped: the client chose these strings.
            write!(f, "{}", cut.escape_debug())?;
        }
        Ok(())
    }
}

/// A response body that counts its bytes and writes the access-log line when it ends or is dropped.
struct Logged {
    inner: Body,
    bytes: u64,
    entry: Option<Entry>,
}

impl Logged {
    fn log(&mut self, ended: bool) {
        if let Some(entry) = self.entry.take() {
            tracing::info!(
                target: "gateway::access",
                method = %entry.method,
                route = %entry.route,
                status = entry.status.as_u16(),
                duration_ms = entry.started.elapsed().as_millis() as u64,
                bytes = self.bytes,
                auth = %entry.auth,
                mcp_upstream = %entry.mcp.as_ref().map_or("-", |m| m.upstream()),
                mcp_method = %Calls(entry.mcp.as_ref(), |c| c.method.as_deref()),
                mcp_name = %Calls(entry.mcp.as_ref(), |c| c.name.as_deref()),
                mcp_outcome = %Calls(entry.mcp.as_ref(), |c| Some(c.decision.as_str())),
                complete = ended,
                "exchange"
            );
        }
    }
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Poll::Ready(None) => self.log(true),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let ended = self.inner.is_end_stream();
        self.log(ended);
    }
}

/// Middleware: one access-log line per exchange (method, route without its query, status, duration, bytes,
/// how the caller was admitted).
pub async fn access_log<S: Answers>((): (), request: Request, next: Next<S>) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let mcp = response.extensions().get::<McpOutcome>().cloned();
    let auth = Auth::of(&response);
    response.map(|inner| {
        Body::new(Logged {
            inner,
            bytes: 0,
            entry: Some(Entry {
                method,
                route,
                status,
                auth,
                started,
                mcp,
            }),
        })
    })
}
