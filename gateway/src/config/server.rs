//! One upstream MCP server of the configuration, already valid: a normalised name, its [`UpstreamConfig`]
//! (URL, credential, headers, passthrough), and what else the gateway does for it.

use std::fmt;

use std::collections::BTreeMap;

use tower_mcp_auth::{
    permissions::Tools,
    upstream::{UpstreamAuth, UpstreamConfig},
};

use crate::resource_server::ExchangeSpec;

/// An upstream of the configuration.
#[derive(Clone)]
pub struct Server {
    /// The upstream: name (lower case), URL, credential, extra headers, passthrough.
    pub config: UpstreamConfig,
    /// LiteLLM's `allow_all_keys`: every LiteLLM key may use it, whatever the key's own MCP permissions.
    pub allow_all_keys: bool,
    /// RFC 8693 token exchange for this upstream.
    pub exchange: Option<ExchangeSpec>,
    /// The tools any caller may call (`allowed_tools` / `disallowed_tools`).
    pub tools: Tools,
    /// The scopes a JWT caller needs, per tool (`tool_scopes`).
    pub tool_scopes: BTreeMap<String, Vec<String>>,
    /// What the upstream asks of its callers beyond admission (`oauth_delegate`, JWT scopes and clients).
    pub access: RouteAccess,
    /// Each caller's rate limits on this upstream and its tools (`rate_limit`, `tool_rate_limits`).
    pub limits: crate::limits::ServerLimits,
    /// Where it was defined (`--upstream a`, or `mcp_servers.A`), for errors that name the source.
    pub source: String,
    /// For a server of the config file: the fields LiteLLM derives its id for the server from.
    pub litellm: Option<LiteLlmServer>,
}

/// A config-file server as LiteLLM reads it: the fields of its id (`sha256("name|url|transport|auth_type|alias")`,
/// see `tower_mcp_auth::validators::config_server_id`), as written in the file (`os.environ/` resolved).
#[derive(Clone, Debug, Default)]
pub struct LiteLlmServer {
    /// The key under `mcp_servers`, as written.
    pub name: String,
    pub url: String,
    /// `None` when the file leaves it out (LiteLLM's default then applies).
    pub transport: Option<String>,
    pub auth_type: Option<String>,
    pub alias: Option<String>,
    /// An id pinned in the file (`server_id`), which LiteLLM uses instead of the derived one.
    pub server_id: Option<String>,
}

impl LiteLlmServer {
    /// The transports to derive ids with. Without a `transport` in the file, LiteLLM hashes its default, an
    /// enum member whose text is `http` or `MCPTransport.http` depending on the Python version it runs on: both
    /// are taken.
    pub fn transports(&self) -> Vec<&str> {
        match &self.transport {
            Some(transport) => vec![transport],
            None => vec!["http", "MCPTransport.http"],
        }
    }
}

impl Server {
    /// An upstream named `name` at `url`; `source` names where they were written.
    pub fn new(name: &str, url: &str, source: String) -> Result<Self, String> {
        let config = UpstreamConfig::new(name, url).map_err(|e| format!("{source}: {e}"))?;
        Ok(Self {
            config,
            allow_all_keys: false,
            exchange: None,
            tools: Tools::all(),
            tool_scopes: BTreeMap::new(),
            access: RouteAccess::default(),
            limits: crate::limits::ServerLimits::default(),
            source,
            litellm: None,
        })
    }

    /// The normalised (lower-case) name: the route is `/mcp/NAME`.
    pub fn name(&self) -> &str {
        self.config.name()
    }

    /// Sets the gateway's own credential from `KIND:VALUE`; the error names `source`, never the value.
    pub fn set_auth(&mut self, auth: &str, source: &str) -> Result<(), String> {
        let auth: UpstreamAuth = auth.parse().map_err(|e| format!("{source}: {e}"))?;
        self.config = self.config.clone().with_auth(auth);
        Ok(())
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("allow_all_keys", &self.allow_all_keys)
            .field("exchange", &self.exchange)
            .field("tools", &self.tools)
            .field("tool_scopes", &self.tool_scopes)
            .field("access", &self.access)
            .field("source", &self.source)
            .field("litellm", &self.litellm)
            .finish()
    }
}

/// What one upstream asks of its callers beyond admission.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteAccess {
    /// LiteLLM's `auth_type: oauth_delegate`: the client's own token passes through only beside a gateway key,
    /// never alone.
    pub delegate: bool,
    /// Scopes a JWT caller's token must all carry (`scope`).
    pub required_scopes: Vec<String>,
    /// The clients (`client_id`, else `azp`) whose JWTs may use the upstream; `None` is every client.
    pub allowed_client_ids: Option<Vec<String>>,
}

impl RouteAccess {
    /// Whether it asks anything of JWT callers.
    pub fn restricts_jwt_callers(&self) -> bool {
        !self.required_scopes.is_empty() || self.allowed_client_ids.is_some()
    }
}

/// Splits `NAME=REST` as the repeatable flags write it; the error names the flag and the shape, never the value
/// (it may hold a credential).
pub fn pair(value: &str, flag: &str, shape: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((name, rest)) if !name.is_empty() && !rest.is_empty() => {
            Ok((name.to_owned(), rest.to_owned()))
        }
        _ => Err(format!("{flag} takes {shape}")),
    }
}
