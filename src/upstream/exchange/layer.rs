//! [`ExchangeTokenLayer`]: sends one upstream a token exchanged for it.

use std::{
    fmt,
    future::poll_fn,
    marker::PhantomData,
    mem,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::{future::BoxFuture, FutureExt as _};
use http::{header, HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    body::ResponseBody,
    identity::Authenticated,
    response::{is_grpc, Challenges, Rejection},
    secret::Fingerprint,
};

use super::{
    client::TokenExchange,
    config::ExchangeTarget,
    error::ExchangeError,
    token::{ExchangedToken, SubjectToken},
};

/// A [`Layer`] for the client side of one upstream that accepts only tokens issued for it: it exchanges the
/// subject token of the request's identity ([`Authenticated<I>`] with `I:` [`SubjectToken`]) for one whose
/// audience is this upstream, and sends that as `Authorization: Bearer`.
///
/// Put it inside [`ForwardCredentialsLayer`](crate::upstream::ForwardCredentialsLayer) (nearer the HTTP client), so the
/// exchanged token is set after that layer has removed every other credential:
///
/// | request | what happens |
/// |---|---|
/// | no identity, or one without a subject token (a gateway key) | passed on as [`ForwardCredentialsLayer`](crate::upstream::ForwardCredentialsLayer) prepared it |
/// | exchange succeeds | `Authorization: Bearer <exchanged>` (sensitive), inner service called |
/// | upstream answers 401 | the cached token is dropped, exchanged again, and the request sent once more |
/// | authorization server refuses the subject token (400, 403) | 401 `invalid_token`, with the route's challenge; inner service not called |
/// | any other status (401: the gateway's client authentication refused; 404: a wrong endpoint; 5xx), transport error, timeout | 503; inner service not called |
///
/// Retrying needs the request twice, so the request body must be `Clone` (e.g. `Full<Bytes>`: MCP messages
/// are small JSON documents; buffer a streaming body first, with a size limit).
pub struct ExchangeTokenLayer<I> {
    pub(super) exchange: TokenExchange,
    pub(super) target: Arc<ExchangeTarget>,
    pub(super) challenges: Challenges,
    pub(super) _identity: PhantomData<fn() -> I>,
}

impl<I> ExchangeTokenLayer<I> {
    /// Exchanges through `exchange` for `target`.
    pub fn new(exchange: TokenExchange, target: ExchangeTarget) -> Self {
        Self {
            exchange,
            target: Arc::new(target),
            challenges: Challenges::bare(),
            _identity: PhantomData,
        }
    }

    /// Names the route's RFC 9728 metadata in the 401 answered when the exchange is refused, as
    /// [`McpAuthLayer::resource_metadata`](crate::McpAuthLayer::resource_metadata) does.
    ///
    /// # Panics
    /// When `url` is not visible ASCII or holds `"` or `\`.
    pub fn resource_metadata(self, url: &str) -> Self {
        self.try_resource_metadata(url)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`resource_metadata`](Self::resource_metadata) for values read from configuration: a
    /// [`ConfigError`](crate::ConfigError) naming the URL instead of a panic.
    pub fn try_resource_metadata(mut self, url: &str) -> Result<Self, crate::ConfigError> {
        self.challenges = Challenges::with_resource_metadata(url)?;
        Ok(self)
    }
}

impl<I> Clone for ExchangeTokenLayer<I> {
    fn clone(&self) -> Self {
        Self {
            exchange: self.exchange.clone(),
            target: Arc::clone(&self.target),
            challenges: self.challenges.clone(),
            _identity: PhantomData,
        }
    }
}

impl<I> fmt::Debug for ExchangeTokenLayer<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeTokenLayer")
            .field("exchange", &self.exchange)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl<S, I> Layer<S> for ExchangeTokenLayer<I> {
    type Service = ExchangeToken<S, I>;

    fn layer(&self, inner: S) -> Self::Service {
        ExchangeToken {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware that sends one upstream a token exchanged for it; built by [`ExchangeTokenLayer`].
pub struct ExchangeToken<S, I> {
    pub(super) inner: S,
    pub(super) layer: ExchangeTokenLayer<I>,
}

impl<S: Clone, I> Clone for ExchangeToken<S, I> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, I> fmt::Debug for ExchangeToken<S, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeToken")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, I> ExchangeToken<S, I> {
    crate::macros::inner_service_accessors!();
}

impl<S, I, B, ResBody> Service<Request<B>> for ExchangeToken<S, I>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    I: SubjectToken + Clone + Send + Sync + 'static,
    B: Clone + Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The ready service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let identity = request
            .extensions()
            .get::<Authenticated<I>>()
            .map(|authenticated| authenticated.identity().clone());
        let Some(identity) = identity.filter(|identity| identity.subject_token().is_some()) else {
            return inner
                .call(request)
                .map(|r| r.map(|r| r.map(ResponseBody::new)))
                .boxed();
        };
        let layer = self.layer.clone();
        async move {
            let subject = identity.subject_token().expect("checked above");
            let grpc = is_grpc(request.headers());
            let refusal = |error: ExchangeError| {
                tracing::debug!(
                    target: "tower_mcp_auth::upstream",
                    %error,
                    subject = %Fingerprint::of(subject.token),
                    "token exchange failed"
                );
                let rejection = if error.is_refused() {
                    Rejection::Unauthorized {
                        challenges: layer.challenges.clone(),
                        token_sent: true,
                    }
                } else {
                    Rejection::Unavailable
                };
                rejection.into_response(grpc).map(ResponseBody::full)
            };
            let token = match layer.exchange.exchange(subject, &layer.target).await {
                Ok(token) => token,
                Err(error) => return Ok(refusal(error)),
            };
            let retry = copy(&request);
            let response = send(&mut inner, request, &token).await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response.map(ResponseBody::new));
            }
            drop(response);
            let token = match layer.exchange.exchange_again(subject, &layer.target).await {
                Ok(token) => token,
                Err(error) => return Ok(refusal(error)),
            };
            let response = send(&mut inner, retry, &token).await?;
            Ok(response.map(ResponseBody::new))
        }
        .boxed()
    }
}

/// A copy of `request` for the retry: everything but the extensions that are not `Clone`-able is kept.
pub(super) fn copy<B: Clone>(request: &Request<B>) -> Request<B> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    copy
}

/// Sets the exchanged token and calls `inner` once it is ready.
async fn send<S, B, ResBody>(
    inner: &mut S,
    mut request: Request<B>,
    token: &ExchangedToken,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.as_str()))
        .expect("checked when the token was read");
    value.set_sensitive(true);
    request.headers_mut().insert(header::AUTHORIZATION, value);
    poll_fn(|cx| inner.poll_ready(cx)).await?;
    inner.call(request).await
}
