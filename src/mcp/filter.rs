//! `McpResponseBody`: the upstream's answer, with `tools/list` results rewritten to hold only the tools the
//! caller may call — a JSON body read whole, an event stream rewritten one event at a time.

use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use serde_json::Value;

use crate::{permissions::Tools, validate::BoxError};

/// The largest JSON answer read whole to be filtered (an event stream is filtered per event, each at most this).
const MAX_FILTERED: usize = 16 * 1024 * 1024;

/// What a `tools/list` answer may keep, and for which request ids.
#[derive(Debug)]
pub(crate) struct ListFilter {
    /// The ids of the `tools/list` requests, as JSON values.
    pub(crate) ids: Vec<Value>,
    /// The upstream's own rule (every caller's).
    pub(crate) server: Tools,
    /// The caller's tools.
    pub(crate) caller: Tools,
    /// Whether the list differs per caller: it is then labelled `cacheScope: "private"` (SEP-2549).
    pub(crate) private: bool,
    /// Whether the revision has cacheable results (2026-07-28): the label is added even where the upstream
    /// sent none.
    pub(crate) cacheable: bool,
}

impl ListFilter {
    fn allows(&self, tool: &str) -> bool {
        self.server.allows(tool) && self.caller.allows(tool)
    }

    /// Filters one JSON-RPC message in place; whether it was a `tools/list` answer.
    fn message(&self, message: &mut Value) -> bool {
        let Some(object) = message.as_object_mut() else {
            return false;
        };
        if !object.get("id").is_some_and(|id| self.ids.contains(id)) {
            return false;
        }
        let Some(result) = object.get_mut("result").and_then(Value::as_object_mut) else {
            return false;
        };
        if let Some(Value::Array(tools)) = result.get_mut("tools") {
            tools.retain(|tool| {
                tool.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|name| self.allows(name))
            });
        }
        if self.private && (self.cacheable || result.contains_key("cacheScope")) {
            result.insert("cacheScope".to_owned(), Value::from("private"));
        }
        true
    }

    /// A JSON body (a message or an array of them) filtered; `None` when it is not JSON.
    fn json(&self, bytes: &[u8]) -> Option<Bytes> {
        let mut value: Value = serde_json::from_slice(bytes).ok()?;
        let changed = match &mut value {
            Value::Array(messages) => messages
                .iter_mut()
                .fold(false, |changed, m| self.message(m) | changed),
            message => self.message(message),
        };
        Some(if changed {
            Bytes::from(value.to_string())
        } else {
            Bytes::copy_from_slice(bytes)
        })
    }

    /// One event of a stream, its terminating blank line included, filtered when its data is a `tools/list`
    /// answer.
    fn event(&self, event: &[u8]) -> Bytes {
        let Ok(text) = std::str::from_utf8(event) else {
            return Bytes::copy_from_slice(event);
        };
        let lines: Vec<&str> = text.lines().collect();
        let data: Vec<&str> = lines
            .iter()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            return Bytes::copy_from_slice(event);
        }
        let Ok(mut message) = serde_json::from_str::<Value>(&data.join("\n")) else {
            return Bytes::copy_from_slice(event);
        };
        if !self.message(&mut message) {
            return Bytes::copy_from_slice(event);
        }
        let mut out = String::with_capacity(event.len());
        let mut wrote_data = false;
        for line in lines {
            if line.starts_with("data:") {
                if !wrote_data {
                    out.push_str("data: ");
                    out.push_str(&message.to_string());
                    out.push('\n');
                    wrote_data = true;
                }
            } else if !line.is_empty() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
        Bytes::from(out)
    }
}

/// The end of the first complete event in `buf` (after its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        let rest = &buf[i..];
        for end in [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"] {
            if rest.starts_with(end) {
                return Some(i + end.len());
            }
        }
        i += 1;
    }
    None
}

/// How the answer is filtered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Json,
    Sse,
}

pin_project! {
    /// The body of responses from [`RequireTools`](super::RequireTools): the inner body, the layer's own JSON
    /// body, or the inner body with `tools/list` answers filtered.
    pub struct McpResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { #[pin] body: Full<Bytes> },
        Failed { failed: bool },
        Filtered {
            #[pin]
            body: B,
            buf: BytesMut,
            filter: Arc<ListFilter>,
            mode: Mode,
            ended: bool,
        },
    }
}

impl<B> McpResponseBody<B> {
    /// The upstream's body, unwrapped, when it is relayed as it is (nothing to filter); otherwise this body back.
    /// Lets a server whose stack has one body type (axum's `Body`, say) take the body back without wrapping it
    /// again.
    pub fn into_inner(self) -> Result<B, Self> {
        match self.kind {
            Kind::Inner { body } => Ok(body),
            kind => Err(Self { kind }),
        }
    }

    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                body: Full::new(bytes),
            },
        }
    }

    /// A body that fails at once: an answer that cannot be filtered is never relayed.
    pub(crate) fn failed() -> Self {
        Self {
            kind: Kind::Failed { failed: false },
        }
    }

    pub(crate) fn filtered(body: B, filter: Arc<ListFilter>, mode: Mode) -> Self {
        Self {
            kind: Kind::Filtered {
                body,
                buf: BytesMut::new(),
                filter,
                mode,
                ended: false,
            },
        }
    }
}

impl<B> Default for McpResponseBody<B> {
    fn default() -> Self {
        Self::full(Bytes::new())
    }
}

impl<B> fmt::Debug for McpResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Full { .. } => "full",
            Kind::Failed { .. } => "failed",
            Kind::Filtered { .. } => "filtered",
        };
        f.debug_tuple("McpResponseBody").field(&kind).finish()
    }
}

/// The answer when an upstream's list cannot be read to be filtered: nothing of it reaches the client.
fn unreadable() -> BoxError {
    "the upstream's tools/list answer could not be filtered".into()
}

impl<B> Body for McpResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Full { body } => body.poll_frame(cx).map_err(|never| match never {}),
            KindProj::Failed { failed } => {
                if std::mem::replace(failed, true) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(unreadable())))
                }
            }
            KindProj::Filtered {
                mut body,
                buf,
                filter,
                mode,
                ended,
            } => loop {
                if *mode == Mode::Sse {
                    if let Some(end) = event_end(buf) {
                        let event = buf.split_to(end);
                        return Poll::Ready(Some(Ok(Frame::data(filter.event(&event)))));
                    }
                }
                if *ended {
                    if buf.is_empty() {
                        return Poll::Ready(None);
                    }
                    let rest = buf.split();
                    let out = match mode {
                        Mode::Sse => filter.event(&rest),
                        Mode::Json => match filter.json(&rest) {
                            Some(out) => out,
                            None => return Poll::Ready(Some(Err(unreadable()))),
                        },
                    };
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                match body.as_mut().poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => *ended = true,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            if buf.len() + data.len() > MAX_FILTERED {
                                return Poll::Ready(Some(Err(unreadable())));
                            }
                            buf.extend_from_slice(data);
                        }
                        // Trailers of an answer that is rewritten are dropped.
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { body } => body.is_end_stream(),
            Kind::Failed { failed } => *failed,
            Kind::Filtered { ended, buf, .. } => *ended && buf.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { body } => body.size_hint(),
            Kind::Failed { .. } | Kind::Filtered { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(private: bool) -> ListFilter {
        ListFilter {
            ids: vec![Value::from(1)],
            server: Tools::except(["add"]),
            caller: Tools::only(["echo", "add", "sum"]),
            private,
            cacheable: false,
        }
    }

    #[test]
    fn json_answers_keep_only_callable_tools() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},{"name":"add"},{"name":"secret"},{"name":"sum"}],"nextCursor":"c","cacheScope":"public","ttlMs":60000}}"#;
        let out: Value = serde_json::from_slice(&filter(true).json(body).unwrap()).unwrap();
        let names: Vec<&str> = out["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["echo", "sum"]);
        assert_eq!(out["result"]["cacheScope"], "private");
        assert_eq!(out["result"]["nextCursor"], "c");
    }

    #[test]
    fn other_ids_are_left_alone() {
        let body = br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"add"}]}}"#;
        assert_eq!(&filter(false).json(body).unwrap()[..], &body[..]);
    }

    #[test]
    fn events_are_rewritten_one_at_a_time() {
        let f = filter(false);
        let stream = b"event: message\r\nid: 7\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"add\"},{\"name\":\"echo\"}]}}\r\n\r\n";
        let end = event_end(stream).unwrap();
        assert_eq!(end, stream.len());
        let out = f.event(stream);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("event: message\nid: 7\ndata: "), "{text}");
        assert!(text.contains("echo") && !text.contains("add"), "{text}");
        let ping = b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        assert_eq!(&f.event(ping)[..], &ping[..]);
    }
}
