//! The command line, as clap parses it: every flag with its help line and the environment variable it also
//! reads. [`Cli`] holds what was written; [`crate::Options`] is the validated configuration built from it and
//! the `--config` file.

use std::{path::PathBuf, time::Duration};

use clap::Parser;

/// An MCP Streamable HTTP gateway: gateway keys, per-upstream OAuth passthrough, each upstream's own
/// credential, RFC 9728 discovery, and optionally JWT admission with RFC 8693 token exchange.
///
/// Flags override the `--config` file. Without an upstream and without `--config`, a demo upstream runs in the
/// same process (`--demo` asks for it explicitly).
#[derive(Parser, Clone, Default)]
#[command(name = "mcp-gateway", version, about, long_about = None, max_term_width = 110)]
pub struct Cli {
    /// A LiteLLM-shaped YAML config file (`mcp_servers`, `general_settings`, `mcp_resource_server`).
    #[arg(long, value_name = "FILE", env = "MCP_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,

    /// The address to listen on, `HOST:PORT` (default 127.0.0.1:4000); a name is resolved at start-up.
    #[arg(long, value_name = "HOST:PORT", env = "MCP_GATEWAY_LISTEN")]
    pub listen: Option<String>,

    /// The gateway's public URL; required on a listener that is not loopback.
    #[arg(long, value_name = "URL", env = "MCP_GATEWAY_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// A gateway key, optionally with the upstreams it may use: `KEY[=NAME,...]` (repeatable); taken whole or
    /// refused, never cut at a space or an `=` that lists no upstreams. The environment variable
    /// MCP_GATEWAY_KEYS adds keys separated by commas or newlines (`KEY [identity]`, no lists).
    #[arg(long = "key", value_name = "KEY[=NAME,...]")]
    pub keys: Vec<String>,

    /// A key file: one `KEY[=NAME,...] [identity]` per line (repeatable; the variable: comma-separated).
    #[arg(
        long = "key-file",
        value_name = "FILE",
        env = "MCP_GATEWAY_KEY_FILE",
        value_delimiter = ','
    )]
    pub key_files: Vec<PathBuf>,

    /// An upstream MCP server, `NAME=URL`, served at /mcp/NAME (repeatable; the variable: comma-separated).
    #[arg(
        long = "upstream",
        value_name = "NAME=URL",
        env = "MCP_GATEWAY_UPSTREAM",
        value_delimiter = ','
    )]
    pub upstreams: Vec<String>,

    /// An upstream that accepts the client's own OAuth token (repeatable; the variable: comma-separated).
    #[arg(
        long,
        value_name = "NAME",
        env = "MCP_GATEWAY_PASSTHROUGH",
        value_delimiter = ','
    )]
    pub passthrough: Vec<String>,

    /// An upstream that accepts the client's own OAuth token only beside a gateway key (LiteLLM's
    /// `oauth_delegate`; repeatable; the variable: comma-separated).
    #[arg(
        long,
        value_name = "NAME",
        env = "MCP_GATEWAY_OAUTH_DELEGATE",
        value_delimiter = ','
    )]
    pub oauth_delegate: Vec<String>,

    /// A scope every JWT caller of an upstream must hold, `NAME=SCOPE` (repeatable: all are required; the
    /// variable: comma-separated); otherwise 403 `insufficient_scope`. Needs --jwt-issuer.
    #[arg(
        long,
        value_name = "NAME=SCOPE",
        env = "MCP_GATEWAY_JWT_REQUIRED_SCOPE",
        value_delimiter = ','
    )]
    pub jwt_required_scope: Vec<String>,

    /// A client (`client_id`, else `azp`) whose JWTs may use an upstream, `NAME=CLIENT_ID` (repeatable; once
    /// given for an upstream, other clients get 403 there; the variable: comma-separated). Needs --jwt-issuer.
    #[arg(
        long,
        value_name = "NAME=CLIENT_ID",
        env = "MCP_GATEWAY_JWT_ALLOWED_CLIENT",
        value_delimiter = ','
    )]
    pub jwt_allowed_client: Vec<String>,

    /// The gateway's own credential for an upstream, `NAME=KIND:VALUE` (kinds: none, api_key, bearer_token,
    /// basic, authorization, oauth2, token; repeatable).
    #[arg(
        long,
        value_name = "NAME=KIND:VALUE",
        env = "MCP_GATEWAY_UPSTREAM_AUTH",
        hide_env_values = true
    )]
    pub upstream_auth: Vec<String>,

    /// A browser origin allowed besides the public URL's (repeatable; the variable: comma-separated).
    #[arg(
        long,
        value_name = "ORIGIN",
        env = "MCP_GATEWAY_ALLOW_ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origin: Vec<String>,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(
        long,
        value_name = "FILE",
        env = "MCP_GATEWAY_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        value_name = "FILE",
        env = "MCP_GATEWAY_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// A PEM bundle trusted for upstream TLS besides the platform's roots and SSL_CERT_FILE's.
    #[arg(long, value_name = "FILE", env = "MCP_GATEWAY_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,

    /// How long an upstream may take to answer with its response head (`30s`, `1m`, or plain seconds); past it
    /// the client gets 504, within a tenth of the timeout (at most 1 s) after it.
    #[arg(long, value_name = "DURATION", env = "MCP_GATEWAY_UPSTREAM_TIMEOUT", value_parser = duration)]
    pub upstream_timeout: Option<Duration>,

    /// The largest request body relayed upstream, in bytes (default 4 MiB).
    #[arg(long, value_name = "BYTES", env = "MCP_GATEWAY_MAX_BODY")]
    pub max_body: Option<usize>,

    /// How long a graceful shutdown waits for requests in flight (`10s`, or plain seconds).
    #[arg(long, value_name = "DURATION", env = "MCP_GATEWAY_DRAIN_TIMEOUT", value_parser = duration)]
    pub drain_timeout: Option<Duration>,

    /// How long a client may take to send a request head, also the longest a keep-alive connection idles and
    /// a TLS handshake takes (default 10s).
    #[arg(long, value_name = "DURATION", env = "MCP_GATEWAY_HEADER_READ_TIMEOUT", value_parser = duration)]
    pub header_read_timeout: Option<Duration>,

    /// How long a request body may take to arrive whole, from the request head; then 408 (default 30s).
    #[arg(long, value_name = "DURATION", env = "MCP_GATEWAY_BODY_READ_TIMEOUT", value_parser = duration)]
    pub body_read_timeout: Option<Duration>,

    /// Connections served at once; more wait in the listen backlog (default 1024).
    #[arg(long, value_name = "COUNT", env = "MCP_GATEWAY_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// After an answer given before the request body was read, how long the rest is read and discarded so
    /// the client receives the answer (default 5s).
    #[arg(long, value_name = "DURATION", env = "MCP_GATEWAY_LINGER_TIMEOUT", value_parser = duration)]
    pub linger_timeout: Option<Duration>,

    /// The most bytes of such a body read and discarded (default 16 MiB); a longer rest closes the connection.
    #[arg(long, value_name = "BYTES", env = "MCP_GATEWAY_LINGER_MAX_BYTES")]
    pub linger_max_bytes: Option<u64>,

    /// JWT admission on every route: the issuer, compared exactly with `iss`.
    #[arg(long, value_name = "URL", env = "MCP_GATEWAY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The issuer's JWKS URL (else discovered from the issuer's metadata).
    #[arg(long, value_name = "URL", env = "MCP_GATEWAY_JWT_JWKS_URI")]
    pub jwt_jwks_uri: Option<String>,

    /// Accept `http://` JWT issuers, JWKS URLs and token endpoints on hosts other than loopback (they carry
    /// signing keys, client secrets and subject tokens in clear text); without it they are start-up errors.
    #[arg(long, env = "MCP_GATEWAY_ALLOW_INSECURE_AUTH_SERVER")]
    pub allow_insecure_auth_server: bool,

    /// Admit JWTs whose header `typ` is not `at+jwt` (RFC 9068), for an issuer that types its access tokens
    /// `JWT` or not at all; without it they are 401 `invalid_token`.
    #[arg(long, env = "MCP_GATEWAY_JWT_ALLOW_ANY_TYP")]
    pub jwt_allow_any_typ: bool,

    /// RFC 8693 token exchange for an upstream, `NAME=TOKEN_ENDPOINT`, with the client credentials from
    /// MCP_GATEWAY_EXCHANGE_CLIENT_ID and MCP_GATEWAY_EXCHANGE_CLIENT_SECRET (repeatable).
    #[arg(
        long,
        value_name = "NAME=TOKEN_ENDPOINT",
        env = "MCP_GATEWAY_TOKEN_EXCHANGE",
        value_delimiter = ','
    )]
    pub token_exchange: Vec<String>,

    /// Serve GET /metrics on this address only (`HOST:PORT`), not on the public listener.
    #[arg(long, value_name = "HOST:PORT", env = "MCP_GATEWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// With LiteLLM's key table: also LISTEN on this PostgreSQL channel for revocations (the channel of
    /// sql/litellm_revocation_notify.sql, `litellm_key_revoked`, once the operator installed its trigger).
    #[arg(long, value_name = "CHANNEL", env = "MCP_GATEWAY_REVOCATION_LISTEN")]
    pub revocation_listen: Option<String>,

    /// With an OpenTelemetry endpoint (OTEL_EXPORTER_OTLP_ENDPOINT): start a new trace for every request
    /// instead of continuing the client's W3C `traceparent`; the client's `traceparent` and `tracestate` are
    /// then not forwarded either.
    #[cfg(feature = "otel")]
    #[arg(long, env = "MCP_GATEWAY_OTEL_IGNORE_CLIENT_TRACE")]
    pub otel_ignore_client_trace: bool,

    /// Where the access line of each exchange goes: `stderr` (formatted by the gateway, in the log's text
    /// format; the default), `tracing` (an event of target `gateway::access` with the same fields, for the
    /// installed subscriber), or `off`. `RUST_LOG` filters the line either way.
    #[arg(long, value_name = "TO", env = "MCP_GATEWAY_ACCESS_LOG", value_enum)]
    pub access_log: Option<crate::access_log::AccessLog>,

    /// Run the demo upstream (`demo`, passthrough) in the same process, beside any other upstream.
    #[arg(long, env = "MCP_GATEWAY_DEMO")]
    pub demo: bool,
}

/// A duration with a unit (`30s`, `1m 30s`, `250ms`, humantime's syntax) or plain, possibly fractional,
/// seconds; never zero.
pub fn duration(value: &str) -> Result<Duration, String> {
    let parsed = match value.trim().parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => {
            Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())?
        }
        Ok(_) => return Err("must be more than zero".to_owned()),
        Err(_) => humantime::parse_duration(value.trim()).map_err(|e| e.to_string())?,
    };
    if parsed.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(duration("0").is_err());
        assert!(duration("-3").is_err());
        assert!(duration("soon").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
