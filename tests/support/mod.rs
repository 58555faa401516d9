//! Shared fixtures: a scripted key store, an inner service that records what it saw, and a layer configured
//! the way the decision-table tests expect.
#![allow(dead_code, unreachable_pub)]

pub mod contract;
#[allow(unused_imports)]
pub use testkit::tls;

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_mcp_auth::{
    validate_fn, Authenticated, McpAuthLayer, OAuthPassthrough, PassthroughPolicy, Validator,
    Verdict,
};

pub const PASSTHROUGH_ROUTE: &str = "/mcp/atlassian";
pub const METADATA_URL: &str =
    "https://gw.example/.well-known/oauth-protected-resource/mcp/atlassian";
pub const TIMEOUT: Duration = Duration::from_millis(200);

/// Every credential the scripted store knows, for "never printed / never echoed" checks.
pub const SECRETS: &[&str] = &[
    "sk-good",
    "sk-other-good",
    "sk-blocked",
    "sk-error",
    "sk-hang",
    "upstream-oauth-token",
    "made-up-a",
    "invalid-jwt",
];

/// What the store was asked.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<String>>>);

impl Calls {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A key store with fixed answers: `sk-good` → alice, `sk-other-good` → bob, `sk-blocked` → denied, `invalid-jwt` → invalid,
/// `sk-error` → an error, `sk-hang` → never answers, anything else → unknown.
pub fn scripted_store(
    calls: Calls,
) -> impl Validator<
    Identity = String,
    Error = io::Error,
    Future = BoxFuture<Result<Verdict<String>, io::Error>>,
> {
    validate_fn(move |key: String| {
        calls.0.lock().unwrap().push(key.clone());
        Box::pin(async move {
            match key.as_str() {
                "sk-good" => Ok(Verdict::Valid("alice".to_owned())),
                "sk-other-good" => Ok(Verdict::Valid("bob".to_owned())),
                "sk-blocked" => Ok(Verdict::Denied),
                "invalid-jwt" => Ok(Verdict::Invalid),
                "sk-error" => Err(io::Error::other("key store unreachable")),
                "sk-hang" => std::future::pending().await,
                _ => Ok(Verdict::Unknown),
            }
        }) as BoxFuture<_>
    })
}

/// The layer as the decision table assumes it: passthrough on `/mcp/atlassian` only, with its metadata URL.
pub fn layer<V: Validator>(validator: V) -> McpAuthLayer<V> {
    McpAuthLayer::new(validator)
        .passthrough(PassthroughPolicy::path_prefixes([PASSTHROUGH_ROUTE]))
        .resource_metadata(PASSTHROUGH_ROUTE, METADATA_URL)
        .validation_timeout(TIMEOUT)
}

/// What the inner service saw of one request.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub identity: Option<String>,
    pub passthrough: Option<String>,
    pub headers: HeaderMap,
}

#[derive(Clone, Default)]
pub struct Inner(Arc<Mutex<Vec<Seen>>>);

impl Inner {
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut self.0.lock().unwrap())
    }

    /// An inner service recording each request it is called with and answering 200 "inner".
    pub fn service<B: Send + 'static>(
        &self,
    ) -> impl Service<
        Request<B>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
           + Send
           + Sync {
        let seen = self.0.clone();
        service_fn(move |req: Request<B>| {
            seen.lock().unwrap().push(Seen {
                identity: req
                    .extensions()
                    .get::<Authenticated<String>>()
                    .map(|a| a.identity().clone()),
                passthrough: req
                    .extensions()
                    .get::<OAuthPassthrough>()
                    .map(|p| p.expose_token().to_owned()),
                headers: req.headers().clone(),
            });
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"inner")))) }
        })
    }
}

/// One response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends `request` through `layer` around a recording inner service.
pub async fn send<V: Validator>(
    layer: &McpAuthLayer<V>,
    inner: &Inner,
    request: Request<()>,
) -> Answer
where
    V::Future: Send,
{
    let response = layer.layer(inner.service()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// Builds a request from a path and raw header pairs (values as bytes, so tests can send obs-text).
pub fn request(path: &str, headers: &[(&str, &[u8])]) -> Request<()> {
    let mut builder = Request::post(path);
    for (name, value) in headers {
        builder = builder.header(*name, http::HeaderValue::from_bytes(value).unwrap());
    }
    builder.body(()).unwrap()
}

/// A TRACE-level subscriber whose output is kept for inspection.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}
