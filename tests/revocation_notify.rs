//! `LiteLlmRevocations::listen` with the operator-installed trigger of `sql/litellm_revocation_notify.sql`:
//! revocations arrive by `NOTIFY`, long before the next poll; a lost listening connection flushes the cache.
//!
//! Installs the trigger for its run and removes it afterwards; its own test binary, so no other database test
//! runs meanwhile (cargo runs test binaries one after another). Needs `scripts/with-postgres.sh`.
#![cfg(feature = "postgres")]

use std::{
    convert::Infallible,
    io::Write,
    time::{Duration, Instant},
};

use http::{Request, StatusCode};
use sqlx::postgres::{PgPool, PgPoolOptions};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    validators::{Cache, LiteLlmKeys, LiteLlmRevocations, TrustGate},
    McpAuthLayer,
};

const CHANNEL: &str = "litellm_key_revoked";
const ALLOWED: Duration = Duration::from_secs(10);

async fn seed(pool: &PgPool, key: &str) {
    sqlx::query(
        r#"INSERT INTO "LiteLLM_VerificationToken" (token, key_alias, updated_at)
           VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'), 'notify',
                   now() AT TIME ZONE 'UTC' - interval '1 hour')"#,
    )
    .bind(key)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_revoke_at_once_and_a_lost_listener_flushes() {
    let Ok(url) = std::env::var("TOWER_MCP_AUTH_TEST_DATABASE_URL") else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped notifications_revoke_at_once_and_a_lost_listener_flushes: \
             TOWER_MCP_AUTH_TEST_DATABASE_URL is not set (run under scripts/with-postgres.sh)"
        );
        return;
    };
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    let _installed = testkit::postgres::NotifyTrigger::install(&pool).await;
    let tag = std::process::id();
    let blocked = format!("sk-notify-blocked-{tag}");
    let silent = format!("sk-notify-silent-{tag}");
    for key in [&blocked, &silent] {
        seed(&pool, key).await;
    }

    // Polls every ten minutes, and a gate that stays open as long: only a notification or a flush can explain
    // a refusal within seconds.
    let gate = TrustGate::new(Duration::from_secs(600));
    let cache = Cache::builder(LiteLlmKeys::new(pool.clone()))
        .valid_ttl(Duration::from_secs(600))
        .trust_gate(gate.clone())
        .build();
    let watcher = LiteLlmRevocations::new(pool.clone(), gate)
        .poll_interval(Duration::from_secs(600))
        .listen(CHANNEL)
        .sink(cache.clone())
        .spawn();
    let gateway = ServiceBuilder::new()
        .layer(McpAuthLayer::new(cache))
        .service(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(()))
        }));
    let call = |key: &str| {
        let req = Request::post("/mcp")
            .header("x-litellm-api-key", key)
            .body(())
            .unwrap();
        gateway.clone().oneshot(req)
    };
    let refused_within = |key: String| {
        let call = &call;
        async move {
            let started = Instant::now();
            while call(&key).await.unwrap().status() == StatusCode::OK {
                assert!(started.elapsed() < ALLOWED, "{key} still admitted");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            started.elapsed()
        }
    };

    // The listener is up once it has flushed; wait for its backend to show up.
    let started = Instant::now();
    while sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap()
        == 0
    {
        assert!(started.elapsed() < ALLOWED, "the listener never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for key in [&blocked, &silent] {
        assert_eq!(call(key).await.unwrap().status(), StatusCode::OK);
    }

    // Blocked as LiteLLM does it: the trigger notifies at commit.
    sqlx::query(
        r#"UPDATE "LiteLLM_VerificationToken" SET blocked = true, updated_at = now() AT TIME ZONE 'UTC'
            WHERE token = encode(sha256(convert_to($1, 'UTF8')), 'hex')"#,
    )
    .bind(&blocked)
    .execute(&pool)
    .await
    .unwrap();
    let notified = refused_within(blocked.clone()).await;

    // Blocked with triggers disabled for that session: no notification, and the poll is ten minutes away.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        r#"UPDATE "LiteLLM_VerificationToken" SET blocked = true
            WHERE token = encode(sha256(convert_to($1, 'UTF8')), 'hex')"#,
    )
    .bind(&silent)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("SET session_replication_role = DEFAULT")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(
        call(&silent).await.unwrap().status(),
        StatusCode::OK,
        "cached, and nothing told the cache"
    );
    // The listening connection is lost: the listener reconnects and flushes, since it may have missed news.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .execute(&pool)
    .await
    .unwrap();
    let flushed = refused_within(silent.clone()).await;

    let _ = writeln!(
        std::io::stderr(),
        "notify: blocked key refused {notified:?} after commit; flush {flushed:?} after the listener was cut"
    );
    watcher.abort();
}
