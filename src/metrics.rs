//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`), so that any exporter
//! (Prometheus, OpenTelemetry, StatsD…) can collect them. Without the feature every function here compiles to
//! nothing.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `mcp_auth.decisions` | counter | `outcome`, `source` | one per request: `authenticated`, `passthrough`, `rejected`, `denied`, `error`; where the credential came from (`key_header`, `bearer`, `none`, …) |
//! | `mcp_auth.validation.duration` | histogram (s) | `validator`, `result` | each store lookup behind a [`Cache`](crate::validators::Cache) (`valid`, `unknown`, `denied`, `invalid`, `error`) |
//! | `mcp_auth.cache.lookups` | counter | `result` | `hit`, `miss` (this validation asked the store), `coalesced` (it waited for another's lookup) |
//! | `mcp_auth.token_exchanges` | counter | `upstream`, `result` | see [`token_exchange`] |
//! | `mcp_auth.token_exchange.duration` | histogram (s) | `upstream`, `result` | see [`token_exchange`] |
//! | `mcp_auth.revocation.polls` | counter | — | successful polls of the revocation watcher |
//! | `mcp_auth.revocation.poll.duration` | histogram (s) | — | how long a successful poll took |
//! | `mcp_auth.revocation.changes` | counter | — | revoked or changed keys the polls reported |
//! | `mcp_auth.revocation.notifications` | counter | — | revocations delivered by `LISTEN`/`NOTIFY` |
//! | `mcp_auth.revocation.errors` | counter | `stage` | failed polls (`poll`) and lost listener connections (`listen`) |
//! | `mcp_auth.revocation.staleness` | gauge (s) | — | the watcher's lag: time since its last successful poll |
//!
//! Names follow OpenTelemetry's conventions (dotted, units in the description, not the name); a Prometheus
//! exporter turns the dots into underscores. No label ever holds a credential, a fingerprint or a digest:
//! every label value is one of the fixed words above, a validator's type name, or an upstream's configured
//! name.
//!
//! ```
//! // Install any recorder (here: none) and the layer's metrics flow to it.
//! tower_mcp_auth::metrics::token_exchange("github", "ok", std::time::Duration::from_millis(40));
//! ```

use std::{future::Future, time::Duration};

use crate::validate::Verdict;

#[cfg(feature = "metrics")]
mod names {
    pub(super) const DECISIONS: &str = "mcp_auth.decisions";
    pub(super) const VALIDATION_DURATION: &str = "mcp_auth.validation.duration";
    pub(super) const CACHE_LOOKUPS: &str = "mcp_auth.cache.lookups";
    pub(super) const TOKEN_EXCHANGES: &str = "mcp_auth.token_exchanges";
    pub(super) const TOKEN_EXCHANGE_DURATION: &str = "mcp_auth.token_exchange.duration";
    pub(super) const REVOCATION_POLLS: &str = "mcp_auth.revocation.polls";
    pub(super) const REVOCATION_POLL_DURATION: &str = "mcp_auth.revocation.poll.duration";
    pub(super) const REVOCATION_CHANGES: &str = "mcp_auth.revocation.changes";
    pub(super) const REVOCATION_NOTIFICATIONS: &str = "mcp_auth.revocation.notifications";
    pub(super) const REVOCATION_ERRORS: &str = "mcp_auth.revocation.errors";
    pub(super) const REVOCATION_STALENESS: &str = "mcp_auth.revocation.staleness";
}

/// Describes every metric to the installed recorder (units and help texts, which Prometheus shows as
/// `# HELP`). Optional: call it once after installing the recorder.
///
/// ```
/// tower_mcp_auth::metrics::describe();
/// ```
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        use names::*;
        describe_counter!(
            DECISIONS,
            "Requests decided by the auth layer, by outcome and credential source"
        );
        describe_histogram!(
            VALIDATION_DURATION,
            Unit::Seconds,
            "Key store lookups behind the cache, by validator and result"
        );
        describe_counter!(
            CACHE_LOOKUPS,
            "Cache lookups by result: hit, miss or coalesced"
        );
        describe_counter!(TOKEN_EXCHANGES, "Token exchanges by upstream and result");
        describe_histogram!(
            TOKEN_EXCHANGE_DURATION,
            Unit::Seconds,
            "Token exchange latency by upstream and result"
        );
        describe_counter!(
            REVOCATION_POLLS,
            "Successful polls of the revocation watcher"
        );
        describe_histogram!(
            REVOCATION_POLL_DURATION,
            Unit::Seconds,
            "Duration of the revocation watcher's successful polls"
        );
        describe_counter!(
            REVOCATION_CHANGES,
            "Changed or revoked keys reported by the revocation watcher"
        );
        describe_counter!(
            REVOCATION_NOTIFICATIONS,
            "Revocations delivered by LISTEN/NOTIFY"
        );
        describe_counter!(REVOCATION_ERRORS, "Revocation watcher failures, by stage");
        describe_gauge!(
            REVOCATION_STALENESS,
            Unit::Seconds,
            "Time since the revocation watcher's last successful poll"
        );
    }
}

/// Records one token exchange for `upstream` (its configured name, never a token or subject): `result` is a
/// fixed word such as `ok`, `refused` or `error`. For the token-exchange side of a gateway; a no-op without
/// the `metrics` feature.
///
/// ```
/// use std::time::Duration;
///
/// tower_mcp_auth::metrics::token_exchange("atlassian", "refused", Duration::from_millis(12));
/// ```
pub fn token_exchange(upstream: &str, result: &'static str, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    {
        let labels = [
            ("upstream", upstream.to_owned()),
            ("result", result.to_owned()),
        ];
        metrics::counter!(names::TOKEN_EXCHANGES, &labels).increment(1);
        metrics::histogram!(names::TOKEN_EXCHANGE_DURATION, &labels).record(elapsed.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (upstream, result, elapsed);
}

/// One request's decision.
pub(crate) fn decision(outcome: &'static str, source: &'static str) {
    #[cfg(feature = "metrics")]
    {
        let index = |all: &[&str], value: &str| all.iter().position(|known| *known == value);
        match (index(OUTCOMES, outcome), index(SOURCES, source)) {
            (Some(o), Some(s)) => metrics::with_recorder(|recorder| {
                recorder
                    .register_counter(&DECISION_KEYS[o][s], &METADATA)
                    .increment(1);
            }),
            _ => metrics::counter!(names::DECISIONS, "outcome" => outcome, "source" => source)
                .increment(1),
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (outcome, source);
}

/// The decisions' label values, known in advance so that counting a request allocates nothing: the keys of
/// every combination are built at compile time, from the one list of each.
#[cfg(feature = "metrics")]
macro_rules! decision_table {
    ([$($outcome:literal),*], $sources:tt) => {
        const OUTCOMES: &[&str] = &[$($outcome),*];
        const SOURCES: &[&str] = &$sources;
        static DECISION_KEYS: [[metrics::Key; SOURCES.len()]; OUTCOMES.len()] =
            [$(decision_table!(@row $outcome, $sources)),*];
    };
    (@row $outcome:literal, [$($source:literal),*]) => {
        [$({
            static LABELS: [metrics::Label; 2] = [
                metrics::Label::from_static_parts("outcome", $outcome),
                metrics::Label::from_static_parts("source", $source),
            ];
            metrics::Key::from_static_parts(names::DECISIONS, &LABELS)
        }),*]
    };
}

#[cfg(feature = "metrics")]
decision_table!(
    [
        "authenticated",
        "passthrough",
        "rejected",
        "denied",
        "error"
    ],
    ["key_header", "bearer", "none", "authorization", "request"]
);

#[cfg(feature = "metrics")]
static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// How a cache answered.
#[derive(Clone, Copy)]
pub(crate) enum CacheLookup {
    Hit,
    Miss,
    Coalesced,
}

pub(crate) fn cache_lookup(result: CacheLookup) {
    #[cfg(feature = "metrics")]
    {
        // Literal labels: static keys, no allocation on a hit.
        match result {
            CacheLookup::Hit => metrics::counter!(names::CACHE_LOOKUPS, "result" => "hit"),
            CacheLookup::Miss => metrics::counter!(names::CACHE_LOOKUPS, "result" => "miss"),
            CacheLookup::Coalesced => {
                metrics::counter!(names::CACHE_LOOKUPS, "result" => "coalesced")
            }
        }
        .increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = result;
}

/// Awaits `validation` by validator `V`, recording its latency and result.
#[cfg_attr(not(feature = "metrics"), allow(clippy::extra_unused_type_parameters))]
pub(crate) async fn validation<V, I, E>(
    validation: impl Future<Output = Result<Verdict<I>, E>>,
) -> Result<Verdict<I>, E> {
    #[cfg(feature = "metrics")]
    {
        let started = std::time::Instant::now();
        let answer = validation.await;
        let result = match &answer {
            Ok(Verdict::Valid(_)) => "valid",
            Ok(Verdict::Unknown) => "unknown",
            Ok(Verdict::Denied) => "denied",
            Ok(Verdict::Invalid) => "invalid",
            Err(_) => "error",
        };
        metrics::histogram!(
            names::VALIDATION_DURATION,
            "validator" => short_type_name::<V>(),
            "result" => result
        )
        .record(started.elapsed().as_secs_f64());
        answer
    }
    #[cfg(not(feature = "metrics"))]
    validation.await
}

/// `LiteLlmKeys` for `tower_mcp_auth::validators::litellm::LiteLlmKeys`, `ValidateFn` for `ValidateFn<…>`.
#[cfg(feature = "metrics")]
fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    let name = name.split('<').next().unwrap_or(name);
    name.rsplit("::").next().unwrap_or(name)
}

/// A successful poll of the revocation watcher.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn revocation_poll(elapsed: Duration, changes: usize) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(names::REVOCATION_POLLS).increment(1);
        metrics::histogram!(names::REVOCATION_POLL_DURATION).record(elapsed.as_secs_f64());
        metrics::counter!(names::REVOCATION_CHANGES).increment(changes as u64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (elapsed, changes);
}

/// A revocation delivered by a notification.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn revocation_notified() {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::REVOCATION_NOTIFICATIONS).increment(1);
}

/// A failure of the revocation watcher at `stage` (`poll`, `listen`).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn revocation_error(stage: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::REVOCATION_ERRORS, "stage" => stage).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = stage;
}

/// The time since the revocation watcher's last successful poll.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn revocation_staleness(since_success: Duration) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(names::REVOCATION_STALENESS).set(since_success.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = since_success;
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn decision_keys_follow_the_label_lists() {
        for (o, outcome) in OUTCOMES.iter().enumerate() {
            for (s, source) in SOURCES.iter().enumerate() {
                let key = &DECISION_KEYS[o][s];
                assert_eq!(key.name(), names::DECISIONS);
                let labels: Vec<(&str, &str)> =
                    key.labels().map(|l| (l.key(), l.value())).collect();
                assert_eq!(labels, [("outcome", *outcome), ("source", *source)]);
            }
        }
    }
}
