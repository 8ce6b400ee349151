//! The double's HTTP/2 server: accepting (h2c or TLS), serving connections until GOAWAY or
//! abort, and answering each request from the checks and the script.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_rustls::rustls;

use super::{checks, fixture, Answer, Recorded};
use crate::support::recorded::read_request;

/// What the test scripted, and what the double received.
#[derive(Default)]
pub(super) struct Script {
    pub(super) per_token: HashMap<String, VecDeque<Answer>>,
    pub(super) unregistered: HashMap<String, u64>,
    pub(super) default: Option<Answer>,
    pub(super) expire_before: u64,
    pub(super) requests: Vec<Recorded>,
}

/// Everything the connections of one double share.
pub(super) struct State {
    pub(super) checker: checks::Checker,
    pub(super) script: Mutex<Script>,
    pub(super) count: watch::Sender<usize>,
    pub(super) goaway: watch::Sender<u64>,
    pub(super) connections: Mutex<Vec<AbortHandle>>,
    pub(super) accepted: AtomicUsize,
    pub(super) ids: AtomicU64,
    /// The `SETTINGS_MAX_CONCURRENT_STREAMS` each connection advertises (Apple: 1000).
    pub(super) max_streams: u32,
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        state.accepted.fetch_add(1, Ordering::SeqCst);
        let conn_state = state.clone();
        let tls = tls.clone();
        let task = tokio::spawn(async move {
            match tls {
                // A client that does not trust the test CA fails the handshake: nothing to serve.
                Some(tls) => {
                    if let Ok(stream) = tls.accept(tcp).await {
                        serve(TokioIo::new(stream), conn_state).await
                    }
                }
                None => serve(TokioIo::new(tcp), conn_state).await,
            }
        });
        let mut conns = state.connections.lock().unwrap();
        conns.retain(|c| !c.is_finished());
        conns.push(task.abort_handle());
    }
}

async fn serve<I>(io: I, state: Arc<State>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut goaway = state.goaway.subscribe();
    let service_state = state.clone();
    let service = service_fn(move |req| {
        let state = service_state.clone();
        async move { Ok::<_, Infallible>(handle(req, &state).await) }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(state.max_streams);
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

async fn handle(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let received_at = Instant::now();
    let (parts, body) = read_request(req).await;
    let path = parts.uri.path();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let token = checks::device_token(path).unwrap_or("").to_string();
    let answer = {
        let mut script = state.script.lock().unwrap();
        let checked = state.checker.check(
            &parts.method,
            path,
            &parts.headers,
            &body,
            now_ms / 1000,
            script.expire_before,
        );
        let answer = match checked {
            Err((status, reason)) => Answer::error(status, reason),
            Ok(()) => {
                let scripted = script.per_token.get_mut(&token).and_then(|q| q.pop_front());
                scripted
                    .or_else(|| {
                        script
                            .unregistered
                            .get(&token)
                            .map(|t| Answer::unregistered(*t))
                    })
                    .or_else(|| script.default.clone())
                    .unwrap_or_else(Answer::ok)
            }
        };
        script.requests.push(Recorded::new(
            token,
            &parts.headers,
            body,
            received_at,
            answer.status,
        ));
        answer
    };
    state.count.send_modify(|c| *c += 1);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    respond(&answer, &parts.headers, state)
}

fn respond(answer: &Answer, request: &HeaderMap, state: &State) -> Response<Full<Bytes>> {
    // Apple echoes the client's apns-id, or makes one up.
    let apns_id = request.get("apns-id").cloned().unwrap_or_else(|| {
        let n = state.ids.fetch_add(1, Ordering::Relaxed);
        HeaderValue::try_from(format!("00000000-0000-4000-8000-{n:012X}")).unwrap()
    });
    let body = match &answer.reason {
        None => Bytes::new(),
        Some(reason) => {
            let mut json = serde_json::json!({ "reason": reason });
            if let Some(ts) = answer.timestamp {
                json["timestamp"] = ts.into();
            }
            Bytes::from(json.to_string())
        }
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap();
    resp.headers_mut().insert("apns-id", apns_id);
    if answer.reason.is_some() {
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
    }
    if let Some(secs) = answer.retry_after {
        resp.headers_mut().insert("retry-after", secs.into());
    }
    resp
}

pub(super) fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let cert_pem = std::fs::read(fixture("localhost.pem")).unwrap();
    let key_pem = std::fs::read(fixture("localhost.key")).unwrap();
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .unwrap()
        .expect("a private key in localhost.key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
