//! [`ExchangeError`]: why no token could be exchanged.

use std::{error::Error, fmt, sync::Arc, time::Duration};

use http::StatusCode;

/// Why no token could be exchanged. `Display` names the failure and status, never a token or a body.
#[derive(Clone)]
pub struct ExchangeError {
    pub(super) kind: ErrorKind,
    pub(super) source: Option<Arc<dyn Error + Send + Sync>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ErrorKind {
    /// The authorization server refused the subject token (400 or 403).
    Refused(StatusCode),
    /// Any other status.
    Status(StatusCode),
    Transport,
    Timeout(Duration),
    TooLarge(usize),
    Json,
    BadToken,
}

impl ExchangeError {
    pub(super) fn new(kind: ErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// Whether the authorization server refused the exchange (a 400 or 403: the subject token is expired or
    /// revoked, or may not be exchanged for this target). The client gets 401 `invalid_token`; any other error
    /// is a 503: a 401 (which refuses the gateway's own client credentials), a 404 or another 4xx (a wrong
    /// endpoint), a 5xx, a transport failure or a timeout.
    pub fn is_refused(&self) -> bool {
        matches!(self.kind, ErrorKind::Refused(_))
    }

    /// The authorization server's status, when it answered with one other than 200.
    pub fn status(&self) -> Option<StatusCode> {
        match self.kind {
            ErrorKind::Refused(status) | ErrorKind::Status(status) => Some(status),
            _ => None,
        }
    }
}

impl fmt::Debug for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Refused(status) => {
                write!(
                    f,
                    "the authorization server refused the exchange ({status})"
                )
            }
            ErrorKind::Status(status) => write!(f, "the token endpoint answered {status}"),
            ErrorKind::Transport => f.pad("the token endpoint could not be reached"),
            ErrorKind::Timeout(after) => {
                write!(f, "the token endpoint did not answer within {after:?}")
            }
            ErrorKind::TooLarge(limit) => {
                write!(f, "the token endpoint answered more than {limit} bytes")
            }
            ErrorKind::Json => f.pad("the token endpoint's answer is not an RFC 8693 response"),
            ErrorKind::BadToken => f.pad("the issued token cannot be sent in a header"),
        }
    }
}

impl Error for ExchangeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}
