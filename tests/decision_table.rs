//! The contract's preconditions and decision table, one named case per row (`support/contract.rs`), plus twins
//! of the scenarios the original passthrough change tested and of the lessons learned after it.

mod support;

use support::{
    contract::{cases, run, ATL, AUTH, KEY},
    layer, request, send, Inner,
};

#[tokio::test(start_paused = true)]
async fn decision_table() {
    let mut failures = Vec::new();
    for case in cases() {
        let problems = run(&case).await;
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}

/// Seed scenario 5: the same passthrough through a validator written as a type rather than a closure, with
/// its own "not a key" answer.
#[tokio::test]
async fn seed_5_passthrough_with_a_validator_type() {
    use std::{
        convert::Infallible,
        future::{ready, Ready},
    };
    use tower_mcp_auth::{Validator, Verdict};

    struct KeyTable;
    impl Validator for KeyTable {
        type Identity = String;
        type Error = Infallible;
        type Future = Ready<Result<Verdict<String>, Infallible>>;
        fn validate(&self, credential: &str) -> Self::Future {
            ready(Ok(if credential.starts_with("sk-") {
                Verdict::Valid("k".into())
            } else {
                Verdict::Unknown
            }))
        }
    }

    let inner = Inner::default();
    let answer = send(
        &layer(KeyTable),
        &inner,
        request(ATL, &[(AUTH, b"Bearer upstream-oauth-token")]),
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = inner.take();
    assert_eq!(seen[0].identity, None);
    assert_eq!(seen[0].passthrough.as_deref(), Some("upstream-oauth-token"));
}

/// The fixed public API of the crate, compiled and exercised exactly as documented.
#[tokio::test]
async fn fixed_public_api_compiles_as_written() {
    use tower_mcp_auth::{
        validate_fn, Authenticated, McpAuthLayer, OAuthPassthrough, PassthroughPolicy, Verdict,
    };

    let layer = McpAuthLayer::new(validate_fn(|key: String| async move {
        Ok::<_, std::convert::Infallible>(match key.as_str() {
            "sk-good" => Verdict::Valid("alice".to_owned()),
            "sk-blocked" => Verdict::Denied,
            _ => Verdict::Unknown,
        })
    }))
    .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"]));
    let inner = Inner::default();
    let answer = send(
        &layer,
        &inner,
        request(ATL, &[(KEY, b"sk-good"), (AUTH, b"Bearer t0k")]),
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = inner.take();
    assert_eq!(seen[0].identity.as_deref(), Some("alice"));
    assert_eq!(seen[0].passthrough.as_deref(), Some("t0k"));
    // The accessors named in the API, on a request as the layer hands it over.
    let mut req = http::Request::new(());
    req.extensions_mut().insert(Authenticated::new(
        "alice".to_owned(),
        tower_mcp_auth::CredentialSource::KeyHeader,
    ));
    req.extensions_mut().insert(OAuthPassthrough::new("t0k"));
    assert_eq!(
        req.extensions()
            .get::<Authenticated<String>>()
            .map(|a| a.identity().as_str()),
        Some("alice")
    );
    assert_eq!(
        req.extensions()
            .get::<OAuthPassthrough>()
            .map(|p| p.expose_token()),
        Some("t0k")
    );
}

/// An empty or blank `Authorization` header, sent over the wire: hyper hands the layer an empty value (it trims
/// the spaces around a value), and the layer answers 400 `invalid_request` without asking the validator, alone
/// and beside a valid key, where it used to be a 401 "unsupported scheme" or silently dropped.
#[tokio::test]
async fn an_empty_or_blank_authorization_is_400_over_the_wire() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let calls = support::Calls::default();
    let router = axum::Router::new()
        .fallback(|| async { "admitted" })
        .layer(layer(support::scripted_store(calls.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    for extra in ["", "x-litellm-api-key: sk-good\r\n"] {
        for authorization in [
            "Authorization:\r\n",
            "Authorization: \r\n",
            "Authorization:    \r\n",
        ] {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            let raw = format!(
                "POST /mcp/atlassian HTTP/1.1\r\nHost: gw\r\n{extra}{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(raw.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            let answer = String::from_utf8_lossy(&answer);
            assert!(
                answer.starts_with("HTTP/1.1 400 "),
                "{extra:?} {authorization:?}: {answer}"
            );
            assert!(
                answer.contains("www-authenticate: Bearer error=\"invalid_request\""),
                "{answer}"
            );
            assert!(answer.contains("\"error\":\"invalid_request\""), "{answer}");
            assert!(!answer.contains("admitted"), "{answer}");
        }
    }
    assert!(calls.take().is_empty(), "the validator was asked");
}
