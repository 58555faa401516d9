//! Connections as real clients use them, over raw sockets: a keep-alive connection survives an answer the
//! gateway gave before reading the body, a client that writes a whole oversized body before reading gets its
//! 413, and slow heads, slow bodies and too many connections meet the configured limits.
//!
//! No assertion measures how fast the gateway is: every time check is one-sided with a wide margin, against
//! small configured limits.

mod gateway_support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream as StdTcpStream},
    time::Duration,
};

use gateway_support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{sleep, timeout, Instant},
};

/// A response read off a socket: status, lower-case head, body.
#[derive(Debug)]
struct Wire {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Wire {
    fn closes(&self) -> bool {
        self.head.contains("\r\nconnection: close\r\n")
    }
}

/// Parses one response with a `content-length` from the front of `buffer`, leaving what follows it.
fn take_response(buffer: &mut Vec<u8>) -> Option<Wire> {
    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    if buffer.len() < end + length {
        return None;
    }
    let body = buffer[end..end + length].to_vec();
    buffer.drain(..end + length);
    Some(Wire { status, head, body })
}

/// Reads one response (within 10 s).
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Wire {
    timeout(Duration::from_secs(10), async {
        loop {
            if let Some(wire) = take_response(buffer) {
                return wire;
            }
            let mut chunk = [0u8; 4096];
            let n = stream
                .read(&mut chunk)
                .await
                .expect("the connection stays up");
            assert!(n > 0, "the connection closed before a whole response");
            buffer.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a response within 10 s")
}

/// Waits (at most `limit`) for the gateway to close `stream`, discarding what it sends; `true` if it did.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    timeout(limit, async {
        let mut chunk = [0u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A gateway with a JWT issuer (whose keys are never fetched here) in front of an upstream that answers `{}`.
async fn jwt_gateway(extra: &[(&str, &str)]) -> (SocketAddr, Recorder) {
    let upstream = Recorder::start(|_| answer(axum::http::StatusCode::OK, &[], "{}")).await;
    let dead = dead_port().await;
    let mut flags = vec![
        ("--key", KEY),
        ("--jwt-issuer", "http://127.0.0.1:9/issuer"),
    ];
    let jwks = format!("http://{dead}/jwks");
    let route = format!("rec={}", upstream.url("/mcp"));
    flags.push(("--jwt-jwks-uri", &jwks));
    flags.push(("--upstream", &route));
    flags.extend_from_slice(extra);
    (gateway(&args(&flags)).await, upstream)
}

fn post_head(path: &str, length: usize, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\ncontent-length: {length}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn keep_alive_survives_an_early_401_whose_body_follows_the_headers() {
    let (gw, upstream) = jwt_gateway(&[]).await;
    let mut stream = TcpStream::connect(gw).await.unwrap();
    // The head first; the body 0.2 s later, as clients that stream their bodies send it.
    stream
        .write_all(post_head("/mcp/rec", INIT.len(), "").as_bytes())
        .await
        .unwrap();
    sleep(Duration::from_millis(200)).await;
    stream.write_all(INIT.as_bytes()).await.unwrap();
    let mut buffer = Vec::new();
    let first = read_response(&mut stream, &mut buffer).await;
    assert_eq!(first.status, 401, "{first:?}");
    assert!(first.head.contains("www-authenticate: bearer"), "{first:?}");

    // The same connection carries the next exchange, as an MCP client's OAuth discovery does.
    stream
        .write_all(
            b"GET /.well-known/oauth-protected-resource/mcp/rec HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",
        )
        .await
        .unwrap();
    let second = read_response(&mut stream, &mut buffer).await;
    assert_eq!(second.status, 200, "{second:?}");
    let metadata: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(
        metadata["authorization_servers"][0],
        "http://127.0.0.1:9/issuer"
    );

    // And a keyed request after that, body and all.
    stream
        .write_all(
            post_head(
                "/mcp/rec",
                INIT.len(),
                &format!("x-litellm-api-key: {KEY}\r\n"),
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stream.write_all(INIT.as_bytes()).await.unwrap();
    let third = read_response(&mut stream, &mut buffer).await;
    assert_eq!(third.status, 200, "{third:?}");
    assert_eq!(upstream.seen().len(), 1);
}

/// Writes `head` and then `body` whole with a blocking socket before reading anything, as Python's `urllib`
/// does; returns the response.
fn write_everything_then_read(addr: SocketAddr, head: String, body: Vec<u8>) -> Wire {
    let mut stream = StdTcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(head.as_bytes())
        .expect("the head is written");
    stream
        .write_all(&body)
        .expect("the whole body is written: the gateway keeps reading it");
    let mut buffer = Vec::new();
    loop {
        if let Some(wire) = take_response(&mut buffer) {
            return wire;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("the answer is readable");
        assert!(n > 0, "the connection closed before a whole response");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_writes_6_mib_before_reading_gets_the_413() {
    let upstream = Recorder::start(|_| answer(axum::http::StatusCode::OK, &[], "{}")).await;
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("rec={}", upstream.url("/mcp"))),
    ]))
    .await;
    let six_mib = 6 * 1024 * 1024;

    // A declared length over --max-body (4 MiB by default): refused before a byte of the body is read.
    let head = post_head(
        "/mcp/rec",
        six_mib,
        &format!("x-litellm-api-key: {KEY}\r\n"),
    );
    let wire = tokio::task::spawn_blocking(move || {
        write_everything_then_read(gw, head, vec![b' '; six_mib])
    })
    .await
    .unwrap();
    assert_eq!(wire.status, 413, "{wire:?}");
    assert!(String::from_utf8_lossy(&wire.body).contains("payload_too_large"));

    // Chunked, so its length is unknown: refused at the cap, drained, and the connection marked for closing.
    let mut chunked = Vec::new();
    for _ in 0..6 {
        chunked.extend_from_slice(format!("{:x}\r\n", 1024 * 1024).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 1024 * 1024));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /mcp/rec HTTP/1.1\r\nhost: 127.0.0.1\r\nx-litellm-api-key: {KEY}\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    let wire = tokio::task::spawn_blocking(move || write_everything_then_read(gw, head, chunked))
        .await
        .unwrap();
    assert_eq!(wire.status, 413, "{wire:?}");
    assert!(wire.closes(), "{wire:?}");
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn slow_headers_are_cut_at_the_header_read_timeout() {
    let (gw, _) = jwt_gateway(&[("--header-read-timeout", "1")]).await;
    let mut stream = TcpStream::connect(gw).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // One header byte every 200 ms would go on for 30 s; the gateway must end it long before.
    let started = Instant::now();
    let trickle = async {
        for _ in 0..150 {
            if stream.write_all(b"x").await.is_err() {
                break;
            }
            sleep(Duration::from_millis(200)).await;
        }
    };
    let _ = timeout(Duration::from_secs(10), trickle).await;
    assert!(
        closed_within(&mut stream, Duration::from_secs(1)).await,
        "the connection is still open after {:?}",
        started.elapsed()
    );

    // An idle connection is held no longer either.
    let mut idle = TcpStream::connect(gw).await.unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn a_trickled_body_is_408_at_the_body_read_timeout() {
    let upstream = Recorder::start(|_| answer(axum::http::StatusCode::OK, &[], "{}")).await;
    let gw = gateway(&args(&[
        ("--key", KEY),
        ("--upstream", &format!("rec={}", upstream.url("/mcp"))),
        ("--body-read-timeout", "1"),
    ]))
    .await;
    let mut stream = TcpStream::connect(gw).await.unwrap();
    stream
        .write_all(post_head("/mcp/rec", 1000, &format!("x-litellm-api-key: {KEY}\r\n")).as_bytes())
        .await
        .unwrap();
    // One byte every 100 ms would take 100 s; the answer must come long before.
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..1000 {
            if writer.write_all(b" ").await.is_err() {
                break;
            }
            sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buffer = Vec::new();
    let wire = timeout(Duration::from_secs(10), async {
        loop {
            if let Some(wire) = take_response(&mut buffer) {
                return wire;
            }
            let mut chunk = [0u8; 1024];
            let n = reader.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed without an answer");
            buffer.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("an answer long before the body could have arrived");
    trickle.abort();
    assert_eq!(wire.status, 408, "{wire:?}");
    assert!(wire.closes(), "{wire:?}");
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_ends() {
    let (gw, _) = jwt_gateway(&[("--max-connections", "2"), ("--header-read-timeout", "60")]).await;
    let health = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    let mut first = TcpStream::connect(gw).await.unwrap();
    let mut second = TcpStream::connect(gw).await.unwrap();
    // Both served: each answers.
    for stream in [&mut first, &mut second] {
        stream.write_all(health).await.unwrap();
        assert_eq!(read_response(stream, &mut Vec::new()).await.status, 200);
    }
    // A third waits in the backlog: no answer while the two stay open.
    let mut third = TcpStream::connect(gw).await.unwrap();
    third.write_all(health).await.unwrap();
    let mut chunk = [0u8; 64];
    assert!(
        timeout(Duration::from_secs(1), third.read(&mut chunk))
            .await
            .is_err(),
        "a third connection was served past the limit of two"
    );
    // Once one ends, the third is served.
    drop(first);
    assert_eq!(read_response(&mut third, &mut Vec::new()).await.status, 200);
}
