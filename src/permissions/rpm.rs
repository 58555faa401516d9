//! `RpmLimits`: the requests per minute a key's issuer set for it and for its team.

use std::{num::NonZeroU32, sync::Arc};

/// The requests per minute a key's issuer allows: the key's own limit, and its team's, which every key of the
/// team shares (LiteLLM's `rpm_limit` of the key and of its team). Carried by a
/// [`KeyIdentity`](super::KeyIdentity) for a gateway to enforce; nothing in this crate counts requests.
///
/// ```
/// use std::num::NonZeroU32;
/// use tower_mcp_auth::permissions::{KeyIdentity, RpmLimits, Upstreams};
///
/// let limits = RpmLimits::new(NonZeroU32::new(60), Some(("research", NonZeroU32::new(600).unwrap())));
/// let alice = KeyIdentity::new("alice", Upstreams::all()).with_rpm_limits(limits);
/// assert_eq!(alice.rpm_limits().key().map(NonZeroU32::get), Some(60));
/// assert_eq!(alice.rpm_limits().team().map(|(team, rpm)| (team, rpm.get())), Some(("research", 600)));
/// assert!(KeyIdentity::new("bob", Upstreams::all()).rpm_limits().is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RpmLimits {
    key: Option<NonZeroU32>,
    team: Option<(Arc<str>, NonZeroU32)>,
}

impl RpmLimits {
    /// The key's limit, and its team's (the team's id and limit).
    pub fn new(key: Option<NonZeroU32>, team: Option<(impl Into<Arc<str>>, NonZeroU32)>) -> Self {
        Self {
            key,
            team: team.map(|(id, rpm)| (id.into(), rpm)),
        }
    }

    /// The key's own limit.
    pub fn key(&self) -> Option<NonZeroU32> {
        self.key
    }

    /// The team's id and the limit its keys share.
    pub fn team(&self) -> Option<(&str, NonZeroU32)> {
        self.team.as_ref().map(|(id, rpm)| (&**id, *rpm))
    }

    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self.key.is_none() && self.team.is_none()
    }
}
