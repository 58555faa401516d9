//! Findings of a security review, each through the gateway: `oauth_delegate` without a gateway key, JWT
//! callers' per-upstream scopes and clients, and configured keys that must be taken whole.

use mcp_gateway as app;
mod gateway_support;
use testkit::issuer::Issuer;

use axum::http::StatusCode;
use gateway_support::*;

const USER_TOKEN: &str = "user-oauth-token";

fn ok_upstream() -> impl Fn(&axum::http::request::Parts) -> axum::response::Response + Clone {
    |_| answer(StatusCode::OK, &[], r#"{"ok":true}"#)
}

fn authorization_seen(upstream: &Recorder) -> Vec<Option<String>> {
    upstream
        .seen()
        .iter()
        .map(|s| {
            s.headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn oauth_delegate_needs_a_gateway_key_beside_the_users_token() {
    let delegate = Recorder::start(ok_upstream()).await;
    let passthrough = Recorder::start(ok_upstream()).await;
    let flagged = Recorder::start(ok_upstream()).await;
    let config = temp_file(
        "config.yaml",
        &format!(
            "mcp_servers:\n  del:\n    url: {}\n    auth_type: oauth_delegate\n    oauth_passthrough: true\n  \
             pass:\n    url: {}\n    auth_type: true_passthrough\n",
            delegate.url("/mcp"),
            passthrough.url("/mcp")
        ),
    );
    let gw = gateway(&args(&[
        ("--config", config.to_str().unwrap()),
        ("--key", KEY),
        ("--upstream", &format!("flag={}", flagged.url("/mcp"))),
        ("--oauth-delegate", "flag"),
    ]))
    .await;
    let user = format!("Bearer {USER_TOKEN}");

    for (route, upstream) in [("del", &delegate), ("flag", &flagged)] {
        // The user's token alone: refused before the upstream, as LiteLLM's oauth_delegate refuses it.
        let alone = post_init(
            &format!("http://{gw}/mcp/{route}"),
            &[("authorization", &user)],
        )
        .await;
        assert_eq!(alone.status, StatusCode::UNAUTHORIZED, "{route}");
        assert_eq!(alone.json()["error"], "invalid_token");
        assert!(alone.header("www-authenticate").is_some());
        assert!(upstream.seen().is_empty(), "{route}: reached the upstream");
        // Beside a gateway key, the user's token is what the upstream receives.
        let both = post_init(
            &format!("http://{gw}/mcp/{route}"),
            &[("x-litellm-api-key", KEY), ("authorization", &user)],
        )
        .await;
        assert_eq!(both.status, StatusCode::OK, "{route}");
        assert_eq!(authorization_seen(upstream), [Some(user.clone())]);
    }
    // true_passthrough keeps today's meaning: the token alone passes through.
    let alone = post_init(
        &format!("http://{gw}/mcp/pass"),
        &[("authorization", &user)],
    )
    .await;
    assert_eq!(alone.status, StatusCode::OK);
    assert_eq!(authorization_seen(&passthrough), [Some(user.clone())]);
}

#[tokio::test]
async fn jwt_callers_need_the_routes_scopes_and_an_allowed_client() {
    let issuer = Issuer::start().await;
    let upstream = Recorder::start(ok_upstream()).await;
    let open = Recorder::start(ok_upstream()).await;
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("rec={}", upstream.url("/mcp"))),
        ("--upstream-auth", "rec=bearer_token:gateway-own-credential"),
        ("--upstream", &format!("open={}", open.url("/mcp"))),
        ("--jwt-issuer", &issuer.url),
        ("--jwt-jwks-uri", &issuer.jwks_uri().to_string()),
        ("--jwt-required-scope", "rec=mcp:admin"),
        ("--jwt-required-scope", "rec=mcp:read"),
        ("--jwt-allowed-client", "rec=ide"),
        ("--jwt-allowed-client", "rec=agent"),
    ]))
    .await;
    let url = format!("http://{gw}/mcp/rec");
    let token = |scope: &str, client: &str, aud: &str| {
        let mut claims = issuer.claims(aud, 3600);
        claims["scope"] = scope.into();
        claims["client_id"] = client.into();
        format!("Bearer {}", issuer.sign("k1", &claims))
    };

    // Missing a scope: the step-up 403 names every scope the route needs and the route's metadata.
    let lacking = post_init(&url, &[("authorization", &token("mcp:read", "ide", &url))]).await;
    assert_eq!(lacking.status, StatusCode::FORBIDDEN);
    assert_eq!(lacking.json()["error"], "insufficient_scope");
    assert_eq!(
        lacking.header("www-authenticate").unwrap(),
        format!(
            r#"Bearer error="insufficient_scope", scope="mcp:admin mcp:read", resource_metadata="http://{gw}/.well-known/oauth-protected-resource/mcp/rec""#
        )
    );
    // A client not on the list: 403 access_denied, no challenge.
    let stranger = post_init(
        &url,
        &[("authorization", &token("mcp:admin mcp:read", "other", &url))],
    )
    .await;
    assert_eq!(stranger.status, StatusCode::FORBIDDEN);
    assert_eq!(stranger.json()["error"], "access_denied");
    assert!(stranger.header("www-authenticate").is_none());
    assert!(
        upstream.seen().is_empty(),
        "a refused JWT caller never reaches the upstream with the gateway's credential"
    );

    // Both conditions met: the upstream gets the gateway's own credential, never the JWT.
    let allowed = post_init(
        &url,
        &[("authorization", &token("mcp:read mcp:admin", "agent", &url))],
    )
    .await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        authorization_seen(&upstream),
        [Some("Bearer gateway-own-credential".to_owned())]
    );
    // Keys are not JWT callers; another upstream without conditions admits any JWT for it.
    let keyed = post_init(&url, &[("x-litellm-api-key", KEY)]).await;
    assert_eq!(keyed.status, StatusCode::OK);
    let open_url = format!("http://{gw}/mcp/open");
    let anywhere = post_init(
        &open_url,
        &[("authorization", &token("", "other", &open_url))],
    )
    .await;
    assert_eq!(anywhere.status, StatusCode::OK);
}

#[tokio::test]
async fn required_scopes_and_allowed_clients_come_from_the_config_file_and_need_jwt_admission() {
    let yaml = |issuer: &str| {
        format!(
            "mcp_servers:\n  rec:\n    url: http://127.0.0.1:9/mcp\n    required_scopes: [mcp.jira, mcp.read]\n    \
             allowed_client_ids: [ide]\n{issuer}"
        )
    };
    let with = temp_file(
        "config.yaml",
        &yaml("mcp_resource_server:\n  issuer: https://idp.example\n"),
    );
    let mut options =
        app::Options::parse(["--config".to_owned(), with.display().to_string()], None).unwrap();
    let access = &options.server("rec").unwrap().access;
    assert_eq!(access.required_scopes, ["mcp.jira", "mcp.read"]);
    assert_eq!(
        access.allowed_client_ids.as_deref(),
        Some(&["ide".to_owned()][..])
    );

    let without = temp_file("config.yaml", &yaml(""));
    let error = app::Options::parse(["--config".to_owned(), without.display().to_string()], None)
        .unwrap_err();
    assert!(
        error.starts_with("mcp_servers.rec:") && error.contains("JWT admission"),
        "{error}"
    );
    let error = app::Options::parse(
        args(&[
            ("--upstream", "rec=http://127.0.0.1:9/mcp"),
            ("--jwt-issuer", "https://idp.example"),
            ("--jwt-required-scope", "rec=two words"),
        ]),
        None,
    )
    .unwrap_err();
    assert!(error.starts_with("--jwt-required-scope rec"), "{error}");
}

async fn prepare(args: Vec<String>) -> Result<app::Prepared, String> {
    let options = app::Options::parse(args, None)?;
    app::prepare(options, "127.0.0.1:4000".parse().unwrap()).await
}

#[tokio::test]
async fn a_configured_key_is_taken_whole_or_refused_never_shortened() {
    let upstream = Recorder::start(ok_upstream()).await;
    let route = format!("rec={}", upstream.url("/mcp"));
    // `sk-alice=bob`: `bob` is no upstream, so the key cannot be `sk-alice` limited to it.
    for key in ["sk-alice=bob", "sk-alice bob", "sk-alice\tbob"] {
        let error = match prepare(args(&[("--key", key), ("--upstream", &route)])).await {
            Ok(_) => panic!("{key:?} was accepted"),
            Err(error) => error,
        };
        assert!(error.starts_with("--key"), "{error}");
        assert!(
            !error.contains("alice") && !error.contains("bob"),
            "the error repeats the key: {error}"
        );
    }
    // A list of real upstreams still reads as one, and a trailing `=` belongs to the key.
    let gw = gateway(&args(&[
        ("--key", "sk-padded=="),
        ("--key", "sk-limited=rec"),
        ("--upstream", &route),
    ]))
    .await;
    for key in ["sk-padded==", "sk-limited"] {
        let answer = post_init(
            &format!("http://{gw}/mcp/rec"),
            &[("x-litellm-api-key", key)],
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{key}");
    }

    // The config file's master key is taken whole, `=` and all; its prefix is no key.
    let config = temp_file(
        "config.yaml",
        &format!(
            "mcp_servers:\n  rec:\n    url: {}\ngeneral_settings:\n  master_key: sk-master=rec\n",
            upstream.url("/mcp")
        ),
    );
    let gw = gateway(&args(&[("--config", config.to_str().unwrap())])).await;
    let url = format!("http://{gw}/mcp/rec");
    let whole = post_init(&url, &[("x-litellm-api-key", "sk-master=rec")]).await;
    assert_eq!(whole.status, StatusCode::OK);
    let cut = post_init(&url, &[("x-litellm-api-key", "sk-master")]).await;
    assert_eq!(cut.status, StatusCode::UNAUTHORIZED);
    let config = temp_file(
        "config.yaml",
        "mcp_servers:\n  rec:\n    url: http://127.0.0.1:9/mcp\ngeneral_settings:\n  master_key: sk master\n",
    );
    let error = match prepare(args(&[("--config", config.to_str().unwrap())])).await {
        Ok(_) => panic!("a master key with a space was accepted"),
        Err(error) => error,
    };
    assert!(error.starts_with("general_settings.master_key"), "{error}");
}

#[tokio::test]
async fn each_path_form_an_upstream_could_read_differently_is_400_and_never_reaches_it() {
    let upstream = Recorder::start(ok_upstream()).await;
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("rec={}", upstream.url("/mcp"))),
        ("--passthrough", "rec"),
    ]))
    .await;
    for rest in [
        "/..;/other",      // `..` to a Java servlet container
        "/.;/x",           // `.` likewise
        "/x;jsessionid=1", // a path parameter
        "/%252e%252e/x",   // `%25`: double encoding
        "/%00",            // NUL
        "/%c0%ae%c0%ae/x", // overlong UTF-8 for `..`
        "/%80",            // any byte at or above %80
    ] {
        let url = format!("http://{gw}/mcp/rec{rest}");
        for credential in [
            ("x-litellm-api-key", KEY.to_owned()),
            ("authorization", format!("Bearer {USER_TOKEN}")),
        ] {
            let answer = post_init(&url, &[(credential.0, &credential.1)]).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{rest} {}",
                credential.0
            );
        }
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    // A canonical sub-path still goes through.
    let fine = post_init(
        &format!("http://{gw}/mcp/rec/x"),
        &[("x-litellm-api-key", KEY)],
    )
    .await;
    assert_eq!(fine.status, StatusCode::OK);
}

/// A JWT naming `iss`, signed by no one.
fn unsigned_jwt(iss: &str, aud: &str) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2ln",
        part(serde_json::json!({"alg": "ES256", "kid": "k1"})),
        part(serde_json::json!({"iss": iss, "sub": "alice", "aud": aud, "exp": 4_000_000_000u64}))
    )
}

#[tokio::test]
async fn a_jwt_of_the_gateways_issuer_beside_a_key_never_reaches_a_passthrough_upstream() {
    let upstream = Recorder::start(ok_upstream()).await;
    let dead = dead_port().await;
    let issuer = format!("http://{dead}/issuer");
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("rec={}", upstream.url("/mcp"))),
        ("--passthrough", "rec"),
        // The issuer cannot be reached: its key set is never fetched.
        ("--jwt-issuer", &issuer),
        ("--jwt-jwks-uri", &format!("http://{dead}/jwks")),
    ]))
    .await;
    let url = format!("http://{gw}/mcp/rec");
    let ours = format!("Bearer {}", unsigned_jwt(&issuer, &url));
    let answer = post_init(
        &url,
        &[("x-litellm-api-key", KEY), ("authorization", &ours)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        authorization_seen(&upstream),
        [None],
        "a token naming the gateway's issuer went upstream as the client's own"
    );
    // A JWT of another issuer is the client's own token for that upstream.
    let theirs = format!(
        "Bearer {}",
        unsigned_jwt("https://idp.upstream.example", &url)
    );
    let answer = post_init(
        &url,
        &[("x-litellm-api-key", KEY), ("authorization", &theirs)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(authorization_seen(&upstream)[1], Some(theirs));
}

#[tokio::test]
async fn http_issuers_jwks_urls_and_token_endpoints_beyond_loopback_are_refused_unless_allowed() {
    std::env::set_var("MCP_GATEWAY_EXCHANGE_CLIENT_ID", "gateway");
    std::env::set_var("MCP_GATEWAY_EXCHANGE_CLIENT_SECRET", "gateway-secret");
    let base = [("--key", KEY), ("--upstream", "rec=http://127.0.0.1:9/mcp")];
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("--jwt-issuer", "http://idp.example")], "--jwt-issuer"),
        (
            &[
                ("--jwt-issuer", "https://idp.example"),
                ("--jwt-jwks-uri", "http://idp.example/jwks"),
            ],
            "--jwt-jwks-uri",
        ),
        (
            &[
                ("--jwt-issuer", "https://idp.example"),
                ("--token-exchange", "rec=http://idp.example/token"),
            ],
            "token exchange for rec: the token endpoint",
        ),
    ];
    for (flags, blamed) in cases {
        let mut all: Vec<(&str, &str)> = base.to_vec();
        all.extend_from_slice(flags);
        let error = match prepare(args(&all)).await {
            Ok(_) => panic!("{flags:?} was accepted"),
            Err(error) => error,
        };
        assert!(
            error.starts_with(blamed) && error.contains("--allow-insecure-auth-server"),
            "{error}"
        );
        // The explicit opt-in, by flag or in the config file, accepts it.
        let mut allowed = all.clone();
        allowed.push(("--allow-insecure-auth-server", "true"));
        let allowed: Vec<String> = args(&allowed).into_iter().filter(|a| a != "true").collect();
        assert!(prepare(allowed).await.is_ok(), "{flags:?} with the opt-in");
    }
    // Loopback and https need no opt-in.
    let mut loopback = base.to_vec();
    loopback.push(("--jwt-issuer", "http://localhost:9/issuer"));
    loopback.push(("--token-exchange", "rec=http://[::1]:9/token"));
    assert!(prepare(args(&loopback)).await.is_ok());
    let config = temp_file(
        "config.yaml",
        "mcp_servers:\n  rec:\n    url: http://127.0.0.1:9/mcp\nmcp_resource_server:\n  issuer: http://idp.example\n\
         gateway_settings:\n  allow_insecure_auth_server: true\n",
    );
    assert!(prepare(args(&[
        ("--key", KEY),
        ("--config", config.to_str().unwrap())
    ]))
    .await
    .is_ok());
}

#[tokio::test]
async fn a_jwt_not_typed_at_jwt_is_401_unless_the_issuer_is_allowed_any_typ() {
    let issuer = Issuer::start().await;
    let upstream = Recorder::start(ok_upstream()).await;
    let jwks = issuer.jwks_uri().to_string();
    let route = format!("rec={}", upstream.url("/mcp"));
    let strict = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &route),
        ("--jwt-issuer", &issuer.url),
        ("--jwt-jwks-uri", &jwks),
    ]))
    .await;
    let mut lenient_args = args(&[
        ("--key", KEY),
        ("--upstream", &route),
        ("--jwt-issuer", &issuer.url),
        ("--jwt-jwks-uri", &jwks),
    ]);
    lenient_args.push("--jwt-allow-any-typ".to_owned());
    let lenient = gateway(&lenient_args).await;
    for (gw, expected) in [
        (strict, StatusCode::UNAUTHORIZED),
        (lenient, StatusCode::OK),
    ] {
        let url = format!("http://{gw}/mcp/rec");
        let id_token_like =
            issuer.sign_typed("k1", Some("k1"), Some("JWT"), &issuer.claims(&url, 3600));
        let answer = post_init(
            &url,
            &[("authorization", &format!("Bearer {id_token_like}"))],
        )
        .await;
        assert_eq!(answer.status, expected, "{gw}");
        let access_token = issuer.token(&url);
        let answer = post_init(
            &url,
            &[("authorization", &format!("Bearer {access_token}"))],
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
}
