//! The accept loop of one listener: HTTP/1.1 and HTTP/2 (h2c, or ALPN over TLS) on hyper, with
//! the connection-level limits of `[api.limits]` / `[admin.limits]`:
//!
//! - at most `max_connections` open: one more is answered `503` in the SPEC §3 JSON shape (on a
//!   plain listener; over TLS it is closed) and counted in
//!   `callpush_http_connections_refused_total`, rather than left waiting in the kernel's queue;
//! - `header_read_timeout_ms` for a TLS handshake, for a plain connection's first bytes, and
//!   for an HTTP/1.1 request's headers, which also closes a connection idle that long between
//!   requests (an HTTP/2 connection, once it sent its preface, may stay idle: it holds one of
//!   `max_connections`);
//! - request heads larger than `max_header_bytes` plus 8 KiB (the request line) are refused by
//!   hyper itself (`431`, HTTP/2: `431` and a stream reset); smaller ones over the limit get
//!   the JSON `431` of [`super::guard`];
//! - `max_requests_per_connection` concurrent streams per HTTP/2 connection.
//!
//! On shutdown the loop stops accepting, closes connections that have not sent a request yet,
//! asks every other connection to finish its requests in flight and close, and returns once all
//! are closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::config::ListenerLimits;
use crate::metrics::Metrics;

/// Room for the request line and URI on top of `max_header_bytes` in hyper's read buffer.
const REQUEST_LINE_ROOM: usize = 8 * 1024;
/// Refused connections being answered at once; past it, they are closed without an answer.
const REFUSALS_AT_ONCE: usize = 64;
/// How long a refused connection is given to read its 503 before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// One listener and what it serves.
pub(crate) struct Listener {
    /// `public` or `admin`, for logs and metrics.
    pub name: &'static str,
    /// The bound socket.
    pub socket: TcpListener,
    /// The routes.
    pub router: Router,
    /// Its limits.
    pub limits: ListenerLimits,
    /// Its TLS, when it serves HTTPS.
    pub tls: Option<TlsAcceptor>,
}

fn builder(limits: &ListenerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .max_buf_size((limits.max_header_bytes + REQUEST_LINE_ROOM).max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_requests_per_connection)
        .max_header_list_size(
            u32::try_from(limits.max_header_bytes + REQUEST_LINE_ROOM).unwrap_or(u32::MAX),
        );
    builder
}

/// Accept and serve connections until `shutdown`, then drain them.
pub(crate) async fn run(listener: Listener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let builder = builder(&listener.limits);
    let builders = Arc::new(Builders {
        h1: builder.clone().http1_only(),
        h2: builder.clone().http2_only(),
        auto: builder,
    });
    let open = Arc::new(Semaphore::new(listener.limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let handshake = Duration::from_millis(listener.limits.header_read_timeout_ms);
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a moment rather than spin.
                    warn!(listener = listener.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics.http_connection_refused(listener.name);
            debug!(
                listener = listener.name,
                "connection refused: max_connections reached"
            );
            if listener.tls.is_none() {
                if let Ok(slot) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(stream).await;
                        drop(slot);
                    });
                }
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            peer,
            router: listener.router.clone(),
            shutdown: shutdown.clone(),
        };
        let tls = listener.tls.clone();
        let builders = builders.clone();
        connections.spawn(async move {
            let stop = connection.shutdown.clone();
            match tls {
                // Telling HTTP/1.1 from h2c needs the first bytes: wait for them no longer
                // than for headers, so a silent client does not hold its place for ever.
                None => {
                    let first = before(&stop, handshake, stream.peek(&mut [0u8; 1])).await;
                    match first {
                        Some(Ok(n)) if n > 0 => connection.serve(&builders.auto, stream).await,
                        _ => debug!(%peer, "connection closed before its first request"),
                    }
                }
                Some(acceptor) => match before(&stop, handshake, acceptor.accept(stream)).await {
                    Some(Ok(stream)) => {
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        let builder = if h2 { &builders.h2 } else { &builders.h1 };
                        connection.serve(builder, stream).await
                    }
                    Some(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    None => debug!(%peer, "no TLS handshake in time"),
                },
            }
            drop(permit);
        });
    }
    connections.close();
    connections.wait().await;
}

/// `step`'s result, or `None` when it took longer than `limit` or the daemon is stopping (a
/// connection that has not sent a request yet has nothing to finish).
async fn before<T>(
    stop: &CancellationToken,
    limit: Duration,
    step: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        _ = stop.cancelled() => None,
        done = tokio::time::timeout(limit, step) => done.ok(),
    }
}

/// The connection builders of one listener: telling HTTP/1.1 from h2c by the first bytes, and,
/// over TLS, the protocol ALPN chose.
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

/// One accepted connection.
struct Connection {
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
}

impl Connection {
    async fn serve<I>(self, builder: &auto::Builder<TokioExecutor>, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            router,
            shutdown,
        } = self;
        let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let served = tokio::select! {
            served = connection.as_mut() => served,
            _ = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = served {
            debug!(%peer, error = %e, "connection closed with an error");
        }
    }
}

/// The answer a plain-HTTP connection over the limit gets before it is closed.
fn refusal() -> String {
    let body = serde_json::json!({"error": {
        "code": "unavailable",
        "message": "the server has too many open connections; retry shortly",
    }})
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Answer 503 and close; whatever the client sent is read and dropped for a moment first, so
/// the close does not reset the connection before the client read the answer.
async fn refuse(mut stream: TcpStream) {
    let _ = stream.write_all(refusal().as_bytes()).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
