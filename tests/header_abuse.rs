//! Hostile headers and paths, one named test per abuse case.
//!
//! In-process tests send `http::Request`s through the layer. Bytes `http::HeaderValue` refuses (CR, LF, NUL,
//! DEL and other controls) cannot be built in-process, so the `wire_` tests write raw bytes to a real axum
//! server on 127.0.0.1 and show who answers: hyper itself (an empty-bodied 400 or 431, before any layer runs),
//! or the layer (a JSON body with its challenge). Every test also checks whether the validator was asked and
//! whether the inner service ran.

mod support;

use std::{net::SocketAddr, time::Duration};

use axum::{body::Body, extract::Path, routing::any, Router};
use http::{HeaderValue, Request};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use support::{layer, request, scripted_store, send, Answer, Calls, Inner, Seen, METADATA_URL};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tower::{Layer, ServiceExt};
use tower_mcp_auth::{
    upstream::{with_resource_metadata, ForwardCredentialsLayer, UpstreamConfig},
    McpAuthLayer, PassthroughPolicy,
};

const KEY: &str = "x-litellm-api-key";
const AUTH: &str = "authorization";
const ATL: &str = "/mcp/atlassian";
const GH: &str = "/mcp/github";
const INVALID_REQUEST: &str = "Bearer error=\"invalid_request\"";
const INVALID_TOKEN: &str = "Bearer error=\"invalid_token\"";

/// What one request did: the answer, what the inner service saw, what the key store was asked.
struct Trace {
    answer: Answer,
    seen: Vec<Seen>,
    asked: Vec<String>,
}

impl Trace {
    fn challenge(&self) -> Option<&str> {
        self.answer
            .headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap())
    }

    /// The layer answered `status` with `challenge`, without asking the validator or calling the inner service.
    fn refused_before_validation(&self, status: u16, challenge: Option<&str>) {
        assert_eq!(self.answer.status, status, "{}", self.answer.body);
        assert_eq!(self.challenge(), challenge);
        assert!(self.asked.is_empty(), "validator asked: {:?}", self.asked);
        assert!(self.seen.is_empty(), "the inner service ran");
    }

    /// The inner service ran once, with this identity and passthrough token, and without credential headers.
    fn admitted(&self, identity: Option<&str>, passthrough: Option<&str>) {
        assert_eq!(self.answer.status, 200, "{}", self.answer.body);
        assert_eq!(self.seen.len(), 1);
        let seen = &self.seen[0];
        assert_eq!(seen.identity.as_deref(), identity);
        assert_eq!(seen.passthrough.as_deref(), passthrough);
        assert!(!seen.headers.contains_key(AUTH));
        assert!(!seen.headers.contains_key(KEY));
    }
}

/// Sends `request` through the layer the decision table uses (passthrough on `/mcp/atlassian` only).
async fn through(request: Request<()>) -> Trace {
    let calls = Calls::default();
    let inner = Inner::default();
    let answer = send(&layer(scripted_store(calls.clone())), &inner, request).await;
    Trace {
        answer,
        seen: inner.take(),
        asked: calls.take(),
    }
}

async fn through_raw(path: &str, headers: &[(&str, &[u8])]) -> Trace {
    through(request(path, headers)).await
}

// ---- Duplicates and case ----

#[tokio::test]
async fn duplicate_key_headers_in_different_cases_are_one_name_and_refused() {
    let request = Request::post(GH)
        .header("X-LiteLLM-Api-Key", "sk-good")
        .header("x-litellm-api-key", "sk-other-good")
        .body(())
        .unwrap();
    through(request)
        .await
        .refused_before_validation(400, Some(INVALID_REQUEST));
}

#[tokio::test]
async fn duplicate_authorization_in_different_cases_is_refused() {
    let request = Request::post(ATL)
        .header("AUTHORIZATION", "Bearer sk-good")
        .header("Authorization", "Bearer upstream-oauth-token")
        .body(())
        .unwrap();
    through(request)
        .await
        .refused_before_validation(400, Some(INVALID_REQUEST));
}

#[tokio::test]
async fn duplicate_identical_credentials_are_refused_too() {
    for name in [KEY, AUTH] {
        let value: &[u8] = if name == KEY {
            b"sk-good"
        } else {
            b"Bearer sk-good"
        };
        through_raw(GH, &[(name, value), (name, value)])
            .await
            .refused_before_validation(400, Some(INVALID_REQUEST));
    }
}

#[tokio::test]
async fn a_single_key_header_in_any_case_is_the_key_header() {
    for name in ["X-LITELLM-API-KEY", "x-LiteLLM-api-KEY"] {
        let request = Request::post(GH).header(name, "sk-good").body(()).unwrap();
        let trace = through(request).await;
        trace.admitted(Some("alice"), None);
        assert_eq!(trace.asked, ["sk-good"]);
    }
}

#[tokio::test]
async fn the_bearer_scheme_in_any_case_is_bearer() {
    for value in [
        "Bearer sk-good",
        "bearer sk-good",
        "BEARER sk-good",
        "bEaReR sk-good",
    ] {
        through_raw(GH, &[(AUTH, value.as_bytes())])
            .await
            .admitted(Some("alice"), None);
    }
}

// ---- Spaces, tabs, obs-text, non-UTF-8 ----

#[tokio::test]
async fn extra_spaces_around_scheme_and_token_are_trimmed() {
    for value in [
        "   Bearer sk-good",
        "Bearer     sk-good",
        "Bearer sk-good     ",
    ] {
        let trace = through_raw(GH, &[(AUTH, value.as_bytes())]).await;
        trace.admitted(Some("alice"), None);
        assert_eq!(trace.asked, ["sk-good"]);
    }
    through_raw(GH, &[(KEY, b"  Bearer   sk-good  ")])
        .await
        .admitted(Some("alice"), None);
}

#[tokio::test]
async fn tabs_in_a_credential_are_refused_not_trimmed() {
    for value in [
        &b"Bearer\tsk-good"[..],
        b"\tBearer sk-good",
        b"Bearer sk-good\t",
        b"Bearer \tsk-good",
    ] {
        through_raw(GH, &[(AUTH, value)])
            .await
            .refused_before_validation(400, Some(INVALID_REQUEST));
        through_raw(GH, &[(KEY, value)])
            .await
            .refused_before_validation(400, Some(INVALID_REQUEST));
    }
}

#[tokio::test]
async fn obs_text_in_authorization_is_refused_even_beside_a_valid_key() {
    // Never "no usable Authorization, so admit on the key alone".
    through_raw(
        ATL,
        &[
            (KEY, b"sk-good"),
            (AUTH, b"Bearer upstream-\x80oauth-token"),
        ],
    )
    .await
    .refused_before_validation(400, Some(INVALID_REQUEST));
}

#[tokio::test]
async fn obs_text_in_the_key_header_is_refused_not_treated_as_absent() {
    // Were the key ignored, the bearer alone would pass through on this route.
    through_raw(
        ATL,
        &[
            (KEY, b"sk-\xa0good"),
            (AUTH, b"Bearer upstream-oauth-token"),
        ],
    )
    .await
    .refused_before_validation(400, Some(INVALID_REQUEST));
}

#[tokio::test]
async fn non_utf8_bytes_are_refused() {
    for value in [
        &b"Bearer \xff\xfe"[..],
        b"Bearer sk-good\xc3",
        b"\xc0\xafBearer sk-good",
    ] {
        through_raw(GH, &[(AUTH, value)])
            .await
            .refused_before_validation(400, Some(INVALID_REQUEST));
    }
}

#[tokio::test]
async fn utf8_beyond_ascii_is_refused() {
    for value in [
        "Bearer tökén",
        "Bearer sk-good\u{200b}",
        "Bearer\u{a0}sk-good",
    ] {
        through_raw(GH, &[(AUTH, value.as_bytes())])
            .await
            .refused_before_validation(400, Some(INVALID_REQUEST));
    }
}

#[test]
fn cr_lf_nul_and_del_cannot_be_sent_in_process() {
    // Why the `wire_` tests below exist: `http` refuses these bytes in any header value.
    for byte in [b'\r', b'\n', 0, 0x7f, 0x01, 0x1b] {
        let value = [b"Bearer sk-".as_slice(), &[byte], b"good"].concat();
        assert!(HeaderValue::from_bytes(&value).is_err(), "{byte:#x}");
    }
}

// ---- Length ----

#[tokio::test]
async fn overlong_authorization_is_431_without_validation() {
    let mut value = b"Bearer ".to_vec();
    value.resize(8 * 1024 + 1, b'a');
    through_raw(ATL, &[(AUTH, &value)])
        .await
        .refused_before_validation(431, None);
}

#[tokio::test]
async fn overlong_key_header_is_431_without_validation() {
    let value = vec![b'k'; 8 * 1024 + 1];
    through_raw(GH, &[(KEY, &value)])
        .await
        .refused_before_validation(431, None);
}

#[tokio::test]
async fn the_cap_counts_raw_bytes_padding_included() {
    // 8 KiB exactly, mostly padding: parsed, trimmed, valid.
    let mut at_cap = b"Bearer sk-good".to_vec();
    at_cap.resize(8 * 1024, b' ');
    through_raw(GH, &[(AUTH, &at_cap)])
        .await
        .admitted(Some("alice"), None);
    // One byte more: 431, however short the token inside.
    at_cap.push(b' ');
    through_raw(GH, &[(AUTH, &at_cap)])
        .await
        .refused_before_validation(431, None);
}

#[tokio::test]
async fn overlong_garbage_is_431_before_its_bytes_are_looked_at() {
    let value = vec![0x80; 8 * 1024 + 1];
    through_raw(GH, &[(AUTH, &value)])
        .await
        .refused_before_validation(431, None);
}

// ---- `Bearer` inside a token ----

#[tokio::test]
async fn bearer_twice_is_a_token_with_a_space_and_refused() {
    through_raw(GH, &[(AUTH, b"Bearer Bearer sk-good")])
        .await
        .refused_before_validation(400, Some(INVALID_REQUEST));
    through_raw(GH, &[(KEY, b"Bearer Bearer sk-good")])
        .await
        .refused_before_validation(400, Some(INVALID_REQUEST));
}

#[tokio::test]
async fn bearer_inside_a_token_is_part_of_the_token() {
    let trace = through_raw(GH, &[(AUTH, b"Bearer sk-goodBearer")]).await;
    assert_eq!(trace.asked, ["sk-goodBearer"]);
    assert_eq!(trace.answer.status, 401);
    assert_eq!(trace.challenge(), Some(INVALID_TOKEN));
    assert!(trace.seen.is_empty());

    // In the key header, a key named like the scheme is a key, not an empty value.
    let trace = through_raw(GH, &[(KEY, b"Bearer bearer")]).await;
    assert_eq!(trace.asked, ["bearer"]);
    assert_eq!(trace.answer.status, 401);
}

#[tokio::test]
async fn a_scheme_glued_to_its_token_is_a_foreign_scheme() {
    for value in [
        &b"Bearersk-good"[..],
        b"BearerBearer sk-good",
        b"Bearer=sk-good",
    ] {
        through_raw(GH, &[(AUTH, value)])
            .await
            .refused_before_validation(401, Some("Bearer"));
    }
}

// ---- Look-alike names ----

const LOOK_ALIKES: [&str; 9] = [
    "authorization-foo",
    "x-authorization",
    "authorization_",
    "proxy-authorization",
    "www-authenticate",
    "x-litellm-api-key-2",
    "x-litellm-api-keys",
    "x_litellm_api_key",
    "litellm-api-key",
];

#[tokio::test]
async fn look_alike_header_names_are_not_credentials() {
    for name in LOOK_ALIKES {
        // Only a look-alike: no credential was sent, so the bare challenge, and nothing is validated.
        through_raw(ATL, &[(name, b"Bearer sk-good")])
            .await
            .refused_before_validation(
                401,
                Some(&format!("Bearer resource_metadata=\"{METADATA_URL}\"")),
            );
        through_raw(GH, &[(name, b"sk-good")])
            .await
            .refused_before_validation(401, Some("Bearer"));
    }
}

#[tokio::test]
async fn look_alike_headers_never_become_a_passthrough() {
    for name in LOOK_ALIKES {
        let trace = through_raw(
            ATL,
            &[(KEY, b"sk-good"), (name, b"Bearer upstream-oauth-token")],
        )
        .await;
        trace.admitted(Some("alice"), None);
        // Not a credential header, so not the layer's to remove.
        assert_eq!(trace.seen[0].headers[name], "Bearer upstream-oauth-token");
    }
}

// ---- `Connection: authorization` ----

#[tokio::test]
async fn connection_listing_authorization_does_not_hide_it() {
    let trace = through_raw(
        GH,
        &[
            (AUTH, b"Bearer made-up-a"),
            ("connection", b"authorization"),
        ],
    )
    .await;
    assert_eq!(trace.asked, ["made-up-a"]);
    assert_eq!(trace.answer.status, 401);
    assert!(trace.seen.is_empty());

    let trace = through_raw(
        GH,
        &[("connection", b"authorization"), (AUTH, b"Bearer sk-good")],
    )
    .await;
    trace.admitted(Some("alice"), None);
    assert_eq!(trace.seen[0].headers["connection"], "authorization");
}

#[tokio::test]
async fn connection_listing_the_key_header_does_not_hide_a_blocked_key() {
    let trace = through_raw(
        ATL,
        &[
            ("connection", b"x-litellm-api-key, authorization"),
            (KEY, b"sk-blocked"),
            (AUTH, b"Bearer upstream-oauth-token"),
        ],
    )
    .await;
    assert_eq!(trace.asked, ["sk-blocked"]);
    assert_eq!(trace.answer.status, 403);
    assert!(trace.seen.is_empty());
}

// ---- Paths ----

/// Checks that `path` does not opt in: an unknown bearer gets 401 with a bare challenge, no credentials get
/// a challenge that names no route's metadata, and a dual credential loses its bearer.
async fn never_opts_in(path: &str) {
    let trace = through_raw(path, &[(AUTH, b"Bearer upstream-oauth-token")]).await;
    assert_eq!(trace.asked, ["upstream-oauth-token"], "{path}");
    assert_eq!(trace.answer.status, 401, "{path}");
    assert_eq!(trace.challenge(), Some(INVALID_TOKEN), "{path}");
    assert!(trace.seen.is_empty(), "{path}");

    through_raw(path, &[])
        .await
        .refused_before_validation(401, Some("Bearer"));

    through_raw(
        path,
        &[(KEY, b"sk-good"), (AUTH, b"Bearer upstream-oauth-token")],
    )
    .await
    .admitted(Some("alice"), None);
}

#[tokio::test]
async fn paths_under_the_prefix_opt_in() {
    // The positive control for the path tests below.
    for path in [
        "/mcp/atlassian",
        "/mcp/atlassian/",
        "/mcp/atlassian/sse",
        "/mcp/atlassian?next=/../github",
        "http://gw.example/mcp/atlassian/x",
    ] {
        through_raw(path, &[(AUTH, b"Bearer upstream-oauth-token")])
            .await
            .admitted(None, Some("upstream-oauth-token"));
    }
}

#[tokio::test]
async fn percent_encoded_paths_never_opt_in() {
    for path in [
        "/mcp/%61tlassian",
        "/mcp/atlassian%2F",
        "/mcp/atlassian/%2e%2e/github",
        "/mcp/atlassian/%2E%2E/github",
        "/mcp/atlassian/%41",
        "/mcp%2Fatlassian",
        "/mcp/atlassian/%00",
    ] {
        never_opts_in(path).await;
    }
}

#[tokio::test]
async fn dot_segment_paths_never_opt_in() {
    for path in [
        "/mcp/atlassian/../github",
        "/mcp/atlassian/..",
        "/mcp/atlassian/./sse",
        "/mcp/atlassian/.",
        "/mcp/./atlassian",
        "/mcp/github/../atlassian",
        "http://gw.example/mcp/atlassian/../github",
    ] {
        never_opts_in(path).await;
    }
}

#[tokio::test]
async fn empty_segment_paths_never_opt_in() {
    for path in [
        "//mcp/atlassian",
        "/mcp//atlassian",
        "/mcp/atlassian//sse",
        "/mcp/atlassian//",
    ] {
        never_opts_in(path).await;
    }
}

/// Regression: `//` alone once passed for canonical (the trailing-slash rule ate its second slash), so it
/// opted in under a root prefix, and a configured `//` prefix was taken for the root instead of refused.
#[tokio::test]
async fn a_lone_double_slash_never_opts_in_even_under_the_root_prefix() {
    let calls = Calls::default();
    let root = McpAuthLayer::new(scripted_store(calls.clone()))
        .passthrough(PassthroughPolicy::path_prefixes(["/"]));
    let inner = Inner::default();
    let bearer = || request("//", &[(AUTH, b"Bearer upstream-oauth-token")]);
    let answer = send(&root, &inner, bearer()).await;
    assert_eq!(answer.status, 401);
    assert!(inner.take().is_empty());
    // The control: a canonical path under the same prefix does opt in.
    let canonical = request("/", &[(AUTH, b"Bearer upstream-oauth-token")]);
    assert_eq!(send(&root, &inner, canonical).await.status, 200);
}

#[test]
fn a_double_slash_prefix_is_refused_at_configuration() {
    for prefix in ["//", "//mcp", "/mcp//atlassian", "/mcp/atlassian//"] {
        let refused = std::panic::catch_unwind(|| PassthroughPolicy::path_prefixes([prefix]));
        assert!(refused.is_err(), "{prefix:?} was accepted");
        let refused = std::panic::catch_unwind(|| {
            McpAuthLayer::new(()).resource_metadata(prefix, METADATA_URL)
        });
        assert!(refused.is_err(), "{prefix:?} was accepted for metadata");
    }
}

#[tokio::test]
async fn look_alike_paths_never_opt_in() {
    for path in [
        "/mcp/atlassian-evil",
        "/mcp/atlassianx/sse",
        "/MCP/atlassian",
        "/mcp/Atlassian",
        "/mcp/atlassian;evil",
        "/api/mcp/atlassian",
        "/mcp/github?/mcp/atlassian",
        "/mcp/github#/mcp/atlassian",
    ] {
        never_opts_in(path).await;
    }
}

// ---- Over the wire: raw bytes to a real server ----

/// An axum server with the decision table's layer in front of a recording inner service.
struct Wire {
    address: SocketAddr,
    calls: Calls,
    inner: Inner,
}

impl Wire {
    async fn start() -> Self {
        let calls = Calls::default();
        let inner = Inner::default();
        let router = Router::new()
            .fallback_service(inner.service())
            .layer(layer(scripted_store(calls.clone())));
        Self {
            address: serve(router).await,
            calls,
            inner,
        }
    }

    /// Writes one request with `headers` (raw lines, each ending in CRLF) and reads the whole answer.
    async fn send(&self, path: &str, headers: &[u8]) -> WireAnswer {
        let mut raw = format!(
            "POST {path} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-length: 0\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(headers);
        raw.extend_from_slice(b"\r\n");
        WireAnswer::parse(&exchange(self.address, &raw).await)
    }

    /// Neither the validator nor the inner service ran.
    fn untouched(&self) {
        assert!(self.calls.take().is_empty(), "the validator was asked");
        assert!(self.inner.take().is_empty(), "the inner service ran");
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

/// Writes `raw` and reads until the server closes (a guard against a hang, not a timing assertion).
async fn exchange(address: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    // The server may answer and close before reading everything (a huge header block); that is fine.
    let _ = stream.write_all(raw).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the server neither answered nor closed")
        .expect("reading the answer");
    answer
}

/// A raw HTTP/1.1 answer.
struct WireAnswer {
    status: u16,
    head: String,
    body: String,
}

impl WireAnswer {
    fn parse(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        Self {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    /// Hyper's own refusal: no challenge, no body; the layer never saw the request.
    fn refused_by_hyper(&self, status: u16) {
        assert_eq!(self.status, status, "{}", self.head);
        assert!(!self.head.contains("www-authenticate"), "{}", self.head);
        assert_eq!(self.body, "");
    }

    /// The layer's own refusal: its JSON body and `error` code.
    fn refused_by_layer(&self, status: u16, error: &str) {
        assert_eq!(self.status, status, "{}", self.head);
        assert!(self.head.contains("content-type: application/json"));
        let body: serde_json::Value = serde_json::from_str(&self.body).unwrap();
        assert_eq!(body["error"], error);
    }
}

#[tokio::test]
async fn wire_cr_lf_nul_del_and_controls_in_authorization_are_refused_by_hyper() {
    let wire = Wire::start().await;
    for value in [
        &b"Bearer sk-\rgood"[..],
        b"Bearer sk-\ngood",
        b"Bearer sk-\0good",
        b"Bearer sk-\x7fgood",
        b"Bearer sk-\x01good",
        b"Bearer sk-good\r",
    ] {
        let line = [b"authorization: ".as_slice(), value, b"\r\n"].concat();
        wire.send(GH, &line).await.refused_by_hyper(400);
        wire.untouched();
    }
}

#[tokio::test]
async fn wire_cr_lf_nul_in_the_key_header_are_refused_by_hyper() {
    let wire = Wire::start().await;
    for value in [&b"sk-\rgood"[..], b"sk-\ngood", b"sk-\0good"] {
        let line = [b"x-litellm-api-key: ".as_slice(), value, b"\r\n"].concat();
        wire.send(ATL, &line).await.refused_by_hyper(400);
        wire.untouched();
    }
}

#[tokio::test]
async fn wire_bare_lf_ends_a_header_line_and_cannot_slip_a_second_authorization_past_the_layer() {
    let wire = Wire::start().await;
    // Hyper reads a bare LF as a line end: these are two `Authorization` headers, which the layer refuses.
    wire.send(
        ATL,
        b"authorization: Bearer upstream-oauth-token\nauthorization: Bearer sk-good\r\n",
    )
    .await
    .refused_by_layer(400, "invalid_request");
    wire.untouched();

    // And a key header after a bare LF is a key header like any other: validated, and here refused.
    wire.send(
        ATL,
        b"authorization: Bearer upstream-oauth-token\nx-litellm-api-key: sk-blocked\r\n",
    )
    .await
    .refused_by_layer(403, "access_denied");
    assert_eq!(wire.calls.take(), ["sk-blocked"]);
    assert!(wire.inner.take().is_empty());
}

#[tokio::test]
async fn wire_obs_fold_and_space_before_colon_are_refused_by_hyper() {
    let wire = Wire::start().await;
    for lines in [
        &b"authorization: Bearer\r\n sk-good\r\n"[..],
        b"authorization: Bearer\r\n\tsk-good\r\n",
        b"authorization : Bearer sk-good\r\n",
        b"authorization\t: Bearer sk-good\r\n",
    ] {
        wire.send(GH, lines).await.refused_by_hyper(400);
        wire.untouched();
    }
}

#[tokio::test]
async fn wire_obs_text_reaches_the_layer_and_is_refused() {
    let wire = Wire::start().await;
    wire.send(GH, b"authorization: Bearer sk-\x80good\r\n")
        .await
        .refused_by_layer(400, "invalid_request");
    wire.untouched();
    wire.send(
        ATL,
        b"x-litellm-api-key: sk-\xffgood\r\nauthorization: Bearer upstream-oauth-token\r\n",
    )
    .await
    .refused_by_layer(400, "invalid_request");
    wire.untouched();
}

#[tokio::test]
async fn wire_spaces_and_tabs_around_a_value_are_trimmed_by_hyper_inside_it_refused_by_the_layer() {
    let wire = Wire::start().await;
    let answer = wire
        .send(GH, b"authorization:\t  Bearer sk-good \t \r\n")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(wire.calls.take(), ["sk-good"]);
    assert_eq!(wire.inner.take()[0].identity.as_deref(), Some("alice"));

    wire.send(GH, b"authorization: Bearer\tsk-good\r\n")
        .await
        .refused_by_layer(400, "invalid_request");
    wire.untouched();
}

#[tokio::test]
async fn wire_overlong_value_is_431_from_the_layer_and_a_huge_header_block_431_from_hyper() {
    let wire = Wire::start().await;
    let line = format!("authorization: Bearer {}\r\n", "a".repeat(9 * 1024));
    wire.send(ATL, line.as_bytes())
        .await
        .refused_by_layer(431, "invalid_request");
    wire.untouched();

    let line = format!("authorization: Bearer {}\r\n", "a".repeat(1024 * 1024));
    wire.send(ATL, line.as_bytes()).await.refused_by_hyper(431);
    wire.untouched();
}

#[tokio::test]
async fn wire_case_varied_duplicates_are_the_same_header() {
    let wire = Wire::start().await;
    wire.send(
        GH,
        b"Authorization: Bearer sk-good\r\nAUTHORIZATION: Bearer sk-good\r\n",
    )
    .await
    .refused_by_layer(400, "invalid_request");
    wire.untouched();
    wire.send(
        GH,
        b"X-LiteLLM-Api-Key: sk-good\r\nx-litellm-api-key: sk-other-good\r\n",
    )
    .await
    .refused_by_layer(400, "invalid_request");
    wire.untouched();
}

#[tokio::test]
async fn wire_connection_authorization_leaves_authorization_to_the_layer() {
    let wire = Wire::start().await;
    // Hyper's server does not drop headers that `Connection` lists: the layer sees and consumes them.
    let answer = wire
        .send(
            GH,
            b"connection: authorization, x-litellm-api-key\r\nauthorization: Bearer sk-good\r\n",
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(wire.calls.take(), ["sk-good"]);
    let seen = wire.inner.take();
    assert_eq!(seen[0].identity.as_deref(), Some("alice"));
    assert!(!seen[0].headers.contains_key(AUTH));

    wire.send(
        GH,
        b"connection: authorization\r\nauthorization: Bearer made-up-a\r\n",
    )
    .await
    .refused_by_layer(401, "invalid_token");
    assert_eq!(wire.calls.take(), ["made-up-a"]);
    assert!(wire.inner.take().is_empty());
}

// ---- Over the wire, both ways: client -> gateway -> upstream ----

/// An upstream that answers with the headers it received, one `name: value` line each.
async fn echo_headers(request: Request<Body>) -> String {
    request
        .headers()
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", value.to_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn wire_connection_header_can_neither_strip_nor_smuggle_credentials_end_to_end() {
    let upstream = serve(Router::new().fallback(echo_headers)).await;
    let url = format!("http://{upstream}");
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
    let forward =
        |config: UpstreamConfig| ForwardCredentialsLayer::new(config).layer(client.clone());
    let atlassian = forward(
        UpstreamConfig::new("atlassian", &url)
            .unwrap()
            .with_passthrough(true),
    );
    let github = forward(
        UpstreamConfig::new("github", &url)
            .unwrap()
            .with_auth("bearer_token:gw-github-zz".parse().unwrap()),
    );
    let handler = move |Path(server): Path<String>, request: Request<Body>| {
        let (atlassian, github) = (atlassian.clone(), github.clone());
        async move {
            let response = match server.as_str() {
                "atlassian" => atlassian.oneshot(request).await,
                _ => github.oneshot(request).await,
            };
            response.unwrap().map(Body::new)
        }
    };
    let calls = Calls::default();
    let gateway = Router::new()
        .route("/mcp/{server}", any(handler))
        .layer(layer(scripted_store(calls.clone())));
    let gateway = serve(gateway).await;

    let headers = b"connection: authorization, x-litellm-api-key, x-api-key\r\n\
        x-litellm-api-key: sk-good\r\n\
        authorization: Bearer upstream-oauth-token\r\n";
    let send = |path: &'static str| async move {
        let mut raw = format!(
            "POST {path} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-length: 0\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(headers);
        raw.extend_from_slice(b"\r\n");
        WireAnswer::parse(&exchange(gateway, &raw).await)
    };

    // The upstream that accepts passthrough gets the client's token, and only it.
    let answer = send(ATL).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    let received: Vec<&str> = answer.body.lines().collect();
    assert!(
        received.contains(&"authorization: Bearer upstream-oauth-token"),
        "{received:?}"
    );
    for line in &received {
        assert!(
            !line.contains("sk-good"),
            "the gateway key reached the upstream: {line}"
        );
        assert!(!line.starts_with("connection:"), "{line}");
        assert!(!line.starts_with("x-api-key:"), "{line}");
    }

    // The other gets the gateway's own credential for it; neither the key nor the client's token.
    let answer = send(GH).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    let received: Vec<&str> = answer.body.lines().collect();
    assert!(
        received.contains(&"authorization: Bearer gw-github-zz"),
        "{received:?}"
    );
    for line in &received {
        assert!(
            !line.contains("sk-good") && !line.contains("upstream-oauth-token"),
            "{line}"
        );
        assert!(!line.starts_with("connection:"), "{line}");
    }
    assert_eq!(calls.take(), ["sk-good", "sk-good"]);
}

// ---- A hostile upstream's challenge ----

/// Regression: only the first `resource_metadata` was replaced, so an upstream that sent it twice kept its
/// own metadata in the relayed challenge for clients that read the last one.
#[test]
fn a_hostile_upstream_challenge_keeps_none_of_its_metadata() {
    let gateway = "https://gw.example/.well-known/oauth-protected-resource/mcp/atlassian";
    for challenge in [
        r#"Bearer resource_metadata="https://up.example/m", resource_metadata="https://evil.example/m""#,
        r#"Bearer resource_metadata=https://up.example/m,resource_metadata=https://evil.example/m"#,
        r#"Bearer error="invalid_token", Bearer resource_metadata="https://evil.example/m""#,
        r#"Bearer resource_metadata="https://a.example", Bearer RESOURCE_METADATA = "https://evil.example/m""#,
    ] {
        let relayed =
            with_resource_metadata(&HeaderValue::from_static(challenge), gateway).unwrap();
        let relayed = relayed.to_str().unwrap();
        assert!(
            !relayed.contains("evil.example"),
            "{challenge} -> {relayed}"
        );
        assert!(!relayed.contains("up.example"), "{challenge} -> {relayed}");
        assert!(relayed.contains(gateway));
    }
}
