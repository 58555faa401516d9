//! Property tests over generated requests: random header names (in any case), values, orders and duplicates,
//! random paths (dot segments, percent-encoding, `//`), random verdicts, validator errors, latencies and hangs.
//!
//! Each case is checked twice: against the reference model of the contract (`tests/model`), and against the
//! invariants the contract promises whatever the table says:
//! - the inner service never runs when the key header is present and not valid;
//! - the inner service never runs with neither an identity nor a passthrough marker;
//! - `OAuthPassthrough` appears only on paths that opted in, and only for a bearer the validator called
//!   `Unknown` or one sent beside a valid gateway key (never after `Denied`, an error or a timeout);
//! - no credential header reaches the inner service, and every other header does, untouched;
//! - every 401 carries a `Bearer` challenge; no answer echoes a credential; the validator is asked at most once.
//!
//! Time is paused, so latencies and hangs past the 200 ms timeout cost nothing.
//!
//! A third property covers the outgoing side: a hostile upstream's `WWW-Authenticate` challenge, relayed with
//! `upstream::with_resource_metadata`, keeps none of the upstream's `resource_metadata` values.
//!
//! The path property here checks the layer against a model that follows the same recipe; `path_oracle.rs`
//! checks it against components that share nothing with it (axum's router, the `url` crate's normaliser).

mod model;
mod support;

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{header::WWW_AUTHENTICATE, HeaderName, HeaderValue, Method, Request};
use model::{Act, Challenge, Expected};
use proptest::{collection::vec, prelude::*};
use support::{send, Answer, Inner, Seen};
use tower_mcp_auth::{
    upstream::with_resource_metadata, validate_fn, McpAuthLayer, PassthroughPolicy, Validator,
    Verdict,
};

const PREFIX: &str = "/mcp/atlassian";
const METADATA: &str = "https://gw.example/.well-known/oauth-protected-resource/mcp/atlassian";
const TIMEOUT: Duration = Duration::from_millis(200);
/// A small credential cap, so generated values cross it often.
const CAP: usize = 64;
/// Credentials with a verdict of their own in each script; none appears in any answer body.
const POOL: [&str; 5] = ["sk-alpha", "sk-bravo", "sk-charlie", "up-delta", "up-echo"];
const KEY_HEADERS: [&str; 2] = ["x-litellm-api-key", "x-gateway-key"];

/// What the validator does with one credential: `act`, after `latency_ms`.
#[derive(Clone, Copy, Debug)]
struct Behaviour {
    act: Act,
    latency_ms: u64,
}

/// The validator's script for one case: a behaviour per pool credential, and one for every other credential.
#[derive(Clone, Debug)]
struct Script {
    pool: [Behaviour; POOL.len()],
    other: Behaviour,
}

impl Script {
    fn behaviour(&self, credential: &str) -> Behaviour {
        POOL.iter()
            .position(|p| *p == credential)
            .map_or(self.other, |i| self.pool[i])
    }

    fn verdict(&self, credential: &str) -> model::Verdict {
        self.behaviour(credential).act.verdict()
    }
}

type Asked = Arc<Mutex<Vec<String>>>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A validator that records what it is asked and follows `script`; identities are `id:<credential>`.
fn validator(
    script: Script,
    asked: Asked,
) -> impl Validator<
    Identity = String,
    Error = std::io::Error,
    Future = BoxFuture<Result<Verdict<String>, std::io::Error>>,
> {
    validate_fn(move |credential: String| {
        asked.lock().unwrap().push(credential.clone());
        let behaviour = script.behaviour(&credential);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(behaviour.latency_ms)).await;
            behaviour.act.perform(format!("id:{credential}")).await
        }) as BoxFuture<_>
    })
}

/// One generated request and the layer configuration it meets.
#[derive(Clone, Debug)]
struct Case {
    method: Method,
    path: String,
    key_header: &'static str,
    /// Names in the case they are sent in, raw values, in the order sent.
    headers: Vec<(String, Vec<u8>)>,
    script: Script,
}

impl Case {
    fn request(&self) -> Request<()> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(&self.path);
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), HeaderValue::from_bytes(value).unwrap());
        }
        request.body(()).unwrap()
    }

    /// The path as a router sees it.
    fn uri_path(&self) -> String {
        self.request().uri().path().to_owned()
    }

    fn allows(&self) -> bool {
        model::path_allows(PREFIX, &self.uri_path())
    }

    fn model(&self) -> model::Outcome {
        let request = model::Request {
            headers: &self.headers,
            key_header: self.key_header,
            max_len: CAP,
            allows: self.allows(),
            has_metadata: true,
        };
        model::decide(&request, |credential| self.script.verdict(credential))
    }

    fn sent(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    fn is_grpc(&self) -> bool {
        self.sent("content-type")
            .first()
            .is_some_and(|v| v.starts_with(b"application/grpc"))
    }

    fn is_credential_header(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case(self.key_header)
    }

    /// Sends the request through the layer, in a runtime whose clock is paused.
    fn run(&self) -> (Answer, Vec<Seen>, Vec<String>) {
        let asked = Asked::default();
        let layer = McpAuthLayer::new(validator(self.script.clone(), asked.clone()))
            .key_header(HeaderName::from_static(self.key_header))
            .passthrough(PassthroughPolicy::path_prefixes([PREFIX]))
            .resource_metadata(PREFIX, METADATA)
            .validation_timeout(TIMEOUT)
            .max_credential_len(CAP);
        let inner = Inner::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let answer = runtime.block_on(send(&layer, &inner, self.request()));
        let asked = asked.lock().unwrap().clone();
        (answer, inner.take(), asked)
    }
}

fn challenge_value(challenge: Challenge) -> Option<String> {
    Some(match challenge {
        Challenge::None => return None,
        Challenge::Bare => "Bearer".to_owned(),
        Challenge::InvalidToken => "Bearer error=\"invalid_token\"".to_owned(),
        Challenge::InvalidRequest => "Bearer error=\"invalid_request\"".to_owned(),
        Challenge::Metadata => format!("Bearer resource_metadata=\"{METADATA}\""),
        Challenge::MetadataInvalidToken => {
            format!("Bearer error=\"invalid_token\", resource_metadata=\"{METADATA}\"")
        }
    })
}

/// The layer did what the model of the contract says.
fn check_against_model(case: &Case, answer: &Answer, seen: &[Seen], asked: &[String]) {
    let outcome = case.model();
    assert_eq!(
        asked,
        outcome.validated.as_slice(),
        "the validator was asked about the wrong credential"
    );
    let challenge = answer
        .headers
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    match outcome.expected {
        Expected::Admit {
            identity,
            passthrough,
        } => {
            assert_eq!((answer.status, answer.body.as_str()), (200, "inner"));
            assert_eq!(seen.len(), 1, "the inner service must run once");
            assert_eq!(seen[0].identity, identity.map(|c| format!("id:{c}")));
            assert_eq!(seen[0].passthrough, passthrough);
        }
        Expected::Refuse {
            status,
            challenge: expected_challenge,
            error,
        } => {
            assert!(
                seen.is_empty(),
                "a refused request reached the inner service"
            );
            assert_eq!(challenge, challenge_value(expected_challenge));
            if case.is_grpc() {
                assert_eq!(answer.status, 200);
                assert_eq!(answer.headers["grpc-status"], model::grpc_status(status));
                assert_eq!(answer.body, "");
            } else {
                assert_eq!(answer.status, status);
                assert_eq!(answer.headers["content-type"], "application/json");
                let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
                assert_eq!(body["error"], error);
            }
        }
    }
}

/// The contract's invariants, checked without the model.
fn check_invariants(case: &Case, answer: &Answer, seen: &[Seen], asked: &[String]) {
    assert!(asked.len() <= 1, "the validator was asked more than once");
    let keys = case.sent(case.key_header);

    if let Some(seen) = seen.first() {
        // The inner service runs with an identity or a passthrough marker, never with neither.
        assert!(seen.identity.is_some() || seen.passthrough.is_some());

        // A key header that is not valid never lets the request through: with a key header sent, the inner
        // service only runs with the identity of that very key, which the validator called valid.
        if let [key] = keys.as_slice() {
            let credential = seen
                .identity
                .as_deref()
                .and_then(|id| id.strip_prefix("id:"))
                .expect(
                    "a request with a key header reached the inner service without an identity",
                );
            assert_eq!(case.script.verdict(credential), model::Verdict::Valid);
            assert!(String::from_utf8_lossy(key).contains(credential));
        }

        // A passthrough marker: only on an opted-in path, and only for a token the validator called unknown,
        // or one sent beside a valid key and different from it.
        if let Some(token) = &seen.passthrough {
            assert!(case.allows(), "passthrough on a path that did not opt in");
            match &seen.identity {
                None => assert_eq!(case.script.verdict(token), model::Verdict::Unknown),
                Some(identity) => {
                    assert_eq!(keys.len(), 1, "dual credential without a key header");
                    assert_ne!(identity.strip_prefix("id:"), Some(token.as_str()));
                }
            }
            assert_eq!(
                asked,
                [seen
                    .identity
                    .as_deref()
                    .map_or(token.as_str(), |id| &id[3..])]
            );
        }

        // No credential header survives; every other header arrives untouched.
        let mut expected: Vec<(String, Vec<u8>)> = case
            .headers
            .iter()
            .filter(|(name, _)| !case.is_credential_header(name))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect();
        let mut arrived: Vec<(String, Vec<u8>)> = seen
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        expected.sort();
        arrived.sort();
        assert_eq!(arrived, expected);
    }

    // Every 401 has a `Bearer` challenge (gRPC answers carry the same challenge beside grpc-status 16).
    let unauthorized =
        answer.status == 401 || answer.headers.get("grpc-status").is_some_and(|s| s == "16");
    if unauthorized {
        let challenge = answer
            .headers
            .get(WWW_AUTHENTICATE)
            .expect("a 401 without a challenge");
        assert!(challenge.as_bytes().starts_with(b"Bearer"));
    }

    // No answer of the layer's own echoes a credential.
    if seen.is_empty() {
        for (_, value) in case
            .headers
            .iter()
            .filter(|(n, _)| case.is_credential_header(n))
        {
            let value = String::from_utf8_lossy(value);
            let words = value.split(' ').filter(|w| w.len() >= 7);
            // The scheme's name is the layer's own vocabulary ("use Bearer"), with or without punctuation
            // around it (`Bearer"` is found in a JSON string ending in "Bearer"); it is no credential.
            let scheme = |w: &str| {
                w.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                    .eq_ignore_ascii_case("bearer")
            };
            for word in words.filter(|w| !scheme(w)) {
                assert!(!answer.body.contains(word), "the answer echoes {word:?}");
                for (_, header) in &answer.headers {
                    assert!(!String::from_utf8_lossy(header.as_bytes()).contains(word));
                }
            }
        }
    }
}

// ---- Generators ----

fn behaviour() -> impl Strategy<Value = Behaviour> {
    let act = prop_oneof![
        3 => Just(Act::Valid),
        3 => Just(Act::Unknown),
        2 => Just(Act::Denied),
        1 => Just(Act::Invalid),
        1 => Just(Act::Error),
        1 => Just(Act::Hang),
    ];
    (act, 0u64..20).prop_map(|(act, latency_ms)| Behaviour { act, latency_ms })
}

fn script() -> impl Strategy<Value = Script> {
    (proptest::array::uniform5(behaviour()), behaviour())
        .prop_map(|(pool, other)| Script { pool, other })
}

/// Headers that are not credentials, some of them look-alikes of credential headers.
fn other_header_name() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("authorization-foo"),
        Just("x-authorization"),
        Just("proxy-authorization"),
        Just("x-litellm-api-key-2"),
        Just("connection"),
        Just("x-request-id"),
    ];
    (name, any::<u64>()).prop_map(|(name, mask)| model::recase(name, mask))
}

/// Token-ish text: pool credentials, random `b64token`s, any printable ASCII, nothing.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0..POOL.len()).prop_map(|i| POOL[i].to_owned()),
        3 => "rnd-[A-Za-z0-9._~+/-]{1,10}={0,2}",
        1 => "[ -~]{0,12}",
        1 => Just(String::new()),
    ]
}

/// Bytes that `http::HeaderValue` refuses (CR, LF, NUL and the other controls but tab, and DEL) are dropped:
/// they cannot reach the layer in-process (see `tests/header_abuse.rs` for the wire).
fn sendable(mut value: Vec<u8>) -> Vec<u8> {
    value.retain(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f));
    value
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let clean = (
        prop_oneof![Just("Bearer "), Just("bearer "), Just("BEARER "), Just("")],
        token(),
    )
        .prop_map(|(scheme, token)| format!("{scheme}{token}").into_bytes());
    let scheme = prop_oneof![
        Just(""),
        Just("Bearer "),
        Just("bEaReR "),
        Just("Bearer"),
        Just("Bearer  "),
        Just("Bearer\t"),
        Just("Bearer Bearer "),
        Just("Basic "),
        Just("token "),
    ];
    let messy = (
        scheme,
        " {0,2}",
        token(),
        " {0,2}",
        vec(any::<u8>(), 0..2),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(scheme, lead, token, trail, noise, at)| {
            let mut value = format!("{lead}{scheme}{token}{trail}").into_bytes();
            let at = at.index(value.len() + 1);
            value.splice(at..at, noise);
            value
        });
    // Values around the cap, so both sides of it come up.
    let long = (CAP - 8..CAP + 8).prop_map(|len| {
        let mut value = b"Bearer ".to_vec();
        value.resize(len, b'a');
        value
    });
    prop_oneof![
        12 => clean,
        4 => messy,
        1 => long,
        1 => vec(any::<u8>(), 0..16),
        1 => Just(b"authorization, x-litellm-api-key".to_vec()),
    ]
    .prop_map(sendable)
}

/// No value, one, or (rarely) two, under `name` in a random case.
fn slot(
    name: impl Strategy<Value = &'static str> + 'static,
) -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let header = (name, any::<u64>(), header_value())
        .prop_map(|(name, mask, value)| (model::recase(name, mask), value))
        .boxed();
    prop_oneof![
        4 => Just(Vec::new()),
        7 => vec(header.clone(), 1..=1),
        1 => vec(header, 2..=2),
    ]
}

/// A header list: the credential headers (each configured key header name may be the other one's), others,
/// then shuffled.
fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let key_name = prop_oneof![3 => Just(KEY_HEADERS[0]), 1 => Just(KEY_HEADERS[1])];
    (
        slot(key_name),
        slot(Just("authorization")),
        vec((other_header_name(), header_value()), 0..3),
    )
        .prop_map(|(keys, authorizations, others)| {
            keys.into_iter()
                .chain(authorizations)
                .chain(others)
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        4 => Just("mcp"),
        4 => Just("atlassian"),
        4 => Just("github"),
        4 => Just("x"),
        1 => Just("atlassian-evil"),
        1 => Just("ATLASSIAN"),
        1 => Just("atlassian;x"),
        1 => Just("."),
        1 => Just(".."),
        1 => Just(""),
        1 => Just("%2e%2e"),
        1 => Just("%2e"),
        1 => Just("%61tlassian"),
        1 => Just("%2F"),
    ];
    let tail = vec(segment, 0..3).prop_map(|s| s.iter().map(|s| format!("/{s}")).collect());
    let start = prop_oneof![
        6 => Just(PREFIX),
        1 => Just("/mcp"),
        1 => Just(""),
        1 => Just("/mcp/atlassian-evil"),
    ];
    let end = prop_oneof![
        Just(""),
        Just("/"),
        Just("?next=/../github"),
        Just("?%2e%2e")
    ];
    (start, tail, end).prop_map(|(start, tail, end): (_, String, _)| {
        let path = format!("{start}{tail}{end}");
        if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        }
    })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::POST),
        Just(Method::GET),
        Just(Method::DELETE),
        Just(Method::OPTIONS),
    ]
}

prop_compose! {
    fn case()(
        method in method(),
        path in path(),
        key_header in prop_oneof![3 => Just(KEY_HEADERS[0]), 1 => Just(KEY_HEADERS[1])],
        headers in headers(),
        grpc in prop_oneof![8 => Just(None), 1 => Just(Some("application/grpc")), 1 => Just(Some("application/json"))],
        grpc_at in any::<prop::sample::Index>(),
        script in script(),
    ) -> Case {
        let mut headers = headers;
        if let Some(content_type) = grpc {
            let at = grpc_at.index(headers.len() + 1);
            headers.insert(at, ("content-type".to_owned(), content_type.as_bytes().to_vec()));
        }
        Case { method, path, key_header, headers, script }
    }
}

/// A case the generator once found: a bare scheme followed by a quote (`Bearer"`). The 401's own text ends a
/// JSON string with "Bearer", which is the scheme's name, not an echoed credential.
#[test]
fn a_scheme_with_punctuation_is_not_an_echoed_credential() {
    let valid = Behaviour {
        act: Act::Valid,
        latency_ms: 0,
    };
    let case = Case {
        method: Method::POST,
        path: "/mcp/atlassian".to_owned(),
        key_header: KEY_HEADERS[0],
        headers: vec![("authorization".to_owned(), b"Bearer\"".to_vec())],
        script: Script {
            pool: [valid; POOL.len()],
            other: valid,
        },
    };
    let (answer, seen, asked) = case.run();
    assert_eq!(answer.status, 401);
    check_invariants(&case, &answer, &seen, &asked);
    check_against_model(&case, &answer, &seen, &asked);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_requests_follow_the_contract(case in case()) {
        let (answer, seen, asked) = case.run();
        check_invariants(&case, &answer, &seen, &asked);
        check_against_model(&case, &answer, &seen, &asked);
    }

    /// Paths alone: a lone bearer the validator does not know passes through exactly where the path is under
    /// the opted-in prefix and canonical; a request without credentials is pointed at the route's metadata
    /// exactly there.
    #[test]
    fn paths_opt_in_exactly_where_the_contract_says(path in path(), unknown in any::<bool>()) {
        let other = Behaviour { act: Act::Unknown, latency_ms: 0 };
        let headers = if unknown {
            vec![("authorization".to_owned(), b"Bearer rnd-upstream-token".to_vec())]
        } else {
            Vec::new()
        };
        let case = Case {
            method: Method::POST,
            path,
            key_header: KEY_HEADERS[0],
            headers,
            script: Script { pool: [other; POOL.len()], other },
        };
        let (answer, seen, asked) = case.run();
        check_invariants(&case, &answer, &seen, &asked);
        check_against_model(&case, &answer, &seen, &asked);
        match (unknown, case.allows()) {
            (true, true) => prop_assert_eq!(seen[0].passthrough.as_deref(), Some("rnd-upstream-token")),
            (true, false) => prop_assert_eq!(answer.status, 401),
            (false, allows) => prop_assert_eq!(
                answer.headers[WWW_AUTHENTICATE].as_bytes().ends_with(b"mcp/atlassian\""),
                allows
            ),
        }
    }
}

// ---- A hostile upstream's challenge ----

const GATEWAY_METADATA: &str = "https://gw.example/.well-known/oauth-protected-resource/mcp/x";

/// One auth-param of an upstream's challenge: its own metadata (named in any case, quoted or not, with or
/// without spaces around `=`), or an ordinary parameter.
fn challenge_param() -> impl Strategy<Value = String> {
    let metadata = (
        any::<u64>(),
        prop_oneof![Just(""), Just(" ")],
        any::<bool>(),
        "[a-z]{1,6}",
    )
        .prop_map(|(mask, space, quoted, path)| {
            let name = model::recase("resource_metadata", mask);
            let url = format!("https://evil.example/{path}");
            let value = if quoted { format!("\"{url}\"") } else { url };
            format!("{name}{space}={space}{value}")
        });
    let other = prop_oneof![
        Just(r#"error="invalid_token""#.to_owned()),
        Just(r#"scope="read write""#.to_owned()),
        Just(r#"realm="up""#.to_owned()),
        Just("error=insufficient_scope".to_owned()),
    ];
    prop_oneof![2 => metadata, 1 => other]
}

/// Challenges: one to three, `Bearer` in any case, each with a few parameters.
fn hostile_challenge() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![Just("Bearer"), Just("bearer"), Just("BEARER")];
    let challenge = (scheme, vec(challenge_param(), 0..4))
        .prop_map(|(scheme, params)| format!("{scheme} {}", params.join(", ")).trim().to_owned());
    vec(challenge, 1..3).prop_map(|challenges| challenges.join(", "))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Relayed through the gateway, an upstream's challenge keeps none of the upstream's metadata, however
    /// many times and however it wrote the parameter: each value becomes the gateway's.
    #[test]
    fn a_relayed_challenge_never_keeps_the_upstreams_metadata(challenge in hostile_challenge()) {
        let value = HeaderValue::from_str(&challenge).unwrap();
        let relayed = with_resource_metadata(&value, GATEWAY_METADATA).unwrap();
        let relayed = relayed.to_str().unwrap();
        prop_assert!(!relayed.contains("evil.example"), "{} -> {}", challenge, relayed);
        prop_assert!(
            relayed.matches(GATEWAY_METADATA).count() >= challenge.matches("evil.example").count(),
            "{} -> {}", challenge, relayed
        );
    }
}
