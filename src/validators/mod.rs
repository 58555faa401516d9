//! Ready-made validators: the key stores gateways deploy with, and a cache to put in front of them.
//!
//! - [`StaticKeys`]: a fixed key set from code, a file or an environment variable, kept as SHA-256 digests and
//!   compared in constant time.
//! - [`Cache`]: wraps any validator; answers repeated credentials from memory, coalesces concurrent lookups
//!   of the same credential into one store call, and keeps `Unknown` answers for a short while so that OAuth
//!   passthrough traffic (whose tokens are never gateway keys) stops costing a store round-trip per request.
//! - `Introspection` (feature `introspection`): asks an RFC 7662 token introspection endpoint, and checks whom
//!   the token was issued for.
//! - `Jwt` (feature `jwt`): JWT access tokens of one issuer for one audience, checked against the issuer's
//!   JWKS: the gateway as an OAuth resource server.
//! - [`FirstOf`]: asks two validators in order, so a gateway can accept its keys and JWTs side by side.
//! - `LiteLlmKeys` (feature `postgres`): reads LiteLLM's key tables, so a gateway admits exactly the keys an
//!   existing LiteLLM deployment issued, with the MCP servers LiteLLM would let each use.
//! - `LiteLlmRevocations` (feature `postgres`): watches LiteLLM's key tables and sends each revoked key to
//!   [`RevocationSink`]s (a [`Cache`], the tokens exchanged for it), so that several replicas refuse a revoked key
//!   within a bound; with a [`TrustGate`], a cache stops trusting its `Valid` answers when the watcher is blind.
//!
//! Putting the cache in front of a store:
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use tower_mcp_auth::{validate_fn, validators::Cache, McpAuthLayer, Verdict};
//!
//! // Any validator: here a closure standing in for a database lookup.
//! let store = validate_fn(|key: String| async move {
//!     Ok::<_, Infallible>(if key == "sk-good" { Verdict::Valid("alice".to_owned()) } else { Verdict::Unknown })
//! });
//! let cached = Cache::builder(store)
//!     .valid_ttl(Duration::from_secs(60))   // a revoked key is still admitted for up to this long...
//!     .unknown_ttl(Duration::from_secs(10)) // ...and a newly issued one refused for up to this long
//!     .max_entries(100_000)
//!     .build();
//! let layer = McpAuthLayer::new(cached);
//! # let _ = layer;
//! ```

mod cache;
mod first_of;
#[cfg(feature = "introspection")]
mod introspection;
#[cfg(feature = "jwt")]
mod jwks;
#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "postgres")]
mod litellm;
mod revocation;
mod static_keys;

pub use cache::{Cache, CacheBuilder, CacheError, CacheFuture};
pub use first_of::{Either, FirstOf, FirstOfFuture};
#[cfg(feature = "introspection")]
pub use introspection::{ClientAuth, Introspection, IntrospectionClaims, IntrospectionError};
#[cfg(feature = "jwt")]
pub use jwt::{Jwt, JwtBuilder, JwtClaims, JwtError};
#[cfg(feature = "postgres")]
pub use litellm::LiteLlmRevocations;
#[cfg(feature = "postgres")]
pub use litellm::{config_server_id, KeyInfo, LiteLlmError, LiteLlmKeys};
pub use revocation::{revocation_fn, Revocation, RevocationFn, RevocationSink, TrustGate};
pub use static_keys::{FromKeyEntry, StaticKeys, StaticKeysError};
