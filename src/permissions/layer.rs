//! `RequireUpstreamLayer`: answers `403` where the caller's identity may not use the upstream a request targets.

use std::{
    borrow::Cow,
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Extensions, HeaderMap, Request, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::upstreams::UpstreamAccess;
use crate::{
    admission::Admission,
    body::ResponseBody,
    identity::Authenticated,
    response::json_error,
    route::{McpRoute, RouteError, DEFAULT_ROUTE_PREFIX},
};

/// Which upstream a request targets: a closure `Fn(&Uri, &HeaderMap) -> Option<String>`, or
/// [`RequireUpstreamLayer::path_segment`]'s rule. `None` means "no upstream": the request goes on unchecked
/// (the router answers it, with a 404 for instance).
///
/// The target must be read the way the router reads it, so that the upstream checked is the upstream reached.
pub trait TargetUpstream {
    /// The name of the upstream the request with `uri`, `headers` and `extensions` targets, borrowed from the
    /// request where it can be (it is read for every request).
    fn target<'a>(
        &self,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        extensions: &'a Extensions,
    ) -> Option<Cow<'a, str>>;
}

impl<F> TargetUpstream for F
where
    F: Fn(&Uri, &HeaderMap) -> Option<String>,
{
    fn target<'a>(
        &self,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        _: &'a Extensions,
    ) -> Option<Cow<'a, str>> {
        self(uri, headers).map(Cow::Owned)
    }
}

/// The rule of [`RequireUpstreamLayer::path_segment`]: the path segment after a prefix.
#[derive(Clone, Debug)]
pub struct PathSegment {
    // Shared: the service holding it is cloned for every request.
    prefix: Arc<str>,
}

impl PathSegment {
    /// The segment right after `prefix` (`"/mcp/"`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }
}

impl TargetUpstream for PathSegment {
    /// The [`McpRoute`] an outer layer inserted, when the prefix is [`DEFAULT_ROUTE_PREFIX`] (the route was
    /// read once, the way the router reads it); else the path parsed under the prefix.
    fn target<'a>(
        &self,
        uri: &'a Uri,
        _: &'a HeaderMap,
        extensions: &'a Extensions,
    ) -> Option<Cow<'a, str>> {
        if &*self.prefix == DEFAULT_ROUTE_PREFIX {
            if let Some(route) = McpRoute::from_extensions(extensions) {
                return Some(Cow::Borrowed(route.name()));
            }
        }
        match McpRoute::parse_under(&self.prefix, uri.path()) {
            Ok(route) => Some(Cow::Owned(route.name().to_owned())),
            // A router or proxy that normalises `..`, `//` or percent-encoding could reach another upstream than
            // the first segment names: the whole rest is the target, a name no upstream has, so only a caller
            // that may use every upstream goes on.
            Err(RouteError::NotCanonical) => {
                let rest = uri.path().strip_prefix(&*self.prefix).unwrap_or(uri.path());
                Some(Cow::Owned(rest.to_ascii_lowercase()))
            }
            Err(_) => None,
        }
    }
}

/// A [`Layer`] that lets a request reach its upstream only if the caller's identity
/// ([`Authenticated<I>`], `I:` [`UpstreamAccess`]) may use it; otherwise it answers
/// `403 {"error":"access_denied"}`, naming the upstream and never the key.
///
/// Put it inside [`McpAuthLayer`](crate::McpAuthLayer), whose [`Admission`] it reads:
///
/// | admission | answer |
/// |---|---|
/// | authenticated, identity may use the target | the inner service |
/// | authenticated, identity may not use it | `403 access_denied` |
/// | passthrough only | the inner service: the route's passthrough policy alone governs it |
/// | none (the layer is not behind `McpAuthLayer`), or no `Authenticated<I>` of this `I` | `403`, fail closed |
/// | no target (the rule returns `None`) | the inner service |
///
/// See the [module docs](super) for an example.
pub struct RequireUpstreamLayer<I, T> {
    target: T,
    _identity: PhantomData<fn() -> I>,
}

impl<I, T> RequireUpstreamLayer<I, T> {
    /// A layer that reads each request's target upstream with `target`.
    pub fn new(target: T) -> Self {
        Self {
            target,
            _identity: PhantomData,
        }
    }
}

impl<I> RequireUpstreamLayer<I, PathSegment> {
    /// A layer whose target upstream is the path segment right after `prefix`: with `"/mcp/"`, `/mcp/atl/x`
    /// targets `atl`. A path under the prefix that is not canonical (dot segments, `//`, percent-encoding)
    /// targets no upstream a restricted identity may use, so it passes only for identities that may use every
    /// upstream (and passthrough requests, which the passthrough policy already refuses on such paths).
    pub fn path_segment(prefix: &str) -> Self {
        // `/mcp` and `/mcp/` are one prefix.
        let prefix = if prefix.ends_with('/') {
            prefix.into()
        } else {
            format!("{prefix}/").into()
        };
        Self::new(PathSegment { prefix })
    }
}

impl<I, T: Clone> Clone for RequireUpstreamLayer<I, T> {
    fn clone(&self) -> Self {
        Self::new(self.target.clone())
    }
}

impl<I, T: fmt::Debug> fmt::Debug for RequireUpstreamLayer<I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireUpstreamLayer")
            .field("target", &self.target)
            .finish()
    }
}

impl<S, I, T: Clone> Layer<S> for RequireUpstreamLayer<I, T> {
    type Service = RequireUpstream<S, I, T>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireUpstream {
            inner,
            target: self.target.clone(),
            _identity: PhantomData,
        }
    }
}

/// Middleware that checks the caller may use the target upstream; built by [`RequireUpstreamLayer`].
pub struct RequireUpstream<S, I, T> {
    inner: S,
    target: T,
    _identity: PhantomData<fn() -> I>,
}

impl<S, I, T> RequireUpstream<S, I, T> {
    crate::macros::inner_service_accessors!();
}

impl<S: Clone, I, T: Clone> Clone for RequireUpstream<S, I, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            target: self.target.clone(),
            _identity: PhantomData,
        }
    }
}

impl<S: fmt::Debug, I, T: fmt::Debug> fmt::Debug for RequireUpstream<S, I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireUpstream")
            .field("inner", &self.inner)
            .field("target", &self.target)
            .finish()
    }
}

/// Whether the request may reach `upstream`.
fn permitted<I: UpstreamAccess + Send + Sync + 'static>(
    extensions: &http::Extensions,
    upstream: &str,
) -> bool {
    match extensions.get::<Admission>() {
        Some(Admission::Authenticated(_)) => extensions
            .get::<Authenticated<I>>()
            .is_some_and(|caller| caller.identity().may_use(upstream)),
        Some(Admission::Passthrough) => true,
        None => false,
    }
}

/// `403 access_denied`, naming the upstream (the client named it; JSON-escaped).
fn denied(upstream: &str) -> Response<Bytes> {
    json_error(
        StatusCode::FORBIDDEN,
        "access_denied",
        &format!("this caller may not use the upstream MCP server {upstream:?}"),
    )
}

impl<S, I, T, ReqBody, ResBody> Service<Request<ReqBody>> for RequireUpstream<S, I, T>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    I: UpstreamAccess + Send + Sync + 'static,
    T: TargetUpstream,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = RequireUpstreamFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let refusal =
            match self
                .target
                .target(request.uri(), request.headers(), request.extensions())
            {
                Some(upstream) if !permitted::<I>(request.extensions(), &upstream) => {
                    tracing::debug!(
                        target: "tower_mcp_auth::permissions",
                        upstream = %upstream,
                        "upstream not permitted"
                    );
                    Some(denied(&upstream))
                }
                _ => None,
            };
        let state = match refusal {
            Some(response) => State::Denied {
                response: Some(response),
            },
            None => State::Inner {
                future: self.inner.call(request),
            },
        };
        RequireUpstreamFuture { state }
    }
}

pin_project! {
    /// Response future of [`RequireUpstream`].
    pub struct RequireUpstreamFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F },
        Denied { response: Option<Response<Bytes>> },
    }
}

impl<F, B, E> Future for RequireUpstreamFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => future
                .poll(cx)
                .map_ok(|response| response.map(ResponseBody::new)),
            StateProj::Denied { response } => {
                let response = response.take().expect("future polled after completion");
                Poll::Ready(Ok(response.map(ResponseBody::full)))
            }
        }
    }
}

impl<F> fmt::Debug for RequireUpstreamFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireUpstreamFuture")
            .finish_non_exhaustive()
    }
}
