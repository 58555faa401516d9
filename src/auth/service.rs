//! `McpAuth<S, V>`: the service the layer produces: credentials out of the headers, then the decision.

use std::{
    fmt, mem,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{
    config::Config,
    decision::{plan, settle},
    future::{Pending, ResponseFuture},
};
use crate::{
    body::ResponseBody,
    credentials::take_credentials,
    macros::inner_service_accessors,
    response::is_grpc,
    timeout::LazyTimeout,
    validate::{Recognition, Validator},
    Presented,
};

/// Whether a bearer sent beside a gateway key is known at once to be one of the validator's own credentials (a
/// second gateway key, a token of the gateway's issuer): it is then dropped, never forwarded upstream.
///
/// Only what the validator can tell at once is asked ([`Validator::recognize_now`]): a single validator that
/// must await its store cannot rule the bearer out, and it travels on unchecked (a second store round trip per
/// dual-credential request would be the price); put a [`Cache`](crate::validators::Cache) in front and a key
/// seen before is caught here too. A [`FirstOf`](crate::validators::FirstOf) chain never lets a bearer it cannot
/// rule out through.
fn known_gateway_key<V: Validator>(validator: &V, token: &str) -> bool {
    validator.recognize_now(token) == Recognition::Ours
}

/// Middleware that authenticates requests before they reach `S`; built by [`McpAuthLayer`](super::McpAuthLayer).
///
/// Rejections are responses, so the error type is the inner service's. Responses carry a
/// [`ResponseBody`]: the inner service's body, or the layer's small JSON body.
pub struct McpAuth<S, V> {
    inner: S,
    validator: Arc<V>,
    config: Arc<Config>,
}

impl<S, V> McpAuth<S, V> {
    pub(crate) fn new(inner: S, validator: Arc<V>, config: Arc<Config>) -> Self {
        Self {
            inner,
            validator,
            config,
        }
    }

    inner_service_accessors!();
}

impl<S: Clone, V> Clone for McpAuth<S, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            validator: Arc::clone(&self.validator),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, V> fmt::Debug for McpAuth<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpAuth")
            .field("inner", &self.inner)
            .field("validator", &std::any::type_name::<V>())
            .field("config", &self.config)
            .finish()
    }
}

impl<S, V, ReqBody, ResBody> Service<Request<ReqBody>> for McpAuth<S, V>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    V: Validator,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, V, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let credentials = match take_credentials(
            request.headers_mut(),
            &config.key_header,
            config.max_credential_len,
        ) {
            Ok(credentials) => credentials,
            Err(rejection) => {
                return ResponseFuture::rejected(rejection, "request", is_grpc(request.headers()))
            }
        };
        let validator = &*self.validator;
        let planned = plan(
            credentials,
            || config.allows(&request),
            |token| known_gateway_key(validator, token),
            || config.challenges(&request),
        );
        let (credential, plan) = match planned {
            Ok(planned) => planned,
            Err((rejection, source)) => {
                return ResponseFuture::rejected(rejection, source, is_grpc(request.headers()))
            }
        };

        // An answer at hand (static keys, a cache hit) is applied here, and the ready inner service called
        // directly: no clone of it, no request parked in the future.
        // Presented with its digest, computed at most once: the validators and the passthrough marker share it.
        let presented = Presented::new(credential.as_str());
        if let Some(answer) = self.validator.validate_presented_now(&presented) {
            return match settle(config, &mut request, &presented, plan, Ok(answer)) {
                None => ResponseFuture::inner(self.inner.call(request)),
                Some(response) => ResponseFuture::answered(response),
            };
        }
        let validation =
            LazyTimeout::new(self.validator.validate(credential.as_str()), config.timeout);
        // The service that was polled ready is the one that must be called; leave a clone in its place.
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        ResponseFuture::validating(
            validation,
            Pending {
                inner,
                request,
                config: Arc::clone(&self.config),
                credential,
                plan,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response, StatusCode};
    use tower::{service_fn, ServiceExt};

    use crate::{
        secret::sha256, validate_fn, validators::StaticKeys, McpAuthLayer, OAuthPassthrough,
        PassthroughPolicy, Validator, Verdict,
    };

    /// The passthrough marker the inner service got for a request with `headers`.
    async fn marker<V: Validator<Identity = &'static str>>(
        validator: V,
        headers: &[(&str, &str)],
    ) -> OAuthPassthrough {
        let layer = McpAuthLayer::new(validator)
            .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"]));
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = service_fn(move |request: Request<()>| {
            let tx = tx.clone();
            async move {
                tx.send(request.extensions().get::<OAuthPassthrough>().cloned())
                    .unwrap();
                Ok::<_, Infallible>(Response::new(()))
            }
        });
        let mut request = Request::post("/mcp/atlassian");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = tower::Layer::layer(&layer, inner)
            .oneshot(request.body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        rx.recv().unwrap().expect("a passthrough marker")
    }

    fn keys() -> StaticKeys<&'static str> {
        StaticKeys::new().with_key("sk-alice", "alice")
    }

    #[tokio::test]
    async fn a_lone_bearer_passes_through_with_the_digest_its_validation_computed() {
        let marker = marker(keys(), &[("authorization", "Bearer upstream-token")]).await;
        // Computed once, by the static keys, and handed on: not computed again when asked.
        assert_eq!(marker.digest, Some(sha256("upstream-token")));
        assert_eq!(marker.token_sha256(), sha256("upstream-token"));
    }

    #[tokio::test]
    async fn a_bearer_beside_a_key_never_carries_the_keys_digest() {
        let marker = marker(
            keys(),
            &[
                ("x-litellm-api-key", "sk-alice"),
                ("authorization", "Bearer upstream-token"),
            ],
        )
        .await;
        assert_eq!(marker.expose_token(), "upstream-token");
        assert_ne!(marker.digest, Some(sha256("sk-alice")));
        assert_eq!(marker.token_sha256(), sha256("upstream-token"));
    }

    #[tokio::test]
    async fn a_validator_that_does_not_hash_leaves_the_digest_to_be_computed_when_asked() {
        let store = validate_fn(|_: String| async { Ok::<_, Infallible>(Verdict::Unknown) });
        let marker = marker(store, &[("authorization", "Bearer upstream-token")]).await;
        assert_eq!(marker.digest, None);
        assert_eq!(marker.token_sha256(), sha256("upstream-token"));
        assert_eq!(
            marker.fingerprint(),
            crate::Fingerprint::of("upstream-token")
        );
    }
}
