//! TLS towards servers: rustls client configurations for `require`, `verify-ca` and `verify-full`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// How a server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encrypt, accept any certificate (libpq's `require`).
    None,
    /// Check the chain against the CA, not the host name.
    Ca,
    /// Check the chain and the host name.
    Full,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The CA file could not be read or held no certificate.
    #[error("cannot read CA certificates from {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The file is not PEM that holds certificates.
    #[error("cannot read CA certificates from {path}: {source}")]
    Pem {
        /// The file.
        path: String,
        /// What the PEM reader found wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// The CA certificates make no verifier (none usable, or a bad revocation list).
    #[error("cannot use CA certificates from {path}: {source}")]
    Verifier {
        /// The file.
        path: String,
        /// What rustls found wrong.
        source: rustls::client::VerifierBuilderError,
    },
    /// A host name that is no server name (neither a DNS name nor an IP address).
    #[error("invalid server name {host}: {source}")]
    ServerName {
        /// The host as configured.
        host: String,
        /// What the name check found wrong.
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// rustls rejected the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider pgsplit uses everywhere (ring: one provider, no ambiguity).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration for a server, per verification mode.
pub fn client_config(verify: Verify, ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let config = match verify {
        Verify::None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider))).with_no_client_auth(),
        Verify::Ca | Verify::Full => {
            let path = ca.ok_or_else(|| TlsConfigError::Ca { path: "(none)".into(), reason: "a CA file is required".into() })?;
            let roots = Arc::new(load_roots(path)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|source| TlsConfigError::Verifier { path: path.display().to_string(), source })?;
            if verify == Verify::Full {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder.dangerous().with_custom_certificate_verifier(Arc::new(IgnoreHostName(webpki))).with_no_client_auth()
            }
        }
    };
    Ok(Arc::new(config))
}

/// A client configuration that accepts exactly one certificate: pgsplit's own (`pgsplit mode` talking to the
/// admin console of the instance whose `tls.cert` it read). Nothing else is trusted, not even a CA's other leaves.
pub fn pinned_client_config(cert: CertificateDer<'static>) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let verifier = Pinned { cert, signatures: AcceptAny(provider) };
    Ok(Arc::new(builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()))
}

/// The first certificate of a PEM file (a server's chain starts with its own).
pub fn first_certificate(path: &Path) -> Result<CertificateDer<'static>, TlsConfigError> {
    let pem = |source| TlsConfigError::Pem { path: path.display().to_string(), source };
    CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .next()
        .ok_or_else(|| TlsConfigError::Ca { path: path.display().to_string(), reason: "no certificate found".into() })?
        .map_err(pem)
}

/// The server name to present and verify; IP addresses verify against IP SANs.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsConfigError> {
    ServerName::try_from(host.to_owned()).map_err(|source| TlsConfigError::ServerName { host: host.to_owned(), source })
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let err = |reason: String| TlsConfigError::Ca { path: path.display().to_string(), reason };
    let pem = |source| TlsConfigError::Pem { path: path.display().to_string(), source };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(path).map_err(pem)?.collect::<Result<_, _>>().map_err(pem)?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(err("no certificate found".into()));
    }
    Ok(roots)
}

/// `require`: encryption without authentication of the server.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Pinning: the server must present exactly this certificate (and prove it holds its key: the handshake's
/// signatures are checked as `AcceptAny` checks them).
#[derive(Debug)]
struct Pinned {
    /// The one certificate accepted.
    cert: CertificateDer<'static>,
    /// Checks the handshake's signatures.
    signatures: AcceptAny,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_verify_schemes()
    }
}

/// `verify-ca`: the chain must lead to the CA; the host name is not checked.
#[derive(Debug)]
struct IgnoreHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::PrivateKeyDer;

    /// A TLS acceptor presenting the server certificate of `files`.
    fn acceptor(files: &crate::certs::CertFiles) -> tokio_rustls::TlsAcceptor {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&files.server_cert).expect("cert file").map(|c| c.expect("cert")).collect();
        let key = PrivateKeyDer::from_pem_file(&files.server_key).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// Whether a client with `config` completes a handshake with `acceptor` for the name `localhost`.
    async fn connects(acceptor: tokio_rustls::TlsAcceptor, config: Arc<ClientConfig>) -> bool {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let _ = acceptor.accept(tcp).await;
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = server_name("localhost").expect("name");
        let ok = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.is_ok();
        let _ = server.await;
        ok
    }

    #[tokio::test]
    async fn pinning_accepts_the_instances_own_certificate_and_no_other() {
        let dir = std::env::temp_dir().join(format!("pgsplit-pinned-{}", std::process::id()));
        let own = crate::certs::write_dev_certs(&dir.join("own"), &["localhost"]).expect("certs");
        let other = crate::certs::write_dev_certs(&dir.join("other"), &["localhost"]).expect("certs");
        let pinned = first_certificate(&own.server_cert).expect("own certificate");
        assert!(connects(acceptor(&own), pinned_client_config(pinned.clone()).expect("config")).await);
        assert!(
            !connects(acceptor(&other), pinned_client_config(pinned).expect("config")).await,
            "another certificate for the same name is refused"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
