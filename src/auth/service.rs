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
        if let Some(answer) = self.validator.validate_now(credential.as_str()) {
            return match settle(config, &mut request, &credential, plan, Ok(answer)) {
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
