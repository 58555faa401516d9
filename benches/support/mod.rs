//! What both benchmarks measure: the requests, the inner service, the key set, the layer under test and the
//! tower-http anchor doing an equivalent static key check.
#![allow(dead_code)]

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{service_fn, Service};
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_mcp_auth::{validators::StaticKeys, McpAuthLayer, PassthroughPolicy, Validator};

pub const KEYS: [&str; 4] = ["sk-bench-0", "sk-bench-1", "sk-bench-2", "sk-bench-3"];

#[derive(Clone, Copy)]
pub enum Kind {
    /// `x-litellm-api-key: <valid key>`.
    Key,
    /// `Authorization: Bearer <valid key>`.
    Bearer,
    /// `Authorization: Bearer <not a key>` on the opted-in route.
    Passthrough,
    /// `Authorization: Bearer <not a key>` on a closed route: 401.
    Reject,
}

pub fn request(kind: Kind) -> Request<()> {
    let builder = match kind {
        Kind::Key => Request::post("/mcp/github").header("x-litellm-api-key", KEYS[1]),
        Kind::Bearer => Request::post("/mcp/github").header("authorization", "Bearer sk-bench-1"),
        Kind::Passthrough => {
            Request::post("/mcp/atlassian").header("authorization", "Bearer upstream-oauth-token")
        }
        Kind::Reject => {
            Request::post("/mcp/github").header("authorization", "Bearer upstream-oauth-token")
        }
    };
    builder
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(())
        .unwrap()
}

pub fn inner() -> impl Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    })
}

/// Identities are `Arc<str>`, cheap to clone, as the crate recommends for identities handed to every request.
pub fn keys() -> StaticKeys<Arc<str>> {
    KEYS.iter()
        .map(|k| (*k, Arc::from(format!("user-{k}"))))
        .collect()
}

pub fn layer<V: Validator>(validator: V) -> McpAuthLayer<V> {
    McpAuthLayer::new(validator).passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"]))
}

/// The anchor: tower-http's header validation with the same digest scan as `StaticKeys`. (tower-http's
/// validator returns the rejection response by value, hence the large `Err`.)
#[allow(clippy::result_large_err)]
pub fn anchor() -> ValidateRequestHeaderLayer<
    impl tower_http::validate_request::ValidateRequest<(), ResponseBody = Full<Bytes>> + Clone,
> {
    let digests: Vec<[u8; 32]> = KEYS
        .iter()
        .map(|k| Sha256::digest(k.as_bytes()).into())
        .collect();
    ValidateRequestHeaderLayer::custom(move |req: &mut Request<()>| {
        let digest: [u8; 32] = match req.headers().get("x-litellm-api-key") {
            Some(value) => Sha256::digest(value.as_bytes()).into(),
            None => [0; 32],
        };
        let mut found = subtle::Choice::from(0);
        for d in &digests {
            found |= d.ct_eq(&digest);
        }
        if bool::from(found) {
            Ok(())
        } else {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            Err(response)
        }
    })
}
