//! `LiteLlmKeys` reads what LiteLLM itself enforces on MCP routes, from rows shaped like a LiteLLM deployment's:
//! object permissions with `mcp_servers` and access groups, teams (one blocked), a deleted key, a rotated key
//! inside and past its grace, and the master key. Real PostgreSQL, under `scripts/with-postgres.sh`; without
//! `TOWER_MCP_AUTH_TEST_DATABASE_URL` each test prints why it is skipped and passes.
#![cfg(feature = "postgres")]

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sqlx::postgres::PgPool;
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    permissions::{RequireUpstreamLayer, UpstreamAccess},
    upstream::{ForwardCredentialsLayer, UpstreamConfig},
    validators::{KeyInfo, LiteLlmKeys},
    BoxError, McpAuthLayer, PassthroughPolicy, Validator, Verdict,
};

use postgres::{pool, unique};
use testkit::postgres;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A deployment: three MCP servers (`atl` in access group `dev`, `priv`, and `docs` open to every key), keyed
/// by unique ids, and the rows a test adds.
struct Deployment {
    pool: PgPool,
    tag: String,
}

impl Deployment {
    async fn new(pool: PgPool, test: &str) -> Self {
        let tag = unique(test);
        let this = Self { pool, tag };
        for (name, groups, open) in [
            ("atl", vec!["dev"], false),
            ("priv", vec![], false),
            ("docs", vec![], true),
        ] {
            // Server names are the gateway's upstream names, so each test uses the same three; the ids differ.
            sqlx::query(
                r#"INSERT INTO "LiteLLM_MCPServerTable" (server_id, server_name, url, mcp_access_groups, allow_all_keys)
                   VALUES ($1, $2, 'http://upstream.test', $3, $4)"#,
            )
            .bind(this.id(name))
            .bind(name)
            .bind(groups)
            .bind(open)
            .execute(&this.pool)
            .await
            .unwrap();
        }
        this
    }

    fn id(&self, name: &str) -> String {
        format!("{name}-{}", self.tag)
    }

    /// An object permission listing servers (by id) and access groups.
    async fn permission(&self, name: &str, servers: &[&str], groups: &[&str]) -> String {
        let id = self.id(name);
        let servers: Vec<String> = servers.iter().map(|s| self.id(s)).collect();
        sqlx::query(
            r#"INSERT INTO "LiteLLM_ObjectPermissionTable" (object_permission_id, mcp_servers, mcp_access_groups)
               VALUES ($1, $2, $3)"#,
        )
        .bind(&id)
        .bind(servers)
        .bind(groups)
        .execute(&self.pool)
        .await
        .unwrap();
        id
    }

    /// An object permission with LiteLLM's tool columns: `mcp_tool_permissions` keyed by server id, as the
    /// admin UI writes it, and `blocked_tools`.
    async fn tool_permission(
        &self,
        name: &str,
        tools: &[(&str, &[&str])],
        blocked: &[&str],
    ) -> String {
        let id = self.id(name);
        let map: serde_json::Map<String, serde_json::Value> = tools
            .iter()
            .map(|(server, tools)| (self.id(server), serde_json::json!(tools)))
            .collect();
        sqlx::query(
            r#"INSERT INTO "LiteLLM_ObjectPermissionTable" (object_permission_id, mcp_tool_permissions, blocked_tools)
               VALUES ($1, $2, $3)"#,
        )
        .bind(&id)
        .bind(serde_json::Value::Object(map))
        .bind(blocked)
        .execute(&self.pool)
        .await
        .unwrap();
        id
    }

    async fn team(&self, name: &str, permission: Option<&str>, blocked: bool) -> String {
        let id = self.id(name);
        sqlx::query(
            r#"INSERT INTO "LiteLLM_TeamTable" (team_id, team_alias, object_permission_id, blocked)
               VALUES ($1, $2, $3, $4)"#,
        )
        .bind(&id)
        .bind(name)
        .bind(permission)
        .bind(blocked)
        .execute(&self.pool)
        .await
        .unwrap();
        id
    }

    /// A key row, as LiteLLM writes it; returns the key.
    async fn key(
        &self,
        alias: &str,
        team: Option<&str>,
        permission: Option<&str>,
        allowed_routes: &[&str],
    ) -> String {
        let key = format!("sk-{}", self.id(alias));
        sqlx::query(
            r#"INSERT INTO "LiteLLM_VerificationToken"
                   (token, key_name, key_alias, team_id, object_permission_id, allowed_routes)
               VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'), 'sk-...' || right($1, 4), $2, $3, $4, $5)"#,
        )
        .bind(&key)
        .bind(alias)
        .bind(team)
        .bind(permission)
        .bind(allowed_routes)
        .execute(&self.pool)
        .await
        .unwrap();
        key
    }

    /// Moves a key to `"LiteLLM_DeletedVerificationToken"`, as LiteLLM's key deletion does.
    async fn delete(&self, key: &str) {
        sqlx::query(
            r#"WITH gone AS (
                   DELETE FROM "LiteLLM_VerificationToken"
                    WHERE token = encode(sha256(convert_to($1, 'UTF8')), 'hex')
                   RETURNING token, key_alias, team_id)
               INSERT INTO "LiteLLM_DeletedVerificationToken" (id, token, key_alias, team_id)
               SELECT gen_random_uuid()::text, token, key_alias, team_id FROM gone"#,
        )
        .bind(key)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// Rotates `old` to `new` (which must exist) with a grace ending `grace` seconds from now, as LiteLLM's
    /// rotation does: the old key leaves the live table and is kept as deprecated.
    async fn rotate(&self, old: &str, new: &str, grace: f64) {
        sqlx::query(
            r#"DELETE FROM "LiteLLM_VerificationToken" WHERE token = encode(sha256(convert_to($1, 'UTF8')), 'hex')"#,
        )
        .bind(old)
        .execute(&self.pool)
        .await
        .unwrap();
        sqlx::query(
            r#"INSERT INTO "LiteLLM_DeprecatedVerificationToken" (id, token, active_token_id, revoke_at)
               VALUES (gen_random_uuid()::text, encode(sha256(convert_to($1, 'UTF8')), 'hex'),
                       encode(sha256(convert_to($2, 'UTF8')), 'hex'), to_timestamp($3) AT TIME ZONE 'UTC')"#,
        )
        .bind(old)
        .bind(new)
        .bind(now() + grace)
        .execute(&self.pool)
        .await
        .unwrap();
    }
}

async fn valid(keys: &LiteLlmKeys, key: &str) -> KeyInfo {
    match keys.validate(key).await.unwrap() {
        Verdict::Valid(info) => info,
        other => panic!("{other:?}"),
    }
}

fn upstreams(info: &KeyInfo) -> Vec<&str> {
    info.upstreams
        .names()
        .map(Iterator::collect)
        .unwrap_or_else(|| vec!["*"])
}

#[tokio::test]
async fn object_permissions_and_teams_give_the_servers_litellm_would() {
    let Some(pool) = pool("object_permissions_and_teams_give_the_servers_litellm_would").await
    else {
        return;
    };
    let d = Deployment::new(pool.clone(), "perm").await;
    let only_atl = d.permission("p-atl", &["atl"], &[]).await;
    let atl_and_priv = d.permission("p-both", &["atl", "priv"], &[]).await;
    let only_priv = d.permission("p-priv", &["priv"], &[]).await;
    let dev_group = d.permission("p-dev", &[], &["dev"]).await;
    let team_priv = d.team("t-priv", Some(&only_priv), false).await;
    let team_open = d.team("t-open", None, false).await;

    let keys = LiteLlmKeys::new(pool);
    // The key's own servers, plus the server open to every key.
    let a = valid(&keys, &d.key("a", None, Some(&only_atl), &[]).await).await;
    assert_eq!(upstreams(&a), ["atl", "docs"]);
    assert!(a.may_use("atl") && !a.may_use("priv"));
    // A key without servers of its own inherits its team's.
    let b = valid(&keys, &d.key("b", Some(&team_priv), None, &[]).await).await;
    assert_eq!(upstreams(&b), ["docs", "priv"]);
    // Both list servers: the key gets those in both.
    let both = valid(
        &keys,
        &d.key("both", Some(&team_priv), Some(&atl_and_priv), &[])
            .await,
    )
    .await;
    assert_eq!(upstreams(&both), ["docs", "priv"]);
    // An access group stands for the servers that carry it.
    let group = valid(
        &keys,
        &d.key("group", Some(&team_open), Some(&dev_group), &[])
            .await,
    )
    .await;
    assert_eq!(upstreams(&group), ["atl", "docs"]);
    // No list anywhere: only what is open to every key.
    let bare = valid(&keys, &d.key("bare", Some(&team_open), None, &[]).await).await;
    assert_eq!(upstreams(&bare), ["docs"]);
    // MCP among the allowed routes, or no route restriction: admitted.
    let routed = valid(
        &keys,
        &d.key("routed", None, Some(&only_atl), &["mcp_routes"])
            .await,
    )
    .await;
    assert_eq!(upstreams(&routed), ["atl", "docs"]);
    // LiteLLM's `llm_api_routes` (keys of `key_type: llm_api`) include its MCP routes.
    let llm_api = valid(
        &keys,
        &d.key("llm-api", None, Some(&only_atl), &["llm_api_routes"])
            .await,
    )
    .await;
    assert_eq!(upstreams(&llm_api), ["atl", "docs"]);
    assert!(!a.master);
}

#[tokio::test]
async fn keys_litellm_would_refuse_are_denied_never_unknown() {
    let Some(pool) = pool("keys_litellm_would_refuse_are_denied_never_unknown").await else {
        return;
    };
    let d = Deployment::new(pool.clone(), "refuse").await;
    let blocked_team = d.team("t-blocked", None, true).await;
    let keys = LiteLlmKeys::new(pool);
    let cases = [
        (
            "blocked team",
            d.key("in-blocked-team", Some(&blocked_team), None, &[])
                .await,
        ),
        (
            "missing team",
            d.key("in-missing-team", Some("no-such-team"), None, &[])
                .await,
        ),
        (
            "routes without MCP",
            d.key("llm-only", None, None, &["llm_api_routes_without_mcp"])
                .await,
        ),
    ];
    for (case, key) in cases {
        assert_eq!(
            keys.validate(&key).await.unwrap(),
            Verdict::Denied,
            "{case}"
        );
    }
    // Deleted: gone from the live table, kept in the deleted one.
    let deleted = d.key("deleted", None, None, &[]).await;
    assert!(matches!(
        keys.validate(&deleted).await.unwrap(),
        Verdict::Valid(_)
    ));
    d.delete(&deleted).await;
    assert_eq!(keys.validate(&deleted).await.unwrap(), Verdict::Denied);
    // Deleted even where unlisted keys would be Unknown: LiteLLM knows this one.
    let lenient = keys.clone().deny_unlisted(false);
    assert_eq!(lenient.validate(&deleted).await.unwrap(), Verdict::Denied);
}

#[tokio::test]
async fn a_rotated_key_works_within_its_grace_and_is_denied_after() {
    let Some(pool) = pool("a_rotated_key_works_within_its_grace_and_is_denied_after").await else {
        return;
    };
    let d = Deployment::new(pool.clone(), "rotate").await;
    let only_atl = d.permission("p-atl", &["atl"], &[]).await;
    let keys = LiteLlmKeys::new(pool).deny_unlisted(false);

    let (old, new) = (
        d.key("old", None, Some(&only_atl), &[]).await,
        d.key("new", None, Some(&only_atl), &[]).await,
    );
    d.rotate(&old, &new, 3600.0).await;
    // Inside the grace the old key stands for the new one: its identity and its servers.
    let info = valid(&keys, &old).await;
    assert_eq!(info.key_alias.as_deref(), Some("new"));
    assert_eq!(upstreams(&info), ["atl", "docs"]);

    let (expired, replacement) = (
        d.key("old-expired", None, None, &[]).await,
        d.key("replacement", None, None, &[]).await,
    );
    d.rotate(&expired, &replacement, -60.0).await;
    // Past the grace: refused, and never Unknown, even with `deny_unlisted(false)`.
    assert_eq!(keys.validate(&expired).await.unwrap(), Verdict::Denied);
    assert!(matches!(
        keys.validate(&replacement).await.unwrap(),
        Verdict::Valid(_)
    ));
}

#[tokio::test]
async fn the_master_key_is_valid_with_every_upstream() {
    let Some(pool) = pool("the_master_key_is_valid_with_every_upstream").await else {
        return;
    };
    let master = format!("sk-{}", unique("master"));
    let keys = LiteLlmKeys::new(pool).master_key(&master);
    let info = valid(&keys, &master).await;
    assert!(info.master);
    assert!(info.upstreams.is_all() && info.may_use("priv"));
    assert!(!format!("{keys:?}").contains(&master));
    // Without it configured, the master key is in no table: an sk- key LiteLLM does not list, refused.
    assert_eq!(
        keys.clone()
            .master_key("sk-another")
            .validate(&master)
            .await
            .unwrap(),
        Verdict::Denied
    );
}

/// An upstream on loopback that counts the requests it receives.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let app = Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { "upstream" }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, calls)
}

#[tokio::test]
async fn a_deleted_key_on_a_passthrough_route_is_403_and_never_reaches_the_upstream() {
    let Some(pool) =
        pool("a_deleted_key_on_a_passthrough_route_is_403_and_never_reaches_the_upstream").await
    else {
        return;
    };
    let d = Deployment::new(pool.clone(), "layer").await;
    let only_atl = d.permission("p-atl", &["atl"], &[]).await;
    let deleted = d.key("gone", None, None, &[]).await;
    d.delete(&deleted).await;
    let live = d.key("live", None, Some(&only_atl), &[]).await;

    let (addr, calls) = counting_upstream().await;
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url = format!("http://{addr}");
    let atl = ForwardCredentialsLayer::new(
        UpstreamConfig::new("atl", &url)
            .unwrap()
            .with_passthrough(true),
    )
    .layer(http.clone());
    let priv_ =
        ForwardCredentialsLayer::new(UpstreamConfig::new("priv", &url).unwrap()).layer(http);
    let gateway = ServiceBuilder::new()
        .layer(
            McpAuthLayer::new(LiteLlmKeys::new(pool))
                .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atl"])),
        )
        .layer(RequireUpstreamLayer::<KeyInfo, _>::path_segment("/mcp/"))
        .service(service_fn(move |request: Request<Full<Bytes>>| {
            let client = if request.uri().path().starts_with("/mcp/atl") {
                atl.clone()
            } else {
                priv_.clone()
            };
            async move {
                let response = client.oneshot(request).await?;
                let (parts, body) = response.into_parts();
                let body = body.collect().await?.to_bytes();
                Ok::<_, BoxError>(Response::from_parts(parts, Full::new(body)))
            }
        }));
    let status = |path: &'static str, name: &'static str, value: String| {
        let gateway = gateway.clone();
        async move {
            let request = Request::post(path)
                .header(name, value)
                .body(Full::new(Bytes::new()))
                .unwrap();
            gateway.oneshot(request).await.unwrap().status()
        }
    };

    // The deleted key as a bearer on the passthrough route: refused as one of LiteLLM's keys, not passed on.
    let refused = status("/mcp/atl", "authorization", format!("Bearer {deleted}")).await;
    assert_eq!(refused, StatusCode::FORBIDDEN);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the deleted key reached the upstream"
    );
    // A live key reaches the server it may use, and is refused the other, which never sees it.
    assert_eq!(
        status("/mcp/atl", "x-litellm-api-key", live.clone()).await,
        StatusCode::OK
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        status("/mcp/priv", "x-litellm-api-key", live).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A real upstream OAuth token still passes through where the route allows it.
    assert_eq!(
        status(
            "/mcp/atl",
            "authorization",
            "Bearer atl-oauth-token".to_owned()
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tool_permissions_and_blocked_tools_narrow_the_tools_as_litellm_does() {
    let Some(pool) =
        pool("tool_permissions_and_blocked_tools_narrow_the_tools_as_litellm_does").await
    else {
        return;
    };
    let d = Deployment::new(pool.clone(), "tools").await;
    let key_echo_add = d
        .tool_permission("p-k", &[("atl", &["echo", "add"])], &[])
        .await;
    let team_add_rm = d
        .tool_permission("p-t", &[("atl", &["add", "rm"])], &["rm"])
        .await;
    let team = d.team("t-tools", Some(&team_add_rm), false).await;
    let keys = LiteLlmKeys::new(pool);

    // A server named in `mcp_tool_permissions` is granted, with only those tools.
    let alone = valid(&keys, &d.key("alone", None, Some(&key_echo_add), &[]).await).await;
    assert_eq!(upstreams(&alone), ["atl", "docs"]);
    assert!(alone.upstreams.may_call("atl", "echo") && !alone.upstreams.may_call("atl", "rm"));
    assert!(alone.upstreams.may_call("docs", "anything"));
    // Key and team: the tools both list, less what either blocks (`rm` is blocked by the team).
    let both = valid(
        &keys,
        &d.key("both", Some(&team), Some(&key_echo_add), &[]).await,
    )
    .await;
    assert!(both.upstreams.may_call("atl", "add"));
    assert!(!both.upstreams.may_call("atl", "echo") && !both.upstreams.may_call("atl", "rm"));
    // `blocked_tools` holds on every server, open ones too.
    let inherits = valid(&keys, &d.key("inherits", Some(&team), None, &[]).await).await;
    assert!(inherits.upstreams.may_call("atl", "add") && !inherits.upstreams.may_call("atl", "rm"));
    assert!(
        !inherits.upstreams.may_call("docs", "rm") && inherits.upstreams.may_call("docs", "echo")
    );
}
