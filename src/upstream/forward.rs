//! `ForwardCredentialsLayer`: on the way out, each upstream gets its own credential and no other.

use std::{
    fmt,
    future::Future,
    mem,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{
    header::{AUTHORIZATION, COOKIE, HOST},
    uri::PathAndQuery,
    HeaderMap, HeaderName, Request, Uri,
};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{
    auth::X_API_KEY,
    config::UpstreamConfig,
    hop_by_hop::{remove_hop_by_hop, remove_matching},
    refused::Refused,
};
use crate::{
    auth::DEFAULT_KEY_HEADER,
    client_credentials::{DEFAULT_CLIENT_AUTH_HEADER, PREFIX},
    validate::BoxError,
};

#[derive(Clone, Debug)]
struct Forwarding {
    upstream: UpstreamConfig,
    key_header: HeaderName,
    client_auth_header: HeaderName,
}

impl Forwarding {
    /// Rewrites `request` for the upstream: strip, then set, then pin the origin; or refuses it, untouched.
    fn prepare<B>(&self, request: &mut Request<B>) -> Result<(), Refused> {
        let chosen = match self.upstream.choose(request.extensions()) {
            Ok(chosen) => chosen,
            Err(refused) => {
                tracing::debug!(
                    target: "tower_mcp_auth::upstream",
                    upstream = self.upstream.name(),
                    refused = %refused,
                    "upstream request refused"
                );
                return Err(refused);
            }
        };
        let headers = request.headers_mut();
        // Connection-listed headers go first, so no `Connection` value can remove what is set below.
        remove_hop_by_hop(headers);
        self.remove_credentials(headers);
        let source = self.upstream.write(chosen, headers);
        headers.insert(HOST, self.upstream.host().clone());
        pin_origin(request.uri_mut(), self.upstream.url());
        tracing::debug!(
            target: "tower_mcp_auth::upstream",
            upstream = self.upstream.name(),
            credential = source,
            "upstream credential"
        );
        Ok(())
    }

    /// Removes every header that carries a credential: the gateway's, the client's, and the credential slots
    /// this layer fills; `Host`, which is set again for the upstream; and cookies, unless the upstream takes
    /// them. One pass over the names finds them (usually none), rather than a hashed removal per name.
    fn remove_credentials(&self, headers: &mut HeaderMap) {
        let fixed = [
            &HOST,
            &AUTHORIZATION,
            &X_API_KEY,
            &self.key_header,
            &self.client_auth_header,
        ];
        let cookies = !self.upstream.forwards_cookies();
        remove_matching(headers, |name| {
            fixed.contains(&name)
                || name.as_str().starts_with(PREFIX)
                || (cookies && *name == COOKIE)
        });
    }
}

/// Sets the scheme and authority of `uri` to those of `url`, keeping the path and query.
fn pin_origin(uri: &mut Uri, url: &Uri) {
    let mut parts = mem::take(uri).into_parts();
    parts.scheme = url.scheme().cloned();
    parts.authority = url.authority().cloned();
    parts
        .path_and_query
        .get_or_insert(PathAndQuery::from_static("/"));
    *uri = Uri::from_parts(parts).expect("scheme, authority and path are all set");
}

/// A [`Layer`] for the client side of one upstream: it wraps the HTTP client (hyper-util's, or any
/// `Service<Request<B>>`) that sends requests to that upstream, and sends it the right credential, and only it.
///
/// For each request, in this order:
/// 1. removes the hop-by-hop headers: every header `Connection` lists, then `Connection`, `Keep-Alive`, `TE`,
///    `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-Authorization` and `Proxy-Connection`;
/// 2. removes every credential header: the gateway key header, `Authorization`, `X-API-Key`, every `x-mcp-`
///    header and the deprecated client header; `Host`; and `Cookie`, unless the upstream
///    [opted in](UpstreamConfig::with_cookies); then sets `Host` to the upstream's ([`UpstreamConfig::host`]);
/// 3. sets the credential headers of [`UpstreamConfig::credential_headers`]. For a caller the gateway
///    authenticated: the [`OAuthPassthrough`](crate::OAuthPassthrough) token when this upstream accepts
///    passthrough, else the client's own credential for this upstream
///    ([`ClientCredentials`](crate::client_credentials::ClientCredentials)), else the configured
///    [`UpstreamAuth`](super::UpstreamAuth), else nothing; then the extra headers, which win. For a request
///    admitted only as a passthrough: its own token, and nothing gateway-held;
/// 4. sets the request URI's scheme and authority to those of the upstream's URL (path and query stay), so its
///    credential can reach no other host.
///
/// A request that [`McpAuthLayer`](crate::McpAuthLayer) never admitted (no [`Admission`](crate::Admission)), or
/// one admitted only as a passthrough and bound for an upstream that does not accept passthrough, is refused:
/// the inner service is not called and the call fails with [`Refused`] (fail closed, never "send it without a
/// credential"). Errors are boxed, as tower's own middleware (`Timeout`) does, so a gateway can tell `Refused`
/// apart by downcasting and answer `403`.
///
/// Because step 1 runs before step 3, `Connection: authorization` or `Connection: x-litellm-api-key` can neither
/// remove the credential this layer sets nor smuggle one through.
///
/// The layer serves one upstream: a gateway builds one client service per upstream and routes to it by path, so
/// the target a request's path names always wins over `x-mcp-servers`. The gateway key header and the deprecated
/// client header default to `x-litellm-api-key` and `x-mcp-auth`; set them as on the inbound layers.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_mcp_auth::{Admission, OAuthPassthrough};
/// use tower_mcp_auth::upstream::{ForwardCredentialsLayer, UpstreamConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let atlassian = UpstreamConfig::new("atlassian", "https://mcp.atlassian.com")
///     .unwrap()
///     .with_auth("bearer_token:gateway-own-token".parse().unwrap())
///     .with_passthrough(true);
/// // In a gateway, the inner service is the HTTP client, e.g. hyper-util's legacy `Client`.
/// let client = service_fn(|req: Request<()>| async move { Ok::<_, Infallible>(Response::new(req)) });
/// let upstream = ServiceBuilder::new().layer(ForwardCredentialsLayer::new(atlassian)).service(client);
///
/// let mut request = Request::post("/v1/mcp")
///     .header("x-litellm-api-key", "sk-gateway")
///     .header("connection", "authorization")
///     .body(())
///     .unwrap();
/// // As the inbound layer hands it over: admitted on the client's own token.
/// request.extensions_mut().insert(Admission::Passthrough);
/// request.extensions_mut().insert(OAuthPassthrough::new("user-oauth-token"));
///
/// let sent = upstream.oneshot(request).await.unwrap().into_body();
/// assert_eq!(sent.uri(), "https://mcp.atlassian.com/v1/mcp");
/// assert_eq!(sent.headers()["authorization"], "Bearer user-oauth-token");
/// assert!(sent.headers()["authorization"].is_sensitive());
/// assert!(sent.headers().get("x-litellm-api-key").is_none());
/// assert!(sent.headers().get("connection").is_none());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ForwardCredentialsLayer {
    forwarding: Arc<Forwarding>,
}

impl ForwardCredentialsLayer {
    /// A layer for `upstream`, with the default gateway key header (`x-litellm-api-key`) and deprecated client
    /// header (`x-mcp-auth`).
    pub fn new(upstream: UpstreamConfig) -> Self {
        Self {
            forwarding: Arc::new(Forwarding {
                upstream,
                key_header: DEFAULT_KEY_HEADER,
                client_auth_header: DEFAULT_CLIENT_AUTH_HEADER,
            }),
        }
    }

    /// Sets the gateway key header to remove, as given to
    /// [`McpAuthLayer::key_header`](crate::McpAuthLayer::key_header).
    pub fn key_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.forwarding).key_header = name;
        self
    }

    /// Sets the deprecated client header to remove, as given to
    /// [`TakeClientCredentialsLayer::client_auth_header`](crate::client_credentials::TakeClientCredentialsLayer::client_auth_header).
    pub fn client_auth_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.forwarding).client_auth_header = name;
        self
    }

    /// The upstream this layer sends requests to.
    pub fn upstream(&self) -> &UpstreamConfig {
        &self.forwarding.upstream
    }
}

impl<S> Layer<S> for ForwardCredentialsLayer {
    type Service = ForwardCredentials<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardCredentials {
            inner,
            forwarding: Arc::clone(&self.forwarding),
        }
    }
}

/// Middleware that sends one upstream its credential, and only it; built by [`ForwardCredentialsLayer`].
///
/// All its work happens in `call`, before the inner service is called. Its error is boxed: the inner service's
/// error, or [`Refused`] for a request it would not send.
#[derive(Clone, Debug)]
pub struct ForwardCredentials<S> {
    inner: S,
    forwarding: Arc<Forwarding>,
}

impl<S> ForwardCredentials<S> {
    /// The upstream this service sends requests to.
    pub fn upstream(&self) -> &UpstreamConfig {
        &self.forwarding.upstream
    }

    crate::macros::inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for ForwardCredentials<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ForwardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let state = match self.forwarding.prepare(&mut request) {
            Ok(()) => State::Inner {
                future: self.inner.call(request),
            },
            Err(refused) => State::Refused {
                refused: Some(refused),
            },
        };
        ForwardFuture { state }
    }
}

pin_project! {
    /// Response future of [`ForwardCredentials`]: the inner service's, or an immediate [`Refused`].
    pub struct ForwardFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F },
        Refused { refused: Option<Refused> },
    }
}

impl<F, T, E> Future for ForwardFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => future.poll(cx).map_err(Into::into),
            StateProj::Refused { refused } => {
                let refused = refused.take().expect("future polled after completion");
                Poll::Ready(Err(refused.into()))
            }
        }
    }
}

impl<F> fmt::Debug for ForwardFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardFuture").finish_non_exhaustive()
    }
}
