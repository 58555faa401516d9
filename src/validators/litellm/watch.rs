//! `LiteLlmRevocations`: watches LiteLLM's key tables and turns every revocation into cache invalidations, so
//! that every replica refuses a revoked key within a bound.

use std::{
    fmt,
    hash::{BuildHasher, Hasher},
    sync::Arc,
    time::Duration,
};

use sqlx::{postgres::PgPool, Row};
use tokio::time::{Instant, MissedTickBehavior};

use crate::metrics;
use crate::validators::{Revocation, RevocationSink, TrustGate};

/// The default overlap of consecutive polls: a change stamped up to this long before the previous poll but
/// committed after it is still seen.
const DEFAULT_OVERLAP: Duration = Duration::from_secs(10);
/// The longest wait between attempts while the database cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One round trip per poll. The cursor is the database's own clock (UTC, as Prisma stores `DateTime`), so the
/// clocks of the replicas do not matter; `$1` is the previous poll's clock (NULL on the first), `$2` the
/// overlap in seconds. A key is reported when:
/// - its row in `"LiteLLM_VerificationToken"` changed (`updated_at`: blocked, expiry, budget, spend,
///   permissions — LiteLLM points the key at a new object permission and stamps the key);
/// - its team's row changed (`"LiteLLM_TeamTable"`.`updated_at`: blocked, budget, spend, permissions);
/// - it was deleted (`"LiteLLM_DeletedVerificationToken"`, `deleted_at`);
/// - it was rotated out (`"LiteLLM_DeprecatedVerificationToken"`: a new row, `created_at`), and again when its
///   grace period ends (`revoke_at`);
/// - it is a rotated key still in its grace period, standing for a key reported above: revoking the
///   replacement revokes what the old key was admitted as.
///
/// `servers` is a stamp of `"LiteLLM_MCPServerTable"`: how many rows it has and the latest `updated_at`. It moves
/// when a server is added, deleted or changed (approval status, `allow_all_keys`, access groups…); which keys that
/// affects is not in the row, so every answer is dropped, once per change.
const CHANGES: &str = r#"
WITH clock AS (SELECT statement_timestamp() AT TIME ZONE 'UTC' AS now),
     since AS (
         SELECT COALESCE(to_timestamp($1) AT TIME ZONE 'UTC', clock.now) - make_interval(secs => $2) AS at
           FROM clock
     ),
     changed AS (
         SELECT k.token FROM "LiteLLM_VerificationToken" k, since WHERE k.updated_at > since.at
         UNION
         SELECT k.token FROM "LiteLLM_VerificationToken" k
           JOIN "LiteLLM_TeamTable" t ON t.team_id = k.team_id, since
          WHERE t.updated_at > since.at
         UNION
         SELECT d.token FROM "LiteLLM_DeletedVerificationToken" d, since WHERE d.deleted_at > since.at
         UNION
         SELECT r.token FROM "LiteLLM_DeprecatedVerificationToken" r, since, clock
          WHERE r.created_at > since.at OR (r.revoke_at > since.at AND r.revoke_at <= clock.now)
     )
SELECT EXTRACT(EPOCH FROM clock.now)::double precision AS now,
       ARRAY(
           SELECT token FROM changed
           UNION
           SELECT r.token FROM "LiteLLM_DeprecatedVerificationToken" r JOIN changed c ON r.active_token_id = c.token
       ) AS tokens,
       (SELECT count(*) || '/' || COALESCE(EXTRACT(EPOCH FROM max(s.updated_at))::text, '')
          FROM "LiteLLM_MCPServerTable" s) AS servers
  FROM clock"#;

/// Watches LiteLLM's key tables in PostgreSQL and sends every revoked key to its [`RevocationSink`]s (a
/// [`Cache`](crate::validators::Cache), the tokens exchanged for a key, …), so that a gateway running as several replicas,
/// each with its own cache, refuses a revoked key on every replica within a bound (2 s by default).
///
/// # How the bound is kept
///
/// - **Polling.** Every [`poll_interval`](LiteLlmRevocations::poll_interval) (a quarter of the bound), one
///   query reads the keys that changed since the previous poll: rows of `"LiteLLM_VerificationToken"` whose
///   `updated_at` moved (LiteLLM stamps it when a key is blocked, or its expiry, budget or permissions change),
///   rows added to `"LiteLLM_DeletedVerificationToken"` (a deleted key), rows of
///   `"LiteLLM_DeprecatedVerificationToken"` (a rotated key: when rotated, and again when its grace period
///   ends), the keys of a team whose row changed (blocked, budget, permissions), and the rotated keys still in
///   their grace period whose replacement is among them. Their `token` column is the key's SHA-256, hex: each
///   becomes a [`Revocation::Digest`]. A server added to, deleted from or changed in
///   `"LiteLLM_MCPServerTable"` (approval status, `allow_all_keys`…) may change what any key may reach: it becomes
///   one [`Revocation::All`].
/// - **Overlap.** Each poll looks back [`overlap`](LiteLlmRevocations::overlap) (10 s) before the previous
///   poll's time, on the database's clock, so a change stamped before a poll but committed after it is not
///   missed. A key is therefore invalidated on several consecutive polls, which also undoes a lookup that was
///   in flight during the first invalidation and stored the state it read before the change. Changes the
///   database makes without moving these columns are seen only when the cached answer expires.
/// - **The trust gate.** Each successful poll [`confirm`](TrustGate::confirm)s the [`TrustGate`] given to
///   [`new`](LiteLlmRevocations::new), as of the moment the poll was sent. Give the same gate to the cache
///   ([`CacheBuilder::trust_gate`](crate::validators::CacheBuilder::trust_gate)): when the database cannot be reached for
///   longer than the bound, the cache stops answering `Valid` from memory, and every key is validated by the
///   store again, failing closed (503) while it is down.
/// - **Backoff.** While the database cannot be reached, polls (and reconnections of the listener) are spaced
///   out, doubling up to 5 s, each wait drawn at random from the upper half of its range so that replicas that
///   lost the database together do not return to it in step. The gate is closed by then anyway; once the
///   database answers again, the next successful poll reopens it.
/// - **`LISTEN`/`NOTIFY`** (optional, [`listen`](LiteLlmRevocations::listen)): with the trigger of
///   `sql/litellm_revocation_notify.sql` installed by the operator, each revocation is also delivered at once.
///   Notifications sent while the listening connection is down are lost, so every (re)connection flushes the
///   sinks ([`Revocation::All`]). Polling goes on regardless and remains what the bound rests on.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_mcp_auth::{
///     validators::{Cache, KeyInfo, LiteLlmKeys, LiteLlmRevocations, TrustGate},
///     McpAuthLayer,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = LiteLlmKeys::connect_lazy("postgres://litellm@db.internal/litellm")?;
/// let gate = TrustGate::new(Duration::from_secs(2)); // the revocation bound
/// let cache = Cache::builder(keys.clone()).expiry(KeyInfo::expires_at).trust_gate(gate.clone()).build();
/// let _watcher = LiteLlmRevocations::new(keys.pool().clone(), gate).sink(cache.clone()).spawn();
/// let layer = McpAuthLayer::new(cache);
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
pub struct LiteLlmRevocations {
    pool: PgPool,
    gate: TrustGate,
    sinks: Vec<Arc<dyn RevocationSink>>,
    poll_interval: Duration,
    overlap: Duration,
    channel: Option<String>,
}

impl LiteLlmRevocations {
    /// Watches the tables through `pool`, keeping `gate` open while the database is reachable; the revocation
    /// bound is the gate's [`bound`](TrustGate::bound). Add sinks with [`sink`](LiteLlmRevocations::sink).
    pub fn new(pool: PgPool, gate: TrustGate) -> Self {
        let poll_interval = gate.bound() / 4;
        Self {
            pool,
            gate,
            sinks: Vec::new(),
            poll_interval,
            overlap: DEFAULT_OVERLAP,
            channel: None,
        }
    }

    /// Sends revocations to `sink` too (in the order the sinks were added).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_mcp_auth::validators::{revocation_fn, Cache, LiteLlmKeys, LiteLlmRevocations, TrustGate};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let keys = LiteLlmKeys::connect_lazy("postgres://db/litellm").unwrap();
    /// # let cache = Cache::new(keys.clone());
    /// let watcher = LiteLlmRevocations::new(keys.pool().clone(), TrustGate::new(Duration::from_secs(2)))
    ///     .sink(cache.clone())
    ///     .sink(revocation_fn(|revoked| async move {
    ///         // e.g. drop the upstream tokens obtained by exchanging this key
    ///         let _ = revoked;
    ///     }));
    /// # let _ = watcher;
    /// # }
    /// ```
    pub fn sink(mut self, sink: impl RevocationSink + 'static) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// How often the tables are read (default: a quarter of the gate's bound, 500 ms for 2 s). Keep it well
    /// under the bound: a revoked key is refused within about one interval plus one query.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How far each poll looks back before the previous one (default 10 s): longer than the longest
    /// transaction that changes a key, plus any skew between LiteLLM's clock and the database's.
    pub fn overlap(mut self, overlap: Duration) -> Self {
        self.overlap = overlap;
        self
    }

    /// Also `LISTEN`s on `channel` for the notifications of the operator-installed trigger in
    /// `sql/litellm_revocation_notify.sql` (whose payload is the key's `token`), for revocations faster than
    /// the poll interval. Nothing is installed in the database by this crate.
    pub fn listen(mut self, channel: &str) -> Self {
        self.channel = Some(channel.to_owned());
        self
    }

    /// The gate the watcher keeps open.
    pub fn trust_gate(&self) -> &TrustGate {
        &self.gate
    }

    /// Runs the watcher on its own Tokio task until the handle is aborted (dropping the handle detaches it).
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    /// Runs the watcher in the current task; never returns.
    pub async fn run(self) {
        match &self.channel {
            Some(channel) => {
                // The listener starts after the first poll, whose flush would otherwise land at an arbitrary
                // moment after the listener's own.
                let first_poll = tokio::sync::Notify::new();
                let listen = async {
                    first_poll.notified().await;
                    self.listen_loop(channel).await;
                };
                futures_util::future::join(self.poll_loop(Some(&first_poll)), listen).await;
            }
            None => self.poll_loop(None).await,
        }
    }

    async fn poll_loop(&self, first_poll: Option<&tokio::sync::Notify>) {
        let mut since: Option<f64> = None;
        let mut servers_seen: Option<String> = None;
        let mut last_success = Instant::now();
        let mut backoff = Backoff::new(self.poll_interval.max(Duration::from_millis(1)));
        let mut ticks = tokio::time::interval(self.poll_interval.max(Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let sent = Instant::now();
            // A hung connection must not hold the watcher past the bound: the gate closes meanwhile anyway.
            let polled =
                tokio::time::timeout(self.gate.bound().max(self.poll_interval), self.poll(since))
                    .await
                    .unwrap_or_else(|_| Err(PollError::TimedOut));
            match polled {
                Ok((now, tokens, servers)) => {
                    since = Some(now);
                    // Also on the first poll: answers cached before the watcher's first look may predate a change.
                    if servers_seen.as_ref() != Some(&servers) {
                        self.send(&Revocation::All).await;
                        servers_seen = Some(servers);
                    }
                    for token in &tokens {
                        match digest(token) {
                            Some(digest) => self.send(&Revocation::Digest(digest)).await,
                            None => tracing::debug!(
                                target: "tower_mcp_auth",
                                "LiteLLM token column holds no SHA-256 digest; skipped"
                            ),
                        }
                    }
                    self.gate.confirm(sent);
                    last_success = sent;
                    backoff.reset();
                    metrics::revocation_poll(sent.elapsed(), tokens.len());
                }
                Err(error) => {
                    metrics::revocation_error("poll");
                    let retry = backoff.next();
                    tracing::warn!(
                        target: "tower_mcp_auth",
                        %error,
                        since_last_success_ms = u64::try_from(last_success.elapsed().as_millis()).unwrap_or(u64::MAX),
                        trusted = self.gate.is_trusted(),
                        retry_in_ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX),
                        "LiteLLM revocation poll failed"
                    );
                    // Replicas that lost the database together do not all knock at once when it returns.
                    ticks.reset_after(retry);
                }
            }
            metrics::revocation_staleness(last_success.elapsed());
            if let Some(first_poll) = first_poll {
                // A stored permit: the listener goes on whether it waits already or not (later calls are no-ops
                // once it has).
                first_poll.notify_one();
            }
        }
    }

    /// The database's clock, the tokens that changed since `since` (minus the overlap), and the MCP servers'
    /// stamp.
    async fn poll(&self, since: Option<f64>) -> Result<(f64, Vec<String>, String), PollError> {
        let row = sqlx::query(CHANGES)
            .bind(since)
            .bind(self.overlap.as_secs_f64())
            .fetch_one(&self.pool)
            .await?;
        Ok((
            row.try_get("now")?,
            row.try_get("tokens")?,
            row.try_get("servers")?,
        ))
    }

    async fn listen_loop(&self, channel: &str) {
        let mut backoff = Backoff::new(
            self.poll_interval
                .clamp(Duration::from_millis(100), Duration::from_secs(1)),
        );
        loop {
            let connected = Instant::now();
            if let Err(error) = self.listen_once(channel).await {
                metrics::revocation_error("listen");
                tracing::warn!(target: "tower_mcp_auth", %error, "LiteLLM revocation listener disconnected");
            }
            // A connection that lasted counts as a recovery: reconnect soon. Otherwise back off, with jitter.
            if connected.elapsed() > MAX_BACKOFF {
                backoff.reset();
            }
            tokio::time::sleep(backoff.next()).await;
        }
    }

    /// Listens until the connection is lost. Every connection starts with a flush: what was notified while
    /// no connection listened is lost.
    async fn listen_once(&self, channel: &str) -> Result<(), PollError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(channel).await?;
        self.send(&Revocation::All).await;
        loop {
            // `try_recv` answers `None` when the connection was lost (and reconnects on the next call): flush.
            match listener.try_recv().await? {
                Some(notification) => {
                    if let Some(digest) = digest(notification.payload()) {
                        self.send(&Revocation::Digest(digest)).await;
                        metrics::revocation_notified();
                    }
                }
                None => self.send(&Revocation::All).await,
            }
        }
    }

    async fn send(&self, revocation: &Revocation) {
        for sink in &self.sinks {
            sink.revoke(revocation).await;
        }
    }
}

impl fmt::Debug for LiteLlmRevocations {
    // The pool's options hold the database password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiteLlmRevocations")
            .field("gate", &self.gate)
            .field("sinks", &self.sinks.len())
            .field("poll_interval", &self.poll_interval)
            .field("overlap", &self.overlap)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// Why one poll failed.
#[derive(Debug)]
enum PollError {
    Database(sqlx::Error),
    TimedOut,
}

impl From<sqlx::Error> for PollError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl fmt::Display for PollError {
    // sqlx's messages name the failure, never bound parameters or the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Database(error) => fmt::Display::fmt(error, f),
            Self::TimedOut => f.write_str("the poll did not finish within the revocation bound"),
        }
    }
}

/// The waits between attempts while the database cannot be reached: doubling from `base` up to
/// [`MAX_BACKOFF`] (never below `base`), each drawn uniformly from its upper half (jitter), so replicas that
/// lost the database together spread their attempts.
struct Backoff {
    base: Duration,
    failures: u32,
}

impl Backoff {
    fn new(base: Duration) -> Self {
        Self { base, failures: 0 }
    }

    fn reset(&mut self) {
        self.failures = 0;
    }

    /// The wait before the next attempt.
    fn next(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_BACKOFF.max(self.base));
        self.failures = self.failures.saturating_add(1);
        // The standard library's randomly keyed hasher is random enough to spread retries.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
        ceiling / 2 + (ceiling / 2).mul_f64(fraction)
    }
}

/// LiteLLM's `token` column, the hex SHA-256 of a key, as a digest; `None` for anything else.
fn digest(token: &str) -> Option<[u8; 32]> {
    let token = token.as_bytes();
    if token.len() != 64 {
        return None;
    }
    let mut digest = [0; 32];
    for (byte, pair) in digest.iter_mut().zip(token.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high << 4 | low).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::sha256;

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_ceiling_and_resets() {
        let base = Duration::from_millis(500);
        let mut backoff = Backoff::new(base);
        let mut ceiling = base;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let wait = backoff.next();
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{wait:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            waits.push(wait);
            ceiling = (ceiling * 2).min(MAX_BACKOFF);
        }
        assert!(waits[7] >= MAX_BACKOFF / 2);
        // Jitter: eight draws from continuous ranges are not all at the same point of their range.
        assert!(waits.windows(2).any(|w| w[0] * 2 != w[1]), "{waits:?}");
        backoff.reset();
        assert!(backoff.next() <= base);
        // A base above the ceiling is kept.
        let mut slow = Backoff::new(MAX_BACKOFF * 2);
        assert!(slow.next() >= MAX_BACKOFF);
    }

    #[test]
    fn token_column_is_a_digest() {
        // hashlib.sha256(b"sk-1234").hexdigest()
        let token = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b";
        assert_eq!(digest(token), Some(sha256("sk-1234")));
        assert_eq!(digest(&token.to_uppercase()), Some(sha256("sk-1234")));
        assert_eq!(digest("sk-1234"), None);
        assert_eq!(digest(&token[..62]), None);
        assert_eq!(digest(&format!("{}zz", &token[..62])), None);
    }
}
