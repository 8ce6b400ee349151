//! The simulators' HTTP/2 server: h2c, or TLS with ALPN `h2` from a certificate the caller
//! gives; each connection tracked so a simulator can send GOAWAY on all of them or drop them
//! at once; each request read whole and answered by a [`Handler`]; the pushes it recorded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_rustls::rustls;

use super::record::{Recorded, Recorder};
use super::SimError;

/// Bodies larger than this are refused (413) before a simulator looks at them.
const MAX_BODY: usize = 1024 * 1024;

/// A server certificate chain and its key, both PEM, for a TLS simulator (ALPN `h2`).
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    /// The certificate chain, leaf first.
    pub cert_pem: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
}

/// One simulator's answers.
#[async_trait::async_trait]
pub(super) trait Handler: Send + Sync + 'static {
    /// The answer to one request.
    async fn handle(&self, parts: Parts, body: Bytes) -> Response<Full<Bytes>>;
}

/// What the connections of one server share.
struct Connections {
    open: Mutex<Vec<AbortHandle>>,
    accepted: AtomicUsize,
    goaway: watch::Sender<u64>,
    max_streams: u32,
}

/// What every simulator is on the wire: a listening server, its connections and the pushes
/// it recorded. [`ApnsSim`](super::ApnsSim) and [`FcmSim`](super::FcmSim) dereference to it.
/// It stops, with all its connections, when dropped.
pub struct SimServer {
    addr: SocketAddr,
    tls: bool,
    connections: Arc<Connections>,
    recorder: Arc<Recorder>,
    accept: AbortHandle,
}

impl std::fmt::Debug for SimServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimServer")
            .field("url", &self.url())
            .finish()
    }
}

impl SimServer {
    /// Listen on 127.0.0.1, port 0, and serve `handler`, which records into `recorder`.
    pub(super) async fn start<H: Handler>(
        handler: Arc<H>,
        recorder: Arc<Recorder>,
        tls: Option<&TlsIdentity>,
        max_streams: u32,
    ) -> Result<SimServer, SimError> {
        let acceptor = tls.map(acceptor).transpose()?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(SimError::Bind)?;
        let addr = listener.local_addr().map_err(SimError::Bind)?;
        let connections = Arc::new(Connections {
            open: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            goaway: watch::channel(0).0,
            max_streams,
        });
        let tls = acceptor.is_some();
        let accept = tokio::spawn(accept_loop(
            listener,
            acceptor,
            connections.clone(),
            handler,
        ));
        Ok(SimServer {
            addr,
            tls,
            connections,
            recorder,
            accept: accept.abort_handle(),
        })
    }

    /// `http://127.0.0.1:<port>`, or `https://…` with TLS: the credential's endpoint.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Send GOAWAY on every open connection (in-flight streams finish; new ones must use a new
    /// connection), as Apple does when it rotates servers.
    pub fn goaway_all(&self) {
        self.connections.goaway.send_modify(|g| *g += 1);
    }

    /// Drop every open connection at once, without GOAWAY (a network failure).
    pub fn kill_connections(&self) {
        for conn in self.connections.open.lock().expect("sim lock").drain(..) {
            conn.abort();
        }
    }

    /// How many connections were accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.connections.accepted.load(Ordering::SeqCst)
    }

    /// Every push recorded so far, in order. APNs records a push on arrival; FCM once
    /// answered (after any delay).
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorder.requests()
    }

    /// How many pushes were recorded so far.
    pub fn count(&self) -> usize {
        self.recorder.count()
    }

    /// Wait until at least `n` pushes were recorded; false when `timeout` passed first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        self.recorder.wait_for(n, timeout).await
    }

    /// How many pushes arrived, including those still waiting out a delay.
    pub fn received(&self) -> usize {
        self.recorder.arrived()
    }

    /// Wait until at least `n` pushes arrived, answered or not; false when `timeout` passed
    /// first.
    pub async fn wait_for_received(&self, n: usize, timeout: Duration) -> bool {
        self.recorder.wait_for_arrived(n, timeout).await
    }

    /// The distinct bearer credentials seen (APNs provider tokens, FCM access tokens), in
    /// order of first use.
    pub fn distinct_bearers(&self) -> Vec<String> {
        self.recorder.distinct_bearers()
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.accept.abort();
        self.kill_connections();
    }
}

async fn accept_loop<H: Handler>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    connections: Arc<Connections>,
    handler: Arc<H>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        connections.accepted.fetch_add(1, Ordering::SeqCst);
        // Answer at once, as Apple's and Google's servers do: with Nagle's algorithm on, an
        // answer written in two parts waits for the client's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let (shared, handler, tls) = (connections.clone(), handler.clone(), tls.clone());
        let task = tokio::spawn(async move {
            match tls {
                // A client that does not trust the certificate fails the handshake.
                Some(tls) => {
                    if let Ok(stream) = tls.accept(tcp).await {
                        serve(TokioIo::new(stream), &shared, handler).await
                    }
                }
                None => serve(TokioIo::new(tcp), &shared, handler).await,
            }
        });
        let mut open = connections.open.lock().expect("sim lock");
        open.retain(|c| !c.is_finished());
        open.push(task.abort_handle());
    }
}

/// Serve one connection until it closes; a GOAWAY request shuts it down gracefully (streams
/// in flight finish, new ones go to a new connection).
async fn serve<I, H>(io: I, connections: &Connections, handler: Arc<H>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Handler,
{
    let mut goaway = connections.goaway.subscribe();
    let service = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(answer(req, &*handler).await) }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(connections.max_streams);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = goaway.changed() => {
                if changed.is_err() { return; }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn answer<H: Handler>(req: Request<Incoming>, handler: &H) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => handler.handle(parts, body.to_bytes()).await,
        Err(_) => json(StatusCode::PAYLOAD_TOO_LARGE, &serde_json::json!({}), None),
    }
}

/// A JSON answer, with a `Retry-After` when given.
pub(super) fn json(
    status: StatusCode,
    body: &serde_json::Value,
    retry_after: Option<u64>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    if let Some(secs) = retry_after {
        response.headers_mut().insert("retry-after", secs.into());
    }
    response
}

fn acceptor(identity: &TlsIdentity) -> Result<tokio_rustls::TlsAcceptor, SimError> {
    let certs = rustls_pemfile::certs(&mut identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SimError::Tls(e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut identity.key_pem.as_bytes())
        .map_err(|e| SimError::Tls(e.to_string()))?
        .ok_or_else(|| SimError::Tls("no private key in the key PEM".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| SimError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
