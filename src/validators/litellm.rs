//! `LiteLlmKeys`: the virtual keys of an existing LiteLLM deployment, read from its Postgres table.

use std::{
    error::Error,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::future::BoxFuture;
use serde_json::Value;
use sqlx::{
    postgres::{PgPool, PgPoolOptions, PgRow},
    Row,
};

use crate::{
    secret::sha256,
    validate::{Validator, Verdict},
};

/// LiteLLM issues only keys with this prefix, and refuses any other before looking it up.
const KEY_PREFIX: &str = "sk-";

/// One prepared statement; `expires` comes back as seconds since the epoch so that no date-time crate is
/// needed (Prisma stores `DateTime` as UTC in `timestamp(3)`).
const LOOKUP: &str = r#"SELECT key_alias, user_id, team_id, organization_id, models, metadata,
       EXTRACT(EPOCH FROM expires)::double precision AS expires, spend, max_budget, blocked
  FROM "LiteLLM_VerificationToken"
 WHERE token = $1"#;

/// A [`Validator`] over LiteLLM's `"LiteLLM_VerificationToken"` table, so that a gateway admits exactly the
/// virtual keys an existing LiteLLM deployment issued.
///
/// LiteLLM stores each key as the hex SHA-256 of the key (`token` column); the lookup is by that digest, with
/// one prepared statement over a connection pool.
///
/// | presented key | verdict |
/// |---|---|
/// | does not start with `sk-` (LiteLLM refuses those itself) | [`Unknown`](Verdict::Unknown), no query |
/// | no row | [`Unknown`](Verdict::Unknown) |
/// | `blocked = true` | [`Denied`](Verdict::Denied) |
/// | `expires` in the past | [`Denied`](Verdict::Denied) |
/// | `max_budget` set and `spend >= max_budget` | [`Denied`](Verdict::Denied) |
/// | any other row | [`Valid`](Verdict::Valid)`(`[`KeyInfo`]`)` |
/// | the database cannot be reached or answers with an error | error (the layer answers 503), never `Unknown` |
///
/// Only the key's own row is read: budgets and blocks of its team, user or organization, and LiteLLM's
/// master key, are not consulted. The table is found through the connection's `search_path`; the pool is
/// yours, so enable sqlx's TLS features in your own manifest if the database needs TLS.
///
/// Put a [`Cache`](super::Cache) in front, with the key's expiry capping the TTL:
///
/// ```no_run
/// use tower_mcp_auth::{
///     validators::{Cache, KeyInfo, LiteLlmKeys},
///     McpAuthLayer,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = LiteLlmKeys::connect_lazy("postgres://litellm@db.internal/litellm")?;
/// let validator = Cache::builder(keys).expiry(KeyInfo::expires_at).build();
/// let layer = McpAuthLayer::new(validator);
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LiteLlmKeys {
    pool: PgPool,
}

impl LiteLlmKeys {
    /// Reads keys through `pool`.
    ///
    /// ```no_run
    /// use sqlx::postgres::PgPoolOptions;
    /// use tower_mcp_auth::validators::LiteLlmKeys;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sqlx::Error> {
    /// let pool = PgPoolOptions::new().max_connections(5).connect("postgres://litellm@db/litellm").await?;
    /// let keys = LiteLlmKeys::new(pool);
    /// # let _ = keys;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Reads keys through a pool of up to 10 connections to `url`, opened when first needed; waiting for a
    /// connection gives up after 3 s. Call it within a tokio runtime.
    ///
    /// ```no_run
    /// use tower_mcp_auth::validators::LiteLlmKeys;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_mcp_auth::validators::LiteLlmError> {
    /// let keys = LiteLlmKeys::connect_lazy("postgres://litellm@127.0.0.1/litellm")?;
    /// # let _ = keys;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect_lazy(url: &str) -> Result<Self, LiteLlmError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(url)
            .map_err(LiteLlmError)?;
        Ok(Self::new(pool))
    }

    /// The pool keys are read through.
    ///
    /// ```no_run
    /// # use tower_mcp_auth::validators::LiteLlmKeys;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let keys = LiteLlmKeys::connect_lazy("postgres://litellm@127.0.0.1/litellm").unwrap();
    /// keys.pool().close().await;
    /// # }
    /// ```
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl fmt::Debug for LiteLlmKeys {
    // The pool's options hold the database password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiteLlmKeys")
            .field("connections", &self.pool.size())
            .field("closed", &self.pool.is_closed())
            .finish_non_exhaustive()
    }
}

impl Validator for LiteLlmKeys {
    type Identity = KeyInfo;
    type Error = LiteLlmError;
    type Future = BoxFuture<'static, Result<Verdict<KeyInfo>, LiteLlmError>>;

    fn validate(&self, credential: &str) -> Self::Future {
        if !credential.starts_with(KEY_PREFIX) {
            return Box::pin(std::future::ready(Ok(Verdict::Unknown)));
        }
        let token = hex(&sha256(credential));
        let pool = self.pool.clone();
        Box::pin(async move {
            let row = sqlx::query(LOOKUP)
                .bind(token)
                .fetch_optional(&pool)
                .await
                .map_err(LiteLlmError)?;
            match row {
                None => Ok(Verdict::Unknown),
                Some(row) => Ok(Key::from_row(&row)
                    .map_err(LiteLlmError)?
                    .verdict(SystemTime::now())),
            }
        })
    }
}

/// A row, as read.
struct Key {
    info: KeyInfo,
    blocked: bool,
}

impl Key {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let expires: Option<f64> = row.try_get("expires")?;
        Ok(Self {
            info: KeyInfo {
                key_alias: row.try_get("key_alias")?,
                user_id: row.try_get("user_id")?,
                team_id: row.try_get("team_id")?,
                organization_id: row.try_get("organization_id")?,
                models: row
                    .try_get::<Option<Vec<String>>, _>("models")?
                    .unwrap_or_default(),
                metadata: row
                    .try_get::<Option<Value>, _>("metadata")?
                    .unwrap_or(Value::Null),
                expires: expires.and_then(epoch_seconds),
                spend: row.try_get::<Option<f64>, _>("spend")?.unwrap_or_default(),
                max_budget: row.try_get("max_budget")?,
            },
            blocked: row.try_get::<Option<bool>, _>("blocked")?.unwrap_or(false),
        })
    }

    fn verdict(self, now: SystemTime) -> Verdict<KeyInfo> {
        let expired = self.info.expires.is_some_and(|expires| expires <= now);
        let over_budget = self
            .info
            .max_budget
            .is_some_and(|budget| self.info.spend >= budget);
        if self.blocked || expired || over_budget {
            Verdict::Denied
        } else {
            Verdict::Valid(self.info)
        }
    }
}

/// A Postgres epoch (possibly `±infinity`) as a point in time; `infinity` is "never".
fn epoch_seconds(seconds: f64) -> Option<SystemTime> {
    if seconds == f64::INFINITY {
        return None;
    }
    let magnitude = Duration::try_from_secs_f64(seconds.abs()).unwrap_or(Duration::MAX);
    Some(if seconds >= 0.0 {
        UNIX_EPOCH.checked_add(magnitude).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    })
}

fn hex(digest: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    digest
        .iter()
        .flat_map(|byte| {
            [
                DIGITS[usize::from(byte >> 4)],
                DIGITS[usize::from(byte & 0xf)],
            ]
        })
        .map(char::from)
        .collect()
}

/// A LiteLLM virtual key that may be used: the identity [`LiteLlmKeys`] answers with.
///
/// The key itself, its digest and LiteLLM's `key_name` (which holds the key's last characters) are left out.
///
/// ```
/// use http::Request;
/// use tower_mcp_auth::{validators::KeyInfo, Authenticated};
///
/// fn team(req: &Request<()>) -> Option<&str> {
///     req.extensions().get::<Authenticated<KeyInfo>>()?.identity().team_id.as_deref()
/// }
/// # assert_eq!(team(&Request::new(())), None);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key's human-readable alias.
    pub key_alias: Option<String>,
    /// The user the key belongs to.
    pub user_id: Option<String>,
    /// The team the key belongs to.
    pub team_id: Option<String>,
    /// The organization the key belongs to.
    pub organization_id: Option<String>,
    /// The models the key may use; empty means all.
    pub models: Vec<String>,
    /// The key's free-form metadata.
    pub metadata: Value,
    /// When the key expires, if it does.
    pub expires: Option<SystemTime>,
    /// What the key has spent so far.
    pub spend: f64,
    /// The key's budget, if it has one.
    pub max_budget: Option<f64>,
}

impl KeyInfo {
    /// When the key expires, for [`CacheBuilder::expiry`](super::CacheBuilder::expiry).
    ///
    /// ```
    /// use tower_mcp_auth::validators::KeyInfo;
    ///
    /// assert_eq!(KeyInfo::default().expires_at(), None);
    /// ```
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires
    }
}

/// The key table could not be read: the database is unreachable, the pool timed out, or the query failed.
/// The layer answers 503; a lookup never turns an outage into `Unknown`.
///
/// ```
/// use tower_mcp_auth::validators::LiteLlmError;
///
/// fn is_outage(err: &LiteLlmError) -> bool {
///     matches!(err.get_ref(), sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
/// }
/// # let _ = is_outage;
/// ```
pub struct LiteLlmError(sqlx::Error);

impl LiteLlmError {
    /// The sqlx error.
    pub fn get_ref(&self) -> &sqlx::Error {
        &self.0
    }
}

impl fmt::Display for LiteLlmError {
    // sqlx's messages name the failure, never bound parameters, so they are safe to show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LiteLLM key table lookup failed: {}", self.0)
    }
}

impl fmt::Debug for LiteLlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LiteLlmError").field(&self.0).finish()
    }
}

impl Error for LiteLlmError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(blocked: bool, expires: Option<SystemTime>, spend: f64, max_budget: Option<f64>) -> Key {
        Key {
            info: KeyInfo {
                expires,
                spend,
                max_budget,
                ..KeyInfo::default()
            },
            blocked,
        }
    }

    #[test]
    fn rules() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let past = Some(now - Duration::from_secs(1));
        let future = Some(now + Duration::from_secs(1));
        assert!(matches!(
            key(false, None, 0.0, None).verdict(now),
            Verdict::Valid(_)
        ));
        assert!(matches!(
            key(false, future, 9.9, Some(10.0)).verdict(now),
            Verdict::Valid(_)
        ));
        assert_eq!(key(true, None, 0.0, None).verdict(now), Verdict::Denied);
        assert_eq!(key(false, past, 0.0, None).verdict(now), Verdict::Denied);
        assert_eq!(
            key(false, Some(now), 0.0, None).verdict(now),
            Verdict::Denied
        );
        assert_eq!(
            key(false, None, 10.0, Some(10.0)).verdict(now),
            Verdict::Denied
        );
        assert_eq!(
            key(false, None, 0.0, Some(0.0)).verdict(now),
            Verdict::Denied
        );
    }

    #[test]
    fn token_is_litellm_hash() {
        // hashlib.sha256(b"sk-1234").hexdigest()
        assert_eq!(
            hex(&sha256("sk-1234")),
            "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
        );
    }

    #[test]
    fn epochs() {
        assert_eq!(epoch_seconds(f64::INFINITY), None);
        assert_eq!(epoch_seconds(f64::NEG_INFINITY), Some(UNIX_EPOCH));
        assert_eq!(
            epoch_seconds(1.5),
            Some(UNIX_EPOCH + Duration::from_millis(1_500))
        );
        assert_eq!(
            epoch_seconds(-2.0),
            Some(UNIX_EPOCH - Duration::from_secs(2))
        );
    }
}
