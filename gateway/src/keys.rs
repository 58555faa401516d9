//! The gateway's key store: static keys (`--key`, `--key-file`, `MCP_GATEWAY_KEYS`, the config's
//! `master_key`), or LiteLLM's key table when the config names a `database_url` (feature `postgres`). Either
//! way the identity says which upstreams the key may use ([`KeyIdentity`]): `--key KEY=NAME,...` and key-file
//! lines `KEY=NAME,... [identity]`, or what LiteLLM grants the key.
//!
//! LiteLLM's table is read through the crate's `Cache`, kept honest by a `LiteLlmRevocations` watcher sharing a
//! `TrustGate` with it: every replica refuses a key revoked in the table within the bound (2 s), polling the
//! tables every quarter of it, and at once through `LISTEN`/`NOTIFY` when `--revocation-listen` names the
//! channel of `sql/litellm_revocation_notify.sql`. While the database cannot be reached for longer than the
//! bound, cached admissions stop counting and keys are refused with 503; `/readyz` answers 503 then too. The
//! pool's wait for a connection ([`ACQUIRE_TIMEOUT`]) is shorter than the layer's validation timeout, so an
//! outage is the store's error (503), never a request held for the layer's full timeout.

use crate::stage::{Answers, Next, Step};
use std::{fmt::Write as _, sync::Arc, time::Duration};

use axum::{extract::Request, http::StatusCode, response::Response};
use futures_util::future::{BoxFuture, Either};
use tower_mcp_auth::{
    permissions::{KeyIdentity, Tools, Upstreams},
    validators::StaticKeys,
    Authenticated, BoxError, Fingerprint, OAuthPassthrough, Presented, Validator, Verdict,
};

use super::{json_error, ops::ReadinessProbe, resource_server::Caller, Options};

/// Any of the key stores the gateway can use, with the caller's identity and permitted upstreams.
#[derive(Clone)]
pub enum KeyStore {
    Static(Arc<StaticKeys<KeyIdentity>>),
    #[cfg(feature = "postgres")]
    LiteLlm(database::LiteLlm),
}

/// How long a lookup waits for a database connection: below the layer's validation timeout.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
const _: () =
    assert!(ACQUIRE_TIMEOUT.as_secs() < tower_mcp_auth::DEFAULT_VALIDATION_TIMEOUT.as_secs());

/// `--key KEY[=GRANT,...]`: the list follows the last `=` when every grant in it is an upstream (`SERVER`, all
/// of its tools) or one of its tools (`SERVER/TOOL`); a key whose text after its last `=` is not such a list is
/// refused rather than cut there (a trailing `=`, as in base64 padding, belongs to the key). Errors never repeat
/// the key.
fn key_flag<'a>(entry: &'a str, upstreams: &[&str]) -> Result<(&'a str, Upstreams), String> {
    let Some((key, list)) = entry
        .rsplit_once('=')
        .filter(|(key, list)| !key.is_empty() && !list.is_empty())
    else {
        return Ok((entry, Upstreams::all()));
    };
    let mut grants = Vec::new();
    for grant in list.split(',').map(str::trim) {
        let (server, tools) = match grant.split_once('/') {
            Some((server, tool)) if !tool.is_empty() => (server, Tools::only([tool])),
            Some(_) => ("", Tools::all()),
            None => (grant, Tools::all()),
        };
        if !upstreams.iter().any(|u| u.eq_ignore_ascii_case(server)) {
            // The text after '=' may be the tail of the key: never repeat it.
            return Err(
                "--key: what follows the last '=' does not name upstreams (KEY=SERVER[/TOOL],...); a key is \
                 never cut at '=': give a key containing '=' with the list of its upstreams, or in a key file"
                    .to_owned(),
            );
        }
        grants.push((server, tools));
    }
    Ok((key, Upstreams::grants(grants)))
}

/// A credential no store holds, sent by `/readyz` to see whether the store answers.
const PROBE: &str = "sk-readiness-probe-not-a-key";

impl KeyStore {
    /// The key store `options` describe, or why there is none.
    pub fn from_options(options: &Options) -> Result<Self, String> {
        if let Some(url) = &options.database_url {
            return Self::database(url, Upstreams::only(options.open_upstreams()), options);
        }
        // Key files and `MCP_GATEWAY_KEYS` in the key-file format; each file checked on its own first, so an
        // error names the right file and line.
        let mut entries = String::new();
        for entry in &options.env_keys {
            // Already checked by the library's rules for keys in the environment: no server lists.
            let _ = writeln!(entries, "{entry}");
        }
        for path in &options.key_files {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--key-file {}: {e}", path.display()))?;
            StaticKeys::<KeyIdentity>::parse(&text)
                .map_err(|e| format!("--key-file {}: {e}", path.display()))?;
            entries.push_str(&text);
            entries.push('\n');
        }
        let mut keys =
            StaticKeys::<KeyIdentity>::parse(&entries).map_err(|e| format!("gateway keys: {e}"))?;
        // `--key` and `master_key` are inserted as they are: a key is taken whole or refused, never cut at a
        // character the text format would read as a separator.
        let upstreams: Vec<&str> = options.servers.iter().map(|s| s.name()).collect();
        let mut add = |key: &str, allowed: Upstreams, source: &str| -> Result<(), String> {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "{source}: a key must be visible ASCII without spaces (it is taken whole, never cut)"
                ));
            }
            if matches!(keys.validate_now(key), Some(Ok(Verdict::Valid(_)))) {
                return Err(format!("{source}: the key is given twice"));
            }
            keys.insert(
                key,
                KeyIdentity::new(format!("key-{}", Fingerprint::of(key)), allowed),
            );
            Ok(())
        };
        for entry in &options.keys {
            let (key, allowed) = key_flag(entry, &upstreams)?;
            add(key, allowed, "--key")?;
        }
        if let Some(master) = &options.master_key {
            add(master, Upstreams::all(), "general_settings.master_key")?;
        }
        if keys.is_empty() {
            return Err(
                "no gateway keys: pass --key KEY, --key-file FILE or set MCP_GATEWAY_KEYS"
                    .to_owned(),
            );
        }
        Ok(Self::Static(Arc::new(keys)))
    }

    /// LiteLLM's key table; `open` are the upstreams every key may use (LiteLLM's `allow_all_keys`), the
    /// master key, when there is one, is admitted as LiteLLM admits it (compared by digest), and the ids LiteLLM
    /// gives the config file's servers mean those upstreams. Starts the revocation watcher, listening on
    /// `--revocation-listen`'s channel too when given.
    #[cfg(feature = "postgres")]
    fn database(url: &str, open: Upstreams, options: &Options) -> Result<Self, String> {
        database::LiteLlm::start(url, open, options).map(Self::LiteLlm)
    }

    #[cfg(not(feature = "postgres"))]
    fn database(_: &str, _: Upstreams, _: &Options) -> Result<Self, String> {
        Err(
            "general_settings.database_url needs the gateway built with --features postgres"
                .to_owned(),
        )
    }

    /// A probe for `/readyz`: static keys answer a lookup; LiteLLM's table is ready while its watcher keeps
    /// the trust gate open (it has read the tables within the bound), which costs no query once the database
    /// has been reached.
    pub fn readiness(&self) -> ReadinessProbe {
        match self {
            Self::Static(_) => {
                let store = self.clone();
                Arc::new(move || {
                    let lookup = store.validate(PROBE);
                    Box::pin(async move { lookup.await.is_ok() })
                })
            }
            #[cfg(feature = "postgres")]
            Self::LiteLlm(keys) => {
                let keys = keys.clone();
                Arc::new(move || {
                    let keys = keys.clone();
                    Box::pin(async move { keys.ready().await })
                })
            }
        }
    }
}

/// Middleware inside authentication: a bearer sent beside an admitting credential is forwarded upstream as
/// the client's own token only when the key store does not know it. The auth layer drops one it recognises
/// at once (static keys, or a key LiteLLM's cache has seen); this asks the store about the rest, so a second
/// live key never travels upstream, cached or not. A store that cannot answer fails closed (503).
pub fn drop_second_key<S: Answers>(
    store: &KeyStore,
    mut request: Request,
    next: Next<'_, S>,
) -> Either<Step<S>, BoxFuture<'static, Response>> {
    let second = request
        .extensions()
        .get::<Authenticated<Caller>>()
        .and(request.extensions().get::<OAuthPassthrough>())
        .map(|token| store.validate(token.expose_token()));
    let Some(lookup) = second else {
        return Either::Left(next.pass(request));
    };
    let next = next.owned();
    Either::Right(Box::pin(async move {
        match lookup.await {
            Ok(Verdict::Unknown) => {}
            Ok(_) => {
                request.extensions_mut().remove::<OAuthPassthrough>();
            }
            Err(_) => {
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the key store does not answer",
                )
            }
        }
        next.run(request).await
    }))
}

impl Validator for KeyStore {
    type Identity = KeyIdentity;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Verdict<KeyIdentity>, BoxError>>;

    /// Static keys answer at once, and LiteLLM's cache does for keys it has seen; this also lets the auth layer
    /// drop a second gateway key sent as a bearer beside the first.
    fn validate_now(&self, credential: &str) -> Option<Result<Verdict<KeyIdentity>, BoxError>> {
        self.validate_presented_now(&Presented::new(credential))
    }

    /// [`Self::validate_now`], the credential's digest shared with the auth layer (see [`Presented`]).
    fn validate_presented_now(
        &self,
        credential: &Presented<'_>,
    ) -> Option<Result<Verdict<KeyIdentity>, BoxError>> {
        match self {
            Self::Static(keys) => keys
                .validate_presented_now(credential)
                .map(|answer| answer.map_err(|never| match never {})),
            #[cfg(feature = "postgres")]
            Self::LiteLlm(keys) => keys.cache.validate_presented_now(credential).map(|answer| {
                answer
                    .map(|v| v.map(|info| database::named(credential.sha256(), info)))
                    .map_err(BoxError::from)
            }),
        }
    }

    fn validate(&self, credential: &str) -> Self::Future {
        match self {
            Self::Static(keys) => {
                let lookup = keys.validate(credential);
                Box::pin(async move { lookup.await.map_err(|never| match never {}) })
            }
            #[cfg(feature = "postgres")]
            Self::LiteLlm(keys) => {
                let lookup = keys.cache.validate(credential);
                let digest = database::digest(credential);
                Box::pin(async move {
                    let verdict = lookup.await.map_err(BoxError::from)?;
                    Ok(verdict.map(|info| database::named(&digest, info)))
                })
            }
        }
    }
}

#[cfg(feature = "postgres")]
mod database {
    use std::{
        num::NonZeroU32,
        sync::{
            atomic::{AtomicBool, Ordering},
            Arc,
        },
        time::Duration,
    };

    use sha2::{Digest, Sha256};
    use sqlx::postgres::{PgPool, PgPoolOptions};
    use tower_mcp_auth::{
        permissions::{KeyIdentity, RpmLimits, Upstreams},
        validators::{
            config_server_id, Cache, KeyInfo, LiteLlmKeys, LiteLlmRevocations, TrustGate,
        },
    };

    use super::{Options, ACQUIRE_TIMEOUT};

    /// The revocation bound: a key revoked in the table is refused by every replica within it.
    pub const BOUND: Duration = Duration::from_secs(2);
    /// Connections to the database: lookups of keys not cached, the watcher's poll and its listener.
    const MAX_CONNECTIONS: u32 = 10;

    /// LiteLLM's key table behind the cache, and the gate its watcher keeps open.
    #[derive(Clone)]
    pub struct LiteLlm {
        pub cache: Cache<LiteLlmKeys>,
        gate: TrustGate,
        pool: PgPool,
        /// The revocation watcher, stopped with the last clone of this store (a reload replaces the store).
        _watcher: Arc<Watcher>,
        /// Whether the database has answered once: the gate opens for the bound at start-up, before the
        /// watcher's first poll, which alone must not make a gateway whose database is down ready.
        reached: Arc<AtomicBool>,
    }

    impl LiteLlm {
        /// Connects lazily to `url` and spawns the watcher (needs a Tokio runtime).
        pub fn start(url: &str, open: Upstreams, options: &Options) -> Result<Self, String> {
            let pool = PgPoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy(url)
                // The URL may hold a password: never repeat it.
                .map_err(|_| {
                    "general_settings.database_url: not a usable PostgreSQL URL".to_owned()
                })?;
            let ids = options.servers.iter().flat_map(|server| {
                let fields = server.litellm.iter();
                fields.flat_map(move |f| {
                    let ids: Vec<String> = match &f.server_id {
                        Some(pinned) => vec![pinned.clone()],
                        None => f
                            .transports()
                            .into_iter()
                            .map(|transport| {
                                config_server_id(
                                    &f.name,
                                    &f.url,
                                    transport,
                                    f.auth_type.as_deref(),
                                    f.alias.as_deref(),
                                )
                            })
                            .collect(),
                    };
                    ids.into_iter()
                        .map(move |id| (id, server.name().to_owned()))
                })
            });
            let keys = LiteLlmKeys::new(pool.clone())
                .open_upstreams(open)
                .config_server_ids(ids.collect::<Vec<_>>());
            let keys = match options.master_key.as_deref() {
                Some(master) => keys.master_key(master),
                None => keys,
            };
            let gate = TrustGate::new(BOUND);
            let cache = Cache::builder(keys)
                .expiry(KeyInfo::expires_at)
                .trust_gate(gate.clone())
                .build();
            let watcher = LiteLlmRevocations::new(pool.clone(), gate.clone()).sink(cache.clone());
            let watcher = match options.revocation_listen.as_deref() {
                Some(channel) => watcher.listen(channel),
                None => watcher,
            };
            Ok(Self {
                _watcher: Arc::new(Watcher(watcher.spawn())),
                cache,
                gate,
                pool,
                reached: Arc::new(AtomicBool::new(false)),
            })
        }

        /// The watcher has read the tables within the bound, and the database has answered at least once.
        pub async fn ready(&self) -> bool {
            if !self.gate.is_trusted() {
                return false;
            }
            if !self.reached.load(Ordering::Relaxed) && self.pool.acquire().await.is_ok() {
                self.reached.store(true, Ordering::Relaxed);
            }
            self.reached.load(Ordering::Relaxed)
        }
    }

    /// The revocation watcher's task, aborted when dropped.
    struct Watcher(tokio::task::JoinHandle<()>);

    impl Drop for Watcher {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    /// The key's SHA-256, LiteLLM's `token` column.
    pub fn digest(credential: &str) -> [u8; 32] {
        Sha256::digest(credential.as_bytes()).into()
    }

    /// A key's identity: its alias (else its user, else `litellm-key`, or `litellm-master` for the master key)
    /// for people to read, and the first 16 hex digits of its digest, which is what makes it unique: two keys
    /// with the same alias or user, or none, are different callers for sessions and in the access log.
    pub fn named(digest: &[u8; 32], info: KeyInfo) -> KeyIdentity {
        let upstreams = if info.master {
            Upstreams::all()
        } else {
            info.upstreams.clone()
        };
        let display = info.key_alias.or(info.user_id).unwrap_or_else(|| {
            if info.master {
                "litellm-master".to_owned()
            } else {
                "litellm-key".to_owned()
            }
        });
        let prefix: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        // LiteLLM's limits, as the gateway enforces them (`limits`): a limit that is not a positive number of
        // requests per minute is none, as in LiteLLM.
        let rpm = |limit: Option<i64>| {
            limit
                .and_then(|rpm| u32::try_from(rpm.min(i64::from(u32::MAX))).ok())
                .and_then(NonZeroU32::new)
        };
        let team = info.team_id.zip(rpm(info.team_rpm_limit));
        let limits = RpmLimits::new(rpm(info.rpm_limit), team);
        KeyIdentity::new(format!("{display}#{prefix}"), upstreams).with_rpm_limits(limits)
    }
}
