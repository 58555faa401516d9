//! Future types

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{
    config::Config,
    decision::{settle, Plan},
};
use crate::{
    body::ResponseBody,
    credentials::Credential,
    response::Rejection,
    timeout::{LazyTimeout, TimedOut},
    trace::{self, Outcome},
    validate::{BoxError, Validator, Verdict},
    Presented,
};

/// Everything the inner call needs once the validator has answered.
pub(crate) struct Pending<S, ReqBody> {
    pub(crate) inner: S,
    pub(crate) request: Request<ReqBody>,
    pub(crate) config: Arc<Config>,
    pub(crate) credential: Credential,
    pub(crate) plan: Plan,
}

/// What follows the validator's answer.
enum Next<S, ReqBody> {
    /// Call the inner service with the request.
    Call(S, Request<ReqBody>),
    /// Answer with the layer's own response.
    Answer(Response<Bytes>),
}

impl<S, ReqBody> Pending<S, ReqBody> {
    /// Turns the validator's answer into the inner call, or the response that refuses it.
    fn finish<I, E>(self, answer: Result<Result<Verdict<I>, E>, TimedOut>) -> Next<S, ReqBody>
    where
        I: Clone + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        let Self {
            inner,
            mut request,
            config,
            credential,
            plan,
        } = self;
        match settle(
            &config,
            &mut request,
            &Presented::new(credential.as_str()),
            plan,
            answer,
        ) {
            None => Next::Call(inner, request),
            Some(response) => Next::Answer(response),
        }
    }
}

pin_project! {
    /// Response future of [`McpAuth`](super::McpAuth): validates, then calls the inner service.
    pub struct ResponseFuture<S, V, ReqBody>
    where
        S: Service<Request<ReqBody>>,
        V: Validator,
    {
        #[pin]
        state: State<S, V, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, V, ReqBody>
    where
        S: Service<Request<ReqBody>>,
        V: Validator,
    {
        Rejected {
            response: Option<Response<Bytes>>,
        },
        Validating {
            #[pin]
            validation: LazyTimeout<V::Future>,
            pending: Option<Pending<S, ReqBody>>,
        },
        Inner {
            #[pin]
            future: S::Future,
        },
    }
}

impl<S, V, ReqBody> ResponseFuture<S, V, ReqBody>
where
    S: Service<Request<ReqBody>>,
    V: Validator,
{
    pub(crate) fn rejected(rejection: Rejection, source: &'static str, grpc: bool) -> Self {
        let response = rejection.into_response(grpc);
        trace::record(
            Outcome::Rejected,
            source,
            Some(response.status().as_u16()),
            None,
            None,
        );
        Self::answered(response)
    }

    /// The layer answered without calling the inner service (its event is already recorded).
    pub(crate) fn answered(response: Response<Bytes>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    /// The validator answered at once and the inner service was called from `call`.
    pub(crate) fn inner(future: S::Future) -> Self {
        Self {
            state: State::Inner { future },
        }
    }

    pub(crate) fn validating(
        validation: LazyTimeout<V::Future>,
        pending: Pending<S, ReqBody>,
    ) -> Self {
        Self {
            state: State::Validating {
                validation,
                pending: Some(pending),
            },
        }
    }
}

impl<S, V, ReqBody, ResBody> Future for ResponseFuture<S, V, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    V: Validator,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Rejected { response } => {
                    let response = response.take().expect("future polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::full)));
                }
                StateProj::Validating {
                    validation,
                    pending,
                } => {
                    let answer = ready!(validation.poll(cx));
                    let pending = pending.take().expect("future polled after completion");
                    match pending.finish(answer) {
                        Next::Call(mut inner, request) => state.set(State::Inner {
                            future: inner.call(request),
                        }),
                        Next::Answer(response) => {
                            return Poll::Ready(Ok(response.map(ResponseBody::full)))
                        }
                    }
                }
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::new)));
                }
            }
        }
    }
}

impl<S, V, ReqBody> fmt::Debug for ResponseFuture<S, V, ReqBody>
where
    S: Service<Request<ReqBody>>,
    V: Validator,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
