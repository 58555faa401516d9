//! The gateway's key store: static keys (`--key`, `--key-file`, `MCP_GATEWAY_KEYS`, the config's
//! `master_key`), or LiteLLM's key table when the config names a `database_url` (feature `postgres`). Either
//! way the identity says which upstreams the key may use ([`KeyIdentity`]): `--key KEY=NAME,...` and key-file
//! lines `KEY=NAME,... [identity]`, or what LiteLLM grants the key.

use std::{fmt::Write as _, sync::Arc};

use futures_util::future::BoxFuture;
use tower_mcp_auth::{
    permissions::{KeyIdentity, Upstreams},
    validators::StaticKeys,
    BoxError, Fingerprint, Validator, Verdict,
};

use super::{ops::ReadinessProbe, Options};

/// Any of the key stores the gateway can use, with the caller's identity and permitted upstreams.
#[derive(Clone)]
pub enum KeyStore {
    Static(Arc<StaticKeys<KeyIdentity>>),
    #[cfg(feature = "postgres")]
    LiteLlm(tower_mcp_auth::validators::LiteLlmKeys),
}

/// A credential no store holds, sent by `/readyz` to see whether the store answers.
const PROBE: &str = "sk-readiness-probe-not-a-key";

impl KeyStore {
    /// The key store `options` describe, or why there is none.
    pub fn from_options(options: &Options) -> Result<Self, String> {
        if let Some(url) = &options.database_url {
            return Self::database(
                url,
                Upstreams::only(options.open_upstreams()),
                options.master_key.as_deref(),
            );
        }
        let mut entries = String::new();
        for key in &options.keys {
            // `KEY=NAME,...`: the list follows the last `=` that has something after it, as in key files.
            let secret = key
                .rsplit_once('=')
                .filter(|(k, list)| !k.is_empty() && !list.is_empty())
                .map_or(key.as_str(), |(k, _)| k);
            let _ = writeln!(entries, "{key} key-{}", Fingerprint::of(secret));
        }
        for entry in &options.env_keys {
            // Already checked by the library's rules for keys in the environment: no server lists.
            let _ = writeln!(entries, "{entry}");
        }
        for path in &options.key_files {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--key-file {}: {e}", path.display()))?;
            // Checked on its own first, so an error names the right file and line.
            StaticKeys::<KeyIdentity>::parse(&text)
                .map_err(|e| format!("--key-file {}: {e}", path.display()))?;
            entries.push_str(&text);
            entries.push('\n');
        }
        let keys =
            StaticKeys::<KeyIdentity>::parse(&entries).map_err(|e| format!("gateway keys: {e}"))?;
        if keys.is_empty() {
            return Err(
                "no gateway keys: pass --key KEY, --key-file FILE or set MCP_GATEWAY_KEYS"
                    .to_owned(),
            );
        }
        Ok(Self::Static(Arc::new(keys)))
    }

    /// LiteLLM's key table; `open` are the upstreams every key may use (LiteLLM's `allow_all_keys`), and the
    /// master key, when there is one, is admitted as LiteLLM admits it (compared by digest).
    #[cfg(feature = "postgres")]
    fn database(url: &str, open: Upstreams, master: Option<&str>) -> Result<Self, String> {
        tower_mcp_auth::validators::LiteLlmKeys::connect_lazy(url)
            .map(|keys| {
                let keys = keys.open_upstreams(open);
                Self::LiteLlm(match master {
                    Some(master) => keys.master_key(master),
                    None => keys,
                })
            })
            // The URL may hold a password: never repeat it.
            .map_err(|_| "general_settings.database_url: not a usable PostgreSQL URL".to_owned())
    }

    #[cfg(not(feature = "postgres"))]
    fn database(_: &str, _: Upstreams, _: Option<&str>) -> Result<Self, String> {
        Err(
            "general_settings.database_url needs the gateway built with --features postgres"
                .to_owned(),
        )
    }

    /// A probe for `/readyz`: the store answers a lookup (whatever its verdict).
    pub fn readiness(&self) -> ReadinessProbe {
        let store = self.clone();
        Arc::new(move || {
            let lookup = store.validate(PROBE);
            Box::pin(async move { lookup.await.is_ok() })
        })
    }
}

impl Validator for KeyStore {
    type Identity = KeyIdentity;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Verdict<KeyIdentity>, BoxError>>;

    /// Static keys answer at once, which also lets the auth layer drop a second gateway key sent as a bearer
    /// beside the first.
    fn validate_now(&self, credential: &str) -> Option<Result<Verdict<KeyIdentity>, BoxError>> {
        match self {
            Self::Static(keys) => keys
                .validate_now(credential)
                .map(|answer| answer.map_err(|never| match never {})),
            #[cfg(feature = "postgres")]
            Self::LiteLlm(_) => None,
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
                let lookup = keys.validate(credential);
                Box::pin(async move {
                    let verdict = lookup.await.map_err(BoxError::from)?;
                    Ok(verdict.map(|info| {
                        let upstreams = if info.master {
                            Upstreams::all()
                        } else {
                            info.upstreams.clone()
                        };
                        let name = info
                            .key_alias
                            .or(info.user_id)
                            .unwrap_or_else(|| "litellm-key".to_owned());
                        KeyIdentity::new(name, upstreams)
                    }))
                })
            }
        }
    }
}
