//! CORS for browser clients: answered only for requests that carry `Origin`.
//!
//! A request without `Origin` is not a cross-origin request: it skips the CORS layer (whose configuration would
//! otherwise be cloned per request) and its response gets only the `Vary` header the layer would have written,
//! prepared once, so a cache never serves a response made for one origin to another.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    extract::Request,
    http::{header, HeaderName, HeaderValue, Method},
    response::Response,
};
use futures_util::future::{BoxFuture, Either};
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::origin::Origins;

/// The layer: CORS with the allowed origins for requests carrying `Origin`.
#[derive(Clone)]
pub struct Cors {
    layer: Arc<CorsLayer>,
}

/// The `Vary` value the CORS layer writes by default: its answer depends on these request headers.
const VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

impl Cors {
    /// The CORS answers for `origins`: the MCP methods and headers, a 10-minute preflight cache.
    pub fn new(origins: &Origins) -> Self {
        let mcp = |name| HeaderName::from_static(name);
        let layer = CorsLayer::new()
            .allow_origin(AllowOrigin::list(
                origins
                    .allowed()
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok()),
            ))
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                mcp("mcp-session-id"),
                mcp("mcp-protocol-version"),
                mcp("mcp-method"),
                mcp("mcp-name"),
                mcp("last-event-id"),
                mcp("x-litellm-api-key"),
                mcp("x-mcp-servers"),
                mcp("x-mcp-auth"),
            ])
            .expose_headers([
                header::WWW_AUTHENTICATE,
                mcp("mcp-session-id"),
                mcp("mcp-protocol-version"),
                mcp("mcp-method"),
                mcp("mcp-name"),
            ])
            .max_age(Duration::from_secs(600));
        Self {
            layer: Arc::new(layer),
        }
    }
}

impl<S> Layer<S> for Cors {
    type Service = CorsService<S>;

    fn layer(&self, inner: S) -> CorsService<S> {
        CorsService {
            inner,
            cors: self.clone(),
        }
    }
}

/// The service of [`Cors`].
#[derive(Clone)]
pub struct CorsService<S> {
    inner: S,
    cors: Cors,
}

pin_project! {
    /// The response of a request without `Origin`, with the prepared `Vary` header.
    pub struct AddVary<F> {
        #[pin]
        inner: F,
    }
}

impl<F, E> Future for AddVary<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        response.headers_mut().append(header::VARY, VARY);
        Poll::Ready(Ok(response))
    }
}

impl<S> Service<Request> for CorsService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<BoxFuture<'static, Result<Response, S::Error>>, AddVary<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.headers().contains_key(header::ORIGIN) {
            // Rare on an MCP gateway (browser clients only): the CORS layer is built around this request.
            let cors = self.cors.layer.layer(self.inner.clone());
            return Either::Left(Box::pin(async move {
                Ok(cors.oneshot(request).await?.map(axum::body::Body::new))
            }));
        }
        Either::Right(AddVary {
            inner: self.inner.call(request),
        })
    }
}
