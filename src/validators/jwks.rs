//! The issuer's signing keys (a JWKS), fetched, cached and refreshed for [`Jwt`](super::Jwt).
//!
//! One refresh at a time runs as a spawned task that every waiter shares, so a caller that gives up (its
//! request timed out, the client went away) cancels nothing, and a burst of tokens with an unknown `kid` costs
//! the issuer one fetch. Refreshes are rate-limited (one per `min_refresh_interval`); a failed refresh keeps the
//! last good key set.

use std::{
    error::Error,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{
    future::{BoxFuture, Shared},
    FutureExt as _,
};
use http::{header, HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::Connect, Client};
use jsonwebtoken::{
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
    Algorithm, DecodingKey,
};
use serde::Deserialize;
use tokio::time::Instant;

use crate::http_client::{fetch, ClientOptions, FetchFailure};

/// Where the key set is found.
#[derive(Clone, Debug)]
pub(super) enum Source {
    /// Through the issuer's RFC 8414 (or OpenID Connect discovery) metadata, which names its `jwks_uri`.
    Discover,
    /// At this `jwks_uri`.
    Uri(Uri),
}

/// How the key set is fetched and kept.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub(super) issuer: String,
    pub(super) source: Source,
    pub(super) options: ClientOptions,
    pub(super) min_refresh_interval: Duration,
    pub(super) default_max_age: Duration,
    pub(super) max_max_age: Duration,
}

/// One usable verification key.
pub(super) struct Key {
    pub(super) kid: Option<String>,
    /// The `alg` the JWK pins, when it does.
    pub(super) alg: Option<Algorithm>,
    pub(super) key: DecodingKey,
}

impl Key {
    /// Whether this key may verify a token signed with `alg`: same family, and the key's own `alg` when set.
    pub(super) fn fits(&self, alg: Algorithm) -> bool {
        self.key.family() == alg.family() && self.alg.is_none_or(|own| own == alg)
    }
}

/// A fetched key set and how long it is fresh.
pub(super) struct KeySet {
    pub(super) keys: Vec<Key>,
    pub(super) fresh_until: Instant,
}

impl KeySet {
    /// The keys that may verify a token with this header: the one named by `kid`, or every fitting key when
    /// the token names none. `None` when `kid` names no key of the set.
    pub(super) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> Option<Vec<&'a Key>> {
        match kid {
            Some(kid) => {
                let key = self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))?;
                Some(if key.fits(alg) { vec![key] } else { Vec::new() })
            }
            None => Some(self.keys.iter().filter(|k| k.fits(alg)).collect()),
        }
    }
}

type Refresh = Shared<BoxFuture<'static, ()>>;

#[derive(Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    jwks_uri: Option<Uri>,
    last_attempt: Option<Instant>,
    last_error: Option<Arc<str>>,
    in_flight: Option<Refresh>,
}

/// The cached key set of one issuer, shared by every [`Jwt`](super::Jwt) built from the same builder.
pub(super) struct Jwks<C> {
    client: Client<C, Full<Bytes>>,
    settings: Settings,
    state: Mutex<State>,
}

impl<C> Jwks<C> {
    pub(super) fn new(client: Client<C, Full<Bytes>>, settings: Settings) -> Self {
        Self {
            client,
            settings,
            state: Mutex::new(State::default()),
        }
    }

    pub(super) fn settings(&self) -> &Settings {
        &self.settings
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state holds no invariant a panicking holder could break half-way.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key set at hand, if one was ever fetched.
    pub(super) fn current(&self) -> Option<Arc<KeySet>> {
        self.state().keys.clone()
    }

    /// Why the last refresh failed, for the error of a validation that found no key set at all.
    pub(super) fn last_error(&self) -> Option<Arc<str>> {
        self.state().last_error.clone()
    }

    /// Whether a refresh would run now (or one is running to join), rather than be refused by the rate limit.
    pub(super) fn may_refresh(&self) -> bool {
        let state = self.state();
        state.in_flight.is_some() || self.interval_passed(&state, Instant::now())
    }

    fn interval_passed(&self, state: &State, now: Instant) -> bool {
        state.last_attempt.is_none_or(|at| {
            now.saturating_duration_since(at) >= self.settings.min_refresh_interval
        })
    }
}

impl<C> Jwks<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// Refreshes the key set: joins the refresh in flight, or starts one when the rate limit allows, else
    /// returns at once. Resolves when the refresh (if any) has stored its result.
    pub(super) fn refresh(self: &Arc<Self>) -> Refresh {
        let mut state = self.state();
        if let Some(in_flight) = &state.in_flight {
            return in_flight.clone();
        }
        let now = Instant::now();
        if !self.interval_passed(&state, now) {
            return futures_util::future::ready(()).boxed().shared();
        }
        state.last_attempt = Some(now);
        let jwks = Arc::clone(self);
        let task = tokio::spawn(async move {
            let outcome = jwks.fetch().await;
            let mut state = jwks.state();
            match outcome {
                Ok((keys, jwks_uri)) => {
                    state.keys = Some(Arc::new(keys));
                    state.jwks_uri = Some(jwks_uri);
                    state.last_error = None;
                }
                Err(error) => {
                    tracing::warn!(
                        target: "tower_mcp_auth",
                        issuer = %jwks.settings.issuer,
                        %error,
                        "JWKS refresh failed; keeping the last key set"
                    );
                    state.last_error = Some(error.to_string().into());
                }
            }
            state.in_flight = None;
        });
        let shared = task.map(|_| ()).boxed().shared();
        state.in_flight = Some(shared.clone());
        shared
    }

    async fn fetch(&self) -> Result<(KeySet, Uri), FetchError> {
        let discovered = self.state().jwks_uri.clone();
        let jwks_uri = match (&self.settings.source, discovered) {
            (Source::Uri(uri), _) => uri.clone(),
            (Source::Discover, Some(uri)) => uri,
            (Source::Discover, None) => self.discover().await?,
        };
        let (headers, body) = self.get(&jwks_uri).await?;
        let document: JwksDocument = serde_json::from_slice(&body).map_err(FetchError::json)?;
        let keys: Vec<Key> = document.keys.iter().filter_map(key_from_jwk).collect();
        if keys.is_empty() {
            return Err(FetchError::new("the JWKS holds no usable signing key"));
        }
        let max_age = max_age(&headers)
            .unwrap_or(self.settings.default_max_age)
            .clamp(
                self.settings.min_refresh_interval,
                self.settings.max_max_age,
            );
        let keys = KeySet {
            keys,
            fresh_until: Instant::now() + max_age,
        };
        Ok((keys, jwks_uri))
    }

    /// Finds `jwks_uri` in the issuer's metadata: RFC 8414 first, then OpenID Connect discovery. The metadata's
    /// `issuer` must be the configured issuer exactly (RFC 8414 §3.3), and an `https` issuer's `jwks_uri` must be
    /// `https` too.
    async fn discover(&self) -> Result<Uri, FetchError> {
        let mut last = FetchError::new("no metadata location");
        for location in metadata_locations(&self.settings.issuer)? {
            let metadata = match self.get(&location).await {
                Ok((_, body)) => body,
                Err(error) => {
                    last = error;
                    continue;
                }
            };
            let metadata: Metadata = serde_json::from_slice(&metadata).map_err(FetchError::json)?;
            if metadata.issuer != self.settings.issuer {
                return Err(FetchError::new(
                    "the metadata names another issuer than the configured one",
                ));
            }
            let jwks_uri: Uri = metadata
                .jwks_uri
                .ok_or_else(|| FetchError::new("the metadata has no jwks_uri"))?
                .parse()
                .map_err(|_| FetchError::new("the metadata's jwks_uri is not a URI"))?;
            // The keys decide which tokens are admitted: an `https` issuer's are never fetched in clear text.
            if self.settings.issuer.starts_with("https://")
                && jwks_uri.scheme_str() != Some("https")
            {
                return Err(FetchError::new(
                    "the metadata of an https issuer names a jwks_uri that is not https",
                ));
            }
            return Ok(jwks_uri);
        }
        Err(last)
    }

    async fn get(&self, uri: &Uri) -> Result<(HeaderMap, Bytes), FetchError> {
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.method_mut() = Method::GET;
        *request.uri_mut() = uri.clone();
        request
            .headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let limit = self.settings.options.max_response_bytes;
        fetch(&self.client, request, self.settings.options)
            .await
            .map_err(|failure| match failure {
                FetchFailure::Transport(e) => FetchError::with_source("transport error", e),
                FetchFailure::Status(status) => FetchError::new(format!("{uri} answered {status}")),
                FetchFailure::TooLarge => {
                    FetchError::new(format!("{uri} answered more than {limit} bytes"))
                }
                FetchFailure::Timeout => FetchError::new(format!("{uri} did not answer in time")),
            })
    }
}

impl<C> fmt::Debug for Jwks<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Jwks")
            .field("issuer", &self.settings.issuer)
            .field("source", &self.settings.source)
            .field("keys", &state.keys.as_ref().map(|set| set.keys.len()))
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct JwksDocument {
    /// Kept as raw JSON so one key of a type this crate does not know spoils none of the others.
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: Option<String>,
}

/// A verification key from one JWK, or `None` for keys that must not or cannot verify a signature here:
/// encryption keys, symmetric (`oct`) keys — a published key is never an HMAC secret — and unknown types.
fn key_from_jwk(value: &serde_json::Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let mut alg = match jwk.common.key_algorithm {
        None => None,
        Some(alg) => Some(signing_algorithm(alg)?),
    };
    match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) => return None,
        AlgorithmParameters::EllipticCurve(ec) => {
            let implied = match ec.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return None,
            };
            if alg.is_some_and(|alg| alg != implied) {
                return None;
            }
            // The curve fixes the algorithm (RFC 7518 §3.4): a P-256 key never verifies ES384.
            alg = Some(implied);
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve != EllipticCurve::Ed25519 => {
            return None
        }
        _ => {}
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id,
        alg,
        key,
    })
}

/// The signature algorithm a JWK's `alg` names; `None` for HMAC, encryption and unknown algorithms.
fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// `max-age` from `Cache-Control`; `no-store` and `no-cache` count as zero (the floor of the rate limit).
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        for directive in value.to_str().ok()?.split(',') {
            let directive = directive.trim();
            if directive.eq_ignore_ascii_case("no-store")
                || directive.eq_ignore_ascii_case("no-cache")
            {
                return Some(Duration::ZERO);
            }
            let Some((name, seconds)) = directive.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("max-age") {
                found = seconds
                    .trim()
                    .trim_matches('"')
                    .parse()
                    .ok()
                    .map(Duration::from_secs);
            }
        }
    }
    found
}

/// The metadata locations of an issuer: RFC 8414 §3.1 inserts the well-known path before the issuer's path;
/// OpenID Connect Discovery §4 appends it.
fn metadata_locations(issuer: &str) -> Result<[Uri; 2], FetchError> {
    let uri: Uri = issuer
        .parse()
        .map_err(|_| FetchError::new("the issuer is not a URI"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(FetchError::new("the issuer is not an absolute URI"));
    };
    let path = uri.path().trim_end_matches('/');
    let rfc8414 = format!("{scheme}://{authority}/.well-known/oauth-authorization-server{path}");
    let oidc = format!("{scheme}://{authority}{path}/.well-known/openid-configuration");
    let parse = |s: String| {
        s.parse::<Uri>()
            .map_err(|_| FetchError::new("the issuer's metadata location is not a URI"))
    };
    Ok([parse(rfc8414)?, parse(oidc)?])
}

/// Why a key set could not be fetched. Logged; it names locations and statuses, never a token.
#[derive(Debug)]
struct FetchError {
    message: String,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl FetchError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    fn with_source(message: &str, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            message: message.to_owned(),
            source: Some(source.into()),
        }
    }

    fn json(error: serde_json::Error) -> Self {
        Self::new(format!(
            "unreadable JSON at line {} column {}",
            error.line(),
            error.column()
        ))
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.message),
            None => f.pad(&self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_reads_cache_control() {
        let headers = |value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
            h
        };
        assert_eq!(
            max_age(&headers("public, max-age=600")),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age(&headers("no-store")), Some(Duration::ZERO));
        assert_eq!(max_age(&headers("public")), None);
        assert_eq!(max_age(&HeaderMap::new()), None);
    }

    #[test]
    fn metadata_locations_follow_rfc8414_and_oidc() {
        let [a, b] = metadata_locations("https://as.example/tenant").unwrap();
        assert_eq!(
            a.to_string(),
            "https://as.example/.well-known/oauth-authorization-server/tenant"
        );
        assert_eq!(
            b.to_string(),
            "https://as.example/tenant/.well-known/openid-configuration"
        );
        let [a, b] = metadata_locations("http://127.0.0.1:9/").unwrap();
        assert_eq!(
            a.to_string(),
            "http://127.0.0.1:9/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            b.to_string(),
            "http://127.0.0.1:9/.well-known/openid-configuration"
        );
    }

    #[test]
    fn symmetric_and_encryption_keys_are_never_verification_keys() {
        let oct = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "h"});
        assert!(key_from_jwk(&oct).is_none());
        let enc = serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "enc", "kid": "e",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        });
        assert!(key_from_jwk(&enc).is_none());
        let sig = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "s",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        });
        let key = key_from_jwk(&sig).unwrap();
        assert!(key.fits(Algorithm::ES256));
        assert!(!key.fits(Algorithm::RS256));
        assert!(!key.fits(Algorithm::HS256));
    }
}
