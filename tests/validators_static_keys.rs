//! `StaticKeys`: hashed storage, lookups, and the key-file and environment formats.

use std::io::Write;

use http::{Request, StatusCode};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    validators::{StaticKeys, StaticKeysError},
    Authenticated, Fingerprint, McpAuthLayer, Validator, Verdict,
};

async fn verdict<I: Clone + Send + Sync + 'static>(
    keys: &StaticKeys<I>,
    credential: &str,
) -> Verdict<I> {
    let Ok(verdict) = keys.validate(credential).await;
    verdict
}

#[tokio::test]
async fn listed_keys_are_valid_and_everything_else_unknown() {
    let keys = StaticKeys::new()
        .with_key("sk-ops-1", "ops")
        .with_key("sk-ci-1", "ci");
    assert_eq!(verdict(&keys, "sk-ops-1").await, Verdict::Valid("ops"));
    assert_eq!(verdict(&keys, "sk-ci-1").await, Verdict::Valid("ci"));
    assert_eq!(verdict(&keys, "sk-ops-2").await, Verdict::Unknown);
    assert_eq!(verdict(&keys, "sk-ops-1 ").await, Verdict::Unknown);
    assert_eq!(verdict(&keys, "SK-OPS-1").await, Verdict::Unknown);
    assert_eq!(verdict(&keys, "").await, Verdict::Unknown);
}

#[test]
fn debug_shows_no_key_and_no_digest() {
    let keys = StaticKeys::new().with_key("sk-very-secret-key", "ops");
    let debug = format!("{keys:?} {keys:#?}");
    assert!(!debug.contains("sk-very-secret-key"), "{debug}");
    assert!(!debug.contains("secret"), "{debug}");
    // Not even the fingerprint: the struct's dump says how many keys there are and nothing else.
    assert!(!debug.contains(&Fingerprint::of("sk-very-secret-key").to_string()));
    assert_eq!(format!("{keys:?}"), "StaticKeys { len: 1, .. }");
}

#[test]
fn inserting_a_key_again_replaces_its_identity() {
    let mut keys = StaticKeys::new();
    assert_eq!(keys.insert("sk-a", 1), None);
    assert_eq!(keys.insert("sk-a", 2), Some(1));
    assert_eq!(keys.len(), 1);
    let collected: StaticKeys<u8> = [("sk-a", 1), ("sk-b", 2), ("sk-a", 3)]
        .into_iter()
        .collect();
    assert_eq!(collected.len(), 2);
}

#[test]
#[should_panic(expected = "non-empty visible ASCII")]
fn a_key_the_layer_could_never_present_is_refused() {
    let _ = StaticKeys::new().with_key("sk a", ());
}

#[tokio::test]
async fn key_file_format() {
    let keys = StaticKeys::<String>::parse(
        "# gateway keys\n\
         \n\
         sk-ops-1   ops team  \n\
         \tsk-ci-1\tci\n\
         sk-anon\n",
    )
    .unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(
        verdict(&keys, "sk-ops-1").await,
        Verdict::Valid("ops team".to_owned())
    );
    assert_eq!(
        verdict(&keys, "sk-ci-1").await,
        Verdict::Valid("ci".to_owned())
    );
    // No identity given: the key's fingerprint stands in, never the key.
    assert_eq!(
        verdict(&keys, "sk-anon").await,
        Verdict::Valid(Fingerprint::of("sk-anon").to_string())
    );
    assert_eq!(verdict(&keys, "# gateway").await, Verdict::Unknown);
}

#[test]
fn key_file_errors_name_lines_never_keys() {
    let err =
        StaticKeys::<String>::parse("sk-first a\nsk-dup-secret b\nsk-dup-secret c\n").unwrap_err();
    assert!(
        matches!(err, StaticKeysError::DuplicateKey { line: 3, first: 2 }),
        "{err:?}"
    );
    let err = StaticKeys::<String>::parse("sk-fine\nsk-bad\u{00e9}secret\n").unwrap_err();
    assert!(
        matches!(err, StaticKeysError::InvalidKey { line: 2 }),
        "{err:?}"
    );
    for err in [
        StaticKeys::<String>::parse("sk-dup-secret\nsk-dup-secret\n").unwrap_err(),
        StaticKeys::<String>::parse("sk-bad\u{00e9}secret\n").unwrap_err(),
    ] {
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}

#[tokio::test]
async fn from_file() {
    let path = std::env::temp_dir().join(format!("tower-mcp-auth-keys-{}", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "sk-file-1 alice\nsk-file-2 bob").unwrap();
    drop(file);
    let keys = StaticKeys::<String>::from_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        verdict(&keys, "sk-file-2").await,
        Verdict::Valid("bob".to_owned())
    );

    let err = StaticKeys::<String>::from_file(&path).unwrap_err();
    assert!(matches!(err, StaticKeysError::Io { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn from_env_accepts_commas_and_newlines() {
    std::env::set_var(
        "TOWER_MCP_AUTH_TEST_KEYS",
        "sk-env-1 alice, sk-env-2 bob\nsk-env-3 carol",
    );
    let keys = StaticKeys::<String>::from_env("TOWER_MCP_AUTH_TEST_KEYS").unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(
        verdict(&keys, "sk-env-1").await,
        Verdict::Valid("alice".to_owned())
    );
    assert_eq!(
        verdict(&keys, "sk-env-3").await,
        Verdict::Valid("carol".to_owned())
    );

    let err = StaticKeys::<String>::from_env("TOWER_MCP_AUTH_TEST_KEYS_UNSET").unwrap_err();
    assert!(
        matches!(err, StaticKeysError::EnvNotPresent { .. }),
        "{err:?}"
    );
}

#[cfg(unix)]
#[test]
fn a_non_unicode_variable_is_not_echoed() {
    use std::{ffi::OsStr, os::unix::ffi::OsStrExt};
    std::env::set_var(
        "TOWER_MCP_AUTH_TEST_KEYS_BINARY",
        OsStr::from_bytes(b"sk-secret-\xff"),
    );
    let err = StaticKeys::<String>::from_env("TOWER_MCP_AUTH_TEST_KEYS_BINARY").unwrap_err();
    assert!(
        matches!(err, StaticKeysError::EnvNotUnicode { .. }),
        "{err:?}"
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("secret"), "{shown}");
}

#[tokio::test]
async fn answers_without_allocating_a_future_box() {
    // `Ready` is the whole future: nothing to poll twice, nothing boxed.
    let keys = StaticKeys::new().with_key("sk-a", ());
    let future: std::future::Ready<_> = keys.validate("sk-a");
    assert_eq!(future.into_inner(), Ok(Verdict::Valid(())));
}

#[tokio::test]
async fn behind_the_layer() {
    let layer = McpAuthLayer::new(StaticKeys::new().with_key("sk-ops-1", "ops".to_owned()));
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|req: Request<()>| async move {
                let who = req
                    .extensions()
                    .get::<Authenticated<String>>()
                    .map(|a| a.identity().clone());
                Ok::<_, std::convert::Infallible>(http::Response::new(who.unwrap_or_default()))
            }));
    let call = |key: &'static str| {
        let req = Request::get("/mcp")
            .header("x-litellm-api-key", key)
            .body(())
            .unwrap();
        service.clone().oneshot(req)
    };
    let ok = call("sk-ops-1").await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        call("sk-nope").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

// ---- Permitted upstreams per key ----

#[tokio::test]
async fn key_file_entries_carry_their_upstreams() {
    use tower_mcp_auth::permissions::{KeyIdentity, UpstreamAccess};

    let keys = StaticKeys::<KeyIdentity>::parse(
        "sk-atl=atl alice\n\
         sk-two=atl,PRIV bob\n\
         sk-all carol\n\
         c2stcGFkZGVk==\n",
    )
    .unwrap();
    let identity = |key: &'static str| {
        let keys = &keys;
        async move {
            match verdict(keys, key).await {
                Verdict::Valid(identity) => identity,
                other => panic!("{key}: {other:?}"),
            }
        }
    };
    let alice = identity("sk-atl").await;
    assert_eq!(alice.name(), "alice");
    assert!(alice.may_use("atl") && !alice.may_use("priv"));
    let bob = identity("sk-two").await;
    assert!(bob.may_use("atl") && bob.may_use("priv") && !bob.may_use("github"));
    let carol = identity("sk-all").await;
    assert!(carol.upstreams().is_all());
    // Base64 padding belongs to the key, and such an entry reaches every upstream.
    assert!(identity("c2stcGFkZGVk==").await.upstreams().is_all());
    // The key is the part before the list, never the whole entry.
    assert_eq!(verdict(&keys, "sk-atl=atl").await, Verdict::Unknown);
}

#[test]
fn server_slash_tool_grants_one_tool_and_server_grants_all() {
    use tower_mcp_auth::permissions::{KeyIdentity, Tools};

    let keys =
        StaticKeys::<KeyIdentity>::parse("sk-a=gh/echo,gh/add,atl alice\nsk-b=gh,gh/echo bob\n")
            .unwrap();
    let Some(Ok(Verdict::Valid(alice))) = keys.validate_now("sk-a") else {
        panic!()
    };
    assert_eq!(
        alice.upstreams().tools("gh"),
        Some(&Tools::only(["add", "echo"]))
    );
    assert_eq!(alice.upstreams().tools("atl"), Some(&Tools::all()));
    assert!(!alice.upstreams().may_call("gh", "rm") && !alice.upstreams().allows("priv"));
    // `SERVER` beside `SERVER/TOOL` grants every tool.
    let Some(Ok(Verdict::Valid(bob))) = keys.validate_now("sk-b") else {
        panic!()
    };
    assert_eq!(bob.upstreams().tools("gh"), Some(&Tools::all()));
}

#[test]
fn server_lists_are_refused_where_they_cannot_be_honoured() {
    use tower_mcp_auth::permissions::KeyIdentity;

    // A `String` identity cannot carry a list: an error, not a key that reaches every upstream.
    let err = StaticKeys::<String>::parse("sk-plain\nsk-secret=atl alice\n").unwrap_err();
    assert!(
        matches!(err, StaticKeysError::UpstreamsNotSupported { line: 2 }),
        "{err:?}"
    );
    for bad in [
        "sk-secret=atl,,priv",
        "sk-secret=a/",
        "sk-secret=/b",
        "sk-secret=a%2f/b",
        "sk-secret=atl, x",
    ] {
        let err = StaticKeys::<KeyIdentity>::parse(bad).unwrap_err();
        assert!(
            matches!(err, StaticKeysError::InvalidUpstreams { line: 1 }),
            "{bad}: {err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("secret"));
    }
    // In an environment variable, commas separate entries, so `priv` would become a key of its own.
    std::env::set_var(
        "TOWER_MCP_AUTH_TEST_KEYS_SCOPED",
        "sk-secret=atl,priv alice",
    );
    let err = StaticKeys::<KeyIdentity>::from_env("TOWER_MCP_AUTH_TEST_KEYS_SCOPED").unwrap_err();
    assert!(
        matches!(err, StaticKeysError::UpstreamsInEnv { entry: 1 }),
        "{err:?}"
    );
}
