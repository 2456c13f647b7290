//! TLS for the client port (and, through the same functions, anything
//! else in ordo that dials a TLS server): a rustls client configuration
//! that trusts exactly the CA certificates in one PEM file.
//!
//! rustls runs on the `ring` provider, chosen explicitly, so nothing
//! depends on which provider another crate in the program installs as
//! the process default.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Why a TLS configuration could not be built. Each message names the
/// file and says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error(
        "cannot read the CA certificates in {path}: {error}; give a PEM file of the CA that signed the server's certificate"
    )]
    ReadCa {
        path: PathBuf,
        // Not a `source`: its text is already in the message, and callers
        // that print the cause chain would repeat it.
        error: rustls::pki_types::pem::Error,
    },
    #[error(
        "{path} holds no PEM certificate; give the PEM file of the CA that signed the server's certificate"
    )]
    NoCa { path: PathBuf },
    #[error("a certificate in {path} is not a usable CA certificate: {error}")]
    BadCa { path: PathBuf, error: rustls::Error },
    #[error("cannot set up TLS: {0}")]
    Rustls(rustls::Error),
}

/// The crypto provider every TLS configuration in ordo is built with.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that trusts only the CA certificates in the PEM
/// file `ca_pem` (the system's roots are not consulted: an ordo server's
/// certificate is expected to come from the operator's own CA).
pub fn client_config(ca_pem: &Path) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let read_error = |error| TlsConfigError::ReadCa {
        path: ca_pem.to_path_buf(),
        error,
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_pem).map_err(read_error)? {
        roots
            .add(certificate.map_err(read_error)?)
            .map_err(|error| TlsConfigError::BadCa {
                path: ca_pem.to_path_buf(),
                error,
            })?;
    }
    if roots.is_empty() {
        return Err(TlsConfigError::NoCa {
            path: ca_pem.to_path_buf(),
        });
    }
    let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Rustls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name a server's certificate must carry, from its `host:port`: an IP
/// address (matched against the certificate's IP SANs) or a DNS name.
pub fn server_name(addr: &str) -> Option<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host() {
        assert_eq!(
            server_name("127.0.0.1:7878"),
            Some(ServerName::IpAddress(
                std::net::Ipv4Addr::new(127, 0, 0, 1).into()
            ))
        );
        assert_eq!(
            server_name("[::1]:7878"),
            Some(ServerName::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()))
        );
        assert_eq!(
            server_name("db.internal:7878"),
            Some(ServerName::try_from("db.internal").unwrap().to_owned())
        );
        assert_eq!(server_name("bad name:7878"), None);
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = client_config(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(&empty).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }
}
