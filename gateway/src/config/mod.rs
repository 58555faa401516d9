//! The gateway's configuration: one typed, validated model that the command line ([`Cli`]) and the YAML file
//! ([`file`](mod@file)) both produce. Every error names its source — the flag, or the YAML path — and never a secret
//! value; what [`crate::prepare`] receives is already valid.

pub mod file;
mod server;

use std::{fmt, path::PathBuf, time::Duration};

use clap::Parser;
use tower_mcp_auth::validators::StaticKeys;

pub use server::{LiteLlmServer, RouteAccess, Server};

use crate::{
    cli::Cli,
    conn::{self, Limits},
    resource_server::ExchangeSpec,
    sessions::{SessionSecret, PREVIOUS_SECRET_VAR, SECRET_VAR},
};

/// The default listening address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
/// How long the upstream may take to connect and answer with its response head.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request body relayed upstream.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
/// How long a graceful shutdown waits for requests in flight.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The environment variable of extra gateway keys (`KEY [identity]`, separated by commas or newlines).
pub const KEYS_VAR: &str = "MCP_GATEWAY_KEYS";
/// The environment variable of the Redis URL when the config file names none (LiteLLM's name).
pub const REDIS_URL_VAR: &str = "REDIS_URL";

/// Connection limits as a flag or the config file's `gateway_settings` set them; unset ones take the defaults
/// of [`Limits`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LimitSettings {
    pub header_read_timeout: Option<Duration>,
    pub body_read_timeout: Option<Duration>,
    pub max_connections: Option<u32>,
    pub linger_timeout: Option<Duration>,
    pub linger_max_bytes: Option<u64>,
}

impl LimitSettings {
    /// These settings, with `fallback`'s where these have none.
    fn or(self, fallback: Self) -> Self {
        Self {
            header_read_timeout: self.header_read_timeout.or(fallback.header_read_timeout),
            body_read_timeout: self.body_read_timeout.or(fallback.body_read_timeout),
            max_connections: self.max_connections.or(fallback.max_connections),
            linger_timeout: self.linger_timeout.or(fallback.linger_timeout),
            linger_max_bytes: self.linger_max_bytes.or(fallback.linger_max_bytes),
        }
    }

    /// The limits, defaults filled in.
    fn limits(self) -> Limits {
        let default = Limits::default();
        Limits {
            header_read_timeout: self
                .header_read_timeout
                .unwrap_or(default.header_read_timeout),
            body_read_timeout: self.body_read_timeout.unwrap_or(default.body_read_timeout),
            max_connections: self
                .max_connections
                .map_or(default.max_connections, |n| n as usize),
            linger_timeout: self.linger_timeout.unwrap_or(default.linger_timeout),
            linger_max_bytes: self.linger_max_bytes.unwrap_or(default.linger_max_bytes),
        }
    }
}

/// What the gateway was asked to do, validated.
#[derive(Clone)]
pub struct Options {
    /// `HOST:PORT` to listen on.
    pub listen: String,
    /// The public URL, absolute http(s), without a trailing `/`.
    pub public_url: Option<String>,
    /// Key entries `KEY[=NAME,...]` from `--key`.
    pub keys: Vec<String>,
    /// Key entries `KEY [identity]` from `MCP_GATEWAY_KEYS` (server lists are refused there).
    pub env_keys: Vec<String>,
    /// Key files in the static key file format (`key[=NAME,...] [identity]` per line).
    pub key_files: Vec<PathBuf>,
    /// The upstreams, flags first, then the config file's.
    pub servers: Vec<Server>,
    /// Browser origins allowed besides the public URL's.
    pub allow_origins: Vec<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A PEM bundle trusted for upstream TLS besides the platform's roots and `SSL_CERT_FILE`'s.
    pub extra_roots: Option<PathBuf>,
    pub upstream_timeout: Duration,
    pub max_body: usize,
    pub drain_timeout: Duration,
    /// Connection limits (`--header-read-timeout`, ..., or the config file's `gateway_settings`).
    pub limits: Limits,
    /// LiteLLM's key table instead of static keys (config file `general_settings.database_url`).
    pub database_url: Option<String>,
    /// LiteLLM's master key (config file `general_settings.master_key`): a gateway key with static keys, and
    /// the master key of LiteLLM's key table when `database_url` selects it.
    pub master_key: Option<String>,
    /// Where `/metrics` is served instead of the public listener (`--metrics-listen`, else
    /// `general_settings.metrics_listen`).
    pub metrics_listen: Option<String>,
    /// With `database_url`: the PostgreSQL channel to LISTEN on for revocations (`--revocation-listen`).
    pub revocation_listen: Option<String>,
    /// JWT admission on every route: the issuer, and optionally its JWKS URL (else discovered).
    pub jwt_issuer: Option<String>,
    pub jwt_jwks_uri: Option<String>,
    /// The secret MCP session ids are sealed under, shared by every replica ([`crate::SessionSecret`]):
    /// `MCP_GATEWAY_SESSION_SECRET`, else `general_settings.session_secret`; `None` draws one per process.
    pub session_secret: Option<SessionSecret>,
    /// The previous session secret, still accepted during a rotation: `MCP_GATEWAY_SESSION_SECRET_PREVIOUS`,
    /// else `general_settings.session_secret_previous`.
    pub previous_session_secret: Option<SessionSecret>,
    /// Admit JWTs not typed `at+jwt` (`--jwt-allow-any-typ`, `mcp_resource_server.allow_any_typ`).
    pub jwt_allow_any_typ: bool,
    /// Accept `http://` issuers, JWKS URLs and token endpoints beyond loopback (`--allow-insecure-auth-server`).
    pub allow_insecure_auth_server: bool,
    /// Rate limits beyond the upstreams' own, and where they are counted (`gateway_settings.rate_limits`,
    /// `general_settings.redis_url`, else the environment's `REDIS_URL`).
    pub rate_limits: crate::limits::Settings,
    /// Where access lines go (`--access-log`).
    pub access_log: crate::access_log::AccessLog,
    /// Run the demo upstream in the same process.
    pub demo: bool,
    /// Things worth a warning at start-up (such as unknown config fields).
    pub warnings: Vec<String>,
}

impl Options {
    /// Parses the arguments (without the program name), with `env_keys` as the value of `MCP_GATEWAY_KEYS`,
    /// then fills what the flags left open from the `--config` file. `--help` and `--version` come back as the
    /// error text clap renders.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env_keys: Option<String>,
    ) -> Result<Self, String> {
        let cli = Cli::try_parse_from(std::iter::once("mcp-gateway".to_owned()).chain(args))
            .map_err(|e| e.render().to_string())?;
        Self::from_cli(cli, env_keys, &|var| std::env::var(var).ok())
    }

    /// Validates the command line and merges the config file it names; `env` looks up the file's
    /// `os.environ/` references and the token-exchange client credentials.
    pub fn from_cli(
        cli: Cli,
        env_keys: Option<String>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let listen = cli.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        check_listen(&listen, "--listen")?;
        let public_url = cli
            .public_url
            .map(|url| check_public_url(url.trim_end_matches('/')))
            .transpose()?;
        let mut options = Self {
            listen,
            public_url,
            keys: cli.keys,
            env_keys: env_entries(env_keys.as_deref())?,
            key_files: cli.key_files,
            servers: Vec::new(),
            allow_origins: cli.allow_origin,
            tls_cert: cli.tls_cert,
            tls_key: cli.tls_key,
            extra_roots: cli.upstream_ca,
            upstream_timeout: cli.upstream_timeout.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT),
            max_body: cli.max_body.unwrap_or(DEFAULT_MAX_BODY),
            drain_timeout: cli.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            limits: conn::Limits::default(),
            database_url: None,
            master_key: None,
            metrics_listen: cli
                .metrics_listen
                .map(|listen| check_listen(&listen, "--metrics-listen").map(|()| listen))
                .transpose()?,
            revocation_listen: cli.revocation_listen,
            jwt_issuer: cli.jwt_issuer,
            jwt_jwks_uri: cli.jwt_jwks_uri,
            session_secret: secret_from(env, SECRET_VAR)?,
            previous_session_secret: secret_from(env, PREVIOUS_SECRET_VAR)?,
            allow_insecure_auth_server: cli.allow_insecure_auth_server,
            jwt_allow_any_typ: cli.jwt_allow_any_typ,
            rate_limits: crate::limits::Settings::default(),
            access_log: cli.access_log.unwrap_or_default(),
            demo: cli.demo,
            warnings: Vec::new(),
        };
        let mut limits = LimitSettings {
            header_read_timeout: cli.header_read_timeout,
            body_read_timeout: cli.body_read_timeout,
            max_connections: cli.max_connections,
            linger_timeout: cli.linger_timeout,
            linger_max_bytes: cli.linger_max_bytes,
        };
        for upstream in &cli.upstreams {
            let (name, url) = server::pair(upstream, "--upstream", "NAME=URL")?;
            let source = format!("--upstream {name}");
            if options
                .servers
                .iter()
                .any(|s| s.name().eq_ignore_ascii_case(&name))
            {
                return Err(format!(
                    "{source}: the name is given twice (names are compared ignoring case)"
                ));
            }
            options.servers.push(Server::new(&name, &url, source)?);
        }
        if let Some(path) = &cli.config {
            let display = path.display();
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("--config {display}: {e}"))?;
            let file = file::parse(&text, env).map_err(|e| format!("--config {display}: {e}"))?;
            if file.servers.is_empty() {
                return Err(format!(
                    "--config {display}: no upstream is configured (mcp_servers is missing or empty)"
                ));
            }
            limits = limits.or(file.limits);
            options.fill(file);
        }
        options.limits = limits.limits();
        if options.rate_limits.redis_url.is_none() {
            // LiteLLM's name for it.
            options.rate_limits.redis_url = env(REDIS_URL_VAR);
        }
        for name in &cli.passthrough {
            let server = options.server_mut(name, "--passthrough")?;
            server.config = server.config.clone().with_passthrough(true);
        }
        for name in &cli.oauth_delegate {
            let server = options.server_mut(name, "--oauth-delegate")?;
            server.config = server.config.clone().with_passthrough(true);
            server.access.delegate = true;
        }
        for entry in &cli.jwt_required_scope {
            let (name, scope) = server::pair(entry, "--jwt-required-scope", "NAME=SCOPE")?;
            if !crate::permissions::is_scope_token(&scope) {
                return Err(format!(
                    "--jwt-required-scope {name}: not an OAuth scope token (visible ASCII without spaces, quotes \
                     or \\)"
                ));
            }
            let access = &mut options.server_mut(&name, "--jwt-required-scope")?.access;
            if !access.required_scopes.contains(&scope) {
                access.required_scopes.push(scope);
            }
        }
        for entry in &cli.jwt_allowed_client {
            let (name, client) = server::pair(entry, "--jwt-allowed-client", "NAME=CLIENT_ID")?;
            options
                .server_mut(&name, "--jwt-allowed-client")?
                .access
                .allowed_client_ids
                .get_or_insert_with(Vec::new)
                .push(client);
        }
        if options.jwt_issuer.is_none() {
            if let Some(server) = options
                .servers
                .iter()
                .find(|s| s.access.restricts_jwt_callers())
            {
                return Err(format!(
                    "{}: required scopes and allowed clients apply to JWT callers and need JWT admission \
                     (--jwt-issuer, or mcp_resource_server.issuer in the config file)",
                    server.source
                ));
            }
        }
        for auth in &cli.upstream_auth {
            let (name, auth) = server::pair(auth, "--upstream-auth", "NAME=KIND:VALUE")?;
            let source = format!("--upstream-auth {}", name.to_ascii_lowercase());
            options
                .server_mut(&name, "--upstream-auth")?
                .set_auth(&auth, &source)?;
        }
        for exchange in &cli.token_exchange {
            let (name, endpoint) =
                server::pair(exchange, "--token-exchange", "NAME=TOKEN_ENDPOINT")?;
            let spec = exchange_client(endpoint, env)?;
            options.server_mut(&name, "--token-exchange")?.exchange = Some(spec);
        }
        if options.servers.is_empty() && cli.config.is_none() {
            options.demo = true;
        }
        Ok(options)
    }

    /// Adds what the flags did not set: servers whose names no `--upstream` took, the master key, the
    /// database, the JWT issuer.
    fn fill(&mut self, file: file::FileConfig) {
        for server in file.servers {
            if !self.servers.iter().any(|s| s.name() == server.name()) {
                self.servers.push(server);
            }
        }
        self.master_key = file.master_key;
        self.allow_insecure_auth_server |= file.allow_insecure_auth_server;
        self.jwt_allow_any_typ |= file.jwt_allow_any_typ;
        self.database_url = file.database_url;
        if let (None, Some((issuer, jwks_uri))) = (&self.jwt_issuer, file.jwt) {
            // `iss` is compared exactly: the issuer is kept as written.
            self.jwt_issuer = Some(issuer);
            self.jwt_jwks_uri = self.jwt_jwks_uri.take().or(jwks_uri);
        }
        self.metrics_listen = self.metrics_listen.take().or(file.metrics_listen);
        self.rate_limits = file.rate_limits;
        // The environment, like a flag, wins over the file.
        self.session_secret = self.session_secret.take().or(file.session_secret);
        self.previous_session_secret = self
            .previous_session_secret
            .take()
            .or(file.previous_session_secret);
        self.warnings.extend(file.warning);
    }

    /// The upstream named `name` (compared ignoring case).
    pub fn server(&mut self, name: &str) -> Option<&mut Server> {
        self.servers
            .iter_mut()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    fn server_mut(&mut self, name: &str, flag: &str) -> Result<&mut Server, String> {
        self.server(name)
            .ok_or_else(|| format!("{flag} {name}: not an upstream (--upstream or mcp_servers)"))
    }

    /// The upstreams every LiteLLM key may use (`allow_all_keys: true`).
    pub fn open_upstreams(&self) -> Vec<String> {
        self.servers
            .iter()
            .filter(|s| s.allow_all_keys)
            .map(|s| s.name().to_owned())
            .collect()
    }
}

/// `HOST:PORT`, where HOST is an address or a name (resolved when the listener is bound).
fn check_listen(listen: &str, source: &str) -> Result<(), String> {
    let valid = listen
        .rsplit_once(':')
        .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        .is_some();
    if valid {
        Ok(())
    } else {
        Err(format!("{source} {listen:?}: expected HOST:PORT"))
    }
}

fn check_public_url(url: &str) -> Result<String, String> {
    url.parse::<axum::http::Uri>()
        .ok()
        .filter(|u| u.authority().is_some() && matches!(u.scheme_str(), Some("http" | "https")))
        .map(|_| url.to_owned())
        .ok_or_else(|| format!("--public-url {url:?}: not an absolute http(s) URL"))
}

/// `MCP_GATEWAY_KEYS` read by the library's own rules for keys in the environment (`StaticKeys::parse_env`):
/// entries separated by commas or newlines, `KEY [identity]`, and no server lists — a comma inside a list would
/// otherwise turn the rest of it into a new, unrestricted key.
fn env_entries(value: Option<&str>) -> Result<Vec<String>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    StaticKeys::<String>::parse_env(value).map_err(|e| format!("{KEYS_VAR}: {e}"))?;
    Ok(value
        .split(['\n', ','])
        .map(str::trim)
        .filter(|entry| !entry.is_empty() && !entry.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// A session secret from the environment variable `var`, if set.
fn secret_from(
    env: &impl Fn(&str) -> Option<String>,
    var: &str,
) -> Result<Option<SessionSecret>, String> {
    env(var)
        .map(|value| SessionSecret::new(&value, var))
        .transpose()
}

/// `--token-exchange`'s client credentials come from the environment, never from the command line.
fn exchange_client(
    endpoint: String,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<ExchangeSpec, String> {
    let var = |name: &str| {
        env(name).ok_or_else(|| format!("--token-exchange needs the environment variable {name}"))
    };
    Ok(ExchangeSpec {
        endpoint,
        client_id: var("MCP_GATEWAY_EXCHANGE_CLIENT_ID")?,
        client_secret: var("MCP_GATEWAY_EXCHANGE_CLIENT_SECRET")?,
        ..Default::default()
    })
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field(
                "env_keys",
                &format_args!("[{} redacted]", self.env_keys.len()),
            )
            .field("key_files", &self.key_files)
            .field("servers", &self.servers)
            .field("allow_origins", &self.allow_origins)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("extra_roots", &self.extra_roots)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("max_body", &self.max_body)
            .field("drain_timeout", &self.drain_timeout)
            .field("limits", &self.limits)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "[redacted]"),
            )
            .field("metrics_listen", &self.metrics_listen)
            .field("revocation_listen", &self.revocation_listen)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_jwks_uri", &self.jwt_jwks_uri)
            .field("session_secret", &self.session_secret)
            .field("previous_session_secret", &self.previous_session_secret)
            .field("jwt_allow_any_typ", &self.jwt_allow_any_typ)
            .field(
                "allow_insecure_auth_server",
                &self.allow_insecure_auth_server,
            )
            .field("rate_limits", &self.rate_limits)
            .field("access_log", &self.access_log)
            .field("demo", &self.demo)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse(args.iter().map(|a| a.to_string()), None)
    }

    #[test]
    fn listen_takes_names_and_addresses() {
        assert_eq!(
            parse(&["--listen", "localhost:4000"]).unwrap().listen,
            "localhost:4000"
        );
        assert_eq!(parse(&["--listen", "[::1]:0"]).unwrap().listen, "[::1]:0");
        assert!(parse(&["--listen", "localhost"])
            .unwrap_err()
            .contains("--listen"));
    }

    #[test]
    fn durations_take_units() {
        let options = parse(&["--upstream-timeout", "30s", "--drain-timeout", "2"]).unwrap();
        assert_eq!(options.upstream_timeout, Duration::from_secs(30));
        assert_eq!(options.drain_timeout, Duration::from_secs(2));
        let error = parse(&["--upstream-timeout", "soon"]).unwrap_err();
        assert!(error.contains("--upstream-timeout"), "{error}");
    }

    #[test]
    fn the_demo_runs_only_without_upstreams_and_without_a_config_file() {
        assert!(parse(&[]).unwrap().demo);
        assert!(
            !parse(&["--upstream", "a=http://127.0.0.1:1/mcp"])
                .unwrap()
                .demo
        );
        assert!(
            parse(&["--upstream", "a=http://127.0.0.1:1/mcp", "--demo"])
                .unwrap()
                .demo
        );
    }

    #[test]
    fn keys_in_the_environment_take_no_lists() {
        let error = Options::parse([], Some("sk-alice=atl,priv".to_owned())).unwrap_err();
        assert!(
            error.contains(KEYS_VAR) && !error.contains("sk-alice"),
            "{error}"
        );
        let options = Options::parse([], Some("sk-a alice, sk-b\nsk-c".to_owned())).unwrap();
        assert_eq!(options.env_keys, ["sk-a alice", "sk-b", "sk-c"]);
    }

    #[test]
    fn flags_name_upstreams_that_exist() {
        let error = parse(&[
            "--upstream",
            "a=http://127.0.0.1:1/mcp",
            "--passthrough",
            "b",
        ])
        .unwrap_err();
        assert!(error.starts_with("--passthrough b"), "{error}");
        let error = parse(&[
            "--upstream",
            "a=http://127.0.0.1:1/mcp",
            "--upstream-auth",
            "a=bogus:sk-secret",
        ])
        .unwrap_err();
        assert!(
            error.starts_with("--upstream-auth a") && !error.contains("sk-secret"),
            "{error}"
        );
    }
}
