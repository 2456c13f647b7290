//! A throwaway PKI for TLS tests: a CA and a server certificate it
//! signed, made with rcgen, as PEM files in a temporary directory.

use std::path::PathBuf;

/// A CA and a server certificate it signed, as PEM files in a directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

/// A distinct name for each CA a test makes, so that a wrong CA is an
/// unknown issuer rather than a namesake with another key.
fn names(server_names: &[&str]) -> String {
    static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{made} for {}", server_names.join(","))
}

impl Pki {
    pub fn new(server_names: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("ordo test CA {}", names(server_names)),
        );
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let server_key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = server_names.iter().map(|name| name.to_string()).collect();
        let server_cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), server_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
        Pki { dir }
    }

    /// The CA certificate (PEM), for `--tls-ca`.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM), for `--tls-cert`.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key (PEM), for `--tls-key`.
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}
