//! `LiteLlmKeys` when the database goes away mid-run: 503, never `Unknown`; and recovery once it is back.
//!
//! Needs `scripts/with-postgres.sh`, which sets `TOWER_MCP_AUTH_TEST_DATABASE_URL` and
//! `TOWER_MCP_AUTH_TEST_PG_CTL` (a script that stops and starts the throwaway server). This is its own test
//! binary so that stopping the server cannot disturb the other database tests: cargo runs test binaries one
//! after another.
#![cfg(feature = "postgres")]

use std::{
    convert::Infallible,
    io::Write,
    process::Command,
    time::{Duration, Instant},
};

use http::{Request, StatusCode};
use sqlx::postgres::PgPoolOptions;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    validators::{Cache, LiteLlmKeys},
    McpAuthLayer, Validator, Verdict,
};

/// Runs the control script; restarts the server on drop if a failing assertion left it stopped.
struct Server {
    ctl: String,
    stopped: bool,
}

impl Server {
    fn run(&self, action: &str) {
        let status = Command::new(&self.ctl).arg(action).status().unwrap();
        assert!(status.success(), "{} {action}: {status}", self.ctl);
    }

    fn stop(&mut self) {
        self.run("stop");
        self.stopped = true;
    }

    fn start(&mut self) {
        self.run("start");
        self.stopped = false;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.stopped {
            let _ = Command::new(&self.ctl).arg("start").status();
        }
    }
}

#[tokio::test]
async fn database_outage_is_503_and_service_recovers() {
    let (Ok(url), Ok(ctl)) = (
        std::env::var("TOWER_MCP_AUTH_TEST_DATABASE_URL"),
        std::env::var("TOWER_MCP_AUTH_TEST_PG_CTL"),
    ) else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped database_outage_is_503_and_service_recovers: TOWER_MCP_AUTH_TEST_DATABASE_URL or \
             TOWER_MCP_AUTH_TEST_PG_CTL is not set (run under scripts/with-postgres.sh)"
        );
        return;
    };
    let mut server = Server {
        ctl,
        stopped: false,
    };
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .connect(&url)
        .await
        .unwrap();
    let key = format!("sk-outage-{}", std::process::id());
    sqlx::query(
        r#"INSERT INTO "LiteLLM_VerificationToken" (token, key_alias)
           VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'), 'outage')"#,
    )
    .bind(&key)
    .execute(&pool)
    .await
    .unwrap();

    let keys = LiteLlmKeys::new(pool);
    let cache = Cache::new(keys.clone());
    let layer = McpAuthLayer::new(keys.clone()).validation_timeout(Duration::from_secs(3));
    let gateway =
        ServiceBuilder::new()
            .layer(layer)
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

    assert_eq!(call(&key).await.unwrap().status(), StatusCode::OK);
    assert!(matches!(
        cache.validate(&key).await.unwrap(),
        Verdict::Valid(_)
    ));

    server.stop();
    let started = Instant::now();
    assert_eq!(
        call(&key).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call("sk-never-issued").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "an outage is never mistaken for an unknown key"
    );
    let err = keys.validate(&key).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&key), "{shown}");
    let _ = writeln!(
        std::io::stderr(),
        "outage: answered 503 within {:?}; error: {err}",
        started.elapsed()
    );
    // Answers cached before the outage are still served (for at most valid_ttl); errors are not cached.
    assert!(matches!(
        cache.validate(&key).await.unwrap(),
        Verdict::Valid(_)
    ));
    assert!(cache.validate("sk-never-issued").await.is_err());

    server.start();
    // The pool replaces its dead connections; allow it many tries (a loaded machine restarts PostgreSQL slowly);
    // a quick recovery stops at the first.
    let mut attempts = 0;
    let status = loop {
        attempts += 1;
        let status = call(&key).await.unwrap().status();
        if status == StatusCode::OK || attempts == 120 {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status, StatusCode::OK, "after {attempts} attempts");
    let _ = writeln!(
        std::io::stderr(),
        "recovery: 200 after {attempts} attempt(s)"
    );
    // Back to a verdict: an `sk-` key in no table is one of LiteLLM's shapes, refused.
    assert_eq!(
        cache.validate("sk-never-issued").await.unwrap(),
        Verdict::Denied
    );
}
