//! The Redis backend (feature `redis`): GCRA in one server-side Lua script, so that every replica counts
//! against the same buckets and a request's buckets are checked and spent atomically — all of them, or none
//! when one is spent. The script reads the time from Redis (`TIME`), so replicas whose clocks differ still
//! agree. Keys are `mcp-gateway:rl:SCOPE:DIGEST` (never a key or an identity) and expire once their bucket
//! is full again.
//!
//! A request waits at most [`TIMEOUT`] for Redis; an error or a timeout is [`Unavailable`], and for
//! [`RETRY_AFTER_FAILURE`] after one, requests do not wait for Redis at all (the configured fallback answers at
//! once) while the connection manager reconnects.

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    Client, Script,
};

use super::{Backend, Bucket, Unavailable, Verdict};

/// The longest a request waits for Redis.
const TIMEOUT: Duration = Duration::from_millis(500);
/// After a failure, how long requests skip Redis.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// KEYS: one per bucket; ARGV: per bucket its interval in microseconds and its burst. Returns `{0, 0}` when
/// admitted (every bucket spent one cell), else `{i, wait}`: bucket `i` (from 1) is spent until `wait` µs.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local next = tat + interval
  local allowed_at = next - interval * burst
  if allowed_at > now then
    return {i, allowed_at - now}
  end
  tats[i] = next
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%d', tats[i]), 'PX', math.max(1, math.ceil((tats[i] - now) / 1000)))
end
return {0, 0}
";

/// Counters in Redis, shared by every replica.
pub struct Redis {
    connection: ConnectionManager,
    script: Arc<Script>,
    /// Microseconds since `epoch` until which requests skip Redis (0: none).
    skip_until: Arc<AtomicU64>,
    epoch: Instant,
}

fn started() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Redis {
    /// A lazily connecting client of `url`. The URL may hold a password: errors never repeat it.
    pub fn new(url: &str) -> Result<Self, String> {
        let client = Client::open(url).map_err(|_| {
            "general_settings.redis_url (or REDIS_URL): not a usable Redis URL".to_owned()
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(|_| {
            "general_settings.redis_url (or REDIS_URL): cannot use this Redis URL".to_owned()
        })?;
        Ok(Self {
            connection,
            script: Arc::new(Script::new(GCRA)),
            skip_until: Arc::new(AtomicU64::new(0)),
            epoch: started(),
        })
    }
}

/// `mcp-gateway:rl:SCOPE:DIGEST`.
fn key(bucket: &Bucket) -> String {
    let mut key = format!("mcp-gateway:rl:{}:", bucket.scope.as_str());
    for byte in bucket.digest {
        let _ = write!(key, "{byte:02x}");
    }
    key
}

impl Backend for Redis {
    fn check(&self, buckets: Vec<Bucket>) -> BoxFuture<'static, Result<Verdict, Unavailable>> {
        let now = self.epoch.elapsed().as_micros() as u64;
        if now < self.skip_until.load(Ordering::Relaxed) {
            return Box::pin(async { Err(Unavailable) });
        }
        let script = self.script.clone();
        let mut connection = self.connection.clone();
        let skip_until = self.skip_until.clone();
        let epoch = self.epoch;
        Box::pin(async move {
            let mut invocation = script.prepare_invoke();
            for bucket in &buckets {
                invocation
                    .key(key(bucket))
                    .arg(bucket.rate.interval().as_micros() as u64)
                    .arg(bucket.rate.burst.get());
            }
            let answer = tokio::time::timeout(
                TIMEOUT,
                invocation.invoke_async::<(u64, u64)>(&mut connection),
            )
            .await;
            match answer {
                Ok(Ok((0, _))) => Ok(Verdict::Admitted),
                Ok(Ok((index, wait))) => {
                    let bucket = usize::try_from(index - 1)
                        .ok()
                        .and_then(|i| buckets.get(i))
                        .ok_or(Unavailable)?;
                    Ok(Verdict::Refused {
                        scope: bucket.scope,
                        retry_after: Duration::from_micros(wait),
                    })
                }
                Ok(Err(error)) => {
                    tracing::warn!(kind = ?error.kind(), "rate limits: Redis failed");
                    skip_until.store(
                        (epoch.elapsed() + RETRY_AFTER_FAILURE).as_micros() as u64,
                        Ordering::Relaxed,
                    );
                    Err(Unavailable)
                }
                Err(_) => {
                    tracing::warn!("rate limits: Redis did not answer in time");
                    skip_until.store(
                        (epoch.elapsed() + RETRY_AFTER_FAILURE).as_micros() as u64,
                        Ordering::Relaxed,
                    );
                    Err(Unavailable)
                }
            }
        })
    }

    fn reachable(&self) -> BoxFuture<'static, bool> {
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let ping = redis::cmd("PING");
            matches!(
                tokio::time::timeout(TIMEOUT, ping.query_async::<String>(&mut connection)).await,
                Ok(Ok(_))
            )
        })
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
