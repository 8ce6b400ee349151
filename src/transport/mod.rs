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
//!
//! Requests go straight to `h2`'s client: `exchange.rs` sends one attempt and says what its
//! failure means, `connect.rs` opens connections and runs the task that drives each one.

mod connect;
mod exchange;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::uri::{self, PathAndQuery};
use http::{HeaderMap, Request, StatusCode, Uri};
use tokio_rustls::TlsConnector;

use exchange::{decide, exchange, read_body, Failed, Next};

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
    Connection(#[source] h2::Error),
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
    sender: SendRequest<Bytes>,
    generation: u64,
    /// Set by the connection's task once the connection ended.
    closed: Arc<AtomicBool>,
}

/// Sends of one request: the first, one on a new connection after the old one closed, and
/// retries of streams the peer refused.
const MAX_SEND_ATTEMPTS: u32 = 4;

/// One connection place of the pool: the connection it holds, read without waiting on every
/// request, and the lock whoever opens a new one holds, so requests racing for an empty slot
/// open one connection, not one each.
#[derive(Default)]
struct Slot {
    conn: std::sync::Mutex<Option<Conn>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    /// The slot's connection, unless it has none or it closed.
    fn open(&self) -> Option<Conn> {
        let conn = self.conn.lock().expect("slot lock");
        conn.as_ref()
            .filter(|c| !c.closed.load(Ordering::Acquire))
            .cloned()
    }
}

/// A pool of connections to one origin (scheme, host, port).
///
/// Each slot holds at most one connection. A connection at its peer's
/// `SETTINGS_MAX_CONCURRENT_STREAMS` stays in its slot: h2 queues further requests on it
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
    slots: Vec<Slot>,
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

/// A TLS connector for HTTP/1.1 (ALPN `http/1.1`) with the system roots and an optional extra
/// CA file: for webhooks of app backends, which may not speak HTTP/2.
pub fn http1_tls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<TlsConnector, TransportError> {
    connect::tls_connector_for(ca_file, b"http/1.1")
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
            Some(connect::tls_connector(options.ca_file.as_deref())?)
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
            slots: (0..connections).map(|_| Slot::default()).collect(),
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
    /// origin) and read the whole answer, within the request timeout. A copy of `request` is
    /// kept for an attempt after the first; pushes use
    /// [`send_rebuilding`](Self::send_rebuilding), which keeps none.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response, TransportError> {
        let copy = request.clone();
        self.send_rebuilding(request, || Some(copy.clone())).await
    }

    /// [`send`](Self::send) without a copy of `request`: the first attempt hands the request
    /// to h2 whole, and only an attempt after a failure that left it unprocessed (see
    /// [`decide`]) calls `again` for a new one — `None` gives up with that failure. Most pushes
    /// take one attempt, so most never build a second request.
    pub async fn send_rebuilding(
        &self,
        request: Request<Bytes>,
        again: impl Fn() -> Option<Request<Bytes>> + Sync,
    ) -> Result<Response, TransportError> {
        let timeout = self.options.request_timeout;
        match tokio::time::timeout(timeout, self.send_inner(request, &again)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout(timeout)),
        }
    }

    async fn send_inner(
        &self,
        request: Request<Bytes>,
        again: &(dyn Fn() -> Option<Request<Bytes>> + Sync),
    ) -> Result<Response, TransportError> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut request = Some(request);
        let mut reconnected = false;
        for attempt in 0..MAX_SEND_ATTEMPTS {
            let attempts_left = attempt + 1 < MAX_SEND_ATTEMPTS;
            let conn = self.sender(slot).await?;
            let (head, body) = self.on_origin(request.take().expect("a request per attempt"))?;
            let failure = match exchange(conn.sender.clone(), head, body).await {
                Ok(response) => {
                    let (head, body) = response.into_parts();
                    return Ok(Response {
                        status: head.status,
                        headers: head.headers,
                        body: read_body(body).await?,
                    });
                }
                Err(failure) => failure,
            };
            if failure.error.is_go_away() || failure.error.is_io() {
                self.forget(slot, conn.generation);
            }
            let next = decide(
                Failed::of(&failure.error, failure.sent),
                attempts_left,
                reconnected,
            );
            request = match next {
                Next::GiveUp => None,
                Next::SameConnection | Next::NewConnection => again(),
            };
            if request.is_none() {
                return Err(TransportError::Connection(failure.error));
            }
            reconnected |= next == Next::NewConnection;
        }
        unreachable!("the last attempt returns")
    }

    /// The head h2 sends for `request` (its URI made absolute on this pool's origin), and its
    /// body.
    fn on_origin(&self, request: Request<Bytes>) -> Result<(Request<()>, Bytes), TransportError> {
        let (mut parts, body) = request.into_parts();
        let mut target = uri::Parts::default();
        target.scheme = Some(self.scheme.clone());
        target.authority = Some(self.authority.clone());
        target.path_and_query = Some(
            std::mem::take(&mut parts.uri)
                .into_parts()
                .path_and_query
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        parts.uri = Uri::from_parts(target).map_err(|e| TransportError::InvalidEndpoint {
            endpoint: self.origin(),
            reason: e.to_string(),
        })?;
        Ok((Request::from_parts(parts, ()), body))
    }

    /// The connection of `slot`, opening one when there is none or it closed. Requests racing
    /// for an empty slot wait on its connect lock, so they all get the one connection the first
    /// opens.
    async fn sender(&self, slot: usize) -> Result<Conn, TransportError> {
        let slot = &self.slots[slot];
        if let Some(conn) = slot.open() {
            return Ok(conn);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(conn) = slot.open() {
            return Ok(conn);
        }
        // Boxed: the connect future is ~3 KB, and inline it would make every request's future
        // that much larger (moved and copied on every push) for a path a request rarely takes.
        let connect = Box::pin(tokio::time::timeout(CONNECT_TIMEOUT, self.connect()));
        let (sender, closed) = connect.await.map_err(|_| TransportError::Connect {
            authority: self.authority.to_string(),
            reason: format!("no connection within {CONNECT_TIMEOUT:?}"),
        })??;
        let conn = Conn {
            sender,
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
            closed,
        };
        *slot.conn.lock().expect("slot lock") = Some(conn.clone());
        Ok(conn)
    }

    /// A request on connection `generation` of `slot` failed: empty the slot if it still holds
    /// that connection, so the next request opens a new one. A newer connection someone else
    /// opened meanwhile is left alone.
    fn forget(&self, slot: usize, generation: u64) {
        let mut conn = self.slots[slot].conn.lock().expect("slot lock");
        if conn.as_ref().is_some_and(|c| c.generation == generation) {
            *conn = None;
        }
    }
}
