//! `LiteLlmKeys`: the virtual keys of an existing LiteLLM deployment, read from its Postgres tables.

mod access;
mod watch;

use std::{
    error::Error,
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::future::BoxFuture;
use serde_json::Value;
use sqlx::{
    postgres::{PgPool, PgPoolOptions, PgRow},
    Row,
};

use subtle::ConstantTimeEq;

pub use self::watch::LiteLlmRevocations;

use self::access::{Access, ConfigServers, Server};
use crate::{
    permissions::{UpstreamAccess, Upstreams},
    secret::sha256,
    validate::{Validator, Verdict},
    Presented,
};

/// LiteLLM issues only keys with this prefix, and refuses any other before looking it up.
const KEY_PREFIX: &str = "sk-";

/// The key's row, with its object permission, its team and the team's object permission: one prepared
/// statement. `expires` comes back as seconds since the epoch so that no date-time crate is needed (Prisma
/// stores `DateTime` as UTC in `timestamp(3)`).
const LOOKUP: &str = r#"SELECT k.key_alias, k.user_id, k.team_id, k.organization_id, k.models, k.metadata,
       EXTRACT(EPOCH FROM k.expires)::double precision AS expires, k.spend, k.max_budget, k.blocked,
       k.allowed_routes, k.rpm_limit,
       kp.mcp_servers AS key_mcp_servers, kp.mcp_access_groups AS key_mcp_access_groups,
       kp.mcp_tool_permissions AS key_mcp_tool_permissions, kp.blocked_tools AS key_blocked_tools,
       t.team_id AS team_found, t.blocked AS team_blocked, t.spend AS team_spend,
       t.max_budget AS team_max_budget, t.rpm_limit AS team_rpm_limit,
       tp.mcp_servers AS team_mcp_servers, tp.mcp_access_groups AS team_mcp_access_groups,
       tp.mcp_tool_permissions AS team_mcp_tool_permissions, tp.blocked_tools AS team_blocked_tools
  FROM "LiteLLM_VerificationToken" k
  LEFT JOIN "LiteLLM_ObjectPermissionTable" kp ON kp.object_permission_id = k.object_permission_id
  LEFT JOIN "LiteLLM_TeamTable" t ON t.team_id = k.team_id
  LEFT JOIN "LiteLLM_ObjectPermissionTable" tp ON tp.object_permission_id = t.object_permission_id
 WHERE k.token = $1"#;

/// The MCP servers a key's permissions name (by id or access group), and those open to every key.
const SERVERS: &str = r#"SELECT server_id, server_name, alias, mcp_access_groups, allow_all_keys
  FROM "LiteLLM_MCPServerTable"
 WHERE (approval_status IS NULL OR approval_status = 'active')
   AND (server_id = ANY($1) OR mcp_access_groups && $2 OR allow_all_keys)"#;

/// A rotated key: the key that replaced it, and when the old one stops working.
const ROTATED: &str = r#"SELECT active_token_id, EXTRACT(EPOCH FROM revoke_at)::double precision AS revoke_at
  FROM "LiteLLM_DeprecatedVerificationToken"
 WHERE token = $1"#;

/// A deleted key.
const DELETED: &str =
    r#"SELECT EXISTS (SELECT 1 FROM "LiteLLM_DeletedVerificationToken" WHERE token = $1)"#;

/// A [`Validator`] over LiteLLM's key tables, so that a gateway admits exactly the virtual keys an existing
/// LiteLLM deployment issued, and lets each reach the MCP servers LiteLLM would.
///
/// LiteLLM stores each key as the hex SHA-256 of the key (`token` column); the lookup is by that digest, with
/// prepared, parameterised statements over a connection pool. A credential LiteLLM recognises in any state is
/// never [`Unknown`](Verdict::Unknown), so it can never travel upstream as "the client's own token":
///
/// | presented credential | verdict |
/// |---|---|
/// | the [master key](LiteLlmKeys::master_key), compared by digest | [`Valid`](Verdict::Valid)`(`[`KeyInfo`]`)` with `master` set, every upstream |
/// | does not start with `sk-` (LiteLLM refuses those itself) | [`Unknown`](Verdict::Unknown), no query |
/// | a row, `blocked = true` | [`Denied`](Verdict::Denied) |
/// | a row, `expires` in the past | [`Denied`](Verdict::Denied) |
/// | a row, `max_budget` set and `spend >= max_budget` | [`Denied`](Verdict::Denied) |
/// | a row whose team (`"LiteLLM_TeamTable"`) is blocked, over its budget, or missing | [`Denied`](Verdict::Denied) |
/// | a row whose `allowed_routes` are set and include no MCP route (`mcp_routes`, `/mcp`, `/mcp/…`) | [`Denied`](Verdict::Denied) |
/// | any other row | [`Valid`](Verdict::Valid)`(`[`KeyInfo`]`)`, with the MCP servers it may use |
/// | a rotated key (`"LiteLLM_DeprecatedVerificationToken"`) within its grace (`revoke_at` in the future) | the verdict of the key that replaced it |
/// | a rotated key past its grace | [`Denied`](Verdict::Denied) |
/// | a deleted key (`"LiteLLM_DeletedVerificationToken"`) | [`Denied`](Verdict::Denied) |
/// | an `sk-` credential found nowhere | [`Denied`](Verdict::Denied), unless [`deny_unlisted`](LiteLlmKeys::deny_unlisted)`(false)` |
/// | the database cannot be reached or answers with an error | error (the layer answers 503), never `Unknown` |
///
/// # MCP servers
///
/// [`KeyInfo::upstreams`] is what LiteLLM computes for the key's MCP access, as names the gateway's upstreams
/// must match (LiteLLM's `server_name` or `alias`, lower case):
///
/// 1. the key's object permission (`object_permission_id` → `"LiteLLM_ObjectPermissionTable"`): its
///    `mcp_servers` (server ids from `"LiteLLM_MCPServerTable"`, or names) and the servers carrying one of its
///    `mcp_access_groups`;
/// 2. the same for the key's team; where both list servers, the key gets those in both; where only the team
///    does, the key inherits them; `all-proxy-mcpservers` means every server;
/// 3. plus the servers marked `allow_all_keys`, and those given to [`open_upstreams`](LiteLlmKeys::open_upstreams).
///
/// A key for which neither it nor its team lists a server gets only step 3, as in LiteLLM. Put a
/// [`RequireUpstreamLayer`](crate::permissions::RequireUpstreamLayer) behind the auth layer to enforce it.
/// Not consulted: the key's organization, end-user and agent permissions, tool-level permissions, the key's
/// `permissions` column, and user roles (LiteLLM's proxy admins see every server; give admins the master key
/// or a key with `all-proxy-mcpservers`). The tables are found through the connection's `search_path`; the
/// pool is yours, so enable sqlx's TLS features in your own manifest if the database needs TLS.
///
/// The `rpm_limit` of the key and of its team are read into [`KeyInfo::rpm_limit`] and
/// [`KeyInfo::team_rpm_limit`] for a gateway to enforce (the `mcp-gateway` binary does); this crate counts no
/// requests.
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
    master: Option<[u8; 32]>,
    deny_unlisted: bool,
    open: Upstreams,
    config_servers: Arc<ConfigServers>,
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
        Self {
            pool,
            master: None,
            deny_unlisted: true,
            open: Upstreams::only::<_, &str>([]),
            config_servers: Arc::default(),
        }
    }

    /// Admits LiteLLM's master key (`LITELLM_MASTER_KEY`) as [`KeyInfo::master`], with every upstream. Only
    /// its SHA-256 digest is kept, and a presented credential is compared with it in constant time.
    ///
    /// ```no_run
    /// # use tower_mcp_auth::validators::LiteLlmKeys;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_mcp_auth::validators::LiteLlmError> {
    /// let master = std::env::var("LITELLM_MASTER_KEY").unwrap();
    /// let keys = LiteLlmKeys::connect_lazy("postgres://litellm@127.0.0.1/litellm")?.master_key(&master);
    /// # let _ = keys;
    /// # Ok(())
    /// # }
    /// ```
    pub fn master_key(mut self, key: &str) -> Self {
        self.master = Some(sha256(key));
        self
    }

    /// Whether a credential shaped like a LiteLLM key (`sk-…`) that no table knows is
    /// [`Denied`](Verdict::Denied) (the default) or [`Unknown`](Verdict::Unknown).
    ///
    /// The default keeps a gateway-shaped secret (a key deleted without a trace, a key of another deployment, a
    /// mistyped key) from ever being forwarded to a third party as the client's own token on a passthrough
    /// route. Turn it off only if upstream OAuth tokens may start with `sk-`.
    pub fn deny_unlisted(mut self, deny: bool) -> Self {
        self.deny_unlisted = deny;
        self
    }

    /// Upstreams every admitted key may use, beside those LiteLLM marks `allow_all_keys`: for MCP servers the
    /// gateway configures itself rather than in LiteLLM's server table.
    pub fn open_upstreams(mut self, upstreams: Upstreams) -> Self {
        self.open = upstreams;
        self
    }

    /// The ids LiteLLM gives the MCP servers of its config file ([`config_server_id`]), each with the name the
    /// gateway serves that server under: LiteLLM stores a permission for such a server as its id, which then
    /// means that upstream.
    ///
    /// ```no_run
    /// # use tower_mcp_auth::validators::{config_server_id, LiteLlmKeys};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_mcp_auth::validators::LiteLlmError> {
    /// let url = "https://api.githubcopilot.com/mcp";
    /// let id = config_server_id("github", url, "http", Some("bearer_token"), None);
    /// let keys = LiteLlmKeys::connect_lazy("postgres://litellm@127.0.0.1/litellm")?
    ///     .config_server_ids([(id, "github".to_owned())]);
    /// # let _ = keys;
    /// # Ok(())
    /// # }
    /// ```
    pub fn config_server_ids(mut self, ids: impl IntoIterator<Item = (String, String)>) -> Self {
        self.config_servers = Arc::new(ids.into_iter().collect());
        self
    }

    /// The identity of the master key.
    fn master_identity() -> KeyInfo {
        KeyInfo {
            key_alias: Some("litellm-master-key".to_owned()),
            master: true,
            upstreams: Upstreams::all(),
            ..KeyInfo::default()
        }
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
            .field("master_key", &self.master.is_some())
            .field("deny_unlisted", &self.deny_unlisted)
            .field("open_upstreams", &self.open)
            .field("config_servers", &self.config_servers.len())
            .finish_non_exhaustive()
    }
}

impl Validator for LiteLlmKeys {
    type Identity = KeyInfo;
    type Error = LiteLlmError;
    type Future = BoxFuture<'static, Result<Verdict<KeyInfo>, LiteLlmError>>;

    /// The master key and credentials not shaped like LiteLLM keys are answered without a query, so a bearer
    /// beside a key that is an upstream's OAuth token is ruled out at once (and may pass through).
    fn validate_now(&self, credential: &str) -> Option<Result<Verdict<KeyInfo>, LiteLlmError>> {
        self.answer_at_once(&Presented::new(credential)).map(Ok)
    }

    fn validate_presented_now(
        &self,
        credential: &Presented<'_>,
    ) -> Option<Result<Verdict<KeyInfo>, LiteLlmError>> {
        self.answer_at_once(credential).map(Ok)
    }

    fn validate(&self, credential: &str) -> Self::Future {
        let presented = Presented::new(credential);
        if let Some(answer) = self.validate_presented_now(&presented) {
            return Box::pin(std::future::ready(answer));
        }
        let token = hex(presented.sha256());
        let this = self.clone();
        Box::pin(async move {
            this.lookup(token, SystemTime::now())
                .await
                .map_err(LiteLlmError)
        })
    }
}

impl LiteLlmKeys {
    /// What needs no query: the master key, and credentials that are not shaped like LiteLLM keys.
    fn answer_at_once(&self, credential: &Presented<'_>) -> Option<Verdict<KeyInfo>> {
        if self
            .master
            .is_some_and(|master| bool::from(master.ct_eq(credential.sha256())))
        {
            return Some(Verdict::Valid(Self::master_identity()));
        }
        (!credential.as_str().starts_with(KEY_PREFIX)).then_some(Verdict::Unknown)
    }

    /// The verdict for the key whose digest is `token`, looking in the live table, then among rotated and
    /// deleted keys.
    async fn lookup(
        &self,
        token: String,
        now: SystemTime,
    ) -> Result<Verdict<KeyInfo>, sqlx::Error> {
        if let Some(verdict) = self.live(&token, now).await? {
            return Ok(verdict);
        }
        let rotated = sqlx::query(ROTATED)
            .bind(&token)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = rotated {
            let active: String = row.try_get("active_token_id")?;
            let revoke_at: Option<f64> = row.try_get("revoke_at")?;
            let in_grace = revoke_at
                .and_then(epoch_seconds)
                .is_none_or(|revoke_at| revoke_at > now);
            if !in_grace {
                return Ok(Verdict::Denied);
            }
            // Within its grace the old key stands for the key that replaced it; if that one is gone too, the
            // old key is still one of LiteLLM's, refused.
            return Ok(self.live(&active, now).await?.unwrap_or(Verdict::Denied));
        }
        let deleted: bool = sqlx::query_scalar(DELETED)
            .bind(&token)
            .fetch_one(&self.pool)
            .await?;
        Ok(if deleted || self.deny_unlisted {
            Verdict::Denied
        } else {
            Verdict::Unknown
        })
    }

    /// The verdict for a row of the live table, or `None` when there is none.
    async fn live(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Option<Verdict<KeyInfo>>, sqlx::Error> {
        let Some(row) = sqlx::query(LOOKUP)
            .bind(token)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut key = Key::from_row(&row)?;
        if !key.usable(now) {
            return Ok(Some(Verdict::Denied));
        }
        let (ids, groups) = key.access.lookups();
        let servers = sqlx::query(SERVERS)
            .bind(ids)
            .bind(groups)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Server::read)
            .collect::<Result<Vec<_>, _>>()?;
        key.info.upstreams = key
            .access
            .upstreams(&servers, &self.config_servers, &self.open);
        Ok(Some(Verdict::Valid(key.info)))
    }
}

/// A row, as read.
struct Key {
    info: KeyInfo,
    blocked: bool,
    access: Access,
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
                rpm_limit: row.try_get("rpm_limit")?,
                team_rpm_limit: row.try_get("team_rpm_limit")?,
                master: false,
                upstreams: Upstreams::only::<_, &str>([]),
            },
            blocked: row.try_get::<Option<bool>, _>("blocked")?.unwrap_or(false),
            access: Access::read(row)?,
        })
    }

    /// Whether LiteLLM would let the key be used now: not blocked, not expired, within its budget, its team
    /// usable, MCP among its routes.
    fn usable(&self, now: SystemTime) -> bool {
        let expired = self.info.expires.is_some_and(|expires| expires <= now);
        let over_budget = self
            .info
            .max_budget
            .is_some_and(|budget| self.info.spend >= budget);
        !(self.blocked || expired || over_budget || self.access.refused())
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

/// The id LiteLLM gives a server of its config file (`_generate_stable_server_id`): the first 32 hex digits of
/// the SHA-256 of `name|url|transport|auth_type|alias`, an absent `auth_type` or `alias` written as nothing.
///
/// ```
/// use tower_mcp_auth::validators::config_server_id;
///
/// let id = config_server_id("github", "https://api.githubcopilot.com/mcp", "http", None, None);
/// assert_eq!(id.len(), 32);
/// ```
pub fn config_server_id(
    name: &str,
    url: &str,
    transport: &str,
    auth_type: Option<&str>,
    alias: Option<&str>,
) -> String {
    let fields = format!(
        "{name}|{url}|{transport}|{}|{}",
        auth_type.unwrap_or_default(),
        alias.unwrap_or_default()
    );
    hex(&sha256(&fields))[..32].to_owned()
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
    /// The key's requests per minute (`rpm_limit`), if LiteLLM limits it.
    pub rpm_limit: Option<i64>,
    /// The requests per minute of the key's team (the team's `rpm_limit`), shared by every key of the team.
    pub team_rpm_limit: Option<i64>,
    /// Whether this is LiteLLM's master key ([`LiteLlmKeys::master_key`]).
    pub master: bool,
    /// The MCP servers (gateway upstreams) the key may use, as LiteLLM computes them.
    pub upstreams: Upstreams,
}

impl UpstreamAccess for KeyInfo {
    fn may_use(&self, upstream: &str) -> bool {
        self.master || self.upstreams.allows(upstream)
    }

    fn tools(&self, upstream: &str) -> Option<crate::permissions::Tools> {
        if self.master {
            return Some(crate::permissions::Tools::all());
        }
        self.upstreams.tools(upstream).cloned()
    }
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
            access: Access {
                allowed_routes: Vec::new(),
                key: Default::default(),
                team: access::Team::None,
            },
        }
    }

    impl Key {
        fn verdict(self, now: SystemTime) -> Verdict<KeyInfo> {
            if self.usable(now) {
                Verdict::Valid(self.info)
            } else {
                Verdict::Denied
            }
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
