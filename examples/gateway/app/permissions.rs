//! Which upstreams each gateway key may use: `--key KEY[=NAME[,NAME...]]` and the same lines in `--key-file`.
//!
//! A plain `--key KEY` reaches every upstream; `--key KEY=atl,priv` only `atl` and `priv`. A key file holds one
//! `KEY[=NAME,...] [identity]` per line (`#` comments). The check itself is the crate's `RequireUpstreamLayer`,
//! inside the auth layer: a key that may not use the upstream a path names gets `403 access_denied`.

use tower_mcp_auth::{
    permissions::{KeyIdentity, PathSegment, RequireUpstreamLayer},
    validators::StaticKeys,
};

/// The gateway's keys: the key file's entries, then each `--key`, parsed alike.
pub fn gateway_keys(
    keys: &[String],
    key_file: Option<&str>,
) -> Result<StaticKeys<KeyIdentity>, String> {
    let mut text = match key_file {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("--key-file {path}: {e}"))?
        }
        None => String::new(),
    };
    for key in keys {
        // One entry per line, never an identity: a value with whitespace is refused rather than split.
        if key.chars().any(char::is_whitespace) {
            return Err("--key takes KEY[=NAME,...] without whitespace".to_owned());
        }
        text.push('\n');
        text.push_str(key);
    }
    // Errors name lines, never keys.
    StaticKeys::parse(&text).map_err(|e| format!("gateway keys: {e}"))
}

/// The permission check: the upstream is the path segment after `/mcp/`, as the router reads it.
pub fn require_upstream() -> RequireUpstreamLayer<KeyIdentity, PathSegment> {
    RequireUpstreamLayer::path_segment("/mcp/")
}
