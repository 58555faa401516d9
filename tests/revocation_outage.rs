//! The revocation watcher loses the database for longer than the bound: cached `Valid` answers stop being
//! trusted (503 while the store is down, never a stale 200), and everything recovers once it is back.
//!
//! Needs `scripts/with-postgres.sh` (`TOWER_MCP_AUTH_TEST_DATABASE_URL`, `TOWER_MCP_AUTH_TEST_PG_CTL`); its
//! own test binary, because stopping the server would disturb the other database tests.
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
    validators::{Cache, LiteLlmKeys, LiteLlmRevocations, TrustGate},
    McpAuthLayer,
};

const BOUND: Duration = Duration::from_secs(1);
/// One-sided allowance for a loaded machine.
const ALLOWED: Duration = Duration::from_secs(10);

/// Restarts the server on drop if a failing assertion left it stopped.
struct Server {
    ctl: String,
    stopped: bool,
}

impl Server {
    fn run(&mut self, action: &str) {
        let status = Command::new(&self.ctl).arg(action).status().unwrap();
        assert!(status.success(), "{} {action}: {status}", self.ctl);
        self.stopped = action == "stop";
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.stopped {
            let _ = Command::new(&self.ctl).arg("start").status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_are_not_trusted_past_the_bound_while_the_database_is_down() {
    let (Ok(url), Ok(ctl)) = (
        std::env::var("TOWER_MCP_AUTH_TEST_DATABASE_URL"),
        std::env::var("TOWER_MCP_AUTH_TEST_PG_CTL"),
    ) else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped cached_keys_are_not_trusted_past_the_bound_while_the_database_is_down: \
             TOWER_MCP_AUTH_TEST_DATABASE_URL or TOWER_MCP_AUTH_TEST_PG_CTL is not set \
             (run under scripts/with-postgres.sh)"
        );
        return;
    };
    let mut server = Server {
        ctl,
        stopped: false,
    };
    // The watcher runs on its own task: the recorder must be the process's (this binary's only test).
    #[cfg(feature = "metrics")]
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_millis(500))
        .connect(&url)
        .await
        .unwrap();
    let key = format!("sk-revocation-outage-{}", std::process::id());
    sqlx::query(
        r#"INSERT INTO "LiteLLM_VerificationToken" (token, key_alias, updated_at)
           VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'), 'outage',
                   now() AT TIME ZONE 'UTC' - interval '1 hour')"#,
    )
    .bind(&key)
    .execute(&pool)
    .await
    .unwrap();

    let gate = TrustGate::new(BOUND);
    let cache = Cache::builder(LiteLlmKeys::new(pool.clone()))
        .valid_ttl(Duration::from_secs(600))
        .trust_gate(gate.clone())
        .build();
    let watcher = LiteLlmRevocations::new(pool, gate.clone())
        .sink(cache.clone())
        .spawn();
    let gateway = ServiceBuilder::new()
        .layer(McpAuthLayer::new(cache).validation_timeout(Duration::from_secs(3)))
        .service(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(()))
        }));
    let call = || {
        let req = Request::post("/mcp")
            .header("x-litellm-api-key", &key)
            .body(())
            .unwrap();
        gateway.clone().oneshot(req)
    };
    assert_eq!(call().await.unwrap().status(), StatusCode::OK);

    server.run("stop");
    let stopped = Instant::now();
    // The watcher's last successful poll was at most one interval ago: the gate closes within about the bound.
    while gate.is_trusted() {
        assert!(stopped.elapsed() < ALLOWED, "the gate stayed open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed_after = stopped.elapsed();
    // The answer cached ten minutes' worth is no longer trusted: the store is asked, and it is down.
    assert_eq!(
        call().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    server.run("start");
    let started = Instant::now();
    loop {
        if call().await.unwrap().status() == StatusCode::OK && gate.is_trusted() {
            break;
        }
        assert!(started.elapsed() < ALLOWED * 2, "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = writeln!(
        std::io::stderr(),
        "outage: gate closed {closed_after:?} after the database stopped (bound {BOUND:?}); \
         admitted again {:?} after it started",
        started.elapsed()
    );
    assert!(closed_after < ALLOWED);

    // The watcher's lag and errors, as an operator sees them. The gate opens before the poll that opened it is
    // counted, so the scrape waits (boundedly) for the second poll's count while the watcher still runs.
    #[cfg(feature = "metrics")]
    {
        let counted = Instant::now();
        while !metrics
            .render()
            .lines()
            .any(|line| line.starts_with("mcp_auth_revocation_polls ") && !line.ends_with(" 1"))
            && counted.elapsed() < ALLOWED * 2
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let scrape = metrics.render();
        let value = |metric: &str| -> f64 {
            scrape
                .lines()
                .find(|line| line.split(['{', ' ']).next() == Some(metric))
                .and_then(|line| line.rsplit(' ').next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {metric} in:\n{scrape}"))
        };
        assert!(value("mcp_auth_revocation_errors") >= 1.0, "{scrape}");
        assert!(value("mcp_auth_revocation_polls") >= 2.0, "{scrape}");
        assert!(value("mcp_auth_revocation_staleness") < ALLOWED.as_secs_f64());
        assert!(scrape.contains(r#"stage="poll""#), "{scrape}");
        assert!(!scrape.contains(&key), "{scrape}");
    }
    watcher.abort();
}
