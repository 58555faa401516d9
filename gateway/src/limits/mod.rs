//! Rate limits: requests per minute (and a burst) per caller, per caller on an upstream, and per caller and
//! tool, from the config file (`gateway_settings.rate_limits.per_caller`, `mcp_servers.NAME.rate_limit`,
//! `mcp_servers.NAME.tool_rate_limits`); and, with LiteLLM's key table, the `rpm_limit` of the key and of its
//! team (shared by the team's keys), as LiteLLM sets them (`RpmLimits` of the caller's identity).
//!
//! [`enforce`] is one step of the request path: after admission and after the JSON-RPC view (method and tool)
//! is known, before the relay. It counts every POST carrying at least one JSON-RPC request (a call with an
//! `id`); notifications and the client's answers to the server are never refused, since refusing them would
//! break a session rather than slow it. A refused request never reaches the upstream: it gets `429` with
//! `Retry-After`, and a JSON-RPC error per request of its body (code [`RATE_LIMITED_CODE`]), is counted in
//! `/metrics` ([`RATE_LIMITED`], by upstream and scope) and shows `refused:rate_limit` in the access line.
//!
//! The counters live in a [`Backend`]: in the process ([`local`], GCRA by `governor`), or in Redis (feature
//! `redis`, `general_settings.redis_url` or `REDIS_URL`), shared by every replica through one atomic
//! server-side script, so that N replicas together admit the limit and not N times it. When Redis cannot be
//! reached, `gateway_settings.rate_limits.on_redis_error` decides: `fail_closed` (the default: 503) or
//! `fail_open` (each replica counts on its own, in process).
//!
//! Buckets are named by a SHA-256 digest of what they count (scope, upstream, tool and the caller's identity as
//! the access log names it), so neither a key nor an identity appears in Redis or in a log.

mod local;
#[cfg(feature = "redis")]
mod redis;

use crate::stage::{Answers, Next, Owned, Step};
use std::{cell::OnceCell, collections::BTreeMap, num::NonZeroU32, sync::Arc, time::Duration};

use axum::{
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use futures_util::future::{BoxFuture, Either};
use sha2::{Digest, Sha256};
use tower_mcp_auth::{
    mcp::{CallOutcome, Decision, McpOutcome, McpRequest, Rule},
    Authenticated, OAuthPassthrough,
};

use super::{json_error, resource_server::Caller};

/// Requests refused by a rate limit, counted by `/metrics` by upstream and scope.
pub const RATE_LIMITED: &str = "mcp.gateway.rate_limited";

/// The JSON-RPC error code of a refused request: the MCP specification names none for rate limits, so it is
/// one of JSON-RPC's implementation-defined server errors (-32000 to -32099), beside the HTTP `429`.
pub const RATE_LIMITED_CODE: i64 = -32029;

/// The highest rate: one request a microsecond.
const MAX_RPM: u32 = 60_000_000;

/// Requests per minute and a burst: GCRA admits `burst` requests at once, then one every `60 s / per_minute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    per_minute: NonZeroU32,
    burst: NonZeroU32,
}

impl Rate {
    /// `rpm` requests per minute with a burst of `burst` (default: `rpm`, as many as a minute's); zeros are
    /// errors naming `path`.
    pub fn new(rpm: u32, burst: Option<u32>, path: &str) -> Result<Self, String> {
        let per_minute =
            NonZeroU32::new(rpm).ok_or_else(|| format!("{path}.rpm: must be more than zero"))?;
        // Counters keep time in microseconds: a faster rate would be no limit at all.
        if rpm > MAX_RPM {
            return Err(format!(
                "{path}.rpm: at most {MAX_RPM} (a million a second)"
            ));
        }
        let burst = match burst {
            None => per_minute,
            Some(burst) => NonZeroU32::new(burst)
                .ok_or_else(|| format!("{path}.burst: must be more than zero"))?,
        };
        Ok(Self { per_minute, burst })
    }

    /// `rpm` requests per minute, as many at once: LiteLLM's `rpm_limit`, a count per minute (at most
    /// one a microsecond).
    pub fn per_minute(rpm: NonZeroU32) -> Self {
        let rpm = rpm.min(NonZeroU32::new(MAX_RPM).expect("not zero"));
        Self {
            per_minute: rpm,
            burst: rpm,
        }
    }

    /// The time between two requests once the burst is spent.
    fn interval(self) -> Duration {
        Duration::from_secs(60) / self.per_minute.get()
    }
}

/// What is done when Redis cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnRedisError {
    /// Refuse with 503 (the default: a limit is not lifted by an outage).
    #[default]
    FailClosed,
    /// Count in the process instead: each replica admits up to the limit on its own.
    FailOpen,
}

impl OnRedisError {
    /// `fail_closed` or `fail_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailClosed => "fail_closed",
            Self::FailOpen => "fail_open",
        }
    }
}

/// The gateway-wide rate-limit settings.
#[derive(Clone, Default)]
pub struct Settings {
    /// Every caller's limit across all upstreams (`gateway_settings.rate_limits.per_caller`).
    pub per_caller: Option<Rate>,
    /// Redis shared by the replicas (`general_settings.redis_url`, else `REDIS_URL`); may hold a password.
    pub redis_url: Option<String>,
    /// `gateway_settings.rate_limits.on_redis_error`.
    pub on_redis_error: OnRedisError,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("per_caller", &self.per_caller)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "[redacted]"))
            .field("on_redis_error", &self.on_redis_error)
            .finish()
    }
}

/// The limits of one upstream.
#[derive(Clone, Debug, Default)]
pub struct ServerLimits {
    /// Each caller's limit on this upstream (`mcp_servers.NAME.rate_limit`).
    pub upstream: Option<Rate>,
    /// Each caller's limit per tool (`mcp_servers.NAME.tool_rate_limits`).
    pub tools: BTreeMap<String, Rate>,
}

/// What a bucket counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A caller across all upstreams.
    Caller,
    /// A caller on one upstream.
    Upstream,
    /// A caller's calls of one tool.
    Tool,
    /// A key, at the `rpm_limit` its issuer set.
    Key,
    /// Every key of a team, at the team's `rpm_limit`.
    Team,
}

impl Scope {
    /// The `scope` label of [`RATE_LIMITED`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Caller => "caller",
            Self::Upstream => "upstream",
            Self::Tool => "tool",
            Self::Key => "key",
            Self::Team => "team",
        }
    }
}

/// One limit a request counts against: its digest names it in the backend.
#[derive(Clone, Debug)]
pub struct Bucket {
    pub scope: Scope,
    pub digest: [u8; 32],
    pub rate: Rate,
}

impl Bucket {
    /// The bucket of `scope` for `parts` (upstream, tool, identity): each part length-prefixed, so that no two
    /// different lists share a digest.
    fn new(scope: Scope, parts: &[&str], rate: Rate) -> Self {
        let mut hash = Sha256::new();
        hash.update(scope.as_str().as_bytes());
        for part in parts {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        Self {
            scope,
            digest: hash.finalize().into(),
            rate,
        }
    }
}

/// A backend's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// Refused by the bucket of `scope`; it admits again after `retry_after`.
    Refused {
        scope: Scope,
        retry_after: Duration,
    },
}

/// The backend could not answer (Redis unreachable or failing).
#[derive(Debug)]
pub struct Unavailable;

/// Where the counters live.
pub trait Backend: Send + Sync + 'static {
    /// Counts one request against every bucket, or refuses it naming the first bucket that is spent.
    fn check(&self, buckets: Vec<Bucket>) -> BoxFuture<'static, Result<Verdict, Unavailable>>;

    /// Whether the backend answers now (for `/readyz`).
    fn reachable(&self) -> BoxFuture<'static, bool>;

    /// `in_process` or `redis`.
    fn name(&self) -> &'static str;
}

struct Inner {
    per_caller: Option<Rate>,
    servers: crate::NameMap<String, ServerLimits>,
    backend: Arc<dyn Backend>,
    /// With Redis and `fail_open`: the in-process counters used while it cannot be reached.
    fallback: Option<Arc<local::Local>>,
    on_redis_error: OnRedisError,
}

/// The process's in-process counters, shared by every configuration it loads.
#[derive(Clone)]
pub struct Counters(Arc<local::Local>);

impl Counters {
    /// Empty counters, with the task that prunes them while they live (needs a Tokio runtime).
    pub fn start() -> Self {
        Self(local::Local::start())
    }
}

/// The gateway's rate limits and the backend counting them.
#[derive(Clone)]
pub struct Limiter(Arc<Inner>);

impl Limiter {
    /// From the settings and every upstream's limits; with a Redis URL, counts in Redis (feature `redis`).
    /// In process (and, with Redis and `fail_open`, while Redis cannot be reached) it counts in `counters`,
    /// which outlive a configuration reload: a reload neither resets a caller's count nor grants a new burst.
    pub fn new(
        settings: &Settings,
        servers: crate::NameMap<String, ServerLimits>,
        counters: &Counters,
    ) -> Result<Self, String> {
        let (backend, fallback): (Arc<dyn Backend>, _) = match &settings.redis_url {
            None => (counters.0.clone(), None),
            Some(url) => {
                let fallback =
                    (settings.on_redis_error == OnRedisError::FailOpen).then(|| counters.0.clone());
                (redis_backend(url)?, fallback)
            }
        };
        Ok(Self(Arc::new(Inner {
            per_caller: settings.per_caller,
            servers,
            backend,
            fallback,
            on_redis_error: settings.on_redis_error,
        })))
    }

    /// The start-up line: where the counters live and what an outage of Redis does.
    pub fn describe(&self) -> String {
        match self.0.backend.name() {
            "redis" => format!(
                "rate limits: counted in Redis, shared by every replica; when Redis cannot be reached: {}",
                match self.0.on_redis_error {
                    OnRedisError::FailClosed => "fail_closed (requests under a limit are refused with 503)",
                    OnRedisError::FailOpen =>
                        "fail_open (each replica counts on its own, in process, until Redis is back)",
                }
            ),
            _ => "rate limits: counted in process (each replica on its own)".to_owned(),
        }
    }

    /// For `/readyz`: whether limited requests can be served, and the limiter's state as JSON.
    pub async fn readiness(&self) -> (bool, serde_json::Value) {
        let backend = self.0.backend.name();
        if backend != "redis" {
            return (true, serde_json::json!({ "backend": backend }));
        }
        let reachable = self.0.backend.reachable().await;
        let mode = self.0.on_redis_error;
        let state = serde_json::json!({
            "backend": backend,
            "redis": if reachable { "reachable" } else { "unreachable" },
            "on_redis_error": mode.as_str(),
        });
        (reachable || mode == OnRedisError::FailOpen, state)
    }

    /// The buckets `request` counts against: none when it carries no JSON-RPC request or no limit applies.
    fn buckets(&self, request: &Request, upstream: &str) -> Vec<Bucket> {
        let Some(mcp) = request.extensions().get::<McpRequest>() else {
            return Vec::new();
        };
        let messages = mcp.envelope().messages();
        if !messages
            .iter()
            .any(|m| m.method().is_some() && m.id().is_some())
        {
            return Vec::new();
        }
        let caller = request.extensions().get::<Authenticated<Caller>>();
        let who = match (caller, request.extensions().get::<OAuthPassthrough>()) {
            (Some(caller), _) => Ok(caller.identity()),
            (None, Some(token)) => Err(token),
            (None, None) => return Vec::new(),
        };
        // Described only when a limit applies.
        let described = OnceCell::new();
        let identity = || -> &str {
            described.get_or_init(|| match who {
                Ok(caller) => caller.describe(),
                // A caller known only by its own token: counted under the token's digest, never the token (the
                // digest admission computed, which the marker carries).
                Err(token) => {
                    let digest: sha2::digest::Output<Sha256> = token.token_sha256().into();
                    format!("passthrough:{digest:x}")
                }
            })
        };
        // Narrowest first: in process, a request refused by a tool's limit spends none of the wider ones.
        let mut buckets = Vec::new();
        if let Some(server) = self.0.servers.get(upstream) {
            for tool in messages.iter().filter_map(|m| m.tool()) {
                if let Some(rate) = server.tools.get(tool) {
                    buckets.push(Bucket::new(
                        Scope::Tool,
                        &[upstream, tool, identity()],
                        *rate,
                    ));
                }
            }
            if let Some(rate) = server.upstream {
                buckets.push(Bucket::new(Scope::Upstream, &[upstream, identity()], rate));
            }
        }
        if let Some(rate) = self.0.per_caller {
            buckets.push(Bucket::new(Scope::Caller, &[identity()], rate));
        }
        if let Some(Caller::Key(key)) = caller.map(Authenticated::identity) {
            let limits = key.rpm_limits();
            if let Some(rpm) = limits.key() {
                buckets.push(Bucket::new(
                    Scope::Key,
                    &[identity()],
                    Rate::per_minute(rpm),
                ));
            }
            if let Some((team, rpm)) = limits.team() {
                buckets.push(Bucket::new(Scope::Team, &[team], Rate::per_minute(rpm)));
            }
        }
        buckets
    }
}

#[cfg(feature = "redis")]
fn redis_backend(url: &str) -> Result<Arc<dyn Backend>, String> {
    Ok(Arc::new(redis::Redis::new(url)?))
}

#[cfg(not(feature = "redis"))]
fn redis_backend(_: &str) -> Result<Arc<dyn Backend>, String> {
    Err(
        "general_settings.redis_url (or REDIS_URL): rate limits in Redis need the gateway built with \
         --features redis"
            .to_owned(),
    )
}

/// The `429` of a refused request: `Retry-After` in whole seconds (at least 1), and a JSON-RPC error for each
/// request of the body (an array for a batch), or the gateway's JSON error when the body has none.
fn refusal(mcp: &McpRequest, scope: Scope, retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let error = |id: serde_json::Value| {
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": RATE_LIMITED_CODE,
                "message": format!("rate limit exceeded ({} limit); retry after {seconds} s", scope.as_str()),
                "data": { "scope": scope.as_str(), "retryAfter": seconds },
            },
        })
    };
    let envelope = mcp.envelope();
    let answers: Vec<serde_json::Value> = envelope
        .messages()
        .iter()
        .filter_map(|m| m.id().filter(|_| m.method().is_some()))
        .map(|id| error(id.to_json()))
        .collect();
    let mut response = match (envelope.is_batch(), answers.len()) {
        (false, 1) => (
            StatusCode::TOO_MANY_REQUESTS,
            Json(answers.into_iter().next()),
        )
            .into_response(),
        (true, _) => (StatusCode::TOO_MANY_REQUESTS, Json(answers)).into_response(),
        _ => json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rate limit exceeded",
        ),
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Every call of the request refused by `rule`, for the access line and the calls counter.
fn outcome(mcp: &McpRequest, upstream: &str) -> McpOutcome {
    let calls: Arc<[CallOutcome]> = mcp
        .envelope()
        .messages()
        .iter()
        .map(|m| CallOutcome::new(m, Decision::Refused(Rule::RateLimit)))
        .collect();
    McpOutcome::new(upstream, calls)
}

/// Middleware, the rate-limit step: inside admission and the JSON-RPC view, before the relay. A request within
/// every limit that applies goes on; one beyond a limit gets the `429` of [`refusal`] and never reaches the
/// upstream; while Redis cannot be reached, `fail_open` counts in process and `fail_closed` answers 503.
pub fn enforce<S: Answers>(
    limiter: &Limiter,
    request: Request,
    next: Next<'_, S>,
) -> Either<Step<S>, BoxFuture<'static, Response>> {
    let Some(route) = super::route::of(&request) else {
        return Either::Left(next.pass(request));
    };
    let buckets = limiter.buckets(&request, route.name());
    if buckets.is_empty() {
        return Either::Left(next.pass(request));
    }
    let upstream = route.name().to_owned();
    Either::Right(Box::pin(counted(
        limiter.clone(),
        request,
        next.owned(),
        upstream,
        buckets,
    )))
}

/// A request with `buckets` to count: admitted, or refused with the scope that ran out.
async fn counted<S: Answers>(
    limiter: Limiter,
    request: Request,
    next: Owned<S>,
    upstream: String,
    buckets: Vec<Bucket>,
) -> Response {
    let verdict = match limiter.0.backend.check(buckets.clone()).await {
        Ok(verdict) => Ok(verdict),
        Err(Unavailable) => match &limiter.0.fallback {
            Some(local) => local.check(buckets).await,
            None => Err(Unavailable),
        },
    };
    let label = |scope: &'static str| {
        let upstream = if limiter.0.servers.contains_key(&upstream) {
            upstream.clone()
        } else {
            "other".to_owned()
        };
        metrics::counter!(RATE_LIMITED, "upstream" => upstream, "scope" => scope).increment(1);
    };
    let Some(mcp) = request.extensions().get::<McpRequest>().cloned() else {
        return next.run(request).await;
    };
    match verdict {
        Ok(Verdict::Admitted) => next.run(request).await,
        Ok(Verdict::Refused { scope, retry_after }) => {
            label(scope.as_str());
            let mut response = refusal(&mcp, scope, retry_after);
            response.extensions_mut().insert(outcome(&mcp, &upstream));
            response
        }
        Err(Unavailable) => {
            label("unavailable");
            let mut response = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the rate-limit store does not answer",
            );
            response.extensions_mut().insert(outcome(&mcp, &upstream));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_refuse_zero_and_default_the_burst() {
        let rate = Rate::new(30, None, "x").unwrap();
        assert_eq!(rate.burst.get(), 30);
        assert_eq!(rate.interval(), Duration::from_secs(2));
        assert_eq!(
            Rate::new(0, None, "x").unwrap_err(),
            "x.rpm: must be more than zero"
        );
        assert_eq!(
            Rate::new(1, Some(0), "x").unwrap_err(),
            "x.burst: must be more than zero"
        );
        // A microsecond is the counters' unit: no rate rounds down to no interval at all.
        assert!(Rate::new(MAX_RPM + 1, None, "x")
            .unwrap_err()
            .starts_with("x.rpm: at most"));
        assert_eq!(
            Rate::new(MAX_RPM, None, "x").unwrap().interval(),
            Duration::from_micros(1)
        );
        let huge = Rate::per_minute(NonZeroU32::new(u32::MAX).unwrap());
        assert_eq!(huge.interval(), Duration::from_micros(1));
    }

    #[test]
    fn bucket_names_keep_their_parts_apart() {
        let rate = Rate::new(1, None, "x").unwrap();
        let a = Bucket::new(Scope::Tool, &["ab", "c"], rate);
        let b = Bucket::new(Scope::Tool, &["a", "bc"], rate);
        let c = Bucket::new(Scope::Upstream, &["ab", "c"], rate);
        assert_ne!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
    }
}
