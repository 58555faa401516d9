//! `--revocation-listen`: the gateway binary's watcher also listens for the notifications of
//! `sql/litellm_revocation_notify.sql`, so a blocked key is refused as soon as the revoking transaction commits;
//! its `/metrics` counts the notification (`mcp_auth_revocation_notifications`). The lag is printed, not asserted
//! beyond a wide margin.
//!
//! Needs `scripts/with-postgres.sh` (`TOWER_MCP_AUTH_TEST_DATABASE_URL`); skipped with a printed reason without it.
//! Installs the trigger for its run and removes it afterwards: its own test binary, so no other database test
//! sees it.
#![cfg(feature = "postgres")]

mod gateway_support;

use std::{
    io::Write,
    time::{Duration, Instant},
};

use axum::http::{Method, StatusCode};
use gateway_support::{answer, post_init, process::GatewayProcess, send, temp_file, Recorder};
use sqlx::postgres::PgPoolOptions;

const URL_VAR: &str = "TOWER_MCP_AUTH_TEST_DATABASE_URL";
const CHANNEL: &str = "litellm_key_revoked";
const ALLOWED: Duration = Duration::from_secs(15);

/// The value of the counter `name` in a Prometheus scrape (0 when absent).
fn counter(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_gateway_refuses_a_blocked_key_on_notification() {
    let Ok(database) = std::env::var(URL_VAR) else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped a_listening_gateway_refuses_a_blocked_key_on_notification: {URL_VAR} is not set \
             (run under scripts/with-postgres.sh)"
        );
        return;
    };
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&database)
        .await
        .unwrap();
    let _installed = testkit::postgres::NotifyTrigger::install(&pool).await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let key = format!("sk-gw-notify-{}-{nanos}", std::process::id());
    sqlx::query(
        r#"INSERT INTO "LiteLLM_VerificationToken" (token, key_alias, updated_at)
           VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'), 'notify',
                   now() AT TIME ZONE 'UTC' - interval '1 hour')"#,
    )
    .bind(&key)
    .execute(&pool)
    .await
    .unwrap();

    let upstream = Recorder::start(|_| answer(StatusCode::OK, &[], "{}")).await;
    let config = temp_file(
        "config.yaml",
        &format!(
            "mcp_servers:\n  s:\n    url: {}\n    allow_all_keys: true\n\
             general_settings:\n  database_url: os.environ/GATEWAY_TEST_DATABASE_URL\n",
            upstream.url("/mcp")
        ),
    );
    let args: Vec<String> = [
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--revocation-listen",
        CHANNEL,
    ]
    .map(str::to_owned)
    .to_vec();
    let gateway =
        GatewayProcess::start(&args, &[("GATEWAY_TEST_DATABASE_URL", database.as_str())]).await;
    let route = format!("{}/mcp/s", gateway.url());
    let status = || async {
        post_init(&route, &[("x-litellm-api-key", &key)])
            .await
            .status
    };
    let scrape = || async {
        let answer = send(
            Method::GET,
            &format!("{}/metrics", gateway.url()),
            &[],
            Default::default(),
        )
        .await;
        String::from_utf8(answer.body.to_vec()).unwrap()
    };
    // Admitted (and cached), once the listener is connected (its connection flushes the cache, which counts).
    let started = Instant::now();
    while status().await != StatusCode::OK {
        assert!(started.elapsed() < ALLOWED, "the key is never admitted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status().await, StatusCode::OK);
    let before = counter(&scrape().await, "mcp_auth_revocation_notifications");

    let blocked = Instant::now();
    sqlx::query(
        r#"UPDATE "LiteLLM_VerificationToken" SET blocked = true, updated_at = now() AT TIME ZONE 'UTC'
            WHERE token = encode(sha256(convert_to($1, 'UTF8')), 'hex')"#,
    )
    .bind(&key)
    .execute(&pool)
    .await
    .unwrap();
    while status().await == StatusCode::OK {
        assert!(
            blocked.elapsed() < ALLOWED,
            "the blocked key is still admitted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lag = blocked.elapsed();
    assert_eq!(status().await, StatusCode::FORBIDDEN);
    // The notification itself was delivered (polling alone would not count one).
    let started = Instant::now();
    loop {
        let after = counter(&scrape().await, "mcp_auth_revocation_notifications");
        if after > before {
            break;
        }
        assert!(
            started.elapsed() < ALLOWED,
            "no notification counted ({before} → {after})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = writeln!(
        std::io::stderr(),
        "gateway revocation lag with --revocation-listen (blocked): {lag:?}"
    );
}
