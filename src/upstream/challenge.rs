//! Relaying an upstream's `WWW-Authenticate` challenge through the gateway (RFC 9728 §5.1).

use http::HeaderValue;

const PARAM: &[u8] = b"resource_metadata";

/// Points an upstream's `WWW-Authenticate` challenge at the gateway's own protected-resource metadata.
///
/// An MCP client that follows RFC 9728 §3.3 refuses metadata whose `resource` is not the URL it called; when a
/// gateway relays an upstream's 401 on a passthrough route, the challenge must therefore name the gateway's
/// metadata document for that route, not the upstream's. Every `resource_metadata` parameter's value is
/// replaced (every other parameter, such as `error` or `scope`, is kept); a `Bearer` challenge without one gets
/// it added. Challenges of other schemes are returned unchanged.
///
/// Returns `None` when `url` cannot stand in a quoted string (not visible ASCII, or holding `"` or `\`) or the
/// challenge is not visible ASCII.
///
/// ```
/// use http::HeaderValue;
/// use tower_mcp_auth::upstream::with_resource_metadata;
///
/// let upstream = HeaderValue::from_static(
///     r#"Bearer error="invalid_token", resource_metadata="https://mcp.example/.well-known/oauth-protected-resource", scope="read""#,
/// );
/// let relayed = with_resource_metadata(&upstream, "https://gw.example/.well-known/oauth-protected-resource/mcp/example").unwrap();
/// assert_eq!(
///     relayed,
///     r#"Bearer error="invalid_token", resource_metadata="https://gw.example/.well-known/oauth-protected-resource/mcp/example", scope="read""#,
/// );
/// ```
pub fn with_resource_metadata(challenge: &HeaderValue, url: &str) -> Option<HeaderValue> {
    let quotable = !url.is_empty()
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    let value = challenge.to_str().ok().filter(|_| quotable)?;
    let quoted = format!("\"{url}\"");
    let rewritten = match find_param_value(value.as_bytes()) {
        Some(_) => replace_param_values(value, &quoted),
        None => {
            let trimmed = value.trim_start();
            let scheme_len = trimmed.find(' ').unwrap_or(trimmed.len());
            if !trimmed[..scheme_len].eq_ignore_ascii_case("bearer") {
                return Some(challenge.clone());
            }
            let rest = trimmed[scheme_len..].trim_start();
            if rest.is_empty() {
                format!("{} resource_metadata={quoted}", &trimmed[..scheme_len])
            } else {
                format!(
                    "{} resource_metadata={quoted}, {rest}",
                    &trimmed[..scheme_len]
                )
            }
        }
    };
    HeaderValue::try_from(rewritten).ok()
}

/// The `resource_metadata` URL an upstream's `WWW-Authenticate` challenge names (RFC 9728 §5.1), unquoted.
///
/// A gateway reads it from an upstream's 401 to find that upstream's protected-resource metadata. Returns
/// `None` when the challenge has no such parameter or is not visible ASCII.
///
/// ```
/// use http::HeaderValue;
/// use tower_mcp_auth::upstream::resource_metadata_of;
///
/// let challenge = HeaderValue::from_static(
///     r#"Bearer error="invalid_token", resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp""#,
/// );
/// assert_eq!(
///     resource_metadata_of(&challenge).as_deref(),
///     Some("https://mcp.example/.well-known/oauth-protected-resource/mcp"),
/// );
/// assert_eq!(resource_metadata_of(&HeaderValue::from_static("Bearer")), None);
/// ```
pub fn resource_metadata_of(challenge: &HeaderValue) -> Option<String> {
    let value = challenge.to_str().ok()?;
    let (start, end) = find_param_value(value.as_bytes())?;
    let raw = &value[start..end];
    let Some(quoted) = raw.strip_prefix('"') else {
        return Some(raw.to_owned()).filter(|v| !v.is_empty());
    };
    let quoted = quoted.strip_suffix('"')?;
    let mut unquoted = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        unquoted.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(unquoted).filter(|v| !v.is_empty())
}

/// `value` with every `resource_metadata` value replaced by `quoted`: an upstream that sends the parameter twice
/// must not keep its own value for clients that read the last one.
fn replace_param_values(value: &str, quoted: &str) -> String {
    let mut rewritten = String::with_capacity(value.len() + quoted.len());
    let mut rest = value;
    while let Some((start, end)) = find_param_value(rest.as_bytes()) {
        rewritten.push_str(&rest[..start]);
        rewritten.push_str(quoted);
        rest = &rest[end..];
    }
    rewritten.push_str(rest);
    rewritten
}

/// The byte span of the first `resource_metadata` parameter's value (quoted string or token), outside quoted
/// strings.
fn find_param_value(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = skip_quoted(bytes, i),
            _ if starts_param(bytes, i) => {
                let mut j = i + PARAM.len();
                while bytes.get(j) == Some(&b' ') {
                    j += 1;
                }
                if bytes.get(j) == Some(&b'=') {
                    j += 1;
                    while bytes.get(j) == Some(&b' ') {
                        j += 1;
                    }
                    let end = if bytes.get(j) == Some(&b'"') {
                        skip_quoted(bytes, j)
                    } else {
                        j + bytes[j..]
                            .iter()
                            .take_while(|b| !matches!(b, b',' | b' '))
                            .count()
                    };
                    return Some((j, end));
                }
                i += PARAM.len();
            }
            _ => i += 1,
        }
    }
    None
}

/// Whether the parameter name starts at `i`, as a whole token.
fn starts_param(bytes: &[u8], i: usize) -> bool {
    let boundary_before = i == 0 || matches!(bytes[i - 1], b' ' | b',');
    boundary_before
        && bytes.len() >= i + PARAM.len()
        && bytes[i..i + PARAM.len()].eq_ignore_ascii_case(PARAM)
        && matches!(bytes.get(i + PARAM.len()), Some(b' ' | b'='))
}

/// The index just past the quoted string that opens at `start`, honouring `\` escapes.
fn skip_quoted(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str = "https://gw/.well-known/oauth-protected-resource/mcp/a";

    fn rewrite(value: &str) -> String {
        let value = HeaderValue::from_str(value).unwrap();
        with_resource_metadata(&value, GW)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn replaces_quoted_and_token_values_keeping_other_parameters() {
        assert_eq!(
            rewrite(r#"Bearer resource_metadata="https://up/x", error="invalid_token""#),
            format!(r#"Bearer resource_metadata="{GW}", error="invalid_token""#)
        );
        assert_eq!(
            rewrite(r#"Bearer scope="a b", Resource_Metadata = https://up/x"#),
            format!(r#"Bearer scope="a b", Resource_Metadata = "{GW}""#)
        );
    }

    #[test]
    fn ignores_the_name_inside_quoted_strings_and_longer_names() {
        assert_eq!(
            rewrite(
                r#"Bearer error_description="resource_metadata=x \" resource_metadata=y", x_resource_metadata="k""#
            ),
            format!(
                r#"Bearer resource_metadata="{GW}", error_description="resource_metadata=x \" resource_metadata=y", x_resource_metadata="k""#
            )
        );
    }

    #[test]
    fn adds_the_parameter_to_a_bearer_challenge() {
        assert_eq!(
            rewrite("Bearer"),
            format!(r#"Bearer resource_metadata="{GW}""#)
        );
        assert_eq!(
            rewrite(r#"bearer error="invalid_token""#),
            format!(r#"bearer resource_metadata="{GW}", error="invalid_token""#)
        );
    }

    #[test]
    fn replaces_every_occurrence() {
        assert_eq!(
            rewrite(r#"Bearer resource_metadata="https://up/x", Resource_Metadata=https://evil/y"#),
            format!(r#"Bearer resource_metadata="{GW}", Resource_Metadata="{GW}""#)
        );
    }

    #[test]
    fn reads_the_parameter_quoted_or_not() {
        let read = |v: &str| resource_metadata_of(&HeaderValue::from_str(v).unwrap());
        assert_eq!(
            read(r#"Bearer error="x", Resource_Metadata="https://up/a\"b""#).as_deref(),
            Some(r#"https://up/a"b"#)
        );
        assert_eq!(
            read("Bearer resource_metadata=https://up/m, scope=x").as_deref(),
            Some("https://up/m")
        );
        assert_eq!(
            read(r#"Bearer error_description="resource_metadata=x""#),
            None
        );
        assert_eq!(read(r#"Bearer resource_metadata="""#), None);
    }

    #[test]
    fn leaves_other_schemes_alone() {
        assert_eq!(rewrite(r#"Basic realm="up""#), r#"Basic realm="up""#);
    }

    #[test]
    fn refuses_urls_that_cannot_be_quoted() {
        let value = HeaderValue::from_static("Bearer");
        assert!(with_resource_metadata(&value, "https://gw/\"x").is_none());
        assert!(with_resource_metadata(&value, "").is_none());
    }
}
