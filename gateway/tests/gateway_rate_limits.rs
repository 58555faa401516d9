//! Rate limits through the `mcp-gateway` binary: per-tool and per-caller limits counted in process, `429` with
//! `Retry-After` and a JSON-RPC error, refused calls that never reach the upstream (it counts what it sees),
//! `/metrics` and the access line; then with Redis (`scripts/with-redis.sh`): two gateway processes sharing one
//! limit, and Redis stopped mid-run with `fail_open` and `fail_closed`, as the start-up line and `/readyz` say.
//!
//! Every limit here is a few requests per minute with a burst of as many, so one cell comes back only after
//! many seconds: a loop of a dozen requests on loopback sees the burst and nothing more. Where two processes
//! share a limit the tolerance is stated (one cell that may come back while the loop runs).

mod gateway_support;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use gateway_support::{answer, process::GatewayProcess, send, temp_file, Answer, Recorder};

/// An upstream that answers every request with an empty JSON-RPC result, and records it.
async fn upstream() -> Recorder {
    Recorder::start(|_| {
        answer(
            StatusCode::OK,
            &[],
            r#"{"jsonrpc":"2.0","id":3,"result":{"content":[]}}"#,
        )
    })
    .await
}

/// A key no other test (nor an earlier run against the same Redis) uses.
fn unique_key(name: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "sk-limits-{name}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn call(tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    )
}

/// POSTs `body` to `/mcp/{route}` of `base` as `key`.
async fn post(base: &str, route: &str, key: &str, body: &str) -> Answer {
    post_as(base, route, key, body, "2025-11-25").await
}

/// [`post`] for protocol revision `version` (batches need 2025-03-26).
async fn post_as(base: &str, route: &str, key: &str, body: &str, version: &str) -> Answer {
    send(
        Method::POST,
        &format!("{base}/mcp/{route}"),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", version),
            ("x-litellm-api-key", key),
        ],
        Bytes::from(body.to_owned()),
    )
    .await
}

async fn get(url: &str) -> Answer {
    send(Method::GET, url, &[], Bytes::new()).await
}

/// Starts the gateway binary with the config file `yaml` and the keys.
async fn start(yaml: &str, keys: &[&str]) -> GatewayProcess {
    let config = temp_file("config.yaml", yaml);
    let mut args = vec![
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--config".to_owned(),
        config.to_str().unwrap().to_owned(),
    ];
    for key in keys {
        args.extend(["--key".to_owned(), (*key).to_owned()]);
    }
    GatewayProcess::start(&args, &[]).await
}

/// Waits (boundedly) until the gateway's standard error holds `text`, and says whether it did.
async fn logged(gateway: &GatewayProcess, text: &str) -> bool {
    for _ in 0..100 {
        if gateway.stderr().contains(text) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// How many POSTs the upstream saw.
fn posts(upstream: &Recorder) -> usize {
    upstream
        .seen()
        .iter()
        .filter(|s| s.method == Method::POST)
        .count()
}

/// The value of the `/metrics` sample whose line starts with `name{` and holds every label of `labels`.
async fn metric(base: &str, name: &str, labels: &[&str]) -> Option<u64> {
    let text = String::from_utf8(get(&format!("{base}/metrics")).await.body.to_vec()).unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_tool_limit_refuses_beyond_its_burst_and_the_upstream_never_sees_it() {
    let upstream = upstream().await;
    let (alice, bob) = (unique_key("alice"), unique_key("bob"));
    let gateway = start(
        &format!(
            "mcp_servers:\n  a:\n    url: {}\n    tool_rate_limits:\n      echo: {{rpm: 2}}\n",
            upstream.url("/mcp")
        ),
        &[&alice, &bob],
    )
    .await;
    let base = gateway.url();
    assert!(
        logged(&gateway, "rate limits: counted in process").await,
        "{}",
        gateway.stderr()
    );

    let mut refused = Vec::new();
    for _ in 0..5 {
        let answer = post(&base, "a", &alice, &call("echo")).await;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => refused.push(answer),
            other => panic!("unexpected {other}: {:?}", answer.body),
        }
    }
    assert_eq!(refused.len(), 3, "a burst of 2 admits 2 of 5");
    for answer in &refused {
        let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
        // One cell every 30 s.
        assert!((1..=30).contains(&retry), "Retry-After: {retry}");
        let error = answer.json();
        assert_eq!(error["id"], 3, "{error}");
        assert_eq!(error["error"]["code"], -32029, "{error}");
        assert_eq!(error["error"]["data"]["scope"], "tool", "{error}");
    }
    assert_eq!(posts(&upstream), 2, "the refused calls never reached it");

    // Another tool, and another caller of the same tool, have their own buckets.
    assert_eq!(
        post(&base, "a", &alice, &call("add")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        post(&base, "a", &bob, &call("echo")).await.status,
        StatusCode::OK
    );
    assert_eq!(posts(&upstream), 4);

    assert_eq!(
        metric(
            &base,
            "mcp_gateway_rate_limited",
            &[r#"upstream="a""#, r#"scope="tool""#]
        )
        .await,
        Some(3)
    );
    assert!(logged(&gateway, "mcp_name=add").await);
    let log = gateway.stderr();
    let refused_lines = log
        .lines()
        .filter(|l| l.contains("gateway::access") && l.contains("mcp_outcome=refused:rate_limit"))
        .count();
    assert_eq!(refused_lines, 3, "{log}");
    assert!(
        !log.contains(&alice) && !log.contains(&bob),
        "never a key in the log"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_caller_limit_spans_upstreams_and_spares_notifications() {
    let (a, b) = (upstream().await, upstream().await);
    let (alice, bob) = (unique_key("alice"), unique_key("bob"));
    let gateway = start(
        &format!(
            "mcp_servers:\n  a:\n    url: {}\n  b:\n    url: {}\n    rate_limit: {{rpm: 10, burst: 10}}\ngateway_settings:\n  rate_limits:\n    per_caller: {{rpm: 3}}\n",
            a.url("/mcp"),
            b.url("/mcp")
        ),
        &[&alice, &bob],
    )
    .await;
    let base = gateway.url();
    let mut statuses = Vec::new();
    for route in ["a", "b", "a", "b", "a"] {
        statuses.push(post(&base, route, &alice, &call("echo")).await.status);
    }
    let admitted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(admitted, 3, "{statuses:?}");
    assert!(
        statuses[3..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(posts(&a) + posts(&b), 3);

    // A notification is never refused: refusing it would break the session rather than slow it.
    let note = post(
        &base,
        "a",
        &alice,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_ne!(note.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(posts(&a) + posts(&b), 4);

    // A batch is refused as a batch: one error per request in it.
    let batch = post_as(
        &base,
        "b",
        &alice,
        &format!(
            "[{},{}]",
            call("echo"),
            call("add").replace("\"id\":3", "\"id\":4")
        ),
        "2025-03-26",
    )
    .await;
    assert_eq!(batch.status, StatusCode::TOO_MANY_REQUESTS);
    let errors = batch.json();
    assert_eq!(errors.as_array().map(Vec::len), Some(2), "{errors}");
    assert_eq!(errors[1]["id"], 4, "{errors}");

    assert_eq!(
        post(&base, "b", &bob, &call("echo")).await.status,
        StatusCode::OK
    );
    // Refused: the fourth call (on b), the fifth (on a) and the batch (on b).
    for (route, count) in [("a", 1), ("b", 2)] {
        let upstream = format!("upstream=\"{route}\"");
        assert_eq!(
            metric(
                &base,
                "mcp_gateway_rate_limited",
                &[&upstream, r#"scope="caller""#]
            )
            .await,
            Some(count),
            "{route}"
        );
    }
    gateway.stop().await;
}

#[tokio::test]
async fn a_caller_known_only_by_its_token_is_limited_per_token() {
    let upstream = upstream().await;
    let gateway = start(
        &format!(
            "mcp_servers:\n  open:\n    url: {}\n    oauth_passthrough: true\ngateway_settings:\n  rate_limits:\n    per_caller: {{rpm: 2}}\n",
            upstream.url("/mcp")
        ),
        &[&unique_key("unused")],
    )
    .await;
    let url = format!("{}/mcp/open", gateway.url());
    let as_token = |token: &'static str| {
        let url = url.clone();
        async move {
            let bearer = format!("Bearer {token}");
            send(
                Method::POST,
                &url,
                &[
                    ("content-type", "application/json"),
                    ("accept", "application/json, text/event-stream"),
                    ("mcp-protocol-version", "2025-11-25"),
                    ("authorization", &bearer),
                ],
                Bytes::from(call("echo")),
            )
            .await
            .status
        }
    };
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(as_token("token-of-one-client").await);
    }
    assert_eq!(
        first,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Another token is another caller: its own limit, untouched by the first.
    assert_eq!(as_token("token-of-another-client").await, StatusCode::OK);
    assert_eq!(posts(&upstream), 3);
    // Counted under the token's digest, never the token.
    assert!(!gateway.stderr().contains("token-of-one-client"));
    gateway.stop().await;
}

/// The test Redis's URL (`scripts/with-redis.sh`), or `None` after saying why the test is skipped.
fn redis_url() -> Option<String> {
    let url = std::env::var("TOWER_MCP_AUTH_TEST_REDIS").ok();
    if url.is_none() {
        eprintln!("skipped: TOWER_MCP_AUTH_TEST_REDIS is unset (run under scripts/with-redis.sh)");
    }
    url
}

/// Two gateway processes with one Redis admit together what one limit allows: 10 requests a minute with a burst
/// of 10, 16 requests alternating between them. Tolerance: one cell comes back every 6 s, so a loop that took
/// longer than that could see an eleventh admitted; never 20 (each replica its own 10).
#[tokio::test]
async fn two_replicas_share_one_limit_in_redis() {
    let Some(redis) = redis_url() else { return };
    let upstream = upstream().await;
    let key = unique_key("shared");
    let yaml = format!(
        "mcp_servers:\n  a:\n    url: {}\n    rate_limit: {{rpm: 10, burst: 10}}\ngeneral_settings:\n  redis_url: {redis}\n",
        upstream.url("/mcp")
    );
    let replicas = [start(&yaml, &[&key]).await, start(&yaml, &[&key]).await];
    for replica in &replicas {
        assert!(
            logged(replica, "rate limits: counted in Redis").await,
            "{}",
            replica.stderr()
        );
    }
    let mut admitted = 0;
    for i in 0..16 {
        let answer = post(&replicas[i % 2].url(), "a", &key, &call("echo")).await;
        match answer.status {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(answer.json()["error"]["data"]["scope"], "upstream");
                assert!(answer.header("retry-after").is_some());
            }
            other => panic!("unexpected {other}: {:?}", answer.body),
        }
    }
    assert!((10..=11).contains(&admitted), "admitted {admitted} of 16");
    assert_eq!(posts(&upstream), admitted, "refused calls never reach it");
    let ready = get(&format!("{}/readyz", replicas[0].url())).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["rate_limits"]["redis"], "reachable");
    for replica in replicas {
        replica.stop().await;
    }
}

/// A Redis server of the test's own on a free port, which the test stops.
async fn own_redis() -> Option<(tokio::process::Child, String)> {
    let Ok(binary) = std::env::var("TOWER_MCP_AUTH_TEST_REDIS_SERVER") else {
        eprintln!(
            "skipped: TOWER_MCP_AUTH_TEST_REDIS_SERVER is unset (run under scripts/with-redis.sh)"
        );
        return None;
    };
    let port = gateway_support::process::free_port();
    let dir = temp_file("redis.keep", "").parent().unwrap().to_owned();
    let child = tokio::process::Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some((child, format!("redis://127.0.0.1:{port}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server does not listen on {port}");
}

/// Redis stopped mid-run: a `fail_closed` gateway answers 503 for limited requests (the upstream sees none) and
/// `/readyz` says 503; a `fail_open` one counts in process (its limit still holds there) and stays ready. Both
/// say which they do at start-up, and `/readyz` shows Redis unreachable.
#[tokio::test]
async fn redis_stopped_mid_run_fails_open_or_closed_as_configured() {
    let Some((mut redis, url)) = own_redis().await else {
        return;
    };
    let (open_upstream, closed_upstream) = (upstream().await, upstream().await);
    let (open_key, closed_key) = (unique_key("open"), unique_key("closed"));
    let yaml = |upstream: &Recorder, mode: &str| {
        format!(
            "mcp_servers:\n  a:\n    url: {}\n    tool_rate_limits:\n      echo: {{rpm: 2}}\ngeneral_settings:\n  redis_url: {url}\ngateway_settings:\n  rate_limits:\n    on_redis_error: {mode}\n",
            upstream.url("/mcp")
        )
    };
    let open = start(&yaml(&open_upstream, "fail_open"), &[&open_key]).await;
    let closed = start(&yaml(&closed_upstream, "fail_closed"), &[&closed_key]).await;
    assert!(
        logged(&open, "when Redis cannot be reached: fail_open").await,
        "{}",
        open.stderr()
    );
    assert!(
        logged(&closed, "when Redis cannot be reached: fail_closed").await,
        "{}",
        closed.stderr()
    );
    for gateway in [&open, &closed] {
        let ready = get(&format!("{}/readyz", gateway.url())).await;
        assert_eq!(ready.status, StatusCode::OK);
        assert_eq!(ready.json()["rate_limits"]["redis"], "reachable");
    }
    assert_eq!(
        post(&open.url(), "a", &open_key, &call("echo"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post(&closed.url(), "a", &closed_key, &call("echo"))
            .await
            .status,
        StatusCode::OK
    );

    redis.kill().await.unwrap();

    let refused = post(&closed.url(), "a", &closed_key, &call("echo")).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        posts(&closed_upstream),
        1,
        "nothing relayed while Redis is away"
    );
    // A call under no limit does not need Redis.
    assert_eq!(
        post(&closed.url(), "a", &closed_key, &call("add"))
            .await
            .status,
        StatusCode::OK
    );
    let ready = get(&format!("{}/readyz", closed.url())).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["rate_limits"]["redis"], "unreachable");
    assert_eq!(ready.json()["rate_limits"]["on_redis_error"], "fail_closed");

    // In process the bucket starts full (2), and then holds.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            post(&open.url(), "a", &open_key, &call("echo"))
                .await
                .status,
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(posts(&open_upstream), 3);
    let ready = get(&format!("{}/readyz", open.url())).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["rate_limits"]["redis"], "unreachable");
    assert_eq!(ready.json()["rate_limits"]["on_redis_error"], "fail_open");
    assert_eq!(
        metric(
            &closed.url(),
            "mcp_gateway_rate_limited",
            &[r#"scope="unavailable""#]
        )
        .await,
        Some(1)
    );
    open.stop().await;
    closed.stop().await;
}
