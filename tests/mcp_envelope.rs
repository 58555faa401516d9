//! Property: for generated JSON-RPC bodies — keys in any order, any character of a key or a string written as
//! itself or as a `\u` escape (surrogate pairs included), nested `arguments` that hold their own `name`,
//! duplicate keys, case-changed methods, batches — the envelope the crate reads is what two standard parsers
//! read over the whole body: `serde_json`, and an independent one (`jiter`, pydantic's parser, which keeps
//! duplicate keys so they can be seen).
//!
//! - a body with a duplicate key in the envelope, `params` or `params._meta` (after decoding) is refused;
//! - otherwise, a body the crate accepts has, member by member, the method and the name (`params.name`, or
//!   `params.uri` for `resources/read`) both parsers read, so the tool judged is the tool the upstream runs;
//! - a body the crate refuses otherwise has a reason both parsers can see: a known method in another case, or
//!   a name-bearing method without a string name.
#![cfg(feature = "mcp")]

use std::borrow::Cow;

use jiter::JsonValue;
use proptest::{collection::vec, prelude::*, sample::select};
use serde_json::Value;
use tower_mcp_auth::mcp::Envelope;

/// One JSON string: each character as itself or escaped (characters JSON requires escaped always are).
fn encode(text: &str, escapes: &[bool]) -> String {
    let mut out = String::from('"');
    for (i, c) in text.chars().enumerate() {
        let escape = escapes
            .get(i % escapes.len().max(1))
            .copied()
            .unwrap_or(false);
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if escape => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn name_text() -> impl Strategy<Value = String> {
    vec(
        select(vec![
            'a', 'd', 'e', 'o', 'h', 'c', '/', '"', '\\', 'é', '😀', '\u{1}', 'A', '_',
        ]),
        0..8,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn escapes() -> impl Strategy<Value = Vec<bool>> {
    vec(any::<bool>(), 1..6)
}

/// A member's `params`: its entries as (key text, value text).
fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        prop::option::of((name_text(), escapes(), escapes())),
        prop::option::of((name_text(), escapes())),
        prop::option::of(select(vec![
            r#"{"name":"rm","n\u0061me":"x"}"#,
            r#"[1,{"name":"rm"}]"#,
            "7",
        ])),
        prop::option::of(select(vec!["\"2026-07-28\"", "\"2025-11-25\""])),
        any::<bool>(),
        prop::option::of(select(vec!["3", "null", "{\"a\":1}"])),
    )
        .prop_map(|(name, uri, arguments, version, twice, odd_name)| {
            let mut entries = Vec::new();
            if let Some((name, key_escapes, value_escapes)) = name {
                let value = encode(&name, &value_escapes);
                entries.push((encode("name", &key_escapes), value.clone()));
                if twice {
                    entries.push((encode("name", &[true]), encode("other", &[false])));
                }
            } else if let Some(odd) = odd_name {
                entries.push(("\"name\"".to_owned(), odd.to_owned()));
            }
            if let Some((uri, value_escapes)) = uri {
                entries.push((
                    "\"uri\"".to_owned(),
                    encode(&format!("file:///{uri}"), &value_escapes),
                ));
            }
            if let Some(arguments) = arguments {
                entries.push(("\"arguments\"".to_owned(), arguments.to_owned()));
            }
            if let Some(version) = version {
                entries.push((
                    "\"_meta\"".to_owned(),
                    format!(r#"{{"io.modelcontextprotocol/protocolVersion":{version}}}"#),
                ));
            }
            entries
        })
}

fn object(entries: &[(String, String)], order: &[usize]) -> String {
    let mut indices: Vec<usize> = (0..entries.len()).collect();
    // A permutation from the generated keys: sort by them.
    indices.sort_by_key(|i| order.get(*i).copied().unwrap_or(*i));
    let body: Vec<String> = indices
        .iter()
        .map(|i| format!("{}:{}", entries[*i].0, entries[*i].1))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn message() -> impl Strategy<Value = String> {
    (
        select(vec![
            "tools/call",
            "prompts/get",
            "resources/read",
            "tools/list",
            "ping",
            "Tools/call",
            "TOOLS/CALL",
            "x/custom",
        ]),
        escapes(),
        params(),
        vec(any::<usize>(), 8),
        vec(any::<usize>(), 8),
        any::<bool>(),
    )
        .prop_map(
            |(method, method_escapes, params, order, params_order, twice)| {
                let mut entries = vec![
                    ("\"jsonrpc\"".to_owned(), "\"2.0\"".to_owned()),
                    ("\"id\"".to_owned(), "1".to_owned()),
                    (
                        encode("method", &method_escapes),
                        encode(method, &method_escapes),
                    ),
                    ("\"params\"".to_owned(), object(&params, &params_order)),
                ];
                if twice {
                    entries.push(("\"method\"".to_owned(), "\"tools/list\"".to_owned()));
                }
                object(&entries, &order)
            },
        )
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => message(),
        1 => vec(message(), 1..4).prop_map(|members| format!("[{}]", members.join(", "))),
    ]
}

/// Whether the object `value` has a key twice (after decoding).
fn duplicated(object: &[(Cow<'_, str>, JsonValue<'_>)]) -> bool {
    object
        .iter()
        .enumerate()
        .any(|(i, (k, _))| object[..i].iter().any(|(seen, _)| seen == k))
}

fn jiter_get<'a, 's>(value: &'a JsonValue<'s>, key: &str) -> Option<&'a JsonValue<'s>> {
    match value {
        JsonValue::Object(object) => object.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

fn jiter_str<'a>(value: Option<&'a JsonValue<'_>>) -> Option<&'a str> {
    match value {
        Some(JsonValue::Str(s)) => Some(s),
        _ => None,
    }
}

/// Whether a member has a duplicate key in the envelope, `params` or `params._meta`, as `jiter` reads it.
fn member_duplicates(member: &JsonValue<'_>) -> bool {
    let JsonValue::Object(object) = member else {
        return false;
    };
    let params = jiter_get(member, "params");
    let meta = params.and_then(|p| jiter_get(p, "_meta"));
    duplicated(object)
        || [params, meta].into_iter().flatten().any(|v| match v {
            JsonValue::Object(o) => duplicated(o),
            _ => false,
        })
}

const NAME_BEARING: [&str; 3] = ["tools/call", "prompts/get", "resources/read"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn the_envelope_read_is_what_standard_parsers_read(body in body()) {
        let ours = Envelope::parse(body.as_bytes());
        let serde: Value = serde_json::from_str(&body).expect("generated bodies are JSON");
        let jiter = JsonValue::parse(body.as_bytes(), false).expect("jiter reads it too");
        let members: Vec<&JsonValue<'_>> = match &jiter {
            JsonValue::Array(members) => members.iter().collect(),
            one => vec![one],
        };
        let serde_members: Vec<&Value> = match &serde {
            Value::Array(members) => members.iter().collect(),
            one => vec![one],
        };
        if members.iter().any(|m| member_duplicates(m)) {
            prop_assert!(ours.is_err(), "a duplicate key was accepted: {body}");
            return Ok(());
        }
        match ours {
            Ok(envelope) => {
                prop_assert_eq!(envelope.messages().len(), members.len());
                for ((message, jiter), serde) in envelope.messages().iter().zip(&members).zip(&serde_members) {
                    let method = jiter_str(jiter_get(jiter, "method"));
                    prop_assert_eq!(message.method(), method, "{}", body);
                    prop_assert_eq!(message.method(), serde["method"].as_str(), "{}", body);
                    let field = if method == Some("resources/read") { "uri" } else { "name" };
                    let expected = method
                        .filter(|m| NAME_BEARING.contains(m))
                        .and(jiter_str(jiter_get(jiter, "params").and_then(|p| jiter_get(p, field))));
                    prop_assert_eq!(message.name(), expected, "{}", body);
                    let serde_name = method
                        .filter(|m| NAME_BEARING.contains(m))
                        .and(serde["params"][field].as_str());
                    prop_assert_eq!(message.name(), serde_name, "{}", body);
                }
            }
            Err(_) => {
                // A reason both parsers can see in some member.
                let explained = serde_members.iter().any(|m| {
                    let method = m["method"].as_str().unwrap_or_default();
                    let case_changed = NAME_BEARING
                        .iter()
                        .chain(&["tools/list", "ping"])
                        .any(|known| known.eq_ignore_ascii_case(method) && *known != method);
                    let field = if method == "resources/read" { "uri" } else { "name" };
                    let nameless = NAME_BEARING.contains(&method) && !m["params"][field].is_string();
                    case_changed || nameless
                });
                prop_assert!(explained, "refused without a reason: {body}");
            }
        }
    }
}
