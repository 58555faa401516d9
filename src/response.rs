//! The answers the layer gives itself: 400, 401, 403, 431 and 503, with their challenges.

use bytes::Bytes;
use http::{
    header::{CONTENT_TYPE, WWW_AUTHENTICATE},
    HeaderMap, HeaderName, HeaderValue, Response, StatusCode,
};

use crate::config_error::ConfigError;

const BARE: HeaderValue = HeaderValue::from_static("Bearer");
const INVALID_TOKEN: HeaderValue = HeaderValue::from_static("Bearer error=\"invalid_token\"");
const INVALID_REQUEST: HeaderValue = HeaderValue::from_static("Bearer error=\"invalid_request\"");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The two `WWW-Authenticate` values of a route: without and with `error="invalid_token"`.
#[derive(Clone, Debug)]
pub(crate) struct Challenges {
    missing: HeaderValue,
    invalid_token: HeaderValue,
}

impl Challenges {
    /// Challenges without `resource_metadata`.
    pub(crate) fn bare() -> Self {
        Self {
            missing: BARE,
            invalid_token: INVALID_TOKEN,
        }
    }

    /// Challenges naming an RFC 9728 protected-resource metadata document; refused when `url` is empty, not
    /// visible ASCII, or holds `"` or `\`, which cannot stand in a quoted string unescaped.
    pub(crate) fn with_resource_metadata(url: &str) -> Result<Self, ConfigError> {
        let quotable = !url.is_empty()
            && url
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if !quotable {
            return Err(ConfigError::new(
                "resource metadata URL",
                url,
                "must be non-empty visible ASCII without '\"' or '\\'",
            ));
        }
        let header = |value: String| {
            HeaderValue::try_from(value).expect("checked to be visible ASCII above")
        };
        Ok(Self {
            missing: header(format!("Bearer resource_metadata=\"{url}\"")),
            invalid_token: header(format!(
                "Bearer error=\"invalid_token\", resource_metadata=\"{url}\""
            )),
        })
    }
}

/// Why the layer answered a request itself. Never holds a credential.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// 400: malformed or duplicated credential headers.
    InvalidRequest(&'static str),
    /// 431: a credential header over the configured cap.
    TooLarge,
    /// 401 `invalid_token` with a bare challenge: an empty gateway key.
    InvalidToken,
    /// 401 without credentials (no error code), or with a token that is not valid here.
    Unauthorized {
        challenges: Challenges,
        token_sent: bool,
    },
    /// 401 with a bare challenge: an `Authorization` scheme other than `Bearer`.
    ForeignScheme,
    /// 403: a gateway key that may not be used now.
    Denied,
    /// 503: the validator failed or timed out.
    Unavailable,
}

/// Whether a request speaks gRPC, whose clients read `grpc-status` rather than the HTTP status.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl Rejection {
    /// The HTTP response for this rejection: a small JSON body and, for 400 and 401, a challenge.
    ///
    /// For a gRPC request it is a trailers-only gRPC answer instead: HTTP 200, an empty body, `grpc-status`
    /// (`INVALID_ARGUMENT`, `UNAUTHENTICATED`, `PERMISSION_DENIED` or `UNAVAILABLE`) and `grpc-message`, with
    /// the same challenge.
    pub(crate) fn into_response(self, grpc: bool) -> Response<Bytes> {
        let (status, challenge, error, description) = match self {
            Self::InvalidRequest(description) => (
                StatusCode::BAD_REQUEST,
                Some(INVALID_REQUEST),
                "invalid_request",
                description,
            ),
            Self::TooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                None,
                "invalid_request",
                "a credential header exceeds the size limit",
            ),
            Self::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                Some(INVALID_TOKEN),
                "invalid_token",
                "the gateway key is empty",
            ),
            Self::Unauthorized {
                challenges,
                token_sent: true,
            } => (
                StatusCode::UNAUTHORIZED,
                Some(challenges.invalid_token),
                "invalid_token",
                "the credential is not valid here",
            ),
            Self::Unauthorized {
                challenges,
                token_sent: false,
            } => (
                StatusCode::UNAUTHORIZED,
                Some(challenges.missing),
                "unauthorized",
                "a gateway API key or a bearer token is required",
            ),
            Self::ForeignScheme => (
                StatusCode::UNAUTHORIZED,
                Some(BARE),
                "unauthorized",
                "unsupported authorization scheme; use Bearer",
            ),
            Self::Denied => (
                StatusCode::FORBIDDEN,
                None,
                "access_denied",
                "this gateway key may not be used now",
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "temporarily_unavailable",
                "credential validation is unavailable; retry later",
            ),
        };
        let mut response = if grpc {
            grpc_response(status, description)
        } else {
            json_error(status, error, description)
        };
        let headers = response.headers_mut();
        if let Some(challenge) = challenge {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// An OAuth-style JSON error answer: `{"error": …, "error_description": …}` with `status`.
pub(crate) fn json_error(status: StatusCode, error: &str, description: &str) -> Response<Bytes> {
    let body = serde_json::json!({ "error": error, "error_description": description });
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// A trailers-only gRPC answer carrying the status that corresponds to the HTTP one.
fn grpc_response(status: StatusCode, description: &'static str) -> Response<Bytes> {
    let code = match status {
        StatusCode::UNAUTHORIZED => "16",
        StatusCode::FORBIDDEN => "7",
        StatusCode::SERVICE_UNAVAILABLE => "14",
        _ => "3",
    };
    let mut response = Response::new(Bytes::new());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, GRPC);
    headers.insert(GRPC_STATUS, HeaderValue::from_static(code));
    // Descriptions are plain ASCII without '%', which grpc-message carries as is.
    headers.insert(GRPC_MESSAGE, HeaderValue::from_static(description));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_in_metadata_url_is_refused() {
        let err = Challenges::with_resource_metadata("https://gw/\", error=\"x").unwrap_err();
        assert!(err.to_string().contains("visible ASCII"), "{err}");
    }

    #[test]
    fn metadata_challenges() {
        let c = Challenges::with_resource_metadata(
            "https://gw/.well-known/oauth-protected-resource/mcp/a",
        )
        .unwrap();
        assert_eq!(
            c.missing,
            "Bearer resource_metadata=\"https://gw/.well-known/oauth-protected-resource/mcp/a\""
        );
        assert_eq!(
            c.invalid_token,
            "Bearer error=\"invalid_token\", resource_metadata=\"https://gw/.well-known/oauth-protected-resource/mcp/a\""
        );
    }
}
