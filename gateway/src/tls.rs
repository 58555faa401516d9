//! TLS both ways, with rustls and ring: the client side that reaches `https://` upstreams (tower-mcp-auth's
//! `tls` module), and the optional server side of `--tls-cert`/`--tls-key` (connections are served by [`crate::conn`]).

use std::{path::Path, sync::Arc};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ServerConfig,
};
use tokio_rustls::TlsAcceptor;
use tower_mcp_auth::tls::{add_pem_certificates, https_connector_with_roots, trust_roots};
pub use tower_mcp_auth::tls::{is_tls_error, HttpsConnector};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A connector for `http://` and `https://` upstreams (tower-mcp-auth's `tls` module) whose certificates must
/// chain to the platform's roots, the PEM bundle of `SSL_CERT_FILE`, or the PEM bundle `extra`.
pub fn https_connector(extra: Option<&Path>) -> Result<HttpsConnector, String> {
    let mut roots = trust_roots().map_err(|e| e.to_string())?;
    if let Some(path) = extra {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        add_pem_certificates(&mut roots, &pem).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(https_connector_with_roots(roots))
}

/// The server side of `--tls-cert FILE --tls-key FILE` (PEM), offering HTTP/2 and HTTP/1.1.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    // Never show the key file's content, only why it was refused.
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
