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
//! general_settings:
//!   master_key: os.environ/LITELLM_MASTER_KEY
//! ```
//!
//! Every string may be `os.environ/VAR`, read from the environment. Fields this gateway does not use are
//! named in one warning; transports other than Streamable HTTP are an error.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::Options;

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    mcp_servers: BTreeMap<String, Server>,
    #[serde(default)]
    general_settings: General,
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
    /// LiteLLM's "every key may use this server", whatever the key's own MCP permissions.
    #[serde(default)]
    allow_all_keys: bool,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
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
}

/// What a config file contributes to the [`Options`].
#[derive(Clone, Default)]
pub struct Config {
    servers: Vec<ConfigServer>,
    master_key: Option<String>,
    database_url: Option<String>,
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
            ("oauth_delegate" | "true_passthrough" | "none", _) | (_, None) => None,
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
        servers.push(ConfigServer {
            name: name.to_ascii_lowercase(),
            url: resolve(url, env)?,
            passthrough,
            allow_all_keys: server.allow_all_keys,
            auth,
            headers,
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
            for (header, value) in server.headers {
                options
                    .upstream_headers
                    .push((server.name.clone(), header, value));
            }
        }
        options.keys.extend(self.master_key);
        if options.database_url.is_none() {
            options.database_url = self.database_url;
        }
        options.warnings.extend(self.warning);
    }
}
