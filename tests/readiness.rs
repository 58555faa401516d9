//! The service that was polled ready is the one that is called (tower-service's "be careful when cloning
//! inner services"), and inner errors stay the inner service's errors.

mod support;

use std::future::poll_fn;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};
use tower_test::mock;

use support::{layer, scripted_store, Calls};

type Mock = mock::Mock<Request<()>, Response<Bytes>>;

fn keyed(key: &str) -> Request<()> {
    Request::post("/mcp/github")
        .header("x-litellm-api-key", key)
        .body(())
        .unwrap()
}

#[tokio::test]
async fn the_ready_inner_service_is_the_one_called() {
    let (inner, mut handle): (Mock, _) = mock::pair();
    let mut service = layer(scripted_store(Calls::default())).layer(inner);

    // One slot of readiness: the mock panics if a clone that was never polled ready is called.
    handle.allow(1);
    poll_fn(|cx| service.poll_ready(cx)).await.unwrap();
    let response = service.call(keyed("sk-good"));
    let answered = tokio::spawn(response);

    let (request, send) = handle
        .next_request()
        .await
        .expect("the inner service was called");
    assert!(request.headers().get("x-litellm-api-key").is_none());
    send.send_response(Response::new(Bytes::from_static(b"ok")));
    let response = answered.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The slot is used up: the service is not ready again until the inner one is.
    handle.allow(0);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(service.poll_ready(&mut cx).is_pending());
}

#[tokio::test]
async fn a_refused_request_never_reaches_the_inner_service() {
    let (inner, mut handle): (Mock, _) = mock::pair();
    let mut service = layer(scripted_store(Calls::default())).layer(inner);
    handle.allow(1);
    poll_fn(|cx| service.poll_ready(cx)).await.unwrap();
    let response = service.call(keyed("made-up-a")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Nothing arrived at the inner service.
    assert!(handle.poll_request().is_pending());
}

#[tokio::test]
async fn inner_errors_are_passed_through_unchanged() {
    let (inner, mut handle): (Mock, _) = mock::pair();
    let mut service = layer(scripted_store(Calls::default())).layer(inner);
    handle.allow(1);
    poll_fn(|cx| service.poll_ready(cx)).await.unwrap();
    let answered = tokio::spawn(service.call(keyed("sk-good")));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(std::io::Error::other("upstream gone"));
    let error = answered.await.unwrap().unwrap_err();
    assert_eq!(error.to_string(), "upstream gone");
}

/// A validator that answers at once (`validate_now`) lets the layer call the ready inner service straight from
/// `call`: still the instance that was polled ready, and still never for a refused request.
#[tokio::test]
async fn an_answer_at_hand_calls_the_ready_service_directly() {
    use tower_mcp_auth::{validators::StaticKeys, McpAuthLayer};

    let (inner, mut handle): (Mock, _) = mock::pair();
    let keys: StaticKeys<&'static str> = StaticKeys::new().with_key("sk-good", "alice");
    let mut service = McpAuthLayer::new(keys).layer(inner);

    handle.allow(1);
    poll_fn(|cx| service.poll_ready(cx)).await.unwrap();
    let refused = service.call(keyed("made-up-a")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(handle.poll_request().is_pending());

    // The readiness is still there for the next request, which the inner service answers.
    poll_fn(|cx| service.poll_ready(cx)).await.unwrap();
    let answered = tokio::spawn(service.call(keyed("sk-good")));
    let (request, send) = handle
        .next_request()
        .await
        .expect("the inner service was called");
    assert!(request.headers().get("x-litellm-api-key").is_none());
    send.send_response(Response::new(Bytes::from_static(b"ok")));
    assert_eq!(answered.await.unwrap().unwrap().status(), StatusCode::OK);
}
