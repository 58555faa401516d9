//! `LiteLlmKeys` against a real PostgreSQL server holding LiteLLM's key table.
//!
//! Run under `scripts/with-postgres.sh`, which starts a throwaway server and sets
//! `TOWER_MCP_AUTH_TEST_DATABASE_URL`; without that variable each test prints why it is skipped and passes.
//! Every test seeds its own keys, so the tests can share the table and run in parallel.
#![cfg(feature = "postgres")]

use std::{
    convert::Infallible,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{Request, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPool, PgPoolOptions};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    validators::{Cache, KeyInfo, LiteLlmKeys},
    Authenticated, McpAuthLayer, OAuthPassthrough, PassthroughPolicy, Validator, Verdict,
};

use postgres::{pool, URL_VAR};
use testkit::postgres;

/// A key no other test uses.
fn new_key(label: &str) -> String {
    format!("sk-{}", postgres::unique(label))
}

/// A row as LiteLLM would write it: `token` is computed by the database, as LiteLLM's hex SHA-256.
#[derive(Default)]
struct Row {
    alias: Option<&'static str>,
    expires_in: Option<f64>,
    spend: f64,
    max_budget: Option<f64>,
    blocked: Option<bool>,
}

async fn seed(pool: &PgPool, key: &str, row: Row) {
    let expires = row.expires_in.map(|seconds| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + seconds
    });
    sqlx::query(
        r#"INSERT INTO "LiteLLM_VerificationToken"
               (token, key_name, key_alias, user_id, team_id, organization_id, models, metadata,
                expires, spend, max_budget, blocked)
           VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'), 'sk-...' || right($1, 4), $2,
                   'user-1', 'team-1', 'org-1', ARRAY['gpt-4o', 'claude-sonnet'], $3,
                   to_timestamp($4) AT TIME ZONE 'UTC', $5, $6, $7)"#,
    )
    .bind(key)
    .bind(row.alias)
    .bind(json!({ "env": "test", "owner": "alice" }))
    .bind(expires)
    .bind(row.spend)
    .bind(row.max_budget)
    .bind(row.blocked)
    .execute(pool)
    .await
    .unwrap();
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[tokio::test]
async fn a_row_is_valid_with_its_key_info() {
    let Some(pool) = pool("a_row_is_valid_with_its_key_info").await else {
        return;
    };
    let key = new_key("valid");
    seed(
        &pool,
        &key,
        Row {
            alias: Some("ci-bot"),
            expires_in: Some(3600.0),
            spend: 1.5,
            max_budget: Some(10.0),
            ..Row::default()
        },
    )
    .await;
    let Verdict::Valid(info) = LiteLlmKeys::new(pool).validate(&key).await.unwrap() else {
        panic!("not valid");
    };
    assert_eq!(info.key_alias.as_deref(), Some("ci-bot"));
    assert_eq!(info.user_id.as_deref(), Some("user-1"));
    assert_eq!(info.team_id.as_deref(), Some("team-1"));
    assert_eq!(info.organization_id.as_deref(), Some("org-1"));
    assert_eq!(info.models, ["gpt-4o", "claude-sonnet"]);
    assert_eq!(info.metadata, json!({ "env": "test", "owner": "alice" }));
    assert_eq!(info.spend, 1.5);
    assert_eq!(info.max_budget, Some(10.0));
    let expires = info.expires_at().unwrap();
    let expected = SystemTime::now() + Duration::from_secs(3600);
    let off = expected
        .duration_since(expires)
        .unwrap_or_else(|e| e.duration());
    assert!(off < Duration::from_secs(60), "expires off by {off:?}");
    // KeyInfo leaves out LiteLLM's key_name, which holds the key's last characters.
    assert!(!format!("{info:?}").contains(&key[key.len() - 4..]));
}

#[tokio::test]
async fn an_unlisted_key_is_denied_and_anything_else_unknown() {
    let Some(pool) = pool("an_unlisted_key_is_denied_and_anything_else_unknown").await else {
        return;
    };
    let keys = LiteLlmKeys::new(pool.clone());
    // Shaped like one of LiteLLM's keys, in no table: refused, so it can never pass through upstream...
    assert_eq!(
        keys.validate(&new_key("absent")).await.unwrap(),
        Verdict::Denied
    );
    // ...unless the deployment says upstream tokens may look like that.
    assert_eq!(
        LiteLlmKeys::new(pool)
            .deny_unlisted(false)
            .validate(&new_key("absent"))
            .await
            .unwrap(),
        Verdict::Unknown
    );
    // LiteLLM only issues `sk-` keys; anything else is not looked up at all.
    assert_eq!(
        keys.validate("ya29.oauth-token").await.unwrap(),
        Verdict::Unknown
    );
}

#[tokio::test]
async fn a_presented_digest_is_not_a_key() {
    let Some(pool) = pool("a_presented_digest_is_not_a_key").await else {
        return;
    };
    let key = new_key("digest");
    seed(&pool, &key, Row::default()).await;
    let keys = LiteLlmKeys::new(pool);
    let stored: String = digest(&key).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(keys.validate(&stored).await.unwrap(), Verdict::Unknown);
    assert_eq!(
        keys.validate(&format!("sk-{stored}")).await.unwrap(),
        Verdict::Denied
    );
}

#[tokio::test]
async fn blocked_expired_and_over_budget_keys_are_denied() {
    let Some(pool) = pool("blocked_expired_and_over_budget_keys_are_denied").await else {
        return;
    };
    let keys = LiteLlmKeys::new(pool.clone());
    let cases: Vec<(&str, Row, bool)> = vec![
        (
            "blocked",
            Row {
                blocked: Some(true),
                ..Row::default()
            },
            false,
        ),
        (
            "not-blocked",
            Row {
                blocked: Some(false),
                ..Row::default()
            },
            true,
        ),
        (
            "blocked-null",
            Row {
                blocked: None,
                ..Row::default()
            },
            true,
        ),
        (
            "expired",
            Row {
                expires_in: Some(-60.0),
                ..Row::default()
            },
            false,
        ),
        (
            "expiring-later",
            Row {
                expires_in: Some(60.0),
                ..Row::default()
            },
            true,
        ),
        (
            "at-budget",
            Row {
                spend: 10.0,
                max_budget: Some(10.0),
                ..Row::default()
            },
            false,
        ),
        (
            "over-budget",
            Row {
                spend: 12.5,
                max_budget: Some(10.0),
                ..Row::default()
            },
            false,
        ),
        (
            "zero-budget",
            Row {
                spend: 0.0,
                max_budget: Some(0.0),
                ..Row::default()
            },
            false,
        ),
        (
            "under-budget",
            Row {
                spend: 9.99,
                max_budget: Some(10.0),
                ..Row::default()
            },
            true,
        ),
        (
            "no-budget",
            Row {
                spend: 1e9,
                max_budget: None,
                ..Row::default()
            },
            true,
        ),
    ];
    for (label, row, admitted) in cases {
        let key = new_key(label);
        seed(&pool, &key, row).await;
        let verdict = keys.validate(&key).await.unwrap();
        if admitted {
            assert!(matches!(verdict, Verdict::Valid(_)), "{label}: {verdict:?}");
        } else {
            assert_eq!(verdict, Verdict::Denied, "{label}");
        }
    }
}

#[tokio::test]
async fn the_lookup_is_a_prepared_statement() {
    let Some(pool) = pool("the_lookup_is_a_prepared_statement").await else {
        return;
    };
    // One connection, so the statement cache inspected is the one the lookups used.
    let url = std::env::var(URL_VAR).unwrap();
    drop(pool);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let keys = LiteLlmKeys::new(pool.clone());
    for _ in 0..3 {
        keys.validate(&new_key("prepared")).await.unwrap();
    }
    let prepared: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM pg_prepared_statements
            WHERE statement LIKE '%LiteLLM_VerificationToken%' AND statement NOT LIKE '%pg_prepared_statements%'"#,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(prepared, 1);
}

#[tokio::test]
async fn cached_with_the_keys_expiry_capping_the_ttl() {
    let Some(pool) = pool("cached_with_the_keys_expiry_capping_the_ttl").await else {
        return;
    };
    let key = new_key("expiring");
    seed(
        &pool,
        &key,
        Row {
            expires_in: Some(5.0),
            ..Row::default()
        },
    )
    .await;
    let cache = Cache::builder(LiteLlmKeys::new(pool))
        .valid_ttl(Duration::from_secs(60))
        .expiry(KeyInfo::expires_at)
        .build();
    assert!(matches!(
        cache.validate(&key).await.unwrap(),
        Verdict::Valid(_)
    ));
    // One-sided on both ends: the first validation comes well within the 5 s (a stall of seconds would be needed
    // to miss it), and after 5.5 s both the cached answer (kept at most until the expiry) and the key are gone.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    // Without the cap the cached Valid would be served for 60 s; the store now says the key expired.
    assert_eq!(cache.validate(&key).await.unwrap(), Verdict::Denied);
}

#[tokio::test]
async fn blocking_a_cached_key_takes_effect_on_invalidation() {
    let Some(pool) = pool("blocking_a_cached_key_takes_effect_on_invalidation").await else {
        return;
    };
    let key = new_key("revoked");
    seed(&pool, &key, Row::default()).await;
    let cache = Cache::new(LiteLlmKeys::new(pool.clone()));
    assert!(matches!(
        cache.validate(&key).await.unwrap(),
        Verdict::Valid(_)
    ));
    sqlx::query(
        r#"UPDATE "LiteLLM_VerificationToken" SET blocked = true
            WHERE token = encode(sha256(convert_to($1, 'UTF8')), 'hex')"#,
    )
    .bind(&key)
    .execute(&pool)
    .await
    .unwrap();
    // The revocation delay: still admitted from the cache...
    assert!(matches!(
        cache.validate(&key).await.unwrap(),
        Verdict::Valid(_)
    ));
    // ...until the cache is told, by the digest LiteLLM stores.
    cache.invalidate_digest(&digest(&key)).await;
    assert_eq!(cache.validate(&key).await.unwrap(), Verdict::Denied);
}

#[tokio::test]
async fn behind_the_layer() {
    let Some(pool) = pool("behind_the_layer").await else {
        return;
    };
    let (valid, blocked) = (new_key("layer-valid"), new_key("layer-blocked"));
    seed(
        &pool,
        &valid,
        Row {
            alias: Some("layer"),
            ..Row::default()
        },
    )
    .await;
    seed(
        &pool,
        &blocked,
        Row {
            blocked: Some(true),
            ..Row::default()
        },
    )
    .await;
    let layer = McpAuthLayer::new(
        Cache::builder(LiteLlmKeys::new(pool))
            .expiry(KeyInfo::expires_at)
            .build(),
    )
    .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"]));
    let gateway =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|req: Request<()>| async move {
                let alias = req
                    .extensions()
                    .get::<Authenticated<KeyInfo>>()
                    .and_then(|a| a.identity().key_alias.clone());
                let passthrough = req.extensions().get::<OAuthPassthrough>().is_some();
                Ok::<_, Infallible>(http::Response::new(format!("{alias:?} {passthrough}")))
            }));
    let call = |path: &str, header: &str, value: String| {
        let req = Request::post(path).header(header, value).body(()).unwrap();
        gateway.clone().oneshot(req)
    };
    let key_header = "x-litellm-api-key";
    let ok = call("/mcp/github", key_header, valid.clone())
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        call("/mcp/github", key_header, blocked.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            "/mcp/atlassian",
            "authorization",
            format!("Bearer {blocked}")
        )
        .await
        .unwrap()
        .status(),
        StatusCode::FORBIDDEN,
        "a blocked key is never passed through"
    );
    assert_eq!(
        call("/mcp/github", key_header, new_key("layer-unknown"))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN,
        "an sk- key in no table is refused as one of LiteLLM's"
    );
    assert_eq!(
        call("/mcp/github", key_header, "not-a-litellm-key".to_owned())
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            "/mcp/atlassian",
            "authorization",
            "Bearer atl-oauth-token".to_owned()
        )
        .await
        .unwrap()
        .status(),
        StatusCode::OK
    );
}
