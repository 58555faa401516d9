//! `--config FILE`: the `mcp_servers` and `general_settings` of a LiteLLM proxy config, read once into typed
//! structs (`serde_yaml_ng` through `serde_path_to_error`) and validated into [`Server`]s.
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
//!     auth_type: oauth_delegate   # the user's token beside a gateway key; alone: true_passthrough
//!   jira:
//!     url: https://mcp.jira.example/mcp
//!     required_scopes: [mcp.jira]  # JWT callers (mcp_resource_server) need these scopes ...
//!     allowed_client_ids: [ide]    # ... and one of these clients
//!   internal:
//!     url: https://mcp.internal.example/mcp
//!     auth_type: oauth2_token_exchange          # RFC 8693, needs mcp_resource_server
//!     token_exchange_endpoint: https://idp.example/oauth2/token
//!     client_id: gateway
//!     client_secret: os.environ/EXCHANGE_SECRET
//!     audience: api://internal-mcp               # optional; else the upstream URL is the resource
//!     scopes: [mcp.tools.read]                   # optional
//!     allowed_tools: [search, read_page]         # LiteLLM's: only these tools (disallowed_tools: all but)
//!     tool_scopes:                               # this gateway's own: scopes a JWT caller needs per tool
//!       delete_page: [pages.write]
//!     rate_limit: {rpm: 600, burst: 60}           # this gateway's own: per caller on this server
//!     tool_rate_limits:                          # this gateway's own: per caller and tool
//!       delete_page: {rpm: 10}                   # burst: the rpm unless given
//! general_settings:
//!   master_key: os.environ/LITELLM_MASTER_KEY
//!   session_secret: os.environ/MCP_SESSION_SECRET   # this gateway's: shared by every replica (32+ bytes)
//!   session_secret_previous: os.environ/MCP_SESSION_SECRET_OLD   # optional: still accepted while rotating
//!   metrics_listen: 0.0.0.0:9464                 # this gateway's: /metrics on its own listener
//!   redis_url: os.environ/REDIS_URL              # rate limits shared by every replica (feature redis)
//! mcp_resource_server:                           # this gateway's own section, not LiteLLM's
//!   issuer: https://idp.example
//!   jwks_uri: https://idp.example/jwks           # optional; else discovered from the issuer
//!   allow_any_typ: false                         # true: admit JWTs not typed at+jwt (RFC 9068)
//! gateway_settings:                              # this gateway's own section: connection limits
//!   header_read_timeout: 10s                     # durations: `10s`, `1m`, or plain seconds
//!   body_read_timeout: 30s
//!   max_connections: 1024
//!   linger_timeout: 5s
//!   linger_max_bytes: 16777216
//!   allow_insecure_auth_server: false            # http:// issuers/token endpoints beyond loopback
//!   rate_limits:
//!     per_caller: {rpm: 1200, burst: 100}        # each caller across all upstreams
//!     on_redis_error: fail_closed                # or fail_open: count in process while Redis is away
//! ```
//!
//! Every string may be `os.environ/VAR`, read from the environment. Errors name the YAML path
//! (`mcp_servers.github.url`) and never repeat a value. A duplicated key, two servers whose names differ only in
//! case, a field that would restrict access but that this gateway does not enforce, an `auth_type` it cannot
//! honour and a transport other than Streamable HTTP are errors; fields that only describe are named in one
//! warning.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::server::{LiteLlmServer, Server};
use crate::{
    limits::{OnRedisError, Rate},
    resource_server::ExchangeSpec,
    sessions::SessionSecret,
};

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    mcp_servers: BTreeMap<String, RawServer>,
    #[serde(default)]
    general_settings: General,
    /// This gateway's own section: JWT admission (LiteLLM has no such field).
    mcp_resource_server: Option<ResourceServer>,
    /// This gateway's own section: connection limits (LiteLLM has no such field).
    #[serde(default)]
    gateway_settings: GatewaySettings,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GatewaySettings {
    header_read_timeout: Option<DurationValue>,
    body_read_timeout: Option<DurationValue>,
    max_connections: Option<u32>,
    linger_timeout: Option<DurationValue>,
    linger_max_bytes: Option<u64>,
    #[serde(default)]
    allow_insecure_auth_server: bool,
    rate_limits: Option<RawRateLimits>,
}

/// `gateway_settings.rate_limits`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimits {
    per_caller: Option<RawRate>,
    #[serde(default)]
    on_redis_error: RawOnRedisError,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "snake_case")]
enum RawOnRedisError {
    #[default]
    FailClosed,
    FailOpen,
}

/// `{rpm: N, burst: M}`: requests per minute, and the burst (default: `rpm`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    rpm: u32,
    burst: Option<u32>,
}

impl RawRate {
    fn rate(&self, path: &str) -> Result<Rate, String> {
        Rate::new(self.rpm, self.burst, path)
    }
}

/// A duration as YAML writes it: plain seconds, or text with a unit (`30s`, `1m`).
#[derive(Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(f64),
    Text(String),
}

impl DurationValue {
    fn parse(&self, path: &str) -> Result<std::time::Duration, String> {
        let text = match self {
            Self::Seconds(seconds) => seconds.to_string(),
            Self::Text(text) => text.clone(),
        };
        crate::cli::duration(&text).map_err(|e| format!("{path}: {e}"))
    }
}

#[derive(Deserialize, Default)]
struct RawServer {
    url: Option<String>,
    /// LiteLLM's alias of the server: part of the id LiteLLM gives it.
    alias: Option<String>,
    /// An id pinned for the server, which LiteLLM uses instead of deriving one.
    server_id: Option<String>,
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
    /// LiteLLM's: only these tools may be called.
    allowed_tools: Option<Vec<String>>,
    /// LiteLLM's: every tool but these may be called.
    disallowed_tools: Option<Vec<String>>,
    /// This gateway's own: the scopes a JWT caller needs per tool.
    tool_scopes: Option<BTreeMap<String, Vec<String>>>,
    /// Scopes every JWT caller's token must carry to use this server.
    required_scopes: Option<Vec<String>>,
    /// The only clients whose JWTs may use this server.
    allowed_client_ids: Option<Vec<String>>,
    /// This gateway's own: each caller's requests per minute on this server.
    rate_limit: Option<RawRate>,
    /// This gateway's own: each caller's calls per minute of a tool.
    tool_rate_limits: Option<BTreeMap<String, RawRate>>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResourceServer {
    issuer: String,
    jwks_uri: Option<String>,
    /// Admit JWTs not typed `at+jwt` (RFC 9068).
    #[serde(default)]
    allow_any_typ: bool,
}

#[derive(Deserialize, Default)]
struct General {
    master_key: Option<String>,
    database_url: Option<String>,
    session_secret: Option<String>,
    session_secret_previous: Option<String>,
    metrics_listen: Option<String>,
    /// LiteLLM's Redis, here for rate limits shared by the replicas.
    redis_url: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Server fields of LiteLLM's that narrow who may do what. This gateway does not enforce them yet, so a file
/// that sets one is refused rather than served wider open than its author meant.
const RESTRICTING: &[&str] = &[
    "allowed_params",
    "tool_permissions",
    "mcp_tool_permissions",
    "access_groups",
    "mcp_access_groups",
    "allowed_routes",
    "require_approval",
];

/// What a config file contributes to the options.
#[derive(Default)]
pub struct FileConfig {
    /// The upstreams, in the file's order of names.
    pub servers: Vec<Server>,
    pub master_key: Option<String>,
    pub database_url: Option<String>,
    /// `general_settings.session_secret` and `general_settings.session_secret_previous`.
    pub session_secret: Option<SessionSecret>,
    pub previous_session_secret: Option<SessionSecret>,
    /// `general_settings.metrics_listen`: `HOST:PORT` for `/metrics`.
    pub metrics_listen: Option<String>,
    /// `mcp_resource_server`: the issuer and its JWKS URL.
    pub jwt: Option<(String, Option<String>)>,
    /// `gateway_settings`: connection limits.
    pub limits: super::LimitSettings,
    /// `gateway_settings.allow_insecure_auth_server`.
    pub allow_insecure_auth_server: bool,
    /// `gateway_settings.rate_limits` and `general_settings.redis_url`.
    pub rate_limits: crate::limits::Settings,
    /// `mcp_resource_server.allow_any_typ`.
    pub jwt_allow_any_typ: bool,
    /// Fields this gateway does not use, in one line.
    pub warning: Option<String>,
}

const PREFIX: &str = "os.environ/";

/// `os.environ/VAR` → the variable's value; anything else as it is. The error names the path and the variable.
fn resolve(
    value: &str,
    path: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    match value.strip_prefix(PREFIX) {
        Some(var) => {
            env(var).ok_or_else(|| format!("{path}: environment variable {var} is not set"))
        }
        None => Ok(value.to_owned()),
    }
}

/// A serde or YAML error's message without the value it may quote (the value can be a secret): `invalid type:
/// string "sk-…", expected a sequence` becomes `invalid type, expected a sequence`.
fn without_values(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    // serde_yaml_ng names the path itself (`mcp_servers.a: duplicate entry …`); the caller names it already.
    let message = match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(char::is_whitespace) => rest,
        _ => message,
    };
    for kind in ["invalid type", "invalid value", "invalid length"] {
        if message.starts_with(kind) {
            return match message.rsplit_once(", expected ") {
                Some((_, expected)) => format!("{kind}, expected {expected}"),
                None => kind.to_owned(),
            };
        }
    }
    if message.starts_with("duplicate entry")
        || message.starts_with("unknown field")
        || message.starts_with("missing field")
        || message.starts_with("duplicate field")
        || message.starts_with("unknown variant")
    {
        return message.to_owned();
    }
    // A syntax error of the YAML parser may quote the text it stopped at: its kind only.
    message
        .split(':')
        .next()
        .unwrap_or("not valid YAML")
        .to_owned()
}

/// `mcp_servers.github.url` from serde_path_to_error's path (`.` for the root).
fn at(path: &serde_path_to_error::Path) -> String {
    let path = path.to_string();
    if path == "." {
        "the config file".to_owned()
    } else {
        path
    }
}

/// Parses a config file's text; `env` looks up `os.environ/` references.
pub fn parse(text: &str, env: &impl Fn(&str) -> Option<String>) -> Result<FileConfig, String> {
    // Read into a YAML value first: a duplicated key anywhere is an error there, with its path.
    let value: Value = serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(
        text,
    ))
    .map_err(|e| {
        let location = e
            .inner()
            .location()
            .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
            .unwrap_or_default();
        format!(
            "{}: {}{location}",
            at(e.path()),
            without_values(&e.inner().to_string())
        )
    })?;
    if value.is_null() {
        return Err("the config file is empty".to_owned());
    }
    let file: File = serde_path_to_error::deserialize(value).map_err(|e| {
        format!(
            "{}: {}",
            at(e.path()),
            without_values(&e.inner().to_string())
        )
    })?;

    let mut unknown: Vec<String> = file.other.keys().cloned().collect();
    unknown.extend(
        file.general_settings
            .other
            .keys()
            .map(|k| format!("general_settings.{k}")),
    );
    let mut servers: Vec<Server> = Vec::new();
    for (name, raw) in file.mcp_servers {
        let path = format!("mcp_servers.{name}");
        if let Some(clash) = servers
            .iter()
            .find(|s| s.name().eq_ignore_ascii_case(&name))
        {
            return Err(format!(
                "{path}: the name clashes with {} (server names are compared ignoring case)",
                clash.source
            ));
        }
        servers.push(server(&name, raw, &path, env, &mut unknown)?);
    }
    let general = file.general_settings;
    let settings = &file.gateway_settings;
    let duration = |value: &Option<DurationValue>, field: &str| {
        value
            .as_ref()
            .map(|v| v.parse(&format!("gateway_settings.{field}")))
            .transpose()
    };
    if settings.max_connections == Some(0) {
        return Err("gateway_settings.max_connections: must be more than zero".to_owned());
    }
    let limits = super::LimitSettings {
        header_read_timeout: duration(&settings.header_read_timeout, "header_read_timeout")?,
        body_read_timeout: duration(&settings.body_read_timeout, "body_read_timeout")?,
        max_connections: settings.max_connections,
        linger_timeout: duration(&settings.linger_timeout, "linger_timeout")?,
        linger_max_bytes: settings.linger_max_bytes,
    };
    let rate_limits = crate::limits::Settings {
        per_caller: settings
            .rate_limits
            .as_ref()
            .and_then(|r| r.per_caller.as_ref())
            .map(|r| r.rate("gateway_settings.rate_limits.per_caller"))
            .transpose()?,
        redis_url: general
            .redis_url
            .as_deref()
            .map(|v| resolve(v, "general_settings.redis_url", env))
            .transpose()?,
        on_redis_error: match settings.rate_limits.as_ref().map(|r| &r.on_redis_error) {
            Some(RawOnRedisError::FailOpen) => OnRedisError::FailOpen,
            _ => OnRedisError::FailClosed,
        },
    };
    let jwt_allow_any_typ = file
        .mcp_resource_server
        .as_ref()
        .is_some_and(|rs| rs.allow_any_typ);
    let warning = (!unknown.is_empty()).then(|| {
        format!(
            "config: ignored fields this gateway does not use: {}",
            unknown.join(", ")
        )
    });
    Ok(FileConfig {
        servers,
        master_key: general
            .master_key
            .as_deref()
            .map(|v| resolve(v, "general_settings.master_key", env))
            .transpose()?,
        database_url: general
            .database_url
            .as_deref()
            .map(|v| resolve(v, "general_settings.database_url", env))
            .transpose()?,
        session_secret: secret(&general.session_secret, "session_secret", env)?,
        previous_session_secret: secret(
            &general.session_secret_previous,
            "session_secret_previous",
            env,
        )?,
        metrics_listen: general
            .metrics_listen
            .as_deref()
            .map(|v| {
                let listen = resolve(v, "general_settings.metrics_listen", env)?;
                super::check_listen(&listen, "general_settings.metrics_listen")?;
                Ok::<_, String>(listen)
            })
            .transpose()?,
        jwt: file
            .mcp_resource_server
            .map(|rs| -> Result<_, String> {
                Ok((
                    resolve(&rs.issuer, "mcp_resource_server.issuer", env)?,
                    rs.jwks_uri
                        .as_deref()
                        .map(|v| resolve(v, "mcp_resource_server.jwks_uri", env))
                        .transpose()?,
                ))
            })
            .transpose()?,
        limits,
        allow_insecure_auth_server: settings.allow_insecure_auth_server,
        rate_limits,
        jwt_allow_any_typ,
        warning,
    })
}

/// `general_settings.FIELD` as a session secret.
fn secret(
    value: &Option<String>,
    field: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<SessionSecret>, String> {
    let path = format!("general_settings.{field}");
    value
        .as_deref()
        .map(|v| SessionSecret::new(&resolve(v, &path, env)?, &path))
        .transpose()
}

/// How `auth_type` is honoured.
enum AuthType {
    /// No credential of the gateway's.
    None,
    /// The client's own token passes through.
    Passthrough,
    /// The client's own token passes through beside a gateway key, never alone (LiteLLM's `oauth_delegate`).
    Delegate,
    /// RFC 8693 token exchange.
    Exchange,
    /// A credential of this kind, from `auth_value`.
    Credential(&'static str),
}

fn auth_type(value: &str, path: &str) -> Result<AuthType, String> {
    Ok(match value {
        "none" => AuthType::None,
        "true_passthrough" => AuthType::Passthrough,
        "oauth_delegate" => AuthType::Delegate,
        "oauth2_token_exchange" => AuthType::Exchange,
        "api_key" => AuthType::Credential("api_key"),
        "bearer_token" => AuthType::Credential("bearer_token"),
        "basic" => AuthType::Credential("basic"),
        "authorization" => AuthType::Credential("authorization"),
        "token" => AuthType::Credential("token"),
        // LiteLLM's `oauth2` runs an authorization-code or client-credentials flow; with a fixed `auth_value`
        // it is a bearer token, which is all this gateway can honour.
        "oauth2" => AuthType::Credential("oauth2"),
        other => {
            return Err(format!(
                "{path}.auth_type: {other:?} is not supported here (supported: none, api_key, bearer_token, \
                 basic, authorization, token, oauth2 with auth_value, oauth_delegate, true_passthrough, \
                 oauth2_token_exchange)"
            ))
        }
    })
}

fn server(
    name: &str,
    raw: RawServer,
    path: &str,
    env: &impl Fn(&str) -> Option<String>,
    unknown: &mut Vec<String>,
) -> Result<Server, String> {
    if let Some(field) = RESTRICTING.iter().find(|f| raw.other.contains_key(**f)) {
        return Err(format!(
            "{path}.{field}: this gateway does not enforce this restriction; refusing to start rather than \
             serve the server with wider access than configured"
        ));
    }
    unknown.extend(raw.other.keys().map(|k| format!("{path}.{k}")));
    let transport = raw.transport.as_deref().unwrap_or("http");
    if !matches!(transport, "http" | "streamable_http" | "streamable-http") {
        return Err(format!(
            "{path}.transport: {transport:?} is not supported; this gateway speaks Streamable HTTP \
             (transport: http)"
        ));
    }
    let url = raw
        .url
        .as_deref()
        .ok_or_else(|| format!("{path}.url: missing"))?;
    let url = resolve(url, &format!("{path}.url"), env)?;
    let mut server = Server::new(name, &url, format!("{path}.url"))?;
    server.source = path.to_owned();
    server.litellm = Some(LiteLlmServer {
        name: name.to_owned(),
        url: url.clone(),
        transport: raw.transport.clone(),
        auth_type: raw.auth_type.clone(),
        alias: raw
            .alias
            .as_deref()
            .map(|alias| resolve(alias, &format!("{path}.alias"), env))
            .transpose()?,
        server_id: raw
            .server_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned),
    });
    let kind = auth_type(raw.auth_type.as_deref().unwrap_or("none"), path)?;
    let value_field = if raw.auth_value.is_some() {
        "auth_value"
    } else {
        "authentication_token"
    };
    let value = raw
        .auth_value
        .as_deref()
        .or(raw.authentication_token.as_deref());
    match (&kind, value) {
        (AuthType::Credential(kind), Some(value)) => {
            let field = format!("{path}.{value_field}");
            let value = resolve(value, &field, env)?;
            server.set_auth(&format!("{kind}:{value}"), &field)?;
        }
        (AuthType::Credential(kind), None) => {
            return Err(format!(
                "{path}.auth_value: auth_type {kind} needs a value (auth_value or authentication_token)"
            ))
        }
        (_, Some(_)) => unknown.push(format!("{path}.{value_field}")),
        (_, None) => {}
    }
    let delegate = matches!(kind, AuthType::Delegate);
    let passthrough = raw.oauth_passthrough || delegate || matches!(kind, AuthType::Passthrough);
    server.config = server.config.clone().with_passthrough(passthrough);
    // `oauth_passthrough: true` beside `oauth_delegate` cannot widen it to a lone token.
    server.access.delegate = delegate;
    server.allow_all_keys = raw.allow_all_keys;
    server.tools = crate::tools::server_tools(
        raw.allowed_tools.as_deref(),
        raw.disallowed_tools.as_deref(),
        path,
    )?;
    if let Some(scopes) = raw.tool_scopes {
        server.tool_scopes = crate::tools::tool_scopes(scopes, path)?;
    }
    server.limits.upstream = raw
        .rate_limit
        .as_ref()
        .map(|r| r.rate(&format!("{path}.rate_limit")))
        .transpose()?;
    for (tool, rate) in raw.tool_rate_limits.iter().flatten() {
        let field = format!("{path}.tool_rate_limits.{tool}");
        if tool.is_empty() {
            return Err(format!("{field}: a tool name is not empty"));
        }
        server.limits.tools.insert(tool.clone(), rate.rate(&field)?);
    }
    let field = |values: &Option<Vec<String>>, name: &str| {
        values
            .iter()
            .flatten()
            .map(|v| resolve(v, &format!("{path}.{name}"), env))
            .collect::<Result<Vec<_>, _>>()
    };
    server.access.required_scopes = field(&raw.required_scopes, "required_scopes")?;
    if let Some(bad) = server
        .access
        .required_scopes
        .iter()
        .position(|s| !crate::permissions::is_scope_token(s))
    {
        return Err(format!(
            "{path}.required_scopes[{bad}]: not an OAuth scope token (visible ASCII without spaces, quotes or \\)"
        ));
    }
    if raw.allowed_client_ids.is_some() {
        server.access.allowed_client_ids =
            Some(field(&raw.allowed_client_ids, "allowed_client_ids")?);
    }

    let mut headers = Vec::new();
    for (header, value) in &raw.static_headers {
        let field = format!("{path}.static_headers.{header}");
        headers.push((header.clone(), resolve(value, &field, env)?, field));
    }
    match &raw.extra_headers {
        // LiteLLM's `extra_headers` names client headers to forward; here clients send per-server
        // credentials as `x-mcp-{server}-{header}`, so the list has no effect.
        Some(Value::Sequence(_)) => {
            unknown.push(format!("{path}.extra_headers (a list of client headers)"))
        }
        None => {}
        Some(Value::Mapping(map)) => {
            for (header, value) in map {
                let (Some(header), Some(value)) = (header.as_str(), value.as_str()) else {
                    return Err(format!(
                        "{path}.extra_headers: names and values must be strings"
                    ));
                };
                let field = format!("{path}.extra_headers.{header}");
                headers.push((header.to_owned(), resolve(value, &field, env)?, field));
            }
        }
        Some(_) => {
            return Err(format!(
                "{path}.extra_headers: expected a list or a mapping"
            ))
        }
    }
    for (header, value, field) in headers {
        let header = axum::http::HeaderName::try_from(header.as_str())
            .map_err(|_| format!("{field}: not a header name"))?;
        // The value may be a credential: never repeat it.
        let value = axum::http::HeaderValue::try_from(value.as_str())
            .map_err(|_| format!("{field}: not a header value"))?;
        server.config = server.config.clone().with_header(header, value);
    }

    let exchange_fields = [
        (
            "token_exchange_endpoint",
            raw.token_exchange_endpoint.is_some(),
        ),
        ("audience", raw.audience.is_some()),
        ("scopes", raw.scopes.is_some()),
        ("subject_token_type", raw.subject_token_type.is_some()),
        ("client_id", raw.client_id.is_some()),
        ("client_secret", raw.client_secret.is_some()),
    ];
    if matches!(kind, AuthType::Exchange) {
        let required = |field: &Option<String>, what: &str| {
            field
                .as_deref()
                .ok_or_else(|| format!("{path}.{what}: oauth2_token_exchange needs it"))
                .and_then(|v| resolve(v, &format!("{path}.{what}"), env))
        };
        let optional = |field: &Option<String>, what: &str| {
            field
                .as_deref()
                .map(|v| resolve(v, &format!("{path}.{what}"), env))
                .transpose()
        };
        server.exchange = Some(ExchangeSpec {
            endpoint: required(&raw.token_exchange_endpoint, "token_exchange_endpoint")?,
            client_id: required(&raw.client_id, "client_id")?,
            client_secret: required(&raw.client_secret, "client_secret")?,
            audience: optional(&raw.audience, "audience")?,
            scopes: raw
                .scopes
                .iter()
                .flatten()
                .map(|s| resolve(s, &format!("{path}.scopes"), env))
                .collect::<Result<_, _>>()?,
            subject_token_type: optional(&raw.subject_token_type, "subject_token_type")?,
        });
    } else {
        unknown.extend(
            exchange_fields
                .iter()
                .filter(|(_, set)| *set)
                .map(|(field, _)| format!("{path}.{field}")),
        );
    }
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn error(yaml: &str) -> String {
        match parse(yaml, &no_env) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_wrong_type_names_its_path_and_never_the_value() {
        let e = error("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    static_headers: sk-secret-value\n");
        assert!(
            e.starts_with("mcp_servers.a.static_headers: invalid type"),
            "{e}"
        );
        assert!(!e.contains("sk-secret-value"), "{e}");
    }

    #[test]
    fn a_duplicated_key_is_an_error_naming_it() {
        let e = error("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    url: http://127.0.0.1:2/mcp\n");
        assert!(
            e.contains("mcp_servers.a") && e.contains("duplicate entry"),
            "{e}"
        );
        let e = error("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n  a:\n    url: http://127.0.0.1:2/mcp\n");
        assert!(e.contains("duplicate entry"), "{e}");
    }

    #[test]
    fn names_that_differ_in_case_clash() {
        let e = error("mcp_servers:\n  GitHub:\n    url: http://127.0.0.1:1/mcp\n  github:\n    url: http://127.0.0.1:2/mcp\n");
        assert!(
            e.contains("mcp_servers.github") && e.contains("mcp_servers.GitHub"),
            "{e}"
        );
    }

    #[test]
    fn a_restricting_field_is_refused_with_its_path() {
        let e = error(
            "mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    allowed_params: [echo]\n",
        );
        assert!(e.starts_with("mcp_servers.a.allowed_params:"), "{e}");
    }

    #[test]
    fn malformed_tool_lists_name_their_path() {
        for (yaml, path) in [
            (
                "allowed_tools: echo",
                "mcp_servers.a.allowed_tools: invalid type",
            ),
            (
                "disallowed_tools: {add: 1}",
                "mcp_servers.a.disallowed_tools: invalid type",
            ),
            (
                "allowed_tools: [echo, 3]",
                "mcp_servers.a.allowed_tools[1]: invalid type",
            ),
            (
                "allowed_tools: [echo, '']",
                "mcp_servers.a.allowed_tools[1]: a tool name is not empty",
            ),
            (
                "tool_scopes: [echo]",
                "mcp_servers.a.tool_scopes: invalid type",
            ),
            (
                "tool_scopes: {echo: write}",
                "mcp_servers.a.tool_scopes.echo: invalid type",
            ),
            (
                "tool_scopes: {echo: ['a b']}",
                "mcp_servers.a.tool_scopes.echo: a scope is a non-empty token",
            ),
        ] {
            let e = error(&format!(
                "mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    {yaml}\n"
            ));
            assert!(e.starts_with(path), "{yaml}: {e}");
        }
    }

    #[test]
    fn tool_lists_combine_as_litellm_does() {
        let config = parse(
            "mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    allowed_tools: [echo, add]\n    disallowed_tools: [add]\n",
            &no_env,
        )
        .unwrap();
        let tools = &config.servers[0].tools;
        assert!(tools.allows("echo") && !tools.allows("add") && !tools.allows("sum"));
        assert!(config.warning.is_none());
    }

    #[test]
    fn an_auth_type_without_a_value_or_unknown_is_refused() {
        let e = error(
            "mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    auth_type: bearer_token\n",
        );
        assert!(e.starts_with("mcp_servers.a.auth_value:"), "{e}");
        let e = error("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    auth_type: aws_sigv4\n    auth_value: x\n");
        assert!(e.starts_with("mcp_servers.a.auth_type:"), "{e}");
    }

    #[test]
    fn a_missing_variable_names_path_and_variable() {
        let e = error("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    auth_type: bearer_token\n    auth_value: os.environ/SURELY_UNSET_VAR_X\n");
        assert_eq!(
            e,
            "mcp_servers.a.auth_value: environment variable SURELY_UNSET_VAR_X is not set"
        );
    }

    #[test]
    fn an_empty_file_is_an_error() {
        assert!(error("").contains("empty"));
        assert!(error("# nothing\n").contains("empty"));
    }

    #[test]
    fn a_bad_url_blames_the_field() {
        let e = error("mcp_servers:\n  a:\n    url: not a url\n");
        assert!(e.starts_with("mcp_servers.a.url:"), "{e}");
    }

    #[test]
    fn gateway_settings_take_durations_with_units_or_seconds() {
        let config = parse(
            "mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\ngateway_settings:\n  header_read_timeout: 2s\n  body_read_timeout: 1.5\n  max_connections: 3\n  linger_max_bytes: 100\n",
            &no_env,
        )
        .unwrap();
        assert_eq!(
            config.limits.header_read_timeout,
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(
            config.limits.body_read_timeout,
            Some(std::time::Duration::from_millis(1500))
        );
        assert_eq!(config.limits.max_connections, Some(3));
        assert_eq!(config.limits.linger_max_bytes, Some(100));
        let e = error("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\ngateway_settings:\n  body_read_timeout: soon\n");
        assert!(e.starts_with("gateway_settings.body_read_timeout:"), "{e}");
        let e = error("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\ngateway_settings:\n  max_conections: 3\n");
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn descriptive_fields_are_a_warning() {
        let config = parse(
            "mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    description: docs\nlitellm_settings: {}\n",
            &no_env,
        )
        .unwrap();
        let warning = config.warning.unwrap();
        assert!(
            warning.contains("mcp_servers.a.description") && warning.contains("litellm_settings")
        );
    }
}
