//! The gateway: configuration into a router, and serving it until shutdown.

pub mod demo;
mod metadata;
mod options;
mod permissions;
mod proxy;
mod sessions;

use std::{collections::HashMap, future::Future, io, net::SocketAddr, sync::Arc};

use axum::{body::Body, routing::any, routing::get, serve::ListenerExt, Router};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_mcp_auth::{
    upstream::{
        ForwardCredentials, ForwardCredentialsLayer, TakeClientCredentialsLayer, UpstreamAuth,
        UpstreamConfig,
    },
    McpAuthLayer, PassthroughPolicy,
};

pub use options::{Options, USAGE};

/// The OAuth token the embedded demo upstream accepts.
pub const DEMO_TOKEN: &str = "demo-oauth-token";
/// The gateway key of demo mode.
pub const DEMO_KEY: &str = "sk-demo";

type HttpClient = Client<HttpConnector, Body>;

/// One upstream: its configuration, its credential-forwarding client, and the gateway's metadata URL for it.
pub struct Upstream {
    config: UpstreamConfig,
    client: ForwardCredentials<HttpClient>,
    metadata_url: String,
}

/// Everything the handlers share.
pub struct Gateway {
    upstreams: HashMap<String, Upstream>,
    public_url: String,
    metadata: metadata::MetadataCache,
    metadata_client: Client<HttpConnector, Empty<Bytes>>,
    sessions: sessions::Sessions,
}

/// A gateway ready to serve: the router, plus what a caller may want to print.
pub struct Prepared {
    pub app: Router,
    pub public_url: String,
    pub demo: Option<demo::DemoUpstream>,
}

fn connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    // MCP messages are small request/response pairs: never let Nagle hold them back.
    connector.set_nodelay(true);
    connector
}

/// Builds the gateway for a listener already bound to `addr`. Without `--upstream`, starts the demo upstream.
pub async fn prepare(options: Options, addr: SocketAddr) -> Result<Prepared, String> {
    let mut options = options;
    let mut demo = None;
    if options.upstreams.is_empty() {
        let upstream = demo::start(DEMO_TOKEN).await.map_err(|e| e.to_string())?;
        options.upstreams.push(("demo".to_owned(), upstream.url()));
        options.passthrough.push("demo".to_owned());
        if options.keys.is_empty() {
            options.keys.push(DEMO_KEY.to_owned());
        }
        demo = Some(upstream);
    }
    if options.keys.is_empty() && options.key_file.is_none() {
        return Err(
            "no gateway keys: pass --key KEY, --key-file PATH or set MCP_GATEWAY_KEYS".to_owned(),
        );
    }
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));

    let mut configs = Vec::new();
    for (name, url) in &options.upstreams {
        let config = UpstreamConfig::new(name, url)
            .map_err(|e| format!("--upstream {name}: {e}"))?
            .with_passthrough(options.passthrough.contains(name));
        configs.push(config);
    }
    for name in options
        .passthrough
        .iter()
        .chain(options.upstream_auth.iter().map(|(n, _)| n))
    {
        if !configs.iter().any(|c| c.name() == name) {
            return Err(format!("{name:?} is not an --upstream"));
        }
    }
    for (name, auth) in &options.upstream_auth {
        let auth: UpstreamAuth = auth
            .parse()
            .map_err(|e| format!("--upstream-auth {name}: {e}"))?;
        let config = configs
            .iter_mut()
            .find(|c| c.name() == name)
            .expect("checked above");
        *config = config.clone().with_auth(auth);
    }

    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector());
    let metadata_url =
        |name: &str| format!("{public_url}/.well-known/oauth-protected-resource/mcp/{name}");
    let passthrough_routes: Vec<String> = configs
        .iter()
        .filter(|c| c.accepts_passthrough())
        .map(|c| format!("/mcp/{}", c.name()))
        .collect();

    let keys = permissions::gateway_keys(&options.keys, options.key_file.as_deref())?;
    let mut auth =
        McpAuthLayer::new(keys).passthrough(PassthroughPolicy::path_prefixes(&passthrough_routes));
    for route in &passthrough_routes {
        let name = route.trim_start_matches("/mcp/");
        auth = auth.resource_metadata(route, &metadata_url(name));
    }

    let names: Vec<String> = configs.iter().map(|c| c.name().to_owned()).collect();
    let upstreams = configs
        .into_iter()
        .map(|config| {
            let upstream = Upstream {
                client: ServiceBuilder::new()
                    .layer(ForwardCredentialsLayer::new(config.clone()))
                    .service(client.clone()),
                metadata_url: metadata_url(config.name()),
                config,
            };
            (upstream.config.name().to_owned(), upstream)
        })
        .collect();
    let gateway = Arc::new(Gateway {
        upstreams,
        public_url: public_url.clone(),
        metadata: metadata::cache(),
        metadata_client: Client::builder(TokioExecutor::new()).build(connector()),
        sessions: sessions::Sessions::new(),
    });

    let protected = Router::new()
        .route("/mcp/{*rest}", any(proxy::handle))
        .layer(
            ServiceBuilder::new()
                .layer(TakeClientCredentialsLayer::new().servers(&names))
                .layer(auth)
                .layer(permissions::require_upstream()),
        )
        .with_state(gateway.clone());
    let app = Router::new()
        .route(
            "/.well-known/oauth-protected-resource/mcp/{name}",
            get(metadata::handle),
        )
        .with_state(gateway)
        .merge(protected);
    Ok(Prepared {
        app,
        public_url,
        demo,
    })
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
