//! `application/x-www-form-urlencoded` bodies, as OAuth endpoints take them.

/// Encodes one value (WHATWG URL §5.2).
pub(crate) fn encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                encoded.push(char::from(byte));
            }
            b' ' => encoded.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                encoded.push('%');
                encoded.push(char::from(HEX[usize::from(byte >> 4)]));
                encoded.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
    }
    encoded
}

/// Encodes `name=value` pairs joined by `&`.
pub(crate) fn encode_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut body = String::new();
    for (name, value) in pairs {
        if !body.is_empty() {
            body.push('&');
        }
        body.push_str(&encode(name));
        body.push('=');
        body.push_str(&encode(value));
    }
    body
}

/// The `Authorization` value of HTTP Basic client authentication (RFC 6749 §2.3.1): `Basic ` and the base64 of
/// the form-encoded client id and secret joined by `:`.
pub(crate) fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    let credentials = format!("{}:{}", encode(client_id), encode(client_secret));
    format!("Basic {}", STANDARD.encode(credentials))
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_reserved_bytes() {
        assert_eq!(super::encode("a b/c:d"), "a+b%2Fc%3Ad");
        assert_eq!(
            super::encode_pairs([("grant_type", "urn:x"), ("scope", "a b")]),
            "grant_type=urn%3Ax&scope=a+b"
        );
    }
}
