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

/// `--key KEY[=NAME,...]`: the list follows the last `=` when every name in it is an upstream; a key whose
/// text after its last `=` is not such a list is refused rather than cut there (a trailing `=`, as in base64
/// padding, belongs to the key). Errors never repeat the key.
fn key_flag<'a>(entry: &'a str, upstreams: &[&str]) -> Result<(&'a str, Upstreams), String> {
    let Some((key, list)) = entry
        .rsplit_once('=')
        .filter(|(key, list)| !key.is_empty() && !list.is_empty())
    else {
        return Ok((entry, Upstreams::all()));
    };
    let names: Vec<&str> = list.split(',').map(str::trim).collect();
    if !names
        .iter()
        .all(|n| upstreams.iter().any(|u| u.eq_ignore_ascii_case(n)))
    {
        // The text after '=' may be the tail of the key: never repeat it.
        return Err(
            "--key: what follows the last '=' does not name upstreams (KEY=NAME,...); a key is never cut \
             at '=': give a key containing '=' with the list of its upstreams, or in a key file"
                .to_owned(),
        );
    }
    Ok((key, Upstreams::only(names)))
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

    /// Static keys answer at once, and LiteLLM's table for its master key and credentials not shaped like its
    /// keys; that also lets the auth layer drop a second gateway key sent as a bearer beside the first.
    fn validate_now(&self, credential: &str) -> Option<Result<Verdict<KeyIdentity>, BoxError>> {
        match self {
            Self::Static(keys) => keys
                .validate_now(credential)
                .map(|answer| answer.map_err(|never| match never {})),
            #[cfg(feature = "postgres")]
            Self::LiteLlm(keys) => keys.validate_now(credential).map(|answer| {
                answer
                    .map(|verdict| verdict.map(litellm_identity))
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
                let lookup = keys.validate(credential);
                Box::pin(async move {
                    let verdict = lookup.await.map_err(BoxError::from)?;
                    Ok(verdict.map(litellm_identity))
                })
            }
        }
    }
}

/// A LiteLLM key's identity: its alias or user, and the upstreams LiteLLM grants it (every one for the master).
#[cfg(feature = "postgres")]
fn litellm_identity(info: tower_mcp_auth::validators::KeyInfo) -> KeyIdentity {
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
}
