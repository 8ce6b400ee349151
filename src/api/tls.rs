//! HTTPS on the public listener (`api.tls_cert_file`, `api.tls_key_file`), for deployments
//! without a terminating proxy: rustls with the ring provider (the one the provider clients
//! use), TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// Why the certificate or its key cannot be used; names the key and the file.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {path}: {reason}")]
pub struct TlsConfigError {
    /// `api.tls_cert_file` or `api.tls_key_file`.
    pub key: &'static str,
    /// The configured path.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|e| TlsConfigError {
        key,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The acceptor for the certificate chain at `cert` and the private key at `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsConfigError> {
    let cert_err = |reason: String| TlsConfigError {
        key: "api.tls_cert_file",
        path: cert.display().to_string(),
        reason,
    };
    let key_err = |reason: String| TlsConfigError {
        key: "api.tls_key_file",
        path: key.display().to_string(),
        reason,
    };
    let pem = read("api.tls_cert_file", cert)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no PEM certificate in the file".into()));
    }
    let pem = read("api.tls_key_file", key)?;
    let private: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| key_err(e.to_string()))?
        .ok_or_else(|| key_err("no PEM private key in the file".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| key_err(format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn refused(cert: &str, key: &str) -> TlsConfigError {
        match acceptor(&fixture(cert), &fixture(key)) {
            Ok(_) => panic!("{cert} with {key} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_fixture_pair_loads_and_mismatches_name_the_key() {
        assert!(acceptor(&fixture("localhost.pem"), &fixture("localhost.key")).is_ok());
        let err = refused("localhost.pem", "apns_auth_key.p8");
        assert_eq!(err.key, "api.tls_key_file", "{err}");
        let err = refused("localhost.key", "localhost.key");
        assert_eq!(err.key, "api.tls_cert_file", "{err}");
        let err = refused("missing.pem", "localhost.key");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
