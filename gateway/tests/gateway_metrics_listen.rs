//! `--metrics-listen`: `/metrics` on a listener of its own and not on the public one; latencies as Prometheus
//! histograms with buckets (which add up across replicas), not quantiles.

use mcp_gateway as app;
mod gateway_support;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use gateway_support::*;
use tokio::net::TcpListener;

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_as_histograms() {
    let upstream = Recorder::start(|_| answer(StatusCode::OK, &[], "{}")).await;
    let options = app::Options::parse(
        args(&[
            ("--key", KEY),
            ("--upstream", &format!("s={}", upstream.url("/mcp"))),
            ("--metrics-listen", "127.0.0.1:0"),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(options.metrics_listen.as_deref(), Some("127.0.0.1:0"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = listener.local_addr().unwrap();
    let prepared = app::prepare(options, public).await.unwrap();
    let metrics = prepared.metrics.as_ref().unwrap().0.local_addr().unwrap();
    assert_ne!(metrics, public);
    tokio::spawn(app::run(prepared, listener, std::future::pending()));

    let relayed = post_init(
        &format!("http://{public}/mcp/s"),
        &[("x-litellm-api-key", KEY)],
    )
    .await;
    assert_eq!(relayed.status, StatusCode::OK);

    let on_public = send(
        Method::GET,
        &format!("http://{public}/metrics"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(on_public.status, StatusCode::NOT_FOUND);
    let scrape = send(
        Method::GET,
        &format!("http://{metrics}/metrics"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(scrape.status, StatusCode::OK);
    let text = String::from_utf8(scrape.body.to_vec()).unwrap();
    let relay_buckets: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("http_client_request_duration_bucket{") && l.contains("upstream=\"s\"")
        })
        .collect();
    assert!(
        relay_buckets.iter().any(|l| l.contains("le=\"0.005\""))
            && relay_buckets.iter().any(|l| l.contains("le=\"+Inf\"")),
        "{text}"
    );
    assert!(
        text.contains("# TYPE http_client_request_duration histogram"),
        "{text}"
    );
    assert!(!text.contains("quantile="), "{text}");
    // The metrics listener serves nothing else.
    let elsewhere = send(
        Method::GET,
        &format!("http://{metrics}/readyz"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_metrics_address_comes_from_the_config_file_and_is_checked() {
    let file = temp_file(
        "config.yaml",
        "mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\ngeneral_settings:\n  metrics_listen: 127.0.0.1:9464\n",
    );
    let options =
        app::Options::parse(["--config".to_owned(), file.display().to_string()], None).unwrap();
    assert_eq!(options.metrics_listen.as_deref(), Some("127.0.0.1:9464"));
    assert!(options.warnings.is_empty(), "{:?}", options.warnings);
    // The flag wins over the file.
    let options = app::Options::parse(
        [
            "--config".to_owned(),
            file.display().to_string(),
            "--metrics-listen".to_owned(),
            "127.0.0.1:9000".to_owned(),
        ],
        None,
    )
    .unwrap();
    assert_eq!(options.metrics_listen.as_deref(), Some("127.0.0.1:9000"));
    let error =
        app::Options::parse(["--metrics-listen".to_owned(), "9464".to_owned()], None).unwrap_err();
    assert!(error.starts_with("--metrics-listen"), "{error}");
    let bad = temp_file(
        "config.yaml",
        "mcp_servers:\n  a:\n    url: http://127.0.0.1:1/mcp\ngeneral_settings:\n  metrics_listen: nowhere\n",
    );
    let error =
        app::Options::parse(["--config".to_owned(), bad.display().to_string()], None).unwrap_err();
    assert!(error.contains("general_settings.metrics_listen"), "{error}");
}
