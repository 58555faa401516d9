//! `UpstreamAuth`: how the gateway authenticates to one upstream, and the one header that produces.

use std::{fmt, str::FromStr};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use http::{header::AUTHORIZATION, HeaderName, HeaderValue};

use super::error::{ConfigError, Reason};
use crate::secret::Fingerprint;

/// `X-API-Key`, the header of [`AuthKind::ApiKey`].
pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The kinds of upstream authentication, named as in LiteLLM's MCP server settings.
///
/// | kind | header sent for value `v` |
/// |---|---|
/// | `none` | nothing |
/// | `api_key` | `X-API-Key: v` |
/// | `bearer_token` | `Authorization: Bearer v` |
/// | `basic` (`v` = `user:pass`) | `Authorization: Basic base64(user:pass)` |
/// | `authorization` | `Authorization: v`, verbatim |
/// | `oauth2` | `Authorization: Bearer v` |
/// | `token` | `Authorization: token v` |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthKind {
    /// No credential.
    #[default]
    None,
    /// `X-API-Key: v`.
    ApiKey,
    /// `Authorization: Bearer v`.
    BearerToken,
    /// `Authorization: Basic base64(user:pass)`, from `user:pass`.
    Basic,
    /// `Authorization: v`, verbatim.
    Authorization,
    /// `Authorization: Bearer v`: an OAuth 2.0 access token.
    OAuth2,
    /// `Authorization: token v`, the scheme GitHub's older APIs use.
    Token,
}

impl AuthKind {
    const ALL: [Self; 7] = [
        Self::None,
        Self::ApiKey,
        Self::BearerToken,
        Self::Basic,
        Self::Authorization,
        Self::OAuth2,
        Self::Token,
    ];

    /// The kind's name in `KIND:VALUE` settings: `none`, `api_key`, `bearer_token`, `basic`, `authorization`,
    /// `oauth2` or `token`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ApiKey => "api_key",
            Self::BearerToken => "bearer_token",
            Self::Basic => "basic",
            Self::Authorization => "authorization",
            Self::OAuth2 => "oauth2",
            Self::Token => "token",
        }
    }

    /// The header this kind sends `value` as, marked sensitive: nothing for the `none` kind or an empty value.
    pub(crate) fn header(
        self,
        value: &str,
    ) -> Result<Option<(HeaderName, HeaderValue)>, ConfigError> {
        let value = value.trim();
        let visible = || {
            if value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                Ok(value)
            } else {
                Err(Reason::InvalidValue)
            }
        };
        if value.is_empty() {
            return Ok(None);
        }
        let (name, value) = match self {
            Self::None => return Ok(None),
            Self::ApiKey => (X_API_KEY, visible()?.to_owned()),
            Self::BearerToken | Self::OAuth2 => (AUTHORIZATION, format!("Bearer {}", visible()?)),
            Self::Authorization => (AUTHORIZATION, visible()?.to_owned()),
            Self::Token => (AUTHORIZATION, format!("token {}", visible()?)),
            Self::Basic => {
                // RFC 7617 allows UTF-8 in user and password; base64 makes any of it a header value.
                if value.chars().any(char::is_control) {
                    return Err(Reason::InvalidValue.into());
                }
                if !value.contains(':') {
                    return Err(Reason::BasicWithoutColon.into());
                }
                (AUTHORIZATION, format!("Basic {}", STANDARD.encode(value)))
            }
        };
        let mut value = HeaderValue::try_from(value).map_err(|_| Reason::InvalidValue)?;
        value.set_sensitive(true);
        Ok(Some((name, value)))
    }
}

impl fmt::Display for AuthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for AuthKind {
    type Err = ConfigError;

    /// Parses a kind's name, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Reason::UnknownKind.into())
    }
}

/// How the gateway authenticates to one upstream: a kind and its credential, turned into the one header the
/// [contract table](AuthKind) gives.
///
/// The header is built once, when the value is, and marked sensitive (so HTTP/2 never indexes it and
/// `TraceLayer` never prints it). An empty value produces no header. `Debug` shows the kind and a
/// [`Fingerprint`], never the credential.
///
/// ```
/// use tower_mcp_auth::upstream::{AuthKind, UpstreamAuth};
///
/// let auth: UpstreamAuth = "basic:alice:s3cret".parse().unwrap();
/// let (name, value) = auth.header().unwrap();
/// assert_eq!(name, "authorization");
/// assert_eq!(value, "Basic YWxpY2U6czNjcmV0");
/// assert!(value.is_sensitive());
/// assert!(!format!("{auth:?}").contains("s3cret"));
///
/// let auth = UpstreamAuth::new(AuthKind::ApiKey, "k-123").unwrap();
/// assert_eq!(auth.header().unwrap().0, "x-api-key");
/// assert!(UpstreamAuth::new(AuthKind::BearerToken, "").unwrap().header().is_none());
/// ```
#[derive(Clone, Default)]
pub struct UpstreamAuth {
    kind: AuthKind,
    header: Option<(HeaderName, HeaderValue)>,
    fingerprint: Option<Fingerprint>,
}

impl UpstreamAuth {
    /// No upstream credential (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// A credential of `kind`. Surrounding whitespace is trimmed; an empty value produces no header.
    ///
    /// # Errors
    /// When `value` holds a control character or, except for `basic`, a non-ASCII one; when a `basic` value has
    /// no `:`; when the kind is `none` and a value is given.
    pub fn new(kind: AuthKind, value: &str) -> Result<Self, ConfigError> {
        if kind == AuthKind::None && !value.trim().is_empty() {
            return Err(Reason::NoneWithValue.into());
        }
        let header = kind.header(value)?;
        Ok(Self {
            kind,
            fingerprint: header.as_ref().map(|_| Fingerprint::of(value.trim())),
            header,
        })
    }

    /// The kind of credential.
    pub fn kind(&self) -> AuthKind {
        self.kind
    }

    /// The header this credential is sent as, its value marked sensitive; `None` for no credential.
    pub fn header(&self) -> Option<(&HeaderName, &HeaderValue)> {
        self.header.as_ref().map(|(name, value)| (name, value))
    }
}

impl FromStr for UpstreamAuth {
    type Err = ConfigError;

    /// Parses `KIND:VALUE` (`bearer_token:abc`, `api_key:xyz`, `basic:user:pass`, `authorization:Digest …`,
    /// `oauth2:…`, `token:…`) or `none`. The kind is matched ignoring ASCII case; the value is everything after
    /// the first `:`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((kind, value)) => Self::new(kind.trim().parse()?, value),
            None if s.trim().eq_ignore_ascii_case(AuthKind::None.as_str()) => Ok(Self::none()),
            None => Err(Reason::MissingKind.into()),
        }
    }
}

impl fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("UpstreamAuth");
        debug.field("kind", &self.kind);
        match self.fingerprint {
            Some(fingerprint) => {
                debug.field("credential", &format_args!("[redacted {fingerprint}]"))
            }
            None => debug.field("credential", &format_args!("none")),
        };
        debug.finish()
    }
}
