//! The one error type of the HTTP API and its wire form (SPEC §3):
//! `{"error": {"code": "snake_case_code", "message": "human sentence"}}` with the fitting status.
//!
//! Client mistakes (4xx) are the client's business: logged at debug level only. Server faults
//! (5xx) are logged once, here, with their cause, and answered with an opaque message: never a
//! stack trace, a Redis address or a secret.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tracing::{debug, error};

use crate::auth::TokenError;
use crate::backend::BackendError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or a parameter is wrong; the message names the field.
    #[error("{0}")]
    InvalidRequest(String),
    /// The device token does not fit its platform (SPEC §3).
    #[error("{0}")]
    InvalidDeviceToken(String),
    /// The access token was rejected (401 or 403, the auth module decides).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// No usable `Authorization: Bearer …` header.
    #[error("{0}")]
    MissingBearer(BearerProblem),
    /// An admin route was called without the admin token, or with a wrong one.
    #[error("this route needs `Authorization: Bearer <admin token>`")]
    AdminUnauthorized,
    /// Authenticated differently than this route requires (a Twilio webhook signature that does
    /// not verify, another account's SID); the message says which, never a secret.
    #[error("{0}")]
    Forbidden(String),
    /// No such route, binding or identity.
    #[error("{0}")]
    NotFound(String),
    /// The route exists, the method does not.
    #[error("this route does not accept that method")]
    MethodNotAllowed,
    /// The body is over the limit.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request headers are over the listener's `max_header_bytes`.
    #[error("the request headers are larger than {limit} bytes")]
    HeadersTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The client did not send the whole body within the listener's `body_read_timeout_ms`.
    #[error("the request body did not arrive within {} ms", .0.as_millis())]
    BodyTimeout(Duration),
    /// The listener is handling its `max_concurrent_requests` already.
    #[error("the server is handling too many requests; retry shortly")]
    Busy,
    /// The body is not declared as the route's media type (named here, with its header).
    #[error("the request body must be {0}")]
    UnsupportedMediaType(&'static str),
    /// Too many requests; try again after the given time.
    #[error("too many registrations; retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited {
        /// How long until one more request is allowed.
        retry_after: Duration,
    },
    /// The request took longer than the server allows.
    #[error("the request took longer than {} ms", .0.as_millis())]
    Timeout(Duration),
    /// `/readyz`: Redis does not answer a PING. An expected state while Redis is down, so the
    /// readiness route logs it, as a warning, instead of every probe logging an error.
    #[error("not ready: Redis does not answer")]
    NotReady,
    /// Redis did not answer (or answered with an error): try again later.
    #[error("the service is temporarily unavailable; try again shortly")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A fault of the server itself.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why no bearer token could be read from the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerProblem {
    /// No `Authorization` header.
    #[error("the request needs an `Authorization: Bearer <token>` header")]
    Missing,
    /// Present, but not `Bearer <token>`.
    #[error("the `Authorization` header must have the form `Bearer <token>`")]
    Garbled,
}

/// Whole seconds to wait, rounded up and at least 1 (a `Retry-After: 0` invites a hot loop).
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) | ApiError::InvalidDeviceToken(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Token(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            ApiError::AdminUnauthorized | ApiError::MissingBearer(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_)
            | ApiError::Unavailable(_)
            | ApiError::NotReady
            | ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `error.code` of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidDeviceToken(_) => "invalid_device_token",
            ApiError::Token(e) => e.code(),
            ApiError::AdminUnauthorized | ApiError::MissingBearer(_) => "invalid_token",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::HeadersTooLarge { .. } => "headers_too_large",
            ApiError::BodyTimeout(_) => "request_timeout",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Timeout(_)
            | ApiError::Unavailable(_)
            | ApiError::NotReady
            | ApiError::Busy => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Redis(_) => ApiError::Unavailable(Box::new(e)),
            BackendError::Corrupt(_) => ApiError::Internal(Box::new(e)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Unavailable(cause) | ApiError::Internal(cause) => {
                error!(status = status.as_u16(), error = %cause, "request failed");
            }
            ApiError::Timeout(_) => error!(status = status.as_u16(), "request timed out"),
            _ => debug!(
                status = status.as_u16(),
                code = self.code(),
                "request rejected"
            ),
        }
        let body = serde_json::json!({
            "error": {"code": self.code(), "message": self.to_string()}
        });
        let mut response = (status, Json(body)).into_response();
        let retry_after = match self {
            ApiError::RateLimited { retry_after } => Some(retry_after_secs(retry_after)),
            ApiError::Busy => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn server_faults_are_opaque() {
        let err = ApiError::Unavailable("redis://:hunter2@db:6379 refused".into());
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!err.to_string().contains("hunter2"));
        let err = ApiError::Internal("corrupt".into());
        assert_eq!(err.code(), "internal");
        assert_eq!(err.to_string(), "internal error");
    }
}
