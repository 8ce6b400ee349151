//! The simulators' HTTP/2 server: h2c connections, each request read whole and answered by a
//! [`Handler`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// Bodies larger than this are refused before a simulator looks at them.
const MAX_BODY: usize = 64 * 1024;

/// One simulator's answers.
#[async_trait::async_trait]
pub(super) trait Handler: Send + Sync + 'static {
    /// The answer to one request.
    async fn handle(&self, parts: Parts, body: Bytes) -> Response<Full<Bytes>>;
}

/// Accept h2c connections until the task is aborted; answer each request `latency` late.
pub(super) async fn accept_loop<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    latency: Duration,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        // Connections live in the set, so aborting the loop closes them too.
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move {
                    let response = answer(req, &*handler).await;
                    if !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_concurrent_streams(1000);
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn answer<H: Handler>(req: Request<Incoming>, handler: &H) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => handler.handle(parts, body.to_bytes()).await,
        Err(_) => json(StatusCode::PAYLOAD_TOO_LARGE, &serde_json::json!({})),
    }
}

/// A JSON answer.
pub(super) fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}
