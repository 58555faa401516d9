//! `mcp-gateway`: an MCP Streamable HTTP gateway on axum and tower-mcp-auth: gateway keys, per-upstream OAuth
//! passthrough, each upstream's own credential, RFC 9728 discovery, and optionally JWT admission per route with
//! RFC 8693 token exchange per upstream. `mcp-gateway --help` lists every flag and its environment variable.
//!
//! Without an upstream and without `--config` (or with `--demo`) it starts a demo upstream MCP server in the
//! same process (`demo`, passthrough, accepting `Authorization: Bearer demo-oauth-token`), with the gateway key
//! `sk-demo` unless keys are given.
//!
//! `SIGHUP` reloads the configuration: the same command line, config file, key files and environment, read
//! again as at start-up ([`app::reload`]).

use mcp_gateway as app;

use std::io::Write;

use tokio::net::TcpListener;
#[cfg(not(feature = "otel"))]
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{layer::SubscriberExt, Layer};

fn demo_help(base: &str) -> String {
    let init = r#"'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"0"}}}'"#;
    let curl = format!(
        "curl -si {base}/mcp/demo -H 'content-type: application/json' -H 'accept: application/json, text/event-stream'"
    );
    format!(
        "demo upstream 'demo' behind {base}/mcp/demo; try:\n\
         # 1. the client's own OAuth token passes through to the upstream: initialize succeeds\n\
         {curl} -H 'authorization: Bearer {token}' -d {init}\n\
         # 2. gateway key plus the OAuth token: authenticated, and the token is forwarded\n\
         {curl} -H 'x-litellm-api-key: {key}' -H 'authorization: Bearer {token}' -d {init}\n\
         # 3. a made-up token: the upstream refuses it (401), and the challenge points at the gateway's metadata\n\
         {curl} -H 'authorization: Bearer made-up' -d {init}\n\
         # discovery: no credentials -> 401 naming {base}/.well-known/oauth-protected-resource/mcp/demo\n\
         curl -si {base}/.well-known/oauth-protected-resource/mcp/demo",
        token = app::DEMO_TOKEN,
        key = app::DEMO_KEY,
    )
}

/// The options the command line, its config file, key files and environment give, read as start-up reads them
/// (again on every `SIGHUP`).
fn options(cli: app::cli::Cli) -> Result<app::Options, String> {
    let env_keys = std::env::var_os(app::config::KEYS_VAR)
        .map(|value| {
            value
                .into_string()
                .map_err(|_| format!("{} is not valid UTF-8", app::config::KEYS_VAR))
        })
        .transpose()?;
    app::Options::from_cli(cli, env_keys, &|var| std::env::var(var).ok())
}

/// Reloads the configuration on every `SIGHUP`; registered before the gateway says it listens, so that a
/// hang-up never ends the process.
#[cfg(unix)]
fn reload_on_hangup(cli: app::cli::Cli, reloader: app::reload::Reloader) {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("SIGHUP handler");
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            reloader.reload(|| options(cli.clone()));
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// With feature `mimalloc`: mimalloc serves every allocation of the binary (the library leaves the choice to it).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // The request spans are the exporter's; the log lines stay as they are without it.
    #[cfg(feature = "otel")]
    let filter = filter.add_directive(app::telemetry::unlogged());
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: in a log file they are noise, and writing them costs CPU per line.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    let subscriber = tracing_subscriber::registry().with(logs);
    #[cfg(not(feature = "otel"))]
    subscriber.init();
    #[cfg(feature = "otel")]
    let telemetry = app::telemetry::init(subscriber).unwrap_or_else(|message| {
        eprintln!("{message}");
        std::process::exit(2);
    });
    // `--help`, `--version` and malformed flags end here, as clap prints and exits for them.
    let cli = <app::cli::Cli as clap::Parser>::parse();
    #[cfg(feature = "otel")]
    let client_context = if cli.otel_ignore_client_trace {
        app::telemetry::ClientContext::Ignored
    } else {
        app::telemetry::ClientContext::Trusted
    };
    let options = match options(cli.clone()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(options.listen.as_str()).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {}: {error}", options.listen);
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let prepared = match app::prepare(options, addr).await {
        Ok(prepared) => prepared,
        Err(message) => {
            eprintln!("{message}\n(mcp-gateway --help lists every flag)");
            std::process::exit(2);
        }
    };
    #[cfg(feature = "otel")]
    let prepared = match telemetry {
        Some(_) => app::telemetry::traced(prepared, client_context),
        None => prepared,
    };
    for warning in &prepared.warnings {
        tracing::warn!("{warning}");
    }
    #[cfg(unix)]
    reload_on_hangup(cli, prepared.reloader.clone());
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {}://{addr}", prepared.scheme());
    if let Some((listener, _)) = &prepared.metrics {
        if let Ok(metrics) = listener.local_addr() {
            let _ = writeln!(stdout, "metrics on http://{metrics}/metrics");
        }
    }
    if prepared.demo.is_some() {
        let _ = writeln!(stdout, "{}", demo_help(&prepared.public_url));
    }
    let _ = stdout.flush();
    drop(stdout);
    let served = app::run(prepared, listener, shutdown_signal()).await;
    #[cfg(feature = "otel")]
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    if let Err(error) = served {
        eprintln!("server error: {error}");
        std::process::exit(1);
    }
}
