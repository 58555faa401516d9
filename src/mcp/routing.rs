//! The routing headers of a request — `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` — checked against its
//! body's [`Envelope`].

use base64::Engine as _;
use http::{HeaderMap, HeaderName, StatusCode};

use super::{
    envelope::{Envelope, Message, RequestId},
    revision::Revision,
};

/// `MCP-Protocol-Version`.
pub const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Method`: the JSON-RPC method, mirrored (2026-07-28).
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name`: the tool, prompt or resource a name-bearing method acts on, mirrored (2026-07-28).
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// The 2026-07-28 revision's `HeaderMismatch` error code.
pub(crate) const HEADER_MISMATCH: i64 = -32020;
/// The 2026-07-28 revision's `UnsupportedProtocolVersionError` code.
pub(crate) const UNSUPPORTED_VERSION: i64 = -32022;
/// JSON-RPC's "invalid request".
pub(crate) const INVALID_REQUEST: i64 = -32600;

/// A request refused before the upstream: `400` with a JSON-RPC error.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) id: Option<RequestId>,
    pub(crate) data: Option<serde_json::Value>,
}

impl From<super::envelope::EnvelopeError> for Refusal {
    fn from(error: super::envelope::EnvelopeError) -> Self {
        Self::bad_request(error.code(), error.to_string(), None)
    }
}

impl Refusal {
    fn bad_request(code: i64, message: impl Into<String>, id: Option<&RequestId>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
            id: id.cloned(),
            data: None,
        }
    }

    fn mismatch(message: impl Into<String>, id: Option<&RequestId>) -> Self {
        Self::bad_request(HEADER_MISMATCH, message, id)
    }
}

/// The one value of `name`, if any; `Err` when it is sent twice or is not visible ASCII.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("{name} is sent more than once"));
    }
    first
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| format!("{name} has invalid characters"))
}

/// The revision `MCP-Protocol-Version` names (the default when absent); `Err` is the 400 to answer.
pub(crate) fn revision(headers: &HeaderMap) -> Result<Revision, Refusal> {
    let value =
        single(headers, &PROTOCOL_VERSION).map_err(|message| Refusal::mismatch(message, None))?;
    let Some(value) = value else {
        return Ok(Revision::DEFAULT);
    };
    value.parse().map_err(|_| Refusal {
        data: Some(serde_json::json!({
            "supported": Revision::ALL.iter().rev().map(|r| r.as_str()).collect::<Vec<_>>(),
            "requested": value,
        })),
        ..Refusal::bad_request(UNSUPPORTED_VERSION, "Unsupported protocol version", None)
    })
}

/// `Mcp-Name`'s value, decoded from the `=?base64?…?=` form when it has it.
fn decode_name(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(value.to_owned()),
    }
}

/// Checks the routing headers against the body: a header that is sent must agree with it, and from 2026-07-28
/// the headers must be sent. A batch is refused where the revision removed batching.
pub(crate) fn check(
    headers: &HeaderMap,
    header_revision: Option<Revision>,
    revision: Revision,
    envelope: &Envelope,
) -> Result<(), Refusal> {
    let method = single(headers, &MCP_METHOD).map_err(|m| Refusal::mismatch(m, None))?;
    let name = single(headers, &MCP_NAME).map_err(|m| Refusal::mismatch(m, None))?;
    let Some(message) = envelope.single() else {
        if !revision.allows_batches() {
            return Err(Refusal::bad_request(
                INVALID_REQUEST,
                format!("JSON-RPC batches are not part of MCP {revision}"),
                None,
            ));
        }
        if method.is_some() || name.is_some() {
            return Err(Refusal::mismatch(
                "Header mismatch: a batch has no single method or name",
                None,
            ));
        }
        return Ok(());
    };
    check_message(message, method, name, header_revision, revision)
}

fn check_message(
    message: &Message,
    method: Option<&str>,
    name: Option<&str>,
    header_revision: Option<Revision>,
    revision: Revision,
) -> Result<(), Refusal> {
    let id = message.id();
    let required = revision.mirrors_routing_headers();
    match (method, message.method()) {
        (Some(header), Some(body)) if header != body => {
            return Err(Refusal::mismatch(
                "Header mismatch: Mcp-Method does not match the body's method",
                id,
            ))
        }
        (Some(_), None) => {
            return Err(Refusal::mismatch(
                "Header mismatch: Mcp-Method is sent with a message that has no method",
                id,
            ))
        }
        (None, Some(_)) if required => {
            return Err(Refusal::mismatch(
                "Header mismatch: Mcp-Method is required",
                id,
            ))
        }
        _ => {}
    }
    match (name.map(decode_name), message.name()) {
        (Some(None), _) => {
            return Err(Refusal::mismatch(
                "Header mismatch: Mcp-Name is not valid base64 UTF-8",
                id,
            ))
        }
        (Some(Some(header)), Some(body)) if header != body => {
            return Err(Refusal::mismatch(
                "Header mismatch: Mcp-Name does not match the body's name",
                id,
            ))
        }
        (Some(Some(_)), None) => {
            return Err(Refusal::mismatch(
                "Header mismatch: Mcp-Name is sent with a method that names nothing",
                id,
            ))
        }
        (None, Some(_)) if required => {
            return Err(Refusal::mismatch(
                "Header mismatch: Mcp-Name is required",
                id,
            ))
        }
        _ => {}
    }
    if let Some(meta) = message.meta_protocol_version() {
        if header_revision.map(Revision::as_str) != Some(meta) {
            return Err(Refusal::mismatch(
                "Header mismatch: MCP-Protocol-Version does not match the body's protocol version",
                id,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn judge(pairs: &[(&'static str, &str)], body: &str) -> Result<(), i64> {
        let headers = headers(pairs);
        let header_revision = revision(&headers).map_err(|r| r.code)?;
        let sent = headers
            .contains_key(PROTOCOL_VERSION)
            .then_some(header_revision);
        let envelope = Envelope::parse(body.as_bytes()).unwrap();
        check(&headers, sent, header_revision, &envelope).map_err(|r| r.code)
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    const OLD_CALL: &str =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    const BATCH: &str = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#;
    const V26: (&str, &str) = ("mcp-protocol-version", "2026-07-28");

    /// A case: its name, the headers, the body, the answer (`Err` is the JSON-RPC code of the 400).
    type Row<'a> = (
        &'a str,
        &'a [(&'static str, &'a str)],
        &'a str,
        Result<(), i64>,
    );

    #[test]
    fn decision_table() {
        let rows: &[Row] = &[
            (
                "current revision, headers agree",
                &[V26, ("mcp-method", "tools/call"), ("mcp-name", "echo")],
                CALL,
                Ok(()),
            ),
            (
                "name in base64",
                &[
                    V26,
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "=?base64?ZWNobw==?="),
                ],
                CALL,
                Ok(()),
            ),
            (
                "method disagrees",
                &[V26, ("mcp-method", "tools/list"), ("mcp-name", "echo")],
                CALL,
                Err(HEADER_MISMATCH),
            ),
            (
                "method differs in case",
                &[V26, ("mcp-method", "Tools/call"), ("mcp-name", "echo")],
                CALL,
                Err(HEADER_MISMATCH),
            ),
            (
                "name disagrees",
                &[V26, ("mcp-method", "tools/call"), ("mcp-name", "add")],
                CALL,
                Err(HEADER_MISMATCH),
            ),
            (
                "bad base64",
                &[
                    V26,
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "=?base64?***?="),
                ],
                CALL,
                Err(HEADER_MISMATCH),
            ),
            (
                "name missing in 2026-07-28",
                &[V26, ("mcp-method", "tools/call")],
                CALL,
                Err(HEADER_MISMATCH),
            ),
            (
                "method missing in 2026-07-28",
                &[V26, ("mcp-name", "echo")],
                CALL,
                Err(HEADER_MISMATCH),
            ),
            (
                "method twice",
                &[
                    V26,
                    ("mcp-method", "tools/call"),
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "echo"),
                ],
                CALL,
                Err(HEADER_MISMATCH),
            ),
            (
                "body version without the header",
                &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
                CALL,
                Err(HEADER_MISMATCH),
            ),
            (
                "body version differs from the header",
                &[("mcp-protocol-version", "2025-11-25")],
                CALL,
                Err(HEADER_MISMATCH),
            ),
            (
                "handshake era without routing headers",
                &[("mcp-protocol-version", "2025-06-18")],
                OLD_CALL,
                Ok(()),
            ),
            (
                "handshake era, a header that disagrees",
                &[("mcp-protocol-version", "2025-11-25"), ("mcp-name", "add")],
                OLD_CALL,
                Err(HEADER_MISMATCH),
            ),
            (
                "unknown revision",
                &[("mcp-protocol-version", "1900-01-01")],
                OLD_CALL,
                Err(UNSUPPORTED_VERSION),
            ),
            (
                "batch where batching was removed",
                &[("mcp-protocol-version", "2025-06-18")],
                BATCH,
                Err(INVALID_REQUEST),
            ),
            (
                "batch in 2025-03-26",
                &[("mcp-protocol-version", "2025-03-26")],
                BATCH,
                Ok(()),
            ),
            ("batch without a version header", &[], BATCH, Ok(())),
            (
                "batch with a routing header",
                &[("mcp-method", "ping")],
                BATCH,
                Err(HEADER_MISMATCH),
            ),
        ];
        for (case, pairs, body, expected) in rows {
            assert_eq!(judge(pairs, body), *expected, "{case}");
        }
    }
}
