//! `tls::https_connector`: HTTPS to a server whose certificate comes from a CA generated here, trusted
//! explicitly or through `SSL_CERT_FILE` on top of the platform's roots; an untrusted CA is a TLS error.
#![cfg(feature = "tls")]

mod support;

use std::{convert::Infallible, io::Write};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use support::tls::{serve_https, TestCa};
use tower::service_fn;
use tower_mcp_auth::tls::{
    add_pem_certificates, https_connector, https_connector_with_roots, is_tls_error, trust_roots,
    TrustError,
};

async fn hello_server(ca: &TestCa) -> std::net::SocketAddr {
    serve_https(
        ca.server_config(),
        service_fn(|_req| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                b"hello over tls",
            ))))
        }),
    )
    .await
}

fn get(url: String) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

#[tokio::test]
async fn a_certificate_from_a_trusted_ca_is_accepted() {
    let ca = TestCa::new("trusted test CA");
    let addr = hello_server(&ca).await;
    let mut roots = rustls::RootCertStore::empty();
    assert_eq!(
        add_pem_certificates(&mut roots, ca.cert_pem().as_bytes()).unwrap(),
        1
    );
    let client = Client::builder(TokioExecutor::new()).build(https_connector_with_roots(roots));

    // By IP address and by name: the leaf names both.
    for host in [addr.ip().to_string(), "localhost".to_owned()] {
        let response = client
            .request(get(format!("https://{host}:{}/", addr.port())))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello over tls");
    }
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_a_tls_error() {
    let server_ca = TestCa::new("server's CA");
    let other_ca = TestCa::new("some other CA");
    let addr = hello_server(&server_ca).await;
    let mut roots = rustls::RootCertStore::empty();
    add_pem_certificates(&mut roots, other_ca.cert_pem().as_bytes()).unwrap();
    let client = Client::builder(TokioExecutor::new()).build(https_connector_with_roots(roots));

    let error = client
        .request(get(format!("https://{addr}/")))
        .await
        .unwrap_err();
    assert!(
        is_tls_error(&error),
        "a certificate failure is recognised as TLS: {error:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_not_a_tls_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::builder(TokioExecutor::new())
        .build(https_connector_with_roots(rustls::RootCertStore::empty()));

    let error = client
        .request(get(format!("https://{addr}/")))
        .await
        .unwrap_err();
    assert!(
        !is_tls_error(&error),
        "connection refused is a transport error: {error:?}"
    );
}

#[test]
fn pem_data_without_a_certificate_is_refused() {
    let mut roots = rustls::RootCertStore::empty();
    let error = add_pem_certificates(&mut roots, b"not a certificate").unwrap_err();
    assert!(matches!(error, TrustError::Invalid { .. }), "{error:?}");
    assert!(roots.is_empty());
}

/// The only test in this binary that reads or writes `SSL_CERT_FILE`, so nothing races it.
#[tokio::test]
async fn ssl_cert_file_is_trusted_in_addition_to_the_platform_roots() {
    std::env::remove_var("SSL_CERT_FILE");
    let platform = trust_roots().unwrap().len();

    let ca = TestCa::new("private CA named by SSL_CERT_FILE");
    let addr = hello_server(&ca).await;
    let dir = std::env::temp_dir().join(format!("tower-mcp-auth-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = dir.join("private-ca.pem");
    std::fs::File::create(&bundle)
        .unwrap()
        .write_all(ca.cert_pem().as_bytes())
        .unwrap();

    std::env::set_var("SSL_CERT_FILE", &bundle);
    let with_file = trust_roots().unwrap().len();
    let connector = https_connector().unwrap();
    let missing = dir.join("missing.pem");
    std::env::set_var("SSL_CERT_FILE", &missing);
    let unreadable = trust_roots().unwrap_err();
    std::env::remove_var("SSL_CERT_FILE");
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(
        with_file,
        platform + 1,
        "the platform's roots are kept and the file's CA added"
    );
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let response = client
        .request(get(format!("https://localhost:{}/", addr.port())))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    assert!(
        matches!(unreadable, TrustError::Read { .. }),
        "{unreadable:?}"
    );
    let message = unreadable.to_string();
    assert!(
        message.contains("missing.pem"),
        "the error names the file: {message}"
    );
}
