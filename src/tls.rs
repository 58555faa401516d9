//! HTTPS for outgoing calls (feature `tls`): a rustls connector for hyper-util's client that trusts the
//! platform's root certificates plus the PEM bundle named by `SSL_CERT_FILE`.
//!
//! `SSL_CERT_FILE` is the convention curl, OpenSSL and Python follow, so a private CA works without a flag:
//! point the variable at its PEM file. Unlike OpenSSL, the file is trusted **in addition to** the platform's
//! roots, not instead of them, so one gateway can reach public and private upstreams side by side.
//!
//! The validators that call out over HTTP (introspection, and anything built on [`https_connector`]) use this
//! connector, so `https://` endpoints work out of the box; a handshake or certificate failure can be told
//! apart from other transport errors with [`is_tls_error`].
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//!
//! # fn main() -> Result<(), tower_mcp_auth::tls::TrustError> {
//! let client = Client::builder(TokioExecutor::new())
//!     .build::<_, Full<Bytes>>(tower_mcp_auth::tls::https_connector()?);
//! # let _ = client;
//! # Ok(())
//! # }
//! ```

use std::{error::Error as StdError, fmt, io, path::PathBuf, sync::Arc};

use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{
    pki_types::{pem::PemObject, CertificateDer},
    ClientConfig, RootCertStore,
};

/// The connector [`https_connector`] builds: HTTPS through rustls, plain HTTP passed through.
pub type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The environment variable naming an extra PEM bundle of trusted roots.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// A connector for `http://` and `https://` URLs that trusts [`trust_roots`].
///
/// # Errors
///
/// When `SSL_CERT_FILE` is set but cannot be read or holds no certificate; see [`TrustError`].
pub fn https_connector() -> Result<HttpsConnector, TrustError> {
    Ok(https_connector_with_roots(trust_roots()?))
}

/// A connector for `http://` and `https://` URLs that trusts exactly `roots`.
///
/// ```
/// use tower_mcp_auth::tls::{add_pem_certificates, https_connector_with_roots};
///
/// let mut roots = rustls::RootCertStore::empty();
/// // add_pem_certificates(&mut roots, pem_bytes_of_a_test_ca)?;
/// let _connector = https_connector_with_roots(roots);
/// ```
pub fn https_connector_with_roots(roots: RootCertStore) -> HttpsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// The roots [`https_connector`] trusts: the platform's store plus every certificate in the PEM file that
/// `SSL_CERT_FILE` names, when it is set.
///
/// Platform certificates the store holds but rustls cannot parse are skipped, as every rustls client does.
///
/// # Errors
///
/// When `SSL_CERT_FILE` is set but cannot be read or holds no certificate.
pub fn trust_roots() -> Result<RootCertStore, TrustError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(platform_certificates());
    if let Some(path) = std::env::var_os(SSL_CERT_FILE).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let pem = std::fs::read(&path).map_err(|source| TrustError::Read {
            path: path.clone(),
            source,
        })?;
        add_pem_certificates(&mut roots, &pem).map_err(|error| error.at(path))?;
    }
    Ok(roots)
}

/// Adds every certificate of a PEM bundle to `roots`, returning how many were added.
///
/// # Errors
///
/// When the bundle holds no certificate, or one that is malformed.
pub fn add_pem_certificates(roots: &mut RootCertStore, pem: &[u8]) -> Result<usize, TrustError> {
    fn invalid(reason: impl ToString) -> TrustError {
        TrustError::Invalid {
            path: None,
            reason: reason.to_string(),
        }
    }
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.map_err(invalid)?).map_err(invalid)?;
        added += 1;
    }
    if added == 0 {
        return Err(invalid("no certificate in the PEM data"));
    }
    Ok(added)
}

/// The platform's roots, whatever `SSL_CERT_FILE` says: rustls-native-certs reads that variable *instead of*
/// the platform store, so where it is set the usual certificate directories are read directly.
fn platform_certificates() -> Vec<CertificateDer<'static>> {
    let env_set = std::env::var_os(SSL_CERT_FILE).is_some_and(|p| !p.is_empty())
        || std::env::var_os("SSL_CERT_DIR").is_some_and(|p| !p.is_empty());
    if !env_set {
        return rustls_native_certs::load_native_certs().certs;
    }
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        openssl_probe::candidate_cert_dirs()
            .flat_map(|dir| rustls_native_certs::load_certs_from_paths(None, Some(dir)).certs)
            .collect()
    }
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    {
        rustls_native_certs::load_native_certs().certs
    }
}

/// Whether a client error was a TLS failure (handshake, certificate, protocol), looking through its sources.
///
/// Gateways use it to say "TLS failure" in a 502 instead of a generic connection error.
pub fn is_tls_error(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips the error it wraps, and hyper-rustls wraps rustls' errors in two of them.
        current = match error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => error.source(),
        };
    }
    false
}

/// Trusted roots could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrustError {
    /// The PEM file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The PEM data held no certificate, or a malformed one.
    Invalid {
        /// The file, when the data came from one.
        path: Option<PathBuf>,
        /// What was wrong.
        reason: String,
    },
}

impl TrustError {
    fn at(self, at: PathBuf) -> Self {
        match self {
            Self::Invalid { reason, .. } => Self::Invalid {
                path: Some(at),
                reason,
            },
            other => other,
        }
    }
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => {
                write!(
                    f,
                    "cannot read trusted certificates from {}: {source}",
                    path.display()
                )
            }
            Self::Invalid {
                path: Some(path),
                reason,
            } => write!(
                f,
                "invalid trusted certificates in {}: {reason}",
                path.display()
            ),
            Self::Invalid { path: None, reason } => {
                write!(f, "invalid trusted certificates: {reason}")
            }
        }
    }
}

impl StdError for TrustError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Invalid { .. } => None,
        }
    }
}
