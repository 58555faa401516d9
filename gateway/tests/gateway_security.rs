//! The gateway's request hygiene: `Origin` and `Host` (DNS rebinding), CORS, confined upstream paths and
//! queries, redirects, cookies, relayed challenges, discovery against real-world metadata layouts, the
//! operations endpoints and the start-up checks.

use mcp_gateway as app;
mod gateway_support;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use gateway_support::*;

const TOKEN: &str = "upstream-oauth-token-77";

/// A gateway with `open` (passthrough) and `keyed` (key only), both in front of `upstream`'s `/mcp`.
async fn two_routes(upstream: &Recorder, extra: &[(&str, &str)]) -> std::net::SocketAddr {
    let mut pairs = vec![
        ("--key", KEY),
        ("--upstream", "placeholder"),
        ("--passthrough", "open"),
        ("--upstream", "placeholder"),
        (
            "--upstream-auth",
            "keyed=bearer_token:gateway-own-credential",
        ),
    ];
    let open = format!("open={}", upstream.url("/mcp"));
    let keyed = format!("keyed={}", upstream.url("/mcp?tenant=acme"));
    pairs[1].1 = &open;
    pairs[3].1 = &keyed;
    pairs.extend_from_slice(extra);
    gateway(&args(&pairs)).await
}

fn ok_upstream() -> impl Fn(&axum::http::request::Parts) -> axum::response::Response + Clone {
    |_| {
        answer(
            StatusCode::OK,
            &[("set-cookie", "upstream-session=1")],
            r#"{"ok":true}"#,
        )
    }
}

#[tokio::test]
async fn a_foreign_origin_is_403_before_authentication_and_the_upstream_is_never_contacted() {
    let upstream = Recorder::start(ok_upstream()).await;
    let gw = two_routes(&upstream, &[("--allow-origin", "https://app.example")]).await;
    let url = format!("http://{gw}/mcp/keyed");
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        let answer = post_init(&url, &[("x-litellm-api-key", KEY), ("origin", origin)]).await;
        assert_eq!(answer.status, 403, "{origin}");
        assert_eq!(answer.json()["error"], "forbidden_origin");
    }
    assert!(upstream.seen().is_empty());

    // The public URL's origin and --allow-origin are allowed; so is a request without Origin.
    for origin in [format!("http://{gw}"), "https://app.example".to_owned()] {
        let answer = post_init(&url, &[("x-litellm-api-key", KEY), ("origin", &origin)]).await;
        assert_eq!(answer.status, 200, "{origin}");
        assert_eq!(
            answer.header("access-control-allow-origin"),
            Some(origin.as_str())
        );
        let exposed = answer
            .header("access-control-expose-headers")
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            exposed.contains("www-authenticate") && exposed.contains("mcp-session-id"),
            "{exposed}"
        );
    }
    // Without Origin there are no CORS answers, but the response still varies on Origin, so that no cache
    // serves it to a browser's cross-origin request.
    let plain = post_init(&url, &[("x-litellm-api-key", KEY)]).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("access-control-allow-origin"), None);
    assert_eq!(plain.header("access-control-expose-headers"), None);
    let vary = plain
        .header("vary")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(vary.split(',').any(|v| v.trim() == "origin"), "{vary:?}");
    assert_eq!(upstream.seen().len(), 3);
}

#[tokio::test]
async fn preflight_is_answered_before_authentication() {
    let upstream = Recorder::start(ok_upstream()).await;
    let gw = two_routes(&upstream, &[("--allow-origin", "https://app.example")]).await;
    let preflight = send(
        Method::OPTIONS,
        &format!("http://{gw}/mcp/open"),
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type, mcp-session-id",
            ),
        ],
        Bytes::new(),
    )
    .await;
    assert!(preflight.status.is_success(), "{}", preflight.status);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let allowed = preflight
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("mcp-session-id"),
        "{allowed}"
    );
    assert!(upstream.seen().is_empty());
    // The metadata document is readable from the browser too.
    let hostile = send(
        Method::OPTIONS,
        &format!("http://{gw}/mcp/open"),
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ],
        Bytes::new(),
    )
    .await;
    assert_eq!(hostile.status, 403);
}

#[tokio::test]
async fn a_foreign_host_on_a_loopback_listener_is_421() {
    let upstream = Recorder::start(ok_upstream()).await;
    let gw = two_routes(&upstream, &[]).await;
    let url = format!("http://{gw}/mcp/keyed");
    let rebound = post_init(
        &url,
        &[("x-litellm-api-key", KEY), ("host", "attacker.example")],
    )
    .await;
    assert_eq!(rebound.status, 421);
    assert!(upstream.seen().is_empty());
    for host in ["localhost:4000", "127.0.0.1", "[::1]:9"] {
        let answer = post_init(&url, &[("x-litellm-api-key", KEY), ("host", host)]).await;
        assert_eq!(answer.status, 200, "{host}");
    }
    // Health checks answer too, and without credentials.
    assert_eq!(
        send(
            Method::GET,
            &format!("http://{gw}/healthz"),
            &[],
            Bytes::new()
        )
        .await
        .status,
        200
    );
    assert_eq!(
        send(
            Method::GET,
            &format!("http://{gw}/readyz"),
            &[],
            Bytes::new()
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn non_canonical_paths_are_400_for_keys_and_tokens_alike_and_never_reach_the_upstream() {
    let upstream = Recorder::start(ok_upstream()).await;
    let gw = two_routes(&upstream, &[]).await;
    for path in [
        "/mcp/keyed/../x",
        "/mcp/keyed/./x",
        "/mcp/keyed/%2e%2e/x",
        "/mcp/keyed/%2E%2e",
        "/mcp/keyed/a%2fb",
        "/mcp/keyed/a%5Cb",
        "/mcp/keyed//x",
        // No name at all.
        "/mcp/",
        "/mcp//keyed",
    ] {
        let answer = post_init(&format!("http://{gw}{path}"), &[("x-litellm-api-key", KEY)]).await;
        assert_eq!(answer.status, 400, "{path}");
        assert_eq!(answer.json()["error"], "invalid_request", "{path}");
    }
    for path in ["/mcp/open/../keyed", "/mcp/open/%2e%2e/x"] {
        let bearer = format!("Bearer {TOKEN}");
        let answer = post_init(&format!("http://{gw}{path}"), &[("authorization", &bearer)]).await;
        assert_eq!(answer.status, 400, "{path}");
    }
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn the_upstream_query_is_kept_and_wins_and_subpaths_are_appended() {
    let upstream = Recorder::start(ok_upstream()).await;
    let gw = two_routes(&upstream, &[]).await;
    let answer = post_init(
        &format!("http://{gw}/mcp/keyed/sub/path?tenant=evil&x=1&%74enant=evil2"),
        &[("x-litellm-api-key", KEY)],
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = upstream.seen();
    assert_eq!(seen[0].uri.path(), "/mcp/sub/path");
    assert_eq!(seen[0].uri.query(), Some("tenant=acme&x=1"));
    assert_eq!(
        seen[0].headers["authorization"],
        "Bearer gateway-own-credential"
    );
}

#[tokio::test]
async fn cookies_stay_on_their_side() {
    let upstream = Recorder::start(ok_upstream()).await;
    let gw = two_routes(&upstream, &[]).await;
    let answer = post_init(
        &format!("http://{gw}/mcp/keyed"),
        &[
            ("x-litellm-api-key", KEY),
            ("cookie", "gateway-session=secret"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(answer.headers.get("set-cookie").is_none());
    assert!(upstream.seen()[0].headers.get("cookie").is_none());
}

#[tokio::test]
async fn the_upstream_sees_its_own_host_and_no_origin() {
    let upstream = Recorder::start(ok_upstream()).await;
    let gw = two_routes(&upstream, &[("--allow-origin", "https://app.example")]).await;
    let answer = post_init(
        &format!("http://{gw}/mcp/keyed"),
        &[
            ("x-litellm-api-key", KEY),
            ("origin", "https://app.example"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = &upstream.seen()[0].headers;
    assert!(seen.get("origin").is_none(), "{seen:?}");
    let own = upstream.url("/");
    let own = own.trim_start_matches("http://").trim_end_matches('/');
    assert_eq!(seen.get("host").and_then(|h| h.to_str().ok()), Some(own));
}

#[tokio::test]
async fn redirects_never_reveal_the_upstream() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let upstream = Recorder::start(move |parts| {
        counter.fetch_add(1, Ordering::Relaxed);
        let location = match parts.uri.path() {
            "/mcp/same" => "/mcp/moved?tenant=acme&y=2".to_owned(),
            "/mcp/absolute" => format!(
                "http://{}/mcp/abs-moved",
                parts.headers["host"].to_str().unwrap()
            ),
            "/mcp/outside" => "/elsewhere".to_owned(),
            _ => "https://other.example/mcp".to_owned(),
        };
        answer(
            StatusCode::TEMPORARY_REDIRECT,
            &[("location", &location)],
            "",
        )
    })
    .await;
    let gw = two_routes(&upstream, &[]).await;
    let key = [("x-litellm-api-key", KEY)];
    let same = post_init(&format!("http://{gw}/mcp/keyed/same"), &key).await;
    assert_eq!(same.status, 307);
    assert_eq!(
        same.header("location"),
        Some(format!("http://{gw}/mcp/keyed/moved?y=2").as_str())
    );
    let absolute = post_init(&format!("http://{gw}/mcp/keyed/absolute"), &key).await;
    assert_eq!(
        absolute.header("location"),
        Some(format!("http://{gw}/mcp/keyed/abs-moved").as_str())
    );
    for path in ["outside", "foreign"] {
        let answer = post_init(&format!("http://{gw}/mcp/keyed/{path}"), &key).await;
        assert_eq!(answer.status, 502, "{path}");
        assert!(answer.headers.get("location").is_none());
        assert!(!String::from_utf8_lossy(&answer.body).contains(&upstream.addr.to_string()));
    }
    assert_eq!(hits.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn upstream_challenges_are_rewritten_on_401_and_403_and_a_keyed_401_is_a_502() {
    let upstream = Recorder::start(|parts| {
        let metadata = format!(
            "http://{}/.well-known/oauth-protected-resource/mcp",
            parts.headers["host"].to_str().unwrap()
        );
        let step_up = format!(r#"Bearer error="insufficient_scope", scope="files:write", resource_metadata="{metadata}""#);
        let second = format!(r#"Bearer realm="up", resource_metadata="{metadata}""#);
        let status = if parts.uri.path().ends_with("/write") { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
        let mut response = answer(status, &[("www-authenticate", &step_up)], r#"{"error":"insufficient_scope"}"#);
        response.headers_mut().append("www-authenticate", second.parse().unwrap());
        response
    })
    .await;
    let gw = two_routes(&upstream, &[]).await;
    let metadata = format!("http://{gw}/.well-known/oauth-protected-resource/mcp/open");
    let bearer = format!("Bearer {TOKEN}");

    let step_up = post_init(
        &format!("http://{gw}/mcp/open/write"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(step_up.status, 403);
    let challenges: Vec<&str> = step_up
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        challenges,
        [
            format!(
                r#"Bearer error="insufficient_scope", scope="files:write", resource_metadata="{metadata}""#
            ),
            format!(r#"Bearer realm="up", resource_metadata="{metadata}""#),
        ]
    );
    let expired = post_init(
        &format!("http://{gw}/mcp/open"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(expired.status, 401);
    assert!(expired
        .headers
        .get_all("www-authenticate")
        .iter()
        .all(|v| !v.to_str().unwrap().contains(&upstream.addr.to_string())));

    // On a key-only route only the gateway's credential went up: the client cannot fix that by signing in.
    let keyed = post_init(
        &format!("http://{gw}/mcp/keyed"),
        &[("x-litellm-api-key", KEY)],
    )
    .await;
    assert_eq!(keyed.status, 502);
    assert_eq!(keyed.json()["error"], "upstream_auth_failed");
    assert!(keyed.headers.get("www-authenticate").is_none());
}

#[tokio::test]
async fn discovery_follows_the_upstream_challenge_and_falls_back_in_order() {
    // The metadata lives where only the 401 challenge says; the well-known URLs answer HTML.
    let upstream = Recorder::start(|parts| {
        let host = parts.headers["host"].to_str().unwrap().to_owned();
        match parts.uri.path() {
            "/mcp" => answer(
                StatusCode::UNAUTHORIZED,
                &[("www-authenticate", &format!(r#"Bearer resource_metadata="http://{host}/custom/prm""#))],
                "",
            ),
            "/custom/prm" => answer(
                StatusCode::OK,
                &[],
                r#"{"resource":"x","authorization_servers":["https://as.example"],"scopes_supported":["read","write"]}"#,
            ),
            _ => axum::response::Response::builder()
                .header("content-type", "text/html")
                .body(axum::body::Body::from("<html>not here</html>"))
                .unwrap(),
        }
    })
    .await;
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("open={}", upstream.url("/mcp"))),
        ("--passthrough", "open"),
    ]))
    .await;
    let document = send(
        Method::GET,
        &format!("http://{gw}/.well-known/oauth-protected-resource/mcp/open"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(document.status, 200);
    let json = document.json();
    assert_eq!(json["resource"], format!("http://{gw}/mcp/open"));
    assert_eq!(
        json["authorization_servers"],
        serde_json::json!(["https://as.example"])
    );
    // With exactly one passthrough upstream, the root document is served too.
    let root = send(
        Method::GET,
        &format!("http://{gw}/.well-known/oauth-protected-resource"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(root.json(), json);
    // The gateway's own challenge carries the scope hint.
    let challenge = post_init(&format!("http://{gw}/mcp/open"), &[]).await;
    assert_eq!(
        challenge.header("www-authenticate"),
        Some(format!(r#"Bearer resource_metadata="http://{gw}/.well-known/oauth-protected-resource/mcp/open", scope="read write""#).as_str())
    );
}

#[tokio::test]
async fn discovery_uses_authorization_server_metadata_and_caches_failures() {
    let server_metadata = Recorder::start(|parts| match parts.uri.path() {
        "/.well-known/oauth-authorization-server" => {
            answer(StatusCode::OK, &[], r#"{"issuer":"x"}"#)
        }
        _ => answer(StatusCode::NOT_FOUND, &[], "{}"),
    })
    .await;
    let nothing = Recorder::start(|_| answer(StatusCode::NOT_FOUND, &[], "{}")).await;
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("as={}", server_metadata.url("/mcp"))),
        ("--passthrough", "as"),
        ("--upstream", &format!("none={}", nothing.url("/mcp"))),
        ("--passthrough", "none"),
    ]))
    .await;
    let document = send(
        Method::GET,
        &format!("http://{gw}/.well-known/oauth-protected-resource/mcp/as"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(document.status, 200);
    assert_eq!(
        document.json()["authorization_servers"],
        serde_json::json!([format!("http://{}", server_metadata.addr)])
    );
    let url = format!("http://{gw}/.well-known/oauth-protected-resource/mcp/none");
    assert_eq!(send(Method::GET, &url, &[], Bytes::new()).await.status, 502);
    let asked = nothing.seen().len();
    assert!(asked > 0);
    for _ in 0..5 {
        assert_eq!(send(Method::GET, &url, &[], Bytes::new()).await.status, 502);
    }
    assert_eq!(nothing.seen().len(), asked, "a failure is remembered");
    // Two passthrough upstreams: no root document.
    let root = send(
        Method::GET,
        &format!("http://{gw}/.well-known/oauth-protected-resource"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(root.status, 404);
}

#[tokio::test]
async fn a_public_url_with_a_path_puts_metadata_urls_per_rfc_9728() {
    let upstream = Recorder::start(ok_upstream()).await;
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("open={}", upstream.url("/mcp"))),
        ("--passthrough", "open"),
        ("--public-url", "https://gw.example/tools"),
    ]))
    .await;
    let challenge = post_init(&format!("http://{gw}/mcp/open"), &[("host", "gw.example")]).await;
    assert_eq!(
        challenge.header("www-authenticate"),
        Some(
            r#"Bearer resource_metadata="https://gw.example/.well-known/oauth-protected-resource/tools/mcp/open""#
        )
    );
}

#[tokio::test]
async fn start_up_refuses_duplicate_names_and_a_public_listener_without_public_url() {
    let duplicate = app::Options::parse(
        args(&[
            ("--key", KEY),
            ("--upstream", "a=http://127.0.0.1:1/mcp"),
            ("--upstream", "A=http://127.0.0.1:2/mcp"),
        ]),
        None,
    )
    .err()
    .unwrap();
    assert!(
        duplicate.starts_with("--upstream A") && duplicate.contains("twice"),
        "{duplicate}"
    );

    let public = app::Options::parse(
        args(&[("--key", KEY), ("--upstream", "a=http://127.0.0.1:1/mcp")]),
        None,
    )
    .unwrap();
    let error = app::prepare(public.clone(), "0.0.0.0:4000".parse().unwrap())
        .await
        .err()
        .unwrap();
    assert!(error.contains("--public-url"), "{error}");
    let mut with_url = public;
    with_url.public_url = Some("https://gw.example".to_owned());
    assert!(app::prepare(with_url, "0.0.0.0:4000".parse().unwrap())
        .await
        .is_ok());
}

#[tokio::test]
async fn keys_come_from_a_key_file() {
    let upstream = Recorder::start(ok_upstream()).await;
    let file = temp_file(
        "keys",
        "# gateway keys\nsk-from-file-1 ops\nsk-from-file-2\n",
    );
    let gw = gateway(&args(&[
        ("--key-file", file.to_str().unwrap()),
        ("--upstream", &format!("keyed={}", upstream.url("/mcp"))),
    ]))
    .await;
    let url = format!("http://{gw}/mcp/keyed");
    for key in ["sk-from-file-1", "sk-from-file-2"] {
        assert_eq!(
            post_init(&url, &[("x-litellm-api-key", key)]).await.status,
            200
        );
    }
    assert_eq!(
        post_init(&url, &[("x-litellm-api-key", "sk-other")])
            .await
            .status,
        401
    );
    let broken = temp_file("keys", "sk-a\nsk-a\n");
    let options = app::Options::parse(
        args(&[
            ("--key-file", broken.to_str().unwrap()),
            ("--upstream", "a=http://127.0.0.1:1/mcp"),
        ]),
        None,
    )
    .unwrap();
    let error = app::prepare(options, "127.0.0.1:0".parse().unwrap())
        .await
        .err()
        .unwrap();
    assert!(
        error.contains("--key-file") && !error.contains("sk-a"),
        "{error}"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn readyz_is_503_while_the_key_store_does_not_answer() {
    let dead = dead_port().await;
    let gw = gateway_with(
        &args(&[("--upstream", "a=http://127.0.0.1:1/mcp")]),
        |options| {
            options.database_url = Some(format!("postgres://litellm@{dead}/litellm"));
        },
    )
    .await;
    let ready = send(
        Method::GET,
        &format!("http://{gw}/readyz"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        send(
            Method::GET,
            &format!("http://{gw}/healthz"),
            &[],
            Bytes::new()
        )
        .await
        .status,
        200
    );
}
