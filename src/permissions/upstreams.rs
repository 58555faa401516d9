//! `Upstreams`: a set of upstream names, or all of them; and `UpstreamAccess`, the question identities answer.

use std::{fmt, sync::Arc};

/// The upstream MCP servers an identity may use: every one, or those named.
///
/// Names are compared ASCII case-insensitively, as [`UpstreamConfig`](crate::upstream::UpstreamConfig) stores
/// them in lower case. An empty list allows nothing.
///
/// ```
/// use tower_mcp_auth::permissions::Upstreams;
///
/// let some = Upstreams::only(["atl", "GitHub"]);
/// assert!(some.allows("atl") && some.allows("github"));
/// assert!(!some.allows("priv"));
/// assert!(Upstreams::all().allows("priv"));
/// assert!(!Upstreams::only::<_, &str>([]).allows("atl"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Upstreams(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    All,
    Only(Arc<[Box<str>]>),
}

impl Upstreams {
    /// Every upstream.
    pub fn all() -> Self {
        Self(Repr::All)
    }

    /// The upstreams named, and no other.
    pub fn only<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut names: Vec<Box<str>> = names
            .into_iter()
            .map(|name| name.as_ref().trim().to_ascii_lowercase().into_boxed_str())
            .filter(|name| !name.is_empty())
            .collect();
        names.sort();
        names.dedup();
        Self(Repr::Only(names.into()))
    }

    /// Whether `upstream` is in the set.
    pub fn allows(&self, upstream: &str) -> bool {
        match &self.0 {
            Repr::All => true,
            Repr::Only(names) => names.iter().any(|n| n.eq_ignore_ascii_case(upstream)),
        }
    }

    /// Whether the set is "every upstream".
    pub fn is_all(&self) -> bool {
        matches!(self.0, Repr::All)
    }

    /// The names in the set, sorted and in lower case; `None` for "every upstream".
    pub fn names(&self) -> Option<impl Iterator<Item = &str>> {
        match &self.0 {
            Repr::All => None,
            Repr::Only(names) => Some(names.iter().map(|n| &**n)),
        }
    }

    /// The upstreams in both sets: how a key's permissions narrow its team's (and the reverse).
    ///
    /// ```
    /// use tower_mcp_auth::permissions::Upstreams;
    ///
    /// let team = Upstreams::only(["atl", "priv"]);
    /// assert_eq!(Upstreams::all().intersect(&team), team);
    /// assert_eq!(Upstreams::only(["atl", "gh"]).intersect(&team), Upstreams::only(["atl"]));
    /// ```
    pub fn intersect(&self, other: &Self) -> Self {
        match (&self.0, &other.0) {
            (Repr::All, _) => other.clone(),
            (_, Repr::All) => self.clone(),
            (Repr::Only(a), Repr::Only(b)) => {
                Self::only(a.iter().filter(|name| b.contains(name)).map(|n| &**n))
            }
        }
    }
}

impl Default for Upstreams {
    /// Every upstream: the behaviour of a gateway key without permissions.
    fn default() -> Self {
        Self::all()
    }
}

impl fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::All => f.write_str("Upstreams(all)"),
            Repr::Only(names) => f.debug_tuple("Upstreams").field(names).finish(),
        }
    }
}

/// An identity that knows which upstream MCP servers it may use; what
/// [`RequireUpstreamLayer`](super::RequireUpstreamLayer) asks.
///
/// ```
/// use tower_mcp_auth::permissions::{UpstreamAccess, Upstreams};
///
/// #[derive(Clone)]
/// struct Team { name: String, upstreams: Upstreams }
///
/// impl UpstreamAccess for Team {
///     fn may_use(&self, upstream: &str) -> bool {
///         self.upstreams.allows(upstream)
///     }
/// }
/// let team = Team { name: "ops".into(), upstreams: Upstreams::only(["atl"]) };
/// assert!(team.may_use("atl") && !team.may_use("priv"));
/// ```
pub trait UpstreamAccess {
    /// Whether this identity may send requests to the upstream named `upstream` (lower case).
    fn may_use(&self, upstream: &str) -> bool;
}

impl UpstreamAccess for Upstreams {
    fn may_use(&self, upstream: &str) -> bool {
        self.allows(upstream)
    }
}

impl<T: UpstreamAccess + ?Sized> UpstreamAccess for Arc<T> {
    fn may_use(&self, upstream: &str) -> bool {
        (**self).may_use(upstream)
    }
}
