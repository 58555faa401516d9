//! The gateway as one service.
//!
//! [`App`] is a cheap handle (one reference count) to the request path built for a configuration, or to
//! whichever one is current when the configuration reloads ([`crate::reload`]). Connections hold the handle, not a
//! copy of the path, and each request costs one boxed future at this boundary; below it the path is a fixed
//! stack of concrete services ([`crate::stage`]). [`Dispatch`] splits the path: `/mcp/NAME` requests go down
//! the MCP stack with their [`McpRoute`] read once, every other path to the router of the small endpoints
//! (discovery, health, metrics).

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{extract::Request, http::StatusCode, response::Response, Router};
use futures_util::future::{BoxFuture, Either, Ready};
use tower::{util::Oneshot, Service, ServiceExt as _};
use tower_mcp_auth::route::{McpRoute, RouteError};

use crate::{
    json_error,
    stage::{answered, Answers, Mapped},
};

/// What [`App`] holds: something that answers a request with a future of its own.
pub(crate) trait Serve: Send + Sync + 'static {
    /// The answer to `request`.
    fn serve(&self, request: Request) -> BoxFuture<'static, Response>;
}

impl<S: Answers> Serve for S {
    fn serve(&self, request: Request) -> BoxFuture<'static, Response> {
        Box::pin(Mapped::new(self.clone().oneshot(request), answered))
    }
}

/// The gateway's service: a shared handle to the request path. Cloning it is one reference count.
///
/// ```
/// use axum::{body::Body, http::Request, routing::get, Router};
/// use tower::ServiceExt as _;
///
/// # tokio_test_block_on(async {
/// let app = mcp_gateway::App::new(Router::new().route("/healthz", get(|| async { "ok" })));
/// let response = app.oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # });
/// # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct App(Arc<dyn Serve>);

impl App {
    /// The handle to `service`.
    pub fn new(service: impl Answers) -> Self {
        Self::of(service)
    }

    /// The handle to something answering per request (the reloader's current app).
    pub(crate) fn of(serve: impl Serve) -> Self {
        Self(Arc::new(serve))
    }

    /// The answer to `request`, without a clone of the handle.
    pub(crate) fn serve(&self, request: Request) -> BoxFuture<'static, Response> {
        self.0.serve(request)
    }
}

impl Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = Mapped<BoxFuture<'static, Response>, Response, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Mapped::new(self.0.serve(request), Ok)
    }
}

/// Sends `/mcp/NAME[/REST]` requests, with their [`McpRoute`] in the extensions, down `mcp`, and every other path
/// to `other`. A path below `/mcp/` that is not canonical (dot segments, empty inner segments, a backslash, any
/// percent-encoded byte) is a 400 whoever asks.
#[derive(Clone)]
pub struct Dispatch<M> {
    mcp: M,
    other: Router,
}

impl<M> Dispatch<M> {
    /// `mcp` for the MCP routes, `other` for the rest.
    pub fn new(mcp: M, other: Router) -> Self {
        Self { mcp, other }
    }
}

impl<M: Answers> Service<Request> for Dispatch<M> {
    type Response = Response;
    type Error = Infallible;
    type Future =
        Either<M::Future, Either<Oneshot<Router, Request>, Ready<Result<Response, Infallible>>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The MCP path is called as it was made ready (its future built in place, not moved into a `oneshot`,
        // and the path not cloned); the other routes' router is always ready and each request takes its own
        // clone.
        self.mcp.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match McpRoute::parse(request.uri().path()) {
            Ok(route) => {
                request.extensions_mut().insert(route);
                // Called now, as it was made ready: its future owns what it needs, nothing is cloned.
                Either::Left(self.mcp.call(request))
            }
            Err(RouteError::NotUnderPrefix) => {
                Either::Right(Either::Left(self.other.clone().oneshot(request)))
            }
            Err(_) => Either::Right(Either::Right(futures_util::future::ready(Ok(json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the path below /mcp/NAME must be canonical",
            ))))),
        }
    }
}
