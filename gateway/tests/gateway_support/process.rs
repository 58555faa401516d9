//! The gateway binary as a process of its own, for tests of several replicas: started with a clean
//! `MCP_GATEWAY_*` environment, its address read from its `listening on` line, its standard error kept, and
//! killed when dropped.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, Command},
};

const BINARY: &str = env!("CARGO_BIN_EXE_mcp-gateway");

/// A running `mcp-gateway`.
pub struct GatewayProcess {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl GatewayProcess {
    /// Starts the binary with `args` and `env` (`RUST_LOG=info` unless `env` says otherwise); waits (up to 30 s)
    /// for it to listen.
    pub async fn start(args: &[String], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(BINARY);
        for (name, _) in std::env::vars() {
            if name.starts_with("MCP_GATEWAY_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the gateway binary starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let log = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the gateway listens within 30 s")
            .unwrap()
            .unwrap_or_else(|| panic!("the gateway exited: {}", stderr.lock().unwrap()));
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .parse()
            .unwrap();
        // Keep draining standard output so the process never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            addr,
            stderr,
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the process wrote to standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends the process `SIGHUP` (`kill -HUP PID`): it reloads its configuration.
    pub fn hang_up(&self) {
        let pid = self.child.id().expect("the gateway still runs");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -HUP {pid}: {status}");
    }

    /// Waits (up to 30 s) until standard error holds `needle` at least `count` times; returns standard error.
    pub async fn wait_for_log(&self, needle: &str, count: usize) -> String {
        for _ in 0..300 {
            let log = self.stderr();
            if log.matches(needle).count() >= count {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{needle:?} not logged {count} times within 30 s:\n{}",
            self.stderr()
        );
    }

    /// Stops the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A loopback port free at the time of asking (for a replica that must come back on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
