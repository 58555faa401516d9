//! The one tracing event per request: the outcome, where the credential came from, and a fingerprint.

use crate::{secret::Fingerprint, validate::BoxError, Presented};

/// How a request ended, as logged.
#[derive(Clone, Copy)]
pub(crate) enum Outcome {
    Authenticated { forwards_token: bool },
    Passthrough,
    Rejected,
    Denied,
    Error,
}

/// Emits the request's event at debug level. Field values are only computed when the event is enabled, so the
/// fingerprint's hash costs nothing otherwise.
pub(crate) fn record(
    outcome: Outcome,
    source: &'static str,
    status: Option<u16>,
    credential: Option<&Presented<'_>>,
    error: Option<&BoxError>,
) {
    let (label, forwards_token) = match outcome {
        Outcome::Authenticated { forwards_token } => ("authenticated", forwards_token),
        Outcome::Passthrough => ("passthrough", true),
        Outcome::Rejected => ("rejected", false),
        Outcome::Denied => ("denied", false),
        Outcome::Error => ("error", false),
    };
    crate::metrics::decision(label, source);
    tracing::debug!(
        target: "tower_mcp_auth",
        outcome = label,
        source,
        status,
        forwards_token,
        fingerprint = credential.map(|c| tracing::field::display(Fingerprint::from_digest(c.sha256()))),
        error = error.map(tracing::field::display),
        "mcp auth decision"
    );
}
