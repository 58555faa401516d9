//! The relay's connector: the TLS connector's connections, without connection details on every response.
//!
//! hyper-util's client copies what a connection reports ([`Connected::extra`], the peer and local addresses for a
//! TCP connection) into the extensions of every response it receives: three allocations per upstream response
//! that nothing in the gateway reads. [`Quiet`] wraps a connector and reports its connections as they are
//! (proxied or not, HTTP/2 negotiated or not) without those details.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::{future::MapOk, TryFutureExt as _};
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tower::Service;

/// A connector whose connections carry no extra details into responses.
///
/// ```
/// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
///
/// let connector = mcp_gateway::tls::https_connector(None).unwrap();
/// let client: Client<_, http_body_util::Full<bytes::Bytes>> =
///     Client::builder(TokioExecutor::new()).build(mcp_gateway::connector::Quiet::new(connector));
/// # drop(client);
/// ```
#[derive(Clone, Debug)]
pub struct Quiet<C>(C);

impl<C> Quiet<C> {
    /// Wraps `connector`.
    pub fn new(connector: C) -> Self {
        Self(connector)
    }
}

impl<C> Service<Uri> for Quiet<C>
where
    C: Service<Uri>,
{
    type Response = QuietConnection<C::Response>;
    type Error = C::Error;
    type Future = MapOk<C::Future, fn(C::Response) -> QuietConnection<C::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        self.0.call(uri).map_ok(QuietConnection)
    }
}

/// A connection of [`Quiet`]: the inner connection, reporting only how requests are written on it.
#[derive(Debug)]
pub struct QuietConnection<T>(T);

impl<T: Connection> Connection for QuietConnection<T> {
    fn connected(&self) -> Connected {
        let inner = self.0.connected();
        let connected = Connected::new().proxy(inner.is_proxied());
        if inner.is_negotiated_h2() {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl<T: Read + Unpin> Read for QuietConnection<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for QuietConnection<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::client::legacy::connect::HttpConnector;

    /// A connection that reports itself proxied, over HTTP/2, with an extra detail.
    struct Reporting;

    impl Connection for Reporting {
        fn connected(&self) -> Connected {
            Connected::new().proxy(true).negotiated_h2().extra(7u8)
        }
    }

    #[test]
    fn how_requests_are_written_is_kept_and_the_details_are_not() {
        let connected = QuietConnection(Reporting).connected();
        assert!(connected.is_proxied());
        assert!(connected.is_negotiated_h2());
        let mut extensions = http::Extensions::new();
        connected.get_extras(&mut extensions);
        assert!(extensions.get::<u8>().is_none());

        let plain = QuietConnection(PlainReport).connected();
        assert!(!plain.is_proxied() && !plain.is_negotiated_h2());
    }

    struct PlainReport;

    impl Connection for PlainReport {
        fn connected(&self) -> Connected {
            Connected::new()
        }
    }

    #[tokio::test]
    async fn responses_through_it_carry_no_connection_details() {
        use http_body_util::{BodyExt as _, Empty};
        use hyper_util::{client::legacy::Client, rt::TokioExecutor};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper::service::service_fn(|_| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        Empty::<bytes::Bytes>::new(),
                    ))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        let uri: Uri = format!("http://{address}/").parse().unwrap();
        let quiet: Client<_, Empty<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build(Quiet::new(HttpConnector::new()));
        let response = quiet.get(uri.clone()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response
            .extensions()
            .get::<hyper_util::client::legacy::connect::HttpInfo>()
            .is_none());
        response.into_body().collect().await.unwrap();
        // The same server through the bare connector: the detail this wrapper leaves out is there.
        let plain: Client<_, Empty<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let response = plain.get(uri).await.unwrap();
        assert!(response
            .extensions()
            .get::<hyper_util::client::legacy::connect::HttpInfo>()
            .is_some());
    }
}
