//! How the APNs simulator answers a push: Apple's status, `{"reason": …}` body (with a
//! `timestamp` on 410), `Retry-After`, and an `apns-id` header.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// How the simulator answers one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Apple's `reason` (none for 200).
    pub reason: Option<String>,
    /// The 410 body's `timestamp` (ms since the epoch).
    pub timestamp: Option<u64>,
    /// A `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
    /// How long to wait before answering (a slow Apple), on top of the simulator's latency.
    pub delay: Duration,
}

impl Answer {
    /// 200, accepted.
    pub fn ok() -> Self {
        Answer {
            status: 200,
            reason: None,
            timestamp: None,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    /// An error status with Apple's reason, e.g. `Answer::error(503, "ServiceUnavailable")`.
    pub fn error(status: u16, reason: &str) -> Self {
        Answer {
            status,
            reason: Some(reason.to_string()),
            ..Answer::ok()
        }
    }

    /// 410 Unregistered, judged dead at `timestamp_ms`.
    pub fn unregistered(timestamp_ms: u64) -> Self {
        Answer {
            timestamp: Some(timestamp_ms),
            ..Answer::error(410, "Unregistered")
        }
    }

    /// This answer with a `Retry-After: <secs>` header.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// This answer, given only after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The response Apple sends: `apns-id` echoes the request's or is `fresh_id`.
    pub(super) fn respond(&self, request: &HeaderMap, fresh_id: u64) -> Response<Full<Bytes>> {
        let apns_id = request.get("apns-id").cloned().unwrap_or_else(|| {
            HeaderValue::try_from(format!("00000000-0000-4000-8000-{fresh_id:012X}"))
                .expect("an ASCII header value")
        });
        let body = match &self.reason {
            None => Bytes::new(),
            Some(reason) => {
                let mut json = serde_json::json!({ "reason": reason });
                if let Some(ts) = self.timestamp {
                    json["timestamp"] = ts.into();
                }
                Bytes::from(json.to_string())
            }
        };
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        resp.headers_mut().insert("apns-id", apns_id);
        if self.reason.is_some() {
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert("retry-after", secs.into());
        }
        resp
    }
}
