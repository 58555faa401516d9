//! Shared by the PostgreSQL tests: the pool from `scripts/with-postgres.sh`, and tags no other test uses.
#![allow(dead_code)]

use std::{
    io::Write,
    sync::atomic::{AtomicUsize, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use sqlx::postgres::{PgPool, PgPoolOptions};

pub const URL_VAR: &str = "TOWER_MCP_AUTH_TEST_DATABASE_URL";

/// The pool, or `None` after printing why the test is skipped.
pub async fn pool(test: &str) -> Option<PgPool> {
    let Ok(url) = std::env::var(URL_VAR) else {
        // Straight to stderr: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "skipped {test}: {URL_VAR} is not set (run under scripts/with-postgres.sh)"
        );
        return None;
    };
    Some(
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap(),
    )
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
