//! Connection handling: accepting within a connection limit, TLS, HTTP/1.1 (and HTTP/2 where TLS's ALPN agrees on
//! it) through hyper-util, the header-read timeout, a total deadline for reading each request body, and early answers that clients which
//! reuse connections survive.
//!
//! An answer given before the request body was read (a 401 on a route with JWT admission, a 413 for a declared
//! length over `--max-body`) leaves the rest of the body in flight. Closing the connection then makes the
//! kernel reset it while the client is still writing, and the client loses the answer; keeping it open without
//! reading makes the next request on it parse the old body. So, as nginx's lingering close does, the rest of the
//! body is read and discarded in the background, at most [`Limits::linger_max_bytes`] and for at most
//! [`Limits::linger_timeout`], while the answer is written. A body whose rest is known to fit keeps the
//! connection reusable; any other (chunked, too long, or a client waiting for `100 Continue`) is answered with
//! `Connection: close`, so no client reuses a connection the gateway is about to close.

use std::{
    convert::Infallible,
    error::Error as StdError,
    fmt,
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    http::{header, HeaderValue, Request, Response, Version},
};
use bytes::Bytes;
use futures_util::FutureExt as _;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::{
    body::Incoming,
    server::conn::{http1, http2},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{
    net::TcpListener,
    sync::Semaphore,
    time::{Instant, Sleep},
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::stage::Answers;

/// The default [`Limits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`Limits::body_read_timeout`].
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The default [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default [`Limits::linger_timeout`].
pub const DEFAULT_LINGER_TIMEOUT: Duration = Duration::from_secs(5);
/// The default [`Limits::linger_max_bytes`].
pub const DEFAULT_LINGER_MAX_BYTES: u64 = 16 * 1024 * 1024;

type BoxError = Box<dyn StdError + Send + Sync>;

/// What a client may hold of the gateway, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's head, counted from the connection's start or from the end
    /// of the previous exchange (so it also bounds an idle keep-alive connection), and to finish a TLS
    /// handshake. HTTP/1.1 only: an HTTP/2 connection (over TLS, by ALPN) is not cut while idle.
    pub header_read_timeout: Duration,
    /// How long, from its head, a request's body may take to arrive whole; past it the request is answered 408.
    pub body_read_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog until one ends.
    pub max_connections: usize,
    /// How long the rest of a body the gateway did not need is read and discarded after an early answer.
    pub linger_timeout: Duration,
    /// How many bytes of such a body are read and discarded at most.
    pub linger_max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            linger_timeout: DEFAULT_LINGER_TIMEOUT,
            linger_max_bytes: DEFAULT_LINGER_MAX_BYTES,
        }
    }
}

/// The error a request body yields once [`Limits::body_read_timeout`] has passed; the proxy answers it 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout;

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("the request body did not arrive within the body read timeout")
    }
}

impl StdError for BodyTimeout {}

/// Whether `error`, or an error it wraps, is a [`BodyTimeout`].
pub fn is_body_timeout(error: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .is_some_and(|inner| inner.is::<BodyTimeout>());
        if e.is::<BodyTimeout>() || wrapped {
            return true;
        }
        source = e.source();
    }
    false
}

/// Serves `app` on `listener`, over TLS when `tls` is given, until `shutdown` completes; then waits for the
/// connections still open to finish their exchanges.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: impl Answers,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    // Each connection's protocol is known before hyper sees it (plain HTTP is HTTP/1.1; over TLS, ALPN says),
    // so each is served by hyper's own builder for it, and hyper never waits, untimed, for the bytes that would
    // tell HTTP/1 from HTTP/2.
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new());
    let (h1, h2) = (Arc::new(h1), Arc::new(h2));
    tokio::pin!(shutdown);
    loop {
        // The permit is taken before `accept`: past the limit, clients wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let service = exchanges(app.clone(), limits);
        // One task type per transport: a plain connection's task holds an HTTP/1 connection only, not the room
        // a TLS stream and an HTTP/2 connection would take (each task's future is laid out at its largest).
        match &tls {
            None => {
                // A `map`, not an `async` block, around the connection: the block would keep the stream and the
                // service it hands to hyper beside the connection holding them.
                let connection = watcher.watch(h1.serve_connection(TokioIo::new(tcp), service));
                tokio::spawn(connection.map(move |served| {
                    drop(permit);
                    ended(peer, served);
                }));
            }
            Some(acceptor) => {
                let (acceptor, h1, h2) = (acceptor.clone(), h1.clone(), h2.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp));
                    let stream = match handshake.await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let io = TokioIo::new(stream);
                    let served = match io.inner().get_ref().1.alpn_protocol() {
                        Some(b"h2") => watcher.watch(h2.serve_connection(io, service)).await,
                        _ => watcher.watch(h1.serve_connection(io, service)).await,
                    };
                    ended(peer, served);
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The service of one connection: each request is an [`exchange`] with `app`.
fn exchanges<A: Answers>(
    app: A,
    limits: Limits,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request| {
        exchange(app.clone(), request, limits).map(Ok::<_, Infallible>)
    })
}

/// Logs how a connection ended, when it ended with an error.
fn ended<E: std::fmt::Display>(peer: std::net::SocketAddr, served: Result<(), E>) {
    if let Err(error) = served {
        tracing::debug!(%peer, error = %error, "connection ended with an error");
    }
}

/// One exchange: the request body watched for its deadline and for being left unread, then the app's answer,
/// with the rest of a left body drained or the connection marked for closing.
///
/// The request is prepared and handed to the app here, and only the app's call and what the answer needs are
/// kept in the returned future. hyper keeps room for this future for a connection's whole life, and an `async
/// fn` taking the request would hold it, its wrapped copy and the call side by side: 1,216 bytes, against the
/// call and a few fields this way, per connection and so per open event stream.
fn exchange(
    app: impl Answers,
    request: Request<Incoming>,
    limits: Limits,
) -> impl Future<Output = Response<Body>> + Send {
    let http1 = request.version() <= Version::HTTP_11;
    let expects_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let state = Arc::new(Mutex::new(State::InUse));
    let request = request.map(|body| {
        Body::new(Watched {
            inner: Some(body),
            deadline: Instant::now() + limits.body_read_timeout,
            timer: None,
            read: 0,
            polled: false,
            state: state.clone(),
        })
    });
    // A `map` rather than an `async` block: awaiting the call inside one would hold it twice.
    app.oneshot(request).map(move |answer| {
        let Ok(mut response) = answer;
        let state = std::mem::replace(&mut *state.lock().expect("never poisoned"), State::InUse);
        if !http1 {
            // HTTP/2 ends a stream on its own; the connection carries on.
            return response;
        }
        match state {
            State::InUse | State::Ended => {}
            State::TimedOut => close(&mut response),
            State::Left { body, read, polled } => {
                let rest = declared.map(|length| length.saturating_sub(read));
                if expects_continue && !polled {
                    // The client waits for `100 Continue` before it sends the body: it never comes.
                    close(&mut response);
                } else {
                    if rest.is_none_or(|rest| rest > limits.linger_max_bytes) {
                        close(&mut response);
                    }
                    tokio::spawn(drain(body, limits));
                }
            }
        }
        response
    })
}

fn close(response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// Reads and discards what is left of a request body, within the linger bounds. Dropping the body before its
/// end makes hyper close the connection once the answer is written.
async fn drain(mut body: Incoming, limits: Limits) {
    let mut discarded = 0u64;
    let _ = tokio::time::timeout(limits.linger_timeout, async {
        while let Some(Ok(frame)) = body.frame().await {
            discarded += frame.data_ref().map_or(0, |d| d.len() as u64);
            if discarded > limits.linger_max_bytes {
                return;
            }
        }
    })
    .await;
}

/// What became of a request body once the app answered.
enum State {
    /// The app still holds it (or never looked at it and it is empty).
    InUse,
    /// Read to its end.
    Ended,
    /// Past its deadline.
    TimedOut,
    /// Dropped before its end: `read` bytes were read, and `polled` says whether it was asked for data at all.
    Left {
        body: Incoming,
        read: u64,
        polled: bool,
    },
}

/// A request body with a deadline, which hands itself back to [`exchange`] when dropped before its end.
struct Watched {
    inner: Option<Incoming>,
    /// The body's deadline, counted from its head.
    deadline: Instant,
    /// The timer for `deadline`, armed the first time the body is not all there: a body that arrives with its
    /// head (nearly every MCP request) costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    read: u64,
    polled: bool,
    state: Arc<Mutex<State>>,
}

impl Watched {
    fn set(&self, state: State) {
        *self.state.lock().expect("never poisoned") = state;
    }
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        this.polled = true;
        if this.timer.as_ref().is_some_and(|timer| timer.is_elapsed()) {
            return this.time_out();
        }
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.read += frame.data_ref().map_or(0, |d| d.len() as u64);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => {
                this.inner = None;
                this.set(State::Ended);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => this.time_out(),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Watched {
    fn time_out(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.inner = None;
        self.set(State::TimedOut);
        // An I/O time-out to any reader (the MCP envelope reader answers 408 for it), a `BodyTimeout` to ours.
        Poll::Ready(Some(Err(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            BodyTimeout,
        )))))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take() {
            if body.is_end_stream() {
                self.set(State::Ended);
            } else {
                let (read, polled) = (self.read, self.polled);
                self.set(State::Left { body, read, polled });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_timeout_is_found_under_wrappers() {
        let wrapped = axum::Error::new(axum::Error::new(BodyTimeout));
        assert!(is_body_timeout(&wrapped));
        assert!(!is_body_timeout(&io::Error::other("other")));
    }
}
