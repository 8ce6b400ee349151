//! Opening one provider connection and keeping it: TCP with `TCP_NODELAY`, TLS with ALPN `h2`
//! for `https://`, the HTTP/2 handshake, then one task per connection that drives it and sends
//! keep-alive PINGs, closing it when a PONG does not come back.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use h2::{Ping, PingPong};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

use super::{H2Pool, TransportError};

/// How long a keep-alive PING may wait for its PONG before the connection counts as dead.
const PONG_TIMEOUT: Duration = Duration::from_secs(10);

impl H2Pool {
    /// Open a connection to the pool's origin and spawn its task. Returns the handle to send
    /// requests on and the flag the task sets when the connection ends.
    pub(super) async fn connect(
        &self,
    ) -> Result<(SendRequest<Bytes>, Arc<AtomicBool>), TransportError> {
        let connect_err = |reason: String| TransportError::Connect {
            authority: self.authority.to_string(),
            reason,
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let interval = self.options.keep_alive_interval;
        let open = self.open.clone();
        match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| connect_err(e.to_string()))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| connect_err(format!("TLS: {e}")))?;
                let (sender, conn) = builder()
                    .handshake(stream)
                    .await
                    .map_err(|e| connect_err(format!("HTTP/2 handshake: {e}")))?;
                Ok((sender, spawn_connection(conn, interval, open)))
            }
            None => {
                let (sender, conn) = builder()
                    .handshake(tcp)
                    .await
                    .map_err(|e| connect_err(format!("HTTP/2 handshake: {e}")))?;
                Ok((sender, spawn_connection(conn, interval, open)))
            }
        }
    }
}

/// The HTTP/2 settings of a provider connection: windows large enough that answers never wait
/// for a WINDOW_UPDATE, no server push, and at most 100 streams until the peer's SETTINGS say
/// how many it takes (hyper's client defaults, which the pool used before).
fn builder() -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .initial_max_send_streams(100)
        .max_header_list_size(16 << 10)
        .max_send_buffer_size(1 << 20)
        .enable_push(false);
    builder
}

/// Drive `conn` on its own task until it closes, or until a keep-alive PING sent every
/// `interval` (idle or not) goes unanswered for [`PONG_TIMEOUT`]. Counts the connection in
/// `open` while it lives; the returned flag is set once it ended.
fn spawn_connection<T>(
    mut conn: Connection<T, Bytes>,
    interval: Duration,
    open: Arc<AtomicUsize>,
) -> Arc<AtomicBool>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ping_pong = conn
        .ping_pong()
        .expect("a new connection's PingPong is not taken yet");
    let closed = Arc::new(AtomicBool::new(false));
    let ended = closed.clone();
    open.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        tokio::select! {
            result = conn => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "provider connection closed");
                }
            }
            () = keep_alive(ping_pong, interval) => {
                tracing::debug!("no PONG within {PONG_TIMEOUT:?}; closing the provider connection");
            }
        }
        ended.store(true, Ordering::Release);
        open.fetch_sub(1, Ordering::Relaxed);
    });
    closed
}

/// PING every `interval`; returns when a PONG is late. A PING that fails means the connection
/// is ending anyway, which its own future reports.
async fn keep_alive(mut ping_pong: PingPong, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(PONG_TIMEOUT, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(_)) => std::future::pending().await,
            Err(_) => return,
        }
    }
}

/// The TLS client of an `https://` pool: the system roots plus `ca_file`, ALPN `h2`.
pub(super) fn tls_connector(ca_file: Option<&Path>) -> Result<TlsConnector, TransportError> {
    tls_connector_for(ca_file, b"h2")
}

/// [`tls_connector`] offering `alpn` (`h2`, or `http/1.1` for the binding feed's webhook).
pub(super) fn tls_connector_for(
    ca_file: Option<&Path>,
    alpn: &[u8],
) -> Result<TlsConnector, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let ca_err = |reason: String| TransportError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| ca_err(e.to_string()))?;
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_err("no PEM certificate in the file".to_string()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::CaFile {
            path: String::new(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
