//! MCP-aware authorization (feature `mcp`): the JSON-RPC envelope of each request, read once; the routing
//! headers of the 2026-07-28 revision checked against it; per-tool permissions and filtered tool lists.
//!
//! The revisions known are those of [`Revision`]: the handshake era (2024-11-05, 2025-03-26, 2025-06-18,
//! 2025-11-25) and the stateless 2026-07-28 revision, side by side.
//!
//! - [`McpRequestLayer`] reads every POST body's [`Envelope`] (method, id, and the name of `tools/call`,
//!   `prompts/get` and `resources/read`; never the arguments) and refuses a body that a standard JSON parser
//!   could read in more than one way, or whose `Mcp-Method` / `Mcp-Name` / `MCP-Protocol-Version` disagree
//!   with it. Layers inside read the [`McpRequest`] extension it leaves.
//! - [`RequireToolsLayer`] refuses `tools/call` outside the caller's tools before the upstream sees it, and
//!   filters `tools/list` answers (JSON or event stream) down to the tools the caller may call; every answer
//!   carries an [`McpOutcome`] for audit logs and metrics.

mod envelope;
mod filter;
mod outcome;
mod request;
mod revision;
mod routing;
mod tools;

pub use envelope::{Envelope, EnvelopeError, Message, NameKind, RequestId, KNOWN_METHODS};
pub use filter::McpResponseBody;
pub use outcome::{CallOutcome, Decision, McpOutcome, Rule};
pub use request::{McpRequest, McpRequestLayer, McpRequestService, DEFAULT_MAX_BODY};
pub use revision::{Revision, UnknownRevision};
pub use routing::{MCP_METHOD, MCP_NAME, PROTOCOL_VERSION};
pub use tools::{RequireTools, RequireToolsFuture, RequireToolsLayer};
