//! `Jwt`: the gateway as an OAuth resource server, admitting JWT access tokens its authorization server issued
//! for it.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Uri;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::Connect, Client};
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::jwks::{Jwks, KeySet, Settings, Source};
use crate::{
    http_client::{https_client, ClientOptions},
    secret::Fingerprint,
    tls::{HttpsConnector, TrustError},
    validate::{Recognition, Validator, Verdict},
};

const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(5 * 60);
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The asymmetric signature algorithms: the only ones a token verified with a published key may use.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A [`Validator`] for JWT access tokens (RFC 9068) of one issuer, for one audience: the gateway as an OAuth
/// resource server.
///
/// Signing keys come from the issuer's JWKS, found through its RFC 8414 / OpenID Connect metadata or at an
/// explicit `jwks_uri`, cached for the `Cache-Control: max-age` the issuer sends (default 5 minutes, at most a
/// day). A token whose `kid` is not in the cached set triggers one refetch, at most one per
/// [`min_refresh_interval`](JwtBuilder::min_refresh_interval) however many such tokens arrive; a failed
/// refresh keeps the last good set.
///
/// | credential | verdict |
/// |---|---|
/// | not a JWT, or a JWT whose `iss` is another issuer | [`Unknown`](Verdict::Unknown) (not ours: a gateway key, or an upstream's token) |
/// | our `iss`, signed by a key of the set with an allowed algorithm, `aud` names the audience, within `exp`/`nbf` (with leeway) | [`Valid`](Verdict::Valid)`(claims)` |
/// | our `iss`, but expired, not yet valid, badly signed, an algorithm not allowed (`none`, any HMAC), an unknown `kid` after the refetch, or `aud` naming another audience | [`Invalid`](Verdict::Invalid): `401 invalid_token`, never passthrough |
/// | our `iss`, and no key set could ever be fetched | error: `503` |
///
/// # One audience per route
///
/// RFC 8707 and the MCP authorization specification require that a server accept only tokens issued for
/// itself; for a gateway that is the URL of the route a request targets, so that a token for route A is refused
/// on route B. A `Jwt` checks one audience: give each route its own layer with
/// [`for_audience`](Jwt::for_audience), which shares the key cache, so the issuer is asked once for all routes.
///
/// ```
/// use tower_mcp_auth::{validators::Jwt, McpAuthLayer};
///
/// let jwt = Jwt::builder("https://auth.example.com", "https://gateway.example.com/mcp/github")
///     .build()
///     .expect("usable trust roots");
/// let github = McpAuthLayer::new(jwt.clone());
/// let jira = McpAuthLayer::new(jwt.for_audience("https://gateway.example.com/mcp/jira"));
/// # let _ = (github, jira);
/// ```
///
/// Combine it with gateway keys through [`FirstOf`](super::FirstOf). The identity is
/// [`JwtClaims`], which keeps the raw token (redacted in `Debug`) for a token exchange on the upstream side.
///
/// [`build`](JwtBuilder::build) reaches the issuer over HTTPS (or plain HTTP) with
/// [`tls::https_connector`](crate::tls::https_connector): the platform's roots plus `SSL_CERT_FILE`; bring your
/// own client with [`build_with_client`](JwtBuilder::build_with_client).
pub struct Jwt<C = HttpsConnector> {
    keys: Arc<Jwks<C>>,
    audience: Arc<str>,
    /// One set of checks per allowed algorithm: jsonwebtoken wants every algorithm of a check to be of the
    /// key's family.
    validations: Arc<[(Algorithm, Validation)]>,
    /// RFC 9068 §4: the header's `typ` must be `at+jwt` (so an ID token of the same issuer is no access token).
    require_at_jwt: bool,
}

impl<C> Clone for Jwt<C> {
    fn clone(&self) -> Self {
        Self {
            keys: Arc::clone(&self.keys),
            audience: Arc::clone(&self.audience),
            validations: Arc::clone(&self.validations),
            require_at_jwt: self.require_at_jwt,
        }
    }
}

impl Jwt {
    /// Starts building a validator for tokens of `issuer` (compared exactly with `iss`) whose `aud` names
    /// `audience`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_auth::validators::Jwt;
    ///
    /// let jwt = Jwt::builder("https://auth.example.com", "https://gateway.example.com/mcp/github")
    ///     .jwks_uri("https://auth.example.com/jwks".parse().unwrap())
    ///     .leeway(Duration::from_secs(10))
    ///     .build()
    ///     .expect("usable trust roots");
    /// # let _ = jwt;
    /// ```
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> JwtBuilder {
        JwtBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_uri: None,
            algorithms: ASYMMETRIC.to_vec(),
            leeway: DEFAULT_LEEWAY,
            options: ClientOptions::jwks(),
            min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
            default_max_age: DEFAULT_MAX_AGE,
            require_at_jwt: true,
        }
    }
}

impl<C> Jwt<C> {
    /// The same issuer, keys and checks, for another audience (another route). The key cache is shared.
    pub fn for_audience(&self, audience: impl Into<String>) -> Self {
        let audience: Arc<str> = audience.into().into();
        let validations = self
            .validations
            .iter()
            .map(|(alg, validation)| {
                let mut validation = validation.clone();
                validation.set_audience(&[&*audience]);
                (*alg, validation)
            })
            .collect();
        Self {
            keys: Arc::clone(&self.keys),
            audience,
            validations,
            require_at_jwt: self.require_at_jwt,
        }
    }

    /// The issuer tokens must come from.
    pub fn issuer(&self) -> &str {
        &self.keys.settings().issuer
    }

    /// The audience tokens must name.
    pub fn audience(&self) -> &str {
        &self.audience
    }
}

/// What one look at a token, with the keys at hand, concluded.
enum Step {
    Done(Verdict<Arc<JwtClaims>>),
    /// The key set must be (re)fetched first: none yet, stale, or the token names an unknown `kid`.
    Refresh,
}

impl<C> Jwt<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn check(&self, token: &str, keys: Option<&KeySet>, refreshed: bool) -> Result<Step, JwtError> {
        let Some(unverified) = Unverified::parse(token) else {
            return Ok(Step::Done(Verdict::Unknown));
        };
        if unverified.iss != self.issuer() {
            return Ok(Step::Done(Verdict::Unknown));
        }
        // From here on the token claims to be ours: every failure is `Invalid`, never `Unknown`.
        if self.require_at_jwt && !unverified.typ.as_deref().is_some_and(is_at_jwt) {
            return Ok(Step::Done(Verdict::Invalid));
        }
        let allowed = unverified.alg.parse::<Algorithm>().ok();
        let Some((alg, validation)) = allowed.and_then(|alg| {
            self.validations
                .iter()
                .find(|(allowed, _)| *allowed == alg)
                .map(|(_, validation)| (alg, validation))
        }) else {
            return Ok(Step::Done(Verdict::Invalid));
        };
        // Asked only on the rare paths that want fresh keys: it takes the key cache's lock.
        let may_refresh = || !refreshed && self.keys.may_refresh();
        let Some(keys) = keys else {
            if !refreshed {
                return Ok(Step::Refresh);
            }
            return Err(JwtError {
                issuer: self.issuer().into(),
                last: self.keys.last_error(),
            });
        };
        if keys.fresh_until <= tokio::time::Instant::now() && may_refresh() {
            return Ok(Step::Refresh);
        }
        let Some(candidates) = keys.candidates(unverified.kid.as_deref(), alg) else {
            return Ok(if may_refresh() {
                Step::Refresh
            } else {
                Step::Done(Verdict::Invalid)
            });
        };
        for key in candidates {
            if let Ok(data) = jsonwebtoken::decode::<JwtClaims>(token, &key.key, validation) {
                let mut claims = data.claims;
                claims.token = token.into();
                return Ok(Step::Done(Verdict::Valid(Arc::new(claims))));
            }
        }
        Ok(Step::Done(Verdict::Invalid))
    }
}

impl<C> fmt::Debug for Jwt<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("issuer", &self.issuer())
            .field("audience", &self.audience)
            .field(
                "algorithms",
                &self
                    .validations
                    .iter()
                    .map(|(alg, _)| alg)
                    .collect::<Vec<_>>(),
            )
            .field("keys", &self.keys)
            .finish()
    }
}

impl<C> Validator for Jwt<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    type Identity = Arc<JwtClaims>;
    type Error = JwtError;
    type Future = BoxFuture<'static, Result<Verdict<Arc<JwtClaims>>, JwtError>>;

    fn validate(&self, credential: &str) -> Self::Future {
        let this = self.clone();
        let token = credential.to_owned();
        Box::pin(async move {
            let keys = this.keys.current();
            match this.check(&token, keys.as_deref(), false)? {
                Step::Done(verdict) => return Ok(verdict),
                Step::Refresh => this.keys.refresh().await,
            }
            let keys = this.keys.current();
            match this.check(&token, keys.as_deref(), true)? {
                Step::Done(verdict) => Ok(verdict),
                Step::Refresh => unreachable!("a refreshed check never asks for another refresh"),
            }
        })
    }

    /// A token naming this issuer (`iss`, read before any check) is ours whatever the state of the key set,
    /// so it never travels upstream as a client's own token; anything else is not.
    fn recognize_now(&self, credential: &str) -> Recognition {
        match Unverified::parse(credential) {
            Some(unverified) if unverified.iss == self.issuer() => Recognition::Ours,
            _ => Recognition::NotOurs,
        }
    }

    fn validate_now(&self, credential: &str) -> Option<Result<Verdict<Arc<JwtClaims>>, JwtError>> {
        let keys = self.keys.current();
        match self.check(credential, keys.as_deref(), false) {
            Ok(Step::Done(verdict)) => Some(Ok(verdict)),
            Ok(Step::Refresh) => None,
            Err(error) => Some(Err(error)),
        }
    }
}

/// Builds a [`Jwt`]; from [`Jwt::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct JwtBuilder {
    issuer: String,
    audience: String,
    jwks_uri: Option<Uri>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    options: ClientOptions,
    min_refresh_interval: Duration,
    default_max_age: Duration,
    require_at_jwt: bool,
}

impl JwtBuilder {
    /// Whether a token's header must say `typ: at+jwt` (RFC 9068 §4; `application/at+jwt` too, compared
    /// ignoring case). On by default, so an ID token or another JWT of the same issuer is `Invalid`, never an
    /// access token; turn it off (`false`) only for an issuer that types its access tokens `JWT` or not at all.
    pub fn require_at_jwt_typ(mut self, required: bool) -> Self {
        self.require_at_jwt = required;
        self
    }

    /// Fetches the keys at this `jwks_uri` instead of discovering it from the issuer's metadata.
    pub fn jwks_uri(mut self, uri: Uri) -> Self {
        self.jwks_uri = Some(uri);
        self
    }

    /// Pins the signature algorithms a token may use (default: every asymmetric one jsonwebtoken supports).
    ///
    /// # Panics
    /// When `algorithms` is empty or names an HMAC algorithm: a published key must never serve as an HMAC
    /// secret (the "algorithm confusion" attack). `none` cannot be named at all.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        let algorithms: Vec<Algorithm> = algorithms.into_iter().collect();
        assert!(
            !algorithms.is_empty() && algorithms.iter().all(|alg| ASYMMETRIC.contains(alg)),
            "JWT algorithms must be asymmetric (RS*, PS*, ES*, EdDSA) and at least one"
        );
        self.algorithms = algorithms;
        self
    }

    /// The clock skew tolerated on `exp` and `nbf` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How long one fetch of the metadata or the JWKS may take (default 3 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// The largest metadata or JWKS body accepted (default 256 KiB).
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.options.max_response_bytes = max;
        self
    }

    /// Sets the [timeout](Self::timeout) and the [body cap](Self::max_response_bytes) of the metadata and JWKS
    /// fetches at once (default [`ClientOptions::jwks`]: 3 s, 256 KiB).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_auth::{http_client::ClientOptions, validators::Jwt};
    ///
    /// let jwt = Jwt::builder("https://auth.example.com", "https://gateway.example.com/mcp")
    ///     .client_options(ClientOptions::jwks().with_max_response_bytes(1024 * 1024))
    ///     .build()
    ///     .expect("usable trust roots");
    /// # let _ = jwt;
    /// ```
    pub fn client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// The least time between two key set fetches (default 30 s): a burst of tokens with unknown `kid`s
    /// costs the issuer at most one fetch per interval. It is also the shortest time a key set is kept.
    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    /// How long a key set is kept when the JWKS response has no `Cache-Control: max-age` (default 5 minutes).
    pub fn default_max_age(mut self, max_age: Duration) -> Self {
        self.default_max_age = max_age;
        self
    }

    /// Builds the validator with a pooled client for `https://` (and `http://`) issuers.
    ///
    /// # Errors
    /// When `SSL_CERT_FILE` is set but unusable; see [`TrustError`].
    pub fn build(self) -> Result<Jwt, TrustError> {
        Ok(self.build_with_client(https_client()?))
    }

    /// Builds the validator with `client` (bring your own connector, e.g. for TLS).
    pub fn build_with_client<C>(self, client: Client<C, Full<Bytes>>) -> Jwt<C> {
        let validations = self
            .algorithms
            .iter()
            .map(|&alg| {
                let mut validation = Validation::new(alg);
                validation.leeway = self.leeway.as_secs();
                validation.validate_nbf = true;
                validation.set_issuer(&[&self.issuer]);
                validation.set_audience(&[&self.audience]);
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                (alg, validation)
            })
            .collect();
        let settings = Settings {
            issuer: self.issuer,
            source: self.jwks_uri.map_or(Source::Discover, Source::Uri),
            options: self.options,
            min_refresh_interval: self.min_refresh_interval,
            default_max_age: self.default_max_age,
            max_max_age: MAX_MAX_AGE.max(self.min_refresh_interval),
        };
        Jwt {
            keys: Arc::new(Jwks::new(client, settings)),
            audience: self.audience.into(),
            validations,
            require_at_jwt: self.require_at_jwt,
        }
    }
}

/// The header and issuer of a token, read before any check to tell whether it is ours at all.
struct Unverified {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    iss: String,
}

/// RFC 9068's `typ` of a JWT access token, with or without the `application/` prefix (RFC 7515 §4.1.9).
fn is_at_jwt(typ: &str) -> bool {
    let typ = typ.trim();
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

impl Unverified {
    fn parse(token: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Header {
            alg: String,
            kid: Option<String>,
            typ: Option<String>,
        }
        #[derive(Deserialize)]
        struct Payload {
            iss: String,
        }
        let mut parts = token.split('.');
        let (header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        let payload: Payload =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        Some(Self {
            alg: header.alg,
            kid: header.kid,
            typ: header.typ,
            iss: payload.iss,
        })
    }
}

/// The claims of a valid JWT access token (RFC 9068 §2.2), and the token itself: the identity [`Jwt`] admits.
///
/// The raw token is kept for a token exchange (RFC 8693) on the upstream side; `Debug` shows only its
/// [`Fingerprint`].
///
/// ```
/// use std::sync::Arc;
/// use http::Request;
/// use tower_mcp_auth::{validators::JwtClaims, Authenticated};
///
/// fn may_write(req: &Request<()>) -> bool {
///     req.extensions()
///         .get::<Authenticated<Arc<JwtClaims>>>()
///         .is_some_and(|a| a.identity().scopes().any(|s| s == "mcp:write"))
/// }
/// # assert!(!may_write(&Request::new(())));
/// ```
#[derive(Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct JwtClaims {
    /// The issuer.
    pub iss: String,
    /// The subject: the resource owner, or the client for a client-credentials token.
    pub sub: Option<String>,
    /// The audiences (`aud` may be one string or an array).
    #[serde(default, deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// When the token expires, in seconds since the Unix epoch.
    pub exp: u64,
    /// When the token becomes usable, in seconds since the Unix epoch.
    pub nbf: Option<u64>,
    /// When the token was issued, in seconds since the Unix epoch.
    pub iat: Option<u64>,
    /// The token's identifier.
    pub jti: Option<String>,
    /// The client the token was issued to.
    pub client_id: Option<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// Every other claim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    token: Arc<str>,
}

impl JwtClaims {
    /// The scopes, split on spaces.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split_ascii_whitespace()
    }

    /// When the token expires (`exp`).
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.exp)
    }

    /// The token itself, as the client sent it: the subject token of a token exchange. Never log it.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for JwtClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtClaims")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("aud", &self.aud)
            .field("exp", &self.exp)
            .field("nbf", &self.nbf)
            .field("iat", &self.iat)
            .field("jti", &self.jti)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("extra", &self.extra)
            .field("token", &Fingerprint::of(&self.token))
            .finish()
    }
}

/// `aud` is a string or an array of strings.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

/// No key set could be fetched from the issuer, so a token that claims to be its own cannot be checked: the
/// layer answers `503`. Its `Display` names the issuer and the last fetch failure, never a token.
#[derive(Debug)]
pub struct JwtError {
    issuer: Arc<str>,
    last: Option<Arc<str>>,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no signing keys from the issuer {}", self.issuer)?;
        if let Some(last) = &self.last {
            write!(f, ": {last}")?;
        }
        Ok(())
    }
}

impl std::error::Error for JwtError {}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioExecutor;

    #[test]
    fn for_audience_changes_only_the_audience() {
        let a = Jwt::builder("http://127.0.0.1:1", "https://gw/mcp/a")
            .build_with_client(Client::builder(TokioExecutor::new()).build_http());
        let b = a.for_audience("https://gw/mcp/b");
        assert_eq!(b.audience(), "https://gw/mcp/b");
        assert_eq!(b.issuer(), "http://127.0.0.1:1");
        assert!(Arc::ptr_eq(&a.keys, &b.keys));
        for (_, validation) in b.validations.iter() {
            let audiences = validation.aud.as_ref().unwrap();
            assert!(audiences.contains("https://gw/mcp/b"));
            assert!(!audiences.contains("https://gw/mcp/a"));
        }
    }

    #[test]
    #[should_panic(expected = "asymmetric")]
    fn hmac_algorithms_are_refused() {
        let _ = Jwt::builder("http://i", "a").algorithms([Algorithm::HS256]);
    }

    #[test]
    fn unverified_parse_reads_alg_kid_iss() {
        let enc = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let token = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"none","kid":"k"}"#),
            enc(r#"{"iss":"http://i"}"#)
        );
        let u = Unverified::parse(&token).unwrap();
        assert_eq!(
            (u.alg.as_str(), u.kid.as_deref(), u.iss.as_str()),
            ("none", Some("k"), "http://i")
        );
        assert!(Unverified::parse("sk-gateway-key").is_none());
        assert!(Unverified::parse("a.b.c.d").is_none());
    }
}
