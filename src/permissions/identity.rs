//! `KeyIdentity`: a name and the upstreams it may use, the identity of permission-carrying key files.

use std::{fmt, sync::Arc};

use super::{
    rpm::RpmLimits,
    upstreams::{UpstreamAccess, Upstreams},
};

/// The identity of a gateway key that carries its permissions: a display name and the [`Upstreams`] the key
/// may use, and the [`RpmLimits`] its issuer set. Cloning it allocates nothing (reference counts only).
///
/// ```
/// use tower_mcp_auth::permissions::{KeyIdentity, UpstreamAccess, Upstreams};
///
/// let alice = KeyIdentity::new("alice", Upstreams::only(["atl"]));
/// assert_eq!(alice.name(), "alice");
/// assert!(alice.may_use("atl") && !alice.may_use("priv"));
/// assert_eq!(alice.to_string(), "alice");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyIdentity {
    name: Arc<str>,
    upstreams: Upstreams,
    rpm_limits: RpmLimits,
}

impl KeyIdentity {
    /// An identity named `name` that may use `upstreams`.
    pub fn new(name: impl Into<Arc<str>>, upstreams: Upstreams) -> Self {
        Self {
            name: name.into(),
            upstreams,
            rpm_limits: RpmLimits::default(),
        }
    }

    /// The same identity with the requests per minute its issuer allows (none by default).
    pub fn with_rpm_limits(mut self, limits: RpmLimits) -> Self {
        self.rpm_limits = limits;
        self
    }

    /// The requests per minute its issuer allows.
    pub fn rpm_limits(&self) -> &RpmLimits {
        &self.rpm_limits
    }

    /// The identity's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The upstreams it may use.
    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }
}

impl fmt::Display for KeyIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.name)
    }
}

impl UpstreamAccess for KeyIdentity {
    fn may_use(&self, upstream: &str) -> bool {
        self.upstreams.allows(upstream)
    }

    fn tools(&self, upstream: &str) -> Option<super::Tools> {
        self.upstreams.tools(upstream).cloned()
    }
}
