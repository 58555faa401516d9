//! The access log: one line per exchange, when its response ends (method, route without its query, status,
//! duration, bytes, how the caller was admitted, and the MCP calls with their outcome).
//!
//! By default ([`AccessLog::Stderr`]) the gateway formats the line itself into a per-thread buffer, with the
//! second of its timestamp formatted once per second, and writes it to standard error in one write, in the
//! same text the log's other lines have (`TIMESTAMP  INFO gateway::access: exchange method=... complete=...`);
//! the log filter (`RUST_LOG`) still decides whether it is written. [`AccessLog::Tracing`] makes it a
//! `tracing` event with the same fields instead, for a subscriber of the operator's choice (JSON, OpenTelemetry
//! logs): the same line, at several times the cost.

use std::{
    cell::{Cell, RefCell},
    fmt::{self, Write as _},
    io::Write as _,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use axum::{
    body::Body,
    extract::Request,
    http::{Method, StatusCode},
    response::Response,
};
use bytes::Bytes;
use futures_util::future::Either;
use http_body::{Body as _, Frame, SizeHint};
use smallvec::SmallVec;
use tower_mcp_auth::{mcp::McpOutcome, Authenticated, Fingerprint, OAuthPassthrough};

use crate::{
    resource_server::Caller,
    sessions::Owner,
    stage::{Answers, Next, Run, Then},
};

/// The `tracing` target of access lines (and of the filter directive that silences them).
pub const TARGET: &str = "gateway::access";

/// Where access lines go (`--access-log`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLog {
    /// Formatted by the gateway and written to standard error, as the log's other lines are.
    #[default]
    Stderr,
    /// As `tracing` events of target `gateway::access`, for the subscriber installed.
    Tracing,
    /// Not written.
    Off,
}

/// How the caller of an exchange was admitted, for the access log and the session's owner: the caller, and the
/// SHA-256 digest of a passthrough token. Never a credential: the line shows the caller's description and at
/// most the token's fingerprint (the digest's first eight hex digits, as [`Fingerprint`] shows a credential),
/// formatted only when a line is written.
#[derive(Clone)]
pub struct AuthOutcome {
    caller: Option<Caller>,
    token_digest: Option<[u8; 32]>,
}

impl AuthOutcome {
    /// How `request` was admitted: its caller, its passthrough token's digest (one digest per request, for the
    /// log and the session's owner), or `None` for neither.
    pub fn of(request: &Request) -> Option<Self> {
        let extensions = request.extensions();
        let caller = extensions
            .get::<Authenticated<Caller>>()
            .map(|admitted| admitted.identity().clone());
        let token_digest = extensions
            .get::<OAuthPassthrough>()
            .map(OAuthPassthrough::token_sha256);
        (caller.is_some() || token_digest.is_some()).then_some(Self {
            caller,
            token_digest,
        })
    }

    /// Whose sessions the exchange may use.
    pub fn owner(&self) -> Option<Owner> {
        Owner::of(self.caller.as_ref(), self.token_digest)
    }
}

impl fmt::Display for AuthOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.token_digest.as_ref().map(Fingerprint::from_digest);
        match (&self.caller, token) {
            (Some(caller), Some(token)) => write!(f, "{caller}+passthrough:{token}"),
            (Some(caller), None) => write!(f, "{caller}"),
            (None, Some(token)) => write!(f, "passthrough:{token}"),
            (None, None) => f.write_str("none"),
        }
    }
}

impl fmt::Debug for AuthOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AuthOutcome")
            .field(&format_args!("{self}"))
            .finish()
    }
}

/// The outcome of an exchange the handler never saw, read from its status.
fn refused(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "challenged",
        StatusCode::FORBIDDEN => "refused",
        StatusCode::SERVICE_UNAVAILABLE => "key_store_unavailable",
        s if s.is_client_error() => "rejected",
        _ => "none",
    }
}

/// How the caller of a logged exchange was admitted: formatted only when the line is written.
pub enum Auth {
    Outcome(AuthOutcome),
    Other(&'static str),
}

impl Auth {
    /// What `response` says of its caller: the handler's outcome, or one read from the status.
    pub fn of(response: &Response) -> Self {
        match response.extensions().get::<Option<AuthOutcome>>() {
            Some(Some(outcome)) => Self::Outcome(outcome.clone()),
            Some(None) => Self::Other("none"),
            None => Self::Other(refused(response.status())),
        }
    }

    /// How the caller was admitted without who, nor which token: `key`, `jwt`, `passthrough`, a caller and
    /// `+passthrough`, or the outcome of a refused exchange.
    #[cfg(feature = "otel")]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Outcome(outcome) => match (&outcome.caller, outcome.token_digest.is_some()) {
                (Some(Caller::Key(_)), false) => "key",
                (Some(Caller::Jwt(_)), false) => "jwt",
                (Some(Caller::Key(_)), true) => "key+passthrough",
                (Some(Caller::Jwt(_)), true) => "jwt+passthrough",
                (None, _) => "passthrough",
            },
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Outcome(outcome) => outcome.fmt(f),
            Self::Other(other) => f.write_str(other),
        }
    }
}

struct Entry {
    /// As a `tracing` event, else written by hand.
    traced: bool,
    method: Method,
    route: Route,
    status: StatusCode,
    auth: Auth,
    started: Instant,
    mcp: Option<McpOutcome>,
}

/// The longest tool or resource name the log repeats; a longer one is cut (it is the client's text).
const MAX_LOGGED_NAME: usize = 128;

/// One field of every MCP call of an exchange, comma-separated; `-` for an exchange without calls.
pub struct Calls<'a>(
    pub Option<&'a McpOutcome>,
    pub fn(&tower_mcp_auth::mcp::CallOutcome) -> Option<&str>,
);

impl Calls<'_> {
    /// Writes the field to `f`: the `Display` text, written straight into the access line's buffer.
    fn write_to<W: fmt::Write>(&self, f: &mut W) -> fmt::Result {
        let Some(outcome) = self.0 else {
            return f.write_str("-");
        };
        for (i, call) in outcome.calls().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let value = (self.1)(call).unwrap_or("-");
            let cut = value
                .char_indices()
                .nth(MAX_LOGGED_NAME)
                .map_or(value, |(at, _)| &value[..at]);
            // Escaped: the client chose these strings. Most need nothing escaped and are written as they are.
            let plain = cut
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'\\' | b'"' | b'\''));
            if plain {
                f.write_str(cut)?;
            } else {
                // A space too, so that no name can add a field of its own to the line.
                for c in cut.chars() {
                    match c {
                        ' ' => f.write_str("\\u{20}")?,
                        c => write!(f, "{}", c.escape_debug())?,
                    }
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Calls<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// A response body that counts its bytes and writes the access-log line when it ends or is dropped.
struct Logged {
    inner: Body,
    bytes: u64,
    entry: Option<Entry>,
}

impl Logged {
    fn log(&mut self, ended: bool) {
        let Some(entry) = self.entry.take() else {
            return;
        };
        let upstream = entry.mcp.as_ref().map_or("-", |m| m.upstream());
        let (method, name, outcome) = (
            Calls(entry.mcp.as_ref(), |c| c.method.as_deref()),
            Calls(entry.mcp.as_ref(), |c| c.name.as_deref()),
            Calls(entry.mcp.as_ref(), |c| Some(c.decision.as_str())),
        );
        let duration_ms = entry.started.elapsed().as_millis() as u64;
        if entry.traced {
            tracing::info!(
                target: TARGET,
                method = %entry.method,
                route = %entry.route.as_str(),
                status = entry.status.as_u16(),
                duration_ms,
                bytes = self.bytes,
                auth = %entry.auth,
                mcp_upstream = %upstream,
                mcp_method = %method,
                mcp_name = %name,
                mcp_outcome = %outcome,
                complete = ended,
                "exchange"
            );
        } else if tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            LINE.with_borrow_mut(|line| {
                line.clear();
                timestamp(line, SystemTime::now());
                line.push_str("  INFO ");
                line.push_str(TARGET);
                // The fields in the order, and with the spelling, of the `tracing` event above; the fixed text and
                // the numbers appended directly, the rest through their `Display`.
                let mut number = itoa::Buffer::new();
                line.push_str(": exchange method=");
                line.push_str(entry.method.as_str());
                line.push_str(" route=");
                line.push_str(entry.route.as_str());
                line.push_str(" status=");
                line.push_str(number.format(entry.status.as_u16()));
                line.push_str(" duration_ms=");
                line.push_str(number.format(duration_ms));
                line.push_str(" bytes=");
                line.push_str(number.format(self.bytes));
                let _ = write!(line, " auth={}", entry.auth);
                line.push_str(" mcp_upstream=");
                line.push_str(upstream);
                for (field, calls) in [
                    (" mcp_method=", &method),
                    (" mcp_name=", &name),
                    (" mcp_outcome=", &outcome),
                ] {
                    line.push_str(field);
                    let _ = calls.write_to(line);
                }
                line.push_str(if ended {
                    " complete=true"
                } else {
                    " complete=false"
                });
                line.push('\n');
                // One write per line, as the log's other lines; a full or closed stderr loses the line.
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            });
        }
    }
}

thread_local! {
    /// The line being written, kept per thread so no line allocates once the buffer has grown.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    /// The second last formatted (since the epoch) and its text, `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// Appends `now` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds), as the log's other lines show it; the
/// part up to the second is formatted once per second and thread.
fn timestamp(line: &mut String, now: SystemTime) {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != seconds {
        let formatted = humantime::format_rfc3339_seconds(
            SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
        )
        .to_string();
        text.copy_from_slice(&formatted.as_bytes()[..19]);
        SECOND.set((seconds, text));
    }
    line.push_str(std::str::from_utf8(&text).unwrap_or("1970-01-01T00:00:00"));
    // `.ffffffZ`: the microseconds, zero-padded to six digits.
    let mut number = itoa::Buffer::new();
    let micros = number.format(since.subsec_micros());
    line.push('.');
    line.push_str(&"000000"[micros.len()..]);
    line.push_str(micros);
    line.push('Z');
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Poll::Ready(None) => self.log(true),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let ended = self.inner.is_end_stream();
        self.log(ended);
    }
}

/// The outermost stage: the access line of each exchange, written to `to` when its response body ends (or is
/// dropped before its end: `complete=false`).
pub fn access_log<S: Answers>(
    to: &AccessLog,
    request: Request,
    next: Next<'_, S>,
) -> Either<Run<S>, Then<S, Started>> {
    let to = *to;
    if to == AccessLog::Off {
        return Either::Left(next.run(request));
    }
    let started = Started {
        traced: to == AccessLog::Tracing,
        method: request.method().clone(),
        route: Route::of(request.uri().path()),
        at: Instant::now(),
    };
    Either::Right(next.then(request, started, logged))
}

/// The path the access line shows: its own copy (a request's URI shares the connection's read buffer, which an
/// event stream would then hold for its whole life), in place up to [`ROUTE_INLINE`] bytes.
struct Route(SmallVec<[u8; ROUTE_INLINE]>);

/// The bytes of a [`Route`] held without an allocation: `/mcp/NAME` and most paths below it.
const ROUTE_INLINE: usize = 64;

impl Route {
    fn of(path: &str) -> Self {
        Self(SmallVec::from_slice(path.as_bytes()))
    }

    fn as_str(&self) -> &str {
        // Copied from a `&str`, so always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// What the access line knows of an exchange before its answer.
pub struct Started {
    traced: bool,
    method: Method,
    route: Route,
    at: Instant,
}

/// The answer, its body counted and logged when it ends.
fn logged(started: Started, response: Response) -> Response {
    let status = response.status();
    let mcp = response.extensions().get::<McpOutcome>().cloned();
    let auth = Auth::of(&response);
    response.map(|inner| {
        Body::new(Logged {
            inner,
            bytes: 0,
            entry: Some(Entry {
                traced: started.traced,
                method: started.method,
                route: started.route,
                status,
                auth,
                started: started.at,
                mcp,
            }),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_names_are_written_as_they_are_or_escaped_so_they_add_no_field() {
        use tower_mcp_auth::mcp::{CallOutcome, Decision};
        let call = |name: &str| CallOutcome {
            method: Some("tools/call".into()),
            name: Some(name.into()),
            decision: Decision::Allowed,
        };
        let outcome = McpOutcome::new(
            "demo",
            vec![
                call("get_weather-2.v1"),
                call("a status=500"),
                call("x\ny"),
                call("q\"'\\"),
                call("é"),
            ],
        );
        let names = Calls(Some(&outcome), |c| c.name.as_deref()).to_string();
        assert_eq!(
            names,
            r#"get_weather-2.v1,a\u{20}status=500,x\ny,q\"\'\\,é"#
        );
        assert!(!names.contains(' ') && !names.contains('\n'));
        assert_eq!(Calls(None, |c| c.name.as_deref()).to_string(), "-");
    }

    #[test]
    fn timestamps_are_utc_with_microseconds_and_the_cached_second_moves_on() {
        let at = |s: u64, micros: u64| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(micros)
        };
        let mut line = String::new();
        timestamp(&mut line, at(1_764_822_536, 555_559));
        assert_eq!(line, "2025-12-04T04:28:56.555559Z");
        line.clear();
        timestamp(&mut line, at(1_764_822_536, 7));
        assert_eq!(line, "2025-12-04T04:28:56.000007Z");
        line.clear();
        timestamp(&mut line, at(1_764_822_537, 0));
        assert_eq!(line, "2025-12-04T04:28:57.000000Z");
        line.clear();
        timestamp(&mut line, at(951_782_400, 1));
        assert_eq!(line, "2000-02-29T00:00:00.000001Z");
    }
}
