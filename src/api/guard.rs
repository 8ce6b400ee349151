//! The per-request limits of one listener (`[api.limits]`, `[admin.limits]`), as one middleware
//! in front of every route: header bytes (431), requests handled at once (503), the time the
//! body may take to arrive (408) and the time the handler may take (503). The connection-level
//! limits (connections, header read time, HTTP/2 streams) are in [`super::server`].
//!
//! The body is read here, in full and within [`BODY_LIMIT_BYTES`], before the handler runs: a
//! client that trickles its body is answered 408 and its connection closed, and the handler
//! time limit counts callpush's own work only.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::BODY_LIMIT_BYTES;
use crate::config::ListenerLimits;

/// One listener's request limits and the count of requests it is handling.
#[derive(Debug)]
pub(crate) struct Guard {
    max_header_bytes: usize,
    body_read_timeout: Duration,
    request_timeout: Duration,
    handling: Arc<Semaphore>,
}

impl Guard {
    /// The guard of a listener with `limits`.
    pub(crate) fn new(limits: &ListenerLimits) -> Arc<Guard> {
        Arc::new(Guard {
            max_header_bytes: limits.max_header_bytes,
            body_read_timeout: Duration::from_millis(limits.body_read_timeout_ms),
            request_timeout: Duration::from_millis(limits.request_timeout_ms),
            handling: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
        })
    }
}

/// The bytes of a request's header names and values.
fn header_bytes(request: &Request) -> usize {
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

/// Read the whole body within the limit and the time allowed.
async fn read_body(guard: &Guard, body: Body) -> Result<Body, ApiError> {
    let limited = Limited::new(body, BODY_LIMIT_BYTES).collect();
    match tokio::time::timeout(guard.body_read_timeout, limited).await {
        Err(_) => Err(ApiError::BodyTimeout(guard.body_read_timeout)),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge {
                limit: BODY_LIMIT_BYTES,
            })
        }
        Ok(Err(_)) => Err(ApiError::InvalidRequest(
            "the request body could not be read".into(),
        )),
        Ok(Ok(collected)) => Ok(Body::from(collected.to_bytes())),
    }
}

/// The middleware: check, in order, header bytes, room for one more request, the body, then
/// run the handler within its time.
pub(crate) async fn guard(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    if header_bytes(&request) > guard.max_header_bytes {
        return ApiError::HeadersTooLarge {
            limit: guard.max_header_bytes,
        }
        .into_response();
    }
    let Ok(_handling) = guard.handling.clone().try_acquire_owned() else {
        return ApiError::Busy.into_response();
    };
    let (parts, body) = request.into_parts();
    let body = match read_body(&guard, body).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let request = Request::from_parts(parts, body);
    match tokio::time::timeout(guard.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(guard.request_timeout).into_response(),
    }
}
