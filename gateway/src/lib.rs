//! An MCP Streamable HTTP gateway built on tower-mcp-auth, as a library: [`Options`] (from the command line
//! and the config file) into the gateway's service, an [`App`] ([`prepare`]), and serving it until shutdown
//! ([`run`]). The binary `mcp-gateway` is a thin `main` around these.
//!
//! The request path is a fixed stack of concrete services (`stage`), outermost first: the access log
//! (`access_log`), the `Origin`/`Host` checks (`origin`), CORS (`cors`), and the dispatcher (`app`), which reads
//! the `/mcp/NAME` route once (a non-canonical path is a 400) and sends every other path to the small router of
//! discovery, health and metrics. On `/mcp/` routes then: the scope hint of `discovery::metadata`, the
//! client-credential and authentication layers of tower-mcp-auth (per route with a JWT issuer:
//! [`resource_server`]), the MCP view and tool permissions (`tools`), the rate limits (`limits`), and finally
//! the relay (`proxy`). Connections (`conn`) hold a shared handle to it, the current one after a reload
//! (`reload`).

mod access_log;
mod app;
pub mod cli;
pub mod config;
pub mod conn;
pub mod connector;
mod cors;
mod deadline;
pub mod demo;
mod discovery;
mod keys;
mod limits;
mod metrics;
mod ops;
mod origin;
mod permissions;
mod proxy;
pub mod reload;
pub mod resource_server;
mod route;
mod sessions;
mod stage;
#[cfg(feature = "otel")]
pub mod telemetry;
pub mod tls;
mod tools;

use std::{collections::HashMap, future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use futures_util::FutureExt as _;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use stage::stage;
use tokio::{net::TcpListener, sync::Notify};
use tokio_rustls::TlsAcceptor;
use tower::ServiceBuilder;
use tower_mcp_auth::{
    client_credentials::TakeClientCredentialsLayer, upstream::UpstreamConfig, McpAuthLayer,
    PassthroughPolicy,
};

pub use access_log::AccessLog;
pub use app::App;
pub use config::Options;
pub use sessions::SessionSecret;

/// The maps the request path looks a name up in, built from the configuration: hashed with foldhash (seeded per
/// map) rather than SipHash, several times cheaper for short keys. Their keys come from the configuration, so
/// clients cannot choose colliding ones.
pub(crate) type NameMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The OAuth token the embedded demo upstream accepts.
pub const DEMO_TOKEN: &str = "demo-oauth-token";
/// The gateway key of demo mode.
pub const DEMO_KEY: &str = "sk-demo";

/// A small JSON error answer: `{"error": ..., "error_description": ...}`.
pub fn json_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// One upstream: its configuration, its credential-forwarding client, and the gateway's URLs for it.
pub struct Upstream {
    config: UpstreamConfig,
    client: resource_server::UpstreamClient,
    /// The gateway's metadata document for this route.
    metadata_url: String,
    /// The gateway's URL of this route: `PUBLIC_URL/mcp/NAME`.
    resource: String,
    /// The requests relayed to it, as a metric.
    requests: metrics::UpstreamRequests,
}

/// Everything the handlers share.
pub struct Gateway {
    upstreams: NameMap<String, Arc<Upstream>>,
    /// The path of the public URL (empty, or `/prefix`).
    public_path: String,
    discovery: discovery::upstream::Discovery,
    /// `--upstream-timeout`, for every upstream request (connecting and the response head).
    upstream_deadlines: deadline::Deadlines,
    max_body: usize,
    /// The JWT issuer every route names as its authorization server (`--jwt-issuer`).
    jwt_issuer: Option<String>,
    sessions: sessions::Sealer,
    tools: tools::Policy,
}

/// A gateway ready to serve: the router, how to serve it, plus what a caller may want to print.
pub struct Prepared {
    pub app: App,
    pub public_url: String,
    pub demo: Option<demo::DemoUpstream>,
    /// Present when serving HTTPS.
    pub tls: Option<TlsAcceptor>,
    pub drain_timeout: Duration,
    /// What a client may hold of the gateway: connections, and time to send heads and bodies.
    pub limits: conn::Limits,
    /// Start-up warnings (such as config fields this gateway ignores).
    pub warnings: Vec<String>,
    /// With `--metrics-listen`: its bound listener and the router serving `/metrics` there ([`run`] serves it).
    pub metrics: Option<(TcpListener, Router)>,
    /// Rebuilds `app` from a new configuration (`SIGHUP`).
    pub reloader: reload::Reloader,
}

impl Prepared {
    /// `https` when serving TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// The gateway's metadata URL for the route of `name` (RFC 9728 §3.1: the well-known segment goes between the
/// public URL's origin and its path).
fn metadata_url(public: &Uri, name: &str) -> String {
    format!(
        "{}://{}/.well-known/oauth-protected-resource{}/mcp/{name}",
        public.scheme_str().unwrap_or("http"),
        public.authority().map_or("", |a| a.as_str()),
        public.path().trim_end_matches('/'),
    )
}

/// Builds the gateway for a listener already bound to `addr`; with [`Options::demo`], starts the demo upstream.
/// What the process holds once (the demo upstream, the TLS acceptor, the metrics recorder and listener) is set
/// up here; the app is built again for each reloaded configuration ([`reload::Reloader`]).
pub async fn prepare(options: Options, addr: SocketAddr) -> Result<Prepared, String> {
    let demo = if options.demo {
        Some(demo::start(DEMO_TOKEN).await.map_err(|e| e.to_string())?)
    } else {
        None
    };
    let tls = match (&options.tls_cert, &options.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".to_owned()),
    };
    let process = reload::Process {
        addr,
        https: tls.is_some(),
        demo_url: demo.as_ref().map(demo::DemoUpstream::url),
        public_metrics: options.metrics_listen.is_none(),
        random_secret: SessionSecret::random(),
        counters: limits::Counters::start(),
    };
    metrics::install();
    let app = app(options.clone(), &process)?;
    let public_url = public_url(&options, &process)?;
    let metrics = match &options.metrics_listen {
        Some(listen) => {
            let listener = TcpListener::bind(listen.as_str())
                .await
                .map_err(|e| format!("--metrics-listen {listen}: cannot listen: {e}"))?;
            Some((listener, metrics::router()))
        }
        None => None,
    };
    let reloader = reload::Reloader::new(process, &options, app);
    Ok(Prepared {
        app: reloader.app(),
        public_url,
        demo,
        tls,
        drain_timeout: options.drain_timeout,
        limits: options.limits,
        warnings: options.warnings,
        metrics,
        reloader,
    })
}

/// The URL clients reach the gateway at: `--public-url`, else the loopback listener's own.
fn public_url(options: &Options, process: &reload::Process) -> Result<String, String> {
    let addr = process.addr;
    match &options.public_url {
        Some(url) => Ok(url.clone()),
        None if addr.ip().is_loopback() => Ok(format!(
            "{}://{addr}",
            if process.https { "https" } else { "http" }
        )),
        None => Err(format!(
            "--public-url is required when listening on {addr}, which is not a loopback address"
        )),
    }
}

/// The app `options` describe, for the process's listener: the key store and what it owns, the upstream
/// clients, the tool policy, and the router over them.
fn app(mut options: Options, process: &reload::Process) -> Result<App, String> {
    if let Some(url) = &process.demo_url {
        let mut server = config::Server::new("demo", url, "--demo".to_owned())?;
        server.config = server.config.clone().with_passthrough(true);
        if options.servers.iter().any(|s| s.name() == "demo") {
            return Err("--demo: an upstream is already named demo".to_owned());
        }
        options.servers.push(server);
        if options.keys.is_empty()
            && options.master_key.is_none()
            && options.env_keys.is_empty()
            && options.key_files.is_empty()
            && options.database_url.is_none()
        {
            options.keys.push(DEMO_KEY.to_owned());
        }
    }
    let key_store = keys::KeyStore::from_options(&options)?;
    let loopback = process.addr.ip().is_loopback();
    let public_url = public_url(&options, process)?;
    let public: Uri = public_url
        .parse()
        .ok()
        .filter(|u: &Uri| {
            u.authority().is_some() && matches!(u.scheme_str(), Some("http" | "https"))
        })
        .ok_or_else(|| format!("--public-url {public_url:?} is not an absolute http(s) URL"))?;
    let origins = Arc::new(origin::Origins::new(
        &public_url,
        &options.allow_origins,
        loopback,
    )?);
    let configs: Vec<UpstreamConfig> = options.servers.iter().map(|s| s.config.clone()).collect();
    let tool_policy = tools::Policy::new(&options.servers, |name| metadata_url(&public, name));

    let connector = tls::https_connector(options.extra_roots.as_deref())?;
    let upstream_timeout = options.upstream_timeout;
    let relay_client: resource_server::RelayClient =
        Client::builder(TokioExecutor::new()).build(connector::Quiet::new(connector.clone()));
    let passthrough_routes: Vec<String> = configs
        .iter()
        .filter(|c| c.accepts_passthrough())
        .map(|c| format!("/mcp/{}", c.name()))
        .collect();

    // A configuration the layer refuses is a start-up error, never a panic.
    let policy =
        PassthroughPolicy::try_path_prefixes(&passthrough_routes).map_err(|e| e.to_string())?;
    let make_auth = |admission| {
        let mut auth = McpAuthLayer::new(admission).passthrough(policy.clone());
        for route in &passthrough_routes {
            let name = route.trim_start_matches("/mcp/");
            auth = auth
                .try_resource_metadata(route, &metadata_url(&public, name))
                .map_err(|e| format!("--public-url: {e}"))?;
        }
        Ok(auth)
    };
    let resource = |name: &str| format!("{public_url}/mcp/{name}");
    let jwt = resource_server::jwt(&options, &connector, &resource("-"))?;
    let auth = resource_server::RouteAuthLayer::new(
        &key_store,
        jwt.as_ref(),
        configs.iter().map(|c| {
            (
                c.name().to_owned(),
                resource(c.name()),
                metadata_url(&public, c.name()),
            )
        }),
        make_auth,
    )?;
    let mut exchanges = resource_server::exchanges(&options, &configs, &connector)?;

    let names: Vec<String> = configs.iter().map(|c| c.name().to_owned()).collect();
    let limiter = limits::Limiter::new(
        &options.rate_limits,
        options
            .servers
            .iter()
            .map(|s| (s.name().to_owned(), s.limits.clone()))
            .collect(),
        &process.counters,
    )?;
    tracing::info!("{}", limiter.describe());
    let access: permissions::Routes = Arc::new(
        options
            .servers
            .iter()
            .filter(|s| s.access != config::RouteAccess::default())
            .map(|s| {
                let url = metadata_url(&public, s.name());
                (s.name().to_owned(), (s.access.clone(), url))
            })
            .collect(),
    );
    let upstreams = configs
        .into_iter()
        .map(|config| {
            let metadata_url = metadata_url(&public, config.name());
            let upstream = Upstream {
                client: resource_server::UpstreamClient::new(
                    &config,
                    &relay_client,
                    exchanges.remove(config.name()),
                    &metadata_url,
                )?,
                metadata_url,
                resource: resource(config.name()),
                requests: metrics::UpstreamRequests::new(config.name()),
                config,
            };
            Ok((upstream.config.name().to_owned(), Arc::new(upstream)))
        })
        .collect::<Result<_, String>>()?;
    let gateway = Arc::new(Gateway {
        upstreams,
        public_path: public.path().trim_end_matches('/').to_owned(),
        discovery: discovery::upstream::Discovery::new(
            Client::builder(TokioExecutor::new()).build(connector),
            upstream_timeout.min(Duration::from_secs(10)),
        ),
        upstream_deadlines: deadline::Deadlines::new(upstream_timeout),
        max_body: options.max_body,
        jwt_issuer: options.jwt_issuer.clone(),
        sessions: sessions::Sealer::new(
            SessionSecret::configured_or(options.session_secret.as_ref(), &process.random_secret),
            options.previous_session_secret.as_ref(),
        ),
        tools: tool_policy.clone(),
    });

    // The request path, outermost first; every step is a concrete service (no per-request boxing).
    let relay = {
        let gateway = gateway.clone();
        // Boxed: the relay's future is the largest of the path, and every step above would otherwise move it
        // (a memcpy of kilobytes per step and request); a box makes each move a pointer's.
        tower::service_fn(move |request| {
            stage::Mapped::new(proxy::handle(gateway.clone(), request).boxed(), Ok)
        })
    };
    let mcp = ServiceBuilder::new()
        .layer(stage(gateway.clone(), discovery::metadata::scope_hint))
        .layer(TakeClientCredentialsLayer::new().servers(&names))
        .layer(auth)
        .layer(stage(key_store.clone(), keys::drop_second_key))
        .layer(stage::axum_body())
        .layer(permissions::require_upstream())
        .layer(stage(access, permissions::route_access))
        .layer(stage(tool_policy.clone(), tools::record))
        .layer(stage::axum_body())
        .layer(tools::Policy::request_layer(options.max_body))
        .layer(tool_policy.require_tools())
        .layer(stage(tool_policy, tools::require_scopes))
        .layer(stage(limiter.clone(), limits::enforce))
        .service(relay);
    let mut ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz));
    if process.public_metrics {
        ops = ops.route("/metrics", get(metrics::scrape));
    }
    let ops = ops.with_state(ops::Readiness {
        keys: key_store.readiness(),
        limits: limiter,
    });
    let other = Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(discovery::metadata::handle_root),
        )
        .route(
            "/.well-known/oauth-protected-resource/{*rest}",
            get(discovery::metadata::handle),
        )
        .with_state(gateway)
        .merge(ops);
    let app = ServiceBuilder::new()
        .layer(stage(options.access_log, access_log::access_log))
        .layer(stage(origins.clone(), origin::check))
        .layer(cors::Cors::new(&origins))
        .service(app::Dispatch::new(mcp, other));
    Ok(App::new(app))
}

/// Serves `app` (an [`App`], or any service that always answers, such as an axum [`Router`]) on `listener` over
/// plain HTTP, with the default [`conn::Limits`], until `shutdown` completes, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: impl stage::Answers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    conn::serve(listener, None, app, conn::Limits::default(), shutdown).await
}

/// Serves a prepared gateway on `listener` (HTTPS when it has TLS) until `shutdown` completes; then requests in
/// flight have at most its drain timeout to finish.
pub async fn run(
    prepared: Prepared,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let draining = Arc::new(Notify::new());
    let signal = draining.clone();
    let shutdown = async move {
        shutdown.await;
        signal.notify_one();
    };
    if let Some((listener, metrics)) = prepared.metrics {
        // Ends with the process: scrapes may go on while requests drain.
        tokio::spawn(serve(listener, metrics, std::future::pending()));
    }
    let server = conn::serve(
        listener,
        prepared.tls,
        prepared.app,
        prepared.limits,
        shutdown,
    );
    let drain_timeout = prepared.drain_timeout;
    tokio::select! {
        served = server => served,
        () = async {
            draining.notified().await;
            tokio::time::sleep(drain_timeout).await;
        } => {
            tracing::warn!(?drain_timeout, "requests still in flight after the drain timeout; stopping");
            Ok(())
        }
    }
}
