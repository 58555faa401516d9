//! A reference model of the decision contract, written from its tables rather than from the crate's code: the
//! property and fuzz tests send generated requests through the layer and compare what happens with what this
//! model says must happen.
#![allow(dead_code, unreachable_pub)]

/// What a scripted key store does with one credential, in the tests that drive the layer with generated input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Valid,
    Unknown,
    Denied,
    Invalid,
    Error,
    Hang,
}

impl Act {
    /// What the contract sees of this act.
    pub fn verdict(self) -> Verdict {
        match self {
            Act::Valid => Verdict::Valid,
            Act::Unknown => Verdict::Unknown,
            Act::Denied => Verdict::Denied,
            Act::Invalid => Verdict::Invalid,
            Act::Error | Act::Hang => Verdict::Fails,
        }
    }

    /// Performs the act as a validator would: `identity` for `Valid`, an error, or no answer at all.
    pub async fn perform<I>(
        self,
        identity: I,
    ) -> Result<tower_mcp_auth::Verdict<I>, std::io::Error> {
        match self {
            Act::Valid => Ok(tower_mcp_auth::Verdict::Valid(identity)),
            Act::Unknown => Ok(tower_mcp_auth::Verdict::Unknown),
            Act::Denied => Ok(tower_mcp_auth::Verdict::Denied),
            Act::Invalid => Ok(tower_mcp_auth::Verdict::Invalid),
            Act::Error => Err(std::io::Error::other("key store unreachable")),
            Act::Hang => std::future::pending().await,
        }
    }
}

/// What the validator does with one credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Unknown,
    Denied,
    /// A token of the validator's own issuer that fails its checks: 401, never passthrough, never 403.
    Invalid,
    /// An error, or no answer before the layer's timeout: either way the request fails closed.
    Fails,
}

/// What the `Authorization` header held once the preconditions passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorization {
    Bearer(String),
    Foreign,
}

/// The `WWW-Authenticate` value of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge {
    None,
    /// `Bearer`
    Bare,
    /// `Bearer error="invalid_token"`
    InvalidToken,
    /// `Bearer error="invalid_request"`
    InvalidRequest,
    /// `Bearer resource_metadata="…"`
    Metadata,
    /// `Bearer error="invalid_token", resource_metadata="…"`
    MetadataInvalidToken,
}

/// What the contract says happens to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The inner service runs, with these extensions. `identity` is the credential that was valid.
    Admit {
        identity: Option<String>,
        passthrough: Option<String>,
    },
    /// The layer answers itself.
    Refuse {
        status: u16,
        challenge: Challenge,
        error: &'static str,
    },
}

impl Expected {
    fn refuse(status: u16, challenge: Challenge, error: &'static str) -> Self {
        Self::Refuse {
            status,
            challenge,
            error,
        }
    }
}

/// The contract's answer for one request, and the credential the validator must be asked about (if any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub expected: Expected,
    pub validated: Option<String>,
}

/// The inputs the contract decides on.
pub struct Request<'a> {
    /// Header names (any case) and raw values, in the order sent.
    pub headers: &'a [(String, Vec<u8>)],
    /// The configured key header, in lower case.
    pub key_header: &'a str,
    /// The configured credential length cap.
    pub max_len: usize,
    /// Whether the route opted in to passthrough.
    pub allows: bool,
    /// Whether that route names resource metadata (only consulted when `allows`).
    pub has_metadata: bool,
}

/// RFC 6750 §2.1: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn trim_spaces(s: &str) -> &str {
    s.trim_matches(' ')
}

/// `Some(rest)` when `value` uses the `Bearer` scheme (case-insensitive, followed by a space or nothing).
fn strip_bearer(value: &str) -> Option<&str> {
    let scheme = value.get(..6)?;
    let rest = &value[6..];
    (scheme.eq_ignore_ascii_case("bearer") && (rest.is_empty() || rest.starts_with(' ')))
        .then_some(rest)
}

/// The preconditions, in the contract's order. `Err` is the answer; `Ok` the parsed credentials.
pub fn preconditions(
    request: &Request<'_>,
) -> Result<(Option<String>, Option<Authorization>), Expected> {
    let values = |name: &str| -> Vec<&[u8]> {
        request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    };
    let keys = values(request.key_header);
    let authorizations = values("authorization");
    let bad_request = || Expected::refuse(400, Challenge::InvalidRequest, "invalid_request");
    if keys.len() > 1 || authorizations.len() > 1 {
        return Err(bad_request());
    }
    let sent: Vec<&[u8]> = keys.iter().chain(&authorizations).copied().collect();
    if sent.iter().any(|v| v.len() > request.max_len) {
        return Err(Expected::refuse(431, Challenge::None, "invalid_request"));
    }
    if sent
        .iter()
        .any(|v| !v.iter().all(|b| (0x20..=0x7e).contains(b)))
    {
        return Err(bad_request());
    }
    let text = |v: &[u8]| String::from_utf8(v.to_vec()).expect("checked to be ASCII");

    let authorization = match authorizations.first().map(|v| text(v)) {
        None => None,
        Some(value) if trim_spaces(&value).is_empty() => return Err(bad_request()),
        Some(value) => match strip_bearer(trim_spaces(&value)) {
            None => Some(Authorization::Foreign),
            Some(rest) => {
                let token = trim_spaces(rest);
                if !is_b64token(token) {
                    return Err(bad_request());
                }
                Some(Authorization::Bearer(token.to_owned()))
            }
        },
    };
    let key = match keys.first().map(|v| text(v)) {
        None => None,
        Some(value) => {
            let value = trim_spaces(&value);
            let key = strip_bearer(value).map_or(value, trim_spaces);
            if key.is_empty() {
                return Err(Expected::refuse(
                    401,
                    Challenge::InvalidToken,
                    "invalid_token",
                ));
            }
            if key.contains(' ') {
                return Err(bad_request());
            }
            Some(key.to_owned())
        }
    };
    Ok((key, authorization))
}

/// The whole contract for one request: preconditions, then the decision table.
pub fn decide(request: &Request<'_>, verdict: impl Fn(&str) -> Verdict) -> Outcome {
    let (key, authorization) = match preconditions(request) {
        Ok(credentials) => credentials,
        Err(expected) => {
            return Outcome {
                expected,
                validated: None,
            }
        }
    };
    let route = |metadata, bare| {
        if request.allows && request.has_metadata {
            metadata
        } else {
            bare
        }
    };
    let refuse = Expected::refuse;
    let (validated, expected) = match (key, authorization) {
        (Some(key), authorization) => {
            let expected = match verdict(&key) {
                Verdict::Valid => Expected::Admit {
                    identity: Some(key.clone()),
                    passthrough: match authorization {
                        Some(Authorization::Bearer(token)) if request.allows && token != key => {
                            Some(token)
                        }
                        _ => None,
                    },
                },
                Verdict::Unknown | Verdict::Invalid => refuse(
                    401,
                    route(Challenge::MetadataInvalidToken, Challenge::InvalidToken),
                    "invalid_token",
                ),
                Verdict::Denied => refuse(403, Challenge::None, "access_denied"),
                Verdict::Fails => refuse(503, Challenge::None, "temporarily_unavailable"),
            };
            (Some(key), expected)
        }
        (None, Some(Authorization::Bearer(token))) => {
            let expected = match verdict(&token) {
                Verdict::Valid => Expected::Admit {
                    identity: Some(token.clone()),
                    passthrough: None,
                },
                Verdict::Unknown if request.allows => Expected::Admit {
                    identity: None,
                    passthrough: Some(token.clone()),
                },
                Verdict::Unknown => refuse(401, Challenge::InvalidToken, "invalid_token"),
                Verdict::Invalid => refuse(
                    401,
                    route(Challenge::MetadataInvalidToken, Challenge::InvalidToken),
                    "invalid_token",
                ),
                Verdict::Denied => refuse(403, Challenge::None, "access_denied"),
                Verdict::Fails => refuse(503, Challenge::None, "temporarily_unavailable"),
            };
            (Some(token), expected)
        }
        (None, Some(Authorization::Foreign)) => {
            (None, refuse(401, Challenge::Bare, "unauthorized"))
        }
        (None, None) => (
            None,
            refuse(
                401,
                route(Challenge::Metadata, Challenge::Bare),
                "unauthorized",
            ),
        ),
    };
    Outcome {
        expected,
        validated,
    }
}

/// Whether a configured route prefix is acceptable: absolute and canonical.
pub fn is_canonical_prefix(prefix: &str) -> bool {
    is_canonical(prefix)
}

/// Absolute, no `%`, no `;`, no `//` anywhere, no `.` or `..` segment.
fn is_canonical(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains(['%', ';'])
        && !path.contains("//")
        && !path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

/// Whether a request `path` opts in under `prefix`: canonical, and under it on whole segments.
pub fn path_allows(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    is_canonical(path)
        && (path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/')))
}

/// The gRPC status a refusal carries when the request spoke gRPC.
pub fn grpc_status(status: u16) -> &'static str {
    match status {
        401 => "16",
        403 => "7",
        503 => "14",
        _ => "3",
    }
}

/// `name` with each letter's case flipped where `mask` says so.
pub fn recase(name: &str, mask: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}
