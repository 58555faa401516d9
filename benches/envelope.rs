//! What reading the JSON-RPC envelope costs per request (feature `mcp`): `Envelope::parse` over the bodies MCP
//! clients send, beside `serde_json::from_slice::<Value>` over the same bytes (a full parse, the anchor).
//! Arguments are skipped, never copied: the cost grows with their size only as fast as scanning them.
//!
//! `cargo bench --bench envelope --features mcp`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tower_mcp_auth::mcp::Envelope;

fn call(arguments: &str) -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{{"name":"search_issues","arguments":{arguments},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    )
    .into_bytes()
}

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let big_text = "x".repeat(64 * 1024);
    vec![
        (
            "initialize",
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#.to_vec(),
        ),
        (
            "tools_list",
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#.to_vec(),
        ),
        ("tools_call_small", call(r#"{"query":"is:open label:bug","limit":20}"#)),
        (
            "tools_call_64k",
            call(&format!(r#"{{"query":"{big_text}","nested":{{"name":"not the tool"}}}}"#)),
        ),
        (
            "batch_of_4",
            format!(
                "[{}]",
                (0..4)
                    .map(|_| String::from_utf8(call(r#"{"q":1}"#)).unwrap())
                    .collect::<Vec<_>>()
                    .join(",")
            )
            .into_bytes(),
        ),
    ]
}

fn envelope(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope");
    for (name, body) in bodies() {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| black_box(Envelope::parse(black_box(&body)).unwrap()))
        });
        group.bench_function(format!("serde_json_value/{name}"), |b| {
            b.iter(|| {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
