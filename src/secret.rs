//! Redaction: the most of a credential this crate ever shows is a short fingerprint.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The first eight hex digits of a credential's SHA-256 digest.
///
/// This is the only trace of a credential that appears in `Debug` output and tracing events: enough to
/// correlate log lines about the same caller, far too little to recover or guess the credential.
///
/// ```
/// use tower_mcp_auth::Fingerprint;
///
/// let fp = Fingerprint::of("sk-secret");
/// assert_eq!(fp.to_string().len(), 8);
/// assert!(!fp.to_string().contains("secret"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 4]);

impl Fingerprint {
    /// Fingerprints a credential.
    pub fn of(credential: &str) -> Self {
        let digest = sha256(credential);
        Self::from_digest(&digest)
    }

    /// The fingerprint of the credential whose SHA-256 digest is `digest`, for code that already hashed it.
    ///
    /// ```
    /// use sha2::{Digest, Sha256};
    /// use tower_mcp_auth::Fingerprint;
    ///
    /// let digest: [u8; 32] = Sha256::digest(b"sk-secret").into();
    /// assert_eq!(Fingerprint::from_digest(&digest), Fingerprint::of("sk-secret"));
    /// ```
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        Self([digest[0], digest[1], digest[2], digest[3]])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a:02x}{b:02x}{c:02x}{d:02x}")
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// SHA-256 of a credential, the form in which credentials are compared and used as cache keys.
pub(crate) fn sha256(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}

/// Compares two credentials in constant time (on their digests, so lengths do not leak either).
pub(crate) fn credentials_equal(a: &str, b: &str) -> bool {
    sha256(a).ct_eq(&sha256(b)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_eight_hex_digits_of_sha256() {
        // SHA-256("abc") = ba7816bf...
        assert_eq!(Fingerprint::of("abc").to_string(), "ba7816bf");
        assert_eq!(
            format!("{:?}", Fingerprint::of("abc")),
            "Fingerprint(ba7816bf)"
        );
    }

    #[test]
    fn equality_is_exact() {
        assert!(credentials_equal("sk-a", "sk-a"));
        assert!(!credentials_equal("sk-a", "sk-b"));
        assert!(!credentials_equal("sk-a", "sk-a "));
    }
}
