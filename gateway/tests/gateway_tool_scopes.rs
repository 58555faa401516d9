//! `tool_scopes` for JWT callers, end to end: a JWT issuer on loopback, the gateway admitting its tokens per
//! route, and an upstream that records every request. A call of a tool whose scopes the token lacks gets the
//! MCP step-up `403 insufficient_scope` (its `scope` the token's scopes plus the tool's) and never reaches the
//! upstream; the route's metadata lists the scopes in `scopes_supported`.

mod gateway_support;
use testkit::issuer::Issuer;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use gateway_support::*;
use tokio::net::TcpListener;

use mcp_gateway as app;

fn call(tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    )
}

#[tokio::test]
async fn a_tool_needing_more_scope_is_a_step_up_403_that_never_reaches_the_upstream() {
    let issuer = Issuer::start().await;
    let upstream = Recorder::start(|_| {
        answer(
            StatusCode::OK,
            &[],
            r#"{"jsonrpc":"2.0","id":9,"result":{}}"#,
        )
    })
    .await;
    let config = temp_file(
        "config.yaml",
        &format!(
            "mcp_servers:\n  rec:\n    url: {}\n    tool_scopes:\n      rm: [files.write, files.admin]\n      read: [mcp:read]\nmcp_resource_server:\n  issuer: {}\n",
            upstream.url("/mcp"),
            issuer.url
        ),
    );
    let args = ["--key", KEY, "--config", config.to_str().unwrap()];
    let options = app::Options::parse(args.iter().map(|a| a.to_string()), None).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let prepared = app::prepare(options, addr).await.unwrap();
    tokio::spawn(app::serve(listener, prepared.app, std::future::pending()));

    let route = format!("http://{addr}/mcp/rec");
    // The token holds `mcp:read mcp:write`.
    let bearer = format!("Bearer {}", issuer.token(&route));
    let post = |tool: &'static str, auth: &str| {
        let auth = auth.to_owned();
        let route = route.clone();
        async move {
            send(
                Method::POST,
                &route,
                &[
                    ("content-type", "application/json"),
                    ("accept", "application/json, text/event-stream"),
                    ("mcp-protocol-version", "2025-11-25"),
                    ("authorization", &auth),
                ],
                Bytes::from(call(tool)),
            )
            .await
        }
    };

    let refused = post("rm", &bearer).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let metadata = format!("http://{addr}/.well-known/oauth-protected-resource/mcp/rec");
    assert_eq!(
        refused.header("www-authenticate").unwrap(),
        format!(
            r#"Bearer error="insufficient_scope", scope="files.admin files.write mcp:read mcp:write", resource_metadata="{metadata}""#
        )
    );
    assert_eq!(refused.json()["error"], "insufficient_scope");
    assert!(refused.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("rm"));
    assert!(
        upstream.seen().is_empty(),
        "the refused call never reached the upstream"
    );

    // A tool whose scopes the token holds, and one without `tool_scopes`, go through.
    assert_eq!(post("read", &bearer).await.status, StatusCode::OK);
    assert_eq!(post("other", &bearer).await.status, StatusCode::OK);
    // A gateway key carries its own tool grants: scopes are not asked of it.
    let answer = send(
        Method::POST,
        &route,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("x-litellm-api-key", KEY),
        ],
        Bytes::from(call("rm")),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(upstream.seen().len(), 3);

    // The route's metadata lists the scopes its tools ask for.
    let document = send(Method::GET, &metadata, &[], Bytes::new()).await.json();
    let supported: Vec<&str> = document["scopes_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(supported, ["files.admin", "files.write", "mcp:read"]);
}
