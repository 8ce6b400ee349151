//! HTTPS on the public listener (`api.tls_cert_file`, `api.tls_key_file`), for deployments
//! without a terminating proxy: rustls with the ring provider (the one the provider clients
//! use), TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.
//!
//! The certificate is reloadable ([`ServedCert`]): the acceptor asks it for the certificate at
//! every handshake, and a reload (`crate::reload`) reads the files again — certbot and
//! cert-manager renew them in place, same paths, new contents — and swaps in the new pair.
//! New handshakes get the new certificate; connections already open keep the one they
//! started with. A pair that cannot be used (unreadable, not PEM, a key that does not fit the
//! certificate) is refused before anything is swapped, naming the key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
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

/// The certificate chain at `cert` with the private key at `key`, checked to fit each other.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsConfigError> {
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
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| key_err(format!("not a usable private key: {e}")))?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) => Ok(pair),
        // The key cannot tell its public half: the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(pair),
        Err(rustls::Error::InconsistentKeys(_)) => Err(key_err(format!(
            "does not fit the certificate in {}",
            cert.display()
        ))),
        Err(e) => Err(cert_err(e.to_string())),
    }
}

/// The certificate the public listener presents, swapped by a reload.
#[derive(Debug)]
pub struct ServedCert {
    current: RwLock<(Arc<CertifiedKey>, PathBuf, PathBuf)>,
}

impl ServedCert {
    /// The pair at `cert` and `key`, checked.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServedCert>, TlsConfigError> {
        let pair = Arc::new(load(cert, key)?);
        Ok(Arc::new(ServedCert {
            current: RwLock::new((pair, cert.to_path_buf(), key.to_path_buf())),
        }))
    }

    /// Present the pair at `cert` and `key` to new handshakes from now on; a pair that cannot
    /// be used is refused and the current one stays. True when the pair differs from the one
    /// presented until now (new paths or new contents).
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<bool, TlsConfigError> {
        Ok(self.install(load(cert, key)?, cert, key))
    }

    /// Present `pair` (read by [`load`] from `cert` and `key`) to new handshakes from now on;
    /// true when it differs from the one presented until now.
    pub fn install(&self, pair: CertifiedKey, cert: &Path, key: &Path) -> bool {
        let pair = Arc::new(pair);
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let changed = current.0.cert != pair.cert || current.1 != cert || current.2 != key;
        *current = (pair, cert.to_path_buf(), key.to_path_buf());
        changed
    }

    /// The acceptor of the public listener: it asks this for the certificate at every handshake.
    pub fn acceptor(self: &Arc<Self>) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }
}

impl ResolvesServerCert for ServedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .clone(),
        )
    }
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
        match load(&fixture(cert), &fixture(key)) {
            Ok(_) => panic!("{cert} with {key} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_fixture_pairs_load_and_mismatches_name_the_key() {
        assert!(load(&fixture("localhost.pem"), &fixture("localhost.key")).is_ok());
        assert!(load(&fixture("renewed.pem"), &fixture("renewed.key")).is_ok());
        let err = refused("localhost.pem", "apns_auth_key.p8");
        assert_eq!(err.key, "api.tls_key_file", "{err}");
        let err = refused("localhost.pem", "renewed.key");
        assert_eq!(err.key, "api.tls_key_file", "{err}");
        assert!(err.reason.contains("does not fit"), "{err}");
        let err = refused("localhost.key", "localhost.key");
        assert_eq!(err.key, "api.tls_cert_file", "{err}");
        let err = refused("missing.pem", "localhost.key");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }

    #[test]
    fn a_reload_swaps_the_pair_and_a_bad_one_keeps_the_old() {
        let served =
            ServedCert::load(&fixture("localhost.pem"), &fixture("localhost.key")).unwrap();
        let first = served.current.read().unwrap().0.cert.clone();
        assert!(!served
            .reload(&fixture("localhost.pem"), &fixture("localhost.key"))
            .unwrap());
        assert!(served
            .reload(&fixture("renewed.pem"), &fixture("renewed.key"))
            .unwrap());
        assert_ne!(served.current.read().unwrap().0.cert, first);
        let kept = served.current.read().unwrap().0.cert.clone();
        assert!(served
            .reload(&fixture("localhost.pem"), &fixture("renewed.key"))
            .is_err());
        assert_eq!(served.current.read().unwrap().0.cert, kept);
    }
}
