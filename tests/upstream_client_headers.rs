//! Client-supplied per-server credentials: `x-mcp-servers`, `x-mcp-{server}-{header}` and the deprecated
//! `x-mcp-auth`, as `TakeClientCredentialsLayer` parses and removes them.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    client_credentials::{ClientCredentials, TakeClientCredentialsLayer},
    upstream::AuthKind,
    validate_fn, McpAuthLayer, Verdict,
};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// Parses `pairs` with `layer`; returns the credentials and the headers left in the request.
fn take_with(
    layer: &TakeClientCredentialsLayer,
    pairs: &[(&str, &str)],
) -> (ClientCredentials, HeaderMap) {
    let mut map = headers(pairs);
    let credentials = layer.take(&mut map);
    (credentials, map)
}

fn take(pairs: &[(&str, &str)]) -> ClientCredentials {
    take_with(&TakeClientCredentialsLayer::new(), pairs).0
}

/// The client's headers for `server`, as `name: value` lines.
fn sent_to(credentials: &ClientCredentials, server: &str, kind: AuthKind) -> Vec<String> {
    credentials
        .headers_for(server, kind)
        .iter()
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
        .collect()
}

fn bearer(credentials: &ClientCredentials, server: &str) -> Vec<String> {
    sent_to(credentials, server, AuthKind::BearerToken)
}

#[test]
fn servers_are_comma_separated_trimmed_and_empties_dropped() {
    let c = take(&[
        ("x-mcp-servers", " github, ,jira ,"),
        ("x-mcp-servers", "zapier"),
    ]);
    assert_eq!(c.servers().unwrap(), ["github", "jira", "zapier"]);
    assert_eq!(
        take(&[("x-mcp-servers", " , ")]).servers().unwrap(),
        [] as [&str; 0]
    );
    assert_eq!(take(&[]).servers(), None);
}

#[test]
fn a_target_chosen_by_the_path_wins_over_x_mcp_servers() {
    let c = take(&[("x-mcp-servers", "github,jira")]);
    assert_eq!(c.targets(Some("atlassian")), ["atlassian"]);
    assert_eq!(c.targets(None), ["github", "jira"]);
    assert!(take(&[]).targets(None).is_empty());
}

#[test]
fn per_server_header_goes_to_its_server_only() {
    let layer = TakeClientCredentialsLayer::new().servers(["github", "zapier"]);
    let (c, _) = take_with(
        &layer,
        &[
            ("x-mcp-github-authorization", "Bearer gh"),
            ("x-mcp-zapier-x-api-key", "zp"),
        ],
    );
    assert_eq!(bearer(&c, "github"), ["authorization: Bearer gh"]);
    assert_eq!(bearer(&c, "GitHub"), ["authorization: Bearer gh"]);
    assert_eq!(bearer(&c, "zapier"), ["x-api-key: zp"]);
    assert!(bearer(&c, "jira").is_empty());
}

#[test]
fn several_headers_for_one_server_travel_together() {
    let c = take(&[
        ("x-mcp-github-authorization", "Bearer gh"),
        ("x-mcp-github-org", "acme"),
    ]);
    let mut sent = bearer(&c, "github");
    sent.sort();
    assert_eq!(sent, ["authorization: Bearer gh", "org: acme"]);
}

#[test]
fn known_server_names_resolve_to_the_longest_match() {
    let layer = TakeClientCredentialsLayer::new().servers(["my", "My-Server", "github"]);
    let (c, _) = take_with(
        &layer,
        &[
            ("x-mcp-my-server-authorization", "Bearer for-my-server"),
            ("x-mcp-my-authorization", "Bearer for-my"),
        ],
    );
    assert_eq!(
        bearer(&c, "my-server"),
        ["authorization: Bearer for-my-server"]
    );
    assert_eq!(bearer(&c, "my"), ["authorization: Bearer for-my"]);
}

#[test]
fn without_known_names_a_single_dash_splits_server_from_header() {
    let c = take(&[("x-mcp-github-authorization", "Bearer gh")]);
    assert_eq!(bearer(&c, "github"), ["authorization: Bearer gh"]);
}

/// `x-mcp-a-b-c` is `b-c` for `a` or `c` for `a-b`: without the server names, guessing could hand `a` a
/// credential meant for `a-b`. Such headers are dropped (and still removed from the request).
#[test]
fn without_known_names_an_ambiguous_header_is_dropped_not_split_at_the_first_dash() {
    let (c, left) = take_with(
        &TakeClientCredentialsLayer::new(),
        &[
            ("x-mcp-a-b-c", "Bearer meant-for-a-b"),
            (
                "x-mcp-my-server-authorization",
                "Bearer meant-for-my-server",
            ),
            ("x-mcp-zapier-x-api-key", "zp"),
        ],
    );
    for server in ["a", "a-b", "my", "my-server", "zapier"] {
        assert!(
            bearer(&c, server).is_empty(),
            "{server}: {:?}",
            bearer(&c, server)
        );
    }
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        format!("{c:?}"),
        "ClientCredentials { servers: None, per_server: {}, fallback: None }"
    );
}

#[test]
fn headers_for_unknown_servers_are_dropped_and_removed() {
    let layer = TakeClientCredentialsLayer::new().servers(["github"]);
    let (c, left) = take_with(
        &layer,
        &[
            ("x-mcp-gitlab-authorization", "Bearer gl"),
            ("x-mcp-github", "no header name"),
            ("x-mcp-github-", "empty header name"),
        ],
    );
    assert!(bearer(&c, "gitlab").is_empty());
    assert!(bearer(&c, "github").is_empty());
    assert!(left.is_empty());
}

#[test]
fn deprecated_header_serves_every_server_without_its_own() {
    let c = take(&[
        ("x-mcp-github-authorization", "Bearer gh"),
        ("x-mcp-auth", "all"),
    ]);
    assert_eq!(bearer(&c, "github"), ["authorization: Bearer gh"]);
    assert_eq!(bearer(&c, "jira"), ["authorization: Bearer all"]);
    assert_eq!(sent_to(&c, "jira", AuthKind::ApiKey), ["x-api-key: all"]);
    assert_eq!(
        sent_to(&c, "jira", AuthKind::Token),
        ["authorization: token all"]
    );
    assert!(sent_to(&c, "jira", AuthKind::None).is_empty());
}

#[test]
fn deprecated_header_name_is_configurable() {
    let layer = TakeClientCredentialsLayer::new()
        .client_auth_header(HeaderName::from_static("x-client-auth"));
    let (c, left) = take_with(&layer, &[("x-client-auth", "all"), ("x-mcp-auth", "old")]);
    assert_eq!(bearer(&c, "jira"), ["authorization: Bearer all"]);
    // `x-mcp-auth` is now just an `x-mcp-` header with no header name: dropped.
    assert!(left.is_empty());
}

#[test]
fn every_client_header_is_removed_but_access_groups_and_others_stay() {
    let (_, left) = take_with(
        &TakeClientCredentialsLayer::new(),
        &[
            ("x-mcp-servers", "a"),
            ("x-mcp-a-authorization", "Bearer a"),
            ("x-mcp-auth", "all"),
            ("x-mcp-junk", "x"),
            ("x-mcp-access-groups", "dev"),
            ("x-litellm-api-key", "sk-1"),
            ("mcp-session-id", "s"),
        ],
    );
    let mut names: Vec<&str> = left.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["mcp-session-id", "x-litellm-api-key", "x-mcp-access-groups"]
    );
}

#[test]
fn values_equal_to_the_gateway_key_are_dropped() {
    for key in ["sk-gw", "Bearer sk-gw", "bearer   sk-gw "] {
        for value in ["sk-gw", "Bearer sk-gw", "token sk-gw", " sk-gw "] {
            let c = take(&[
                ("x-litellm-api-key", key),
                ("x-mcp-github-authorization", value),
                ("x-mcp-auth", value),
            ]);
            assert!(bearer(&c, "github").is_empty(), "{key:?} {value:?}");
            assert!(bearer(&c, "jira").is_empty(), "{key:?} {value:?}");
        }
    }
    let c = take(&[
        ("x-litellm-api-key", "sk-gw"),
        ("x-mcp-github-authorization", "sk-gw2"),
    ]);
    assert_eq!(bearer(&c, "github"), ["authorization: sk-gw2"]);
}

#[test]
fn values_equal_to_the_authorization_credential_are_dropped() {
    // Whether the bearer is a gateway key or the client's passthrough token, it goes nowhere else.
    let c = take(&[
        ("authorization", "Bearer tok-1"),
        ("x-mcp-github-authorization", "Bearer tok-1"),
        ("x-mcp-auth", "tok-1"),
    ]);
    assert!(bearer(&c, "github").is_empty());
    assert!(bearer(&c, "jira").is_empty());
}

#[test]
fn a_custom_key_header_is_compared_too() {
    let layer = TakeClientCredentialsLayer::new().key_header(HeaderName::from_static("x-gw-key"));
    let (c, left) = take_with(
        &layer,
        &[
            ("x-gw-key", "sk-gw"),
            ("x-mcp-github-authorization", "Bearer sk-gw"),
        ],
    );
    assert!(bearer(&c, "github").is_empty());
    assert_eq!(left["x-gw-key"], "sk-gw");
}

#[test]
fn ambiguous_empty_or_malformed_values_are_dropped() {
    let mut map = headers(&[
        ("x-mcp-a-authorization", "Bearer one"),
        ("x-mcp-a-authorization", "Bearer two"),
        ("x-mcp-b-authorization", "   "),
        ("x-mcp-auth", "a"),
        ("x-mcp-auth", "b"),
    ]);
    map.insert(
        "x-mcp-c-authorization",
        HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
    );
    map.insert(
        "x-mcp-d-authorization",
        HeaderValue::from_static("Bearer\tx"),
    );
    let c = TakeClientCredentialsLayer::new().take(&mut map);
    for server in ["a", "b", "c", "d", "e"] {
        assert!(bearer(&c, server).is_empty(), "{server}");
    }
    assert!(map.is_empty());
}

#[test]
fn a_credential_never_sets_framing_routing_or_gateway_headers() {
    // With the names known, so that multi-dash header names are split (and then refused for what they are).
    let layer = TakeClientCredentialsLayer::new().servers(["a", "b"]);
    let (c, _) = take_with(
        &layer,
        &[
            ("x-mcp-a-host", "evil.test"),
            ("x-mcp-a-content-length", "0"),
            ("x-mcp-a-transfer-encoding", "chunked"),
            ("x-mcp-a-connection", "close"),
            ("x-mcp-a-proxy-authorization", "Basic eA=="),
            ("x-mcp-a-x-litellm-api-key", "sk-x"),
            ("x-mcp-a-x-mcp-b-authorization", "Bearer b"),
            ("x-mcp-a-x-mcp-auth", "all"),
            ("x-mcp-a-cookie", "session=1"),
        ],
    );
    assert_eq!(sent_to(&c, "a", AuthKind::None), ["cookie: session=1"]);
}

#[test]
fn values_are_trimmed_and_sensitive() {
    let c = take(&[("x-mcp-a-authorization", "  Bearer v  ")]);
    let headers = c.headers_for("a", AuthKind::None);
    assert_eq!(headers["authorization"], "Bearer v");
    assert!(headers["authorization"].is_sensitive());
}

#[test]
fn debug_is_redacted() {
    let c = take(&[
        ("x-mcp-servers", "github"),
        ("x-mcp-github-authorization", "Bearer gh-secret"),
        ("x-mcp-auth", "all-secret"),
    ]);
    let debug = format!("{c:?}");
    assert!(!debug.contains("secret"), "{debug}");
    assert!(
        debug.contains("github") && debug.contains("authorization") && debug.contains("redacted")
    );
}

#[tokio::test]
async fn the_layer_puts_the_extension_on_every_request() {
    let service = ServiceBuilder::new()
        .layer(TakeClientCredentialsLayer::new())
        .service(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(req.extensions().get::<ClientCredentials>().cloned())
        }));
    let plain = service.clone().oneshot(Request::new(())).await.unwrap();
    assert!(plain.unwrap().servers().is_none());
    let request = Request::post("/")
        .header("x-mcp-servers", "a")
        .body(())
        .unwrap();
    let parsed = service.oneshot(request).await.unwrap().unwrap();
    assert_eq!(parsed.servers().unwrap(), ["a"]);
}

#[tokio::test]
async fn client_headers_never_admit_a_caller() {
    let calls = Arc::new(AtomicUsize::new(0));
    let validations = Arc::new(AtomicUsize::new(0));
    let gateway = {
        let calls = Arc::clone(&calls);
        let validations = Arc::clone(&validations);
        ServiceBuilder::new()
            .layer(TakeClientCredentialsLayer::new())
            .layer(McpAuthLayer::new(validate_fn(move |key: String| {
                validations.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok::<_, Infallible>(if key == "sk-good" {
                        Verdict::Valid(())
                    } else {
                        Verdict::Unknown
                    })
                }
            })))
            .service(service_fn(move |_: Request<()>| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(Response::new(())) }
            }))
    };
    for (name, value) in [
        ("x-mcp-github-authorization", "Bearer sk-good"),
        ("x-mcp-github-x-litellm-api-key", "sk-good"),
        ("x-mcp-auth", "sk-good"),
        ("x-mcp-auth", "Bearer sk-good"),
    ] {
        let request = Request::post("/mcp/github")
            .header(name, value)
            .body(())
            .unwrap();
        let response = gateway.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(validations.load(Ordering::SeqCst), 0);
}
