//! `McpOutcome`: what the gateway decided about each JSON-RPC call of a request, for audit logs and metrics.

use std::{borrow::Cow, sync::Arc};

use super::envelope::Message;

/// Which rule refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// The upstream's own tool rule, every caller's (`allowed_tools` / `disallowed_tools`).
    Upstream,
    /// The caller's permissions (its key's tools).
    Caller,
    /// The caller's token lacks a scope the tool requires.
    Scope,
    /// A rate limit of the caller, the upstream or the tool is spent.
    RateLimit,
}

impl Rule {
    /// `upstream_tools`, `caller_tools`, `scope` or `rate_limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream_tools",
            Self::Caller => "caller_tools",
            Self::Scope => "scope",
            Self::RateLimit => "rate_limit",
        }
    }
}

/// The decision about one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Decision {
    /// Sent on to the upstream.
    Allowed,
    /// Refused by the rule; the upstream never saw it.
    Refused(Rule),
}

impl Decision {
    /// `allowed`, or `refused:RULE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Refused(Rule::Upstream) => "refused:upstream_tools",
            Self::Refused(Rule::Caller) => "refused:caller_tools",
            Self::Refused(Rule::Scope) => "refused:scope",
            Self::Refused(Rule::RateLimit) => "refused:rate_limit",
        }
    }
}

/// One call of a request: its method, the name it acts on, and the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallOutcome {
    /// The JSON-RPC method; `None` for a response the client sent. A method of
    /// [`KNOWN_METHODS`](super::KNOWN_METHODS) is borrowed from that list, any other owned.
    pub method: Option<Cow<'static, str>>,
    /// The tool, prompt or resource of a name-bearing method.
    pub name: Option<Box<str>>,
    /// What was decided.
    pub decision: Decision,
}

impl CallOutcome {
    /// The outcome of `message`.
    pub fn new(message: &Message, decision: Decision) -> Self {
        Self {
            method: message.method_name().cloned(),
            name: message.name().map(Into::into),
            decision,
        }
    }
}

/// Response extension: the decisions about every call of a request's envelope, and the upstream it targeted.
/// [`RequireToolsLayer`](super::RequireToolsLayer) inserts it. Cloning it is two reference-count increments.
#[derive(Clone, Debug)]
pub struct McpOutcome {
    upstream: Arc<str>,
    calls: Arc<[CallOutcome]>,
}

impl McpOutcome {
    /// The outcome of the `calls` of a request to `upstream` (a `Vec`, or a shared slice collected at once).
    pub fn new(upstream: impl Into<Arc<str>>, calls: impl Into<Arc<[CallOutcome]>>) -> Self {
        Self {
            upstream: upstream.into(),
            calls: calls.into(),
        }
    }

    /// The upstream the request targeted.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// One outcome per message, in the body's order.
    pub fn calls(&self) -> &[CallOutcome] {
        &self.calls
    }
}
