//! The in-process backend: GCRA by `governor`, one keyed limiter per distinct rate, keyed by bucket digest.
//! Each replica counts on its own. Buckets idle for longer than their rate needs to refill are dropped every
//! [`PRUNE_EVERY`], so callers that come and go do not grow the process.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use futures_util::future::BoxFuture;
use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota};

use super::{Backend, Bucket, Rate, Unavailable, Verdict};

/// How often idle buckets are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

type Keyed = DefaultKeyedRateLimiter<[u8; 32]>;

/// In-process counters.
#[derive(Default)]
pub struct Local {
    limiters: Mutex<HashMap<Rate, Arc<Keyed>>>,
}

impl Local {
    /// The counters, with the task that prunes them while they live (needs a Tokio runtime).
    pub fn start() -> Arc<Self> {
        let local = Arc::new(Self::default());
        let weak: Weak<Self> = Arc::downgrade(&local);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PRUNE_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(local) = weak.upgrade() else { break };
                local.prune();
            }
        });
        local
    }

    fn limiter(&self, rate: Rate) -> Arc<Keyed> {
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        limiters
            .entry(rate)
            .or_insert_with(|| {
                let quota = Quota::with_period(rate.interval())
                    .expect("a rate's interval is not zero")
                    .allow_burst(rate.burst);
                Arc::new(Keyed::keyed(quota))
            })
            .clone()
    }

    fn prune(&self) {
        let limiters: Vec<Arc<Keyed>> = self
            .limiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for limiter in limiters {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Counts one request against `buckets` in order; the first spent one refuses it (the cells of buckets
    /// before it stay spent, as each limit counts the requests that reached it).
    pub fn verdict(&self, buckets: &[Bucket]) -> Verdict {
        for bucket in buckets {
            let limiter = self.limiter(bucket.rate);
            if let Err(not_until) = limiter.check_key(&bucket.digest) {
                return Verdict::Refused {
                    scope: bucket.scope,
                    retry_after: not_until.wait_time_from(limiter.clock().now()),
                };
            }
        }
        Verdict::Admitted
    }
}

impl Backend for Local {
    fn check(&self, buckets: Vec<Bucket>) -> BoxFuture<'static, Result<Verdict, Unavailable>> {
        let verdict = self.verdict(&buckets);
        Box::pin(async move { Ok(verdict) })
    }

    fn reachable(&self) -> BoxFuture<'static, bool> {
        Box::pin(async { true })
    }

    fn name(&self) -> &'static str {
        "in_process"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Scope;

    #[tokio::test]
    async fn a_burst_then_refusals_naming_the_scope() {
        let local = Local::start();
        let rate = Rate::new(3, Some(2), "x").unwrap();
        let bucket = Bucket::new(Scope::Tool, &["a", "echo", "key:alice"], rate);
        let other = Bucket::new(Scope::Tool, &["a", "echo", "key:bob"], rate);
        assert_eq!(
            local.verdict(std::slice::from_ref(&bucket)),
            Verdict::Admitted
        );
        assert_eq!(
            local.verdict(std::slice::from_ref(&bucket)),
            Verdict::Admitted
        );
        match local.verdict(&[bucket]) {
            Verdict::Refused { scope, retry_after } => {
                assert_eq!(scope, Scope::Tool);
                // One cell every 20 s: the wait is at most that.
                assert!(retry_after <= Duration::from_secs(20), "{retry_after:?}");
                assert!(retry_after > Duration::from_secs(10), "{retry_after:?}");
            }
            Verdict::Admitted => panic!("a third request within the burst of two"),
        }
        assert_eq!(local.verdict(&[other]), Verdict::Admitted);
    }
}
