//! The error of upstream configuration: what was wrong, never the input itself.

use std::{error::Error, fmt};

/// Why an upstream setting was refused: an [`UpstreamAuth`](super::UpstreamAuth) that cannot be built or parsed,
/// or an [`UpstreamConfig`](super::UpstreamConfig) with an unusable name or URL.
///
/// Neither `Display` nor `Debug` repeats the input: a mistyped `--upstream-auth` may well be a bare secret.
///
/// ```
/// use tower_mcp_auth::upstream::UpstreamAuth;
///
/// let err = "ghp_secret".parse::<UpstreamAuth>().unwrap_err();
/// assert!(!err.to_string().contains("ghp_secret"));
/// assert!(!format!("{err:?}").contains("ghp_secret"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(Reason);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    MissingKind,
    UnknownKind,
    NoneWithValue,
    BasicWithoutColon,
    InvalidValue,
    InvalidUrl,
    UrlWithUserinfo,
    InvalidName,
}

impl From<Reason> for ConfigError {
    fn from(reason: Reason) -> Self {
        Self(reason)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self.0 {
            Reason::MissingKind => {
                "expected KIND:VALUE, KIND one of none, api_key, bearer_token, basic, authorization, oauth2, token"
            }
            Reason::UnknownKind => {
                "unknown upstream auth kind; expected one of none, api_key, bearer_token, basic, authorization, oauth2, token"
            }
            Reason::NoneWithValue => "upstream auth kind `none` takes no value",
            Reason::BasicWithoutColon => "upstream auth kind `basic` takes `user:password`",
            Reason::InvalidValue => {
                "upstream credential must be visible ASCII (spaces allowed inside, no control characters)"
            }
            Reason::InvalidUrl => "upstream URL must be absolute, with a scheme and a host",
            Reason::UrlWithUserinfo => {
                "upstream URL must not carry credentials; use an upstream auth of kind `basic`"
            }
            Reason::InvalidName => {
                "upstream name must be non-empty ASCII letters, digits, `-`, `_` or `.`"
            }
        })
    }
}

impl Error for ConfigError {}
