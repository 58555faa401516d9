//! The `mcp-gateway` binary's command line, as operators meet it: `--help` and `--version`, flag values with
//! units and names, configuration errors that name their flag or YAML path and never a secret, and config files
//! that must never start the demo (with its well-known key) by mistake.

use std::{process::Output, time::Duration};

use tokio::io::AsyncBufReadExt;

const BINARY: &str = env!("CARGO_BIN_EXE_mcp-gateway");

/// Runs the binary to completion (it must exit on its own, within 20 s) with a clean `MCP_GATEWAY_*`
/// environment plus `env`.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(BINARY);
    for (name, _) in std::env::vars() {
        if name.starts_with("MCP_GATEWAY_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("the binary exits on its own")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcp-gateway-cli-{}-{name}-{}",
        std::process::id(),
        contents.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn help_lists_every_flag_with_its_environment_variable() {
    let out = run(&["--help"], &[]).await;
    assert!(out.status.success(), "{out:?}");
    let help = text(&out.stdout);
    for (flag, var) in [
        ("--config", "MCP_GATEWAY_CONFIG"),
        ("--listen", "MCP_GATEWAY_LISTEN"),
        ("--public-url", "MCP_GATEWAY_PUBLIC_URL"),
        ("--key-file", "MCP_GATEWAY_KEY_FILE"),
        ("--upstream", "MCP_GATEWAY_UPSTREAM"),
        ("--passthrough", "MCP_GATEWAY_PASSTHROUGH"),
        ("--upstream-auth", "MCP_GATEWAY_UPSTREAM_AUTH"),
        ("--allow-origin", "MCP_GATEWAY_ALLOW_ORIGIN"),
        ("--tls-cert", "MCP_GATEWAY_TLS_CERT"),
        ("--tls-key", "MCP_GATEWAY_TLS_KEY"),
        ("--upstream-timeout", "MCP_GATEWAY_UPSTREAM_TIMEOUT"),
        ("--max-body", "MCP_GATEWAY_MAX_BODY"),
        ("--drain-timeout", "MCP_GATEWAY_DRAIN_TIMEOUT"),
        ("--header-read-timeout", "MCP_GATEWAY_HEADER_READ_TIMEOUT"),
        ("--body-read-timeout", "MCP_GATEWAY_BODY_READ_TIMEOUT"),
        ("--max-connections", "MCP_GATEWAY_MAX_CONNECTIONS"),
        ("--linger-timeout", "MCP_GATEWAY_LINGER_TIMEOUT"),
        ("--linger-max-bytes", "MCP_GATEWAY_LINGER_MAX_BYTES"),
        ("--oauth-delegate", "MCP_GATEWAY_OAUTH_DELEGATE"),
        ("--jwt-required-scope", "MCP_GATEWAY_JWT_REQUIRED_SCOPE"),
        ("--jwt-allowed-client", "MCP_GATEWAY_JWT_ALLOWED_CLIENT"),
        (
            "--allow-insecure-auth-server",
            "MCP_GATEWAY_ALLOW_INSECURE_AUTH_SERVER",
        ),
        ("--jwt-issuer", "MCP_GATEWAY_JWT_ISSUER"),
        ("--jwt-jwks-uri", "MCP_GATEWAY_JWT_JWKS_URI"),
        ("--token-exchange", "MCP_GATEWAY_TOKEN_EXCHANGE"),
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
        assert!(help.contains(var), "{var} missing:\n{help}");
    }
    assert!(
        help.contains("--key ") && help.contains("MCP_GATEWAY_KEYS"),
        "{help}"
    );
    assert!(help.contains("--version"), "{help}");
}

#[tokio::test]
async fn version_prints_the_package_version() {
    let out = run(&["--version"], &[]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout).trim(),
        format!("mcp-gateway {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn flag_errors_name_the_flag() {
    let out = run(&["--upstream-timeout", "soon"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--upstream-timeout"), "{out:?}");
    let out = run(&["--listen", "nowhere"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--listen"), "{out:?}");
    let out = run(&["--no-such-flag"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
}

/// Each config mistake is refused at start-up, naming its YAML path, and never printing the value.
#[tokio::test]
async fn config_errors_name_their_yaml_path_and_never_the_value() {
    const SECRET: &str = "sk-config-secret-never-printed";
    let cases = [
        (
            "wrong type",
            format!("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    static_headers: {SECRET}\n"),
            "mcp_servers.a.static_headers",
        ),
        (
            "restricting field not enforced",
            format!("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    allowed_params: [{SECRET}]\n"),
            "mcp_servers.a.allowed_params",
        ),
        (
            "malformed allowed_tools (a string)",
            format!("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    allowed_tools: {SECRET}\n"),
            "mcp_servers.a.allowed_tools",
        ),
        (
            "malformed disallowed_tools member",
            format!("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    disallowed_tools: [echo, {{x: {SECRET}}}]\n"),
            "mcp_servers.a.disallowed_tools[1]",
        ),
        (
            "malformed tool_scopes",
            format!("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    tool_scopes: {{echo: {SECRET}}}\n"),
            "mcp_servers.a.tool_scopes.echo",
        ),
        (
            "names that differ in case",
            format!("mcp_servers:\n  Docs:\n    url: http://127.0.0.1:1/mcp?k={SECRET}\n  docs:\n    url: http://127.0.0.1:2/mcp\n"),
            "mcp_servers.docs",
        ),
        (
            "duplicate key",
            format!("mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    auth_type: bearer_token\n    auth_value: {SECRET}\n    auth_value: {SECRET}\n"),
            "mcp_servers.a",
        ),
        (
            "missing os.environ variable",
            "mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    auth_type: bearer_token\n    auth_value: os.environ/MCP_GW_TEST_SURELY_UNSET\n".to_owned(),
            "mcp_servers.a.auth_value",
        ),
        (
            "auth type without a value",
            "mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    auth_type: api_key\n".to_owned(),
            "mcp_servers.a.auth_value",
        ),
    ];
    for (case, yaml, path) in cases {
        let file = temp_file("config.yaml", &yaml);
        let out = run(
            &[
                "--listen",
                "127.0.0.1:0",
                "--config",
                file.to_str().unwrap(),
            ],
            &[],
        )
        .await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: {stderr}");
        assert!(
            stderr.contains(path),
            "{case}: {path} not named in {stderr}"
        );
        assert!(
            !stderr.contains(SECRET),
            "{case}: the value leaked: {stderr}"
        );
        assert!(!text(&out.stdout).contains("listening"), "{case}");
    }
}

/// A typo'd or empty config file is an error: it never starts the demo with its well-known key.
#[tokio::test]
async fn a_typo_or_an_empty_config_never_starts_the_demo() {
    for yaml in [
        "mcp_server:\n  a:\n    url: http://127.0.0.1:1/mcp\n",
        "",
        "general_settings:\n  master_key: sk-something\n",
    ] {
        let file = temp_file("config.yaml", yaml);
        let out = run(
            &[
                "--listen",
                "127.0.0.1:0",
                "--config",
                file.to_str().unwrap(),
            ],
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{yaml:?}: {out:?}");
        let stdout = text(&out.stdout);
        assert!(
            !stdout.contains("listening") && !stdout.contains("sk-demo"),
            "{yaml:?}"
        );
        assert!(text(&out.stderr).contains("--config"), "{yaml:?}");
    }
}

/// `--listen` takes a name, and durations take units, in the running binary.
#[tokio::test]
async fn listen_takes_a_host_name_and_durations_take_units() {
    let mut child = tokio::process::Command::new(BINARY)
        .args([
            "--listen",
            "localhost:0",
            "--upstream-timeout",
            "30s",
            "--drain-timeout",
            "1s",
            "--key",
            "sk-cli-test",
            "--upstream",
            "a=http://127.0.0.1:1/mcp",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with("listening on http://"), "{first}");
    child.kill().await.unwrap();
}

/// `MCP_GATEWAY_KEYS` follows the library's rules for keys in the environment: a server list there is refused,
/// because `sk-alice=atl,priv` would otherwise also create an unrestricted key named `priv`.
#[tokio::test]
async fn keys_in_the_environment_never_carry_server_lists() {
    let out = run(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "atl=http://127.0.0.1:1/mcp",
        ],
        &[("MCP_GATEWAY_KEYS", "sk-alice-env=atl,priv")],
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("MCP_GATEWAY_KEYS"), "{stderr}");
    assert!(!stderr.contains("sk-alice-env"), "{stderr}");
    assert!(!text(&out.stdout).contains("listening"));
}
