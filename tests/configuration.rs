//! Values that come from configuration: the `try_` builders report a bad route prefix, resource-metadata URL or
//! key header as a `ConfigError` with a clear message, and the panicking builders refuse the same values with
//! the same message.

use std::panic::{catch_unwind, AssertUnwindSafe};

use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode, Uri};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mcp_auth::{
    validators::StaticKeys, ConfigError, McpAuthLayer, PassthroughPolicy, PassthroughRequest,
};

const METADATA_URL: &str = "https://gw.example/.well-known/oauth-protected-resource/mcp/atlassian";

fn layer() -> McpAuthLayer<StaticKeys<&'static str>> {
    McpAuthLayer::new(StaticKeys::new().with_key("sk-good", "alice"))
}

/// The panic message of `f`, which must panic.
fn panic_message<T>(f: impl FnOnce() -> T) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f))
        .err()
        .expect("the panicking builder accepted the value");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn bad_route_prefixes_are_config_errors_naming_the_prefix() {
    for (prefix, reason) in [
        ("mcp/atlassian", "must start with '/'"),
        ("", "must start with '/'"),
        (
            "/mcp/../admin",
            "must not contain '%', '\\', '//' or dot segments",
        ),
        (
            "/mcp/./atlassian",
            "must not contain '%', '\\', '//' or dot segments",
        ),
        (
            "/mcp//atlassian",
            "must not contain '%', '\\', '//' or dot segments",
        ),
        ("//", "must not contain '%', '\\', '//' or dot segments"),
        (
            "/mcp/%61tlassian",
            "must not contain '%', '\\', '//' or dot segments",
        ),
    ] {
        let err = PassthroughPolicy::try_path_prefixes(["/mcp/github", prefix]).unwrap_err();
        assert_eq!(err.setting(), "route prefix");
        assert_eq!(err.value(), prefix);
        let message = format!("invalid route prefix {prefix:?}: it {reason}");
        assert_eq!(err.to_string(), message);
        assert_eq!(
            panic_message(|| PassthroughPolicy::path_prefixes([prefix])),
            message
        );

        let err = layer()
            .try_resource_metadata(prefix, METADATA_URL)
            .unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(
            panic_message(|| layer().resource_metadata(prefix, METADATA_URL)),
            message
        );
    }
}

#[test]
fn bad_resource_metadata_urls_are_config_errors_naming_the_url() {
    for url in [
        "",
        "https://gw.example/\"x",
        "https://gw.example/\\x",
        "https://gw.example/a b",
        "https://gw.example/é",
    ] {
        let err = layer()
            .try_resource_metadata("/mcp/atlassian", url)
            .unwrap_err();
        assert_eq!(err.setting(), "resource metadata URL");
        assert_eq!(err.value(), url);
        let message = format!(
            "invalid resource metadata URL {url:?}: it must be non-empty visible ASCII without '\"' or '\\'"
        );
        assert_eq!(err.to_string(), message);
        assert_eq!(
            panic_message(|| layer().resource_metadata("/mcp/atlassian", url)),
            message
        );
    }
}

#[test]
fn the_key_header_cannot_be_authorization_an_x_mcp_header_cookie_or_host() {
    for name in [
        "authorization",
        "x-mcp-auth",
        "x-mcp-servers",
        "x-mcp-github-authorization",
        "x-mcp-access-groups",
        "cookie",
        "host",
    ] {
        let header = HeaderName::from_static(name);
        let err = layer().try_key_header(header.clone()).unwrap_err();
        assert_eq!(err.setting(), "key header");
        assert_eq!(err.value(), name);
        assert!(err
            .to_string()
            .starts_with(&format!("invalid key header {name:?}: it cannot be")));
        assert_eq!(
            panic_message(|| layer().key_header(header)),
            err.to_string()
        );
    }
    // Look-alikes that are none of them are fine.
    for name in ["x-api-key", "x-mcp", "x-mcpauth", "cookie2", "x-host"] {
        assert!(
            layer()
                .try_key_header(HeaderName::from_static(name))
                .is_ok(),
            "{name}"
        );
    }
}

#[test]
fn config_errors_are_std_errors() {
    fn is_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
    let err: ConfigError = PassthroughPolicy::try_path_prefixes(["x"]).unwrap_err();
    is_error(&err);
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err.clone());
    assert_eq!(boxed.to_string(), err.to_string());
}

/// What the `try_` builders build behaves as what the panicking ones build.
#[tokio::test]
async fn try_builders_configure_the_same_layer() {
    let policy = PassthroughPolicy::try_path_prefixes(["/mcp/atlassian/"]).unwrap();
    let allows = |path: &str| {
        let uri: Uri = path.parse().unwrap();
        policy.allows(&PassthroughRequest::new(
            &Method::POST,
            &uri,
            &HeaderMap::new(),
        ))
    };
    assert!(allows("/mcp/atlassian/sse"));
    assert!(!allows("/mcp/atlassian-evil"));
    assert!(!PassthroughPolicy::try_path_prefixes(Vec::<&str>::new())
        .unwrap()
        .allows(&PassthroughRequest::new(
            &Method::GET,
            &Uri::from_static("/"),
            &HeaderMap::new()
        )));

    let gateway = ServiceBuilder::new()
        .layer(
            layer()
                .try_key_header(HeaderName::from_static("x-api-key"))
                .unwrap()
                .passthrough(policy.clone())
                .try_resource_metadata("/mcp/atlassian", METADATA_URL)
                .unwrap(),
        )
        .service(service_fn(|_req: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(()))
        }));
    let answer = gateway
        .clone()
        .oneshot(Request::post("/mcp/atlassian").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.headers()["www-authenticate"],
        format!("Bearer resource_metadata=\"{METADATA_URL}\"").as_str()
    );
    let answer = gateway
        .oneshot(
            Request::post("/mcp/github")
                .header("x-api-key", "sk-good")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}
