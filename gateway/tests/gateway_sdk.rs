//! The official MCP Python SDK's clients of both eras — the `initialize` handshake (`mode="legacy"`) and the
//! stateless 2026-07-28 revision — through the gateway binary, against an rmcp upstream that counts its tool
//! calls: each lists only the tools its key may call, gets an error for a refused one (which never runs) and a
//! result for an allowed one.
//!
//! Needs `TOWER_MCP_AUTH_TEST_PYTHON` (set by `scripts/with-mcp-sdk.sh`); without it the test prints why it
//! is skipped and passes.

mod gateway_support;

use std::process::Stdio;

use gateway_support::temp_file;
use testkit::tools_upstream::upstream;
use tokio::io::{AsyncBufReadExt, BufReader};

const BINARY: &str = env!("CARGO_BIN_EXE_mcp-gateway");
const KEY: &str = "sk-sdk-echo-only";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/tools_client.py");

#[tokio::test]
async fn sdk_clients_of_both_eras_see_only_their_tools_through_the_binary() {
    let Ok(python) = std::env::var("TOWER_MCP_AUTH_TEST_PYTHON") else {
        eprintln!(
            "skipped: TOWER_MCP_AUTH_TEST_PYTHON is unset (run under scripts/with-mcp-sdk.sh)"
        );
        return;
    };
    let (sse_url, sse) = upstream(false).await;
    let (json_url, json) = upstream(true).await;
    let config = temp_file(
        "config.yaml",
        &format!(
            "mcp_servers:\n  sse:\n    url: {sse_url}\n    disallowed_tools: [secret]\n  json:\n    url: {json_url}\n    allowed_tools: [echo, add]\n"
        ),
    );
    let mut gateway = tokio::process::Command::new(BINARY)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
            "--key",
            &format!("{KEY}=sse/echo,sse/add,json/echo"),
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(gateway.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let base = first.strip_prefix("listening on ").unwrap().to_owned();

    for (mode, version) in [("legacy", "2025-11-25"), ("2026-07-28", "2026-07-28")] {
        for (route, tools, refused) in [
            ("sse", vec!["add", "echo"], "secret"),
            ("json", vec!["echo"], "add"),
        ] {
            let out = tokio::process::Command::new(&python)
                .args([
                    SCRIPT,
                    &format!("{base}/mcp/{route}"),
                    KEY,
                    mode,
                    refused,
                    "echo",
                ])
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{mode} {route}: {}\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
            let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(seen["version"], version, "{mode} {route}: {seen}");
            assert_eq!(
                seen["tools"],
                serde_json::json!(tools),
                "{mode} {route}: {seen}"
            );
            let refusal = seen["refused"].to_string();
            assert!(refusal.contains(refused), "{mode} {route}: {refusal}");
            assert_eq!(seen["allowed"]["is_error"], false, "{mode} {route}: {seen}");
            assert!(
                seen["allowed"].to_string().contains("hi"),
                "{mode} {route}: {seen}"
            );
        }
    }
    assert_eq!(
        sse.of("secret") + json.of("add"),
        0,
        "refused calls never ran"
    );
    assert_eq!(
        sse.of("echo") + json.of("echo"),
        4,
        "allowed calls ran once per era and route"
    );
    gateway.kill().await.unwrap();
}
