//! Two `mcp-gateway` processes behind nginx (round robin, no stickiness), sharing one upstream and the session
//! secret, driven by the official MCP Python SDK's handshake-era client (initialize, then a session): its
//! session continues whichever replica each request lands on, across a restart of both replicas and across a
//! secret rotation, and ends with the SDK's `DELETE` (the upstream forgets it). Another caller, a gateway with
//! another secret, an altered id and the upstream's raw id all get 404 and never reach the upstream; once the
//! previous secret is dropped, its sessions get 404 too.
//!
//! Needs `scripts/with-nginx.sh` (`TOWER_MCP_AUTH_TEST_NGINX`) and `scripts/with-mcp-sdk.sh`
//! (`TOWER_MCP_AUTH_TEST_PYTHON`); skipped with a printed reason without them.

use mcp_gateway as app;
mod gateway_support;

use std::{
    io::Write as _,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use gateway_support::{
    process::{free_port, GatewayProcess},
    send, Answer,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

const NGINX_VAR: &str = "TOWER_MCP_AUTH_TEST_NGINX";
const PYTHON_VAR: &str = "TOWER_MCP_AUTH_TEST_PYTHON";
const TOKEN: &str = "upstream-token-replicas-5e1d";
const KEY_A: &str = "sk-replicas-key-a";
const KEY_B: &str = "sk-replicas-key-b";
const SECRET: &str = "replicas-session-secret-one-0123456789abcdef";
const NEW_SECRET: &str = "replicas-session-secret-two-0123456789abcdef";
const OTHER_SECRET: &str = "replicas-session-secret-other-0123456789abcd";
/// Marks the test's own refused requests: the upstream must never see it.
const PROBE: &str = "x-refusal-probe";
const LIST: &str = r#"{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{}}"#;

/// nginx in the foreground, without a master process, killed when dropped.
struct Nginx {
    _child: Child,
    port: u16,
}

impl Nginx {
    async fn start(binary: &str, backends: &[u16]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gateway-nginx-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let servers: String = backends
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p} max_fails=0;\n"))
            .collect();
        let d = dir.display();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\
             \x20   upstream gateways {{\n{servers}    }}\n\
             \x20   server {{\n        listen 127.0.0.1:{port};\n        location / {{\n\
             \x20           proxy_pass http://gateways;\n            proxy_http_version 1.1;\n\
             \x20           proxy_set_header Connection \"\";\n            proxy_set_header Host $http_host;\n\
             \x20           proxy_buffering off;\n            proxy_read_timeout 300s;\n\
             \x20           proxy_next_upstream error;\n        }}\n    }}\n}}\n"
        );
        let path: PathBuf = dir.join("nginx.conf");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(binary)
            .args(["-p", &dir.display().to_string(), "-c"])
            .arg(&path)
            .args(["-e", &format!("{d}/error.log")])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx does not listen: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            _child: child,
            port,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The SDK driver script, one line of its output at a time.
struct Sdk {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Sdk {
    fn start(python: &str, url: &str, key: &str, phases: u32) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/handshake_session.py"
        );
        let mut child = Command::new(python)
            .args([script, url, key, &phases.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the SDK driver starts");
        Self {
            stdin: child.stdin.take().unwrap(),
            lines: BufReader::new(child.stdout.take().unwrap()).lines(),
            _child: child,
        }
    }

    /// The next line, which must start with `word`; returns the rest.
    async fn expect(&mut self, word: &str) -> String {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {word} line within 60 s"))
            .unwrap()
            .unwrap_or_else(|| {
                panic!("the SDK driver ended before {word} (its traceback is above)")
            });
        line.strip_prefix(word)
            .unwrap_or_else(|| panic!("expected {word}, got {line}"))
            .trim()
            .to_owned()
    }

    async fn phase(&mut self, n: u32) {
        if n > 0 {
            self.stdin.write_all(b"continue\n").await.unwrap();
            self.stdin.flush().await.unwrap();
        }
        let phase = self.expect("PHASE").await;
        assert_eq!(
            phase,
            format!(r#"{n} ["add", "echo"] ["5"]"#),
            "phase {n} through the balancer"
        );
    }
}

async fn replica(
    port: u16,
    upstream: &str,
    public: &str,
    secrets: &[(&str, &str)],
) -> GatewayProcess {
    let args: Vec<String> = [
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--public-url",
        public,
        "--key",
        KEY_A,
        "--key",
        KEY_B,
        "--upstream",
        &format!("atl={upstream}"),
        "--upstream-auth",
        &format!("atl=bearer_token:{TOKEN}"),
    ]
    .map(str::to_owned)
    .to_vec();
    GatewayProcess::start(&args, secrets).await
}

/// A `tools/list` on `atl` at `base` as `key` with `session`, marked as the test's own.
async fn list(base: &str, key: &str, session: &str) -> Answer {
    send(
        Method::POST,
        &format!("{base}/mcp/atl"),
        &[
            ("x-litellm-api-key", key),
            ("mcp-session-id", session),
            ("mcp-protocol-version", "2025-06-18"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            (PROBE, "1"),
        ],
        Bytes::from_static(LIST.as_bytes()),
    )
    .await
}

fn relayed_requests(replica: &GatewayProcess) -> usize {
    replica
        .stderr()
        .lines()
        .filter(|l| l.contains("gateway::access") && l.contains("route=/mcp/atl"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_keeps_its_session_across_replicas_restarts_and_a_rotation() {
    let (Ok(nginx), Ok(python)) = (std::env::var(NGINX_VAR), std::env::var(PYTHON_VAR)) else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped the_sdk_keeps_its_session_across_replicas_restarts_and_a_rotation: {NGINX_VAR} or \
             {PYTHON_VAR} is not set (run under scripts/with-nginx.sh and scripts/with-mcp-sdk.sh)"
        );
        return;
    };
    let upstream = app::demo::start(TOKEN).await.unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    const ORIGINAL: &[(&str, &str)] = &[("MCP_GATEWAY_SESSION_SECRET", SECRET)];
    // nginx needs the replicas' ports and the replicas its public URL: the ports are chosen first.
    let balancer = Nginx::start(&nginx, &[port_a, port_b]).await;
    let public = balancer.url();
    let start = |port, secrets: &'static [(&'static str, &'static str)]| {
        let upstream = upstream.url();
        let public = public.clone();
        async move { replica(port, &upstream, &public, secrets).await }
    };
    let mut a = start(port_a, ORIGINAL).await;
    let mut b = start(port_b, ORIGINAL).await;

    let mut sdk = Sdk::start(&python, &format!("{public}/mcp/atl"), KEY_A, 3);
    let version = sdk.expect("VERSION").await;
    assert!(
        version.starts_with("2025-"),
        "a handshake-era version: {version}"
    );
    let session = sdk.expect("SESSION").await;
    sdk.phase(0).await;
    // Both replicas served the session's requests.
    assert!(
        relayed_requests(&a) > 0 && relayed_requests(&b) > 0,
        "round robin reached both replicas: {} and {}",
        relayed_requests(&a),
        relayed_requests(&b)
    );
    let raw = upstream
        .seen()
        .iter()
        .rev()
        .find_map(|h| h.get("mcp-session-id").cloned())
        .unwrap();
    assert_ne!(raw.to_str().unwrap(), session);

    // Refused, and never relayed: another caller, an altered id, the upstream's raw id, another secret.
    let other = replica(
        free_port(),
        &upstream.url(),
        &public,
        &[("MCP_GATEWAY_SESSION_SECRET", OTHER_SECRET)],
    )
    .await;
    let mut altered = session.clone().into_bytes();
    let middle = altered.len() / 2;
    altered[middle] = if altered[middle] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let refusals = [
        ("another caller", list(&public, KEY_B, &session).await),
        ("an altered id", list(&public, KEY_A, &altered).await),
        (
            "the upstream's raw id",
            list(&public, KEY_A, raw.to_str().unwrap()).await,
        ),
        ("another secret", list(&other.url(), KEY_A, &session).await),
    ];
    for (case, answer) in refusals {
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{case}");
        assert_eq!(
            answer.json()["error_description"],
            "no such MCP session",
            "{case}"
        );
    }
    other.stop().await;

    // Both replicas restart, one after the other: the session goes on.
    a.stop().await;
    a = start(port_a, ORIGINAL).await;
    b.stop().await;
    b = start(port_b, ORIGINAL).await;
    sdk.phase(1).await;

    // A rotation: the replicas seal with the new secret and still open the old one's ids.
    const ROTATING: &[(&str, &str)] = &[
        ("MCP_GATEWAY_SESSION_SECRET", NEW_SECRET),
        ("MCP_GATEWAY_SESSION_SECRET_PREVIOUS", SECRET),
    ];
    a.stop().await;
    a = start(port_a, ROTATING).await;
    b.stop().await;
    b = start(port_b, ROTATING).await;
    sdk.phase(2).await;
    // The SDK closes the session with DELETE: the upstream forgets it, so the id now gets the upstream's 404.
    sdk.expect("DONE").await;
    let before = upstream.seen().len();
    let forgotten = send(
        Method::POST,
        &format!("{public}/mcp/atl"),
        &[
            ("x-litellm-api-key", KEY_A),
            ("mcp-session-id", &session),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        Bytes::from_static(LIST.as_bytes()),
    )
    .await;
    assert_eq!(forgotten.status, StatusCode::NOT_FOUND);
    assert_eq!(
        upstream.seen().len(),
        before + 1,
        "the upstream answered it"
    );

    // Once the previous secret is dropped, its ids are refused before the upstream.
    const ROTATED: &[(&str, &str)] = &[("MCP_GATEWAY_SESSION_SECRET", NEW_SECRET)];
    a.stop().await;
    a = start(port_a, ROTATED).await;
    b.stop().await;
    b = start(port_b, ROTATED).await;
    for _ in 0..2 {
        let answer = list(&public, KEY_A, &session).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.json()["error_description"], "no such MCP session");
    }
    assert!(
        upstream.seen().iter().all(|h| !h.contains_key(PROBE)),
        "a refused request reached the upstream"
    );
    drop((a, b));
}
