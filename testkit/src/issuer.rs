//! A small authorization server on 127.0.0.1 for the JWT and token-exchange tests: OpenID Connect discovery
//! metadata, a JWKS of EC P-256 keys generated in the test (rotatable), and counters of what it was asked.
#![allow(dead_code, unreachable_pub)]

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// One signing key: the private half for signing tokens, the public half as a JWK.
struct SigningKey {
    encoding: EncodingKey,
    jwk: Value,
}

fn generate(kid: &str) -> SigningKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    assert_eq!(point.len(), 65, "an uncompressed P-256 point");
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    });
    SigningKey {
        encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
        jwk,
    }
}

#[derive(Default)]
pub struct Shared {
    keys: Mutex<Vec<(String, SigningKey)>>,
    published: Mutex<Vec<String>>,
    pub jwks_hits: AtomicUsize,
    pub metadata_hits: AtomicUsize,
    pub failing: AtomicBool,
    cache_control: Mutex<Option<String>>,
    pub extra_metadata: Mutex<HashMap<String, Value>>,
    issuer: Mutex<String>,
}

/// The running server.
#[derive(Clone)]
pub struct Issuer {
    pub url: String,
    pub shared: Arc<Shared>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Issuer {
    /// Starts the server with one published key, `k1`. `extra` routes (e.g. a token endpoint) are merged in.
    pub async fn start_with(extra: Router<Arc<Shared>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        *shared.issuer.lock().unwrap() = url.clone();
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(metadata))
            .route("/jwks", get(jwks))
            .merge(extra)
            .with_state(Arc::clone(&shared));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let issuer = Self { url, shared };
        issuer.add_key("k1", true);
        issuer
    }

    pub async fn start() -> Self {
        Self::start_with(Router::new()).await
    }

    /// Generates a key named `kid`; `publish` puts it in the JWKS.
    pub fn add_key(&self, kid: &str, publish: bool) {
        self.shared
            .keys
            .lock()
            .unwrap()
            .push((kid.to_owned(), generate(kid)));
        if publish {
            self.shared.published.lock().unwrap().push(kid.to_owned());
        }
    }

    pub fn jwks_uri(&self) -> http::Uri {
        format!("{}/jwks", self.url).parse().unwrap()
    }

    pub fn jwks_hits(&self) -> usize {
        self.shared.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    pub fn set_cache_control(&self, value: Option<&str>) {
        *self.shared.cache_control.lock().unwrap() = value.map(str::to_owned);
    }

    /// Claims of a token of this issuer for `aud`, valid for `ttl` seconds from now.
    pub fn claims(&self, aud: &str, ttl: i64) -> Value {
        let now = now() as i64;
        json!({
            "iss": self.url, "sub": "client-1", "aud": aud, "iat": now, "exp": now + ttl,
            "scope": "mcp:read mcp:write", "client_id": "client-1",
        })
    }

    /// Signs `claims` with the key `kid` (the header names `header_kid`, which may differ).
    pub fn sign_as(&self, kid: &str, header_kid: Option<&str>, claims: &Value) -> String {
        self.sign_typed(kid, header_kid, Some("at+jwt"), claims)
    }

    /// Signs `claims` with the key `kid`, the header naming `header_kid` and typed `typ`.
    pub fn sign_typed(
        &self,
        kid: &str,
        header_kid: Option<&str>,
        typ: Option<&str>,
        claims: &Value,
    ) -> String {
        let keys = self.shared.keys.lock().unwrap();
        let (_, key) = keys
            .iter()
            .find(|(k, _)| k == kid)
            .expect("a generated key");
        let mut header = Header::new(Algorithm::ES256);
        header.typ = typ.map(str::to_owned);
        header.kid = header_kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    /// Signs `claims` with key `kid`, naming it in the header.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        self.sign_as(kid, Some(kid), claims)
    }

    /// The public half of key `kid`, for checks the server itself makes.
    pub fn decoding_key(&self, kid: &str) -> jsonwebtoken::DecodingKey {
        let keys = self.shared.keys.lock().unwrap();
        let (_, key) = keys
            .iter()
            .find(|(k, _)| k == kid)
            .expect("a generated key");
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).unwrap();
        jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap()
    }

    /// A token for `aud` valid for an hour, signed with `k1`.
    pub fn token(&self, aud: &str) -> String {
        self.sign("k1", &self.claims(aud, 3600))
    }
}

async fn metadata(State(shared): State<Arc<Shared>>) -> Response {
    shared.metadata_hits.fetch_add(1, Ordering::SeqCst);
    if shared.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let issuer = shared.issuer.lock().unwrap().clone();
    let mut body = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "token_endpoint": format!("{issuer}/token"),
    });
    for (k, v) in shared.extra_metadata.lock().unwrap().iter() {
        body[k] = v.clone();
    }
    Json(body).into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if shared.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let published = shared.published.lock().unwrap().clone();
    let keys: Vec<Value> = shared
        .keys
        .lock()
        .unwrap()
        .iter()
        .filter(|(kid, _)| published.contains(kid))
        .map(|(_, key)| key.jwk.clone())
        .collect();
    let mut response = Json(json!({ "keys": keys })).into_response();
    if let Some(value) = shared.cache_control.lock().unwrap().clone() {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, value.parse().unwrap());
    }
    response
}

impl Issuer {
    /// The claims of `token` when this issuer signed it and it has not expired.
    pub fn verify_any_audience(&self, token: &str) -> Option<Value> {
        let data = jsonwebtoken::decode::<Value>(token, &self.decoding_key("k1"), &{
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
            v.validate_aud = false;
            v.set_issuer(&[&self.url]);
            v
        })
        .ok()?;
        Some(data.claims)
    }
}
