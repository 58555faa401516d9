//! `Envelope`: the JSON-RPC envelope of an MCP request body, read once — method, id and, for name-bearing
//! methods, the name — without keeping the arguments.

use std::{borrow::Cow, fmt};

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The methods whose `params` name what they act on, and the parameter that names it: the methods the
/// 2026-07-28 revision mirrors in the `Mcp-Name` header.
const NAME_BEARING: &[(&str, NameKind)] = &[
    ("tools/call", NameKind::Tool),
    ("prompts/get", NameKind::Prompt),
    ("resources/read", NameKind::Resource),
];

/// Every method of the MCP revisions this crate knows: a method that equals one of them ignoring case but
/// not exactly is refused, so an upstream that compares methods loosely cannot run a call the gateway
/// judged as something else. Also a bounded label set for metrics by method.
///
/// ```
/// assert!(tower_mcp_auth::mcp::KNOWN_METHODS.contains(&"tools/call"));
/// ```
pub const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// The `_meta` key where 2026-07-28 requests carry their protocol version.
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// What a name-bearing method names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameKind {
    /// A tool (`tools/call`, `params.name`).
    Tool,
    /// A prompt (`prompts/get`, `params.name`).
    Prompt,
    /// A resource (`resources/read`, `params.uri`).
    Resource,
}

impl NameKind {
    /// `tool`, `prompt` or `resource`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Prompt => "prompt",
            Self::Resource => "resource",
        }
    }
}

/// A JSON-RPC request id: a string, a number (kept as written) or `null`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestId {
    /// A string id.
    String(Box<str>),
    /// A numeric id.
    Number(serde_json::Number),
    /// `"id": null`.
    Null,
}

impl RequestId {
    /// The id as a JSON value, for an answer that echoes it.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::String(s) => serde_json::Value::String(s.to_string()),
            Self::Number(n) => serde_json::Value::Number(n.clone()),
            Self::Null => serde_json::Value::Null,
        }
    }
}

/// One JSON-RPC message of a request body: a request (method and id), a notification (method, no id) or a
/// response the client sends back (no method).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    method: Option<Cow<'static, str>>,
    id: Option<RequestId>,
    name: Option<Box<str>>,
    kind: Option<NameKind>,
    meta_version: Option<Box<str>>,
}

impl Message {
    /// The method, escapes decoded; `None` for a response.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The method as held: borrowed from [`KNOWN_METHODS`] when it is one of them (cloning it copies nothing).
    pub(crate) fn method_name(&self) -> Option<&Cow<'static, str>> {
        self.method.as_ref()
    }

    /// The id; `None` for a notification.
    pub fn id(&self) -> Option<&RequestId> {
        self.id.as_ref()
    }

    /// The name a name-bearing method acts on (`params.name`, or `params.uri` for `resources/read`), escapes
    /// decoded; `None` for other methods.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// What [`name`](Self::name) names, for name-bearing methods.
    pub fn name_kind(&self) -> Option<NameKind> {
        self.kind
    }

    /// The tool a `tools/call` calls.
    pub fn tool(&self) -> Option<&str> {
        match self.kind {
            Some(NameKind::Tool) => self.name(),
            _ => None,
        }
    }

    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`, when the message carries it.
    pub fn meta_protocol_version(&self) -> Option<&str> {
        self.meta_version.as_deref()
    }
}

/// The envelope of a request body: one message, or a JSON-RPC batch.
///
/// Parsed by [`Envelope::parse`] with `serde_json`, so escapes are decoded exactly as a standard JSON parser
/// decodes them; the `arguments` of a call are skipped, never copied.
///
/// ```
/// use tower_mcp_auth::mcp::Envelope;
///
/// let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"\u0065cho","arguments":{"x":1}}}"#;
/// let envelope = Envelope::parse(body).unwrap();
/// let call = &envelope.messages()[0];
/// assert_eq!(call.method(), Some("tools/call"));
/// assert_eq!(call.tool(), Some("echo"));
/// assert!(!envelope.is_batch());
///
/// // A duplicate key leaves what the upstream acts on open to interpretation: refused.
/// let twice = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#;
/// assert!(Envelope::parse(twice).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    messages: Vec<Message>,
    batch: bool,
}

impl Envelope {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<Self, EnvelopeError> {
        let envelope: Self = serde_json::from_slice(body).map_err(|e| {
            if e.is_data() {
                // Our own errors carry their kind in the message.
                let message = e.to_string();
                if message.starts_with(DUPLICATE) {
                    return EnvelopeError::DuplicateKey;
                }
                if message.starts_with(CASE) {
                    return EnvelopeError::MethodCase;
                }
                EnvelopeError::InvalidRequest
            } else {
                EnvelopeError::Parse
            }
        })?;
        if envelope.messages.is_empty() {
            return Err(EnvelopeError::InvalidRequest);
        }
        Ok(envelope)
    }

    /// The messages: one, or the members of a batch in order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Whether the body is a JSON-RPC batch (an array), even of one member.
    pub fn is_batch(&self) -> bool {
        self.batch
    }

    /// The single message of a body that is not a batch.
    pub fn single(&self) -> Option<&Message> {
        match (self.batch, self.messages.as_slice()) {
            (false, [one]) => Some(one),
            _ => None,
        }
    }
}

/// Why a body is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not JSON.
    Parse,
    /// JSON, but not a JSON-RPC message or batch of them (or a name that is not a string).
    InvalidRequest,
    /// The same key twice in the envelope, `params` or `params._meta`.
    DuplicateKey,
    /// A method that differs from a known MCP method only in case.
    MethodCase,
}

impl EnvelopeError {
    /// The JSON-RPC error code: `-32700` for [`Parse`](Self::Parse), else `-32600`.
    pub fn code(self) -> i64 {
        match self {
            Self::Parse => -32700,
            _ => -32600,
        }
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Parse => "the body is not JSON",
            Self::InvalidRequest => "the body is not a JSON-RPC message",
            Self::DuplicateKey => "the JSON-RPC message has a duplicate key",
            Self::MethodCase => "the method differs from an MCP method only in case",
        })
    }
}

impl std::error::Error for EnvelopeError {}

const DUPLICATE: &str = "duplicate key";
const CASE: &str = "method case";

/// An object key, borrowed from the body unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Records the keys of one object, refusing a second occurrence. Objects here have a handful of keys, and keys
/// without escapes are borrowed: the first eight are recorded in place, without allocating.
#[derive(Default)]
struct Seen<'de> {
    first: [Option<Cow<'de, str>>; 8],
    more: Vec<Cow<'de, str>>,
}

impl<'de> Seen<'de> {
    /// The next key of `map`, refused if it was seen before.
    fn next<A: MapAccess<'de>>(&mut self, map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
        let Some(Key(key)) = map.next_key::<Key<'de>>()? else {
            return Ok(None);
        };
        let mut seen = self
            .first
            .iter()
            .map_while(Option::as_ref)
            .chain(&self.more);
        if seen.any(|known| *known == key) {
            return Err(de::Error::custom(DUPLICATE));
        }
        match self.first.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(key.clone()),
            None => self.more.push(key.clone()),
        }
        Ok(Some(key))
    }
}

impl<'de> de::Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvelopeVisitor;

        impl<'de> Visitor<'de> for EnvelopeVisitor {
            type Value = Envelope;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC message or batch")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Envelope, A::Error> {
                Ok(Envelope {
                    messages: vec![MessageVisitor.visit_map(map)?],
                    batch: false,
                })
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Envelope, A::Error> {
                let mut messages = Vec::new();
                while let Some(message) = seq.next_element_seed(MessageSeed)? {
                    messages.push(message);
                }
                Ok(Envelope {
                    messages,
                    batch: true,
                })
            }
        }

        deserializer.deserialize_any(EnvelopeVisitor)
    }
}

struct MessageSeed;

impl<'de> de::DeserializeSeed<'de> for MessageSeed {
    type Value = Message;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Message, D::Error> {
        deserializer.deserialize_map(MessageVisitor)
    }
}

/// A JSON string, or anything else (skipped): a name is read only when the method turns out to bear one.
enum Text {
    String(Box<str>),
    Other,
}

impl<'de> de::Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text::String(v.into()))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Text, E> {
                Ok(Text::Other)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Text, E> {
                Ok(Text::Other)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Text, E> {
                Ok(Text::Other)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Text, E> {
                Ok(Text::Other)
            }

            fn visit_unit<E>(self) -> Result<Text, E> {
                Ok(Text::Other)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text::Other)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text::Other)
            }
        }

        deserializer.deserialize_any(TextVisitor)
    }
}

impl<'de> de::Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(s) => Ok(Self::String(s.into())),
            serde_json::Value::Number(n) => Ok(Self::Number(n)),
            serde_json::Value::Null => Ok(Self::Null),
            _ => Err(de::Error::custom("an id is a string, a number or null")),
        }
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let mut seen = Seen::default();
        let mut method: Option<Cow<'static, str>> = None;
        let mut id = None;
        let mut params = Params::default();
        while let Some(key) = seen.next(&mut map)? {
            match &*key {
                "method" => method = Some(map.next_value::<MethodName>()?.0),
                "id" => id = Some(map.next_value::<RequestId>()?),
                "params" => params = map.next_value::<Params>()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let kind = method.as_deref().and_then(|m| {
            NAME_BEARING
                .iter()
                .find(|(known, _)| *known == m)
                .map(|(_, kind)| *kind)
        });
        // A method borrowed from `KNOWN_METHODS` is one of them exactly (no two of them differ only in case); an
        // owned one is none of them, so one equal to a known method ignoring case differs from it in case.
        if let Some(Cow::Owned(m)) = &method {
            let loosely_known = KNOWN_METHODS
                .iter()
                .any(|known| known.eq_ignore_ascii_case(m));
            if loosely_known {
                return Err(de::Error::custom(CASE));
            }
        }
        let name = match kind {
            None => None,
            Some(kind) => {
                let value = if kind == NameKind::Resource {
                    params.uri
                } else {
                    params.name
                };
                match value {
                    Some(Text::String(name)) => Some(name),
                    // A name-bearing call without a string name: nothing an upstream could run unambiguously.
                    _ => return Err(de::Error::custom("a name-bearing method needs a name")),
                }
            }
        };
        Ok(Message {
            method,
            id,
            name,
            kind,
            meta_version: params.meta_version,
        })
    }
}

/// A method as sent, escapes decoded: one of [`KNOWN_METHODS`] is that list's own string (nearly every message,
/// and no allocation), any other a copy.
struct MethodName(Cow<'static, str>);

impl MethodName {
    fn of(method: &str) -> Self {
        Self(
            KNOWN_METHODS
                .iter()
                .find(|known| **known == method)
                .map_or_else(
                    || Cow::Owned(method.to_owned()),
                    |known| Cow::Borrowed(*known),
                ),
        )
    }
}

impl<'de> de::Deserialize<'de> for MethodName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MethodVisitor;

        impl Visitor<'_> for MethodVisitor {
            type Value = MethodName;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a method name")
            }

            fn visit_str<E: de::Error>(self, method: &str) -> Result<MethodName, E> {
                Ok(MethodName::of(method))
            }
        }

        deserializer.deserialize_str(MethodVisitor)
    }
}

#[derive(Default)]
struct Params {
    name: Option<Text>,
    uri: Option<Text>,
    meta_version: Option<Box<str>>,
}

impl<'de> de::Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamsVisitor;

        impl<'de> Visitor<'de> for ParamsVisitor {
            type Value = Params;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON-RPC params")
            }

            // Positional params name nothing.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Params, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Params::default())
            }

            fn visit_unit<E>(self) -> Result<Params, E> {
                Ok(Params::default())
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut seen = Seen::default();
                let mut params = Params::default();
                while let Some(key) = seen.next(&mut map)? {
                    match &*key {
                        "name" => params.name = Some(map.next_value()?),
                        "uri" => params.uri = Some(map.next_value()?),
                        "_meta" => params.meta_version = map.next_value::<Meta>()?.0,
                        // `arguments` and the rest: skipped, never copied.
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(params)
            }
        }

        deserializer.deserialize_any(ParamsVisitor)
    }
}

struct Meta(Option<Box<str>>);

impl<'de> de::Deserialize<'de> for Meta {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetaVisitor;

        impl<'de> Visitor<'de> for MetaVisitor {
            type Value = Meta;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a _meta object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Meta, A::Error> {
                let mut seen = Seen::default();
                let mut version = None;
                while let Some(key) = seen.next(&mut map)? {
                    if key == META_VERSION {
                        version = match map.next_value::<Text>()? {
                            Text::String(v) => Some(v),
                            Text::Other => {
                                return Err(de::Error::custom("the protocol version is a string"))
                            }
                        };
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Meta(version))
            }
        }

        deserializer.deserialize_map(MetaVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Envelope, EnvelopeError> {
        Envelope::parse(body.as_bytes())
    }

    #[test]
    fn known_methods_differ_beyond_case_and_each_is_held_as_the_list_has_it() {
        // What lets a method found in the list skip the case check.
        for (i, a) in KNOWN_METHODS.iter().enumerate() {
            for b in &KNOWN_METHODS[i + 1..] {
                assert!(!a.eq_ignore_ascii_case(b), "{a} and {b}");
            }
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{a}","params":{{"name":"n","uri":"u"}}}}"#
            );
            let envelope = parse(&body).unwrap_or_else(|e| panic!("{a}: {e:?}"));
            let message = envelope.single().unwrap();
            assert!(matches!(message.method_name(), Some(Cow::Borrowed(m)) if m == a));
        }
        // Escaped, a known method is still the list's own; an unknown one is a copy.
        let escaped = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools\/list"}"#).unwrap();
        assert!(matches!(
            escaped.single().unwrap().method_name(),
            Some(Cow::Borrowed("tools/list"))
        ));
        let other = parse(r#"{"jsonrpc":"2.0","id":1,"method":"x/y"}"#).unwrap();
        assert!(matches!(other.single().unwrap().method_name(), Some(Cow::Owned(m)) if m == "x/y"));
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"Tools/List"}"#),
            Err(EnvelopeError::MethodCase)
        );
    }

    #[test]
    fn a_call_names_its_tool() {
        let e = parse(r#"{"params":{"arguments":{"name":"x"},"name":"echo"},"method":"tools/call","id":"a","jsonrpc":"2.0"}"#).unwrap();
        let m = e.single().unwrap();
        assert_eq!(m.tool(), Some("echo"));
        assert_eq!(m.id(), Some(&RequestId::String("a".into())));
    }

    #[test]
    fn escapes_are_decoded_in_keys_and_values() {
        let e = parse(r#"{"jsonrpc":"2.0","id":1,"\u006dethod":"tools\/call","params":{"n\u0061me":"\u0061dd"}}"#).unwrap();
        assert_eq!(e.single().unwrap().tool(), Some("add"));
    }

    #[test]
    fn duplicate_keys_are_refused_even_when_spelled_differently() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"a"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\u0061me":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"a":1,"a":2}}}"#,
        ] {
            assert_eq!(parse(body), Err(EnvelopeError::DuplicateKey), "{body}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_among_many_keys() {
        // Twelve distinct keys in `_meta`: more than are recorded in place.
        let keys: Vec<String> = (0..12).map(|i| format!("\"k{i}\":{i}")).collect();
        let meta = keys.join(",");
        let body = |extra: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"_meta":{{{meta}{extra}}}}}}}"#
            )
        };
        assert!(parse(&body("")).is_ok());
        for again in ["k0", "k7", "k8", "k11"] {
            let body = body(&format!(",\"{again}\":0"));
            assert_eq!(parse(&body), Err(EnvelopeError::DuplicateKey), "{body}");
        }
    }

    #[test]
    fn case_changed_methods_are_refused() {
        let e = parse(r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"a"}}"#);
        assert_eq!(e, Err(EnvelopeError::MethodCase));
        // A method no revision defines is the upstream's business.
        assert!(parse(r#"{"jsonrpc":"2.0","id":1,"method":"x/Custom"}"#).is_ok());
    }

    #[test]
    fn a_call_without_a_string_name_is_refused() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}"#,
        ] {
            assert_eq!(parse(body), Err(EnvelopeError::InvalidRequest), "{body}");
        }
        // Other methods may carry any `name`.
        assert!(parse(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"name":[1]}}"#).is_ok());
    }

    #[test]
    fn batches_keep_every_member() {
        let e = parse(r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#).unwrap();
        assert!(e.is_batch() && e.single().is_none());
        assert_eq!(e.messages()[0].tool(), Some("a"));
        assert_eq!(e.messages()[1].id(), None);
        assert_eq!(parse("[]"), Err(EnvelopeError::InvalidRequest));
    }

    #[test]
    fn resources_and_prompts_are_named_too() {
        let e = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#,
        )
        .unwrap();
        let m = e.single().unwrap();
        assert_eq!(
            (m.name(), m.name_kind(), m.tool()),
            (Some("file:///a"), Some(NameKind::Resource), None)
        );
        let e = parse(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#).unwrap();
        let m = e.single().unwrap();
        assert_eq!(
            (m.name(), m.meta_protocol_version()),
            (Some("p"), Some("2026-07-28"))
        );
    }

    #[test]
    fn not_json_rpc() {
        assert_eq!(parse("{"), Err(EnvelopeError::Parse));
        assert_eq!(parse("{} x"), Err(EnvelopeError::Parse));
        assert_eq!(parse("3"), Err(EnvelopeError::InvalidRequest));
        assert_eq!(parse(r#"{"method":3}"#), Err(EnvelopeError::InvalidRequest));
        assert_eq!(parse(r#"{"id":{}}"#), Err(EnvelopeError::InvalidRequest));
    }
}
