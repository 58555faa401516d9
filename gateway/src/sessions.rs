//! MCP sessions bound to the caller that opened them.
//!
//! An upstream's `Mcp-Session-Id` is a bearer secret of its own: whoever presents it continues the session.
//! The gateway records, for each session an upstream hands out through it, who opened it: the key's identity
//! for key callers, the SHA-256 digest of the token for passthrough callers (never the token). A request that
//! presents a session another caller opened, or one the gateway does not know (expired from the table, or
//! never handed out through it), gets `404`, as for an unknown session, and never reaches the upstream; the
//! client then opens a new session, as the MCP transport specifies.

use std::{sync::Arc, time::Duration};

use moka::future::Cache;
use tower_mcp_auth::Authenticated;

use super::resource_server::Caller;

/// The MCP session header.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// How many sessions the table holds; the least recently used give way first.
const MAX_SESSIONS: u64 = 100_000;
/// A session unused for this long is forgotten.
const IDLE: Duration = Duration::from_secs(60 * 60);

/// Who opened a session.
#[derive(Clone, PartialEq, Eq)]
pub enum Owner {
    /// A caller the gateway authenticated by key: its identity.
    Identity(Arc<str>),
    /// A passthrough caller: the digest of its token.
    Token([u8; 32]),
}

impl Owner {
    /// The caller of an admitted request: its identity if it has one, else its passthrough token's SHA-256
    /// digest.
    pub fn of(
        identity: Option<&Authenticated<Caller>>,
        token_digest: Option<[u8; 32]>,
    ) -> Option<Self> {
        match (identity, token_digest) {
            (Some(caller), _) => Some(Self::Identity(Arc::from(caller.identity().owner()))),
            (None, Some(digest)) => Some(Self::Token(digest)),
            (None, None) => None,
        }
    }
}

/// The bounded, expiring table of sessions and their owners, keyed by upstream and session id.
#[derive(Clone)]
pub struct Sessions {
    table: Cache<(String, String), Owner>,
}

impl Sessions {
    pub fn new() -> Self {
        Self {
            table: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_idle(IDLE)
                .build(),
        }
    }

    /// Whether `owner` may continue `session` on `upstream`: only the caller that opened it may.
    pub async fn owned_by(&self, upstream: &str, session: &str, owner: Option<&Owner>) -> bool {
        let found = self.table.get(&key(upstream, session)).await;
        matches!((found, owner), (Some(found), Some(owner)) if found == *owner)
    }

    /// Records that `owner` opened `session` on `upstream`. A session already recorded keeps its owner: an
    /// upstream that hands out an id twice cannot move it to another caller.
    pub async fn bind(&self, upstream: &str, session: &str, owner: Owner) {
        self.table
            .entry(key(upstream, session))
            .or_insert(owner)
            .await;
    }

    /// Forgets `session` (the client ended it).
    pub async fn end(&self, upstream: &str, session: &str) {
        self.table.invalidate(&key(upstream, session)).await;
    }
}

fn key(upstream: &str, session: &str) -> (String, String) {
    (upstream.to_owned(), session.to_owned())
}
