//! The gateway binary on LiteLLM's tables, with rows written as LiteLLM's key, team and MCP-server endpoints
//! write them: a permission naming a config-file server by the id LiteLLM gives it, LiteLLM's route groups that
//! include the MCP routes, keys without alias or user that are still distinct callers (for sessions and in the
//! access log), and every revocation path reaching two gateway processes within the bound (the lag printed,
//! asserted only against a wide margin): a team blocked, a team over budget, a key's object permission
//! changed, an MCP server no longer approved or deleted, and a rotated key's replacement revoked during the grace
//! period.
//!
//! The tables are LiteLLM 1.108.7's own, created by applying its migrations (`litellm-proxy-extras` 0.4.110,
//! `scripts/litellm-schema.sh`). Needs `scripts/with-postgres.sh` (`TOWER_MCP_AUTH_TEST_LITELLM_DATABASE_URL`);
//! skipped with a printed reason without it.
#![cfg(feature = "postgres")]

mod gateway_support;

use std::{
    io::Write,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use gateway_support::{answer, post_init, process::GatewayProcess, temp_file, Recorder};
use sqlx::postgres::PgPool;

/// A database holding LiteLLM's own schema, created from its migrations (`scripts/litellm-schema.sh`).
const URL_VAR: &str = "TOWER_MCP_AUTH_TEST_LITELLM_DATABASE_URL";
/// One-sided allowance for a loaded machine; the bound itself is 2 s.
const ALLOWED: Duration = Duration::from_secs(15);
const TOKEN: &str = "encode(sha256(convert_to($1, 'UTF8')), 'hex')";

/// A key as `/key/generate` stores it, issued an hour ago, with an optional team, object permission, routes.
async fn key(
    pool: &PgPool,
    key: &str,
    team: Option<&str>,
    permission: Option<&str>,
    routes: &[&str],
    key_type: Option<&str>,
) {
    sqlx::query(&format!(
        r#"INSERT INTO "LiteLLM_VerificationToken"
               (token, key_name, team_id, object_permission_id, allowed_routes, key_type, created_at, updated_at)
           VALUES ({TOKEN}, 'sk-...' || right($1, 4), $2, $3, $4, $5,
                   now() AT TIME ZONE 'UTC' - interval '1 hour', now() AT TIME ZONE 'UTC' - interval '1 hour')"#
    ))
    .bind(key)
    .bind(team)
    .bind(permission)
    .bind(routes.iter().map(|r| r.to_string()).collect::<Vec<_>>())
    .bind(key_type)
    .execute(pool)
    .await
    .unwrap();
}

/// An object permission listing MCP servers (by id) as LiteLLM stores it.
async fn permission(pool: &PgPool, id: &str, servers: &[&str]) {
    sqlx::query(
        r#"INSERT INTO "LiteLLM_ObjectPermissionTable" (object_permission_id, mcp_servers) VALUES ($1, $2)"#,
    )
    .bind(id)
    .bind(servers.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    .execute(pool)
    .await
    .unwrap();
}

async fn team(pool: &PgPool, id: &str, max_budget: Option<f64>) {
    sqlx::query(
        r#"INSERT INTO "LiteLLM_TeamTable" (team_id, max_budget, created_at, updated_at)
           VALUES ($1, $2, now() AT TIME ZONE 'UTC' - interval '1 hour', now() AT TIME ZONE 'UTC' - interval '1 hour')"#,
    )
    .bind(id)
    .bind(max_budget)
    .execute(pool)
    .await
    .unwrap();
}

/// An MCP server of LiteLLM's table, as `/v1/mcp/server` creates it (approved).
async fn server(pool: &PgPool, id: &str, name: &str, url: &str) {
    sqlx::query(
        r#"INSERT INTO "LiteLLM_MCPServerTable" (server_id, server_name, url, transport, approval_status,
                                                 created_at, updated_at)
           VALUES ($1, $2, $3, 'http', 'active', now() AT TIME ZONE 'UTC' - interval '1 hour',
                   now() AT TIME ZONE 'UTC' - interval '1 hour')"#,
    )
    .bind(id)
    .bind(name)
    .bind(url)
    .execute(pool)
    .await
    .unwrap();
}

async fn exec(pool: &PgPool, sql: &str, bind: &str) {
    sqlx::query(sql).bind(bind).execute(pool).await.unwrap();
}

/// The test database (`scripts/with-postgres.sh`), a pool on it and a tag that keeps this run's rows apart.
struct Database {
    url: String,
    pool: PgPool,
    tag: String,
}

/// The test database, or `None` (the test says it is skipped and why) when `scripts/with-postgres.sh` did not
/// start one.
async fn database(test: &str, tag_label: &str) -> Option<Database> {
    let (url, pool) = testkit::postgres::database(URL_VAR, test).await?;
    let tag = testkit::postgres::unique(tag_label);
    Some(Database { url, pool, tag })
}

async fn status(replica: &GatewayProcess, route: &str, key: &str) -> StatusCode {
    post_init(
        &format!("{}/mcp/{route}", replica.url()),
        &[("x-litellm-api-key", key)],
    )
    .await
    .status
}

/// How long after `since` each replica first answered `key` on `route` with something else than 200.
async fn refused_by_all(
    replicas: &[GatewayProcess],
    route: &str,
    key: &str,
    since: Instant,
) -> Vec<Duration> {
    let mut lags = vec![None; replicas.len()];
    while lags.iter().any(Option::is_none) {
        for (lag, replica) in lags.iter_mut().zip(replicas) {
            if lag.is_none() && status(replica, route, key).await != StatusCode::OK {
                *lag = Some(since.elapsed());
            }
        }
        assert!(
            since.elapsed() < ALLOWED,
            "{route}: not refused by every replica within {ALLOWED:?}: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lags.into_iter().map(Option::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_rows_as_litellm_writes_them_through_two_gateway_processes() {
    let Some(Database {
        url: database,
        pool,
        tag,
    }) = database(
        "litellm_rows_as_litellm_writes_them_through_two_gateway_processes",
        "rows",
    )
    .await
    else {
        return;
    };
    let upstream = Recorder::start(|parts| {
        if parts.headers.contains_key("mcp-session-id") {
            answer(StatusCode::OK, &[], "{}")
        } else {
            answer(
                StatusCode::OK,
                &[("mcp-session-id", "upstream-session")],
                "{}",
            )
        }
    })
    .await;
    let url = upstream.url("/mcp");
    // `cfg` is a server of the config file; `db` one of LiteLLM's server table.
    let config_url = format!("{url}?server=cfg");
    let db_url = format!("{url}?server=db");
    let db_server = format!("srv-{tag}");

    // The id LiteLLM 1.108.7 gives `cfg`: sha256("name|url|transport|auth_type|alias")[:32].
    let config_id: String =
        sqlx::query_scalar("SELECT left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 32)")
            .bind(format!("cfg|{config_url}|http|none|"))
            .fetch_one(&pool)
            .await
            .unwrap();
    server(&pool, &db_server, &format!("db{tag}"), &db_url).await;
    let deleted_server = format!("srv-x-{tag}");
    server(&pool, &deleted_server, &format!("dbx{tag}"), &db_url).await;

    let k = |label: &str| format!("sk-{label}-{tag}");
    let (by_id, llm_api, inference, plain_1, plain_2) = (
        k("by-id"),
        k("llm-api"),
        k("inference"),
        k("plain-1"),
        k("plain-2"),
    );
    let (blocked_team, budget_team) = (format!("team-b-{tag}"), format!("team-s-{tag}"));
    let (in_blocked, in_budget, narrowed, on_db, old, new) = (
        k("in-blocked-team"),
        k("in-budget-team"),
        k("narrowed"),
        k("on-db-server"),
        k("old"),
        k("new"),
    );
    let (p_cfg, p_both, p_db) = (
        format!("op-cfg-{tag}"),
        format!("op-both-{tag}"),
        format!("op-db-{tag}"),
    );
    permission(&pool, &p_cfg, &[&config_id]).await;
    permission(&pool, &p_both, &[&config_id, &db_server]).await;
    permission(&pool, &p_db, &[&db_server]).await;
    let p_dbx = format!("op-dbx-{tag}");
    permission(&pool, &p_dbx, &[&deleted_server]).await;
    let on_dbx = k("on-deleted-server");
    key(&pool, &on_dbx, None, Some(&p_dbx), &[], None).await;
    team(&pool, &blocked_team, None).await;
    team(&pool, &budget_team, Some(10.0)).await;
    key(&pool, &by_id, None, Some(&p_cfg), &[], None).await;
    key(
        &pool,
        &llm_api,
        None,
        Some(&p_cfg),
        &["llm_api_routes"],
        Some("llm_api"),
    )
    .await;
    key(
        &pool,
        &inference,
        None,
        Some(&p_cfg),
        &["mcp_inference_routes"],
        None,
    )
    .await;
    key(&pool, &plain_1, None, Some(&p_cfg), &[], None).await;
    key(&pool, &plain_2, None, Some(&p_cfg), &[], None).await;
    key(
        &pool,
        &in_blocked,
        Some(&blocked_team),
        Some(&p_cfg),
        &[],
        None,
    )
    .await;
    key(
        &pool,
        &in_budget,
        Some(&budget_team),
        Some(&p_cfg),
        &[],
        None,
    )
    .await;
    key(&pool, &narrowed, None, Some(&p_both), &[], None).await;
    key(&pool, &on_db, None, Some(&p_db), &[], None).await;
    key(&pool, &new, None, Some(&p_cfg), &[], None).await;
    // `old` was regenerated into `new` with a grace period of an hour: it stands for `new` until then.
    sqlx::query(&format!(
        r#"INSERT INTO "LiteLLM_DeprecatedVerificationToken" (id, token, active_token_id, revoke_at, created_at)
           VALUES (gen_random_uuid()::text, {TOKEN}, encode(sha256(convert_to($2, 'UTF8')), 'hex'),
                   now() AT TIME ZONE 'UTC' + interval '1 hour', now() AT TIME ZONE 'UTC' - interval '1 hour')"#
    ))
    .bind(&old)
    .bind(&new)
    .execute(&pool)
    .await
    .unwrap();

    let config = temp_file(
        "config.yaml",
        &format!(
            "mcp_servers:\n  cfg:\n    url: \"{config_url}\"\n    transport: http\n    auth_type: none\n\
             \x20 db{tag}:\n    url: \"{db_url}\"\n  dbx{tag}:\n    url: \"{db_url}\"\n\
             general_settings:\n  database_url: os.environ/GATEWAY_TEST_DATABASE_URL\n"
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
    let env = [
        ("GATEWAY_TEST_DATABASE_URL", database.as_str()),
        (
            "MCP_GATEWAY_SESSION_SECRET",
            "litellm-fidelity-session-secret-0123456789",
        ),
    ];
    let replicas = [
        GatewayProcess::start(&args, &env).await,
        GatewayProcess::start(&args, &env).await,
    ];
    let db = format!("db{tag}");

    // Config-file server ids and route groups.
    for replica in &replicas {
        for key in [
            &by_id,
            &llm_api,
            &inference,
            &plain_1,
            &old,
            &in_blocked,
            &in_budget,
        ] {
            assert_eq!(
                status(replica, "cfg", key).await,
                StatusCode::OK,
                "{key} on cfg"
            );
        }
        assert_eq!(status(replica, &db, &by_id).await, StatusCode::FORBIDDEN);
        assert_eq!(status(replica, &db, &narrowed).await, StatusCode::OK);
        assert_eq!(status(replica, &db, &on_db).await, StatusCode::OK);
    }

    // Two keys without alias or user: distinct callers, in the access log and for sessions.
    let opened = post_init(
        &format!("{}/mcp/cfg", replicas[0].url()),
        &[("x-litellm-api-key", &plain_1)],
    )
    .await;
    let session = opened.header("mcp-session-id").unwrap().to_owned();
    let with_session = |key: String, replica: usize| {
        let session = session.clone();
        let url = format!("{}/mcp/cfg", replicas[replica].url());
        async move {
            post_init(
                &url,
                &[("x-litellm-api-key", &key), ("mcp-session-id", &session)],
            )
            .await
            .status
        }
    };
    assert_eq!(with_session(plain_1.clone(), 1).await, StatusCode::OK);
    assert_eq!(
        with_session(plain_2.clone(), 1).await,
        StatusCode::NOT_FOUND
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = replicas[0].stderr() + &replicas[1].stderr();
    let names: std::collections::BTreeSet<String> = log
        .lines()
        .filter(|l| l.contains("gateway::access") && l.contains("auth=key:litellm-key#"))
        .filter_map(|l| l.split("auth=key:").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert!(
        names.len() >= 2,
        "keys without alias share an identity: {names:?}\n{log}"
    );

    // Every revocation path, with the lag printed.
    let mut report = Vec::new();
    let started = Instant::now();
    exec(
        &pool,
        r#"UPDATE "LiteLLM_TeamTable" SET blocked = true, updated_at = now() AT TIME ZONE 'UTC' WHERE team_id = $1"#,
        &blocked_team,
    )
    .await;
    report.push((
        "team blocked",
        refused_by_all(&replicas, "cfg", &in_blocked, started).await,
    ));
    let started = Instant::now();
    exec(
        &pool,
        r#"UPDATE "LiteLLM_TeamTable" SET spend = 10.5, updated_at = now() AT TIME ZONE 'UTC' WHERE team_id = $1"#,
        &budget_team,
    )
    .await;
    report.push((
        "team over budget",
        refused_by_all(&replicas, "cfg", &in_budget, started).await,
    ));
    // `/key/update` with a new object permission: the permission row is rewritten, the key stamped.
    let started = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(r#"UPDATE "LiteLLM_ObjectPermissionTable" SET mcp_servers = ARRAY[$1] WHERE object_permission_id = $2"#)
        .bind(&config_id)
        .bind(&p_both)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(&format!(
        r#"UPDATE "LiteLLM_VerificationToken" SET updated_at = now() AT TIME ZONE 'UTC' WHERE token = {TOKEN}"#
    ))
    .bind(&narrowed)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    report.push((
        "object permission",
        refused_by_all(&replicas, &db, &narrowed, started).await,
    ));
    // The replacement of a rotated key is deleted during the old key's grace period: the old key goes too.
    let started = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!(
        r#"INSERT INTO "LiteLLM_DeletedVerificationToken" (id, token, key_name, deleted_at, deleted_by)
           SELECT gen_random_uuid()::text, token, key_name, now() AT TIME ZONE 'UTC', 'admin'
             FROM "LiteLLM_VerificationToken" WHERE token = {TOKEN}"#
    ))
    .bind(&new)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(&format!(
        r#"DELETE FROM "LiteLLM_VerificationToken" WHERE token = {TOKEN}"#
    ))
    .bind(&new)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    report.push((
        "replacement revoked",
        refused_by_all(&replicas, "cfg", &old, started).await,
    ));

    // Last: a changed MCP server drops every cached answer, which would hide the paths above.
    // The MCP server is no longer approved (`/v1/mcp/server` update: approval_status, updated_at).
    let started = Instant::now();
    exec(
        &pool,
        r#"UPDATE "LiteLLM_MCPServerTable" SET approval_status = 'pending_review', updated_at = now() AT TIME ZONE 'UTC' WHERE server_id = $1"#,
        &db_server,
    )
    .await;
    report.push((
        "mcp server",
        refused_by_all(&replicas, &db, &on_db, started).await,
    ));
    // An MCP server deleted from LiteLLM's table (`DELETE /v1/mcp/server`): no row left to stamp.
    let dbx = format!("dbx{tag}");
    for replica in &replicas {
        assert_eq!(status(replica, &dbx, &on_dbx).await, StatusCode::OK);
    }
    let started = Instant::now();
    exec(
        &pool,
        r#"DELETE FROM "LiteLLM_MCPServerTable" WHERE server_id = $1"#,
        &deleted_server,
    )
    .await;
    report.push((
        "mcp server deleted",
        refused_by_all(&replicas, &dbx, &on_dbx, started).await,
    ));
    for replica in &replicas {
        assert_eq!(
            status(replica, "cfg", &by_id).await,
            StatusCode::OK,
            "others keep working"
        );
    }
    let mut stderr = std::io::stderr();
    for (kind, lags) in &report {
        let _ = writeln!(
            stderr,
            "gateway revocation lag ({kind}, bound 2s): process 0 {:?}, process 1 {:?}",
            lags[0], lags[1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_rpm_limits_of_the_key_and_of_its_team_are_enforced() {
    let Some(Database {
        url: database,
        pool,
        tag,
    }) = database(
        "litellm_rpm_limits_of_the_key_and_of_its_team_are_enforced",
        "rpm",
    )
    .await
    else {
        return;
    };
    let upstream = Recorder::start(|_| answer(StatusCode::OK, &[], "{}")).await;
    let k = |label: &str| format!("sk-{label}-{tag}");
    let (limited, team_a, team_b, free) = (k("limited"), k("team-a"), k("team-b"), k("free"));
    let team_id = format!("team-rpm-{tag}");
    // As `/team/new` and `/key/generate` store `rpm_limit`: the key's column, the team's column.
    team(&pool, &team_id, None).await;
    exec(
        &pool,
        r#"UPDATE "LiteLLM_TeamTable" SET rpm_limit = 3 WHERE team_id = $1"#,
        &team_id,
    )
    .await;
    for (key_text, team) in [
        (&limited, None),
        (&team_a, Some(team_id.as_str())),
        (&team_b, Some(team_id.as_str())),
        (&free, None),
    ] {
        key(&pool, key_text, team, None, &[], None).await;
    }
    exec(
        &pool,
        &format!(r#"UPDATE "LiteLLM_VerificationToken" SET rpm_limit = 2 WHERE token = {TOKEN}"#),
        &limited,
    )
    .await;
    let config = temp_file(
        "config.yaml",
        &format!(
            "mcp_servers:\n  open:\n    url: \"{}\"\n    allow_all_keys: true\n\
             general_settings:\n  database_url: os.environ/GATEWAY_TEST_DATABASE_URL\n",
            upstream.url("/mcp")
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
    let gateway =
        GatewayProcess::start(&args, &[("GATEWAY_TEST_DATABASE_URL", database.as_str())]).await;

    // The key's own limit: 2 a minute (one more only after 30 s, far beyond this loop).
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(status(&gateway, "open", &limited).await);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // The team's limit: 3 a minute across both of its keys.
    let mut admitted = 0;
    for key in [&team_a, &team_b, &team_a, &team_b, &team_a, &team_b] {
        if status(&gateway, "open", key).await == StatusCode::OK {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3, "the team's keys share its 3 requests a minute");
    // A key without limits is not held back by the others.
    for _ in 0..5 {
        assert_eq!(status(&gateway, "open", &free).await, StatusCode::OK);
    }
    assert_eq!(
        upstream.seen().len(),
        2 + 3 + 5,
        "refused requests never reached the upstream"
    );
    let log = gateway.stderr();
    for key in [&limited, &team_a, &team_b, &free] {
        assert!(!log.contains(key.as_str()), "a key in the log");
    }
    gateway.stop().await;
}
