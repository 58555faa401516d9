//! The spec-compliant path: the gateway as an OAuth resource server (`--jwt-issuer`), and RFC 8693 token
//! exchange per upstream (`auth_type: oauth2_token_exchange`).
//!
//! With a JWT issuer, every route admits gateway keys or a JWT of that issuer whose audience is the route's own
//! URL (`PUBLIC_URL/mcp/NAME`, the `resource` of its RFC 9728 metadata), one [`Jwt`] per route sharing one key
//! cache: a token for route A is `invalid_token` on route B. On a route with token exchange, the JWT is
//! exchanged for a token whose audience is the upstream, sent as `Authorization: Bearer`; the request body is
//! kept (within `--max-body`) so the one retry after an upstream 401 can send it again.

use std::{
    collections::HashMap,
    convert::Infallible,
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use bytes::Bytes;
use futures_util::future::{BoxFuture, Either as EitherFuture};
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{Layer, Service, ServiceBuilder, ServiceExt as _};
use tower_mcp_auth::{
    auth::McpAuth,
    body::ResponseBody,
    permissions::{KeyIdentity, Tools, UpstreamAccess},
    upstream::{
        with_resource_metadata, ExchangeTarget, ExchangeToken, ExchangeTokenLayer,
        ForwardCredentials, ForwardCredentialsLayer, TokenClientAuth, TokenExchange,
        UpstreamConfig,
    },
    upstream::{Subject, SubjectToken},
    validators::{Either, FirstOf, Jwt, JwtClaims},
    BoxError, McpAuthLayer, Presented, Recognition, Validator, Verdict,
};

use super::{
    connector::Quiet,
    keys::KeyStore,
    proxy::Relayed,
    route,
    stage::{with_axum_body, IntoBody, Mapped},
    tls::HttpsConnector,
    Options,
};

/// Who the caller is: a gateway key's identity, or the claims of a JWT of the gateway's issuer.
#[derive(Clone, Debug)]
pub enum Caller {
    Key(KeyIdentity),
    Jwt(Arc<JwtClaims>),
}

impl Caller {
    /// How the access log names the caller (never by its token): `key:NAME` for a gateway key; for a JWT,
    /// `jwt-client:ID` when it speaks for a client itself (no `sub`, or `sub` equal to its `client_id`/`azp`,
    /// as in a client-credentials grant), `jwt-user:SUBJECT` when it speaks for a user of another client, and
    /// `jwt-sub:SUBJECT` when it names no client. A client and a user of the same name never share a name.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(key) => write!(f, "key:{}", key.name()),
            Self::Jwt(claims) => {
                let client = claims
                    .client_id
                    .as_deref()
                    .or_else(|| claims.extra.get("azp").and_then(serde_json::Value::as_str));
                match (claims.sub.as_deref(), client) {
                    (Some(sub), Some(client)) if sub != client => write!(f, "jwt-user:{sub}"),
                    (_, Some(client)) => write!(f, "jwt-client:{client}"),
                    (Some(sub), None) => write!(f, "jwt-sub:{sub}"),
                    (None, None) => f.write_str("jwt:-"),
                }
            }
        }
    }
}

impl From<Either<KeyIdentity, Arc<JwtClaims>>> for Caller {
    fn from(either: Either<KeyIdentity, Arc<JwtClaims>>) -> Self {
        match either {
            Either::Left(key) => Self::Key(key),
            Either::Right(claims) => Self::Jwt(claims),
        }
    }
}

/// A key may use the upstreams it was granted; a JWT was admitted only on the route its audience names.
impl UpstreamAccess for Caller {
    fn may_use(&self, upstream: &str) -> bool {
        match self {
            Self::Key(key) => key.may_use(upstream),
            Self::Jwt(_) => true,
        }
    }

    /// A key calls the tools it was granted; a JWT any tool, as far as grants go (`tool_scopes` asks it for
    /// scopes instead).
    fn tools(&self, upstream: &str) -> Option<Tools> {
        match self {
            Self::Key(key) => key.tools(upstream),
            Self::Jwt(_) => Some(Tools::all()),
        }
    }
}

/// Only a JWT is a subject token to exchange; a key's caller carries none.
impl SubjectToken for Caller {
    fn subject_token(&self) -> Option<Subject<'_>> {
        match self {
            Self::Key(_) => None,
            Self::Jwt(claims) => claims.subject_token(),
        }
    }
}

/// One upstream's RFC 8693 token exchange, as the config file (`auth_type: oauth2_token_exchange`) or
/// `--token-exchange` describes it. `Debug` never shows the client secret.
#[derive(Clone, Default)]
pub struct ExchangeSpec {
    /// The authorization server's token endpoint (`token_exchange_endpoint`).
    pub endpoint: String,
    pub client_id: String,
    pub client_secret: String,
    /// RFC 8693 `audience`; without it, the upstream's URL is the `resource` (RFC 8707).
    pub audience: Option<String>,
    pub scopes: Vec<String>,
    /// RFC 8693 `subject_token_type` (default: an access token).
    pub subject_token_type: Option<String>,
}

impl fmt::Debug for ExchangeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeSpec")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("audience", &self.audience)
            .field("scopes", &self.scopes)
            .field("subject_token_type", &self.subject_token_type)
            .finish()
    }
}

/// The validator of one route: gateway keys, and with a JWT issuer, that route's JWTs after them.
#[derive(Clone)]
pub enum RouteValidator {
    Keys(KeyStore),
    KeysOrJwt(FirstOf<KeyStore, Jwt>),
}

impl Validator for RouteValidator {
    type Identity = Caller;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Verdict<Caller>, BoxError>>;

    fn validate(&self, credential: &str) -> Self::Future {
        match self {
            Self::Keys(keys) => {
                let lookup = keys.validate(credential);
                Box::pin(async move { Ok(lookup.await?.map(Caller::Key)) })
            }
            Self::KeysOrJwt(both) => {
                let lookup = both.validate(credential);
                Box::pin(async move { Ok(lookup.await?.map(Caller::from)) })
            }
        }
    }

    fn recognize_now(&self, credential: &str) -> Recognition {
        match self {
            Self::Keys(keys) => keys.recognize_now(credential),
            Self::KeysOrJwt(both) => both.recognize_now(credential),
        }
    }

    fn validate_now(&self, credential: &str) -> Option<Result<Verdict<Caller>, BoxError>> {
        self.validate_presented_now(&Presented::new(credential))
    }

    fn validate_presented_now(
        &self,
        credential: &Presented<'_>,
    ) -> Option<Result<Verdict<Caller>, BoxError>> {
        match self {
            Self::Keys(keys) => keys
                .validate_presented_now(credential)
                .map(|answer| answer.map(|verdict| verdict.map(Caller::Key))),
            Self::KeysOrJwt(both) => both
                .validate_presented_now(credential)
                .map(|answer| answer.map(|verdict| verdict.map(Caller::from))),
        }
    }
}

/// The gateway's JWT validator for `audience` (any route's URL; [`Jwt::for_audience`] makes the others), when
/// `--jwt-issuer` is set. Its JWKS is fetched through `connector`, so `SSL_CERT_FILE` applies.
pub fn jwt(
    options: &Options,
    connector: &HttpsConnector,
    audience: &str,
) -> Result<Option<Jwt>, String> {
    let Some(issuer) = &options.jwt_issuer else {
        if options.jwt_jwks_uri.is_some() {
            return Err("--jwt-jwks-uri needs --jwt-issuer".to_owned());
        }
        return Ok(None);
    };
    let absolute = |url: &str| {
        url.parse::<axum::http::Uri>()
            .ok()
            .filter(|u| u.authority().is_some() && matches!(u.scheme_str(), Some("http" | "https")))
    };
    let parsed = absolute(issuer)
        .ok_or_else(|| format!("--jwt-issuer {issuer:?} is not an absolute http(s) URL"))?;
    check_transport(&parsed, options, "--jwt-issuer")?;
    let mut builder =
        Jwt::builder(issuer.clone(), audience).require_at_jwt_typ(!options.jwt_allow_any_typ);
    if let Some(uri) = &options.jwt_jwks_uri {
        let parsed = absolute(uri)
            .ok_or_else(|| format!("--jwt-jwks-uri {uri:?} is not an absolute http(s) URL"))?;
        check_transport(&parsed, options, "--jwt-jwks-uri")?;
        builder = builder.jwks_uri(parsed);
    }
    Ok(Some(builder.build_with_client(
        Client::builder(TokioExecutor::new()).build(connector.clone()),
    )))
}

/// An authorization server's URL carries signing keys, client secrets or subject tokens: `http://` only on a
/// loopback host, unless `--allow-insecure-auth-server`.
fn check_transport(uri: &axum::http::Uri, options: &Options, what: &str) -> Result<(), String> {
    let host = uri.host().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if uri.scheme_str() == Some("https") || loopback || options.allow_insecure_auth_server {
        return Ok(());
    }
    Err(format!(
        "{what}: an http:// URL on a host that is not loopback would carry keys, secrets or tokens in clear \
         text; use https, or pass --allow-insecure-auth-server (gateway_settings.allow_insecure_auth_server)"
    ))
}

/// Checks the token-exchange settings against the routes, and builds each upstream's exchange layer.
pub fn exchanges(
    options: &Options,
    configs: &[UpstreamConfig],
    connector: &HttpsConnector,
) -> Result<HashMap<String, (TokenExchange, ExchangeTarget)>, String> {
    let mut built = HashMap::new();
    for (name, spec) in options
        .servers
        .iter()
        .filter_map(|s| Some((s.name(), s.exchange.as_ref()?)))
    {
        let flag = format!("token exchange for {name}");
        let config = configs
            .iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| format!("{flag}: {name:?} is not an --upstream"))?;
        if options.jwt_issuer.is_none() {
            return Err(format!(
                "{flag}: needs JWT admission (--jwt-issuer, or mcp_resource_server.issuer in the config file): \
                 only a JWT of the gateway's issuer is exchanged"
            ));
        }
        if config.accepts_passthrough() {
            return Err(format!(
                "{flag}: the route also accepts passthrough; a route either exchanges the client's token or \
                 passes it through"
            ));
        }
        if built.contains_key(name) {
            return Err(format!("{flag}: given twice"));
        }
        let endpoint = spec
            .endpoint
            .parse::<axum::http::Uri>()
            .ok()
            .filter(|u| u.authority().is_some() && matches!(u.scheme_str(), Some("http" | "https")))
            .ok_or_else(|| format!("{flag}: the token endpoint is not an absolute http(s) URL"))?;
        check_transport(&endpoint, options, &format!("{flag}: the token endpoint"))?;
        if spec.client_id.is_empty() || spec.client_secret.is_empty() {
            return Err(format!("{flag}: client_id and client_secret are required"));
        }
        let mut builder = TokenExchange::builder(
            endpoint,
            TokenClientAuth::basic(spec.client_id.clone(), spec.client_secret.clone()),
        );
        if let Some(kind) = &spec.subject_token_type {
            builder = builder.subject_token_type(kind.clone());
        }
        let exchange = builder
            .build_with_client(Client::builder(TokioExecutor::new()).build(connector.clone()));
        let mut target = match &spec.audience {
            Some(audience) => ExchangeTarget::audience(audience.clone()),
            None => ExchangeTarget::upstream(config),
        };
        if !spec.scopes.is_empty() {
            target = target.with_scope(spec.scopes.join(" "));
        }
        built.insert(name.to_owned(), (exchange, target));
    }
    Ok(built)
}

/// The HTTP client of one upstream: the gateway's credential for it, or a token exchanged for it.
#[derive(Clone)]
pub enum UpstreamClient {
    /// The upstream's credential forwarding, over the shared client (borrowed per request, never cloned).
    Plain(ForwardCredentialsLayer, RelayClient),
    Exchange(ForwardCredentials<ExchangeToken<ExchangeClient, Caller>>),
}

/// The client of every upstream: the relay reads request bodies whole, so they are sent as they are (and can be
/// sent again, as a token exchange's retry does). Its connections add nothing to the responses' extensions
/// ([`Quiet`]).
pub type RelayClient = Client<Quiet<HttpsConnector>, Full<Bytes>>;

/// The client under an exchange: a mark on every response the upstream gave.
type ExchangeClient = tower::util::MapResponse<
    RelayClient,
    fn(Response<hyper::body::Incoming>) -> Response<hyper::body::Incoming>,
>;

/// Marks a response of the upstream, as opposed to the exchange layer's own refusal.
#[derive(Clone, Copy)]
struct FromUpstream;

fn mark(mut response: Response<hyper::body::Incoming>) -> Response<hyper::body::Incoming> {
    response.extensions_mut().insert(FromUpstream);
    response
}

impl UpstreamClient {
    /// The client of `config`: with `exchange`, the client's JWT is exchanged for it.
    pub fn new(
        config: &UpstreamConfig,
        client: &RelayClient,
        exchange: Option<(TokenExchange, ExchangeTarget)>,
        metadata_url: &str,
    ) -> Result<Self, String> {
        let forward = ForwardCredentialsLayer::new(config.clone());
        let Some((exchange, target)) = exchange else {
            return Ok(Self::Plain(forward, client.clone()));
        };
        let exchange = ExchangeTokenLayer::<Caller>::new(exchange, target)
            .try_resource_metadata(metadata_url)
            .map_err(|e| format!("--public-url: {e}"))?;
        Ok(Self::Exchange(
            ServiceBuilder::new()
                .layer(forward)
                .layer(exchange)
                .service(
                    ServiceBuilder::new()
                        .map_response(mark as fn(_) -> _)
                        .service(client.clone()),
                ),
        ))
    }

    /// Sends `request` (its body already read whole, within `--max-body`). `Ok(Err(answer))` is the gateway's
    /// own answer instead of the upstream's: the exchange was refused (401) or failed (503).
    pub async fn send(
        &self,
        request: axum::http::Request<Bytes>,
    ) -> Result<Result<Response, Response>, BoxError> {
        match self {
            Self::Plain(forward, client) => {
                // hyper-util's client serves requests through a shared reference too: the forwarding layer
                // wraps that, and no client is cloned per request.
                let response = forward
                    .layer(client)
                    .oneshot(request.map(Full::new))
                    .await?;
                Ok(Ok(response.map(Body::new)))
            }
            Self::Exchange(client) => {
                let response = client.clone().oneshot(request.map(Full::new)).await?;
                let upstream = response.extensions().get::<FromUpstream>().is_some();
                let response = response.map(Body::new);
                Ok(if upstream {
                    Ok(response)
                } else {
                    Err(response)
                })
            }
        }
    }
}

/// Each route's authentication, with the URL of its metadata.
type Routes<T> = Arc<crate::NameMap<String, (T, String)>>;

/// Authentication per route: each route's own [`RouteValidator`] (its JWT audience), and the gateway keys alone on
/// paths that name no route. With a JWT issuer, every 401 of a route names the route's metadata.
#[derive(Clone)]
pub struct RouteAuthLayer {
    default: McpAuthLayer<RouteValidator>,
    routes: Routes<McpAuthLayer<RouteValidator>>,
}

impl RouteAuthLayer {
    /// `make` configures a layer around a validator (passthrough policy, metadata); `routes` are the route
    /// names with their metadata URLs; without `jwt`, every route admits gateway keys only, as before.
    pub fn new(
        keys: &KeyStore,
        jwt: Option<&Jwt>,
        routes: impl IntoIterator<Item = (String, String, String)>,
        make: impl Fn(RouteValidator) -> Result<McpAuthLayer<RouteValidator>, String>,
    ) -> Result<Self, String> {
        let default = make(RouteValidator::Keys(keys.clone()))?;
        let mut per_route = crate::NameMap::default();
        if let Some(jwt) = jwt {
            for (name, resource, metadata_url) in routes {
                let validator = FirstOf::new(keys.clone(), jwt.for_audience(resource));
                per_route.insert(
                    name,
                    (make(RouteValidator::KeysOrJwt(validator))?, metadata_url),
                );
            }
        }
        Ok(Self {
            default,
            routes: Arc::new(per_route),
        })
    }
}

impl<S: Clone> Layer<S> for RouteAuthLayer {
    type Service = RouteAuth<S>;

    fn layer(&self, inner: S) -> RouteAuth<S> {
        RouteAuth {
            default: self.default.layer(inner.clone()),
            routes: Arc::new(
                self.routes
                    .iter()
                    .map(|(name, (layer, url))| {
                        (name.clone(), (layer.layer(inner.clone()), url.clone()))
                    })
                    .collect(),
            ),
        }
    }
}

/// The service of [`RouteAuthLayer`].
#[derive(Clone)]
pub struct RouteAuth<S> {
    default: McpAuth<S, RouteValidator>,
    routes: Routes<McpAuth<S, RouteValidator>>,
}

impl<S, B> Service<Request> for RouteAuth<S>
where
    S: Service<Request, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: IntoBody,
{
    type Response = Response;
    type Error = Infallible;
    /// The keys-only answer as it comes (no box); a route's own, boxed.
    type Future = EitherFuture<
        Mapped<
            <McpAuth<S, RouteValidator> as Service<Request>>::Future,
            Result<Response<ResponseBody<B>>, Infallible>,
            Result<Response, Infallible>,
        >,
        BoxFuture<'static, Result<Response, Infallible>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The keys-only service is the one called without a JWT issuer; a route's own service is driven to
        // readiness by `oneshot` on a clone.
        self.default.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let name = route::of(&request).map_or("", |route| route.name());
        let Some((auth, metadata_url)) = self.routes.get(name).cloned() else {
            return EitherFuture::Left(Mapped::new(self.default.call(request), with_axum_body));
        };
        EitherFuture::Right(Box::pin(async move {
            let mut response = auth.oneshot(request).await?.map(IntoBody::into_body);
            if response.status() == StatusCode::UNAUTHORIZED
                && response.extensions().get::<Relayed>().is_none()
            {
                point_at(&mut response, &metadata_url);
            }
            Ok(response)
        }))
    }
}

/// The gateway's own 401 names the route's metadata (RFC 9728 §5.1), keeping `error` and the rest, so a
/// client can find the issuer from a refusal too.
fn point_at(response: &mut Response, metadata_url: &str) {
    let challenges: Vec<HeaderValue> = response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| with_resource_metadata(v, metadata_url).unwrap_or_else(|| v.clone()))
        .collect();
    response.headers_mut().remove(header::WWW_AUTHENTICATE);
    for value in challenges {
        response
            .headers_mut()
            .append(header::WWW_AUTHENTICATE, value);
    }
}

#[cfg(test)]
mod tests {
    use tower_mcp_auth::permissions::Upstreams;

    use super::*;

    #[test]
    fn the_access_log_names_a_jwt_caller_by_subject_and_never_by_token() {
        let claims: JwtClaims = serde_json::from_value(serde_json::json!({
            "iss": "https://idp.example", "sub": "alice", "aud": "https://gw.example/mcp/a", "exp": 4_000_000_000u64,
        }))
        .unwrap();
        let alice = Caller::Jwt(Arc::new(claims));
        assert_eq!(alice.describe(), "jwt-sub:alice");
        let anonymous: JwtClaims = serde_json::from_value(serde_json::json!({
            "iss": "https://idp.example", "client_id": "agent-7", "exp": 4_000_000_000u64,
        }))
        .unwrap();
        assert_eq!(
            Caller::Jwt(Arc::new(anonymous)).describe(),
            "jwt-client:agent-7"
        );
        let ops = Caller::Key(KeyIdentity::new("ops", Upstreams::only(["a"])));
        assert_eq!(ops.describe(), "key:ops");
        assert!(ops.may_use("a") && !ops.may_use("b") && ops.subject_token().is_none());
    }

    #[test]
    fn log_names_keep_a_jwt_client_and_a_jwt_user_of_the_same_name_apart() {
        let jwt = |claims: serde_json::Value| {
            let mut claims = claims;
            claims["iss"] = "https://idp.example".into();
            claims["exp"] = 4_000_000_000u64.into();
            Caller::Jwt(Arc::new(serde_json::from_value(claims).unwrap()))
        };
        let client = jwt(serde_json::json!({"sub": "alice", "client_id": "alice"}));
        let user = jwt(serde_json::json!({"sub": "alice", "client_id": "ide"}));
        let user_by_azp = jwt(serde_json::json!({"sub": "alice", "azp": "ide"}));
        let bare_client = jwt(serde_json::json!({"client_id": "alice"}));
        assert_eq!(client.describe(), "jwt-client:alice");
        assert_eq!(bare_client.describe(), "jwt-client:alice");
        assert_eq!(user.describe(), "jwt-user:alice");
        assert_eq!(user_by_azp.describe(), "jwt-user:alice");
        assert_ne!(client.describe(), user.describe());
        assert_eq!(jwt(serde_json::json!({})).describe(), "jwt:-");
    }

    #[test]
    fn an_exchange_spec_never_shows_its_secret() {
        let spec = ExchangeSpec {
            endpoint: "https://idp.example/token".to_owned(),
            client_id: "gateway".to_owned(),
            client_secret: "s3cret-value".to_owned(),
            ..ExchangeSpec::default()
        };
        let shown = format!("{spec:?}");
        assert!(
            !shown.contains("s3cret-value") && shown.contains("gateway"),
            "{shown}"
        );
    }
}
