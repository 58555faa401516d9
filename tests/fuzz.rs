//! Fuzzing of credential parsing and path matching, as long-running proptests behind `#[ignore]` (cargo-fuzz
//! needs a nightly toolchain; these run on stable).
//!
//! ```text
//! FUZZ_SECONDS=60 cargo test --test fuzz -- --ignored --nocapture   # each target for about a minute
//! FUZZ_SEED=1234 cargo test --test fuzz -- --ignored                 # replay from a reported seed
//! ```
//!
//! Each target runs chunks of cases, each chunk from its own seed, until `FUZZ_SECONDS` (default 30) have
//! passed, and prints how many cases it ran. A failure names the seed of its chunk for replay.
//!
//! - `fuzz_credential_parsing`: arbitrary header bytes, names in any case, look-alike names, duplicates, values
//!   around the length cap and arbitrary paths, through the public layer (parsing is crate-private): no panic,
//!   and status, validator call, identity and passthrough marker exactly as the contract's model says.
//! - `fuzz_path_matching`: arbitrary request paths against arbitrary route prefixes:
//!   `PassthroughPolicy::path_prefixes(..).allows(..)` agrees with the model of whole-segment, canonical-only
//!   matching; and a prefix is refused at configuration (a panic, as documented) exactly when it is not an
//!   absolute canonical path.

mod model;
mod support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use model::{Act, Expected};
use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner},
};
use support::{send, Inner};
use tower_mcp_auth::{validate_fn, McpAuthLayer, PassthroughPolicy, PassthroughRequest, Validator};

const CHUNK: u32 = 2_000;
const PREFIX: &str = "/mcp/atlassian";
const METADATA: &str = "https://gw.example/.well-known/oauth-protected-resource/mcp/atlassian";
const CAP: usize = 48;
const KEY_HEADER: &str = "x-litellm-api-key";

fn budget() -> Duration {
    let seconds = std::env::var("FUZZ_SECONDS").map_or(30, |s| {
        s.parse()
            .expect("FUZZ_SECONDS must be a whole number of seconds")
    });
    Duration::from_secs(seconds)
}

fn base_seed() -> u64 {
    std::env::var("FUZZ_SEED").map_or_else(
        |_| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |s| s.parse().expect("FUZZ_SEED must be a number"),
    )
}

/// Runs `test` over `strategy`, a chunk of cases per seed, until the time budget is spent.
fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let (budget, base) = (budget(), base_seed());
    let started = Instant::now();
    let mut chunks = 0u64;
    loop {
        let seed = base.wrapping_add(chunks);
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let config = Config {
            cases: CHUNK,
            failure_persistence: None,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
        if let Err(failure) = TestRunner::new_with_rng(config, rng).run(&strategy, &test) {
            panic!("{name}: {failure}\nreplay with FUZZ_SEED={seed}");
        }
        chunks += 1;
        if started.elapsed() >= budget {
            break;
        }
    }
    eprintln!(
        "fuzz {name}: {} cases in {:.1?} (seeds {base}..={})",
        chunks * u64::from(CHUNK),
        started.elapsed(),
        base.wrapping_add(chunks - 1)
    );
}

// ---- Credential parsing, through the layer ----

/// The validator's answer, a pure function of the credential so the model can know it.
fn act(credential: &str) -> Act {
    let hash = credential
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    match hash % 6 {
        0 => Act::Valid,
        1 => Act::Unknown,
        2 => Act::Denied,
        3 => Act::Error,
        4 => Act::Invalid,
        _ => Act::Hang,
    }
}

fn verdict(credential: &str) -> model::Verdict {
    act(credential).verdict()
}

type Asked = Arc<Mutex<Vec<String>>>;

fn validator(
    asked: Asked,
) -> impl Validator<Identity = String, Error = std::io::Error, Future = impl Send> {
    validate_fn(move |credential: String| {
        asked.lock().unwrap().push(credential.clone());
        act(&credential).perform(credential)
    })
}

#[derive(Clone, Debug)]
struct CredentialCase {
    path: String,
    headers: Vec<(String, Vec<u8>)>,
}

fn header_name() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        4 => Just("authorization".to_owned()),
        4 => Just(KEY_HEADER.to_owned()),
        1 => Just("authorization-foo".to_owned()),
        1 => Just("x-litellm-api-key-2".to_owned()),
        1 => Just("proxy-authorization".to_owned()),
        1 => Just("content-type".to_owned()),
        1 => "[a-z][a-z0-9_-]{0,14}",
    ];
    (name, any::<u64>()).prop_map(|(name, mask)| model::recase(&name, mask))
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let structured = (
        prop_oneof![
            Just(""),
            Just("Bearer "),
            Just("bearer"),
            Just("BEARER  "),
            Just("Basic "),
        ],
        "[ ]{0,2}",
        prop_oneof![
            "[A-Za-z0-9._~+/-]{0,12}={0,3}",
            "[ -~]{0,12}",
            Just("application/grpc".to_owned()),
        ],
        "[ \t]{0,2}",
    )
        .prop_map(|(scheme, lead, token, trail)| {
            format!("{lead}{scheme}{token}{trail}").into_bytes()
        });
    let long = (CAP - 4..CAP + 4, any::<u8>()).prop_map(|(len, fill)| {
        let mut value = b"Bearer ".to_vec();
        value.resize(len, fill);
        value
    });
    prop_oneof![
        4 => structured,
        3 => vec(any::<u8>(), 0..64),
        1 => long,
    ]
    .prop_map(|mut value| {
        // Only what `http` lets into a header value can reach the layer.
        value.retain(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f));
        value
    })
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(PREFIX.to_owned()),
        2 => "(/(mcp|atlassian|x|\\.|\\.\\.|%2e|%2F||;|~)){0,5}/?",
        1 => "/[/.%a-z0-9;~-]{0,16}",
    ]
    .prop_map(|path| {
        if path.is_empty() {
            "/".to_owned()
        } else {
            path
        }
    })
    .prop_filter("a request target", |path| path.parse::<Uri>().is_ok())
}

fn credential_case() -> impl Strategy<Value = CredentialCase> {
    (path(), vec((header_name(), header_value()), 0..6))
        .prop_map(|(path, headers)| CredentialCase { path, headers })
}

fn check_credentials(
    runtime: &tokio::runtime::Runtime,
    case: CredentialCase,
) -> Result<(), TestCaseError> {
    let mut request = Request::post(&case.path);
    for (name, value) in &case.headers {
        request = request.header(name.as_str(), HeaderValue::from_bytes(value).unwrap());
    }
    let request = request.body(()).unwrap();
    let allows = model::path_allows(PREFIX, request.uri().path());
    let grpc = request
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));

    let asked = Asked::default();
    let layer = McpAuthLayer::new(validator(asked.clone()))
        .passthrough(PassthroughPolicy::path_prefixes([PREFIX]))
        .resource_metadata(PREFIX, METADATA)
        .validation_timeout(Duration::from_millis(200))
        .max_credential_len(CAP);
    let inner = Inner::default();
    let answer = runtime.block_on(send(&layer, &inner, request));
    let seen = inner.take();
    let asked = asked.lock().unwrap().clone();

    let outcome = model::decide(
        &model::Request {
            headers: &case.headers,
            key_header: KEY_HEADER,
            max_len: CAP,
            allows,
            has_metadata: true,
        },
        verdict,
    );
    prop_assert_eq!(&asked, &outcome.validated.into_iter().collect::<Vec<_>>());
    match outcome.expected {
        Expected::Admit {
            identity,
            passthrough,
        } => {
            prop_assert_eq!(answer.status, 200);
            prop_assert_eq!(seen.len(), 1);
            prop_assert_eq!(&seen[0].identity, &identity);
            prop_assert_eq!(&seen[0].passthrough, &passthrough);
            prop_assert!(!seen[0].headers.contains_key("authorization"));
            prop_assert!(!seen[0].headers.contains_key(KEY_HEADER));
        }
        Expected::Refuse { status, .. } => {
            prop_assert!(seen.is_empty());
            if grpc {
                prop_assert_eq!(answer.status, 200);
                prop_assert_eq!(&answer.headers["grpc-status"], model::grpc_status(status));
            } else {
                prop_assert_eq!(answer.status, status);
            }
            if status == 401 {
                prop_assert!(answer.headers.contains_key("www-authenticate"));
            }
        }
    }
    Ok(())
}

#[test]
#[ignore = "long-running; bounded by FUZZ_SECONDS, run by .ci/run"]
fn fuzz_credential_parsing() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    fuzz("credential parsing", credential_case(), |case| {
        check_credentials(&runtime, case)
    });
}

// ---- Path matching ----

/// A path-ish string over the characters that matter: separators, dots, percent signs, a few letters.
fn path_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "(/(a|b|ab|\\.|\\.\\.|%2e|%2E%2e|%2f|%41|;|~|)){0,5}/?",
        "[/.%a-b2eEfF;~-]{0,12}",
    ]
}

fn prefixes() -> impl Strategy<Value = Vec<String>> {
    let canonical = prop_oneof![
        1 => Just("/".to_owned()),
        4 => "(/(a|b|ab|a-b|a\\.b)){1,3}/?",
    ];
    vec(canonical, 1..4)
}

fn allows(policy: &PassthroughPolicy, uri: &Uri) -> bool {
    policy.allows(&PassthroughRequest::new(
        &Method::POST,
        uri,
        &HeaderMap::new(),
    ))
}

fn check_paths(
    prefixes: Vec<String>,
    path: String,
    candidate: String,
) -> Result<(), TestCaseError> {
    // Matching: the policy agrees with the model on every request target that parses.
    let policy = PassthroughPolicy::path_prefixes(&prefixes);
    for target in [path.clone(), format!("http://gw.example{path}")] {
        let Ok(uri) = target.parse::<Uri>() else {
            continue;
        };
        let expected = prefixes
            .iter()
            .any(|prefix| model::path_allows(prefix, uri.path()));
        prop_assert_eq!(
            allows(&policy, &uri),
            expected,
            "{} under {:?}",
            uri.path(),
            prefixes
        );
    }

    // Configuration: a prefix is refused exactly when it is not absolute and canonical, both for passthrough
    // and for resource metadata.
    let canonical = model::is_canonical_prefix(&candidate);
    let accepted = PassthroughPolicy::try_path_prefixes([&candidate]).is_ok();
    prop_assert_eq!(accepted, canonical, "passthrough prefix {:?}", candidate);
    let accepted = McpAuthLayer::new(())
        .try_resource_metadata(&candidate, METADATA)
        .is_ok();
    prop_assert_eq!(accepted, canonical, "metadata prefix {:?}", candidate);
    Ok(())
}

#[test]
#[ignore = "long-running; bounded by FUZZ_SECONDS, run by .ci/run"]
fn fuzz_path_matching() {
    let strategy = (
        prefixes(),
        path_text().prop_map(|p| {
            if p.starts_with('/') {
                p
            } else {
                format!("/{p}")
            }
        }),
        path_text(),
    );
    fuzz("path matching", strategy, |(prefixes, path, candidate)| {
        check_paths(prefixes, path, candidate)
    });
}
