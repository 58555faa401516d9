//! The servers `scripts/bench-http.sh` loads: a hello handler on `/mcp/{server}`, bare or behind the layer,
//! and the demo MCP upstream. Not an example to copy: a fixture for the HTTP-level benchmarks.
//!
//! ```text
//! cargo run --release -p mcp-gateway --example bench_server -- MODE
//! ```
//! MODE is `bare`, `layer` (static keys behind the cache; passthrough on `/mcp/atlassian`), `coalesce` (the
//! same, over a key store that takes 5 ms and counts its calls, reported at `/stats`) or `mcp-upstream` (the
//! demo MCP server, accepting `Authorization: Bearer bench-oauth-token`). Prints `listening on http://ADDR`.

use std::{
    convert::Infallible,
    io::Write,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{routing::get, serve::ListenerExt, Router};
use tower_mcp_auth::{
    validate_fn,
    validators::{Cache, StaticKeys},
    McpAuthLayer, PassthroughPolicy, Validator, Verdict,
};

async fn hello() -> &'static str {
    "hello"
}

fn protected<V: Validator>(validator: V) -> Router
where
    V::Future: Send,
{
    Router::new()
        .route("/mcp/{server}", get(hello).post(hello))
        .layer(
            McpAuthLayer::new(validator)
                .passthrough(PassthroughPolicy::path_prefixes(["/mcp/atlassian"])),
        )
}

fn cache<V: Validator>(validator: V) -> Cache<V>
where
    V::Future: Send + 'static,
{
    Cache::builder(validator)
        .valid_ttl(Duration::from_secs(60))
        .unknown_ttl(Duration::from_secs(10))
        .build()
}

#[tokio::main]
async fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let keys =
        || -> StaticKeys<Arc<str>> { StaticKeys::new().with_key("sk-bench", Arc::from("bench")) };
    let app = match mode.as_str() {
        "bare" => Router::new().route("/mcp/{server}", get(hello).post(hello)),
        "layer" => protected(cache(keys())),
        "coalesce" => {
            let calls = Arc::new(AtomicU64::new(0));
            let counted = calls.clone();
            let store = validate_fn(move |key: String| {
                counted.fetch_add(1, Ordering::Relaxed);
                async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok::<_, Infallible>(if key == "sk-bench" {
                        Verdict::Valid(Arc::<str>::from("bench"))
                    } else {
                        Verdict::Unknown
                    })
                }
            });
            protected(cache(store)).route(
                "/stats",
                get(move || {
                    let calls = calls.load(Ordering::Relaxed);
                    async move { format!("store_calls {calls}\n") }
                }),
            )
        }
        "mcp-upstream" => {
            let upstream = mcp_gateway::demo::start("bench-oauth-token")
                .await
                .expect("demo upstream");
            println!("listening on http://{}", upstream.addr);
            let _ = std::io::stdout().flush();
            std::future::pending::<()>().await;
            unreachable!()
        }
        _ => {
            eprintln!("usage: bench_server bare|layer|coalesce|mcp-upstream");
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening on http://{}", listener.local_addr().unwrap());
    let _ = std::io::stdout().flush();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.unwrap();
}
