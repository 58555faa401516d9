//! `Tools`: which tools of one upstream may be called — all, only some (LiteLLM's `allowed_tools`), or all but
//! some (`disallowed_tools`).

use std::{fmt, sync::Arc};

/// The tools of one upstream MCP server that may be called. Tool names are compared exactly, as MCP servers
/// compare them.
///
/// ```
/// use tower_mcp_auth::permissions::Tools;
///
/// assert!(Tools::all().allows("anything"));
/// let only = Tools::only(["echo"]);
/// assert!(only.allows("echo") && !only.allows("Echo") && !only.allows("add"));
/// let except = Tools::except(["add"]);
/// assert!(except.allows("echo") && !except.allows("add"));
/// assert_eq!(only.intersect(&except), Tools::only(["echo"]));
/// assert_eq!(Tools::only(["add"]).intersect(&except), Tools::only::<_, &str>([]));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Tools(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    All,
    Only(Arc<[Box<str>]>),
    Except(Arc<[Box<str>]>),
}

fn set<I, S>(names: I) -> Arc<[Box<str>]>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut names: Vec<Box<str>> = names.into_iter().map(|name| name.as_ref().into()).collect();
    names.sort();
    names.dedup();
    names.into()
}

impl Tools {
    /// Every tool.
    pub fn all() -> Self {
        Self(Repr::All)
    }

    /// The tools named, and no other; an empty list allows none.
    pub fn only<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self(Repr::Only(set(names)))
    }

    /// Every tool but those named.
    pub fn except<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names = set(names);
        if names.is_empty() {
            return Self::all();
        }
        Self(Repr::Except(names))
    }

    /// Whether `tool` may be called.
    pub fn allows(&self, tool: &str) -> bool {
        match &self.0 {
            Repr::All => true,
            Repr::Only(names) => names.binary_search_by(|n| (**n).cmp(tool)).is_ok(),
            Repr::Except(names) => names.binary_search_by(|n| (**n).cmp(tool)).is_err(),
        }
    }

    /// Whether this is "every tool".
    pub fn is_all(&self) -> bool {
        matches!(self.0, Repr::All)
    }

    /// The tools named, whichever the kind of set (for labels bounded by configuration).
    pub fn named(&self) -> impl Iterator<Item = &str> {
        let names: &[Box<str>] = match &self.0 {
            Repr::All => &[],
            Repr::Only(names) | Repr::Except(names) => names,
        };
        names.iter().map(|n| &**n)
    }

    /// The tools both sets allow.
    pub fn intersect(&self, other: &Self) -> Self {
        match (&self.0, &other.0) {
            (Repr::All, _) => other.clone(),
            (_, Repr::All) => self.clone(),
            (Repr::Only(a), Repr::Only(b)) => Self::only(a.iter().filter(|n| b.contains(n))),
            (Repr::Only(a), Repr::Except(b)) | (Repr::Except(b), Repr::Only(a)) => {
                Self::only(a.iter().filter(|n| !b.contains(n)))
            }
            (Repr::Except(a), Repr::Except(b)) => Self::except(a.iter().chain(b.iter())),
        }
    }

    /// The tools either set allows: how several grants of one key add up.
    ///
    /// ```
    /// use tower_mcp_auth::permissions::Tools;
    ///
    /// assert_eq!(Tools::only(["a"]).union(&Tools::only(["b"])), Tools::only(["a", "b"]));
    /// assert_eq!(Tools::only(["a"]).union(&Tools::all()), Tools::all());
    /// assert_eq!(Tools::except(["a", "b"]).union(&Tools::only(["a"])), Tools::except(["b"]));
    /// ```
    pub fn union(&self, other: &Self) -> Self {
        match (&self.0, &other.0) {
            (Repr::All, _) | (_, Repr::All) => Self::all(),
            (Repr::Only(a), Repr::Only(b)) => Self::only(a.iter().chain(b.iter())),
            (Repr::Only(a), Repr::Except(b)) | (Repr::Except(b), Repr::Only(a)) => {
                Self::except(b.iter().filter(|n| !a.contains(n)))
            }
            (Repr::Except(a), Repr::Except(b)) => Self::except(a.iter().filter(|n| b.contains(n))),
        }
    }
}

impl Default for Tools {
    /// Every tool.
    fn default() -> Self {
        Self::all()
    }
}

impl fmt::Debug for Tools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::All => f.write_str("Tools(all)"),
            Repr::Only(names) => f.debug_tuple("Tools::only").field(names).finish(),
            Repr::Except(names) => f.debug_tuple("Tools::except").field(names).finish(),
        }
    }
}
