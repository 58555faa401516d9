//! The gateway over TLS, both ways: `https://` upstreams whose certificates come from a CA generated here and
//! trusted through `SSL_CERT_FILE` (set once, in this binary only), an untrusted CA as a 502, and the gateway
//! serving HTTPS itself with `--tls-cert`/`--tls-key`.

use mcp_gateway as app;
mod gateway_support;
use testkit::tls as tls_support;

use std::{sync::OnceLock, time::Duration};

use axum::http::Method;
use bytes::Bytes;
use gateway_support::*;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rmcp::{model::ClientConfig, transport::StreamableHttpClientTransport, ServiceExt};
use tls_support::TestCa;

const TOKEN: &str = "upstream-oauth-token-tls";

/// The CA every test of this binary trusts through `SSL_CERT_FILE`: set before any gateway is built.
fn trusted_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = TestCa::new("gateway test CA");
        let path = temp_file("ca.pem", &ca.cert_pem());
        std::env::set_var("SSL_CERT_FILE", path);
        ca
    })
}

/// An acceptor presenting a fresh leaf of `ca` for `localhost` and `127.0.0.1`, read from PEM files as the
/// gateway's `--tls-cert`/`--tls-key` are; returns the file paths too.
fn leaf_files(ca: &TestCa) -> (std::path::PathBuf, std::path::PathBuf) {
    let leaf = ca.leaf();
    (
        temp_file("cert.pem", &leaf.cert_pem),
        temp_file("key.pem", &leaf.key_pem),
    )
}

async fn https_demo(ca: &TestCa) -> app::demo::DemoUpstream {
    let (cert, key) = leaf_files(ca);
    let acceptor = app::tls::acceptor(&cert, &key).unwrap();
    app::demo::start_tls(TOKEN, acceptor).await.unwrap()
}

async fn tool_names(url: String) -> Result<Vec<String>, String> {
    let mut headers = std::collections::HashMap::new();
    headers.insert(
        axum::http::HeaderName::from_static("x-litellm-api-key"),
        axum::http::HeaderValue::from_static(KEY),
    );
    let config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url)
            .custom_headers(headers);
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

#[tokio::test]
async fn an_https_upstream_trusted_through_ssl_cert_file_lists_tools_and_serves_discovery() {
    let ca = trusted_ca();
    let upstream = https_demo(ca).await;
    assert!(upstream.url().starts_with("https://"));
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("secure={}", upstream.url())),
        ("--upstream-auth", &format!("secure=bearer_token:{TOKEN}")),
        ("--upstream", &format!("open={}", upstream.url())),
        ("--passthrough", "open"),
    ]))
    .await;
    assert_eq!(
        tool_names(format!("http://{gw}/mcp/secure")).await.unwrap(),
        ["add", "echo"]
    );

    let document = send(
        Method::GET,
        &format!("http://{gw}/.well-known/oauth-protected-resource/mcp/open"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(document.status, 200);
    assert_eq!(
        document.json()["authorization_servers"],
        serde_json::json!([app::demo::DEMO_AUTHORIZATION_SERVER])
    );
    assert_eq!(document.json()["resource"], format!("http://{gw}/mcp/open"));
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_a_502_tls_failure() {
    trusted_ca();
    let stranger = TestCa::new("untrusted CA");
    let upstream = https_demo(&stranger).await;
    let upstream_args = args(&[
        ("--key", KEY),
        ("--upstream", &format!("secure={}", upstream.url())),
        ("--upstream-auth", &format!("secure=bearer_token:{TOKEN}")),
        ("--upstream", &format!("open={}", upstream.url())),
        ("--passthrough", "open"),
    ]);
    let gw = gateway(&upstream_args).await;
    let answer = post_init(
        &format!("http://{gw}/mcp/secure"),
        &[("x-litellm-api-key", KEY)],
    )
    .await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.headers["content-type"], "application/json");
    let description = answer.json()["error_description"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(description.contains("TLS"), "{description}");
    assert!(!description.contains(TOKEN) && !description.contains(KEY));
    assert!(
        upstream.seen().is_empty(),
        "no request got through the handshake"
    );
    let metadata = send(
        Method::GET,
        &format!("http://{gw}/.well-known/oauth-protected-resource/mcp/open"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(metadata.status, 502);

    // The same CA named as an extra root (the option that mirrors SSL_CERT_FILE) makes it work.
    let bundle = temp_file("stranger.pem", &stranger.cert_pem());
    let trusting = gateway_with(&upstream_args, |options| options.extra_roots = Some(bundle)).await;
    assert_eq!(
        tool_names(format!("http://{trusting}/mcp/secure"))
            .await
            .unwrap(),
        ["add", "echo"]
    );
}

#[tokio::test]
async fn the_gateway_serves_https_with_tls_cert_and_tls_key() {
    let ca = trusted_ca();
    let upstream = https_demo(ca).await;
    let (cert, key) = leaf_files(ca);
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("secure={}", upstream.url())),
        ("--upstream-auth", &format!("secure=bearer_token:{TOKEN}")),
        ("--tls-cert", cert.to_str().unwrap()),
        ("--tls-key", key.to_str().unwrap()),
    ]))
    .await;
    let client = Client::builder(TokioExecutor::new())
        .build::<_, Full<Bytes>>(tower_mcp_auth::tls::https_connector().unwrap());
    let health = client
        .get(
            format!("https://127.0.0.1:{}/healthz", gw.port())
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let request = axum::http::Request::post(format!("https://localhost:{}/mcp/secure", gw.port()))
        .header("x-litellm-api-key", KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from_static(INIT.as_bytes())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(1), response.into_body().collect())
        .await
        .map(|b| b.unwrap().to_bytes())
        .unwrap_or_default();
    assert!(String::from_utf8_lossy(&body).contains("serverInfo"));

    // Plain HTTP on the TLS port gets nowhere.
    let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        plain.get(
            format!("http://127.0.0.1:{}/healthz", gw.port())
                .parse()
                .unwrap(),
        ),
    )
    .await;
    assert!(!matches!(refused, Ok(Ok(ref r)) if r.status() == 200));
}

/// The example binary's ready line names the scheme it serves.
#[tokio::test]
async fn the_binary_announces_https() {
    let ca = trusted_ca();
    let (cert, key) = leaf_files(ca);
    let binary = env!("CARGO_BIN_EXE_mcp-gateway");
    let mut child = tokio::process::Command::new(binary)
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base = first
        .strip_prefix("listening on ")
        .expect(&first)
        .to_owned();
    assert!(base.starts_with("https://127.0.0.1:"), "{first}");
    let client = Client::builder(TokioExecutor::new())
        .build::<_, Full<Bytes>>(tower_mcp_auth::tls::https_connector().unwrap());
    let health = client
        .get(format!("{base}/healthz").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    child.kill().await.unwrap();
}
