//! An oracle for path opt-in that does not share the layer's algorithm.
//!
//! `properties::paths_opt_in_exactly_where_the_contract_says` compares the layer with a model that follows the
//! same recipe (canonical check, then whole-segment prefix), so the two share their blind spots. Here the
//! judges are independent components: axum's router (matchit) decides which route a path reaches, and the
//! `url` crate (WHATWG URL parsing) plus two other common normalisations decide what a component behind the
//! layer may make of the path. For every generated path:
//!
//! - **sound:** when the real layer lets a lone unknown bearer pass through on that path, every interpretation
//!   of the path (as sent; WHATWG-resolved; percent-decoded then resolved; slashes merged then resolved; path
//!   parameters removed then resolved) is
//!   routed by axum to the opted-in route, and to nothing else;
//! - **not vacuous:** when every interpretation is the path itself and axum routes it to the opted-in route,
//!   the layer lets it opt in, unless the path holds a `%` (the contract refuses every percent sign, even one
//!   no normaliser here reads differently, such as a lone `%`).

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use axum::{routing::any, Router};
use http::{Request, Response, StatusCode, Uri};
use proptest::{collection::vec, prelude::*};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{validate_fn, McpAuthLayer, OAuthPassthrough, PassthroughPolicy, Verdict};

const OPTED_IN: &str = "/mcp/atlassian";

/// Where axum sends a path: the opted-in route, another server's route, or nowhere.
fn router() -> Router {
    let opted_in = any(|| async { "opted-in" });
    let other = any(|| async { "other" });
    Router::new()
        .route("/mcp/atlassian", opted_in.clone())
        .route("/mcp/atlassian/", opted_in.clone())
        .route("/mcp/atlassian/{*rest}", opted_in)
        .route("/mcp/{server}", other.clone())
        .route("/mcp/{server}/", other.clone())
        .route("/mcp/{server}/{*rest}", other)
        .fallback(|| async { "none" })
}

/// The ways a component behind the layer may read a request path.
fn interpretations(path: &str) -> Vec<(&'static str, String)> {
    vec![
        ("as sent", path.to_owned()),
        ("WHATWG-resolved", resolved(path)),
        (
            "percent-decoded, then resolved",
            resolved(&percent_decoded(path)),
        ),
        (
            "slashes merged, then resolved",
            resolved(&merged_slashes(path)),
        ),
        (
            "path parameters removed, then resolved",
            resolved(&without_parameters(path)),
        ),
    ]
}

/// Each segment cut at its first `;`, as Java servlet containers read path parameters (`..;` is `..`).
fn without_parameters(path: &str) -> String {
    path.split('/')
        .map(|segment| segment.split(';').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("/")
}

/// The path as a WHATWG URL parser leaves it: dot segments (also `%2e` forms) resolved.
fn resolved(path: &str) -> String {
    url::Url::parse("http://gw.example")
        .unwrap()
        .join(path)
        .map_or_else(|_| path.to_owned(), |url| url.path().to_owned())
}

/// Every `%XX` decoded, as a proxy that decodes before routing would (invalid escapes left as they are).
fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs of `/` merged into one, as nginx's `merge_slashes` does.
fn merged_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

struct Oracle {
    runtime: tokio::runtime::Runtime,
    router: Router,
    /// The real layer, over a service that records whether the request came through as a passthrough.
    layer: tower::util::BoxCloneService<
        Request<()>,
        Response<tower_mcp_auth::body::ResponseBody<()>>,
        Infallible,
    >,
    passed: Arc<Mutex<bool>>,
}

impl Oracle {
    fn new() -> Self {
        let passed = Arc::new(Mutex::new(false));
        let layer = ServiceBuilder::new()
            .layer(
                McpAuthLayer::new(validate_fn(|_token: String| async {
                    Ok::<Verdict<()>, Infallible>(Verdict::Unknown)
                }))
                .passthrough(PassthroughPolicy::path_prefixes([OPTED_IN])),
            )
            .service(service_fn({
                let passed = Arc::clone(&passed);
                move |req: Request<()>| {
                    *passed.lock().unwrap() = req.extensions().get::<OAuthPassthrough>().is_some();
                    async { Ok::<_, Infallible>(Response::new(())) }
                }
            }));
        Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            router: router(),
            layer: tower::util::BoxCloneService::new(layer),
            passed,
        }
    }

    /// Whether the layer lets a lone unknown bearer pass through on `uri`.
    fn layer_opts_in(&self, uri: &Uri) -> bool {
        *self.passed.lock().unwrap() = false;
        let request = Request::post(uri.clone())
            .header("authorization", "Bearer upstream-oauth-token")
            .body(())
            .unwrap();
        let answer = self
            .runtime
            .block_on(self.layer.clone().oneshot(request))
            .unwrap();
        let passed = *self.passed.lock().unwrap();
        assert_eq!(passed, answer.status() == StatusCode::OK, "{uri}");
        passed
    }

    /// The route axum sends `path` to.
    fn route(&self, path: &str) -> String {
        let Ok(uri) = path.parse::<Uri>() else {
            return "unroutable".to_owned();
        };
        let request = Request::get(uri).body(axum::body::Body::empty()).unwrap();
        self.runtime.block_on(async {
            let answer = self.router.clone().call(request).await.unwrap();
            let body = axum::body::to_bytes(answer.into_body(), 64).await.unwrap();
            String::from_utf8_lossy(&body).into_owned()
        })
    }
}

fn segment() -> impl Strategy<Value = String> {
    let known = prop_oneof![
        Just("mcp"),
        Just("atlassian"),
        Just("github"),
        Just("x"),
        Just("atlassian-evil"),
        Just("atlassianx"),
        Just("ATLASSIAN"),
        Just("atlassian;x"),
        Just("."),
        Just(".."),
        Just(""),
        Just("%2e"),
        Just("%2E"),
        Just("%2e%2e"),
        Just(".%2e"),
        Just("%2E."),
        Just("%2f"),
        Just("%2F"),
        Just("%61tlassian"),
        Just("%25"),
        Just("%"),
        Just(";"),
        Just("~"),
    ]
    .prop_map(str::to_owned);
    prop_oneof![4 => known, 1 => "[a-z.%2eEfF;~-]{0,5}"]
}

fn path() -> impl Strategy<Value = String> {
    let start = prop_oneof![
        4 => Just("/mcp/atlassian"),
        1 => Just("/mcp"),
        1 => Just(""),
        1 => Just("/mcp/github"),
        1 => Just("//mcp/atlassian"),
    ];
    let end = prop_oneof![Just(""), Just("/"), Just("?next=/../github")];
    (start, vec(segment(), 0..4), end).prop_map(|(start, segments, end)| {
        let tail: String = segments.iter().map(|s| format!("/{s}")).collect();
        let path = format!("{start}{tail}{end}");
        if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        }
    })
}

thread_local! {
    static ORACLE: Oracle = Oracle::new();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_path_the_layer_opts_in_reaches_the_opted_in_route_and_nothing_else(path in path()) {
        let Ok(uri) = path.parse::<Uri>() else {
            // Not a request target hyper would accept: it never reaches the layer.
            return Ok(());
        };
        ORACLE.with(|oracle| {
            let path = uri.path();
            let opts_in = oracle.layer_opts_in(&uri);
            let readings = interpretations(path);
            let routes: Vec<(&str, String, String)> = readings
                .iter()
                .map(|(how, read)| (*how, read.clone(), oracle.route(read)))
                .collect();
            if opts_in {
                for (how, read, route) in &routes {
                    prop_assert_eq!(
                        route.as_str(), "opted-in",
                        "{:?} opts in, but read {} as {:?} it is routed to {:?}", path, how, read, route
                    );
                }
            }
            let unambiguous = readings.iter().all(|(_, read)| read == path) && !path.contains('%');
            if unambiguous && routes[0].2 == "opted-in" {
                prop_assert!(opts_in, "{:?} reads the same every way and is routed to the opted-in route, but does not opt in", path);
            }
            Ok(())
        })?;
    }
}

/// The oracle itself catches what it is meant to: interpretations differ exactly on the non-canonical paths
/// the layer refuses, and axum keeps look-alike routes apart.
#[test]
fn the_oracle_sees_what_the_layer_must_refuse() {
    let oracle = Oracle::new();
    for (path, how, read_as) in [
        ("/mcp/atlassian/../github", "WHATWG-resolved", "/mcp/github"),
        (
            "/mcp/atlassian/%2e%2e/github",
            "WHATWG-resolved",
            "/mcp/github",
        ),
        (
            "/mcp/atlassian%2F..%2Fgithub",
            "percent-decoded, then resolved",
            "/mcp/github",
        ),
        (
            "/mcp/atlassian//../github",
            "slashes merged, then resolved",
            "/mcp/github",
        ),
        (
            "/mcp/atlassian/..;/github",
            "path parameters removed, then resolved",
            "/mcp/github",
        ),
    ] {
        let readings = interpretations(path);
        let (_, read) = readings.iter().find(|(h, _)| *h == how).unwrap();
        assert_eq!(read, read_as, "{path} {how}");
        assert_eq!(oracle.route(read), "other");
        assert!(!oracle.layer_opts_in(&path.parse().unwrap()), "{path}");
    }
    assert_eq!(oracle.route("/mcp/atlassian-evil/x"), "other");
    assert_eq!(oracle.route("/mcp/atlassian/x"), "opted-in");
    assert!(oracle.layer_opts_in(&"/mcp/atlassian/x".parse().unwrap()));
    assert!(!oracle.layer_opts_in(&"/mcp/atlassian-evil/x".parse().unwrap()));
}
