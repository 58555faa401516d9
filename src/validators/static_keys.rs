//! `StaticKeys`: a fixed set of gateway keys, each mapped to an identity.

use std::{
    convert::Infallible,
    env, fmt, fs,
    future::{ready, Ready},
    io,
    path::{Path, PathBuf},
};

use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::{
    permissions::{KeyIdentity, Tools, Upstreams},
    secret::{sha256, Fingerprint},
    validate::{Validator, Verdict},
    Presented,
};

/// A [`Validator`] over a fixed set of keys, each mapped to an identity.
///
/// Keys are kept only as SHA-256 digests. A lookup hashes the presented credential and compares the digest
/// with *every* stored digest in constant time (`subtle`), so neither the comparison nor the position of the
/// matching key shows in the timing. The answer is [`Valid`](Verdict::Valid) for a listed key and
/// [`Unknown`](Verdict::Unknown) for anything else; a static set never says `Denied`. The lookup is a linear
/// scan, meant for the tens or thousands of keys a file or an environment variable holds.
///
/// ```
/// use tower_mcp_auth::{validators::StaticKeys, McpAuthLayer};
///
/// let keys = StaticKeys::new()
///     .with_key("sk-ops-1", "ops")
///     .with_key("sk-ci-1", "ci");
/// assert_eq!(keys.len(), 2);
/// // Debug shows how many keys there are, never the keys.
/// assert!(!format!("{keys:?}").contains("sk-ops-1"));
/// let layer = McpAuthLayer::new(keys);
/// # let _ = layer;
/// ```
///
/// # Key files and variables
///
/// [`from_file`](StaticKeys::from_file), [`from_env`](StaticKeys::from_env) and [`parse`](StaticKeys::parse)
/// read one entry per line: the key, optionally followed by `=` and the upstream MCP servers it may use
/// (`sk-a=atl,github`; `SERVER` grants every tool of the server, `SERVER/TOOL` one tool of it, repeated for
/// several: `sk-c=github/echo,github/add`), then optionally whitespace and the identity (the rest of the line). Blank lines and
/// lines starting with `#` are skipped. An entry without an identity gets the key's [`Fingerprint`] as its
/// identity, so that nothing downstream ever holds the key itself. An entry without a server list may use
/// every upstream. A key that is not visible ASCII, or that appears twice, is an error naming the line, never
/// the key.
///
/// The identity type decides what an entry may carry ([`FromKeyEntry`]): a [`KeyIdentity`] keeps the server
/// list (for [`RequireUpstreamLayer`](crate::permissions::RequireUpstreamLayer)); a `String` cannot, so a
/// file with server lists read as `StaticKeys<String>` is an error rather than keys that silently reach every
/// upstream.
///
/// ```
/// use tower_mcp_auth::{permissions::{KeyIdentity, UpstreamAccess}, validators::StaticKeys, Validator, Verdict};
///
/// let keys: StaticKeys<KeyIdentity> = StaticKeys::parse("sk-a=atl,github alice\nsk-b bob\n").unwrap();
/// let Some(Ok(Verdict::Valid(alice))) = keys.validate_now("sk-a") else { panic!() };
/// assert_eq!(alice.name(), "alice");
/// assert!(alice.may_use("github") && !alice.may_use("priv"));
/// let Some(Ok(Verdict::Valid(bob))) = keys.validate_now("sk-b") else { panic!() };
/// assert!(bob.may_use("priv"));
/// assert!(StaticKeys::<String>::parse("sk-a=atl alice\n").is_err());
///
/// let keys: StaticKeys<KeyIdentity> = StaticKeys::parse("sk-c=atl,github/echo carol\n").unwrap();
/// let Some(Ok(Verdict::Valid(carol))) = keys.validate_now("sk-c") else { panic!() };
/// assert!(carol.upstreams().may_call("atl", "any") && carol.upstreams().may_call("github", "echo"));
/// assert!(!carol.upstreams().may_call("github", "add"));
/// ```
///
/// The last `=` with something after it starts the server list, so a key may hold `=` as base64 padding
/// (`c2stYQ==`) but not `=` followed by other characters.
pub struct StaticKeys<I> {
    entries: Vec<Entry<I>>,
}

struct Entry<I> {
    digest: [u8; 32],
    identity: I,
}

impl<I> StaticKeys<I> {
    /// An empty key set: every credential is [`Unknown`](Verdict::Unknown) until keys are added.
    ///
    /// ```
    /// use tower_mcp_auth::validators::StaticKeys;
    ///
    /// let keys = StaticKeys::<String>::new();
    /// assert!(keys.is_empty());
    /// ```
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Adds `key`, mapped to `identity`, and returns the set (builder style). A key already in the set is
    /// mapped to the new identity.
    ///
    /// ```
    /// use tower_mcp_auth::validators::StaticKeys;
    ///
    /// let keys = StaticKeys::new().with_key("sk-a", 1).with_key("sk-b", 2);
    /// assert_eq!(keys.len(), 2);
    /// ```
    ///
    /// # Panics
    /// When `key` is empty or holds anything but visible ASCII: the layer would never present such a key.
    pub fn with_key(mut self, key: &str, identity: I) -> Self {
        self.insert(key, identity);
        self
    }

    /// Adds `key`, mapped to `identity`, returning the identity it was mapped to before, if any.
    ///
    /// ```
    /// use tower_mcp_auth::validators::StaticKeys;
    ///
    /// let mut keys = StaticKeys::new();
    /// assert_eq!(keys.insert("sk-a", "first"), None);
    /// assert_eq!(keys.insert("sk-a", "second"), Some("first"));
    /// ```
    ///
    /// # Panics
    /// When `key` is empty or holds anything but visible ASCII: the layer would never present such a key.
    pub fn insert(&mut self, key: &str, identity: I) -> Option<I> {
        assert!(
            is_presentable(key),
            "a static key must be non-empty visible ASCII"
        );
        let digest = sha256(key);
        match self.position(&digest) {
            Some(index) => Some(std::mem::replace(
                &mut self.entries[index].identity,
                identity,
            )),
            None => {
                self.entries.push(Entry { digest, identity });
                None
            }
        }
    }

    /// How many keys the set holds.
    ///
    /// ```
    /// use tower_mcp_auth::validators::StaticKeys;
    /// assert_eq!(StaticKeys::new().with_key("sk-a", ()).len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set holds no key.
    ///
    /// ```
    /// use tower_mcp_auth::validators::StaticKeys;
    /// assert!(StaticKeys::<()>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The answer for the credential whose digest is `digest`: its identity, or `Unknown`.
    fn verdict(&self, digest: &[u8; 32]) -> Verdict<I>
    where
        I: Clone,
    {
        match self.position(digest) {
            Some(index) => Verdict::Valid(self.entries[index].identity.clone()),
            None => Verdict::Unknown,
        }
    }

    /// The index of the entry whose digest equals `digest`, found without data-dependent branches or early
    /// exit: every entry is compared, and the match is selected in constant time.
    fn position(&self, digest: &[u8; 32]) -> Option<usize> {
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, entry) in self.entries.iter().enumerate() {
            let equal = entry.digest.ct_eq(digest);
            index.conditional_assign(&(i as u64), equal);
            found |= equal;
        }
        bool::from(found).then_some(index as usize)
    }
}

/// An identity type that [`StaticKeys::parse`] (and the file and environment readers) can build from a key
/// entry: its name, and the upstream MCP servers the entry lists, if any.
pub trait FromKeyEntry: Sized {
    /// The identity for an entry named `name`; `upstreams` is `None` when the entry lists no servers (the key
    /// may use every upstream). `None` when this type cannot carry a server list, which makes the entry an
    /// error ([`StaticKeysError::UpstreamsNotSupported`]).
    fn from_key_entry(name: String, upstreams: Option<Upstreams>) -> Option<Self>;
}

impl FromKeyEntry for String {
    fn from_key_entry(name: String, upstreams: Option<Upstreams>) -> Option<Self> {
        upstreams.is_none().then_some(name)
    }
}

impl FromKeyEntry for KeyIdentity {
    fn from_key_entry(name: String, upstreams: Option<Upstreams>) -> Option<Self> {
        Some(KeyIdentity::new(name, upstreams.unwrap_or_default()))
    }
}

impl<I: FromKeyEntry> StaticKeys<I> {
    /// Parses entries in the key-file format: one `key[=server,...] [identity]` per line, `#` comments, blank
    /// lines skipped; an entry without identity gets the key's fingerprint.
    ///
    /// ```
    /// use tower_mcp_auth::validators::StaticKeys;
    ///
    /// let keys = StaticKeys::<String>::parse("# gateway keys\nsk-ops-1 ops team\nsk-ci-1\n").unwrap();
    /// assert_eq!(keys.len(), 2);
    /// assert!(StaticKeys::<String>::parse("sk-a one\nsk-a two\n").is_err()); // duplicate key
    /// ```
    pub fn parse(text: &str) -> Result<Self, StaticKeysError> {
        Self::parse_entries(text.lines(), false)
    }

    /// Reads a key file (see [`parse`](StaticKeys::parse) for the format).
    ///
    /// ```no_run
    /// use tower_mcp_auth::{permissions::KeyIdentity, validators::StaticKeys};
    ///
    /// let keys = StaticKeys::<KeyIdentity>::from_file("/etc/gateway/keys")?;
    /// # Ok::<_, tower_mcp_auth::validators::StaticKeysError>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, StaticKeysError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|source| StaticKeysError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Reads keys from the environment variable `var`: entries as in a key file, separated by newlines or
    /// commas (`sk-a alice,sk-b bob`). Since commas separate entries, a variable cannot hold server lists
    /// (`sk-a=atl,github` would read as a list plus a key named `github`): an entry with one is an error
    /// ([`StaticKeysError::UpstreamsInEnv`]); give keys with permissions in a key file.
    ///
    /// ```
    /// use tower_mcp_auth::validators::StaticKeys;
    ///
    /// # std::env::set_var("GATEWAY_KEYS_DOC", "sk-a alice,sk-b bob");
    /// let keys = StaticKeys::<String>::from_env("GATEWAY_KEYS_DOC").unwrap();
    /// assert_eq!(keys.len(), 2);
    /// assert!(StaticKeys::<String>::from_env("GATEWAY_KEYS_UNSET_DOC").is_err());
    /// ```
    pub fn from_env(var: &str) -> Result<Self, StaticKeysError> {
        // Read as OsString: `env::var`'s error for a non-Unicode value carries the value itself.
        let value = env::var_os(var).ok_or_else(|| StaticKeysError::EnvNotPresent {
            var: var.to_owned(),
        })?;
        let text = value
            .to_str()
            .ok_or_else(|| StaticKeysError::EnvNotUnicode {
                var: var.to_owned(),
            })?;
        Self::parse_env(text)
    }

    /// Reads keys from the text of an environment variable, by [`from_env`](Self::from_env)'s rules: entries
    /// separated by newlines or commas, and no server lists. For programs that read the variable themselves.
    ///
    /// ```
    /// use tower_mcp_auth::validators::{StaticKeys, StaticKeysError};
    ///
    /// assert_eq!(StaticKeys::<String>::parse_env("sk-a alice,sk-b").unwrap().len(), 2);
    /// // `sk-a=atl,priv` would otherwise be `sk-a` limited to `atl` plus an unrestricted key `priv`.
    /// assert!(matches!(
    ///     StaticKeys::<String>::parse_env("sk-a=atl,priv"),
    ///     Err(StaticKeysError::UpstreamsInEnv { .. })
    /// ));
    /// ```
    pub fn parse_env(text: &str) -> Result<Self, StaticKeysError> {
        Self::parse_entries(text.split(['\n', ',']), true)
    }

    fn parse_entries<'a>(
        lines: impl Iterator<Item = &'a str>,
        from_env: bool,
    ) -> Result<Self, StaticKeysError> {
        let mut keys = Self::new();
        let mut lines_of = Vec::new();
        for (number, line) in lines.enumerate().map(|(i, line)| (i + 1, line.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (token, name) = match line.split_once(|c: char| c.is_ascii_whitespace()) {
                Some((token, name)) => (token, Some(name.trim().to_owned())),
                None => (line, None),
            };
            let (key, upstreams) = split_upstreams(token);
            if !is_presentable(key) {
                return Err(StaticKeysError::InvalidKey { line: number });
            }
            let upstreams = match upstreams {
                Some(_) if from_env => {
                    return Err(StaticKeysError::UpstreamsInEnv { entry: number })
                }
                Some(list) => Some(
                    parse_upstreams(list)
                        .ok_or(StaticKeysError::InvalidUpstreams { line: number })?,
                ),
                None => None,
            };
            let name = name.unwrap_or_else(|| Fingerprint::of(key).to_string());
            let identity = I::from_key_entry(name, upstreams)
                .ok_or(StaticKeysError::UpstreamsNotSupported { line: number })?;
            if let Some(index) = keys.position(&sha256(key)) {
                return Err(StaticKeysError::DuplicateKey {
                    line: number,
                    first: lines_of[index],
                });
            }
            keys.insert(key, identity);
            lines_of.push(number);
        }
        Ok(keys)
    }
}

/// Splits `key=server,...` at the last `=` that has something after it; a trailing `=` (base64 padding)
/// belongs to the key.
fn split_upstreams(token: &str) -> (&str, Option<&str>) {
    match token.rsplit_once('=') {
        Some((key, list)) if !list.is_empty() && !key.is_empty() => (key, Some(list)),
        _ => (token, None),
    }
}

/// A comma-separated list of grants: `SERVER` (every tool of it) or `SERVER/TOOL` (one tool; repeat for
/// several), each server name as `UpstreamConfig` accepts it and each tool name non-empty.
fn parse_upstreams(list: &str) -> Option<Upstreams> {
    let mut grants = Vec::new();
    for entry in list.split(',').map(str::trim) {
        let (server, tools) = match entry.split_once('/') {
            Some((server, tool)) if !tool.is_empty() => (server, Tools::only([tool])),
            Some(_) => return None,
            None => (entry, Tools::all()),
        };
        let valid = !server.is_empty()
            && server
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return None;
        }
        grants.push((server, tools));
    }
    Some(Upstreams::grants(grants))
}

/// What the layer could ever present as a credential: non-empty visible ASCII.
fn is_presentable(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic())
}

impl<I> Default for StaticKeys<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: AsRef<str>, I> FromIterator<(K, I)> for StaticKeys<I> {
    /// Collects `(key, identity)` pairs; a repeated key keeps the last identity.
    ///
    /// # Panics
    /// As [`insert`](StaticKeys::insert).
    fn from_iter<T: IntoIterator<Item = (K, I)>>(iter: T) -> Self {
        let mut keys = Self::new();
        for (key, identity) in iter {
            keys.insert(key.as_ref(), identity);
        }
        keys
    }
}

impl<I> fmt::Debug for StaticKeys<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeys")
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl<I> Validator for StaticKeys<I>
where
    I: Clone + Send + Sync + 'static,
{
    type Identity = I;
    type Error = Infallible;
    type Future = Ready<Result<Verdict<I>, Infallible>>;

    fn validate(&self, credential: &str) -> Self::Future {
        ready(Ok(self.verdict(&sha256(credential))))
    }

    fn validate_now(&self, credential: &str) -> Option<Result<Verdict<I>, Infallible>> {
        Some(Ok(self.verdict(&sha256(credential))))
    }

    fn validate_presented_now(
        &self,
        credential: &Presented<'_>,
    ) -> Option<Result<Verdict<I>, Infallible>> {
        Some(Ok(self.verdict(credential.sha256())))
    }
}

/// Why a key file or variable could not be loaded. Never shows a key: errors name lines, paths and variables.
///
/// ```
/// use tower_mcp_auth::validators::{StaticKeys, StaticKeysError};
///
/// let err = StaticKeys::<String>::parse("sk-secret\u{7f}").unwrap_err();
/// assert!(matches!(err, StaticKeysError::InvalidKey { line: 1 }));
/// assert!(!err.to_string().contains("sk-secret"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StaticKeysError {
    /// The key file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The environment variable is not set.
    EnvNotPresent {
        /// The variable's name.
        var: String,
    },
    /// The environment variable is not valid Unicode.
    EnvNotUnicode {
        /// The variable's name.
        var: String,
    },
    /// The key on this line (counted from 1) is not visible ASCII.
    InvalidKey {
        /// The line.
        line: usize,
    },
    /// The server list on this line is not a comma-separated list of upstream names.
    InvalidUpstreams {
        /// The line.
        line: usize,
    },
    /// The entry on this line lists servers, but the identity type cannot carry them (read it as
    /// `StaticKeys<KeyIdentity>`).
    UpstreamsNotSupported {
        /// The line.
        line: usize,
    },
    /// An environment variable's entry (counted from 1) lists servers, which commas would split; use a key
    /// file for keys with permissions.
    UpstreamsInEnv {
        /// The entry.
        entry: usize,
    },
    /// The key on this line appeared before, on line `first`.
    DuplicateKey {
        /// The line of the repeat.
        line: usize,
        /// The line where the key first appeared.
        first: usize,
    },
}

impl fmt::Display for StaticKeysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, .. } => write!(f, "cannot read key file {}", path.display()),
            Self::EnvNotPresent { var } => write!(f, "environment variable {var} is not set"),
            Self::EnvNotUnicode { var } => {
                write!(f, "environment variable {var} is not valid Unicode")
            }
            Self::InvalidKey { line } => {
                write!(f, "key on line {line} is not visible ASCII")
            }
            Self::InvalidUpstreams { line } => {
                write!(
                    f,
                    "server list on line {line} is not a list of upstream names"
                )
            }
            Self::UpstreamsNotSupported { line } => write!(
                f,
                "entry on line {line} lists servers, which this identity type cannot carry"
            ),
            Self::UpstreamsInEnv { entry } => write!(
                f,
                "entry {entry} of the environment variable lists servers; use a key file for those"
            ),
            Self::DuplicateKey { line, first } => {
                write!(f, "key on line {line} repeats the key on line {first}")
            }
        }
    }
}

impl std::error::Error for StaticKeysError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_digests_only() {
        let keys = StaticKeys::new().with_key("sk-a", 1).with_key("sk-b", 2);
        assert_eq!(keys.entries[0].digest, sha256("sk-a"));
        assert_eq!(keys.entries[1].digest, sha256("sk-b"));
    }

    #[test]
    fn position_scans_every_entry_and_selects_the_match() {
        let keys: StaticKeys<usize> = (0..5).map(|i| (format!("sk-{i}"), i)).collect();
        for i in 0..5 {
            assert_eq!(keys.position(&sha256(&format!("sk-{i}"))), Some(i));
        }
        assert_eq!(keys.position(&sha256("sk-5")), None);
        assert_eq!(StaticKeys::<()>::new().position(&sha256("sk-0")), None);
    }
}
