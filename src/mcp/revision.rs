//! `Revision`: the MCP protocol revisions this crate knows, and what each changes for a gateway.

use std::fmt;

/// An MCP protocol revision, as `MCP-Protocol-Version` names it.
///
/// ```
/// use tower_mcp_auth::mcp::Revision;
///
/// let current: Revision = "2026-07-28".parse().unwrap();
/// assert!(current.mirrors_routing_headers() && !current.allows_batches());
/// assert!(Revision::V2025_03_26.allows_batches());
/// assert!("1900-01-01".parse::<Revision>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Revision {
    /// 2024-11-05 (HTTP+SSE transport).
    V2024_11_05,
    /// 2025-03-26: Streamable HTTP, JSON-RPC batches; what a request without `MCP-Protocol-Version` is taken
    /// to speak.
    V2025_03_26,
    /// 2025-06-18: `MCP-Protocol-Version` on every request; batches removed.
    V2025_06_18,
    /// 2025-11-25.
    V2025_11_25,
    /// 2026-07-28: no initialize handshake and no sessions; `Mcp-Method` and `Mcp-Name` mirror the body, and
    /// servers reject a request whose headers disagree with it.
    V2026_07_28,
}

impl Revision {
    /// Every revision, oldest first.
    pub const ALL: [Self; 5] = [
        Self::V2024_11_05,
        Self::V2025_03_26,
        Self::V2025_06_18,
        Self::V2025_11_25,
        Self::V2026_07_28,
    ];

    /// The revision of a request that sends no `MCP-Protocol-Version` (the transport specification's rule).
    pub const DEFAULT: Self = Self::V2025_03_26;

    /// The date that names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2024_11_05 => "2024-11-05",
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
        }
    }

    /// Whether a request body may be a JSON-RPC batch (2025-03-26 and before).
    pub fn allows_batches(self) -> bool {
        self <= Self::V2025_03_26
    }

    /// Whether requests must carry `Mcp-Method` (and `Mcp-Name` for name-bearing methods) mirroring the
    /// body (2026-07-28 and later).
    pub fn mirrors_routing_headers(self) -> bool {
        self >= Self::V2026_07_28
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The revision named is not one this crate knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownRevision;

impl fmt::Display for UnknownRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("not a known MCP protocol revision")
    }
}

impl std::error::Error for UnknownRevision {}

impl std::str::FromStr for Revision {
    type Err = UnknownRevision;

    fn from_str(s: &str) -> Result<Self, UnknownRevision> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownRevision)
    }
}
