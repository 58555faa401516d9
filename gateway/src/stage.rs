//! One step of the request path, as a plain function over the request and the service below it.
//!
//! The gateway's request path is a fixed stack of concrete services: each step is a [`Stage`] that holds its
//! state and the (concrete) service below it, and calls its function with both per request. Unlike a
//! middleware built from a closure around a boxed service, nothing is boxed, allocated or cloned per request:
//! the function borrows the state and the service below ([`Next`]), which it calls in place; only a stage that
//! must wait before it hands the request on takes a clone along ([`Next::owned`]). The function returns the
//! future of the rest of the path as it is ([`Step`], [`Next::then`]), not an `async fn`'s around it (see
//! [`Step`] for why).

use std::{
    convert::Infallible,
    future::{Future, Ready},
    pin::Pin,
    task::{Context, Poll},
};

use axum::{body::Body, extract::Request, response::Response};
use bytes::Bytes;
use futures_util::future::Either;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
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

/// The rest of the request path below a stage, polled ready and borrowed for this request: handing the request
/// on now calls it in place; a stage that must first wait for something takes it along with [`owned`](Self::owned).
pub struct Next<'a, S>(&'a mut S);

impl<S: Answers> Next<'_, S> {
    /// Hands `request` on and answers with what the rest of the path answers.
    pub fn run(self, request: Request) -> Run<S> {
        Mapped::new(self.0.call(request), answered)
    }

    /// The rest of the path, to hand the request on later (from a stage's own future): the service polled
    /// ready goes with it, and a clone takes its place for the next request.
    pub fn owned(self) -> Owned<S> {
        let fresh = self.0.clone();
        Owned(std::mem::replace(self.0, fresh))
    }

    /// The stage's own answer, as a [`Step`]: the request goes no further.
    pub fn answer(self, response: Response) -> Step<S> {
        Either::Right(std::future::ready(response))
    }

    /// [`run`](Self::run), as a [`Step`]: the stage lets the request through.
    pub fn pass(self, request: Request) -> Step<S> {
        Either::Left(self.run(request))
    }

    /// Hands `request` on, then answers with `finish(state, response)`: what a stage does after the rest of the
    /// path answered, without an `async fn` around the rest's future. `finish` returns the answer (a
    /// [`Response`]) or, for a stage that now and then must wait for something first, a [`Finish`]: a boxed
    /// future only on that rare path.
    pub fn then<T, R: Into<Finish>>(
        self,
        request: Request,
        state: T,
        finish: fn(T, Response) -> R,
    ) -> Then<S, T, R> {
        Then {
            future: self.run(request),
            state: Some(state),
            finish,
            later: None,
        }
    }
}

/// What the `finish` of [`Next::then`] decides.
pub enum Finish {
    /// The answer.
    Now(Response),
    /// The answer, once this future completes.
    Later(futures_util::future::BoxFuture<'static, Response>),
}

impl From<Response> for Finish {
    fn from(response: Response) -> Self {
        Self::Now(response)
    }
}

pin_project! {
    /// The future of [`Next::then`].
    pub struct Then<S: Answers, T, R = Response> {
        #[pin]
        future: Run<S>,
        state: Option<T>,
        finish: fn(T, Response) -> R,
        later: Option<futures_util::future::BoxFuture<'static, Response>>,
    }
}

impl<S: Answers, T, R: Into<Finish>> Future for Then<S, T, R> {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.project();
        let later = match this.later {
            Some(later) => later,
            None => {
                let response = std::task::ready!(this.future.poll(cx));
                let state = this.state.take().expect("polled after completion");
                match (this.finish)(state, response).into() {
                    Finish::Now(response) => return Poll::Ready(response),
                    Finish::Later(later) => this.later.insert(later),
                }
            }
        };
        later.as_mut().poll(cx)
    }
}

/// The rest of the request path, owned by a stage's future ([`Next::owned`]).
pub struct Owned<S>(S);

impl<S: Answers> Owned<S> {
    /// Hands `request` on and answers with what the rest of the path answers.
    pub fn run(mut self, request: Request) -> Run<S> {
        Mapped::new(self.0.call(request), answered)
    }
}

/// The future of [`Next::run`].
pub type Run<S> = Mapped<<S as Service<Request>>::Future, Result<Response, Infallible>, Response>;

/// What a stage written as a plain function returns: the rest of the path's answer ([`Next::pass`]), or its own
/// at once ([`Next::answer`]).
///
/// An `async fn` stage holds the future of the rest of the path in its own, where the compiler may give it two
/// places, and moves it there; the rest of the path is every step below, kilobytes. A stage that decides
/// before handing on returns a `Step`, and a stage that acts on the answer uses [`Next::then`]; only a step
/// that must wait for something else first (a lookup, a rate-limit store) is an `async` block, boxed, and
/// only on the path that needs it.
pub type Step<S> = Either<Run<S>, Ready<Response>>;

pin_project! {
    /// `future`, its output passed through a plain function. Unlike `futures`' `Map`, which moves its whole
    /// future out when it completes (for a step of the request path, a copy of every step below it), this
    /// keeps the future in place: the function is a `fn`, there is nothing to take.
    pub struct Mapped<Fut, T, U> {
        #[pin]
        future: Fut,
        map: fn(T) -> U,
    }
}

impl<Fut, T, U> Mapped<Fut, T, U> {
    /// `future`, its output mapped by `map`.
    pub fn new(future: Fut, map: fn(T) -> U) -> Self {
        Self { future, map }
    }
}

impl<Fut: Future<Output = T>, T, U> Future for Mapped<Fut, T, U> {
    type Output = U;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<U> {
        let this = self.project();
        this.future.poll(cx).map(*this.map)
    }
}

/// The response of a service that always answers.
pub fn answered(answer: Result<Response, Infallible>) -> Response {
    match answer {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A step of the request path: `function(&state, request, next)` for each request.
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

/// A stage calling `function` with `state`.
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
    F: Fn(&T, Request, Next<'_, S>) -> Fut + Clone,
    T: Clone,
    S: Answers,
    Fut: Future<Output = Response>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Mapped<Fut, Response, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service polled ready is borrowed for this call: nothing is cloned unless the stage keeps it.
        Mapped::new(
            (self.function)(&self.state, request, Next(&mut self.inner)),
            Ok,
        )
    }
}

/// After a layer whose responses wrap the body in a type of its own (tower-mcp-auth's refusals, the MCP
/// response filter): the response with the body as axum's [`Body`], as every stage above expects. A body passed
/// through untouched is unwrapped ([`IntoBody`]), not boxed again.
pub fn axum_body() -> AxumBodyLayer {
    AxumBodyLayer
}

/// The [`Layer`] of [`axum_body`].
#[derive(Clone, Copy, Debug)]
pub struct AxumBodyLayer;

impl<S> Layer<S> for AxumBodyLayer {
    type Service = AxumBody<S>;

    fn layer(&self, inner: S) -> AxumBody<S> {
        AxumBody(inner)
    }
}

/// The service of [`axum_body`].
#[derive(Clone, Debug)]
pub struct AxumBody<S>(S);

impl<S, B> Service<Request> for AxumBody<S>
where
    S: Service<Request, Response = http::Response<B>, Error = Infallible>,
    B: IntoBody,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        Mapped<S::Future, Result<http::Response<B>, Infallible>, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Mapped::new(self.0.call(request), with_axum_body)
    }
}

/// A service's answer with its body as axum's [`Body`] ([`IntoBody`]): what [`AxumBody`] maps its inner
/// service's answers with.
pub fn with_axum_body<B: IntoBody>(
    answer: Result<http::Response<B>, Infallible>,
) -> Result<Response, Infallible> {
    answer.map(|response| response.map(IntoBody::into_body))
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
