//! Headers to credentials: the contract's preconditions, checked before any validator call.

use http::{header::AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use crate::response::Rejection;

/// A credential taken out of a request header: the header value and where the credential sits in it.
///
/// Built only by [`take_credentials`], which checked that the value is visible ASCII, so the credential is a
/// `&str` without copying the header.
pub(crate) struct Credential {
    value: HeaderValue,
    start: usize,
    end: usize,
}

impl Credential {
    pub(crate) fn as_str(&self) -> &str {
        // The value was checked to be visible ASCII when the credential was built, so both never fail.
        self.value
            .to_str()
            .ok()
            .and_then(|s| s.get(self.start..self.end))
            .unwrap_or_default()
    }
}

/// What the `Authorization` header held.
pub(crate) enum Authorization {
    /// `Bearer <b64token>`.
    Bearer(Credential),
    /// Any other scheme (`Basic`, `Digest`, `token`, ...); its value is never looked at again.
    Foreign,
}

/// The credentials of one request, removed from its headers.
pub(crate) struct Credentials {
    pub(crate) key: Option<Credential>,
    pub(crate) authorization: Option<Authorization>,
}

/// Removes the key header and `Authorization` from `headers` and parses them, in the contract's order:
/// duplicates (400), length cap (431), visible ASCII (400), an empty or blank `Authorization` or bearer syntax
/// (400), empty key (401).
pub(crate) fn take_credentials(
    headers: &mut HeaderMap,
    key_header: &HeaderName,
    max_len: usize,
) -> Result<Credentials, Rejection> {
    let key = take_single(headers, key_header);
    let authorization = take_single(headers, &AUTHORIZATION);
    let (key, authorization) = (key?, authorization?);

    for value in key.iter().chain(authorization.iter()) {
        if value.len() > max_len {
            return Err(Rejection::TooLarge);
        }
    }
    for value in key.iter().chain(authorization.iter()) {
        if !value.as_bytes().iter().all(|b| matches!(b, b' '..=b'~')) {
            return Err(Rejection::InvalidRequest(
                "credential headers must be visible ASCII",
            ));
        }
    }
    let authorization = authorization.map(parse_authorization).transpose()?;
    let key = key.map(parse_key).transpose()?;
    Ok(Credentials { key, authorization })
}

/// Removes every value of `name`, refusing more than one.
fn take_single(
    headers: &mut HeaderMap,
    name: &HeaderName,
) -> Result<Option<HeaderValue>, Rejection> {
    let mut values = headers.get_all(name).iter();
    if values.next().is_none() {
        // Absent, the common case for one of the two headers: one lookup, nothing to remove.
        return Ok(None);
    }
    let duplicated = values.next().is_some();
    let value = headers.remove(name);
    if duplicated {
        return Err(Rejection::InvalidRequest(
            "a credential header was sent more than once",
        ));
    }
    Ok(value)
}

/// The span of `value` without surrounding spaces.
fn trimmed(value: &HeaderValue, from: usize) -> (usize, usize) {
    let bytes = &value.as_bytes()[from..];
    let start = from + bytes.iter().take_while(|b| **b == b' ').count();
    let end = from + bytes.len() - bytes.iter().rev().take_while(|b| **b == b' ').count();
    (start, end.max(start))
}

/// Where the credential starts after an optional case-insensitive `Bearer` scheme, or `None` when the value
/// does not use the bearer scheme.
fn after_bearer_scheme(bytes: &[u8], start: usize, end: usize) -> Option<usize> {
    const SCHEME: &[u8] = b"bearer";
    let rest = &bytes[start..end];
    if rest.len() < SCHEME.len() || !rest[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    match rest.get(SCHEME.len()) {
        None | Some(b' ') => Some(start + SCHEME.len()),
        Some(_) => None,
    }
}

fn parse_authorization(value: HeaderValue) -> Result<Authorization, Rejection> {
    let (start, end) = trimmed(&value, 0);
    // Empty or blank is no scheme at all: a malformed request, neither "absent" nor a foreign scheme.
    if start == end {
        return Err(Rejection::InvalidRequest(
            "the Authorization header is empty",
        ));
    }
    let Some(after_scheme) = after_bearer_scheme(value.as_bytes(), start, end) else {
        return Ok(Authorization::Foreign);
    };
    let (start, end) = trimmed(&value, after_scheme);
    let token = &value.as_bytes()[start..end];
    if token.is_empty() {
        return Err(Rejection::InvalidRequest("the bearer token is empty"));
    }
    if !is_b64token(token) {
        return Err(Rejection::InvalidRequest(
            "the bearer token is not an RFC 6750 b64token",
        ));
    }
    Ok(Authorization::Bearer(Credential { value, start, end }))
}

fn parse_key(value: HeaderValue) -> Result<Credential, Rejection> {
    let (mut start, mut end) = trimmed(&value, 0);
    if let Some(after_scheme) = after_bearer_scheme(value.as_bytes(), start, end) {
        (start, end) = trimmed(&value, after_scheme);
    }
    let key = &value.as_bytes()[start..end];
    if key.is_empty() {
        return Err(Rejection::InvalidToken);
    }
    if key.contains(&b' ') {
        return Err(Rejection::InvalidRequest(
            "the gateway key must not contain spaces",
        ));
    }
    Ok(Credential { value, start, end })
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|b| **b == b'=').count();
    body_len > 0
        && token[..body_len].iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: HeaderName = HeaderName::from_static("x-litellm-api-key");

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    fn take(pairs: &[(&str, &[u8])]) -> Result<Credentials, Rejection> {
        take_credentials(&mut headers(pairs), &KEY, 64)
    }

    fn bearer(pairs: &[(&str, &[u8])]) -> String {
        match take(pairs).ok().and_then(|c| c.authorization) {
            Some(Authorization::Bearer(token)) => token.as_str().to_owned(),
            _ => panic!("expected a bearer token"),
        }
    }

    fn key(pairs: &[(&str, &[u8])]) -> String {
        take(pairs)
            .ok()
            .and_then(|c| c.key)
            .expect("a key")
            .as_str()
            .to_owned()
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_trimmed() {
        assert_eq!(bearer(&[("authorization", b"Bearer abc")]), "abc");
        assert_eq!(bearer(&[("authorization", b"bEaReR abc")]), "abc");
        assert_eq!(bearer(&[("authorization", b"Bearer    abc==")]), "abc==");
        assert_eq!(bearer(&[("authorization", b"  Bearer abc  ")]), "abc");
    }

    #[test]
    fn foreign_schemes_are_recognised_not_parsed() {
        for value in [
            &b"Basic dXNlcjpwYXNz"[..],
            b"token abc",
            b"Bearerabc",
            b"sk-raw-key",
        ] {
            let c = take(&[("authorization", value)]).ok().unwrap();
            assert!(matches!(c.authorization, Some(Authorization::Foreign)));
        }
    }

    #[test]
    fn key_header_accepts_optional_bearer_prefix() {
        assert_eq!(key(&[("x-litellm-api-key", b"sk-1")]), "sk-1");
        assert_eq!(key(&[("x-litellm-api-key", b"Bearer sk-1")]), "sk-1");
        assert_eq!(key(&[("x-litellm-api-key", b"bearer   sk-1 ")]), "sk-1");
        // Keys need not be b64tokens.
        assert_eq!(key(&[("x-litellm-api-key", b"sk:1@x")]), "sk:1@x");
        // A key that merely starts with the letters of the scheme is a key.
        assert_eq!(key(&[("x-litellm-api-key", b"bearerish")]), "bearerish");
    }

    #[test]
    fn headers_are_removed() {
        let mut map = headers(&[
            ("x-litellm-api-key", b"sk-1"),
            ("authorization", b"Bearer t"),
            ("x-other", b"kept"),
        ]);
        assert!(take_credentials(&mut map, &KEY, 64).is_ok());
        assert!(map.get("x-litellm-api-key").is_none());
        assert!(map.get("authorization").is_none());
        assert_eq!(map.get("x-other").unwrap(), "kept");
    }

    #[test]
    fn preconditions_in_contract_order() {
        let long = vec![b'a'; 65];
        // Duplicates win over everything else.
        assert!(matches!(
            take(&[("authorization", b"Bearer a"), ("authorization", &long)]),
            Err(Rejection::InvalidRequest(_))
        ));
        // Length wins over character checks.
        let mut long_bad = long.clone();
        long_bad[3] = 0x80;
        assert!(matches!(
            take(&[("authorization", &long_bad)]),
            Err(Rejection::TooLarge)
        ));
        // Character checks win over the empty-key answer.
        assert!(matches!(
            take(&[
                ("x-litellm-api-key", b""),
                ("authorization", b"Bearer \xff")
            ]),
            Err(Rejection::InvalidRequest(_))
        ));
        // Bearer syntax wins over the empty-key answer.
        assert!(matches!(
            take(&[("x-litellm-api-key", b""), ("authorization", b"Bearer a b")]),
            Err(Rejection::InvalidRequest(_))
        ));
        assert!(matches!(
            take(&[("x-litellm-api-key", b"")]),
            Err(Rejection::InvalidToken)
        ));
        assert!(matches!(
            take(&[("x-litellm-api-key", b"Bearer")]),
            Err(Rejection::InvalidToken)
        ));
        assert!(matches!(
            take(&[("x-litellm-api-key", b"Bearer  ")]),
            Err(Rejection::InvalidToken)
        ));
    }

    #[test]
    fn length_cap_is_inclusive() {
        let exact = [b'a'; 64];
        assert!(take(&[("x-litellm-api-key", &exact)]).is_ok());
    }

    #[test]
    fn bad_bearer_tokens_are_invalid_requests() {
        for value in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer a b",
            b"Bearer ===",
            b"Bearer a=b",
            b"Bearer \"a\"",
            b"Bearer a,b",
        ] {
            assert!(
                matches!(
                    take(&[("authorization", value)]),
                    Err(Rejection::InvalidRequest(_))
                ),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn an_empty_or_blank_authorization_is_an_invalid_request() {
        for value in [&b""[..], b" ", b"    "] {
            assert!(matches!(
                take(&[("authorization", value)]),
                Err(Rejection::InvalidRequest(_))
            ));
            // Not dropped beside a key either, and ahead of the empty-key answer.
            assert!(matches!(
                take(&[("x-litellm-api-key", b"sk-1"), ("authorization", value)]),
                Err(Rejection::InvalidRequest(_))
            ));
            assert!(matches!(
                take(&[("x-litellm-api-key", b""), ("authorization", value)]),
                Err(Rejection::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn non_visible_ascii_is_an_invalid_request() {
        for value in [
            &b"Bearer a\tb"[..],
            b"Bearer \x80abc",
            b"\tBearer abc",
            b"Bearer a\xc3\xa9",
        ] {
            assert!(matches!(
                take(&[("authorization", value)]),
                Err(Rejection::InvalidRequest(_))
            ));
            assert!(matches!(
                take(&[("x-litellm-api-key", value)]),
                Err(Rejection::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn keys_with_inner_spaces_are_invalid_requests() {
        assert!(matches!(
            take(&[("x-litellm-api-key", b"sk 1")]),
            Err(Rejection::InvalidRequest(_))
        ));
    }
}
