//! The contract's preconditions and decision table as data: one named case per row, plus twins of the
//! scenarios the original passthrough change tested and of the lessons learned after it.

use super::{layer, request, scripted_store, send, Calls, Inner, METADATA_URL, SECRETS};

#[derive(Debug)]
pub enum Expect {
    /// The inner service is called with these extensions.
    Admit {
        identity: Option<&'static str>,
        passthrough: Option<&'static str>,
    },
    /// The layer answers itself.
    Reject {
        status: u16,
        challenge: Option<&'static str>,
        error: &'static str,
    },
}

pub struct Case {
    pub name: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    /// The credentials the validator must have been asked about, in order.
    calls: &'static [&'static str],
    expect: Expect,
}

pub const ATL: &str = "/mcp/atlassian";
pub const GH: &str = "/mcp/github";
pub const KEY: &str = "x-litellm-api-key";
pub const AUTH: &str = "authorization";
const INVALID_TOKEN: Option<&str> = Some("Bearer error=\"invalid_token\"");
const INVALID_REQUEST: Option<&str> = Some("Bearer error=\"invalid_request\"");
const BARE: Option<&str> = Some("Bearer");

fn admit(identity: Option<&'static str>, passthrough: Option<&'static str>) -> Expect {
    Expect::Admit {
        identity,
        passthrough,
    }
}

fn reject(status: u16, challenge: Option<&'static str>, error: &'static str) -> Expect {
    Expect::Reject {
        status,
        challenge,
        error,
    }
}

fn case(
    name: &'static str,
    path: &'static str,
    headers: &[(&'static str, &[u8])],
    calls: &'static [&'static str],
    expect: Expect,
) -> Case {
    Case {
        name,
        path,
        headers: headers.iter().map(|(n, v)| (*n, v.to_vec())).collect(),
        calls,
        expect,
    }
}

pub fn cases() -> Vec<Case> {
    let overlong = [b'a'; 8 * 1024 + 1];
    let mut overlong_bearer = b"Bearer ".to_vec();
    overlong_bearer.extend_from_slice(&overlong);
    let metadata_missing: &'static str =
        Box::leak(format!("Bearer resource_metadata=\"{METADATA_URL}\"").into_boxed_str());
    let metadata_invalid: &'static str = Box::leak(
        format!("Bearer error=\"invalid_token\", resource_metadata=\"{METADATA_URL}\"")
            .into_boxed_str(),
    );
    vec![
        // --- Preconditions, before any validator call ---
        case(
            "pre_duplicate_key_header_is_400",
            ATL,
            &[(KEY, b"sk-good"), (KEY, b"sk-good")],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        case(
            "pre_duplicate_authorization_is_400",
            ATL,
            &[(AUTH, b"Bearer sk-good"), (AUTH, b"Bearer other")],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        case(
            "pre_overlong_key_is_431",
            ATL,
            &[(KEY, &overlong)],
            &[],
            reject(431, None, "invalid_request"),
        ),
        case(
            "pre_overlong_bearer_is_431",
            ATL,
            &[(AUTH, &overlong_bearer)],
            &[],
            reject(431, None, "invalid_request"),
        ),
        case(
            "pre_obs_text_bearer_is_400",
            ATL,
            &[(AUTH, b"Bearer tok\x80en")],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        case(
            "pre_obs_text_key_is_400_not_absent",
            ATL,
            &[
                (KEY, b"sk-\xffgood"),
                (AUTH, b"Bearer upstream-oauth-token"),
            ],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        case(
            "pre_tab_in_bearer_is_400",
            ATL,
            &[(AUTH, b"Bearer\tupstream-oauth-token")],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        case(
            "pre_empty_bearer_is_400",
            ATL,
            &[(AUTH, b"Bearer")],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        case(
            "pre_empty_authorization_is_400",
            ATL,
            &[(AUTH, b"")],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        case(
            "pre_blank_authorization_is_400",
            GH,
            &[(AUTH, b"   ")],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        case(
            "pre_empty_authorization_beside_a_valid_key_is_400_not_dropped",
            ATL,
            &[(KEY, b"sk-good"), (AUTH, b"")],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        case(
            "pre_blank_authorization_wins_over_an_empty_key",
            ATL,
            &[(KEY, b""), (AUTH, b" ")],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        case(
            "pre_bearer_outside_b64token_is_400",
            ATL,
            &[(AUTH, b"Bearer a\"b")],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        case(
            "pre_bearer_with_inner_space_is_400",
            ATL,
            &[(AUTH, b"Bearer upstream oauth")],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        case(
            "pre_empty_key_header_is_401_invalid_token",
            ATL,
            &[(KEY, b"")],
            &[],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "pre_key_header_bearer_with_nothing_is_401",
            ATL,
            &[(KEY, b"Bearer ")],
            &[],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "pre_key_with_inner_space_is_400",
            ATL,
            &[(KEY, b"sk good")],
            &[],
            reject(400, INVALID_REQUEST, "invalid_request"),
        ),
        // --- Decisions ---
        case(
            "valid_key_alone_is_authenticated",
            GH,
            &[(KEY, b"sk-good")],
            &["sk-good"],
            admit(Some("alice"), None),
        ),
        case(
            "valid_key_with_bearer_prefix_in_key_header",
            GH,
            &[(KEY, b"Bearer sk-good")],
            &["sk-good"],
            admit(Some("alice"), None),
        ),
        case(
            "valid_key_and_other_bearer_on_passthrough_route_is_dual_credential",
            ATL,
            &[(KEY, b"sk-good"), (AUTH, b"Bearer upstream-oauth-token")],
            &["sk-good"],
            admit(Some("alice"), Some("upstream-oauth-token")),
        ),
        case(
            "valid_key_and_other_bearer_on_closed_route_drops_bearer",
            GH,
            &[(KEY, b"sk-good"), (AUTH, b"Bearer upstream-oauth-token")],
            &["sk-good"],
            admit(Some("alice"), None),
        ),
        case(
            "valid_key_and_same_bearer_forwards_nothing",
            ATL,
            &[(KEY, b"sk-good"), (AUTH, b"Bearer sk-good")],
            &["sk-good"],
            admit(Some("alice"), None),
        ),
        case(
            "valid_key_and_foreign_scheme_drops_header",
            ATL,
            &[(KEY, b"sk-good"), (AUTH, b"Basic dXNlcjpwYXNz")],
            &["sk-good"],
            admit(Some("alice"), None),
        ),
        case(
            "unknown_key_is_401_without_fallback",
            GH,
            &[(KEY, b"made-up-a")],
            &["made-up-a"],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "unknown_key_with_upstream_bearer_on_passthrough_route_is_401",
            ATL,
            &[(KEY, b"made-up-a"), (AUTH, b"Bearer upstream-oauth-token")],
            &["made-up-a"],
            reject(401, Some(metadata_invalid), "invalid_token"),
        ),
        case(
            "denied_key_is_403",
            GH,
            &[(KEY, b"sk-blocked")],
            &["sk-blocked"],
            reject(403, None, "access_denied"),
        ),
        case(
            "denied_key_with_upstream_bearer_is_403",
            ATL,
            &[(KEY, b"sk-blocked"), (AUTH, b"Bearer upstream-oauth-token")],
            &["sk-blocked"],
            reject(403, None, "access_denied"),
        ),
        case(
            "valid_key_as_bearer_is_authenticated",
            GH,
            &[(AUTH, b"Bearer sk-good")],
            &["sk-good"],
            admit(Some("alice"), None),
        ),
        case(
            "valid_key_as_bearer_on_passthrough_route_is_not_passed_through",
            ATL,
            &[(AUTH, b"Bearer sk-good")],
            &["sk-good"],
            admit(Some("alice"), None),
        ),
        case(
            "unknown_bearer_on_passthrough_route_passes_through_without_identity",
            ATL,
            &[(AUTH, b"Bearer upstream-oauth-token")],
            &["upstream-oauth-token"],
            admit(None, Some("upstream-oauth-token")),
        ),
        case(
            "unknown_bearer_on_closed_route_is_401",
            GH,
            &[(AUTH, b"Bearer upstream-oauth-token")],
            &["upstream-oauth-token"],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "denied_bearer_on_passthrough_route_is_403_never_passthrough",
            ATL,
            &[(AUTH, b"Bearer sk-blocked")],
            &["sk-blocked"],
            reject(403, None, "access_denied"),
        ),
        case(
            "invalid_key_is_401",
            GH,
            &[(KEY, b"invalid-jwt")],
            &["invalid-jwt"],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "invalid_key_with_upstream_bearer_on_passthrough_route_is_401",
            ATL,
            &[
                (KEY, b"invalid-jwt"),
                (AUTH, b"Bearer upstream-oauth-token"),
            ],
            &["invalid-jwt"],
            reject(401, Some(metadata_invalid), "invalid_token"),
        ),
        case(
            "invalid_bearer_on_passthrough_route_is_401_never_passthrough",
            ATL,
            &[(AUTH, b"Bearer invalid-jwt")],
            &["invalid-jwt"],
            reject(401, Some(metadata_invalid), "invalid_token"),
        ),
        case(
            "invalid_bearer_on_closed_route_is_401",
            GH,
            &[(AUTH, b"Bearer invalid-jwt")],
            &["invalid-jwt"],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "key_store_error_on_key_is_503",
            GH,
            &[(KEY, b"sk-error")],
            &["sk-error"],
            reject(503, None, "temporarily_unavailable"),
        ),
        case(
            "key_store_error_on_bearer_is_503_never_passthrough",
            ATL,
            &[(AUTH, b"Bearer sk-error")],
            &["sk-error"],
            reject(503, None, "temporarily_unavailable"),
        ),
        case(
            "key_store_timeout_on_key_is_503",
            GH,
            &[(KEY, b"sk-hang")],
            &["sk-hang"],
            reject(503, None, "temporarily_unavailable"),
        ),
        case(
            "key_store_timeout_on_bearer_is_503_never_passthrough",
            ATL,
            &[(AUTH, b"Bearer sk-hang")],
            &["sk-hang"],
            reject(503, None, "temporarily_unavailable"),
        ),
        case(
            "foreign_scheme_alone_is_401_bare_challenge",
            ATL,
            &[(AUTH, b"Basic dXNlcjpwYXNz")],
            &[],
            reject(401, BARE, "unauthorized"),
        ),
        case(
            "no_credentials_on_passthrough_route_names_resource_metadata",
            ATL,
            &[],
            &[],
            reject(401, Some(metadata_missing), "unauthorized"),
        ),
        case(
            "no_credentials_on_closed_route_is_bare_bearer_challenge",
            GH,
            &[],
            &[],
            reject(401, BARE, "unauthorized"),
        ),
        // --- Twins of the original change's own test scenarios ---
        case(
            "seed_1_upstream_bearer_not_a_key_passes_through_with_token_kept",
            ATL,
            &[(AUTH, b"Bearer upstream-oauth-token")],
            &["upstream-oauth-token"],
            admit(None, Some("upstream-oauth-token")),
        ),
        case(
            "seed_2_explicit_key_and_upstream_bearer_validates_key_only",
            ATL,
            &[
                (KEY, b"sk-other-good"),
                (AUTH, b"Bearer upstream-oauth-token"),
            ],
            &["sk-other-good"],
            admit(Some("bob"), Some("upstream-oauth-token")),
        ),
        case(
            "seed_3_gateway_key_in_bearer_is_backward_compatible",
            ATL,
            &[(AUTH, b"bearer sk-good")],
            &["sk-good"],
            admit(Some("alice"), None),
        ),
        case(
            "seed_4_validator_error_fails_closed",
            ATL,
            &[(AUTH, b"Bearer sk-error")],
            &["sk-error"],
            reject(503, None, "temporarily_unavailable"),
        ),
        case(
            "seed_6_validator_hang_fails_closed",
            ATL,
            &[(KEY, b"sk-hang"), (AUTH, b"Bearer upstream-oauth-token")],
            &["sk-hang"],
            reject(503, None, "temporarily_unavailable"),
        ),
        // --- Lessons learned after it ---
        case(
            "lesson_made_up_bearer_on_route_not_opted_in_is_401",
            GH,
            &[(AUTH, b"Bearer a")],
            &["a"],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "lesson_made_up_bearer_near_opted_in_route_is_401",
            "/mcp/atlassian-evil",
            &[(AUTH, b"Bearer a")],
            &["a"],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "lesson_denied_key_as_bearer_never_passes_through",
            ATL,
            &[(AUTH, b"Bearer sk-blocked")],
            &["sk-blocked"],
            reject(403, None, "access_denied"),
        ),
        case(
            "lesson_header_naming_a_server_cannot_opt_in",
            GH,
            &[(AUTH, b"Bearer a"), ("x-mcp-servers", b"atlassian")],
            &["a"],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "lesson_dot_segments_cannot_reach_opted_in_route",
            "/mcp/atlassian/../github",
            &[(AUTH, b"Bearer a")],
            &["a"],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "lesson_percent_encoding_cannot_reach_opted_in_route",
            "/mcp/atlassian/%2e%2e/github",
            &[(AUTH, b"Bearer a")],
            &["a"],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "lesson_empty_segment_cannot_reach_opted_in_route",
            "/mcp/atlassian//x",
            &[(AUTH, b"Bearer a")],
            &["a"],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "lesson_opted_in_route_in_query_is_not_a_path",
            "/mcp/github?next=/mcp/atlassian",
            &[(AUTH, b"Bearer a")],
            &["a"],
            reject(401, INVALID_TOKEN, "invalid_token"),
        ),
        case(
            "lesson_no_substring_public_path_bypass",
            "/mcp/github/.well-known/oauth-protected-resource",
            &[],
            &[],
            reject(401, BARE, "unauthorized"),
        ),
        case(
            "lesson_opted_in_route_with_trailing_slash_and_subpath",
            "/mcp/atlassian/sse",
            &[(AUTH, b"Bearer made-up-a")],
            &["made-up-a"],
            admit(None, Some("made-up-a")),
        ),
    ]
}

/// Runs one case and lists what went wrong.
pub async fn run(case: &Case) -> Vec<String> {
    let calls = Calls::default();
    let inner = Inner::default();
    let layer = layer(scripted_store(calls.clone()));
    let headers: Vec<(&str, &[u8])> = case
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_slice()))
        .collect();
    let answer = send(&layer, &inner, request(case.path, &headers)).await;
    let seen = inner.take();
    let mut problems = Vec::new();

    let asked = calls.take();
    if asked != case.calls {
        problems.push(format!(
            "validator asked {asked:?}, expected {:?}",
            case.calls
        ));
    }
    match case.expect {
        Expect::Admit {
            identity,
            passthrough,
        } => {
            if answer.status != 200 || seen.len() != 1 {
                problems.push(format!(
                    "expected the inner service once, got {} with {} calls: {}",
                    answer.status,
                    seen.len(),
                    answer.body
                ));
            } else {
                let seen = &seen[0];
                if seen.identity.as_deref() != identity {
                    problems.push(format!(
                        "identity {:?}, expected {identity:?}",
                        seen.identity
                    ));
                }
                if seen.passthrough.as_deref() != passthrough {
                    problems.push(format!(
                        "passthrough {:?}, expected {passthrough:?}",
                        seen.passthrough
                    ));
                }
                for name in [KEY, AUTH] {
                    if seen.headers.contains_key(name) {
                        problems.push(format!("{name} reached the inner service"));
                    }
                }
            }
        }
        Expect::Reject {
            status,
            challenge,
            error,
        } => {
            if !seen.is_empty() {
                problems.push("the inner service was called".to_owned());
            }
            if answer.status != status {
                problems.push(format!("status {}, expected {status}", answer.status));
            }
            let got = answer
                .headers
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap());
            if got != challenge {
                problems.push(format!("challenge {got:?}, expected {challenge:?}"));
            }
            if answer.headers.get("content-type").map(|v| v.as_bytes()) != Some(b"application/json")
            {
                problems.push("content-type is not application/json".to_owned());
            }
            match serde_json::from_str::<serde_json::Value>(&answer.body) {
                Ok(body) if body["error"] == error && body["error_description"].is_string() => {}
                _ => problems.push(format!("body {:?}, expected error {error:?}", answer.body)),
            }
        }
    }
    for secret in SECRETS {
        let echoed = answer.body.contains(secret)
            || answer
                .headers
                .values()
                .any(|v| String::from_utf8_lossy(v.as_bytes()).contains(secret));
        if echoed {
            problems.push(format!("response echoes {secret:?}"));
        }
    }
    if answer.status == 401 && !answer.headers.contains_key("www-authenticate") {
        problems.push("401 without WWW-Authenticate".to_owned());
    }
    problems
}
