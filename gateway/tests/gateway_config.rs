//! `--config FILE`: a LiteLLM-shaped YAML file (secrets as `os.environ/` references, two servers, one of them
//! passthrough) drives the same flows as the flags; flags override it; what it cannot do is an error or a
//! warning at start-up.

use mcp_gateway as app;
mod gateway_support;

use std::{collections::HashMap, sync::OnceLock};

use axum::http::{HeaderName, HeaderValue};
use gateway_support::*;
use rmcp::{
    model::ClientConfig,
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
    ServiceExt,
};

const TOKEN: &str = "upstream-oauth-token-cfg";
const MASTER_KEY: &str = "sk-litellm-master-from-env";

/// Every variable this binary reads, set once before any test reads the environment.
fn environment() {
    static SET: OnceLock<()> = OnceLock::new();
    SET.get_or_init(|| {
        std::env::set_var("GATEWAY_CFG_TEST_MASTER_KEY", MASTER_KEY);
        std::env::set_var("GATEWAY_CFG_TEST_GITHUB_TOKEN", TOKEN);
        std::env::set_var("GATEWAY_CFG_TEST_TENANT", "acme");
    });
}

fn litellm_config(github: &str, atlassian: &str) -> String {
    format!(
        r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
mcp_servers:
  github:
    url: "{github}"
    transport: http
    description: GitHub's MCP server
    auth_type: bearer_token
    auth_value: os.environ/GATEWAY_CFG_TEST_GITHUB_TOKEN
    static_headers:
      X-Tenant: os.environ/GATEWAY_CFG_TEST_TENANT
  atlassian:
    url: "{atlassian}"
    transport: streamable_http
    auth_type: oauth_delegate
general_settings:
  master_key: os.environ/GATEWAY_CFG_TEST_MASTER_KEY
  store_model_in_db: true
"#
    )
}

async fn tools(url: String, token: Option<&str>, key: Option<&str>) -> Result<Vec<String>, String> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(token) = token {
        config = config.auth_header(token);
    }
    if let Some(key) = key {
        let mut headers = HashMap::new();
        headers.insert(
            HeaderName::from_static("x-litellm-api-key"),
            HeaderValue::from_str(key).unwrap(),
        );
        config = config.custom_headers(headers);
    }
    let client = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .map_err(|e| e.to_string())?;
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    client.cancel().await.map_err(|e| e.to_string())?;
    Ok(names)
}

fn carries(upstream: &app::demo::DemoUpstream, name: &str, needle: &str) -> bool {
    upstream
        .seen()
        .iter()
        .filter_map(|headers| headers.get(name))
        .any(|v| v.as_bytes() == needle.as_bytes())
}

#[tokio::test]
async fn a_litellm_config_drives_the_same_flows_as_the_flags() {
    environment();
    let github = app::demo::start(TOKEN).await.unwrap();
    let atlassian = app::demo::start(TOKEN).await.unwrap();
    let file = temp_file(
        "config.yaml",
        &litellm_config(&github.url(), &atlassian.url()),
    );
    let options =
        app::Options::parse(["--config".to_owned(), file.display().to_string()], None).unwrap();
    // Debug never shows the secrets the file resolved.
    let debug = format!("{options:?}");
    assert!(
        !debug.contains(MASTER_KEY) && !debug.contains(TOKEN),
        "{debug}"
    );
    assert_eq!(
        options.warnings.len(),
        1,
        "one warning lists every ignored field"
    );
    for field in [
        "model_list",
        "mcp_servers.github.description",
        "general_settings.store_model_in_db",
    ] {
        assert!(
            options.warnings[0].contains(field),
            "{}",
            options.warnings[0]
        );
    }
    let gw = gateway(&["--config".to_owned(), file.display().to_string()]).await;

    // The master key is a gateway key; github gets the gateway's credential and its static header.
    assert_eq!(
        tools(format!("http://{gw}/mcp/github"), None, Some(MASTER_KEY))
            .await
            .unwrap(),
        ["add", "echo"]
    );
    assert!(carries(
        &github,
        "authorization",
        &format!("Bearer {TOKEN}")
    ));
    assert!(carries(&github, "x-tenant", "acme"));
    assert!(!carries(&github, "x-litellm-api-key", MASTER_KEY));
    // atlassian (`oauth_delegate`) takes the client's own token beside a gateway key, as LiteLLM does; a token
    // alone is refused before the upstream.
    assert_eq!(
        tools(
            format!("http://{gw}/mcp/atlassian"),
            Some(TOKEN),
            Some(MASTER_KEY)
        )
        .await
        .unwrap(),
        ["add", "echo"]
    );
    let seen = atlassian.seen().len();
    let alone = post_init(
        &format!("http://{gw}/mcp/atlassian"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(alone.status, 401);
    assert_eq!(atlassian.seen().len(), seen);
    // github does not accept passthrough: a bearer that is no gateway key never reaches it.
    let before = github.seen().len();
    let refused = post_init(
        &format!("http://{gw}/mcp/github"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(github.seen().len(), before);
}

#[tokio::test]
async fn oauth_passthrough_true_and_flags_that_override_the_file() {
    environment();
    let first = app::demo::start(TOKEN).await.unwrap();
    let second = app::demo::start(TOKEN).await.unwrap();
    let yaml = format!(
        "mcp_servers:\n  docs:\n    url: {}\n    oauth_passthrough: true\ngeneral_settings:\n  master_key: os.environ/GATEWAY_CFG_TEST_MASTER_KEY\n",
        first.url()
    );
    let file = temp_file("config.yaml", &yaml);
    // `--upstream docs=...` wins over the file's `docs`; the file's passthrough goes with the file's entry.
    let gw = gateway(&args(&[
        ("--config", file.to_str().unwrap()),
        ("--upstream", &format!("docs={}", second.url())),
        ("--passthrough", "docs"),
        ("--key", KEY),
    ]))
    .await;
    assert_eq!(
        tools(format!("http://{gw}/mcp/docs"), Some(TOKEN), None)
            .await
            .unwrap(),
        ["add", "echo"]
    );
    assert!(first.seen().is_empty());
    assert!(!second.seen().is_empty());
    // Both the flag's key and the file's master key are gateway keys.
    for key in [KEY, MASTER_KEY] {
        assert_eq!(
            tools(format!("http://{gw}/mcp/docs"), Some(TOKEN), Some(key))
                .await
                .unwrap(),
            ["add", "echo"]
        );
    }

    let from_file = temp_file("config.yaml", &yaml);
    let gw = gateway(&["--config".to_owned(), from_file.display().to_string()]).await;
    assert_eq!(
        tools(format!("http://{gw}/mcp/docs"), Some(TOKEN), None)
            .await
            .unwrap(),
        ["add", "echo"]
    );
}

#[tokio::test]
async fn start_up_errors_name_the_problem_never_a_secret() {
    environment();
    let parse = |yaml: &str| {
        let file = temp_file("config.yaml", yaml);
        app::Options::parse(["--config".to_owned(), file.display().to_string()], None)
    };
    let sse = parse("mcp_servers:\n  old:\n    url: http://127.0.0.1:1/sse\n    transport: sse\n")
        .err()
        .unwrap();
    assert!(
        sse.contains("sse") && sse.contains("Streamable HTTP"),
        "{sse}"
    );
    let stdio = parse("mcp_servers:\n  local:\n    transport: stdio\n    command: npx\n")
        .err()
        .unwrap();
    assert!(stdio.contains("stdio"), "{stdio}");
    let unset =
        parse("general_settings:\n  master_key: os.environ/GATEWAY_CFG_TEST_SURELY_UNSET\n")
            .err()
            .unwrap();
    assert!(unset.contains("GATEWAY_CFG_TEST_SURELY_UNSET"), "{unset}");
    let broken = parse("general_settings:\n  master_key: [sk-secret-in-broken-yaml\n")
        .err()
        .unwrap();
    assert!(!broken.contains("sk-secret-in-broken-yaml"), "{broken}");
    let missing = app::Options::parse(
        [
            "--config".to_owned(),
            "/nonexistent/gateway.yaml".to_owned(),
        ],
        None,
    )
    .err()
    .unwrap();
    assert!(missing.contains("/nonexistent/gateway.yaml"), "{missing}");

    #[cfg(not(feature = "postgres"))]
    {
        let options =
            parse("general_settings:\n  database_url: postgres://u:pw@127.0.0.1:1/db\n").unwrap();
        let error = app::prepare(options, "127.0.0.1:0".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(
            error.contains("postgres") && !error.contains("pw@"),
            "{error}"
        );
    }
}

/// `general_settings.database_url` selects LiteLLM's key table: here a database that does not answer, so
/// `/readyz` says 503 and a key is refused with 503 (fail closed), never admitted.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn database_url_selects_the_litellm_key_table() {
    environment();
    let dead = dead_port().await;
    let upstream = app::demo::start(TOKEN).await.unwrap();
    let yaml = format!(
        "mcp_servers:\n  github:\n    url: {}\ngeneral_settings:\n  database_url: postgres://litellm@{dead}/litellm\n",
        upstream.url()
    );
    let file = temp_file("config.yaml", &yaml);
    let gw = gateway(&["--config".to_owned(), file.display().to_string()]).await;
    let ready = send(
        axum::http::Method::GET,
        &format!("http://{gw}/readyz"),
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(ready.status, 503);
    let answer = post_init(
        &format!("http://{gw}/mcp/github"),
        &[("x-litellm-api-key", "sk-some-litellm-key")],
    )
    .await;
    assert_eq!(answer.status, 503);
    assert!(upstream.seen().is_empty());
}

/// `database_url` pointing at LiteLLM's key table (a real PostgreSQL under `scripts/with-postgres.sh`): LiteLLM's
/// own keys admit callers, a blocked one is refused, and `/readyz` is 200. Skipped, saying so, without a database.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn database_url_admits_litellm_keys_from_a_live_table() {
    use std::io::Write as _;
    environment();
    const URL_VAR: &str = "TOWER_MCP_AUTH_TEST_DATABASE_URL";
    let Ok(url) = std::env::var(URL_VAR) else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped database_url_admits_litellm_keys_from_a_live_table: {URL_VAR} is not set \
             (run under scripts/with-postgres.sh)"
        );
        return;
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let valid = format!("sk-gateway-cfg-valid-{suffix}");
    let blocked = format!("sk-gateway-cfg-blocked-{suffix}");
    for (key, is_blocked) in [(&valid, false), (&blocked, true)] {
        sqlx::query(
            r#"INSERT INTO "LiteLLM_VerificationToken" (token, key_alias, blocked)
               VALUES (encode(sha256(convert_to($1, 'UTF8')), 'hex'), 'gateway-config-test', $2)"#,
        )
        .bind(key)
        .bind(is_blocked)
        .execute(&pool)
        .await
        .unwrap();
    }
    let upstream = app::demo::start(TOKEN).await.unwrap();
    let yaml = format!(
        "mcp_servers:\n  github:\n    url: {}\n    auth_type: bearer_token\n    auth_value: os.environ/GATEWAY_CFG_TEST_GITHUB_TOKEN\n    allow_all_keys: true\n\
         general_settings:\n  database_url: os.environ/{URL_VAR}\n  master_key: os.environ/GATEWAY_CFG_TEST_MASTER_KEY\n",
        upstream.url()
    );
    let file = temp_file("config.yaml", &yaml);
    let gw = gateway(&["--config".to_owned(), file.display().to_string()]).await;
    assert_eq!(
        send(
            axum::http::Method::GET,
            &format!("http://{gw}/readyz"),
            &[],
            bytes::Bytes::new()
        )
        .await
        .status,
        200
    );
    assert_eq!(
        tools(format!("http://{gw}/mcp/github"), None, Some(&valid))
            .await
            .unwrap(),
        ["add", "echo"]
    );
    // The config file's master key is admitted by the key table too, as LiteLLM admits it.
    assert_eq!(
        tools(format!("http://{gw}/mcp/github"), None, Some(MASTER_KEY))
            .await
            .unwrap(),
        ["add", "echo"]
    );
    let refused = post_init(
        &format!("http://{gw}/mcp/github"),
        &[("x-litellm-api-key", &blocked)],
    )
    .await;
    assert_eq!(refused.status, 403);
    // Shaped like one of LiteLLM's keys but in no table: refused as one of its keys, never "not a key".
    let unlisted = post_init(
        &format!("http://{gw}/mcp/github"),
        &[("x-litellm-api-key", "sk-not-in-the-table")],
    )
    .await;
    assert_eq!(unlisted.status, 403);
    let unknown = post_init(
        &format!("http://{gw}/mcp/github"),
        &[("x-litellm-api-key", "not-a-litellm-key")],
    )
    .await;
    assert_eq!(unknown.status, 401);
}
