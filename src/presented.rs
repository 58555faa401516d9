//! A presented credential, lent to validators with its SHA-256 digest computed at most once.

use std::{cell::OnceCell, fmt};

use crate::secret::sha256;

/// A credential as the caller presented it, and its SHA-256 digest, computed the first time a validator asks
/// for it and then shared: by every validator of a chain, and by the [`OAuthPassthrough`] marker the layer
/// builds when the credential turns out to be the client's own token
/// ([`OAuthPassthrough::token_sha256`]).
///
/// The layer hands one to [`Validator::validate_presented_now`](crate::Validator::validate_presented_now).
/// A validator that compares or caches credentials by their digest (static keys, LiteLLM's `token` column, a
/// cache) reads [`sha256`](Self::sha256) rather than hashing the text again.
///
/// `Debug` never shows the credential.
///
/// ```
/// use sha2::{Digest, Sha256};
/// use tower_mcp_auth::Presented;
///
/// let presented = Presented::new("sk-secret");
/// assert_eq!(presented.as_str(), "sk-secret");
/// let digest: [u8; 32] = Sha256::digest(b"sk-secret").into();
/// assert_eq!(presented.sha256(), &digest);
/// assert!(!format!("{presented:?}").contains("secret"));
/// ```
///
/// [`OAuthPassthrough`]: crate::OAuthPassthrough
/// [`OAuthPassthrough::token_sha256`]: crate::OAuthPassthrough::token_sha256
pub struct Presented<'a> {
    text: &'a str,
    digest: OnceCell<[u8; 32]>,
}

impl<'a> Presented<'a> {
    /// The credential `text`, its digest not computed yet.
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            digest: OnceCell::new(),
        }
    }

    /// The credential as presented.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// The credential's SHA-256 digest: computed on the first call, then kept.
    pub fn sha256(&self) -> &[u8; 32] {
        self.digest.get_or_init(|| sha256(self.text))
    }

    /// The digest if a validator asked for it, without computing it.
    pub(crate) fn computed_sha256(&self) -> Option<[u8; 32]> {
        self.digest.get().copied()
    }
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("text", &format_args!("[redacted]"))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_computed_on_demand_and_kept() {
        let presented = Presented::new("sk-a");
        assert_eq!(presented.computed_sha256(), None);
        let first = *presented.sha256();
        assert_eq!(first, sha256("sk-a"));
        assert_eq!(presented.computed_sha256(), Some(first));
        assert!(std::ptr::eq(presented.sha256(), presented.sha256()));
    }
}
