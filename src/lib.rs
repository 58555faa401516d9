//! Authentication for MCP gateways, as a [tower] middleware: gateway API keys, plus per-route, fail-closed
//! passthrough of the client's own OAuth token to the upstream MCP server.
//!
//! [`McpAuthLayer`] admits callers by gateway key (`x-litellm-api-key: <key>`, or `Authorization: Bearer <key>`
//! for older clients) and asks an injected async [`Validator`]. Only on routes that opted in through a
//! [`PassthroughPolicy`] may a bearer that is *not* a gateway key travel on, as an [`OAuthPassthrough`] marker,
//! for the gateway to forward to the upstream. Such a request carries no identity: code that needs to know who
//! the caller is looks at [`Authenticated<I>`] only.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_mcp_auth::{validate_fn, Authenticated, McpAuthLayer, OAuthPassthrough, PassthroughPolicy, Verdict};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = McpAuthLayer::new(validate_fn(|key: String| async move {
//!     Ok::<_, Infallible>(match key.as_str() {
//!         "sk-good" => Verdict::Valid("alice".to_owned()),   // a gateway key -> identity
//!         "sk-blocked" => Verdict::Denied,                   // a gateway key that may not be used now
//!         _ => Verdict::Unknown,                             // not a gateway key at all
//!     })
//! }))
//! .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"]));
//!
//! let gateway = ServiceBuilder::new().layer(layer).service(service_fn(|req: Request<()>| async move {
//!     let who = req.extensions().get::<Authenticated<String>>().map(|a| a.identity().clone());
//!     let forwards = req.extensions().get::<OAuthPassthrough>().is_some();
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!("{who:?} {forwards}")))))
//! }));
//!
//! let call = |path: &str, authorization: &str| {
//!     let req = Request::post(path).header("authorization", authorization).body(()).unwrap();
//!     gateway.clone().oneshot(req)
//! };
//! // A gateway key in the bearer slot still works.
//! assert_eq!(call("/mcp/github", "Bearer sk-good").await.unwrap().status(), StatusCode::OK);
//! // An upstream OAuth token passes through where the route opted in, with no identity...
//! assert_eq!(call("/mcp/atlassian", "Bearer atl-token").await.unwrap().status(), StatusCode::OK);
//! // ...and nowhere else.
//! assert_eq!(call("/mcp/github", "Bearer atl-token").await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! // A blocked gateway key is never mistaken for an upstream token.
//! assert_eq!(call("/mcp/atlassian", "Bearer sk-blocked").await.unwrap().status(), StatusCode::FORBIDDEN);
//! # }
//! ```
//!
//! # Decisions
//!
//! Checked before any validator call, in this order: more than one key header or `Authorization` header → 400;
//! a credential header longer than the cap → 431; a credential that is not visible ASCII → 400; a `Bearer` with
//! an empty token or one outside RFC 6750's `b64token`, or an empty or blank `Authorization` value → 400; an
//! empty key header → 401 `invalid_token`.
//!
//! | key header | `Authorization` | verdict | route allows passthrough | inner service sees / client gets |
//! |---|---|---|---|---|
//! | valid | absent | `Valid(id)` | — | `Authenticated(id)` |
//! | valid | `Bearer T`, T ≠ key | `Valid(id)` | yes | `Authenticated(id)` + `OAuthPassthrough(T)` |
//! | valid | `Bearer T`, T ≠ key | `Valid(id)` | no | `Authenticated(id)`; T dropped |
//! | valid | `Bearer T`, T = key | `Valid(id)` | — | `Authenticated(id)` |
//! | valid | other scheme | `Valid(id)` | — | `Authenticated(id)`; header dropped |
//! | present | anything | `Unknown` | — | 401 `invalid_token`, no fallback |
//! | present | anything | `Denied` | — | 403 |
//! | present | anything | `Invalid` | — | 401 `invalid_token` |
//! | absent | `Bearer T` | `Valid(id)` | — | `Authenticated(id)`, never passthrough |
//! | absent | `Bearer T` | `Unknown` | yes | `OAuthPassthrough(T)`, no identity |
//! | absent | `Bearer T` | `Unknown` | no | 401 `invalid_token` |
//! | absent | `Bearer T` | `Denied` | — | 403, never passthrough |
//! | absent | `Bearer T` | `Invalid` | — | 401 `invalid_token`, never passthrough |
//! | either | — | error or timeout | — | 503, fail closed |
//! | absent | other scheme | — | — | 401 `Bearer` |
//! | absent | absent | — | yes | 401 `Bearer resource_metadata="…"` when configured |
//! | absent | absent | — | no | 401 `Bearer` |
//!
//! Always: the key header and `Authorization` are removed from the request before the inner service runs, so a
//! proxy that copies headers cannot leak a gateway key upstream; rejections are small JSON bodies that never
//! echo a credential; `Debug` output and tracing events show at most a [`Fingerprint`]. Every admitted request
//! carries an [`Admission`] (authenticated, or passthrough only), which the outgoing side reads to send
//! gateway-held credentials only with authenticated callers; [`permissions`] decides which upstreams an
//! identity may use.
//!
//! # Response bodies
//!
//! Rejections are responses, never errors: the service's error type is the inner service's. The response body
//! is [`body::ResponseBody<B>`](body::ResponseBody): the inner body or the layer's JSON body, so the layer works
//! with any inner body type (axum, hyper, tonic) without needing to build one from bytes.
//!
//! # MCP operations (feature `mcp`)
//!
//! `tower_mcp_auth::mcp` authorizes MCP operations beside HTTP requests: the JSON-RPC envelope of each request
//! read once, the routing headers of the 2026-07-28 revision checked against it, per-tool permissions and
//! filtered tool lists. The protocol revisions known are the handshake era (2024-11-05, 2025-03-26,
//! 2025-06-18, 2025-11-25) and the stateless 2026-07-28 revision.
//!
//! # Tracing
//!
//! One `debug` event per request, target `tower_mcp_auth`, with the fields `outcome` (`authenticated`,
//! `passthrough`, `rejected`, `denied`, `error`), `source`, `status`, `forwards_token` and `fingerprint`. A
//! validator error's `Display` is logged as `error`, so validators must keep credentials out of their errors.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod admission;
pub mod auth;
pub mod body;
pub mod client_credentials;
mod config_error;
mod credentials;
#[cfg(feature = "axum")]
mod extract;
#[cfg(any(feature = "token-exchange", feature = "introspection", feature = "jwt"))]
pub mod http_client;
mod identity;
mod macros;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod metrics;
mod passthrough;
pub mod permissions;
mod presented;
mod response;
pub mod route;
mod secret;
mod timeout;
#[cfg(feature = "tls")]
pub mod tls;
mod trace;
pub mod upstream;
mod validate;
pub mod validators;

pub use auth::McpAuthLayer;
pub use validate::{validate_fn, BoxError, Recognition, ValidateFn, Validator, Verdict};

pub use admission::Admission;
pub use auth::{DEFAULT_KEY_HEADER, DEFAULT_MAX_CREDENTIAL_LEN, DEFAULT_VALIDATION_TIMEOUT};
pub use config_error::ConfigError;
#[cfg(feature = "axum")]
pub use extract::MissingCredential;
pub use identity::{Authenticated, CredentialSource};
pub use passthrough::{OAuthPassthrough, PassthroughPolicy, PassthroughRequest};
pub use presented::Presented;
pub use secret::Fingerprint;
