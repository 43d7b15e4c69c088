//! The client-side TLS acceptor, built from `tls.cert` and `tls.key`.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::backend::tls;
use crate::config::Config;

use super::AppError;

/// The acceptor for client TLS (ALPN `postgresql`); a file that cannot be read or used is an `AppError::Tls`.
pub(super) fn acceptor(config: &Config) -> Result<TlsAcceptor, AppError> {
    let err = |what: &str, e: &dyn std::fmt::Display| AppError::Tls(format!("client TLS {what}: {e}"));
    let cert_path = config.tls.cert.as_deref().ok_or_else(|| err("cert", &"not configured"))?;
    let key_path = config.tls.key.as_deref().ok_or_else(|| err("key", &"not configured"))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| err("cert", &format!("{}: {e}", cert_path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| err("cert", &format!("{}: {e}", cert_path.display())))?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| err("key", &format!("{}: {e}", key_path.display())))?;
    let mut server = ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("config", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err("config", &e))?;
    server.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}
