//! Tools and scopes: which tools of each upstream may be called, by whom, and with which JWT scopes; the
//! `/metrics` counter of MCP calls.
//!
//! The library's layers do the reading and the refusing ([`McpRequestLayer`], [`RequireToolsLayer`]); this
//! module assembles them from the configuration (`allowed_tools`, `disallowed_tools`, `tool_scopes`, key
//! grants `SERVER/TOOL`) and adds the gateway's step-up answer for JWT callers lacking a tool's scopes.

use crate::stage::{Answers, Next, Step, Then};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use axum::{
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use tower_mcp_auth::{
    mcp::{
        CallOutcome, Decision, McpOutcome, McpRequest, McpRequestLayer, RequireToolsLayer, Rule,
        KNOWN_METHODS,
    },
    permissions::{PathSegment, Tools},
    Authenticated,
};

use metrics::{Counter, SharedString};

use crate::metrics::Handles;

use super::{access_log::AuthOutcome, config::Server, json_error, resource_server::Caller};

/// The MCP calls counted by `/metrics`, by upstream, method, tool and outcome.
pub const MCP_CALLS: &str = "mcp.gateway.calls";

/// `allowed_tools` / `disallowed_tools` of `mcp_servers.NAME` as one [`Tools`]: only the allowed ones, less the
/// disallowed ones (LiteLLM applies both). An empty name is an error naming its path.
pub fn server_tools(
    allowed: Option<&[String]>,
    disallowed: Option<&[String]>,
    path: &str,
) -> Result<Tools, String> {
    for (field, list) in [("allowed_tools", allowed), ("disallowed_tools", disallowed)] {
        if let Some(i) = list.into_iter().flatten().position(|t| t.is_empty()) {
            return Err(format!("{path}.{field}[{i}]: a tool name is not empty"));
        }
    }
    let allowed = allowed.map_or_else(Tools::all, Tools::only);
    let disallowed = disallowed.map_or_else(Tools::all, Tools::except);
    Ok(allowed.intersect(&disallowed))
}

/// `tool_scopes` of `mcp_servers.NAME`, each scope an RFC 6749 scope token (visible ASCII but `"` and `\`).
pub fn tool_scopes(
    scopes: BTreeMap<String, Vec<String>>,
    path: &str,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    for (tool, list) in &scopes {
        let token = |s: &String| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        };
        if tool.is_empty() || !list.iter().all(token) {
            return Err(format!(
                "{path}.tool_scopes.{tool}: a scope is a non-empty token without spaces or quotes"
            ));
        }
    }
    Ok(scopes)
}

/// What the gateway knows of one upstream's tools.
struct Route {
    tools: Tools,
    scopes: BTreeMap<String, Vec<String>>,
    metadata_url: String,
    /// The upstream's name as a metrics label.
    label: SharedString,
    /// The tool names the metrics label takes for this upstream, as labels.
    labels: BTreeMap<String, SharedString>,
    /// The call counters of this upstream, by method, tool label and outcome.
    counters: Handles<(&'static str, SharedString, &'static str), Counter>,
}

/// The tool policy of every upstream.
#[derive(Clone)]
pub struct Policy(Arc<crate::NameMap<String, Route>>);

impl Policy {
    /// From the configured servers; `metadata_url` gives each route's metadata document.
    pub fn new(servers: &[Server], metadata_url: impl Fn(&str) -> String) -> Self {
        let routes = servers
            .iter()
            .map(|s| {
                let labels = s
                    .tools
                    .named()
                    .map(str::to_owned)
                    .chain(s.tool_scopes.keys().cloned())
                    .map(|tool| {
                        let label = Arc::<str>::from(tool.as_str()).into();
                        (tool, label)
                    })
                    .collect();
                let route = Route {
                    tools: s.tools.clone(),
                    scopes: s.tool_scopes.clone(),
                    metadata_url: metadata_url(s.name()),
                    label: Arc::<str>::from(s.name()).into(),
                    labels,
                    counters: Handles::default(),
                };
                (s.name().to_owned(), route)
            })
            .collect();
        Self(Arc::new(routes))
    }

    /// The envelope reader, bounded by `--max-body`.
    pub fn request_layer(max_body: usize) -> McpRequestLayer {
        McpRequestLayer::new().max_body(max_body)
    }

    /// Per-tool permissions: the upstreams' own rules and the callers'.
    pub fn require_tools(&self) -> RequireToolsLayer<Caller, PathSegment> {
        self.0.iter().fold(
            RequireToolsLayer::path_segment("/mcp/"),
            |layer, (name, route)| layer.server_tools(name, route.tools.clone()),
        )
    }

    /// The scopes the route of `upstream` names in `tool_scopes`, for its metadata's `scopes_supported`.
    pub fn scopes_supported(&self, upstream: &str) -> BTreeSet<String> {
        self.0
            .get(upstream)
            .map(|route| route.scopes.values().flatten().cloned().collect())
            .unwrap_or_default()
    }
}

/// `403 insufficient_scope` (the MCP authorization step-up): `scope` lists what the token holds plus what the
/// tool needs (SEP-2350), so the client asks for all of it at once.
fn step_up(held: &BTreeSet<&str>, needed: &[String], metadata_url: &str, tool: &str) -> Response {
    let mut scope: BTreeSet<&str> = held.clone();
    scope.extend(needed.iter().map(String::as_str));
    let scope = scope.into_iter().collect::<Vec<_>>().join(" ");
    let mut response = json_error(
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        &format!("the tool {tool:?} needs more scope"),
    );
    // Scopes and the metadata URL are checked tokens and URLs; a value that still fails is left out.
    if let Ok(value) = HeaderValue::try_from(format!(
        r#"Bearer error="insufficient_scope", scope="{scope}", resource_metadata="{metadata_url}""#
    )) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Middleware inside authentication: a JWT caller calling a tool of `tool_scopes` without every scope it
/// lists gets the step-up `403`; the upstream never sees the call. Gateway keys carry their own tool grants
/// and passthrough tokens are the upstream's to judge, so neither is asked for scopes.
pub fn require_scopes<S: Answers>(policy: &Policy, request: Request, next: Next<'_, S>) -> Step<S> {
    let (Some(mcp), Some(caller)) = (
        request.extensions().get::<McpRequest>(),
        request.extensions().get::<Authenticated<Caller>>(),
    ) else {
        return next.pass(request);
    };
    let Caller::Jwt(claims) = caller.identity() else {
        return next.pass(request);
    };
    let Some((upstream, route)) = super::route::of(&request)
        .and_then(|r| policy.0.get_key_value(r.name()))
        .map(|(name, route)| (name.clone(), route))
    else {
        return next.pass(request);
    };
    let held: BTreeSet<&str> = claims.scopes().collect();
    for (index, message) in mcp.envelope().messages().iter().enumerate() {
        let Some(tool) = message.tool() else { continue };
        let Some(needed) = route.scopes.get(tool) else {
            continue;
        };
        if needed.iter().all(|s| held.contains(s.as_str())) {
            continue;
        }
        let calls: Arc<[CallOutcome]> = mcp
            .envelope()
            .messages()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let decision = if i == index {
                    Decision::Refused(Rule::Scope)
                } else {
                    Decision::Allowed
                };
                CallOutcome::new(m, decision)
            })
            .collect();
        let mut response = step_up(&held, needed, &route.metadata_url, tool);
        response
            .extensions_mut()
            .insert(McpOutcome::new(upstream.as_str(), calls));
        return next.answer(response);
    }
    next.pass(request)
}

/// Middleware around the MCP layers: counts each call of an answered request by upstream, method, tool and
/// outcome. Labels come from the configuration and fixed lists only: an upstream, method or tool outside them
/// is `other`, so clients cannot grow the label set.
///
/// How the caller was admitted ([`AuthOutcome`]) is found here once: the relay reads it from the request (the
/// session's owner), the access log from the response, whichever step below answered.
pub fn record<S: Answers>(
    policy: &Policy,
    mut request: Request,
    next: Next<'_, S>,
) -> Then<S, (Policy, Option<AuthOutcome>)> {
    let outcome = AuthOutcome::of(&request);
    request.extensions_mut().insert(outcome.clone());
    next.then(request, (policy.clone(), outcome), count)
}

/// After the answer: how the caller was admitted, for the access log, and each call counted.
fn count((policy, outcome): (Policy, Option<AuthOutcome>), mut response: Response) -> Response {
    response.extensions_mut().insert(outcome);
    if let Some(outcome) = response.extensions().get::<McpOutcome>() {
        let route = policy.0.get(outcome.upstream());
        // Shared labels: a reference count each, never a copy per call.
        let other = || SharedString::const_str("other");
        let upstream = route.map_or_else(other, |r| r.label.clone());
        for call in outcome.calls() {
            let method = call
                .method
                .as_deref()
                .and_then(|m| KNOWN_METHODS.iter().find(|known| **known == m))
                .copied()
                .unwrap_or(if call.method.is_some() {
                    "other"
                } else {
                    "response"
                });
            let tool = match call.name.as_deref() {
                None => SharedString::const_str(""),
                Some(tool) => route
                    .and_then(|r| r.labels.get(tool).cloned())
                    .unwrap_or_else(other),
            };
            let outcome = call.decision.as_str();
            let register =
                |(method, tool, outcome): &(&'static str, SharedString, &'static str)| {
                    metrics::counter!(
                        MCP_CALLS,
                        "upstream" => upstream.clone(),
                        "method" => *method,
                        "tool" => tool.clone(),
                        "outcome" => *outcome
                    )
                };
            match route {
                Some(route) => route.counters.get(&(method, tool, outcome), register),
                None => register(&(method, tool, outcome)),
            }
            .increment(1);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_up_scope_accumulates() {
        let held = BTreeSet::from(["read", "profile"]);
        let response = step_up(
            &held,
            &["write".to_owned(), "read".to_owned()],
            "https://gw/.well-known/oauth-protected-resource/mcp/a",
            "rm",
        );
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", scope="profile read write", resource_metadata="https://gw/.well-known/oauth-protected-resource/mcp/a""#
        );
    }
}
