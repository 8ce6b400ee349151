//! One request as a provider double received it: the same type for the APNs and the FCM
//! double, so tallies, tests and assertions read both the same way.

use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

/// A request to a double, its body read in full (an aborted body reads as empty).
pub async fn read_request(req: Request<Incoming>) -> (Parts, Bytes) {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (parts, body)
}

/// One push request a double received, and what it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The device token the push was for: APNs' from the path, FCM's `message.token` (empty
    /// when the body had none).
    pub token: String,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The body, parsed (`Value::Null` when it was not JSON).
    pub body: Value,
    /// The body as sent.
    pub raw_body: Bytes,
    /// The `authorization: Bearer …` credential: APNs' provider token (a JWT), FCM's OAuth
    /// access token.
    pub bearer: Option<String>,
    /// When it arrived (before any scripted delay).
    pub received_at: Instant,
    /// The HTTP status the double answered.
    pub status: u16,
}

impl Recorded {
    /// A request for `token` with these headers and body, answered with `status`.
    pub fn new(
        token: String,
        headers: &HeaderMap,
        raw_body: Bytes,
        received_at: Instant,
        status: u16,
    ) -> Recorded {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credential)| credential.trim().to_string());
        Recorded {
            token,
            headers: headers.clone(),
            body: serde_json::from_slice(&raw_body).unwrap_or(Value::Null),
            raw_body,
            bearer,
            received_at,
            status,
        }
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
