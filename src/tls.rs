//! TLS for `ordo serve`'s client port (and for anything else in ordo that
//! accepts TLS): the rustls server configuration from a PEM certificate
//! chain and a PEM private key, on the same `ring` provider the client
//! uses.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ordo_client::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A server configuration presenting the certificate chain in `cert`
/// (PEM, leaf first) with the private key in `key` (PEM: PKCS#8, PKCS#1
/// or SEC1). Clients are not asked for certificates: they authenticate
/// with the client token, which TLS then keeps off the wire.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certificates| certificates.collect())
        .with_context(|| {
            format!(
                "reading the TLS certificate chain in {} (--tls-cert)",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        anyhow::bail!(
            "{} holds no PEM certificate (--tls-cert wants the server's certificate chain, leaf first)",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "reading the TLS private key in {} (--tls-key wants a PEM PKCS#8, PKCS#1 or SEC1 key)",
            key.display()
        )
    })?;
    let config = rustls::ServerConfig::builder_with_provider(ordo_client::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "the TLS key in --tls-key does not fit the certificate in {}",
                cert.display()
            )
        })?;
    Ok(Arc::new(config))
}
