//! Development certificates (rcgen): a CA and a server certificate it signs, for `pgsplit certs`, the demo and tests.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

/// The files `write_dev_certs` wrote.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The CA certificate clients trust.
    pub ca_cert: PathBuf,
    /// The CA's private key (to sign more certificates).
    pub ca_key: PathBuf,
    /// The server certificate, signed by the CA.
    pub server_cert: PathBuf,
    /// The server's private key (mode 0600).
    pub server_key: PathBuf,
}

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen failed.
    #[error("generating certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// Writing a file failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Writes `ca.crt`, `ca.key`, `server.crt`, `server.key` into `dir`; the server certificate is valid for `hosts`
/// (names and IP addresses).
pub fn write_dev_certs(dir: &Path, hosts: &[&str]) -> Result<CertFiles, CertError> {
    std::fs::create_dir_all(dir).map_err(|e| CertError::Io(dir.display().to_string(), e))?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "pgsplit development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, hosts.first().copied().unwrap_or("localhost"));
    params.subject_alt_names = hosts
        .iter()
        .map(|h| match h.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName((*h).try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_cert = params.signed_by(&server_key, &issuer)?;

    let files = CertFiles {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    };
    write(&files.ca_cert, &ca_cert.pem(), false)?;
    write(&files.ca_key, &ca_key.serialize_pem(), true)?;
    write(&files.server_cert, &server_cert.pem(), false)?;
    write(&files.server_key, &server_key.serialize_pem(), true)?;
    Ok(files)
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), CertError> {
    let err = |e| CertError::Io(path.display().to_string(), e);
    std::fs::write(path, text).map_err(err)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_ca_and_a_server_certificate_with_its_names() {
        let dir = std::env::temp_dir().join(format!("pgsplit-certs-test-{}", std::process::id()));
        let files = write_dev_certs(&dir, &["localhost", "127.0.0.1"]).unwrap();
        let pem = std::fs::read_to_string(&files.server_cert).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let key = std::fs::read_to_string(&files.server_key).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&files.server_key).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // The server certificate verifies against the CA for its names (and not for others).
        use rustls_pki_types::pem::PemObject;
        let ca = rustls_pki_types::CertificateDer::from_pem_file(&files.ca_cert).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let leaf = rustls_pki_types::CertificateDer::from_pem_file(&files.server_cert).unwrap();
        let now = rustls_pki_types::UnixTime::now();
        use rustls::client::danger::ServerCertVerifier;
        for (name, ok) in [("localhost", true), ("127.0.0.1", true), ("example.com", false)] {
            let sn = rustls_pki_types::ServerName::try_from(name).unwrap();
            assert_eq!(verifier.verify_server_cert(&leaf, &[], &sn, &[], now).is_ok(), ok, "{name}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
