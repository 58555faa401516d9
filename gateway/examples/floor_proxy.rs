//! The floor the gateway's cost per request is measured against (`scripts/bench-gateway-instructions.sh`): a
//! minimal hyper 1.x reverse proxy — hyper's HTTP/1 server, hyper-util's legacy client, Tokio — with no
//! authentication, no routing and no log. Not an example to copy: it checks nothing it relays.
//!
//! ```text
//! cargo run --release -p mcp-gateway --example floor_proxy -- http://UPSTREAM_HOST:PORT
//! ```
//! Every request goes to the same path on the upstream (without its `Host`, which the client sets from the
//! upstream's URI), its answer streamed back. Prints `listening on http://ADDR`; ends on SIGTERM or Ctrl-C.

use std::io::Write;

use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Uri};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() {
    let upstream: Uri = std::env::args()
        .nth(1)
        .and_then(|url| url.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: floor_proxy http://UPSTREAM_HOST:PORT");
            std::process::exit(2);
        });
    let (Some(scheme), Some(authority)) =
        (upstream.scheme().cloned(), upstream.authority().cloned())
    else {
        eprintln!("floor_proxy: the upstream URL must be absolute");
        std::process::exit(2);
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build(connector);

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!(
        "listening on http://{}",
        listener.local_addr().expect("bound")
    );
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (client, scheme, authority) = (client.clone(), scheme.clone(), authority.clone());
        tokio::spawn(async move {
            let service = service_fn(move |mut request: Request<Incoming>| {
                let mut uri = Uri::builder()
                    .scheme(scheme.clone())
                    .authority(authority.clone());
                if let Some(path) = request.uri().path_and_query() {
                    uri = uri.path_and_query(path.clone());
                }
                *request.uri_mut() = uri.build().expect("parts of valid URIs");
                request.headers_mut().remove(hyper::header::HOST);
                client.request(request)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
