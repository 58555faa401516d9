//! Sealed MCP sessions across gateways that share nothing but the session secret: any gateway with the secret
//! continues a session, during a rotation too; another caller, another upstream, an altered id, the upstream's
//! raw id, or a gateway with another secret gets 404 and the upstream never sees the request; `DELETE` reaches
//! the upstream with its own id; a malformed `Mcp-Session-Id` is 400. Real HTTP servers on loopback; the
//! binary behind nginx with the official SDK is `gateway_replicas.rs`.

use mcp_gateway as app;
mod gateway_support;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use gateway_support::*;

const SECRET: &str = "a-session-secret-of-at-least-32-bytes-0001";
const OTHER_SECRET: &str = "a-session-secret-of-at-least-32-bytes-0002";
const KEY_A: &str = "sk-session-key-a";
const KEY_B: &str = "sk-session-key-b";
const UPSTREAM_SESSION: &str = "upstream-session-1";
const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#;

/// An upstream that opens `upstream-session-1` on a request without a session and answers 200 to the rest.
async fn upstream() -> Recorder {
    Recorder::start(|parts| {
        if parts.headers.contains_key("mcp-session-id") {
            answer(StatusCode::OK, &[], "{}")
        } else {
            answer(
                StatusCode::OK,
                &[("mcp-session-id", UPSTREAM_SESSION)],
                "{}",
            )
        }
    })
    .await
}

/// A gateway with keys A and B in front of `upstream` (as `s` and `t`), sealing with `current` and accepting
/// `previous` too.
async fn replica(upstream: &Recorder, current: Option<&str>, previous: Option<&str>) -> String {
    let addr = gateway_with(
        &args(&[
            ("--key", KEY_A),
            ("--key", KEY_B),
            ("--upstream", &format!("s={}", upstream.url("/mcp"))),
            ("--upstream", &format!("t={}", upstream.url("/mcp"))),
        ]),
        |options| {
            let secret = |s: &str| app::SessionSecret::new(s, "test").unwrap();
            options.session_secret = current.map(secret);
            options.previous_session_secret = previous.map(secret);
        },
    )
    .await;
    format!("http://{addr}")
}

/// Opens a session on `s` at `gateway` with `key`; returns the id the client was given.
async fn open(gateway: &str, key: &str) -> String {
    let opened = post_init(&format!("{gateway}/mcp/s"), &[("x-litellm-api-key", key)]).await;
    assert_eq!(opened.status, StatusCode::OK);
    let session = opened.header("mcp-session-id").unwrap().to_owned();
    assert!(
        !session.contains(UPSTREAM_SESSION),
        "the upstream's id reached the client"
    );
    session
}

/// A `tools/list` on `route` at `gateway` with `key` and the session headers given.
async fn list(gateway: &str, route: &str, key: &str, sessions: &[&str]) -> Answer {
    let mut headers = vec![
        ("x-litellm-api-key", key),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    headers.extend(sessions.iter().map(|s| ("mcp-session-id", *s)));
    send(
        Method::POST,
        &format!("{gateway}/mcp/{route}"),
        &headers,
        Bytes::from_static(LIST.as_bytes()),
    )
    .await
}

/// The session ids the upstream received, in order.
fn received(upstream: &Recorder) -> Vec<Option<String>> {
    upstream
        .seen()
        .iter()
        .map(|seen| {
            seen.headers
                .get("mcp-session-id")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn any_gateway_with_the_secret_continues_a_session_and_the_upstream_gets_its_own_id() {
    let upstream = upstream().await;
    let a = replica(&upstream, Some(SECRET), None).await;
    let b = replica(&upstream, Some(SECRET), None).await;
    let session = open(&a, KEY_A).await;
    for gateway in [&a, &b, &a] {
        assert_eq!(
            list(gateway, "s", KEY_A, &[&session]).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        received(&upstream),
        [None, Some(UPSTREAM_SESSION.to_owned())]
            .into_iter()
            .chain(std::iter::repeat_n(Some(UPSTREAM_SESSION.to_owned()), 2))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn refused_ids_are_404_and_never_reach_the_upstream() {
    let upstream = upstream().await;
    let a = replica(&upstream, Some(SECRET), None).await;
    let other_secret = replica(&upstream, Some(OTHER_SECRET), None).await;
    let session = open(&a, KEY_A).await;
    let before = upstream.seen().len();

    // Another caller; the same caller on another upstream; a gateway with another secret.
    let refused = [
        ("another caller", list(&a, "s", KEY_B, &[&session]).await),
        ("another upstream", list(&a, "t", KEY_A, &[&session]).await),
        (
            "another secret",
            list(&other_secret, "s", KEY_A, &[&session]).await,
        ),
        // The upstream's raw id, which a client may have learnt elsewhere.
        (
            "the raw upstream id",
            list(&a, "s", KEY_A, &[UPSTREAM_SESSION]).await,
        ),
        ("a made-up id", list(&a, "s", KEY_A, &["made-up"]).await),
    ];
    for (case, answer) in refused {
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{case}");
        assert_eq!(answer.json()["error"], "not_found", "{case}");
    }
    // Every altered character of the sealed id.
    for i in 0..session.len() {
        let mut altered = session.clone().into_bytes();
        altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        let answer = list(&a, "s", KEY_A, &[&altered]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "character {i}");
    }
    assert_eq!(
        upstream.seen().len(),
        before,
        "a refused request reached the upstream"
    );
}

#[tokio::test]
async fn a_rotation_accepts_the_previous_secret_and_seals_with_the_new() {
    let upstream = upstream().await;
    let old = replica(&upstream, Some(SECRET), None).await;
    let rotating = replica(&upstream, Some(OTHER_SECRET), Some(SECRET)).await;
    let rotated = replica(&upstream, Some(OTHER_SECRET), None).await;

    let before_rotation = open(&old, KEY_A).await;
    assert_eq!(
        list(&rotating, "s", KEY_A, &[&before_rotation])
            .await
            .status,
        StatusCode::OK
    );
    // Once the previous secret is dropped, its sessions end.
    assert_eq!(
        list(&rotated, "s", KEY_A, &[&before_rotation]).await.status,
        StatusCode::NOT_FOUND
    );
    let during_rotation = open(&rotating, KEY_A).await;
    assert_eq!(
        list(&rotated, "s", KEY_A, &[&during_rotation]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn without_a_secret_each_gateway_knows_only_its_own_sessions() {
    let upstream = upstream().await;
    let a = replica(&upstream, None, None).await;
    let b = replica(&upstream, None, None).await;
    let session = open(&a, KEY_A).await;
    assert_eq!(
        list(&a, "s", KEY_A, &[&session]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        list(&b, "s", KEY_A, &[&session]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn delete_reaches_the_upstream_with_its_own_id() {
    let upstream = upstream().await;
    let a = replica(&upstream, Some(SECRET), None).await;
    let b = replica(&upstream, Some(SECRET), None).await;
    let session = open(&a, KEY_A).await;
    let deleted = send(
        Method::DELETE,
        &format!("{b}/mcp/s"),
        &[("x-litellm-api-key", KEY_A), ("mcp-session-id", &session)],
        Bytes::new(),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let last = upstream.seen().pop().unwrap();
    assert_eq!(last.method, Method::DELETE);
    assert_eq!(last.headers["mcp-session-id"], UPSTREAM_SESSION);
    // Another caller cannot end it.
    let before = upstream.seen().len();
    let refused = send(
        Method::DELETE,
        &format!("{a}/mcp/s"),
        &[("x-litellm-api-key", KEY_B), ("mcp-session-id", &session)],
        Bytes::new(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(upstream.seen().len(), before);
}

#[tokio::test]
async fn several_or_non_ascii_session_headers_are_400_and_never_reach_the_upstream() {
    let upstream = upstream().await;
    let a = replica(&upstream, Some(SECRET), None).await;
    let session = open(&a, KEY_A).await;
    let before = upstream.seen().len();
    let twice = list(&a, "s", KEY_A, &[&session, &session]).await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);
    assert_eq!(twice.json()["error"], "invalid_request");
    let other = list(&a, "s", KEY_A, &[&session, "made-up"]).await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    for bad in ["with space", "tab\there", " "] {
        let answer = list(&a, "s", KEY_A, &[bad]).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    // obs-text (bytes above 0x7e) cannot be written through `&str` headers here: a raw request does it.
    let answer = raw_post(&a, "s", b"caf\xe9").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(upstream.seen().len(), before);
}

/// A POST whose session header holds `session` as raw bytes; returns the response head.
async fn raw_post(gateway: &str, route: &str, session: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = gateway.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST /mcp/{route} HTTP/1.1\r\nhost: {addr}\r\nx-litellm-api-key: {KEY_A}\r\n\
         content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
         content-length: {}\r\nconnection: close\r\nmcp-session-id: ",
        LIST.len()
    )
    .into_bytes();
    request.extend_from_slice(session);
    request.extend_from_slice(b"\r\n\r\n");
    request.extend_from_slice(LIST.as_bytes());
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn the_secret_comes_from_the_environment_or_the_config_file() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let cli = |args: &[&str]| {
        <app::cli::Cli as clap::Parser>::try_parse_from(
            std::iter::once("mcp-gateway").chain(args.iter().copied()),
        )
        .unwrap()
    };
    let secret = |s: &str| Some(app::SessionSecret::new(s, "test").unwrap());
    let options = app::Options::from_cli(
        cli(&["--upstream", "a=http://127.0.0.1:1/mcp"]),
        None,
        &env(&[
            ("MCP_GATEWAY_SESSION_SECRET", SECRET),
            ("MCP_GATEWAY_SESSION_SECRET_PREVIOUS", OTHER_SECRET),
        ]),
    )
    .unwrap();
    assert_eq!(options.session_secret, secret(SECRET));
    assert_eq!(options.previous_session_secret, secret(OTHER_SECRET));
    assert!(!format!("{options:?}").contains(SECRET));

    let file = temp_file(
        "config.yaml",
        "mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\ngeneral_settings:\n  \
         session_secret: os.environ/SESSION_SECRET_FOR_TEST\n",
    );
    let path = file.to_str().unwrap();
    let from_file = app::Options::from_cli(
        cli(&["--config", path]),
        None,
        &env(&[("SESSION_SECRET_FOR_TEST", SECRET)]),
    )
    .unwrap();
    assert_eq!(from_file.session_secret, secret(SECRET));
    assert!(from_file.warnings.is_empty(), "{:?}", from_file.warnings);
    // The environment wins over the file.
    let both = app::Options::from_cli(
        cli(&["--config", path]),
        None,
        &env(&[
            ("SESSION_SECRET_FOR_TEST", SECRET),
            ("MCP_GATEWAY_SESSION_SECRET", OTHER_SECRET),
        ]),
    )
    .unwrap();
    assert_eq!(both.session_secret, secret(OTHER_SECRET));
    // A short secret is refused, naming where it came from and never repeating it.
    let error = app::Options::from_cli(
        cli(&["--upstream", "a=http://127.0.0.1:1/mcp"]),
        None,
        &env(&[("MCP_GATEWAY_SESSION_SECRET", "short-secret-value")]),
    )
    .unwrap_err();
    assert!(
        error.starts_with("MCP_GATEWAY_SESSION_SECRET") && !error.contains("short-secret-value"),
        "{error}"
    );
}

/// The binary says at start-up when it seals with a random secret of its own, and not when it has one.
#[tokio::test]
async fn the_binary_logs_a_random_secret_at_start_up() {
    use gateway_support::process::GatewayProcess;
    let upstream = upstream().await;
    let args = args(&[
        ("--listen", "127.0.0.1:0"),
        ("--key", KEY_A),
        ("--upstream", &format!("s={}", upstream.url("/mcp"))),
    ]);
    let without = GatewayProcess::start(&args, &[]).await;
    let with = GatewayProcess::start(&args, &[("MCP_GATEWAY_SESSION_SECRET", SECRET)]).await;
    // The line is written before `listening on`, so it is there once the process listens.
    let logged = |p: &GatewayProcess| p.stderr().contains("no session secret");
    for _ in 0..50 {
        if logged(&without) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(logged(&without), "{}", without.stderr());
    assert!(!logged(&with), "{}", with.stderr());
    assert!(!with.stderr().contains(SECRET));
}
