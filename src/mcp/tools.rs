//! `RequireToolsLayer`: a `tools/call` outside the caller's tools never reaches the upstream, and a
//! `tools/list` answer names only the tools the caller may call.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{
    header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE},
    Request, Response, StatusCode,
};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{
    filter::{ListFilter, McpResponseBody, Mode},
    outcome::{CallOutcome, Decision, McpOutcome, Rule},
    request::{jsonrpc_error, McpRequest},
    revision::Revision,
};
use crate::{
    admission::Admission,
    identity::Authenticated,
    permissions::{PathSegment, TargetUpstream, Tools, UpstreamAccess},
};

/// The JSON-RPC code of a refused call: MCP's "unknown tool" (invalid params), so a refused tool looks like
/// one that does not exist.
const REFUSED_CODE: i64 = -32602;

/// A [`Layer`] that applies per-tool permissions to the [`McpRequest`] that
/// [`McpRequestLayer`](super::McpRequestLayer) read. Put it inside both `McpRequestLayer` and
/// [`McpAuthLayer`](crate::McpAuthLayer).
///
/// The tools of the target upstream that a caller may call are those both the upstream's own rule
/// ([`server_tools`](Self::server_tools), every caller's: LiteLLM's `allowed_tools` / `disallowed_tools`) and
/// the caller's identity ([`UpstreamAccess::tools`]) allow; a request admitted only as a passthrough has the
/// upstream's rule alone.
///
/// | request | answer |
/// |---|---|
/// | `tools/call` of a tool outside that set (any member of a batch) | `200` with a JSON-RPC error `-32602` naming the tool (every call of a batch answered with an error); the upstream never sees it |
/// | `tools/list` where a rule narrows the set | the upstream's answer (JSON or event stream, every page) with only the callable tools; where the caller's own rule narrows it, labelled `cacheScope: "private"` (SEP-2549) |
/// | anything else | the inner service |
///
/// Every answer to a request with an envelope carries an [`McpOutcome`] in its extensions, for audit logs and
/// metrics. A request without [`Admission`] (the layer is not behind `McpAuthLayer`) may call no tool: fail
/// closed.
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Full};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_mcp_auth::{
///     mcp::{McpRequestLayer, RequireToolsLayer},
///     permissions::{KeyIdentity, Tools},
///     validators::StaticKeys,
///     McpAuthLayer,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let keys: StaticKeys<KeyIdentity> = StaticKeys::parse("sk-a=gh/echo alice\n").unwrap();
/// let gateway = ServiceBuilder::new()
///     .layer(McpRequestLayer::new())
///     .layer(McpAuthLayer::new(keys))
///     .layer(RequireToolsLayer::<KeyIdentity, _>::path_segment("/mcp/").server_tools("gh", Tools::except(["rm"])))
///     .service(service_fn(|_req: Request<Full<Bytes>>| async {
///         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
///     }));
/// let call = |tool: &str| Request::post("/mcp/gh")
///     .header("x-litellm-api-key", "sk-a")
///     .body(Full::new(Bytes::from(format!(
///         r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#))))
///     .unwrap();
/// let body = |tool| {
///     let gateway = gateway.clone();
///     async move { gateway.oneshot(call(tool)).await.unwrap().into_body().collect().await.unwrap().to_bytes() }
/// };
/// assert_eq!(&body("echo").await[..], b"{}");
/// assert!(String::from_utf8_lossy(&body("add").await).contains(r#"tool \"add\" is not available"#));
/// # }
/// ```
pub struct RequireToolsLayer<I, T> {
    target: T,
    servers: Arc<HashMap<Arc<str>, Tools>>,
    _identity: PhantomData<fn() -> I>,
}

impl<I, T> RequireToolsLayer<I, T> {
    /// A layer reading each request's target upstream with `target` (as
    /// [`RequireUpstreamLayer`](crate::permissions::RequireUpstreamLayer) reads it).
    pub fn new(target: T) -> Self {
        Self {
            target,
            servers: Arc::default(),
            _identity: PhantomData,
        }
    }

    /// The tools of `upstream` any caller may call (its name compared ignoring ASCII case).
    pub fn server_tools(mut self, upstream: &str, tools: Tools) -> Self {
        Arc::make_mut(&mut self.servers).insert(upstream.to_ascii_lowercase().into(), tools);
        self
    }
}

impl<I> RequireToolsLayer<I, PathSegment> {
    /// A layer whose target upstream is the path segment right after `prefix` (`"/mcp/"`).
    pub fn path_segment(prefix: &str) -> Self {
        Self::new(PathSegment::new(prefix))
    }
}

impl<I, T: Clone> Clone for RequireToolsLayer<I, T> {
    fn clone(&self) -> Self {
        Self {
            target: self.target.clone(),
            servers: self.servers.clone(),
            _identity: PhantomData,
        }
    }
}

impl<I, T: fmt::Debug> fmt::Debug for RequireToolsLayer<I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireToolsLayer")
            .field("target", &self.target)
            .field("servers", &self.servers)
            .finish()
    }
}

impl<S, I, T: Clone> Layer<S> for RequireToolsLayer<I, T> {
    type Service = RequireTools<S, I, T>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireTools {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware built by [`RequireToolsLayer`].
pub struct RequireTools<S, I, T> {
    inner: S,
    layer: RequireToolsLayer<I, T>,
}

impl<S, I, T> RequireTools<S, I, T> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware and returns the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, I, T: Clone> Clone for RequireTools<S, I, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, I, T: fmt::Debug> fmt::Debug for RequireTools<S, I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireTools")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// The caller's tools of `upstream`: `None` when its identity does not restrict them (passthrough).
fn caller_tools<I: UpstreamAccess + Send + Sync + 'static>(
    extensions: &http::Extensions,
    upstream: &str,
) -> Option<Tools> {
    let none = || Some(Tools::only::<_, &str>([]));
    match extensions.get::<Admission>() {
        Some(Admission::Authenticated(_)) => match extensions.get::<Authenticated<I>>() {
            Some(caller) => caller.identity().tools(upstream).or_else(none),
            None => none(),
        },
        Some(Admission::Passthrough) => None,
        None => none(),
    }
}

/// One answer for a refused request: an error per call with an id, a batch answered as a batch.
fn refusal(mcp: &McpRequest, calls: &[CallOutcome]) -> Response<Bytes> {
    let answer = |message: &super::Message, outcome: &CallOutcome| {
        let id = message
            .id()
            .map_or(serde_json::Value::Null, |id| id.to_json());
        let text = match (&outcome.decision, outcome.name.as_deref()) {
            (Decision::Refused(_), Some(tool)) => format!("tool {tool:?} is not available"),
            _ => "not run: another call of the batch was refused".to_owned(),
        };
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": { "code": REFUSED_CODE, "message": text },
        })
    };
    let envelope = mcp.envelope();
    if let Some(message) = envelope.single() {
        let refused = &calls[0];
        let text = format!(
            "tool {:?} is not available",
            refused.name.as_deref().unwrap_or_default()
        );
        return jsonrpc_error(StatusCode::OK, message.id(), REFUSED_CODE, &text, None);
    }
    let answers: Vec<serde_json::Value> = envelope
        .messages()
        .iter()
        .zip(calls)
        .filter(|(message, _)| message.id().is_some())
        .map(|(message, outcome)| answer(message, outcome))
        .collect();
    let mut response = Response::new(Bytes::from(serde_json::Value::from(answers).to_string()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

impl<S, I, T, ReqBody, ResBody> Service<Request<ReqBody>> for RequireTools<S, I, T>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    I: UpstreamAccess + Send + Sync + 'static,
    T: TargetUpstream,
{
    type Response = Response<McpResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = RequireToolsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let mcp = request.extensions().get::<McpRequest>().cloned();
        let upstream =
            self.layer
                .target
                .target(request.uri(), request.headers(), request.extensions());
        let (Some(mcp), Some(upstream)) = (mcp, upstream) else {
            return RequireToolsFuture::inner(self.inner.call(request), None, None);
        };
        // A configured upstream's name is shared, not copied, into the outcome.
        let (upstream, server) = match self.layer.servers.get_key_value(&*upstream) {
            Some((name, tools)) => (name.clone(), tools.clone()),
            None => (Arc::from(&*upstream), Tools::default()),
        };
        let caller = caller_tools::<I>(request.extensions(), &upstream);
        let calls: Arc<[CallOutcome]> = mcp
            .envelope()
            .messages()
            .iter()
            .map(|message| {
                let decision = match message.tool() {
                    Some(tool) if !server.allows(tool) => Decision::Refused(Rule::Upstream),
                    Some(tool) if caller.as_ref().is_some_and(|c| !c.allows(tool)) => {
                        Decision::Refused(Rule::Caller)
                    }
                    _ => Decision::Allowed,
                };
                CallOutcome::new(message, decision)
            })
            .collect();
        let refused = calls.iter().any(|c| c.decision != Decision::Allowed);
        let outcome = McpOutcome::new(upstream, calls);
        if refused {
            let answer = refusal(&mcp, outcome.calls());
            tracing::debug!(target: "tower_mcp_auth::mcp", upstream = outcome.upstream(), "tool call refused");
            return RequireToolsFuture::refused(answer, outcome);
        }
        let caller_narrows = caller.as_ref().is_some_and(|c| !c.is_all());
        // The ids of the lists to filter, collected only when a list would be narrowed.
        let ids: Vec<serde_json::Value> = if caller_narrows || !server.is_all() {
            mcp.envelope()
                .messages()
                .iter()
                .filter(|m| m.method() == Some("tools/list"))
                .filter_map(|m| m.id().map(|id| id.to_json()))
                .collect()
        } else {
            Vec::new()
        };
        let filter = (!ids.is_empty()).then(|| {
            // An answer compressed upstream could not be read to be filtered.
            request.headers_mut().remove(ACCEPT_ENCODING);
            Arc::new(ListFilter {
                ids,
                server,
                caller: caller.unwrap_or_default(),
                private: caller_narrows,
                cacheable: mcp.revision() >= Revision::V2026_07_28,
            })
        });
        RequireToolsFuture::inner(self.inner.call(request), filter, Some(outcome))
    }
}

pin_project! {
    /// Response future of [`RequireTools`].
    pub struct RequireToolsFuture<F> {
        #[pin]
        state: State<F>,
        outcome: Option<McpOutcome>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F, filter: Option<Arc<ListFilter>> },
        Refused { response: Option<Response<Bytes>> },
    }
}

impl<F> RequireToolsFuture<F> {
    fn inner(future: F, filter: Option<Arc<ListFilter>>, outcome: Option<McpOutcome>) -> Self {
        Self {
            state: State::Inner { future, filter },
            outcome,
        }
    }

    fn refused(response: Response<Bytes>, outcome: McpOutcome) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
            outcome: Some(outcome),
        }
    }
}

impl<F, B, E> Future for RequireToolsFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<McpResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.state.project() {
            StateProj::Inner { future, filter } => {
                let response = match future.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(response)) => response,
                };
                match filter.take() {
                    Some(filter) if response.status().is_success() => {
                        let (mut parts, body) = response.into_parts();
                        let mode = match parts
                            .headers
                            .get(CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                        {
                            Some(t)
                                if t.trim_start()
                                    .to_ascii_lowercase()
                                    .starts_with("text/event-stream") =>
                            {
                                Mode::Sse
                            }
                            _ => Mode::Json,
                        };
                        parts.headers.remove(CONTENT_LENGTH);
                        if filter.private {
                            // Nor may an HTTP cache share it across callers.
                            parts
                                .headers
                                .insert(CACHE_CONTROL, http::HeaderValue::from_static("private"));
                        }
                        let body = if parts.headers.contains_key(CONTENT_ENCODING) {
                            // Never relay what could not be filtered.
                            parts.headers.remove(CONTENT_ENCODING);
                            McpResponseBody::failed()
                        } else {
                            McpResponseBody::filtered(body, filter, mode)
                        };
                        Response::from_parts(parts, body)
                    }
                    _ => response.map(McpResponseBody::inner),
                }
            }
            StateProj::Refused { response } => response
                .take()
                .expect("future polled after completion")
                .map(McpResponseBody::full),
        };
        // A layer inside may have refused the call already (a scope check): its outcome stands.
        if let Some(outcome) = this.outcome.take() {
            if response.extensions().get::<McpOutcome>().is_none() {
                response.extensions_mut().insert(outcome);
            }
        }
        Poll::Ready(Ok(response))
    }
}

impl<F> fmt::Debug for RequireToolsFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireToolsFuture").finish_non_exhaustive()
    }
}
