//! One step of the request path, as a plain function over the request and the service below it.
//!
//! The gateway's request path is a fixed stack of concrete services: each step is a [`Stage`] that holds its
//! state and the (concrete) service below it, and calls its function with both per request. Unlike a
//! middleware built from a closure around a boxed service, nothing is boxed or allocated per request: the
//! service below is cloned as a value (a few reference counts), and the step's future is its function's own.

use std::{
    convert::Infallible,
    future::Future,
    task::{Context, Poll},
};

use axum::{body::Body, extract::Request, response::Response};
use bytes::Bytes;
use futures_util::{future::Map, FutureExt as _};
use tower::{util::MapResponseLayer, Layer, Service};
use tower_mcp_auth::{body::ResponseBody, mcp::McpResponseBody, BoxError};

/// A service that always answers: the shape of every service of the request path.
pub trait Answers:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Answers for S where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The rest of the request path below a stage, ready to take the request once.
pub struct Next<S>(S);

impl<S: Answers> Next<S> {
    /// Hands `request` on and answers with what the rest of the path answers.
    pub fn run(mut self, request: Request) -> impl Future<Output = Response> + Send + 'static {
        self.0.call(request).map(answered)
    }
}

/// The response of a service that always answers.
pub fn answered(answer: Result<Response, Infallible>) -> Response {
    match answer {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A response as the result of a service that always answers.
pub type Infallibly = fn(Response) -> Result<Response, Infallible>;

/// A step of the request path: `function(state, request, next)` for each request.
#[derive(Clone)]
pub struct Stage<F, T, S> {
    function: F,
    state: T,
    inner: S,
}

/// The [`Layer`] of [`Stage`]: `function` with `state` around whatever service it wraps.
#[derive(Clone)]
pub struct StageLayer<F, T> {
    function: F,
    state: T,
}

/// A stage calling `function` with (a clone of) `state`.
pub fn stage<F: Clone, T: Clone>(state: T, function: F) -> StageLayer<F, T> {
    StageLayer { function, state }
}

impl<F: Clone, T: Clone, S> Layer<S> for StageLayer<F, T> {
    type Service = Stage<F, T, S>;

    fn layer(&self, inner: S) -> Stage<F, T, S> {
        Stage {
            function: self.function.clone(),
            state: self.state.clone(),
            inner,
        }
    }
}

impl<F, T, S, Fut> Service<Request> for Stage<F, T, S>
where
    F: Fn(T, Request, Next<S>) -> Fut + Clone,
    T: Clone,
    S: Answers,
    Fut: Future<Output = Response>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Map<Fut, Infallibly>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service polled ready goes with this request; a fresh clone waits for the next one.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        (self.function)(self.state.clone(), request, Next(ready)).map(Ok as Infallibly)
    }
}

/// After a layer whose responses wrap the body in a type of its own (tower-mcp-auth's refusals, the MCP
/// response filter): the response with the body as axum's [`Body`], as every stage above expects. A body passed
/// through untouched is unwrapped ([`IntoBody`]), not boxed again.
pub fn axum_body<B: IntoBody>() -> MapResponseLayer<fn(http::Response<B>) -> Response> {
    MapResponseLayer::new(|response: http::Response<B>| response.map(IntoBody::into_body))
}

/// A response body that becomes axum's [`Body`]: a wrapper around a body passed through untouched gives the
/// body back; only a body of the wrapper's own (a refusal, a filtered list) is boxed.
pub trait IntoBody:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sized + 'static
{
    /// This body as axum's [`Body`].
    fn into_body(self) -> Body {
        Body::new(self)
    }
}

impl IntoBody for Body {
    fn into_body(self) -> Body {
        self
    }
}

impl<B: IntoBody> IntoBody for ResponseBody<B> {
    fn into_body(self) -> Body {
        self.into_inner()
            .map_or_else(Body::new, IntoBody::into_body)
    }
}

impl<B: IntoBody> IntoBody for McpResponseBody<B> {
    fn into_body(self) -> Body {
        self.into_inner()
            .map_or_else(Body::new, IntoBody::into_body)
    }
}
