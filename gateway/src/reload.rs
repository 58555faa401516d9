//! Configuration reload: what the process sets up once (`Process`), what it rebuilds from every new
//! configuration (the app: key store, caches, revocation watcher, upstream clients, tool policy), and the swap
//! between them.
//!
//! A reload builds the new app from the new [`Options`] with the same code start-up uses, so every configuration
//! start-up refuses is refused, and only a complete app replaces the running one. Each request takes the app
//! current when it arrives ([`Reloader::app`]): a keep-alive connection sees a removed key at its next request,
//! and a request or event stream under way keeps the app it started with until it ends. The old app is dropped
//! with its last request, and with it what it owns (the LiteLLM revocation watcher stops).
//!
//! The listeners, the TLS acceptor, the demo upstream and the metrics recorder are the process's: a new
//! configuration that changes them is applied otherwise, with a warning that those settings need a restart.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use axum::{extract::Request, response::Response};
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::{
    app::{App, Serve},
    conn::Limits,
    Options, SessionSecret,
};

/// Reloads: applied and refused, by `outcome`.
const RELOADS: &str = "mcp_gateway.config.reloads";
/// 1 when the last reload was applied (or none was asked for), 0 when it was refused.
const LAST_RELOAD_SUCCESSFUL: &str = "mcp_gateway.config.last_reload_successful";

/// What every configuration of the process shares, fixed at start-up.
pub(crate) struct Process {
    /// The address the public listener is bound to.
    pub addr: SocketAddr,
    /// Whether the public listener serves TLS.
    pub https: bool,
    /// The embedded demo upstream's URL, when it runs.
    pub demo_url: Option<String>,
    /// Whether `/metrics` is served on the public listener (no metrics listener at start-up).
    pub public_metrics: bool,
    /// The session secret drawn for this process, used while the configuration names none: sessions sealed
    /// with it stay open across reloads.
    pub random_secret: SessionSecret,
    /// The in-process rate-limit counters: a reload keeps every caller's count.
    pub counters: crate::limits::Counters,
}

/// The settings only a restart applies, as start-up read them.
#[derive(Clone, PartialEq)]
struct Fixed {
    listen: String,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    metrics_listen: Option<String>,
    limits: Limits,
    drain_timeout: std::time::Duration,
    demo: bool,
}

impl Fixed {
    fn of(options: &Options) -> Self {
        Self {
            listen: options.listen.clone(),
            tls_cert: options.tls_cert.clone(),
            tls_key: options.tls_key.clone(),
            metrics_listen: options.metrics_listen.clone(),
            limits: options.limits,
            drain_timeout: options.drain_timeout,
            demo: options.demo,
        }
    }

    /// A warning for each setting `new` changes, named, never with its value.
    fn changes(&self, new: &Self) -> Vec<String> {
        let changed = [
            ("--listen", self.listen != new.listen),
            (
                "--tls-cert/--tls-key",
                self.tls_cert != new.tls_cert || self.tls_key != new.tls_key,
            ),
            ("metrics_listen", self.metrics_listen != new.metrics_listen),
            (
                "connection limits (gateway_settings)",
                self.limits != new.limits,
            ),
            ("--drain-timeout", self.drain_timeout != new.drain_timeout),
            ("--demo", self.demo != new.demo),
        ];
        changed
            .into_iter()
            .filter(|(_, changed)| *changed)
            .map(|(name, _)| {
                format!("{name} changed: it needs a restart; the running value is kept")
            })
            .collect()
    }
}

/// Rebuilds the app from new options and swaps it in. Cloning shares the swap.
#[derive(Clone)]
pub struct Reloader {
    process: Arc<Process>,
    fixed: Fixed,
    current: Arc<watch::Sender<App>>,
}

impl Reloader {
    /// Starts with `app`, built from `options` for `process`.
    pub(crate) fn new(process: Process, options: &Options, app: App) -> Self {
        metrics::describe_counter!(
            RELOADS,
            "Configuration reloads, by outcome (applied, refused)"
        );
        metrics::describe_gauge!(
            LAST_RELOAD_SUCCESSFUL,
            "1 when the last configuration reload was applied, 0 when it was refused"
        );
        metrics::gauge!(LAST_RELOAD_SUCCESSFUL).set(1.0);
        Self {
            process: Arc::new(process),
            fixed: Fixed::of(options),
            current: Arc::new(watch::Sender::new(app)),
        }
    }

    /// The app serving the current configuration: each request is handed to the app current when it
    /// arrives, and keeps it until its response ends.
    pub fn app(&self) -> App {
        App::of(Current(self.current.subscribe()))
    }

    /// Builds the app `options` describe and puts it in place of the running one; on error the running one
    /// stays. Returns the warnings of the new configuration, including settings it changes that need a restart.
    pub fn apply(&self, options: Options) -> Result<Vec<String>, String> {
        let mut warnings = self.fixed.changes(&Fixed::of(&options));
        warnings.extend(options.warnings.iter().cloned());
        let app = crate::app(options, &self.process)?;
        // The old app is dropped outside the channel's lock, by the last request holding it.
        drop(self.current.send_replace(app));
        Ok(warnings)
    }

    /// Applies the configuration `load` reads, logging and counting the outcome: `configuration reloaded`, or
    /// `configuration reload refused` with the reason, the running configuration kept.
    pub fn reload(&self, load: impl FnOnce() -> Result<Options, String>) {
        match load().and_then(|options| self.apply(options)) {
            Ok(warnings) => {
                for warning in warnings {
                    tracing::warn!("{warning}");
                }
                metrics::counter!(RELOADS, "outcome" => "applied").increment(1);
                metrics::gauge!(LAST_RELOAD_SUCCESSFUL).set(1.0);
                tracing::info!("configuration reloaded");
            }
            Err(reason) => {
                metrics::counter!(RELOADS, "outcome" => "refused").increment(1);
                metrics::gauge!(LAST_RELOAD_SUCCESSFUL).set(0.0);
                tracing::error!(
                    %reason,
                    "configuration reload refused; the running configuration is kept"
                );
            }
        }
    }
}

/// What [`Reloader::app`] serves: each request is handed to the app current when it arrives.
struct Current(watch::Receiver<App>);

impl Serve for Current {
    fn serve(&self, request: Request) -> BoxFuture<'static, Response> {
        // The future owns what it needs of the app; the channel's lock is held only to start it.
        self.0.borrow().serve(request)
    }
}
