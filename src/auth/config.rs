//! `Config`: the settings every clone of the layer and its services share, and what they answer per request.

use std::time::Duration;

use http::{HeaderName, Request};

use crate::{
    passthrough::{PassthroughPolicy, PassthroughRequest},
    response::Challenges,
    route::PathPrefix,
};

/// The default key header, `x-litellm-api-key`.
pub const DEFAULT_KEY_HEADER: HeaderName = HeaderName::from_static("x-litellm-api-key");
/// The default validation timeout: a hung key store answers 503 after this long.
pub const DEFAULT_VALIDATION_TIMEOUT: Duration = Duration::from_secs(5);
/// The default cap on a credential header's raw length (8 KiB); longer values are answered with 431.
pub const DEFAULT_MAX_CREDENTIAL_LEN: usize = 8 * 1024;

/// Settings shared by every clone of the layer and its services.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) key_header: HeaderName,
    pub(crate) policy: PassthroughPolicy,
    pub(crate) timeout: Duration,
    pub(crate) max_credential_len: usize,
    pub(super) resource_metadata: Vec<(PathPrefix, Challenges)>,
}

impl Config {
    /// Whether the passthrough policy lets `request` carry the client's own token.
    pub(crate) fn allows<B>(&self, request: &Request<B>) -> bool {
        self.policy.allows(&PassthroughRequest::new(
            request.method(),
            request.uri(),
            request.headers(),
        ))
    }

    /// The 401 challenges for `request`: those of the longest configured route that matches its path when the
    /// route allows passthrough (OAuth discovery is only useful there), else bare ones.
    pub(crate) fn challenges<B>(&self, request: &Request<B>) -> Challenges {
        if !self.allows(request) {
            return Challenges::bare();
        }
        let path = request.uri().path();
        self.resource_metadata
            .iter()
            .filter(|(prefix, _)| prefix.matches(path))
            .max_by_key(|(prefix, _)| prefix.as_str().len())
            .map_or_else(Challenges::bare, |(_, challenges)| challenges.clone())
    }
}
