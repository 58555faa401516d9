//! Two gateway replicas in two processes, each with its own `Cache` and `LiteLlmRevocations` watcher, sharing
//! one PostgreSQL database with LiteLLM's key tables: a key revoked the way LiteLLM revokes it (deleted,
//! blocked, rotated) is refused by both within the bound.
//!
//! The replicas are this test binary run again with `REPLICA_ENV` set: `replica` then serves the layer over
//! HTTP on loopback instead of returning, prints its address, and exits when its standard input closes (when
//! the parent test ends, however it ends).
//!
//! Run under `scripts/with-postgres.sh` (`TOWER_MCP_AUTH_TEST_DATABASE_URL`); without it the test is skipped.
#![cfg(feature = "postgres")]

use std::{
    convert::Infallible,
    io::{BufRead, BufReader, Read, Write},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use axum::{routing::post, Router};
use sqlx::postgres::{PgPool, PgPoolOptions};
use tower_mcp_auth::{
    validators::{Cache, LiteLlmKeys, LiteLlmRevocations, TrustGate},
    McpAuthLayer,
};

const URL_VAR: &str = "TOWER_MCP_AUTH_TEST_DATABASE_URL";
const REPLICA_ENV: &str = "TOWER_MCP_AUTH_TEST_REPLICA";
/// The revocation bound the replicas are configured with.
const BOUND: Duration = Duration::from_secs(2);
/// What the test allows: the bound plus a generous margin for a loaded machine.
const ALLOWED: Duration = Duration::from_secs(10);

/// The replica's body: a gateway whose cache would keep a `Valid` answer for 10 minutes, so only the watcher
/// can explain a refusal within seconds.
#[test]
#[ignore = "the body of a replica process, run by revoked_key_is_refused_by_every_replica_within_the_bound"]
fn replica() {
    if std::env::var_os(REPLICA_ENV).is_none() {
        return;
    }
    let url = std::env::var(URL_VAR).expect("the parent passes the database URL");
    // The parent holds our stdin; when it goes away, so do we.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        let keys = LiteLlmKeys::new(pool.clone());
        let gate = TrustGate::new(BOUND);
        let cache = Cache::builder(keys)
            .valid_ttl(Duration::from_secs(600))
            .denied_ttl(Duration::from_secs(600))
            .unknown_ttl(Duration::from_secs(600))
            .trust_gate(gate.clone())
            .build();
        let _watcher = LiteLlmRevocations::new(pool, gate)
            .sink(cache.clone())
            .spawn();
        let app = Router::new()
            .route("/mcp", post(|| async { Ok::<_, Infallible>("ok") }))
            .layer(McpAuthLayer::new(cache));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "REPLICA_ADDR {}", listener.local_addr().unwrap()).unwrap();
        stdout.flush().unwrap();
        drop(stdout);
        axum::serve(listener, app).await.unwrap();
    });
}

/// A replica process, killed when dropped.
struct Replica {
    child: Child,
    url: String,
}

impl Replica {
    fn start(database: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "replica",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(REPLICA_ENV, "1")
            .env(URL_VAR, database)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the replica exited before listening")
                .unwrap();
            // The harness may have printed `test replica ... ` on the same line.
            if let Some((_, addr)) = line.split_once("REPLICA_ADDR ") {
                break addr.trim().to_owned();
            }
        };
        Self {
            child,
            url: format!("http://{addr}/mcp"),
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn status(client: &reqwest::Client, replica: &Replica, key: &str) -> u16 {
    client
        .post(&replica.url)
        .header("x-litellm-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// How long after `since` each replica first refused `key` (polled every 20 ms), or the test fails.
async fn refused_by_all(
    client: &reqwest::Client,
    replicas: &[Replica],
    key: &str,
    since: Instant,
) -> Vec<Duration> {
    let mut lags = vec![None; replicas.len()];
    while lags.iter().any(Option::is_none) {
        for (lag, replica) in lags.iter_mut().zip(replicas) {
            if lag.is_none() && status(client, replica, key).await != 200 {
                *lag = Some(since.elapsed());
            }
        }
        assert!(
            since.elapsed() < ALLOWED,
            "not refused by every replica within {ALLOWED:?}: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lags.into_iter().map(Option::unwrap).collect()
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

/// LiteLLM's delete: the row is copied to the deleted-keys table, then removed, in one transaction.
async fn delete(pool: &PgPool, key: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        r#"INSERT INTO "LiteLLM_DeletedVerificationToken"
               (id, token, key_name, key_alias, user_id, deleted_at, deleted_by)
           SELECT gen_random_uuid()::text, token, key_name, key_alias, user_id, now() AT TIME ZONE 'UTC',
                  'admin'
             FROM "LiteLLM_VerificationToken" WHERE token = encode(sha256(convert_to($1, 'UTF8')), 'hex')"#,
    )
    .bind(key)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        r#"DELETE FROM "LiteLLM_VerificationToken" WHERE token = encode(sha256(convert_to($1, 'UTF8')), 'hex')"#,
    )
    .bind(key)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// LiteLLM's block: `blocked` set, `updated_at` stamped (Prisma's `@updatedAt`).
async fn block(pool: &PgPool, key: &str) {
    sqlx::query(
        r#"UPDATE "LiteLLM_VerificationToken" SET blocked = true, updated_at = now() AT TIME ZONE 'UTC'
            WHERE token = encode(sha256(convert_to($1, 'UTF8')), 'hex')"#,
    )
    .bind(key)
    .execute(pool)
    .await
    .unwrap();
}

/// LiteLLM's regenerate: the row takes the new key's token, and the old token is kept as deprecated, here with
/// a grace period that has already ended.
async fn rotate(pool: &PgPool, old: &str, new: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        r#"UPDATE "LiteLLM_VerificationToken"
              SET token = encode(sha256(convert_to($2, 'UTF8')), 'hex'),
                  key_name = 'sk-...' || right($2, 4),
                  rotation_count = rotation_count + 1,
                  last_rotation_at = now() AT TIME ZONE 'UTC',
                  updated_at = now() AT TIME ZONE 'UTC'
            WHERE token = encode(sha256(convert_to($1, 'UTF8')), 'hex')"#,
    )
    .bind(old)
    .bind(new)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        r#"INSERT INTO "LiteLLM_DeprecatedVerificationToken" (id, token, active_token_id, revoke_at)
           VALUES (gen_random_uuid()::text, encode(sha256(convert_to($1, 'UTF8')), 'hex'),
                   encode(sha256(convert_to($2, 'UTF8')), 'hex'), now() AT TIME ZONE 'UTC')"#,
    )
    .bind(old)
    .bind(new)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_is_refused_by_every_replica_within_the_bound() {
    if std::env::var_os(REPLICA_ENV).is_some() {
        return;
    }
    let Ok(database) = std::env::var(URL_VAR) else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped revoked_key_is_refused_by_every_replica_within_the_bound: {URL_VAR} is not set \
             (run under scripts/with-postgres.sh)"
        );
        return;
    };
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&database)
        .await
        .unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tag = format!("{}-{nanos}", std::process::id());
    let deleted = format!("sk-replicas-deleted-{tag}");
    let blocked = format!("sk-replicas-blocked-{tag}");
    let rotated = format!("sk-replicas-rotated-{tag}");
    let rotated_to = format!("sk-replicas-rotated-to-{tag}");
    let untouched = format!("sk-replicas-untouched-{tag}");
    for key in [&deleted, &blocked, &rotated, &untouched] {
        seed(&pool, key).await;
    }

    let replicas = [Replica::start(&database), Replica::start(&database)];
    let client = reqwest::Client::new();
    // Admitted by both, and so cached as `Valid` for ten minutes in both.
    for key in [&deleted, &blocked, &rotated, &untouched] {
        for replica in &replicas {
            assert_eq!(status(&client, replica, key).await, 200, "{}", replica.url);
        }
    }
    // Not issued yet: refused (an `sk-` key found nowhere is 401 or 403, depending on `deny_unlisted`), and the
    // refusal cached for ten minutes on replica 0.
    assert_ne!(status(&client, &replicas[0], &rotated_to).await, 200);

    let mut report = Vec::new();
    let started = Instant::now();
    delete(&pool, &deleted).await;
    report.push((
        "deleted",
        refused_by_all(&client, &replicas, &deleted, started).await,
    ));
    let started = Instant::now();
    block(&pool, &blocked).await;
    report.push((
        "blocked",
        refused_by_all(&client, &replicas, &blocked, started).await,
    ));
    let started = Instant::now();
    rotate(&pool, &rotated, &rotated_to).await;
    report.push((
        "rotated",
        refused_by_all(&client, &replicas, &rotated, started).await,
    ));

    for replica in &replicas {
        assert_eq!(
            status(&client, replica, &blocked).await,
            403,
            "a blocked key is denied"
        );
        assert_eq!(
            status(&client, replica, &untouched).await,
            200,
            "others keep working"
        );
    }
    // The rotated key's successor: its refusal from before the rotation was cached for ten minutes on
    // replica 0, and is forgotten because the row that now holds it changed.
    let started = Instant::now();
    loop {
        if status(&client, &replicas[0], &rotated_to).await == 200
            && status(&client, &replicas[1], &rotated_to).await == 200
        {
            break;
        }
        assert!(started.elapsed() < ALLOWED, "the new key is not admitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut stderr = std::io::stderr();
    for (kind, lags) in &report {
        let _ = writeln!(
            stderr,
            "revocation lag ({kind}, bound {BOUND:?}): replica 0 {:?}, replica 1 {:?}",
            lags[0], lags[1]
        );
        for lag in lags {
            assert!(*lag < ALLOWED, "{kind}: {lag:?}");
        }
    }
}
