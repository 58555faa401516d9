//! Shared by the PostgreSQL tests: the pool from `scripts/with-postgres.sh`, tags no other test uses, and the
//! operator's LISTEN/NOTIFY trigger installed for one test.

use std::{
    io::Write,
    sync::atomic::{AtomicUsize, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use sqlx::postgres::{PgPool, PgPoolOptions};

pub const URL_VAR: &str = "TOWER_MCP_AUTH_TEST_DATABASE_URL";

/// The pool, or `None` after printing why the test is skipped.
pub async fn pool(test: &str) -> Option<PgPool> {
    database(URL_VAR, test).await.map(|(_, pool)| pool)
}

/// The URL in the environment variable `var` (set by `scripts/with-postgres.sh`) and a pool on it, or `None`
/// after printing why `test` is skipped.
pub async fn database(var: &str, test: &str) -> Option<(String, PgPool)> {
    let Ok(url) = std::env::var(var) else {
        // Straight to stderr: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "skipped {test}: {var} is not set (run under scripts/with-postgres.sh)"
        );
        return None;
    };
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    Some((url, pool))
}

/// A tag no other test (or earlier run) uses, for keys, teams and permission ids.
pub fn unique(label: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{label}-{}-{nanos}-{n}", std::process::id())
}

/// `sql/litellm_revocation_notify.sql`, the trigger an operator installs for LISTEN/NOTIFY.
pub const NOTIFY_TRIGGER: &str = include_str!("../../sql/litellm_revocation_notify.sql");

const UNINSTALL: &str = r#"
DROP TRIGGER IF EXISTS tower_mcp_auth_key_changed ON "LiteLLM_VerificationToken";
DROP TRIGGER IF EXISTS tower_mcp_auth_key_removed ON "LiteLLM_VerificationToken";
DROP TRIGGER IF EXISTS tower_mcp_auth_key_deleted ON "LiteLLM_DeletedVerificationToken";
DROP TRIGGER IF EXISTS tower_mcp_auth_key_deprecated ON "LiteLLM_DeprecatedVerificationToken";
DROP FUNCTION IF EXISTS tower_mcp_auth_notify_key_revoked();"#;

/// The notify trigger, installed until this guard drops, however the test ends.
pub struct NotifyTrigger(PgPool);

impl NotifyTrigger {
    /// Installs [`NOTIFY_TRIGGER`] in the database of `pool`.
    pub async fn install(pool: &PgPool) -> Self {
        sqlx::raw_sql(NOTIFY_TRIGGER).execute(pool).await.unwrap();
        Self(pool.clone())
    }
}

impl Drop for NotifyTrigger {
    fn drop(&mut self) {
        let pool = self.0.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(sqlx::raw_sql(UNINSTALL).execute(&pool))
        })
        .join();
    }
}
