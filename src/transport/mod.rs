//! A small pool of HTTP/2 connections to one origin, shared by the APNs and FCM clients.
//!
//! Apple and Google both multiplex many requests over one HTTP/2 connection, so a pool here is a
//! handful of long-lived connections (`connections` per credential), each carrying many
//! concurrent streams, picked round-robin. A connection is opened lazily, kept warm with HTTP/2
//! PING frames, and replaced when it closes (GOAWAY, a dropped socket, a failed PING). A request
//! that never reached a closed connection is retried once on a fresh one; anything else is
//! reported to the provider, which decides whether to retry.
//!
//! `https://` endpoints use TLS with ALPN `h2`, the system roots and an optional extra CA file;
//! `http://` endpoints speak HTTP/2 in clear text (h2c, prior knowledge), for test doubles and
//! local proxies.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

/// The largest response body read from a provider; their error bodies are a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How long opening a connection (TCP plus TLS plus HTTP/2 handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The endpoint is not an absolute `http://` or `https://` URL.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA file could not be read or holds no certificate.
    #[error("cannot load CA file {path}: {reason}")]
    CaFile {
        /// The configured path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Opening the connection failed (DNS, TCP, TLS or the HTTP/2 handshake).
    #[error("cannot connect to {authority}: {reason}")]
    Connect {
        /// host:port of the endpoint.
        authority: String,
        /// What went wrong.
        reason: String,
    },
    /// The request or its response did not complete in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed while the request was in flight.
    #[error("connection error: {0}")]
    Connection(#[source] hyper::Error),
    /// The response body was larger than callpush accepts from a provider.
    #[error("response body over {MAX_RESPONSE_BYTES} bytes")]
    BodyTooLarge,
}

impl TransportError {
    /// A short code for metric labels and `Failure::reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            TransportError::InvalidEndpoint { .. } | TransportError::CaFile { .. } => "config",
            TransportError::Connect { .. } => "connect",
            TransportError::Timeout(_) => "timeout",
            TransportError::Connection(_) => "connection",
            TransportError::BodyTooLarge => "body_too_large",
        }
    }
}

/// A provider's answer, read in full.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers (`apns-id`, `retry-after`, …).
    pub headers: HeaderMap,
    /// The response body.
    pub body: Bytes,
}

/// Settings of one pool.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// How many HTTP/2 connections to keep to the origin.
    pub connections: usize,
    /// How long one request may take, from sending to the last byte of the answer.
    pub request_timeout: Duration,
    /// The interval between keep-alive PINGs.
    pub keep_alive_interval: Duration,
    /// An extra root certificate (PEM) trusted for this origin, besides the system roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            connections: 2,
            request_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

/// One open connection of a slot, numbered so that a request that failed on it can tell
/// whether the slot still holds it or already a newer one.
#[derive(Clone)]
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    generation: u64,
}

/// Sends of one request: the first, one on a new connection after the old one closed, and
/// retries of streams the peer refused.
const MAX_SEND_ATTEMPTS: u32 = 4;

/// Whether the peer reset the request's stream with REFUSED_STREAM: it did not process the
/// request (RFC 9113 §8.7), so sending it again cannot push a device twice.
fn is_refused_stream(error: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = err.source();
    }
    false
}

/// One open connection of a slot (scheme, host, port).
///
/// Each slot holds at most one connection. A connection at its peer's
/// `SETTINGS_MAX_CONCURRENT_STREAMS` stays in its slot: hyper queues further requests on it
/// until a stream frees up, so a busy connection is shared, never replaced. A connection is
/// replaced only once it closed (GOAWAY, reset, keep-alive timeout), and a failed request
/// clears its slot only if the slot still holds the connection it failed on: when a dropped
/// connection fails a hundred requests at once, the first opens a new connection and the
/// other ninety-nine use it, rather than each throwing away the one before (a reconnect storm).
pub struct H2Pool {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    host: String,
    port: u16,
    tls: Option<TlsConnector>,
    options: PoolOptions,
    slots: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
    /// The generation the next connection gets.
    generations: AtomicU64,
    /// Connections currently open, for the `callpush_provider_connections` gauge.
    open: Arc<AtomicUsize>,
}

impl std::fmt::Debug for H2Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Pool")
            .field(
                "origin",
                &format_args!("{}://{}", self.scheme, self.authority),
            )
            .field("connections", &self.options.connections)
            .finish()
    }
}

impl H2Pool {
    /// A pool for the origin of `endpoint` (`https://host[:port]` or `http://host[:port]`; any
    /// path is ignored). Connections open on first use.
    pub fn new(endpoint: &str, options: PoolOptions) -> Result<Self, TransportError> {
        let invalid = |reason: &str| TransportError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = endpoint.parse().map_err(|_| invalid("not a URL"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| invalid("no scheme"))?;
        let authority = uri.authority().cloned().ok_or_else(|| invalid("no host"))?;
        let tls = if scheme == http::uri::Scheme::HTTPS {
            Some(tls_connector(options.ca_file.as_deref())?)
        } else if scheme == http::uri::Scheme::HTTP {
            None
        } else {
            return Err(invalid("scheme must be http or https"));
        };
        let host = authority.host().trim_matches(['[', ']']).to_string();
        let port = authority
            .port_u16()
            .unwrap_or(if tls.is_some() { 443 } else { 80 });
        let connections = options.connections.max(1);
        Ok(H2Pool {
            scheme,
            authority,
            host,
            port,
            tls,
            slots: (0..connections).map(|_| Mutex::new(None)).collect(),
            options,
            next: AtomicUsize::new(0),
            generations: AtomicU64::new(0),
            open: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// `scheme://authority` of this pool, to build absolute request URIs with.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// How many connections are open right now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Send `request` (whose URI is a path like `/3/device/abc` or an absolute URI on this
    /// origin) and read the whole answer, within the request timeout.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response, TransportError> {
        let timeout = self.options.request_timeout;
        match tokio::time::timeout(timeout, self.send_inner(request)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout(timeout)),
        }
    }

    async fn send_inner(&self, request: Request<Bytes>) -> Result<Response, TransportError> {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        parts.uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| TransportError::InvalidEndpoint {
                endpoint: self.origin(),
                reason: e.to_string(),
            })?;
        parts.version = http::Version::HTTP_2;
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        // Two failures are safe to try again at once, because the peer did not process the
        // request: a connection that closed under us (GOAWAY, reset) before the request was
        // sent — once, on a new connection — and a stream the peer refused (REFUSED_STREAM),
        // which a healthy connection does to requests sent before its
        // SETTINGS_MAX_CONCURRENT_STREAMS arrived (APNs starts new connections at 1 stream) —
        // on the same connection, which queues them now that it knows its limit.
        let mut reconnected = false;
        for attempt in 0..MAX_SEND_ATTEMPTS {
            let conn = self.sender(slot).await?;
            let mut sender = conn.sender.clone();
            let req = Request::from_parts(parts.clone(), Full::new(body.clone()));
            match sender.send_request(req).await {
                Ok(resp) => {
                    let (head, body) = resp.into_parts();
                    let body = Limited::new(body, MAX_RESPONSE_BYTES)
                        .collect()
                        .await
                        .map_err(|e| match e.downcast::<hyper::Error>() {
                            Ok(e) => TransportError::Connection(*e),
                            Err(_) => TransportError::BodyTooLarge,
                        })?
                        .to_bytes();
                    return Ok(Response {
                        status: head.status,
                        headers: head.headers,
                        body,
                    });
                }
                Err(e) if is_refused_stream(&e) && attempt + 1 < MAX_SEND_ATTEMPTS => continue,
                Err(e) => {
                    self.forget(slot, conn.generation).await;
                    if !reconnected
                        && attempt + 1 < MAX_SEND_ATTEMPTS
                        && (e.is_canceled() || e.is_closed())
                    {
                        reconnected = true;
                        continue;
                    }
                    return Err(TransportError::Connection(e));
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The connection of `slot`, opening one when there is none or it closed. Requests racing
    /// for an empty slot wait on its lock, so they all get the one connection the first opens.
    async fn sender(&self, slot: usize) -> Result<Conn, TransportError> {
        let mut guard = self.slots[slot].lock().await;
        if let Some(conn) = guard.as_ref() {
            if !conn.sender.is_closed() {
                return Ok(conn.clone());
            }
        }
        let sender = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| TransportError::Connect {
                authority: self.authority.to_string(),
                reason: format!("no connection within {CONNECT_TIMEOUT:?}"),
            })??;
        let conn = Conn {
            sender,
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
        };
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// A request on connection `generation` of `slot` failed: empty the slot if it still holds
    /// that connection, so the next request opens a new one. A newer connection someone else
    /// opened meanwhile is left alone.
    async fn forget(&self, slot: usize, generation: u64) {
        let mut guard = self.slots[slot].lock().await;
        if guard.as_ref().is_some_and(|c| c.generation == generation) {
            *guard = None;
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let connect_err = |reason: String| TransportError::Connect {
            authority: self.authority.to_string(),
            reason,
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(self.options.keep_alive_interval)
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(4 << 20);
        let open = self.open.clone();
        let sender = match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| connect_err(e.to_string()))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| connect_err(format!("TLS: {e}")))?;
                let (sender, conn) = builder
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| connect_err(format!("HTTP/2 handshake: {e}")))?;
                spawn_connection(conn, open);
                sender
            }
            None => {
                let (sender, conn) = builder
                    .handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| connect_err(format!("HTTP/2 handshake: {e}")))?;
                spawn_connection(conn, open);
                sender
            }
        };
        Ok(sender)
    }
}

/// Drive a connection until it closes, keeping the open-connection count.
fn spawn_connection<F>(conn: F, open: Arc<AtomicUsize>)
where
    F: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    open.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "provider connection closed");
        }
        open.fetch_sub(1, Ordering::Relaxed);
    });
}

fn tls_connector(ca_file: Option<&Path>) -> Result<TlsConnector, TransportError> {
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
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
