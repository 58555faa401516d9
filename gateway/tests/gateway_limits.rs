//! The gateway against slow, dead and oversized traffic: upstream timeouts (504), unreachable upstreams (502),
//! the body cap (413), event streams that outlive the timeout, and the drain timeout of a graceful shutdown.

use mcp_gateway as app;
mod gateway_support;

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{body::Body, http::Method, response::Response, routing::get, Router};
use bytes::Bytes;
use gateway_support::*;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::{net::TcpListener, sync::Notify, time::Instant};

#[tokio::test]
async fn a_hung_upstream_is_a_504_within_the_timeout() {
    let upstream = hung_upstream().await;
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("hung=http://{upstream}/mcp")),
        ("--upstream-timeout", "1"),
    ]))
    .await;
    let started = Instant::now();
    // Bounded here too: a timeout that never fires fails the test instead of hanging it.
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        post_init(
            &format!("http://{gw}/mcp/hung"),
            &[("x-litellm-api-key", KEY)],
        ),
    )
    .await
    .expect("the gateway answered 504 before the client gave up");
    assert_eq!(answer.status, 504);
    assert_eq!(answer.json()["error"], "gateway_timeout");
    // One-sided and generous: the point is that it did not wait for the default 30 s.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_dead_port_is_a_502() {
    let upstream = dead_port().await;
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("dead=http://{upstream}/mcp")),
    ]))
    .await;
    let answer = post_init(
        &format!("http://{gw}/mcp/dead"),
        &[("x-litellm-api-key", KEY)],
    )
    .await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.json()["error"], "bad_gateway");
}

#[tokio::test]
async fn a_body_over_the_cap_is_a_413_and_never_reaches_the_upstream() {
    let upstream = Recorder::start(|_| answer(axum::http::StatusCode::OK, &[], "{}")).await;
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("rec={}", upstream.url("/mcp"))),
    ]))
    .await;
    let url = format!("http://{gw}/mcp/rec");
    let big = Bytes::from(vec![b' '; 5 * 1024 * 1024]);
    let answer = send(
        Method::POST,
        &url,
        &[
            ("x-litellm-api-key", KEY),
            ("content-type", "application/json"),
        ],
        big,
    )
    .await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["error"], "payload_too_large");

    // Without a declared length (a chunked stream), the cap holds as well.
    let gw_small = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("rec={}", upstream.url("/mcp"))),
        ("--max-body", "1000"),
    ]))
    .await;
    let chunks = futures_util::stream::iter(
        (0..4).map(|_| Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(vec![b' '; 600])))),
    );
    let client =
        Client::builder(TokioExecutor::new()).build_http::<http_body_util::StreamBody<_>>();
    let request = axum::http::Request::post(format!("http://{gw_small}/mcp/rec"))
        .header("x-litellm-api-key", KEY)
        .body(http_body_util::StreamBody::new(chunks))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 413);
    assert!(upstream.seen().is_empty(), "nothing reached the upstream");

    // A body within the cap passes.
    let ok = send(
        Method::POST,
        &format!("http://{gw_small}/mcp/rec"),
        &[("x-litellm-api-key", KEY)],
        Bytes::from_static(b"{}"),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(upstream.seen().len(), 1);
}

/// An upstream event stream: one event now, the last when the test says so.
async fn event_upstream(release: Arc<Notify>) -> std::net::SocketAddr {
    let app = Router::new().route(
        "/events",
        get(move || {
            let release = release.clone();
            async move {
                let stream = futures_util::stream::unfold(0, move |step| {
                    let release = release.clone();
                    async move {
                        match step {
                            0 => Some((
                                Ok::<_, Infallible>(Bytes::from_static(b"data: first\n\n")),
                                1,
                            )),
                            1 => {
                                release.notified().await;
                                Some((Ok(Bytes::from_static(b"data: last\n\n")), 2))
                            }
                            _ => None,
                        }
                    }
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(stream))
                    .unwrap()
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn an_established_event_stream_outlives_the_upstream_timeout() {
    let release = Arc::new(Notify::new());
    let upstream = event_upstream(release.clone()).await;
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("events=http://{upstream}/events")),
        ("--upstream-timeout", "1"),
    ]))
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = axum::http::Request::get(format!("http://{gw}/mcp/events"))
        .header("x-litellm-api-key", KEY)
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"data: first\n\n");
    // Longer than the timeout: the stream must still be open afterwards.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    release.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"data: last\n\n");
}

#[tokio::test]
async fn shutdown_drains_for_at_most_the_drain_timeout() {
    let release = Arc::new(Notify::new());
    let upstream = event_upstream(release.clone()).await;
    let options = app::Options::parse(
        args(&[
            ("--key", KEY),
            ("--upstream", &format!("events=http://{upstream}/events")),
            ("--drain-timeout", "1"),
        ]),
        None,
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let prepared = app::prepare(options, gw).await.unwrap();
    let stop = Arc::new(Notify::new());
    let stop_signal = stop.clone();
    let server = tokio::spawn(app::run(prepared, listener, async move {
        stop_signal.notified().await
    }));

    // An event stream that never ends on its own holds the graceful shutdown open.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = axum::http::Request::get(format!("http://{gw}/mcp/events"))
        .header("x-litellm-api-key", KEY)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();

    stop.notify_one();
    let stopped = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("the server stopped after the drain timeout, though a stream was still open");
    stopped.unwrap().unwrap();
    drop(body);
}
