//! The command line. Flags override the `--config` file; `MCP_GATEWAY_KEYS` adds keys to both.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use super::config;

/// What the gateway was asked to do.
#[derive(Clone, Default)]
pub struct Options {
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub keys: Vec<String>,
    /// Key files in the static key file format (`key[=NAME,...] [identity]` per line).
    pub key_files: Vec<PathBuf>,
    pub upstreams: Vec<(String, String)>,
    pub passthrough: Vec<String>,
    pub upstream_auth: Vec<(String, String)>,
    /// Headers sent on every request to one upstream: `(upstream, name, value)` (from the config file).
    pub upstream_headers: Vec<(String, String, String)>,
    /// Browser origins allowed besides the public URL's.
    pub allow_origins: Vec<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub upstream_timeout: Option<Duration>,
    pub max_body: Option<usize>,
    pub drain_timeout: Option<Duration>,
    /// A PEM bundle trusted for upstream TLS besides the platform's roots and `SSL_CERT_FILE`'s.
    pub extra_roots: Option<PathBuf>,
    /// LiteLLM's key table instead of static keys (config file `general_settings.database_url`).
    pub database_url: Option<String>,
    /// LiteLLM's master key (config file `general_settings.master_key`): a gateway key with static keys, and
    /// the master key of LiteLLM's key table when `database_url` selects it.
    pub master_key: Option<String>,
    /// Upstreams every LiteLLM key may use whatever its own MCP permissions (config `allow_all_keys: true`).
    pub open_upstreams: Vec<String>,
    pub config: Option<PathBuf>,
    /// JWT admission on every route: the issuer, and optionally its JWKS URL (else discovered).
    pub jwt_issuer: Option<String>,
    pub jwt_jwks_uri: Option<String>,
    /// RFC 8693 token exchange per upstream (config file `auth_type: oauth2_token_exchange`).
    pub token_exchange: Vec<(String, super::resource_server::ExchangeSpec)>,
    /// Things worth a warning at start-up (such as unknown config fields).
    pub warnings: Vec<String>,
}

/// The default listening address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
/// How long the upstream may take to connect and answer with its response head.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request body relayed upstream.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
/// How long a graceful shutdown waits for requests in flight.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub const USAGE: &str = "usage: gateway [--config FILE] [--listen ADDR] [--public-url URL] \
[--key KEY[=NAME,...]]... [--key-file FILE]... [--upstream NAME=URL]... [--passthrough NAME]... \
[--upstream-auth NAME=KIND:VALUE]... [--allow-origin ORIGIN]... [--tls-cert FILE --tls-key FILE] \
[--upstream-timeout SECS] [--max-body BYTES] [--drain-timeout SECS] \
[--jwt-issuer URL [--jwt-jwks-uri URL]] [--token-exchange NAME=TOKEN_ENDPOINT]...";

impl Options {
    /// Parses the arguments (without the program name) and the comma-separated `MCP_GATEWAY_KEYS` value, then
    /// fills what the flags left open from the `--config` file.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env_keys: Option<String>,
    ) -> Result<Self, String> {
        let mut options = Self::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let (flag, inline) = match flag.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (flag, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
            };
            match flag.as_str() {
                "--listen" => {
                    let v = value()?;
                    options.listen = Some(
                        v.parse()
                            .map_err(|_| format!("--listen {v:?} is not an address"))?,
                    );
                }
                "--public-url" => {
                    options.public_url = Some(value()?.trim_end_matches('/').to_owned())
                }
                "--key" => options.keys.push(value()?),
                "--key-file" => options.key_files.push(value()?.into()),
                "--upstream" => options
                    .upstreams
                    .push(pair(&value()?, "--upstream", "NAME=URL")?),
                "--passthrough" => options.passthrough.push(value()?.to_ascii_lowercase()),
                "--upstream-auth" => options.upstream_auth.push(pair(
                    &value()?,
                    "--upstream-auth",
                    "NAME=KIND:VALUE",
                )?),
                "--allow-origin" => options.allow_origins.push(value()?),
                "--tls-cert" => options.tls_cert = Some(value()?.into()),
                "--tls-key" => options.tls_key = Some(value()?.into()),
                "--upstream-timeout" => {
                    options.upstream_timeout = Some(seconds("--upstream-timeout", &value()?)?)
                }
                "--drain-timeout" => {
                    options.drain_timeout = Some(seconds("--drain-timeout", &value()?)?)
                }
                "--max-body" => {
                    let v = value()?;
                    options.max_body = Some(
                        v.parse()
                            .map_err(|_| format!("--max-body {v:?} is not a number of bytes"))?,
                    );
                }
                "--config" => options.config = Some(value()?.into()),
                // `iss` is compared exactly: the issuer is kept as written.
                "--jwt-issuer" => options.jwt_issuer = Some(value()?),
                "--jwt-jwks-uri" => options.jwt_jwks_uri = Some(value()?),
                "--token-exchange" => {
                    let (name, endpoint) =
                        pair(&value()?, "--token-exchange", "NAME=TOKEN_ENDPOINT")?;
                    options
                        .token_exchange
                        .push((name, exchange_client(endpoint)?));
                }
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        if let Some(keys) = env_keys {
            options.keys.extend(
                keys.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned),
            );
        }
        if let Some(path) = options.config.clone() {
            config::load(&path)?.fill(&mut options);
        }
        Ok(options)
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid default"))
    }

    pub fn upstream_timeout(&self) -> Duration {
        self.upstream_timeout.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT)
    }

    pub fn max_body(&self) -> usize {
        self.max_body.unwrap_or(DEFAULT_MAX_BODY)
    }

    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT)
    }
}

/// `--token-exchange`'s client credentials come from the environment, never from the command line.
fn exchange_client(endpoint: String) -> Result<super::resource_server::ExchangeSpec, String> {
    let var = |name: &str| {
        std::env::var(name)
            .map_err(|_| format!("--token-exchange needs the environment variable {name}"))
    };
    Ok(super::resource_server::ExchangeSpec {
        endpoint,
        client_id: var("MCP_GATEWAY_EXCHANGE_CLIENT_ID")?,
        client_secret: var("MCP_GATEWAY_EXCHANGE_CLIENT_SECRET")?,
        ..Default::default()
    })
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{flag} {value:?} is not a positive number of seconds"))
}

fn pair(value: &str, flag: &str, shape: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((name, rest)) if !name.is_empty() && !rest.is_empty() => {
            Ok((name.to_ascii_lowercase(), rest.to_owned()))
        }
        // The value may be a credential: never repeat it.
        _ => Err(format!("{flag} takes {shape}")),
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names =
            |pairs: &[(String, String)]| pairs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        f.debug_struct("Options")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("key_files", &self.key_files)
            .field("upstreams", &names(&self.upstreams))
            .field("passthrough", &self.passthrough)
            .field("upstream_auth", &names(&self.upstream_auth))
            .field(
                "upstream_headers",
                &self
                    .upstream_headers
                    .iter()
                    .map(|(u, h, _)| format!("{u}: {h}"))
                    .collect::<Vec<_>>(),
            )
            .field("allow_origins", &self.allow_origins)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("max_body", &self.max_body)
            .field("drain_timeout", &self.drain_timeout)
            .field("extra_roots", &self.extra_roots)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "[redacted]"),
            )
            .field("config", &self.config)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_jwks_uri", &self.jwt_jwks_uri)
            .field("token_exchange", &self.token_exchange)
            .finish()
    }
}
