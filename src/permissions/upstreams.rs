//! `Upstreams`: a set of upstream names (each with the [`Tools`] it grants), or all of them; and
//! `UpstreamAccess`, the question identities answer.

use std::{fmt, sync::Arc};

use super::tools::Tools;

/// The upstream MCP servers an identity may use: every one, or those named, each with the [`Tools`] of it that
/// may be called (all of them unless narrowed by [`with_tools`](Self::with_tools)).
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

/// Entries are sorted by name, one per name.
type Entries = Arc<[(Box<str>, Tools)]>;

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    /// Every upstream, each with the tools listed for it, or else the default tools.
    All(Tools, Entries),
    /// The upstreams listed, and no other.
    Only(Entries),
}

fn normalise(name: &str) -> Box<str> {
    name.trim().to_ascii_lowercase().into_boxed_str()
}

fn find<'a>(entries: &'a [(Box<str>, Tools)], upstream: &str) -> Option<&'a Tools> {
    entries
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(upstream))
        .map(|(_, tools)| tools)
}

fn sorted(mut entries: Vec<(Box<str>, Tools)>) -> Entries {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.into()
}

impl Upstreams {
    /// Every upstream.
    pub fn all() -> Self {
        Self(Repr::All(Tools::all(), Arc::new([])))
    }

    /// The upstreams named, and no other.
    pub fn only<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::grants(names.into_iter().map(|name| (name, Tools::all())))
    }

    /// The upstreams named, each with the tools of it that may be called; a name given twice grants the union
    /// of its tools.
    ///
    /// ```
    /// use tower_mcp_auth::permissions::{Tools, Upstreams};
    ///
    /// let grants = Upstreams::grants([("gh", Tools::only(["echo"])), ("gh", Tools::only(["add"])), ("atl", Tools::all())]);
    /// assert_eq!(grants.tools("gh"), Some(&Tools::only(["add", "echo"])));
    /// assert_eq!(grants.tools("ATL"), Some(&Tools::all()));
    /// assert_eq!(grants.tools("priv"), None);
    /// ```
    pub fn grants<I, S>(grants: I) -> Self
    where
        I: IntoIterator<Item = (S, Tools)>,
        S: AsRef<str>,
    {
        let mut entries: Vec<(Box<str>, Tools)> = Vec::new();
        for (name, tools) in grants {
            let name = normalise(name.as_ref());
            if name.is_empty() {
                continue;
            }
            match entries.iter_mut().find(|(n, _)| *n == name) {
                Some((_, held)) => *held = held.union(&tools),
                None => entries.push((name, tools)),
            }
        }
        Self(Repr::Only(sorted(entries)))
    }

    /// The same set, with the tools of `upstream` narrowed to those `tools` also allows.
    ///
    /// ```
    /// use tower_mcp_auth::permissions::{Tools, Upstreams};
    ///
    /// let all = Upstreams::all().with_tools("gh", Tools::except(["add"]));
    /// assert!(all.allows("atl") && all.may_call("gh", "echo") && !all.may_call("gh", "add"));
    /// assert!(!Upstreams::only(["atl"]).with_tools("gh", Tools::all()).allows("gh"));
    /// ```
    pub fn with_tools(&self, upstream: &str, tools: Tools) -> Self {
        let narrow = Self(Repr::All(
            Tools::all(),
            Arc::new([(normalise(upstream), tools)]),
        ));
        self.intersect(&narrow)
    }

    /// The same set, with the tools of every upstream narrowed to those `tools` also allows (LiteLLM's
    /// `blocked_tools`, which hold on every server).
    ///
    /// ```
    /// use tower_mcp_auth::permissions::{Tools, Upstreams};
    ///
    /// let all = Upstreams::all().with_tools_everywhere(Tools::except(["rm"]));
    /// assert!(all.may_call("gh", "echo") && !all.may_call("gh", "rm") && !all.may_call("atl", "rm"));
    /// ```
    pub fn with_tools_everywhere(&self, tools: Tools) -> Self {
        self.intersect(&Self(Repr::All(tools, Arc::new([]))))
    }

    /// Whether `upstream` is in the set.
    pub fn allows(&self, upstream: &str) -> bool {
        self.tools(upstream).is_some()
    }

    /// The tools of `upstream` that may be called; `None` when the upstream is not in the set.
    pub fn tools(&self, upstream: &str) -> Option<&Tools> {
        match &self.0 {
            Repr::All(default, narrowed) => Some(find(narrowed, upstream).unwrap_or(default)),
            Repr::Only(entries) => find(entries, upstream),
        }
    }

    /// Whether `tool` of `upstream` may be called.
    pub fn may_call(&self, upstream: &str, tool: &str) -> bool {
        self.tools(upstream).is_some_and(|tools| tools.allows(tool))
    }

    /// Whether the set is "every upstream" (whatever the tools of each).
    pub fn is_all(&self) -> bool {
        matches!(self.0, Repr::All(..))
    }

    /// The names in the set, sorted and in lower case; `None` for "every upstream".
    pub fn names(&self) -> Option<impl Iterator<Item = &str>> {
        match &self.0 {
            Repr::All(..) => None,
            Repr::Only(entries) => Some(entries.iter().map(|(n, _)| &**n)),
        }
    }

    /// The upstreams in both sets, each with the tools both allow: how a key's permissions narrow its team's
    /// (and the reverse).
    ///
    /// ```
    /// use tower_mcp_auth::permissions::{Tools, Upstreams};
    ///
    /// let team = Upstreams::only(["atl", "priv"]);
    /// assert_eq!(Upstreams::all().intersect(&team), team);
    /// assert_eq!(Upstreams::only(["atl", "gh"]).intersect(&team), Upstreams::only(["atl"]));
    /// let key = Upstreams::grants([("atl", Tools::only(["a", "b"]))]);
    /// let team = Upstreams::grants([("atl", Tools::except(["b"]))]);
    /// assert_eq!(key.intersect(&team).tools("atl"), Some(&Tools::only(["a"])));
    /// ```
    pub fn intersect(&self, other: &Self) -> Self {
        // `a` entries each narrowed by `b`'s (or `b`'s default); with `b_default` for "every upstream" sides,
        // `b`'s own entries missing from `a` are added, narrowed by `a_default`.
        fn merged(
            a: &[(Box<str>, Tools)],
            a_default: Option<&Tools>,
            b: &[(Box<str>, Tools)],
            b_default: Option<&Tools>,
        ) -> Entries {
            let mut entries = Vec::new();
            for (name, tools) in a {
                match (find(b, name), b_default) {
                    (Some(theirs), _) | (None, Some(theirs)) => {
                        entries.push((name.clone(), tools.intersect(theirs)))
                    }
                    (None, None) => {}
                }
            }
            if let Some(a_default) = a_default {
                for (name, tools) in b {
                    if find(a, name).is_none() {
                        entries.push((name.clone(), tools.intersect(a_default)));
                    }
                }
            }
            sorted(entries)
        }
        match (&self.0, &other.0) {
            (Repr::All(da, a), Repr::All(db, b)) => Self(Repr::All(
                da.intersect(db),
                merged(a, Some(da), b, Some(db)),
            )),
            (Repr::All(da, a), Repr::Only(b)) => Self(Repr::Only(merged(b, None, a, Some(da)))),
            (Repr::Only(a), Repr::All(db, b)) => Self(Repr::Only(merged(a, None, b, Some(db)))),
            (Repr::Only(a), Repr::Only(b)) => Self(Repr::Only(merged(a, None, b, None))),
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
            Repr::All(default, narrowed) if narrowed.is_empty() && default.is_all() => {
                f.write_str("Upstreams(all)")
            }
            Repr::All(default, narrowed) => f
                .debug_struct("Upstreams::all")
                .field("tools", default)
                .field("narrowed", narrowed)
                .finish(),
            Repr::Only(entries) => f.debug_tuple("Upstreams").field(entries).finish(),
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

    /// The tools of `upstream` this identity may call; by default every tool of an upstream it may use.
    /// `None` when it may not use the upstream at all.
    fn tools(&self, upstream: &str) -> Option<Tools> {
        self.may_use(upstream).then(Tools::all)
    }
}

impl UpstreamAccess for Upstreams {
    fn may_use(&self, upstream: &str) -> bool {
        self.allows(upstream)
    }

    fn tools(&self, upstream: &str) -> Option<Tools> {
        Upstreams::tools(self, upstream).cloned()
    }
}

impl<T: UpstreamAccess + ?Sized> UpstreamAccess for Arc<T> {
    fn may_use(&self, upstream: &str) -> bool {
        (**self).may_use(upstream)
    }

    fn tools(&self, upstream: &str) -> Option<Tools> {
        (**self).tools(upstream)
    }
}
