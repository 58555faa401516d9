//! `McpRequestLayer`: reads each POST body's JSON-RPC envelope once, checks the routing headers against it,
//! and hands the [`McpRequest`] to the layers inside.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header::CONTENT_TYPE, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::LengthLimitError;
use tower_layer::Layer;
use tower_service::Service;

use super::{
    envelope::{Envelope, RequestId},
    revision::Revision,
    routing::{self, Refusal},
};
use crate::{body::ResponseBody, response::json_error, validate::BoxError};

/// The default largest body read: 4 MiB.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// Request extension: the JSON-RPC envelope of a POST body and the revision the request speaks, read once by
/// [`McpRequestLayer`] for every layer inside it (permissions, scopes, logs, metrics). Cloning it is a
/// reference-count increment.
#[derive(Clone, Debug)]
pub struct McpRequest(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    envelope: Envelope,
    revision: Revision,
}

impl McpRequest {
    /// An extension for `envelope`, spoken in `revision`.
    pub fn new(envelope: Envelope, revision: Revision) -> Self {
        Self(Arc::new(Inner { envelope, revision }))
    }

    /// The body's envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.0.envelope
    }

    /// The revision `MCP-Protocol-Version` names, or [`Revision::DEFAULT`] without it.
    pub fn revision(&self) -> Revision {
        self.0.revision
    }
}

/// A JSON-RPC error answer (`{"jsonrpc":"2.0","id":…,"error":{"code":…,"message":…}}`) with `status`.
pub(crate) fn jsonrpc_error(
    status: StatusCode,
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    data: Option<serde_json::Value>,
) -> Response<Bytes> {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.map_or(serde_json::Value::Null, RequestId::to_json),
        "error": error,
    });
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn refuse(refusal: Refusal) -> Response<Bytes> {
    jsonrpc_error(
        refusal.status,
        refusal.id.as_ref(),
        refusal.code,
        &refusal.message,
        refusal.data,
    )
}

/// A [`Layer`] that reads the JSON-RPC envelope of every POST body (at most `max_body` bytes) and checks the
/// request's routing headers against it, before anything inside runs:
///
/// | request | answer |
/// |---|---|
/// | `MCP-Protocol-Version` of a revision this crate does not know ([`Revision`]) | `400`, JSON-RPC `-32022` listing the supported ones |
/// | POST body over `max_body` | `413 {"error":"payload_too_large"}` |
/// | not JSON / not JSON-RPC / a duplicate key in the envelope, `params` or `params._meta` / a known method in another case / a name-bearing method without a string name | `400`, JSON-RPC `-32700` or `-32600` |
/// | a batch in a revision that removed batching (2025-06-18 and later) | `400`, JSON-RPC `-32600` |
/// | `Mcp-Method` / `Mcp-Name` / the body's `_meta` protocol version disagreeing with the body or header; from 2026-07-28 `Mcp-Method` or `Mcp-Name` missing | `400`, JSON-RPC `-32020` (`HeaderMismatch`) |
/// | anything else | the inner service, with [`McpRequest`] in the extensions (POST only) and the body, read whole, as `B::from(bytes)` |
///
/// Requests other than POST only have their `MCP-Protocol-Version` checked.
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_mcp_auth::mcp::{McpRequest, McpRequestLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = ServiceBuilder::new()
///     .layer(McpRequestLayer::new())
///     .service(service_fn(|req: Request<Full<Bytes>>| async move {
///         let tool = req.extensions().get::<McpRequest>()
///             .and_then(|m| m.envelope().single()?.tool().map(str::to_owned));
///         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(tool.unwrap_or_default()))))
///     }));
/// let call = |name: &str| Request::post("/mcp/a")
///     .header("mcp-protocol-version", "2026-07-28")
///     .header("mcp-method", "tools/call")
///     .header("mcp-name", name)
///     .body(Full::new(Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#)))
///     .unwrap();
/// assert_eq!(service.clone().oneshot(call("echo")).await.unwrap().status(), StatusCode::OK);
/// assert_eq!(service.oneshot(call("add")).await.unwrap().status(), StatusCode::BAD_REQUEST);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct McpRequestLayer {
    max_body: usize,
}

impl McpRequestLayer {
    /// A layer reading bodies of at most [`DEFAULT_MAX_BODY`] bytes.
    pub const fn new() -> Self {
        Self {
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// The largest body read; a larger one is answered `413`.
    pub const fn max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }
}

impl Default for McpRequestLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for McpRequestLayer {
    type Service = McpRequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        McpRequestService {
            inner,
            max_body: self.max_body,
        }
    }
}

/// Middleware built by [`McpRequestLayer`].
#[derive(Clone)]
pub struct McpRequestService<S> {
    inner: S,
    max_body: usize,
}

impl<S> McpRequestService<S> {
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

impl<S: fmt::Debug> fmt::Debug for McpRequestService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpRequestService")
            .field("inner", &self.inner)
            .field("max_body", &self.max_body)
            .finish()
    }
}

/// `413 {"error":"payload_too_large"}`, as the crate's other refusals are shaped.
fn too_large() -> Response<Bytes> {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is larger than the gateway reads",
    )
}

/// Reads `body` whole, at most `max` bytes.
async fn read<B>(body: B, max: usize) -> Result<Bytes, Response<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match crate::body::to_bytes(body, max).await {
        Ok(bytes) => Ok(bytes),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        // A server that bounds how long a body may take reports it as an I/O time-out: the client was slow,
        // its request was not malformed.
        Err(error) if timed_out(&*error) => Err(json_error(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time",
        )),
        Err(_) => Err(jsonrpc_error(
            StatusCode::BAD_REQUEST,
            None,
            -32700,
            "the request body could not be read",
            None,
        )),
    }
}

/// Whether `error`, or an error it wraps, is an [`std::io::Error`] of kind `TimedOut`.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The envelope of a POST, checked against its headers; `Err` is why it is refused.
fn judge(
    parts: &http::request::Parts,
    header_revision: Option<Revision>,
    revision: Revision,
    bytes: &[u8],
) -> Result<McpRequest, Refusal> {
    let envelope = Envelope::parse(bytes).map_err(Refusal::from)?;
    routing::check(&parts.headers, header_revision, revision, &envelope)?;
    Ok(McpRequest::new(envelope, revision))
}

impl<S, B, ResBody> Service<Request<B>> for McpRequestService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    B: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The ready service serves this request; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let max_body = self.max_body;
        Box::pin(async move {
            let header_revision = match routing::revision(request.headers()) {
                Ok(revision) => revision,
                Err(refusal) => return Ok(refuse(refusal).map(ResponseBody::full)),
            };
            let sent = request
                .headers()
                .contains_key(routing::PROTOCOL_VERSION)
                .then_some(header_revision);
            if request.method() != Method::POST {
                return Ok(inner.call(request).await?.map(ResponseBody::new));
            }
            let (mut parts, body) = request.into_parts();
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > max_body as u64) {
                return Ok(too_large().map(ResponseBody::full));
            }
            let bytes = match read(body, max_body).await {
                Ok(bytes) => bytes,
                Err(answer) => return Ok(answer.map(ResponseBody::full)),
            };
            match judge(&parts, sent, header_revision, &bytes) {
                Ok(mcp) => {
                    parts.extensions.insert(mcp);
                }
                Err(refusal) => {
                    tracing::debug!(target: "tower_mcp_auth::mcp", code = refusal.code, "request refused");
                    return Ok(refuse(refusal).map(ResponseBody::full));
                }
            }
            let request = Request::from_parts(parts, B::from(bytes));
            Ok(inner.call(request).await?.map(ResponseBody::new))
        })
    }
}
