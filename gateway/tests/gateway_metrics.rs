//! The gateway example's `GET /metrics` after real MCP traffic through it: the decisions the layer made and
//! the requests relayed to each upstream are there, and no credential, nor its fingerprint or digest, is.

use mcp_gateway as app;

use std::net::SocketAddr;

use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tower_mcp_auth::Fingerprint;

const KEY: &str = "sk-metrics-test-key-7c2e";
const UPSTREAM_TOKEN: &str = "upstream-oauth-token-metrics-91ab";
const WRONG_KEY: &str = "sk-never-issued-metrics-5d3f";
const MADE_UP: &str = "made-up-bearer-metrics-0e6a";
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"0"}}}"#;

async fn gateway() -> (SocketAddr, app::demo::DemoUpstream) {
    let upstream = app::demo::start(UPSTREAM_TOKEN).await.unwrap();
    let args = [
        "--key".to_owned(),
        KEY.to_owned(),
        "--upstream".to_owned(),
        format!("atlassian={}", upstream.url()),
        "--passthrough".to_owned(),
        "atlassian".to_owned(),
    ];
    let options = app::Options::parse(args, None).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let prepared = app::prepare(options, addr).await.unwrap();
    tokio::spawn(app::serve(listener, prepared.app, std::future::pending()));
    (addr, upstream)
}

async fn post(client: &reqwest::Client, url: &str, headers: &[(&str, String)]) -> u16 {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INIT);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// The value of the first sample of `metric` whose labels include all of `labels`.
fn sample(scrape: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.split(['{', ' '])
                .next()
                .is_some_and(|name| name == metric)
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_show_the_decisions_and_no_credential() {
    let (gateway, _upstream) = gateway().await;
    let client = reqwest::Client::new();
    let mcp = format!("http://{gateway}/mcp/atlassian");
    let bearer = |token: &str| ("authorization", format!("Bearer {token}"));

    // Authenticated by key, forwarding the client's own token; passthrough alone; a made-up token the
    // upstream refuses; an unknown key; a made-up bearer where no passthrough is allowed.
    assert_eq!(
        post(
            &client,
            &mcp,
            &[
                ("x-litellm-api-key", KEY.to_owned()),
                bearer(UPSTREAM_TOKEN)
            ]
        )
        .await,
        200
    );
    for _ in 0..2 {
        assert_eq!(post(&client, &mcp, &[bearer(UPSTREAM_TOKEN)]).await, 200);
    }
    assert_eq!(post(&client, &mcp, &[bearer(MADE_UP)]).await, 401);
    assert_eq!(
        post(
            &client,
            &mcp,
            &[("x-litellm-api-key", WRONG_KEY.to_owned())]
        )
        .await,
        401
    );
    let elsewhere = format!("http://{gateway}/mcp/other");
    assert_eq!(post(&client, &elsewhere, &[bearer(MADE_UP)]).await, 401);

    let response = client
        .get(format!("http://{gateway}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let scrape = response.text().await.unwrap();

    // The metrics recorder is process-wide: other tests in this binary could only add to these counts.
    let at_least = |labels: &[&str], n: f64| {
        let value = sample(&scrape, "mcp_auth_decisions", labels)
            .unwrap_or_else(|| panic!("no decisions sample with {labels:?} in:\n{scrape}"));
        assert!(value >= n, "{labels:?}: {value} < {n}");
    };
    at_least(
        &[r#"outcome="authenticated""#, r#"source="key_header""#],
        1.0,
    );
    at_least(&[r#"outcome="passthrough""#, r#"source="bearer""#], 3.0);
    at_least(&[r#"outcome="rejected""#, r#"source="key_header""#], 1.0);
    at_least(&[r#"outcome="rejected""#, r#"source="bearer""#], 1.0);
    let relayed = |status: &str| {
        sample(
            &scrape,
            "http_client_request_duration_count",
            &[
                r#"upstream="atlassian""#,
                &format!(r#"http_response_status_code="{status}""#),
            ],
        )
        .unwrap_or_else(|| panic!("no upstream sample for {status} in:\n{scrape}"))
    };
    assert!(relayed("200") >= 3.0);
    assert!(relayed("401") >= 1.0);

    for secret in [KEY, UPSTREAM_TOKEN, WRONG_KEY, MADE_UP] {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        for trace in [
            secret.to_owned(),
            Fingerprint::of(secret).to_string(),
            hex[..16].to_owned(),
        ] {
            assert!(
                !scrape.contains(&trace),
                "the scrape holds {trace:?}:\n{scrape}"
            );
        }
    }
}
