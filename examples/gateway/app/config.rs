//! `--config FILE`: the `mcp_servers` and `general_settings` of a LiteLLM proxy config, read with `serde_yaml_ng`.
//!
//! ```yaml
//! mcp_servers:
//!   github:
//!     url: https://api.githubcopilot.com/mcp
//!     transport: http
//!     auth_type: bearer_token
//!     auth_value: os.environ/GITHUB_TOKEN
//!   atlassian:
//!     url: https://mcp.atlassian.com/v1/mcp
//!     auth_type: oauth_delegate   # or oauth_passthrough: true
//!   internal:
//!     url: https://mcp.internal.example/mcp
//!     auth_type: oauth2_token_exchange          # RFC 8693, needs mcp_resource_server
//!     token_exchange_endpoint: https://idp.example/oauth2/token
//!     client_id: gateway
//!     client_secret: os.environ/EXCHANGE_SECRET
//!     audience: api://internal-mcp               # optional; else the upstream URL is the resource
//!     scopes: [mcp.tools.read]                   # optional
//! general_settings:
//!   master_key: os.environ/LITELLM_MASTER_KEY
//! mcp_resource_server:                           # this gateway's own section, not LiteLLM's
//!   issuer: https://idp.example
//!   jwks_uri: https://idp.example/jwks           # optional; else discovered from the issuer
//! ```
//!
//! Every string may be `os.environ/VAR`, read from the environment. Fields this gateway does not use are
//! named in one warning; transports other than Streamable HTTP are an error.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::{resource_server::ExchangeSpec, Options};

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    mcp_servers: BTreeMap<String, Server>,
    #[serde(default)]
    general_settings: General,
    /// This gateway's own section: JWT admission (LiteLLM has no such field).
    mcp_resource_server: Option<ResourceServer>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Deserialize, Default)]
struct Server {
    url: Option<String>,
    transport: Option<String>,
    auth_type: Option<String>,
    auth_value: Option<String>,
    authentication_token: Option<String>,
    #[serde(default)]
    static_headers: BTreeMap<String, String>,
    extra_headers: Option<Value>,
    #[serde(default)]
    oauth_passthrough: bool,
    token_exchange_endpoint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    audience: Option<String>,
    scopes: Option<Vec<String>>,
    subject_token_type: Option<String>,
    /// LiteLLM's "every key may use this server", whatever the key's own MCP permissions.
    #[serde(default)]
    allow_all_keys: bool,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResourceServer {
    issuer: String,
    jwks_uri: Option<String>,
}

#[derive(Deserialize, Default)]
struct General {
    master_key: Option<String>,
    database_url: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// One upstream as the config file describes it.
#[derive(Clone)]
struct ConfigServer {
    name: String,
    url: String,
    passthrough: bool,
    allow_all_keys: bool,
    auth: Option<String>,
    headers: Vec<(String, String)>,
    exchange: Option<ExchangeSpec>,
}

/// What a config file contributes to the [`Options`].
#[derive(Clone, Default)]
pub struct Config {
    servers: Vec<ConfigServer>,
    master_key: Option<String>,
    database_url: Option<String>,
    jwt: Option<(String, Option<String>)>,
    warning: Option<String>,
}

const PREFIX: &str = "os.environ/";

/// `os.environ/VAR` → the variable's value; anything else as it is. The error names the variable only.
fn resolve(value: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    match value.strip_prefix(PREFIX) {
        Some(var) => {
            env(var).ok_or_else(|| format!("config: environment variable {var} is not set"))
        }
        None => Ok(value.to_owned()),
    }
}

/// Reads and checks the config file at `path`, resolving `os.environ/` references from the process environment.
pub fn load(path: &Path) -> Result<Config, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    parse(&text, &|var| std::env::var(var).ok())
        .map_err(|e| format!("--config {}: {e}", path.display()))
}

/// Parses a config file's text; `env` looks up `os.environ/` references.
pub fn parse(text: &str, env: &impl Fn(&str) -> Option<String>) -> Result<Config, String> {
    // The YAML error may quote the line it stopped at, which can hold a secret: report its position only.
    let file: File = serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
        Some(at) => format!(
            "not a valid config file (line {}, column {})",
            at.line(),
            at.column()
        ),
        None => "not a valid config file".to_owned(),
    })?;
    let mut unknown: Vec<String> = file.other.keys().cloned().collect();
    unknown.extend(
        file.general_settings
            .other
            .keys()
            .map(|k| format!("general_settings.{k}")),
    );
    let mut servers = Vec::new();
    for (name, server) in file.mcp_servers {
        unknown.extend(
            server
                .other
                .keys()
                .map(|k| format!("mcp_servers.{name}.{k}")),
        );
        let transport = server.transport.as_deref().unwrap_or("http");
        if !matches!(transport, "http" | "streamable_http" | "streamable-http") {
            return Err(format!(
                "mcp_servers.{name}: transport {transport:?} is not supported; this gateway speaks Streamable HTTP \
                 (transport: http)"
            ));
        }
        let url = server
            .url
            .as_deref()
            .ok_or_else(|| format!("mcp_servers.{name}: url is missing"))?;
        let auth_type = server.auth_type.as_deref().unwrap_or("none");
        let passthrough =
            server.oauth_passthrough || matches!(auth_type, "oauth_delegate" | "true_passthrough");
        let value = server
            .auth_value
            .as_deref()
            .or(server.authentication_token.as_deref());
        let auth = match (auth_type, value) {
            ("oauth_delegate" | "true_passthrough" | "oauth2_token_exchange" | "none", _)
            | (_, None) => None,
            (kind, Some(value)) => Some(format!("{kind}:{}", resolve(value, env)?)),
        };
        let mut headers = Vec::new();
        for (header, value) in &server.static_headers {
            headers.push((header.clone(), resolve(value, env)?));
        }
        match &server.extra_headers {
            // LiteLLM's `extra_headers` names client headers to forward; here clients send per-server
            // credentials as `x-mcp-{server}-{header}`, so the list has no effect.
            Some(Value::Sequence(_)) | None => {}
            Some(Value::Mapping(map)) => {
                for (header, value) in map {
                    let (Some(header), Some(value)) = (header.as_str(), value.as_str()) else {
                        return Err(format!(
                            "mcp_servers.{name}.extra_headers: names and values must be strings"
                        ));
                    };
                    headers.push((header.to_owned(), resolve(value, env)?));
                }
            }
            Some(_) => {
                return Err(format!(
                    "mcp_servers.{name}.extra_headers: expected a list or a mapping"
                ))
            }
        }
        if matches!(server.extra_headers, Some(Value::Sequence(_))) {
            unknown.push(format!(
                "mcp_servers.{name}.extra_headers (a list of client headers)"
            ));
        }
        let exchange = if auth_type == "oauth2_token_exchange" {
            let required = |field: &Option<String>, what: &str| {
                field
                    .as_deref()
                    .ok_or_else(|| {
                        format!("mcp_servers.{name}: oauth2_token_exchange needs {what}")
                    })
                    .and_then(|v| resolve(v, env))
            };
            let optional =
                |field: &Option<String>| field.as_deref().map(|v| resolve(v, env)).transpose();
            Some(ExchangeSpec {
                endpoint: required(&server.token_exchange_endpoint, "token_exchange_endpoint")?,
                client_id: required(&server.client_id, "client_id")?,
                client_secret: required(&server.client_secret, "client_secret")?,
                audience: optional(&server.audience)?,
                scopes: server
                    .scopes
                    .iter()
                    .flatten()
                    .map(|s| resolve(s, env))
                    .collect::<Result<_, _>>()?,
                subject_token_type: optional(&server.subject_token_type)?,
            })
        } else {
            let exchange_fields = [
                (
                    "token_exchange_endpoint",
                    server.token_exchange_endpoint.is_some(),
                ),
                ("audience", server.audience.is_some()),
                ("scopes", server.scopes.is_some()),
                ("subject_token_type", server.subject_token_type.is_some()),
                ("client_id", server.client_id.is_some()),
                ("client_secret", server.client_secret.is_some()),
            ];
            unknown.extend(
                exchange_fields
                    .iter()
                    .filter(|(_, set)| *set)
                    .map(|(field, _)| format!("mcp_servers.{name}.{field}")),
            );
            None
        };
        servers.push(ConfigServer {
            name: name.to_ascii_lowercase(),
            url: resolve(url, env)?,
            passthrough,
            allow_all_keys: server.allow_all_keys,
            auth,
            headers,
            exchange,
        });
    }
    let general = file.general_settings;
    let warning = (!unknown.is_empty()).then(|| {
        format!(
            "config: ignored fields this gateway does not use: {}",
            unknown.join(", ")
        )
    });
    Ok(Config {
        servers,
        master_key: general
            .master_key
            .as_deref()
            .map(|v| resolve(v, env))
            .transpose()?,
        database_url: general
            .database_url
            .as_deref()
            .map(|v| resolve(v, env))
            .transpose()?,
        jwt: file
            .mcp_resource_server
            .map(|rs| -> Result<_, String> {
                Ok((
                    resolve(&rs.issuer, env)?,
                    rs.jwks_uri
                        .as_deref()
                        .map(|v| resolve(v, env))
                        .transpose()?,
                ))
            })
            .transpose()?,
        warning,
    })
}

impl Config {
    /// Adds what the flags did not set: servers whose names no `--upstream` took, the master key, the database.
    pub fn fill(self, options: &mut Options) {
        for server in self.servers {
            if options.upstreams.iter().any(|(n, _)| *n == server.name) {
                continue;
            }
            options.upstreams.push((server.name.clone(), server.url));
            if server.allow_all_keys {
                options.open_upstreams.push(server.name.clone());
            }
            if server.passthrough && !options.passthrough.contains(&server.name) {
                options.passthrough.push(server.name.clone());
            }
            if let Some(auth) = server.auth {
                if !options.upstream_auth.iter().any(|(n, _)| *n == server.name) {
                    options.upstream_auth.push((server.name.clone(), auth));
                }
            }
            if let Some(exchange) = server.exchange {
                if !options
                    .token_exchange
                    .iter()
                    .any(|(n, _)| *n == server.name)
                {
                    options.token_exchange.push((server.name.clone(), exchange));
                }
            }
            for (header, value) in server.headers {
                options
                    .upstream_headers
                    .push((server.name.clone(), header, value));
            }
        }
        options.keys.extend(self.master_key.clone());
        options.master_key = self.master_key;
        if options.database_url.is_none() {
            options.database_url = self.database_url;
        }
        if let (None, Some((issuer, jwks_uri))) = (&options.jwt_issuer, self.jwt) {
            // `iss` is compared exactly: the issuer is kept as written.
            options.jwt_issuer = Some(issuer);
            options.jwt_jwks_uri = options.jwt_jwks_uri.take().or(jwks_uri);
        }
        options.warnings.extend(self.warning);
    }
}
