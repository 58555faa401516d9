//! Two `mcp-gateway` processes on LiteLLM's key table in one real PostgreSQL database, each with the cache and
//! the revocation watcher the binary runs: a key revoked the way LiteLLM revokes it (deleted, blocked, rotated)
//! is refused by both within the bound (the lag is printed, and asserted only against a wide margin); `/readyz`
//! follows the watcher: 503 while the database is down, 200 again once it is back.
//!
//! Needs `scripts/with-postgres.sh` (`TOWER_MCP_AUTH_TEST_DATABASE_URL`, `TOWER_MCP_AUTH_TEST_PG_CTL`);
//! skipped with a printed reason without it. One test: it stops the database at the end.
#![cfg(feature = "postgres")]

mod gateway_support;

use std::{
    io::Write,
    process::Command,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use gateway_support::{answer, post_init, process::GatewayProcess, send, temp_file, Recorder};
use sqlx::postgres::{PgPool, PgPoolOptions};

const URL_VAR: &str = "TOWER_MCP_AUTH_TEST_DATABASE_URL";
const CTL_VAR: &str = "TOWER_MCP_AUTH_TEST_PG_CTL";
/// The binary's revocation bound.
const BOUND: Duration = Duration::from_secs(2);
/// One-sided allowance for a loaded machine.
const ALLOWED: Duration = Duration::from_secs(15);

/// Starts the database again if a failing assertion left it stopped.
struct Database {
    ctl: String,
    stopped: bool,
}

impl Database {
    fn run(&mut self, action: &str) {
        let status = Command::new(&self.ctl).arg(action).status().unwrap();
        assert!(status.success(), "{} {action}: {status}", self.ctl);
        self.stopped = action == "stop";
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if self.stopped {
            let _ = Command::new(&self.ctl).arg("start").status();
        }
    }
}

/// A key issued an hour ago: older than the watcher's overlap, so only its revocation can make it news.
async fn seed(pool: &PgPool, key: &str) {
    sqlx::query(
        r#"INSERT INTO "LiteLLM_VerificationToken" (token, key_name, key_alias, user_id, updated_at)
           VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'), 'sk-...' || right($1, 4), 'replicas',
                   'user-1', now() AT TIME ZONE 'UTC' - interval '1 hour')"#,
    )
    .bind(key)
    .execute(pool)
    .await
    .unwrap();
}

const TOKEN: &str = "encode(sha256(convert_to($1, 'UTF8')), 'hex')";

/// LiteLLM's delete: the row is copied to the deleted-keys table, then removed, in one transaction.
async fn delete(pool: &PgPool, key: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!(
        r#"INSERT INTO "LiteLLM_DeletedVerificationToken"
               (id, token, key_name, key_alias, user_id, deleted_at, deleted_by)
           SELECT gen_random_uuid()::text, token, key_name, key_alias, user_id, now() AT TIME ZONE 'UTC',
                  'admin'
             FROM "LiteLLM_VerificationToken" WHERE token = {TOKEN}"#
    ))
    .bind(key)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(&format!(
        r#"DELETE FROM "LiteLLM_VerificationToken" WHERE token = {TOKEN}"#
    ))
    .bind(key)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// LiteLLM's block: `blocked` set, `updated_at` stamped (Prisma's `@updatedAt`).
async fn block(pool: &PgPool, key: &str) {
    sqlx::query(&format!(
        r#"UPDATE "LiteLLM_VerificationToken" SET blocked = true, updated_at = now() AT TIME ZONE 'UTC'
            WHERE token = {TOKEN}"#
    ))
    .bind(key)
    .execute(pool)
    .await
    .unwrap();
}

/// LiteLLM's regenerate without a grace period: the row takes the new key's token, and the old token is
/// kept as deprecated with `revoke_at` now.
async fn rotate(pool: &PgPool, old: &str, new: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!(
        r#"UPDATE "LiteLLM_VerificationToken"
              SET token = encode(sha256(convert_to($2, 'UTF8')), 'hex'),
                  key_name = 'sk-...' || right($2, 4),
                  rotation_count = rotation_count + 1,
                  last_rotation_at = now() AT TIME ZONE 'UTC',
                  updated_at = now() AT TIME ZONE 'UTC'
            WHERE token = {TOKEN}"#
    ))
    .bind(old)
    .bind(new)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(&format!(
        r#"INSERT INTO "LiteLLM_DeprecatedVerificationToken" (id, token, active_token_id, revoke_at)
           VALUES (gen_random_uuid()::text, {TOKEN},
                   encode(sha256(convert_to($2, 'UTF8')), 'hex'), now() AT TIME ZONE 'UTC')"#
    ))
    .bind(old)
    .bind(new)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn status(replica: &GatewayProcess, key: &str) -> StatusCode {
    post_init(
        &format!("{}/mcp/s", replica.url()),
        &[("x-litellm-api-key", key)],
    )
    .await
    .status
}

async fn ready(replica: &GatewayProcess) -> StatusCode {
    send(
        axum::http::Method::GET,
        &format!("{}/readyz", replica.url()),
        &[],
        Default::default(),
    )
    .await
    .status
}

/// How long after `since` each replica first refused `key` (polled every 20 ms), or the test fails.
async fn refused_by_all(replicas: &[GatewayProcess], key: &str, since: Instant) -> Vec<Duration> {
    let mut lags = vec![None; replicas.len()];
    while lags.iter().any(Option::is_none) {
        for (lag, replica) in lags.iter_mut().zip(replicas) {
            if lag.is_none() && status(replica, key).await != StatusCode::OK {
                *lag = Some(since.elapsed());
            }
        }
        assert!(
            since.elapsed() < ALLOWED,
            "{key}: not refused by every replica within {ALLOWED:?}: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lags.into_iter().map(Option::unwrap).collect()
}

/// Waits until every replica's `/readyz` answers `expected`; returns how long that took.
async fn readiness_is(replicas: &[GatewayProcess], expected: StatusCode) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for replica in replicas {
            all &= ready(replica).await == expected;
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < ALLOWED,
            "/readyz is not {expected} within {ALLOWED:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_processes_refuse_revoked_keys_within_the_bound_and_report_readiness() {
    let (Ok(database), Ok(ctl)) = (std::env::var(URL_VAR), std::env::var(CTL_VAR)) else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped two_gateway_processes_refuse_revoked_keys_within_the_bound_and_report_readiness: \
             {URL_VAR} or {CTL_VAR} is not set (run under scripts/with-postgres.sh)"
        );
        return;
    };
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&database)
        .await
        .unwrap();
    let tag = testkit::postgres::unique("gw");
    let deleted = format!("sk-gw-deleted-{tag}");
    let blocked = format!("sk-gw-blocked-{tag}");
    let rotated = format!("sk-gw-rotated-{tag}");
    let rotated_to = format!("sk-gw-rotated-to-{tag}");
    let untouched = format!("sk-gw-untouched-{tag}");
    let second = format!("sk-gw-second-{tag}");
    for key in [&deleted, &blocked, &rotated, &untouched, &second] {
        seed(&pool, key).await;
    }

    let upstream = Recorder::start(|_| answer(StatusCode::OK, &[], "{}")).await;
    let passthrough = Recorder::start(|_| answer(StatusCode::OK, &[], "{}")).await;
    let config = temp_file(
        "config.yaml",
        &format!(
            "mcp_servers:\n  s:\n    url: {}\n    allow_all_keys: true\n\
             \x20 p:\n    url: {}\n    auth_type: oauth_delegate\n    allow_all_keys: true\n\
             general_settings:\n  database_url: os.environ/GATEWAY_TEST_DATABASE_URL\n",
            upstream.url("/mcp"),
            passthrough.url("/mcp"),
        ),
    );
    let args: Vec<String> = [
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]
    .map(str::to_owned)
    .to_vec();
    let env = [("GATEWAY_TEST_DATABASE_URL", database.as_str())];
    let replicas = [
        GatewayProcess::start(&args, &env).await,
        GatewayProcess::start(&args, &env).await,
    ];
    readiness_is(&replicas, StatusCode::OK).await;
    for key in [&deleted, &blocked, &rotated, &untouched] {
        for replica in &replicas {
            assert_eq!(status(replica, key).await, StatusCode::OK, "{key}");
        }
    }

    let mut report = Vec::new();
    let started = Instant::now();
    delete(&pool, &deleted).await;
    report.push((
        "deleted",
        refused_by_all(&replicas, &deleted, started).await,
    ));
    let started = Instant::now();
    block(&pool, &blocked).await;
    report.push((
        "blocked",
        refused_by_all(&replicas, &blocked, started).await,
    ));
    let started = Instant::now();
    rotate(&pool, &rotated, &rotated_to).await;
    report.push((
        "rotated",
        refused_by_all(&replicas, &rotated, started).await,
    ));
    for replica in &replicas {
        assert_eq!(status(replica, &blocked).await, StatusCode::FORBIDDEN);
        assert_eq!(status(replica, &untouched).await, StatusCode::OK);
        assert_eq!(status(replica, &rotated_to).await, StatusCode::OK);
    }
    let mut stderr = std::io::stderr();
    for (kind, lags) in &report {
        let _ = writeln!(
            stderr,
            "gateway revocation lag ({kind}, bound {BOUND:?}): process 0 {:?}, process 1 {:?}",
            lags[0], lags[1]
        );
    }

    // A second live key, never seen by the cache, sent as the bearer beside an admitting key on a passthrough
    // route: admitted by the first, and the second never reaches the upstream. A bearer that is no key does.
    for replica in &replicas {
        for (bearer, forwarded) in [(second.as_str(), false), ("upstream-oauth-token", true)] {
            let answer = post_init(
                &format!("{}/mcp/p", replica.url()),
                &[
                    ("x-litellm-api-key", &untouched),
                    ("authorization", &format!("Bearer {bearer}")),
                ],
            )
            .await;
            assert_eq!(answer.status, StatusCode::OK);
            let seen = passthrough.seen().pop().unwrap();
            let sent = seen
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(
                sent.as_ref().is_some_and(|v| v.contains(bearer)),
                forwarded,
                "{bearer}: {sent:?}"
            );
            assert!(!sent.unwrap_or_default().contains(&untouched));
        }
    }

    // The database goes away: after the bound, cached admissions no longer count (503, never a stale 200),
    // and /readyz says so; once it is back, both recover.
    let mut server = Database {
        ctl,
        stopped: false,
    };
    pool.close().await;
    let stopped = Instant::now();
    server.run("stop");
    readiness_is(&replicas, StatusCode::SERVICE_UNAVAILABLE).await;
    let not_ready = stopped.elapsed();
    for replica in &replicas {
        assert_eq!(
            status(replica, &untouched).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let _ = writeln!(
        stderr,
        "gateway /readyz 503 {not_ready:?} after the database stopped (bound {BOUND:?})"
    );
    server.run("start");
    let back = readiness_is(&replicas, StatusCode::OK).await;
    let _ = writeln!(
        stderr,
        "gateway /readyz 200 {back:?} after the database restarted"
    );
    let started = Instant::now();
    while status(&replicas[0], &untouched).await != StatusCode::OK
        || status(&replicas[1], &untouched).await != StatusCode::OK
    {
        assert!(started.elapsed() < ALLOWED, "keys not admitted again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
